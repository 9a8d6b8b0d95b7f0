//! Signing keys: generated here, sealed in Postgres, loaded by every instance.
//!
//! Every instance reads the same table and derives the signing key and the
//! JWKS from activation times (see `schedule`), so instances on one database
//! agree without talking to each other.

pub mod kek;
pub mod material;
mod rendered;
mod schedule;
pub mod sealed;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use chrono::{DateTime, Utc};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use serde::Serialize;
use sqlx::PgPool;

pub use kek::{KekId, KeyEncryptionKey, KeyEncryptionKeys};
pub use rendered::Rendered;
pub use schedule::{KeyState, Phase};

use crate::domain::access_token::VerifyingKeys;
pub use crate::domain::signing::{Distrusted, Signer, SigningAlgorithm, SigningKey};
use crate::store::keys::{self as key_store, StoredKey};

/// A key as `keys list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    pub state: KeyState,
    pub created_at: DateTime<Utc>,
    pub activates_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone)]
struct LoadedKey {
    kid: String,
    algorithm: SigningAlgorithm,
    created_at: DateTime<Utc>,
    activates_at: DateTime<Utc>,
    public: Jwk,
    verifier: Arc<DecodingKey>,
    /// `None` for keys that can no longer sign (retired or expired when
    /// loaded, or distrusted).
    private: Option<Arc<SigningKey>>,
    /// Distrusted: it keeps its place on the schedule (the keys around it
    /// keep their dates), and is never published, trusted or used.
    distrusted: bool,
}

/// The in-memory copy of the key table, refreshed by `reload`.
pub struct KeyRing {
    keks: Arc<KeyEncryptionKeys>,
    access_ttl: chrono::Duration,
    keys: RwLock<Arc<Vec<LoadedKey>>>,
    /// Keys never to publish, trust or sign with again, whatever the table
    /// said when it was last read.
    distrusted: Arc<Distrusted>,
    /// `distrusted`'s generation that `keys` reflects.
    seen: AtomicU64,
    /// `distrusted`'s generation when the table was last read.
    read_for: AtomicU64,
    /// The table has been read once: tokens can be told from forgeries
    /// (even while a distrusted key's replacement is still being loaded).
    loaded: std::sync::atomic::AtomicBool,
    /// The JWKS and the discovery metadata as served.
    rendered_jwks: rendered::Cache<Vec<LoadedKey>>,
    rendered_metadata: rendered::Cache<Vec<LoadedKey>>,
}

