//! Key material: generating signing keys and turning them into what
//! `jsonwebtoken` signs with and publishes (sealing them at rest: `kek`).

use anyhow::{Context, anyhow};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};

use super::SigningAlgorithm;

/// A fresh private key as PKCS#8 DER (v1 for Ed25519, which `jsonwebtoken` requires).
pub fn generate(algorithm: SigningAlgorithm) -> anyhow::Result<Vec<u8>> {
    let der = match algorithm {
        SigningAlgorithm::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map(|d| d.as_ref().to_vec()),
        SigningAlgorithm::EdDsa => Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map(|d| d.as_ref().to_vec()),
        SigningAlgorithm::Rs256 => {
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .and_then(|k| AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&k))
                .map(|d| d.as_ref().to_vec())
        }
    };
    der.map_err(|_| anyhow!("generating a {} key failed", algorithm.as_str()))
}

/// Wraps PKCS#8 DER in PEM so `jsonwebtoken` extracts what its backend wants
/// (for RSA that is the inner PKCS#1 key).
pub fn encoding_key(algorithm: SigningAlgorithm, pkcs8: &[u8]) -> anyhow::Result<EncodingKey> {
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8)
    );
    let key = match algorithm {
        SigningAlgorithm::Es256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        SigningAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem.as_bytes()),
        SigningAlgorithm::Rs256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
    };
    key.with_context(|| format!("stored {} key is not valid PKCS#8", algorithm.as_str()))
}

/// The public JWK published in the JWKS, with `kid`, `alg` and `use: sig`.
pub fn public_jwk(
    algorithm: SigningAlgorithm,
    key: &EncodingKey,
    kid: &str,
) -> anyhow::Result<Jwk> {
    let mut jwk = Jwk::from_encoding_key(key, algorithm.jwt())
        .with_context(|| format!("deriving the public JWK of {kid}"))?;
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(jwk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_and_publishes() {
        for alg in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
        ] {
            let der = generate(alg).unwrap();
            let key = encoding_key(alg, &der).unwrap();
            let jwk = public_jwk(alg, &key, "k").unwrap();
            let mut header = jsonwebtoken::Header::new(alg.jwt());
            header.kid = Some("k".into());
            let token =
                jsonwebtoken::encode(&header, &serde_json::json!({"sub": "x"}), &key).unwrap();
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let mut validation = jsonwebtoken::Validation::new(alg.jwt());
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
        }
    }
}
