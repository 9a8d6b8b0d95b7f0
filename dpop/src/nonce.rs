//! Stateless server nonces (RFC 9449 §8, §9).
//!
//! `base64url(issued ‖ tag)`: the time of issue (8 bytes, seconds) and an
//! HMAC-SHA256 over it (16 bytes). Every instance that shares the secret
//! accepts what any of them issued, with no shared store. A nonce proves
//! only that the proof was made after the nonce was issued, which bounds
//! how far ahead a stolen key could have pre-computed proofs.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const ISSUED: usize = 8;
const TAG: usize = 16;

/// How far ahead of our clock a nonce's issue time may be: the skew allowed
/// between instances of one deployment.
const SKEW_SECS: i64 = 30;

pub struct Nonces {
    key: hmac::Key,
    lifetime: i64,
}

impl Nonces {
    /// `secret` is a long-lived secret of the deployment; `purpose` keeps
    /// the derived key apart from its other uses. A nonce is accepted for
    /// `lifetime_secs` after it is issued.
    pub fn derive(secret: &[u8], purpose: &[u8], lifetime_secs: u64) -> Nonces {
        let outer = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&outer, purpose);
        Nonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            lifetime: i64::try_from(lifetime_secs).unwrap_or(i64::MAX),
        }
    }

    /// A nonce issued at `now` (seconds).
    pub fn issue(&self, now: i64) -> String {
        let issued = now.to_be_bytes();
        let tag = hmac::sign(&self.key, &issued);
        let mut out = issued.to_vec();
        out.extend_from_slice(&tag.as_ref()[..TAG]);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// True for a nonce of ours issued at most `lifetime` before `now`.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        if nonce.len() > 64 {
            return false;
        }
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        if bytes.len() != ISSUED + TAG {
            return false;
        }
        let (issued, tag) = bytes.split_at(ISSUED);
        let expected = hmac::sign(&self.key, issued);
        // Constant time: the tag is the secret part.
        if aws_lc_rs::constant_time::verify_slices_are_equal(&expected.as_ref()[..TAG], tag)
            .is_err()
        {
            return false;
        }
        let mut seconds = [0u8; ISSUED];
        seconds.copy_from_slice(issued);
        let issued = i64::from_be_bytes(seconds);
        issued <= now.saturating_add(SKEW_SECS) && now.saturating_sub(issued) <= self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_by_any_holder_of_the_secret_within_its_lifetime() {
        let one = Nonces::derive(b"secret", b"dpop nonce", 300);
        let two = Nonces::derive(b"secret", b"dpop nonce", 300);
        let nonce = one.issue(1_000);
        assert!(two.accepts(&nonce, 1_000));
        assert!(two.accepts(&nonce, 1_300));
        assert!(!two.accepts(&nonce, 1_301), "older than its lifetime");
        assert!(
            !two.accepts(&nonce, 969),
            "issued too far ahead of this clock"
        );
        let stranger = Nonces::derive(b"other secret", b"dpop nonce", 300);
        assert!(!stranger.accepts(&nonce, 1_000));
        let other_purpose = Nonces::derive(b"secret", b"something else", 300);
        assert!(!other_purpose.accepts(&nonce, 1_000));
        // A forged issue time under the old tag.
        let mut bytes = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
        bytes[7] ^= 1;
        assert!(!one.accepts(&URL_SAFE_NO_PAD.encode(bytes), 1_000));
        assert!(!one.accepts("not base64!", 1_000));
    }
}