impl KeyRing {
    pub fn new(
        keks: Arc<KeyEncryptionKeys>,
        access_ttl: std::time::Duration,
        distrusted: Arc<Distrusted>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            keks,
            access_ttl: chrono::Duration::from_std(access_ttl)
                .context("tokens.access_ttl is too large")?,
            keys: RwLock::new(Arc::new(Vec::new())),
            distrusted,
            seen: AtomicU64::new(0),
            read_for: AtomicU64::new(0),
            loaded: std::sync::atomic::AtomicBool::new(false),
            rendered_jwks: rendered::Cache::default(),
            rendered_metadata: rendered::Cache::default(),
        })
    }

    /// The key-encryption keys the private keys are sealed under.
    pub fn keks(&self) -> &KeyEncryptionKeys {
        &self.keks
    }

    /// The loaded keys, any distrusted since they were read marked so: a
    /// distrusted key goes at once, not at the next reload (which brings
    /// its replacement). A new snapshot also re-renders the JWKS.
    fn snapshot(&self) -> Arc<Vec<LoadedKey>> {
        let generation = self.distrusted.generation();
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        if self.seen.load(Ordering::Acquire) == generation {
            return keys;
        }
        let mut current = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let marked: Vec<LoadedKey> = current
            .iter()
            .map(|k| {
                let mut k = k.clone();
                if self.distrusted.contains(&k.kid) {
                    k.distrusted = true;
                    k.private = None;
                }
                k
            })
            .collect();
        *current = Arc::new(marked);
        self.seen.store(generation, Ordering::Release);
        current.clone()
    }

    fn phases(&self, keys: &[LoadedKey], now: DateTime<Utc>) -> Vec<Phase> {
        let activations: Vec<_> = keys.iter().map(|k| k.activates_at).collect();
        schedule::phases(&activations, now, self.access_ttl)
    }

    /// Re-reads the key table; decrypts only keys that are pending or active.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn reload(&self, pool: &PgPool, now: DateTime<Utc>) -> anyhow::Result<()> {
        let generation = self.distrusted.generation();
        let stored = key_store::list(pool).await?;
        let activations: Vec<_> = stored.iter().map(|k| k.activates_at).collect();
        let phases = schedule::phases(&activations, now, self.access_ttl);
        let mut loaded = Vec::with_capacity(stored.len());
        for (key, phase) in stored.into_iter().zip(phases) {
            let algorithm = SigningAlgorithm::from_str(&key.algorithm)?;
            let public: Jwk = serde_json::from_value(key.public_jwk)
                .with_context(|| format!("stored public key {} is not a JWK", key.kid))?;
            let verifier = Arc::new(DecodingKey::from_jwk(&public)?);
            // The table may have been read just before a distrust committed.
            let distrusted = key.distrusted || self.distrusted.contains(&key.kid);
            let private = match phase.state {
                KeyState::Pending | KeyState::Active if !distrusted => {
                    let der = self.keks.open(
                        &key.kid,
                        &key.private_key_encrypted,
                        key.kek_id.as_deref(),
                    )?;
                    Some(Arc::new(SigningKey::from_pkcs8(algorithm, &der)?))
                }
                _ => None,
            };
            loaded.push(LoadedKey {
                kid: key.kid,
                algorithm,
                created_at: key.created_at,
                activates_at: key.activates_at,
                public,
                verifier,
                private,
                distrusted,
            });
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        self.seen.store(generation, Ordering::Release);
        self.read_for.store(generation, Ordering::Release);
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Re-reads the table if a key was distrusted since it was last read:
    /// the key that replaces it (when it was signing) is then loaded within
    /// a heartbeat of the entry, not at the next periodic reload.
    pub async fn follow_distrust(&self, pool: &PgPool, now: DateTime<Utc>) -> anyhow::Result<()> {
        if self.read_for.load(Ordering::Acquire) == self.distrusted.generation() {
            return Ok(());
        }
        self.reload(pool, now).await
    }

    /// The key that signs at `now`, if one is loaded.
    pub fn signer(&self, now: DateTime<Utc>) -> Option<Signer> {
        let keys = self.snapshot();
        let phases = self.phases(&keys, now);
        // A distrusted active key signs nothing, and no older key takes
        // over: its replacement (activated at once) does.
        keys.iter()
            .zip(phases)
            .find(|(_, p)| p.state == KeyState::Active)
            .filter(|(k, _)| !k.distrusted)
            .and_then(|(k, _)| {
                k.private.as_ref().map(|private| Signer {
                    kid: k.kid.clone(),
                    algorithm: k.algorithm,
                    key: private.clone(),
                })
            })
    }

    /// The public key and algorithm for `kid`, while it is still published.
    pub fn verifier(
        &self,
        kid: &str,
        now: DateTime<Utc>,
    ) -> Option<(Arc<DecodingKey>, SigningAlgorithm)> {
        let keys = self.snapshot();
        let phases = self.phases(&keys, now);
        keys.iter()
            .zip(phases)
            .find(|(k, p)| k.kid == kid && p.is_published() && !k.distrusted)
            .map(|(k, _)| (k.verifier.clone(), k.algorithm))
    }

    /// Every key that may have signed a live token, or is about to sign.
    pub fn jwks(&self, now: DateTime<Utc>) -> JwkSet {
        let keys = self.snapshot();
        let phases = self.phases(&keys, now);
        let mut published: Vec<Jwk> = keys
            .iter()
            .zip(phases)
            .filter(|(k, p)| p.is_published() && !k.distrusted)
            .map(|(k, _)| k.public.clone())
            .collect();
        // Newest first: the key most likely needed is found first.
        published.reverse();
        JwkSet { keys: published }
    }

    /// The JWKS as bytes with a strong ETag, rendered again only when the
    /// keys are reloaded or the schedule reaches its next boundary.
    pub fn jwks_rendered(&self, now: DateTime<Utc>) -> Arc<Rendered> {
        let keys = self.snapshot();
        self.rendered_jwks.get(&keys, now, || {
            let body = serde_json::to_vec(&self.jwks(now)).unwrap_or_default();
            (body, self.next_change(&keys, now))
        })
    }

    /// A document derived from the loaded keys alone (the discovery
    /// metadata), rendered again only when the keys are reloaded.
    pub fn metadata_rendered(
        &self,
        render: impl FnOnce(&[SigningAlgorithm]) -> Vec<u8>,
    ) -> Arc<Rendered> {
        let keys = self.snapshot();
        // The time does not matter: nothing here follows the schedule.
        let now = DateTime::<Utc>::MIN_UTC;
        self.rendered_metadata.get(&keys, now, || {
            let algorithms: Vec<_> = keys
                .iter()
                .filter(|k| !k.distrusted)
                .map(|k| k.algorithm)
                .collect();
            (render(&algorithms), None)
        })
    }

    /// The next instant after `now` at which a key's phase changes.
    fn next_change(&self, keys: &[LoadedKey], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let phases = self.phases(keys, now);
        keys.iter()
            .map(|k| Some(k.activates_at))
            .chain(phases.iter().flat_map(|p| [p.retired_at, p.expires_at]))
            .flatten()
            .filter(|t| *t > now)
            .min()
    }

    pub fn list(&self, now: DateTime<Utc>) -> Vec<KeyInfo> {
        let keys = self.snapshot();
        let phases = self.phases(&keys, now);
        keys.iter()
            .zip(phases)
            .filter(|(k, _)| !k.distrusted)
            .map(|(k, p)| KeyInfo {
                kid: k.kid.clone(),
                algorithm: k.algorithm,
                state: p.state,
                created_at: k.created_at,
                activates_at: k.activates_at,
                retired_at: p.retired_at,
                expires_at: p.expires_at,
            })
            .collect()
    }

    /// Creates the first key if there is none. Safe to race:
    /// the store serialises it with an advisory lock.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn ensure_initial_key(
        &self,
        pool: &PgPool,
        algorithm: SigningAlgorithm,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let new_key = self.new_key(algorithm, now, now)?;
        if key_store::insert_if_none(pool, &new_key).await? {
            tracing::info!(kid = %new_key.kid, alg = algorithm.as_str(), "generated the first signing key");
        }
        Ok(())
    }

    /// Adds a key that starts signing at `now + delay`; until then it is only
    /// published. The current key retires when the new one activates.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn rotate(
        &self,
        conn: &mut sqlx::PgConnection,
        algorithm: SigningAlgorithm,
        now: DateTime<Utc>,
        delay: std::time::Duration,
    ) -> anyhow::Result<String> {
        let activates_at =
            now + chrono::Duration::from_std(delay).context("keys.rotation_delay is too large")?;
        let new_key = self.new_key(algorithm, now, activates_at)?;
        key_store::insert(conn, &new_key).await?;
        tracing::info!(kid = %new_key.kid, alg = algorithm.as_str(), %activates_at, "rotated signing key");
        Ok(new_key.kid)
    }

    fn new_key(
        &self,
        algorithm: SigningAlgorithm,
        now: DateTime<Utc>,
        activates_at: DateTime<Utc>,
    ) -> anyhow::Result<StoredKey> {
        let der = material::generate(algorithm)?;
        let encoding = material::encoding_key(algorithm, &der)?;
        // The RFC 7638 thumbprint is a stable, collision-free kid.
        let probe = Jwk::from_encoding_key(&encoding, algorithm.jwt())?;
        let kid = probe.thumbprint(ThumbprintHash::SHA256)?;
        let public = material::public_jwk(algorithm, &encoding, &kid)?;
        let sealed = self.keks.seal(&kid, &der)?;
        Ok(StoredKey {
            private_key_encrypted: sealed.bytes,
            kek_id: Some(sealed.kek_id.as_bytes().to_vec()),
            public_jwk: serde_json::to_value(&public)?,
            kid,
            algorithm: algorithm.as_str().to_owned(),
            created_at: now,
            activates_at,
            distrusted: false,
        })
    }
}

impl VerifyingKeys for KeyRing {
    fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    fn verifying_key(
        &self,
        kid: &str,
        now: DateTime<Utc>,
    ) -> Option<(Arc<DecodingKey>, SigningAlgorithm)> {
        self.verifier(kid, now)
    }
}
