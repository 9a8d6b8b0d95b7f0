//! What every handler shares.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::clients::ClientCache;
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::RecoveryKey;
use crate::domain::access_token::AccessTokenVerifier;
use crate::domain::device::DeviceKey;
use crate::dpop::Dpop;
use crate::hashing::PasswordHasher;
use crate::keys::{KeyEncryptionKeys, KeyRing};
use crate::revocation::Denylist;
use crate::revocation::slots::Slots;
use crate::throttle::AddressLimiter;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub keys: Arc<KeyRing>,
    pub verifier: AccessTokenVerifier,
    pub hasher: PasswordHasher,
    pub denylist: Arc<Denylist>,
    /// Every registered client, in memory (see `clients`).
    pub clients: Arc<ClientCache>,
    /// Failed password logins per client address (or device).
    pub addresses: Arc<AddressLimiter>,
    /// Signs and checks device credentials (`domain::device`).
    pub devices: Arc<DeviceKey>,
    /// Checks DPoP proofs, issues nonces, remembers used proofs (`dpop`).
    pub dpop: Arc<Dpop>,
    /// Seals second-factor secrets under the current key-encryption key and
    /// opens them with whichever configured key sealed them (`mfa`).
    pub sealer: Arc<KeyEncryptionKeys>,
    /// Keys the stored form of recovery codes (`domain::opaque`). Kept
    /// sealed in Postgres, so it is set by startup once the database
    /// answers (`keys::sealed::recovery_key`), before any token is accepted.
    pub recovery: Arc<std::sync::OnceLock<RecoveryKey>>,
    pub clock: Clock,
    /// One per open revocation stream (`revocation.max_subscribers`, and
    /// `max_subscribers_per_client` for one client).
    pub stream_slots: Arc<Slots>,
    /// Turns true when the service starts shutting down: open streams end
    /// then, so that draining in-flight requests does not wait for them.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// The administrative operations, on this instance's resources.
    pub fn ops(&self) -> crate::ops::Ops<'_> {
        crate::ops::Ops {
            pool: &self.pool,
            settings: &self.settings,
            hasher: &self.hasher,
            keys: &self.keys,
            denylist: Some(&self.denylist),
        }
    }

    /// What identifying a presented token needs (introspection, revocation).
    pub fn token_lookup(&self) -> crate::revocation::Lookup<'_> {
        crate::revocation::Lookup {
            pool: &self.pool,
            verifier: &self.verifier,
            denylist: &self.denylist,
            clients: &self.clients,
            revocable_for: self.settings.tokens.longest_refresh(),
            access_ttl: self.settings.tokens.longest_access(),
            refresh_idle: self.settings.tokens.refresh_idle,
            issuer: &self.settings.issuer,
            audience: &self.settings.audience,
        }
    }

    /// Whether Postgres answers a trivial query within `timeout`.
    pub async fn database_answers(&self, timeout: std::time::Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, crate::store::ping(&self.pool)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!(
                "the database did not answer within {} ms",
                timeout.as_millis()
            )),
        }
    }
}
