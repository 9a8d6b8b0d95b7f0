//! `Verifier`: the checks on one token, and the background work behind them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::Header;
use serde::Serialize;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::denylist::Denylist;
use crate::inner::{Counters, Inner, Lookup, unix_now};
use crate::issuer::Issuer;
use crate::keys::KeyCache;
use crate::{Claims, Config, Error, Invalid, sync};

/// Longest token looked at.
const MAX_TOKEN_LEN: usize = 8192;

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
        let inner = Arc::new(Inner {
            issuer: Issuer::new(&config)?,
            keys: KeyCache::new(config.refetch_interval),
            denylist: Denylist::new(),
            endpoints: OnceCell::new(),
            stats: Counters::default(),
            stale_warned: Mutex::new(None),
            config,
        });
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

    /// Verifies a bearer token: signature with the key its `kid` names (one
    /// rate-limited JWK Set refetch if unknown), RFC 9068 claims, then the
    /// revocation list.
    pub async fn verify(&self, token: &str) -> Result<Claims, Error> {
        match self.verify_cached(token) {
            Err(Lookup::UnknownKid(header)) => {
                let kid = header.kid.as_deref().unwrap_or_default();
                self.refetch_for(kid).await?;
                let key = self.inner.keys.get(kid).ok_or(Invalid::UnknownKey)?;
                self.inner.check(token, &header, &key, unix_now())
            }
            Err(Lookup::Failed(e)) => Err(e),
            Ok(claims) => Ok(claims),
        }
    }

    /// As `verify`, without the refetch: `Err(Lookup::UnknownKid)` when the
    /// key is not cached. Lets the extractor finish without an await.
    pub(crate) fn verify_cached(&self, token: &str) -> Result<Claims, Lookup> {
        let header = access_token_header(token).map_err(Lookup::Failed)?;
        let kid = header.kid.as_deref().unwrap_or_default();
        match self.inner.keys.get(kid) {
            Some(key) => self
                .inner
                .check(token, &header, &key, unix_now())
                .map_err(Lookup::Failed),
            None => Err(Lookup::UnknownKid(Box::new(header))),
        }
    }

    async fn refetch_for(&self, kid: &str) -> Result<(), Error> {
        let Some(endpoints) = self.inner.endpoints.get() else {
            return Err(Error::KeysNotLoaded);
        };
        let fetched = self
            .inner
            .keys
            .refetch(Some(kid), false, || {
                self.inner.issuer.jwks(&endpoints.jwks_uri)
            })
            .await;
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

    /// The kids of the cached keys.
    pub fn key_ids(&self) -> Vec<String> {
        self.inner.keys.kids()
    }
}

/// The header of a JWT access token: `typ` is `at+jwt` (RFC 9068 §4) and
/// a `kid` is present.
fn access_token_header(token: &str) -> Result<Header, Error> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Invalid::Malformed.into());
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Invalid::Malformed)?;
    let typ = header.typ.as_deref().unwrap_or("");
    if !(typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")) {
        return Err(Invalid::WrongType.into());
    }
    if header.kid.is_none() {
        return Err(Invalid::Malformed.into());
    }
    Ok(header)
}
