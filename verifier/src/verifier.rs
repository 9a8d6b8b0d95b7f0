//! `Verifier`: the checks on one token, and the background work behind them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::inner::{Inner, Lookup, unix_now};
use crate::{Claims, Config, Error, Presented, sync};

/// Verifies Tessera access tokens offline and honours revocations.
///
/// Cheap to clone (one `Arc`); the background tasks stop when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
    _tasks: Arc<Tasks>,
}

struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

/// What `/healthz` of a service can report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Health {
    /// A JWK Set has been fetched.
    pub keys: bool,
    /// The revocation feed has been read in full.
    pub revocations: bool,
    /// Nothing heard from the feed or stream for longer than `max_staleness`.
    pub stale: bool,
    /// Seconds since the issuer was last heard from.
    pub revocations_age_seconds: u64,
    /// Entries held: access tokens, logins, users.
    pub revoked_tokens: usize,
    pub revoked_sessions: usize,
    pub revoked_users: usize,
    /// Signing keys the issuer has distrusted (kept for good).
    pub distrusted_keys: usize,
}

impl Health {
    /// Keys and revocations are loaded and fresh: tokens can be verified.
    pub fn is_ready(&self) -> bool {
        self.keys && self.revocations && !self.stale
    }
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Requests for the JWK Set (periodic and on unknown kids).
    pub jwks_fetches: u64,
    pub feed_pages: u64,
    pub stream_connects: u64,
    pub entries_applied: u64,
}

impl Verifier {
    /// Checks the configuration and starts the background work (discovery,
    /// keys, revocations) on the current tokio runtime. Returns at once:
    /// until keys and revocations are loaded, verification answers
    /// `KeysNotLoaded` / `RevocationsNotLoaded` (see [`Verifier::ready`]).
    pub fn start(config: Config) -> Result<Verifier, Error> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("Verifier::start must be called inside a tokio runtime".into())
        })?;
        let inner = Arc::new(Inner::new(config)?);
        let tasks = Tasks(vec![
            runtime.spawn(sync::refresh_keys(inner.clone())),
            runtime.spawn(sync::follow_revocations(inner.clone())),
            runtime.spawn(sync::prune(inner.clone())),
        ]);
        Ok(Verifier {
            inner,
            _tasks: Arc::new(tasks),
        })
    }

    /// A verifier over prepared state, with no background work.
    #[cfg(test)]
    pub(crate) fn from_inner(inner: Inner) -> Verifier {
        Verifier {
            inner: Arc::new(inner),
            _tasks: Arc::new(Tasks(Vec::new())),
        }
    }

    /// The shared state, for tests that feed it entries.
    #[cfg(test)]
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Waits until keys and revocations are loaded, for at most `limit`.
    pub async fn ready(&self, limit: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let health = self.health();
            if health.is_ready() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(if !health.keys {
                    Error::KeysNotLoaded
                } else {
                    Error::RevocationsNotLoaded
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Verifies a bearer token: refused at once if its `kid` names a key
    /// the issuer has distrusted (`Invalid::DistrustedKey`); signature with
    /// the key its `kid` names (one rate-limited JWK Set refetch if
    /// unknown), RFC 9068 claims, then the revocation list. A token bound to a DPoP key (`cnf`) is refused
    /// (`Invalid::BoundTokenAsBearer`), and every token is where
    /// [`Config::require_dpop`] is set (`Invalid::BearerNotAccepted`).
    pub async fn verify(&self, token: &str) -> Result<Claims, Error> {
        match self.inner.verify_bearer(token, unix_now()) {
            Err(Lookup::UnknownKid(header)) => {
                self.refetch_for(header.kid.as_deref().unwrap_or_default())
                    .await?;
                self.settle(self.inner.verify_bearer(token, unix_now()))
            }
            other => self.settle(other),
        }
    }

    /// Verifies a request presenting a token with either scheme (RFC 9449
    /// §7): `Bearer` as [`Verifier::verify`]; `DPoP` with exactly one
    /// `DPoP` proof, checked against the method and `external_url` + path,
    /// the token's hash (`ath`), the token's `cnf.jkt`, the server nonce if
    /// configured, and the replay cache; then the token as `verify` does.
    pub async fn verify_request(&self, presented: &Presented<'_>) -> Result<Claims, Error> {
        match self.inner.verify_request(presented, unix_now()) {
            Err(Lookup::UnknownKid(header)) => {
                self.refetch_for(header.kid.as_deref().unwrap_or_default())
                    .await?;
                self.settle(self.inner.verify_request(presented, unix_now()))
            }
            other => self.settle(other),
        }
    }

    /// As `verify_request`, without the refetch: `Err(Lookup::UnknownKid)`
    /// when the key is not cached. Lets the extractor finish without an
    /// await.
    pub(crate) fn verify_request_cached(
        &self,
        presented: &Presented<'_>,
    ) -> Result<Claims, Lookup> {
        self.inner.verify_request(presented, unix_now())
    }

    /// A kid still unknown after the refetch is an unknown key.
    fn settle(&self, result: Result<Claims, Lookup>) -> Result<Claims, Error> {
        result.map_err(|lookup| match lookup {
            Lookup::UnknownKid(_) => self.inner.unknown_key(),
            Lookup::Failed(e) => e,
        })
    }

    async fn refetch_for(&self, kid: &str) -> Result<(), Error> {
        let Some(endpoints) = self.inner.endpoints.get() else {
            return Err(Error::KeysNotLoaded);
        };
        let fetched = self.inner.refetch_keys(endpoints, Some(kid), false).await;
        if let Err(e) = fetched {
            tracing::warn!(error = %e, "refetching the JWK Set for an unknown kid failed");
        }
        if !self.inner.keys.is_loaded() {
            return Err(Error::KeysNotLoaded);
        }
        Ok(())
    }

    /// Whether the revocation list refuses these claims (by `jti`, `sid` or
    /// user not-before), for claims verified some other way. `verify`
    /// already applies it.
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        self.inner.denylist.is_revoked(claims)
    }

    pub fn health(&self) -> Health {
        let (revoked_tokens, revoked_sessions, revoked_users) = self.inner.denylist.len();
        let age = self.inner.denylist.age();
        Health {
            keys: self.inner.keys.is_loaded(),
            revocations: self.inner.denylist.is_loaded(),
            stale: age > self.inner.config.max_staleness,
            revocations_age_seconds: age.as_secs(),
            revoked_tokens,
            revoked_sessions,
            revoked_users,
            distrusted_keys: self.inner.denylist.distrusted_keys(),
        }
    }

    pub fn stats(&self) -> Stats {
        let counters = &self.inner.stats;
        Stats {
            jwks_fetches: self.inner.keys.fetches.load(Ordering::Relaxed),
            feed_pages: counters.feed_pages.load(Ordering::Relaxed),
            stream_connects: counters.stream_connects.load(Ordering::Relaxed),
            entries_applied: counters.entries_applied.load(Ordering::Relaxed),
        }
    }

    /// The kids of the cached keys: the JWK Set as last fetched, less the
    /// keys distrusted before that fetch. A key distrusted since is still
    /// listed until the next fetch, but its tokens are already refused.
    pub fn key_ids(&self) -> Vec<String> {
        self.inner.keys.kids()
    }
}
