//! A key pair that makes proofs: what a client holds. For Rust clients,
//! tests and benchmarks; the issuer and resource servers only check.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use serde_json::{Value, json};

use crate::proof::token_hash;

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

pub struct ProofKey {
    pair: Pair,
    jwk: Value,
    jkt: String,
}

impl ProofKey {
    /// A new P-256 key (ES256), what the Secure Enclave and Android
    /// Keystore offer.
    pub fn es256() -> Result<ProofKey, aws_lc_rs::error::Unspecified> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)?;
        // Uncompressed point: 0x04 ‖ x ‖ y.
        let point = pair.public_key().as_ref().to_vec();
        let (x, y) = point.get(1..).unwrap_or_default().split_at(32);
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)});
        ProofKey::new(Pair::Es256(pair), jwk)
    }

    /// A new Ed25519 key (EdDSA).
    pub fn ed25519() -> Result<ProofKey, aws_lc_rs::error::Unspecified> {
        let pair = Ed25519KeyPair::generate()?;
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
        ProofKey::new(Pair::EdDsa(pair), jwk)
    }

    fn new(pair: Pair, jwk: Value) -> Result<ProofKey, aws_lc_rs::error::Unspecified> {
        let parsed: Jwk =
            serde_json::from_value(jwk.clone()).map_err(|_| aws_lc_rs::error::Unspecified)?;
        let jkt = parsed
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| aws_lc_rs::error::Unspecified)?;
        Ok(ProofKey { pair, jwk, jkt })
    }

    /// The key's RFC 7638 thumbprint: a bound token's `cnf.jkt`.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    pub fn algorithm(&self) -> &'static str {
        match self.pair {
            Pair::Es256(_) => "ES256",
            Pair::EdDsa(_) => "EdDSA",
        }
    }

    /// A proof for `method` `url` made at `iat` (seconds), with the access
    /// token's hash and the server's nonce when given, and a fresh `jti`.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        iat: i64,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, aws_lc_rs::error::Unspecified> {
        let header = json!({"typ": "dpop+jwt", "alg": self.algorithm(), "jwk": self.jwk});
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": method,
            "htu": url,
            "iat": iat,
        });
        if let Some(token) = access_token {
            claims["ath"] = json!(token_hash(token));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.sign(&header, &claims)
    }

    /// Signs any header and claims with this key, as a compact JWS: for
    /// tests that need a proof the builder above would not make.
    pub fn sign(
        &self,
        header: &Value,
        claims: &Value,
    ) -> Result<String, aws_lc_rs::error::Unspecified> {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match &self.pair {
            Pair::Es256(pair) => pair
                .sign(&SystemRandom::new(), input.as_bytes())?
                .as_ref()
                .to_vec(),
            Pair::EdDsa(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        Ok(format!("{input}.{}", b64(&signature)))
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;
    use crate::{Expected, check};

    #[test]
    fn proofs_of_both_key_types_check_and_name_their_key() {
        let url = Url::parse("https://as.example/auth/token").unwrap();
        for key in [ProofKey::es256().unwrap(), ProofKey::ed25519().unwrap()] {
            let proof = key
                .proof("POST", url.as_str(), 1_000, Some("at"), Some("n"))
                .unwrap();
            let expected = Expected {
                method: "POST",
                url: &url,
                now: 1_010,
                window: 60,
                access_token: Some("at"),
            };
            let checked = check(&proof, &expected).unwrap();
            assert_eq!(checked.jkt, key.jkt());
            assert_eq!(checked.nonce.as_deref(), Some("n"));
        }
    }
}
