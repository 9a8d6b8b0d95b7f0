//! The verifier's shared state and its checks: what the public `Verifier`
//! and the background work in `sync` both hold (one `Arc<Inner>`), so that
//! neither depends on the other.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Header;
use jsonwebtoken::errors::ErrorKind;
use tokio::sync::OnceCell;

use crate::config::{DEFAULT_MAX_TOKEN_LIFETIME, secs};
use crate::denylist::{Denylist, Entry};
use crate::dpop::{Dpop, Presented, Scheme, authorization};
use crate::issuer::{Endpoints, Issuer};
use crate::keys::{Key, KeyCache};
use crate::{Claims, Config, Error, Invalid};

/// Longest token looked at.
const MAX_TOKEN_LEN: usize = 8192;

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) issuer: Issuer,
    pub(crate) endpoints: OnceCell<Endpoints>,
    pub(crate) keys: KeyCache,
    pub(crate) denylist: Denylist,
    pub(crate) dpop: Dpop,
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

pub(crate) enum Lookup {
    /// The header names a kid that is not cached.
    UnknownKid(Box<Header>),
    Failed(Error),
}

impl From<Error> for Lookup {
    fn from(error: Error) -> Self {
        Lookup::Failed(error)
    }
}

impl From<Invalid> for Lookup {
    fn from(reason: Invalid) -> Self {
        Lookup::Failed(reason.into())
    }
}

impl Inner {
    pub(crate) fn new(config: Config) -> Result<Inner, Error> {
        Ok(Inner {
            issuer: Issuer::new(&config)?,
            keys: KeyCache::new(config.refetch_interval),
            denylist: Denylist::new(),
            dpop: Dpop::new(&config)?,
            endpoints: OnceCell::new(),
            stats: Counters::default(),
            stale_warned: Mutex::new(None),
            config,
        })
    }

    /// A token presented as a bearer token: everything but the refetch
    /// of an unknown kid.
    pub(crate) fn verify_bearer(&self, token: &str, now: i64) -> Result<Claims, Lookup> {
        self.bearer(token, now).map_err(|e| self.answer(e))
    }

    /// A request, with either scheme: everything but the refetch of an
    /// unknown kid. Safe to repeat after the refetch: the proof is recorded
    /// as used only once all else passed.
    pub(crate) fn verify_request(
        &self,
        presented: &Presented<'_>,
        now: i64,
    ) -> Result<Claims, Lookup> {
        self.request(presented, now).map_err(|e| self.answer(e))
    }

    fn request(&self, presented: &Presented<'_>, now: i64) -> Result<Claims, Lookup> {
        let (scheme, token) = authorization(presented.authorization)?;
        match scheme {
            Scheme::Bearer => self.bearer(token, now),
            Scheme::Dpop => {
                let proof = self.dpop.check_proof(presented, token, now)?;
                let claims = self.token(token, now)?;
                self.dpop.accept(&proof, &claims, now)?;
                Ok(claims)
            }
        }
    }

    fn bearer(&self, token: &str, now: i64) -> Result<Claims, Lookup> {
        self.dpop.bearer_allowed()?;
        let claims = self.token(token, now)?;
        // RFC 9449 §7.2: a bound token is only good with a proof.
        if claims.cnf.is_some() {
            return Err(Invalid::BoundTokenAsBearer.into());
        }
        Ok(claims)
    }

    /// The token itself: header, distrusted keys, cached key, signature,
    /// claims, revocation.
    fn token(&self, token: &str, now: i64) -> Result<Claims, Lookup> {
        let header = access_token_header(token)?;
        let kid = header.kid.as_deref().unwrap_or_default();
        // Before the key is looked up: the cached set may still hold it
        // (fetched before the distrust), and no refetch is owed for it.
        if self.denylist.is_distrusted(kid) {
            return Err(Invalid::DistrustedKey.into());
        }
        match self.keys.get(kid) {
            Some(key) => Ok(self.check(token, &header, &key, now)?),
            None => Err(Lookup::UnknownKid(Box::new(header))),
        }
    }

    fn answer(&self, lookup: Lookup) -> Lookup {
        match lookup {
            Lookup::Failed(e) => Lookup::Failed(self.dpop.answer(e)),
            unknown => unknown,
        }
    }

    /// The error for a kid still unknown after the refetch.
    pub(crate) fn unknown_key(&self) -> Error {
        self.dpop.answer(Invalid::UnknownKey.into())
    }

