//! The verifier's shared state and its checks: what the public `Verifier`
//! and the background work in `sync` both hold (one `Arc<Inner>`), so that
//! neither depends on the other.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Header;
use jsonwebtoken::errors::ErrorKind;
use tokio::sync::OnceCell;

use crate::config::DEFAULT_MAX_TOKEN_LIFETIME;
use crate::denylist::{Denylist, Entry};
use crate::issuer::{Endpoints, Issuer};
use crate::keys::{Key, KeyCache};
use crate::{Claims, Config, Error, Invalid};

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

pub(crate) enum Lookup {
    /// The header names a kid that is not cached.
    UnknownKid(Box<Header>),
    Failed(Error),
}

impl Inner {
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

pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    //! The claim and revocation checks against tokens signed here, with a
    //! key as the issuer publishes it (a JWK), without any issuer running.

    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use base64::Engine;
    use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
    use jsonwebtoken::{Algorithm, EncodingKey};
    use serde_json::{Value, json};

    use super::*;

    const ISSUER: &str = "https://auth.example.com";

    fn signing_key() -> (EncodingKey, Key) {
        let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .unwrap()
            .to_pkcs8v1()
            .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("k1".into());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        (encoding, crate::keys::parse_key(&jwk).unwrap())
    }

    fn inner() -> Inner {
        let config = Config::new(ISSUER, "tessera")
            .feed_client("orders-api", "a feed client secret of some length")
            .max_token_lifetime(Duration::from_secs(600));
        let inner = Inner {
            issuer: Issuer::new(&config).unwrap(),
            keys: KeyCache::new(config.refetch_interval),
            denylist: Denylist::new(),
            endpoints: OnceCell::new(),
            stats: Counters::default(),
            stale_warned: Mutex::new(None),
            config,
        };
        inner.denylist.mark_loaded();
        inner.denylist.heard_from_issuer();
        inner
    }

    fn claims(now: i64) -> Value {
        json!({
            "iss": ISSUER, "sub": "0b8e4f1c-5a9d-4c7e-9f3a-2d6b1e8c4a70", "aud": "tessera",
            "client_id": "mobile", "scope": "read", "iat": now, "exp": now + 600,
            "jti": "5f2c9a1e-7b3d-4e8f-a6c0-91d4b2e7f358",
        })
    }

    fn sign(key: &EncodingKey, claims: &Value) -> (String, Header) {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some("k1".into());
        let token = jsonwebtoken::encode(&header, claims, key).unwrap();
        (token, header)
    }

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
