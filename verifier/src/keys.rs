//! The issuer's signing keys: the JWK Set, cached for its max-age, with
//! one rate-limited refetch when a token names a kid we do not hold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::Mutex;

use crate::Error;

/// The JWK Set is re-read at least this often, whatever its max-age says.
const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
/// Without `Cache-Control`, the JWK Set is kept this long.
const DEFAULT_CACHE: Duration = Duration::from_secs(300);
/// More keys than this in one set is not a signing-key set.
const MAX_KEYS: usize = 100;

/// A public key and the one algorithm it verifies.
pub(crate) struct Key {
    pub(crate) algorithm: Algorithm,
    pub(crate) decoding: DecodingKey,
    /// Signature and algorithm only: claims are checked by the verifier.
    pub(crate) validation: Validation,
}

pub(crate) struct KeyCache {
    keys: RwLock<Arc<HashMap<String, Arc<Key>>>>,
    loaded: AtomicBool,
    /// When the set was last fetched (or tried); held across a fetch so
    /// concurrent misses wait for one request instead of each sending one.
    last_fetch: Mutex<Option<Instant>>,
    refetch_interval: Duration,
    pub(crate) fetches: AtomicU64,
}

impl KeyCache {
    pub(crate) fn new(refetch_interval: Duration) -> KeyCache {
        KeyCache {
            keys: RwLock::default(),
            loaded: AtomicBool::new(false),
            last_fetch: Mutex::new(None),
            refetch_interval,
            fetches: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, kid: &str) -> Option<Arc<Key>> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.get(kid).cloned()
    }

    /// Caches `key` as if fetched, for tests without an issuer.
    #[cfg(test)]
    pub(crate) fn insert(&self, kid: &str, key: Key) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let mut set = HashMap::clone(&keys);
        set.insert(kid.to_owned(), Arc::new(key));
        *keys = Arc::new(set);
        self.loaded.store(true, Ordering::Release);
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub(crate) fn kids(&self) -> Vec<String> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.keys().cloned().collect()
    }

    /// Fetches the set now if none was fetched within `refetch_interval`
    /// (or `force`, for the periodic refresh), then looks `kid` up again.
    /// A failed fetch keeps the cached keys: verifying goes on with them
    /// while the issuer is down. Keys whose kid is `distrusted` are left out
    /// of the set, whatever it lists (a stale copy of it included).
    pub(crate) async fn refetch<F, Fut>(
        &self,
        kid: Option<&str>,
        force: bool,
        fetch: F,
        distrusted: impl Fn(&str) -> bool,
    ) -> Result<Option<Duration>, Error>
    where
        F: FnOnce() -> Fut,
        Fut:
            std::future::Future<Output = Result<(Vec<serde_json::Value>, Option<Duration>), Error>>,
    {
        let mut last = self.last_fetch.lock().await;
        // Someone else's fetch, while we waited, may have brought it.
        if kid.is_some_and(|kid| self.get(kid).is_some()) {
            return Ok(None);
        }
        if !force && last.is_some_and(|at| at.elapsed() < self.refetch_interval) {
            return Ok(None);
        }
        *last = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (jwks, max_age) = fetch().await?;
        let mut keys = parse_set(&jwks);
        keys.retain(|kid, _| !distrusted(kid));
        if keys.is_empty() {
            return Err(Error::Issuer(
                "the JWK Set holds no usable signing key".into(),
            ));
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        self.loaded.store(true, Ordering::Release);
        Ok(Some(
            max_age
                .unwrap_or(DEFAULT_CACHE)
                .clamp(self.refetch_interval, MAX_CACHE),
        ))
    }
}

/// Every usable signing key of a set; others (encryption keys, HMAC
/// secrets, unknown types, keys without kid) are skipped one by one.
fn parse_set(keys: &[serde_json::Value]) -> HashMap<String, Arc<Key>> {
    keys.iter()
        .take(MAX_KEYS)
        .filter_map(|value| {
            let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
            let kid = jwk.common.key_id.clone()?;
            let key = parse_key(&jwk)?;
            Some((kid, Arc::new(key)))
        })
        .collect()
}