    /// Everything but finding the key.
    pub(crate) fn check(
        &self,
        token: &str,
        header: &Header,
        key: &Key,
        now: i64,
    ) -> Result<Claims, Error> {
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

    /// Fetches the JWK Set (see [`KeyCache::refetch`]), leaving out the
    /// keys the issuer has distrusted.
    pub(crate) async fn refetch_keys(
        &self,
        endpoints: &Endpoints,
        kid: Option<&str>,
        force: bool,
    ) -> Result<Option<Duration>, Error> {
        self.keys
            .refetch(
                kid,
                force,
                || self.issuer.jwks(&endpoints.jwks_uri),
                |kid| self.denylist.is_distrusted(kid),
            )
            .await
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

/// The kit has no injected clock: a resource server verifies against the
/// wall clock.
#[allow(clippy::disallowed_methods)]
pub(crate) fn unix_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
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

#[cfg(test)]
mod tests {
    //! The claim and revocation checks against tokens signed here, with a
    //! key as the issuer publishes it (a JWK), without any issuer running
    //! (see `crate::testing`).

    use jsonwebtoken::Algorithm;
    use jsonwebtoken::EncodingKey;
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{claims, inner, sign, signing_key};

    fn check(
        inner: &Inner,
        key: &(EncodingKey, Key),
        claims: &Value,
        now: i64,
    ) -> Result<Claims, Error> {
        let (token, header) = sign(&key.0, claims);
        inner.check(&token, &header, &key.1, now)
    }

    fn invalid(result: Result<Claims, Error>) -> Invalid {
        match result {
            Err(Error::InvalidToken(why)) => why,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[test]
    fn a_token_as_tessera_issues_it_passes() {
        let (inner, key, now) = (inner(), signing_key(), 1_800_000_000);
        let claims = check(&inner, &key, &claims(now), now).unwrap();
        assert_eq!(claims.client_id, "mobile");
    }

    #[test]
    fn each_rfc9068_claim_is_checked() {
        let (inner, key, now) = (inner(), signing_key(), 1_800_000_000);
        let with = |field: &str, value: Value| {
            let mut c = claims(now);
            c[field] = value;
            c
        };
        let cases = [
            (
                with("iss", json!("https://evil.example")),
                Invalid::WrongIssuer,
            ),
            (with("aud", json!("another-api")), Invalid::WrongAudience),
            (with("exp", json!(now - 11)), Invalid::Expired),
            (with("nbf", json!(now + 11)), Invalid::NotYetValid),
            (with("iat", json!(now + 11)), Invalid::IssuedInFuture),
            (with("exp", json!(now + 601)), Invalid::TooLongLived),
            (with("jti", json!("")), Invalid::Malformed),
            (with("client_id", json!("")), Invalid::Malformed),
        ];
        for (claims, expected) in cases {
            assert_eq!(
                invalid(check(&inner, &key, &claims, now)),
                expected,
                "{claims}"
            );
        }
        // Within the leeway (10 s) is fine.
        assert!(check(&inner, &key, &with("exp", json!(now - 9)), now).is_ok());
        assert!(check(&inner, &key, &with("iat", json!(now + 9)), now).is_ok());
    }

    #[test]
    fn the_key_decides_the_algorithm_and_the_signature_must_be_its() {
        let (inner, key, now) = (inner(), signing_key(), 1_800_000_000);
        let (token, mut header) = sign(&key.0, &claims(now));
        header.alg = Algorithm::HS256;
        assert_eq!(
            invalid(inner.check(&token, &header, &key.1, now)),
            Invalid::WrongAlgorithm
        );
        let other = signing_key();
        let (forged, header) = sign(&other.0, &claims(now));
        assert_eq!(
            invalid(inner.check(&forged, &header, &key.1, now)),
            Invalid::BadSignature
        );
    }

    #[test]
    fn revocations_refuse_by_jti_login_user_and_client() {
        let (inner, key, now) = (inner(), signing_key(), 1_800_000_000);
        let token = claims(now);
        inner.apply([Entry::Client {
            client_id: "mobile".into(),
            not_before: now + 1,
        }]);
        assert_eq!(invalid(check(&inner, &key, &token, now)), Invalid::Revoked);
        let later = claims(now + 1);
        assert!(check(&inner, &key, &later, now + 1).is_ok(), "issued after");
        inner.apply([Entry::AccessToken {
            jti: later["jti"].as_str().unwrap().into(),
            exp: now + 601,
        }]);
        assert_eq!(
            invalid(check(&inner, &key, &later, now + 1)),
            Invalid::Revoked
        );
    }

    #[test]
    fn a_stale_list_fails_closed() {
        let (mut inner, key, now) = (inner(), signing_key(), 1_800_000_000);
        inner.config = inner.config.clone().max_staleness(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            check(&inner, &key, &claims(now), now),
            Err(Error::RevocationsStale { .. })
        ));
    }
}
