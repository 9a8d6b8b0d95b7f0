//! Signing keys: the rotation policy, in one place.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Actor, Ops, Reason};
use crate::domain::signing::SigningAlgorithm;
use crate::error::Error;
use crate::keys::KeyInfo;
use crate::revocation;
use crate::store::keys::{self as key_store, Distrust, DistrustedKey};
use crate::store::{refresh, revocations};

/// How long a distrusted key's entry stays in the revocation feed: for
/// good, in practice (whoever holds the key can sign tokens with any
/// dates, so no instant ends the danger). Entries are tiny and rare.
const DISTRUSTED_FOR: chrono::Duration = chrono::Duration::days(100 * 365);

/// What distrusting a key did.
#[derive(Debug)]
pub struct KeyDistrusted {
    pub kid: String,
    /// The key that signs from now on, when the distrusted one was signing
    /// (or no other could).
    pub replaced_by: Option<String>,
    /// Sessions ended with it (`revoke_sessions`).
    pub sessions_ended: usize,
}
use crate::keys::sealed::{self, Rewrapped};

/// The furthest ahead a rotation may be scheduled.
const MAX_DELAY: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug, Default)]
pub struct RotateKey {
    /// Until the new key signs (default `keys.rotation_delay`).
    pub delay: Option<Duration>,
    /// Allow a delay shorter than `keys.jwks_max_age + keys.reload_interval`
    /// (emergency rotation after a compromise: verifiers with a cached JWKS
    /// may reject the new key's tokens until they refetch).
    pub force: bool,
    /// Default `keys.algorithm`.
    pub algorithm: Option<SigningAlgorithm>,
}

impl Ops<'_> {
    /// Adds a key, published at once, signing after the delay. Returns its kid.
    pub async fn rotate_key(
        &self,
        actor: &Actor,
        rotate: RotateKey,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<String, Error> {
        let delay = rotate.delay.unwrap_or(self.settings.keys.rotation_delay);
        if delay > MAX_DELAY {
            return Err(Error::invalid_request("the delay is at most 30 days"));
        }
        let minimum = self.settings.min_rotation_delay();
        if delay < minimum && !rotate.force {
            return Err(Error::invalid_request(format!(
                "a delay below {}s lets the new key sign before verifiers and other instances know it; set force (`--force` on the command line) for an emergency rotation",
                minimum.as_secs()
            )));
        }
        let algorithm = rotate.algorithm.unwrap_or(self.settings.keys.algorithm);
        let mut tx = self.begin().await?;
        let kid = self.keys.rotate(&mut tx, algorithm, now, delay).await?;
        self.audit(&mut tx, actor, "keys.rotate", Some(&kid), reason, now)
            .await?;
        tx.commit().await?;
        self.keys.reload(self.pool, now).await?;
        Ok(kid)
    }

    /// Distrusts a signing key after a compromise, for good, audited as
    /// `keys.distrust` with its (required) reason. In one transaction: the
    /// key is marked, an entry goes to the revocation feed (every instance
    /// and every following verifier drops the key within a second), and if
    /// it was signing, a new key is made that signs at once. Publish-before-
    /// sign is skipped for that key on purpose: a verifier that has not
    /// fetched the new JWKS refuses the new tokens until it does (the kit
    /// refetches on an unknown kid), which is a retry; waiting would mean
    /// minutes more of tokens from a key an attacker holds. Refresh tokens
    /// are opaque and live on, so apps get new access tokens at their next
    /// refresh. With `revoke_sessions`, the sessions whose current access
    /// token the key signed end too.
    pub async fn distrust_key(
        &self,
        actor: &Actor,
        kid: &str,
        revoke_sessions: bool,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<KeyDistrusted, Error> {
        // Kids are RFC 7638 thumbprints: anything else names no key (and
        // must not reach the database as is).
        if kid.is_empty()
            || kid.len() > 128
            || !kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::NotFound("no such key"));
        }
        let why = reason
            .as_deref()
            .filter(|r| !r.trim().is_empty())
            .ok_or_else(|| Error::invalid_request("a reason is required to distrust a key"))?;
        // What the key was doing, from a fresh read.
        self.keys.reload(self.pool, now).await?;
        let listed = self.keys.list(now);
        let key = listed.iter().find(|k| k.kid == kid);
        let signing = self.keys.signer(now).is_some_and(|s| s.kid == kid);
        let mut tx = self.begin().await?;
        match key_store::distrust(&mut tx, kid, why, now).await? {
            Distrust::Distrusted => {}
            Distrust::Already => return Err(Error::Conflict("that key is distrusted already")),
            Distrust::Unknown => return Err(Error::NotFound("no such key")),
        }
        revocations::distrust_key(&mut tx, kid, now + DISTRUSTED_FOR, now).await?;
        // Its replacement signs at once; so does a new key if no other
        // trusted key could sign (the last one was distrusted).
        let others_can_sign = listed.iter().any(|k| {
            k.kid != kid
                && matches!(
                    k.state,
                    crate::keys::KeyState::Active | crate::keys::KeyState::Pending
                )
        });
        let replaced_by = if signing || !others_can_sign {
            let new = self
                .keys
                .rotate(&mut tx, self.settings.keys.algorithm, now, Duration::ZERO)
                .await?;
            Some(new)
        } else {
            None
        };
        let mut sessions_ended = 0;
        if revoke_sessions && let Some(key) = key {
            let until = key.retired_at.unwrap_or(now).min(now);
            let sessions =
                refresh::sessions_issued_between(&mut tx, key.activates_at, until, now).await?;
            let ttl = self.settings.tokens.longest_access();
            for session in &sessions {
                revocation::end_session(&mut tx, *session, "signing key distrusted", now, ttl)
                    .await?;
            }
            sessions_ended = sessions.len();
        }
        self.audit(&mut tx, actor, "keys.distrust", Some(kid), reason, now)
            .await?;
        self.commit(tx, now).await?;
        self.keys.reload(self.pool, now).await?;
        Ok(KeyDistrusted {
            kid: kid.to_owned(),
            replaced_by,
            sessions_ended,
        })
    }

    /// The distrusted keys, with when and why.
    pub async fn distrusted_keys(&self) -> Result<Vec<DistrustedKey>, Error> {
        Ok(key_store::distrusted(self.pool).await?)
    }

    /// Every key with its state, as of a fresh read of the table.
    pub async fn list_keys(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<KeyInfo>, Error> {
        self.keys.reload(self.pool, now).await?;
        self.audit_read(actor, "keys.list", None, now).await?;
        Ok(self.keys.list(now))
    }

    /// Re-seals every row sealed under a previous key-encryption key (or
    /// stored without a key identifier) under the current one, in one
    /// transaction with its audit row; after it, the previous keys can be
    /// removed from the configuration. Refuses, changing nothing, when a
    /// row opens under no configured key. Idempotent: run again, it
    /// re-seals nothing (and is audited again: who ran it, when).
    pub async fn rewrap_keys(&self, actor: &Actor, now: DateTime<Utc>) -> Result<Rewrapped, Error> {
        let mut tx = self.begin().await?;
        let rewrapped = sealed::rewrap(&mut tx, self.keys.keks(), now).await?;
        let target = format!("kek:{}", rewrapped.kek_id);
        self.audit(
            &mut tx,
            actor,
            "keys.rewrap",
            Some(&target),
            &Reason::none(),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(rewrapped)
    }
}