/// The algorithm comes from the key (its `alg`, else its curve), never from
/// a token: a token's header may only repeat it.
pub(crate) fn parse_key(jwk: &Jwk) -> Option<Key> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(p))
            if p.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (Some(KeyAlgorithm::ES384), AlgorithmParameters::EllipticCurve(p))
            if p.curve == EllipticCurve::P384 =>
        {
            Algorithm::ES384
        }
        (Some(KeyAlgorithm::EdDSA), AlgorithmParameters::OctetKeyPair(p))
            if p.curve == EllipticCurve::Ed25519 =>
        {
            Algorithm::EdDSA
        }
        (Some(KeyAlgorithm::RS256), AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (Some(KeyAlgorithm::RS384), AlgorithmParameters::RSA(_)) => Algorithm::RS384,
        (Some(KeyAlgorithm::RS512), AlgorithmParameters::RSA(_)) => Algorithm::RS512,
        (Some(KeyAlgorithm::PS256), AlgorithmParameters::RSA(_)) => Algorithm::PS256,
        (Some(KeyAlgorithm::PS384), AlgorithmParameters::RSA(_)) => Algorithm::PS384,
        (Some(KeyAlgorithm::PS512), AlgorithmParameters::RSA(_)) => Algorithm::PS512,
        // Without `alg`, a curve names one algorithm; an RSA key does not.
        (None, AlgorithmParameters::EllipticCurve(p)) if p.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        (None, AlgorithmParameters::EllipticCurve(p)) if p.curve == EllipticCurve::P384 => {
            Algorithm::ES384
        }
        (None, AlgorithmParameters::OctetKeyPair(p)) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    Some(Key {
        algorithm,
        decoding,
        validation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_get_their_algorithm_from_the_key_and_odd_ones_are_skipped() {
        let ec = json!({"kty":"EC","crv":"P-256","kid":"ec","use":"sig",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let mut mislabelled = ec.clone();
        mislabelled["alg"] = json!("ES384");
        mislabelled["kid"] = json!("mislabelled");
        let mut encryption = ec.clone();
        encryption["use"] = json!("enc");
        encryption["kid"] = json!("enc");
        let hmac = json!({"kty":"oct","k":"c2VjcmV0","kid":"hmac","alg":"HS256"});
        let rsa_without_alg = json!({"kty":"RSA","n":"sXch","e":"AQAB","kid":"rsa"});
        let unknown = json!({"kty":"XYZ","kid":"new"});
        let set = parse_set(&[ec, mislabelled, encryption, hmac, rsa_without_alg, unknown]);
        assert_eq!(set.keys().collect::<Vec<_>>(), ["ec"]);
        assert_eq!(set["ec"].algorithm, Algorithm::ES256);
    }

    #[tokio::test]
    async fn distrusted_kids_are_left_out_of_every_fetched_set() {
        let (_, k1) = crate::testing::signing_jwk("k1");
        let (_, k2) = crate::testing::signing_jwk("k2");
        let set = vec![json!(k1), json!(k2)];
        let cache = KeyCache::new(Duration::from_secs(5));
        let fetched = cache
            .refetch(
                None,
                true,
                || async { Ok((set.clone(), None)) },
                |kid| kid == "k1",
            )
            .await;
        assert!(fetched.is_ok());
        assert!(cache.get("k1").is_none());
        assert!(cache.get("k2").is_some());
        // A set of nothing but distrusted keys is no set: the cache stays.
        let fetched = cache
            .refetch(None, true, || async { Ok((set.clone(), None)) }, |_| true)
            .await;
        assert!(fetched.is_err());
        assert_eq!(cache.kids(), ["k2"]);
    }
}
