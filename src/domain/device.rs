//! Device credentials: what a successful password login hands the app so
//! that, next time, the lockout can tell this device from a guesser (OWASP's
//! device-cookie pattern). The credential admits its device past the
//! username-wide lock; it grants nothing else (the password is still
//! checked) and its own failures lock only itself.
//!
//! Stateless: `tsd_` + base64url(id ‖ issued-at ‖ tag), the tag an HMAC over
//! those and the username, so it is checked before any database work and
//! cannot be moved to another username. A flood of forged ones costs one
//! HMAC each.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use super::Username;

const PREFIX: &str = "tsd_";
const ID: usize = 16;
const ISSUED: usize = 8;
const TAG: usize = 16;
/// What the HMAC key is derived for, so the secret it comes from is never
/// used for two purposes with one key.
const PURPOSE: &[u8] = b"tessera device credential v1";

/// The keys device credentials are signed with: the first signs, every one
/// is accepted (one per configured key-encryption key, so that a credential
/// issued before the key-encryption key was replaced holds while the old
/// key is still configured, and no longer once it is removed).
pub struct DeviceKey(Vec<hmac::Key>);

/// A device that presented a valid credential for this username.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device(pub u128);

impl Device {
    /// The lockout's key for this device.
    pub fn source(&self) -> String {
        format!("device:{:032x}", self.0)
    }
}

impl DeviceKey {
    /// Derived from long-lived secrets of the deployment (the key-encryption
    /// keys, the current one first), so that every instance checks what any
    /// of them issued.
    pub fn derive(secrets: &[&[u8]]) -> DeviceKey {
        DeviceKey(
            secrets
                .iter()
                .map(|secret| {
                    let outer = hmac::Key::new(hmac::HMAC_SHA256, secret);
                    let derived = hmac::sign(&outer, PURPOSE);
                    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
                })
                .collect(),
        )
    }

    /// A new credential for a device that just logged in as `username`.
    pub fn issue(&self, username: &Username, now: DateTime<Utc>) -> String {
        let mut body = [0u8; ID + ISSUED];
        rand::fill(&mut body[..ID]);
        body[ID..].copy_from_slice(&now.timestamp().to_be_bytes());
        let mut out = body.to_vec();
        if let Some(key) = self.0.first() {
            out.extend_from_slice(&tag(key, &body, username));
        }
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// The device, if `presented` is a credential this deployment issued
    /// for `username` less than `ttl` ago.
    pub fn check(
        &self,
        presented: &str,
        username: &Username,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Option<Device> {
        let encoded = presented.strip_prefix(PREFIX)?;
        if encoded.len() > 64 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(encoded).ok()?;
        if raw.len() != ID + ISSUED + TAG {
            return None;
        }
        let (body, tag) = raw.split_at(ID + ISSUED);
        // Every key is tried, so the time taken says nothing of which matched.
        let matched = self.0.iter().fold(false, |matched, key| {
            matched | bool::from(self::tag(key, body, username).ct_eq(tag))
        });
        if !matched {
            return None;
        }
        let issued = i64::from_be_bytes(body[ID..].try_into().ok()?);
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let age = now.timestamp().checked_sub(issued)?;
        if !(0..ttl).contains(&age) {
            return None;
        }
        Some(Device(u128::from_be_bytes(body[..ID].try_into().ok()?)))
    }
}

fn tag(key: &hmac::Key, body: &[u8], username: &Username) -> [u8; TAG] {
    let mut context = hmac::Context::with_key(key);
    context.update(body);
    context.update(username.as_str().as_bytes());
    let full = context.sign();
    let mut tag = [0u8; TAG];
    tag.copy_from_slice(&full.as_ref()[..TAG]);
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn a_credential_holds_for_its_username_and_lifetime_only() {
        let key = DeviceKey::derive(&[&[7u8; 32]]);
        let alice = Username::parse("alice").unwrap();
        let bob = Username::parse("bob").unwrap();
        let ttl = Duration::from_secs(100);
        let issued = key.issue(&alice, at(1000));
        let device = key.check(&issued, &alice, at(1050), ttl).unwrap();
        assert_eq!(key.check(&issued, &alice, at(1099), ttl), Some(device));
        assert_eq!(key.check(&issued, &alice, at(1100), ttl), None, "expired");
        assert_eq!(
            key.check(&issued, &alice, at(999), ttl),
            None,
            "from the future"
        );
        assert_eq!(
            key.check(&issued, &bob, at(1050), ttl),
            None,
            "another username"
        );
        let other_key = DeviceKey::derive(&[&[8u8; 32]]);
        assert_eq!(other_key.check(&issued, &alice, at(1050), ttl), None);
        // The key-encryption key replaced: accepted while the old one is
        // configured, not after; new credentials are signed by the new one.
        let rotated = DeviceKey::derive(&[&[8u8; 32], &[7u8; 32]]);
        assert_eq!(rotated.check(&issued, &alice, at(1050), ttl), Some(device));
        let fresh = rotated.issue(&alice, at(1000));
        assert!(other_key.check(&fresh, &alice, at(1050), ttl).is_some());
        assert_eq!(key.check(&fresh, &alice, at(1050), ttl), None);
        // Any changed byte breaks it.
        let mut raw = URL_SAFE_NO_PAD.decode(&issued[4..]).unwrap();
        raw[3] ^= 1;
        let tampered = format!("tsd_{}", URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(key.check(&tampered, &alice, at(1050), ttl), None);
        assert_eq!(key.check("tsd_", &alice, at(1050), ttl), None);
        assert_eq!(key.check(&"a".repeat(5000), &alice, at(1050), ttl), None);
        // Two logins, two devices.
        let second = key.issue(&alice, at(1000));
        assert_ne!(key.check(&second, &alice, at(1050), ttl), Some(device));
    }
}
