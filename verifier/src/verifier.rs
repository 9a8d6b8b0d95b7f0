//! `Verifier`: the checks on one token, and the background work behind them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Header;
use jsonwebtoken::errors::ErrorKind;
use serde::Serialize;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::config::DEFAULT_MAX_TOKEN_LIFETIME;
use crate::denylist::{Denylist, Entry};
use crate::issuer::{Endpoints, Issuer};
use crate::keys::{Key, KeyCache};
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

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) issuer: Issuer,
    pub(crate) endpoints: OnceCell<Endpoints>,
    pub(crate) keys: KeyCache,
    pub(crate) denylist: Denylist,
    pub(crate) stats: Counters,
    /// When the fail-open staleness warning was last logged.
    pub(crate) stale_warned: Mutex<Option<Instant>>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) feed_pages: AtomicU64,
    pub(crate) stream_connects: AtomicU64,
    pub(crate) entries_applied: AtomicU64,
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

pub(crate) enum Lookup {
    /// The header names a kid that is not cached.
    UnknownKid(Box<Header>),
    Failed(Error),
}

impl Inner {
    /// Everything but finding the key.
    fn check(&self, token: &str, header: &Header, key: &Key, now: i64) -> Result<Claims, Error> {
        // The key decides the algorithm; the header may only agree with it.
        if header.alg != key.algorithm {
            return Err(Invalid::WrongAlgorithm.into());
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &key.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => Invalid::BadSignature,
                _ => Invalid::Malformed,
            })?
            .claims;
        self.check_claims(&claims, now)?;
        self.check_revocation(&claims)?;
        Ok(claims)
    }

    fn check_claims(&self, claims: &Claims, now: i64) -> Result<(), Invalid> {
        let config = &self.config;
        if claims.sub.is_empty() || claims.client_id.is_empty() || claims.jti.is_empty() {
            return Err(Invalid::Malformed);
        }
        if claims.iss != config.issuer {
            return Err(Invalid::WrongIssuer);
        }
        if !claims.aud.contains(&config.audience) {
            return Err(Invalid::WrongAudience);
        }
        let leeway = secs(config.leeway);
        if claims.exp.saturating_add(leeway) <= now {
            return Err(Invalid::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(Invalid::NotYetValid);
        }
        if claims.iat > now.saturating_add(leeway) {
            return Err(Invalid::IssuedInFuture);
        }
        if claims.exp.saturating_sub(claims.iat) > secs(self.max_token_lifetime()) {
            return Err(Invalid::TooLongLived);
        }
        Ok(())
    }

    /// A listed token is refused whatever else holds; otherwise the list
    /// must be loaded and fresh to vouch for it.
    fn check_revocation(&self, claims: &Claims) -> Result<(), Error> {
        if self.denylist.is_revoked(claims) {
            return Err(Invalid::Revoked.into());
        }
        if !self.denylist.is_loaded() {
            return Err(Error::RevocationsNotLoaded);
        }
        let age = self.denylist.age();
        if age > self.config.max_staleness {
            if !self.config.fail_open_when_stale {
                return Err(Error::RevocationsStale { behind: age });
            }
            // Once a minute, not once per request, for the length of an outage.
            let mut warned = self.stale_warned.lock().unwrap_or_else(|p| p.into_inner());
            if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                *warned = Some(Instant::now());
                tracing::warn!(
                    age_seconds = age.as_secs(),
                    "revocation list is stale; accepting tokens anyway (fail_open_when_stale)"
                );
            }
        }
        Ok(())
    }

    pub(crate) fn apply(&self, entries: impl IntoIterator<Item = Entry>) {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.stats
            .entries_applied
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        self.denylist.apply(entries);
    }

    pub(crate) fn prune(&self) {
        self.denylist
            .prune(unix_now(), self.config.leeway, self.max_token_lifetime());
    }

    /// The configured maximum, else the issuer's (known once discovery
    /// has run, which loading the keys needs), else the default.
    fn max_token_lifetime(&self) -> Duration {
        self.config
            .max_token_lifetime
            .or_else(|| self.endpoints.get()?.max_access_token_lifetime)
            .unwrap_or(DEFAULT_MAX_TOKEN_LIFETIME)
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

fn unix_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
