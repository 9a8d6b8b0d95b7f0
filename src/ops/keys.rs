//! Signing keys: the rotation policy, in one place.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Actor, Ops, Reason};
use crate::domain::signing::SigningAlgorithm;
use crate::error::Error;
use crate::keys::KeyInfo;
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
