//! Key material: generating signing keys, sealing the private half at rest,
//! and turning it into what `jsonwebtoken` signs with and publishes.

use anyhow::{Context, anyhow};
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};

use super::SigningAlgorithm;

/// The AEAD key that seals signing keys in the database. The kid is bound in
/// as associated data, so a sealed key cannot be swapped onto another row.
pub struct KeyEncryptionKey(RandomizedNonceKey);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey([REDACTED])")
    }
}

impl KeyEncryptionKey {
    pub fn new(bytes: &[u8; 32]) -> anyhow::Result<Self> {
        RandomizedNonceKey::new(&AES_256_GCM, bytes)
            .map(Self)
            .map_err(|_| anyhow!("cannot build the key-encryption key"))
    }

    /// Returns `nonce || ciphertext || tag`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(kid.as_bytes()), &mut in_out)
            .map_err(|_| anyhow!("sealing signing key {kid} failed"))?;
        let mut sealed = nonce.as_ref().to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    pub fn open(&self, kid: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        let err = || {
            anyhow!(
                "cannot decrypt signing key {kid}: is keys.encryption_key the one it was sealed with?"
            )
        };
        if sealed.len() < NONCE_LEN {
            return Err(err());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| err())?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut in_out)
            .map_err(|_| err())?;
        Ok(plain.to_vec())
    }
}

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
    fn sealed_keys_open_only_with_the_same_key_and_kid() {
        let kek = KeyEncryptionKey::new(&[7u8; 32]).unwrap();
        let sealed = kek.seal("kid-1", b"private").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"private"));
        assert_eq!(kek.open("kid-1", &sealed).unwrap(), b"private");
        assert!(kek.open("kid-2", &sealed).is_err());
        let other = KeyEncryptionKey::new(&[8u8; 32]).unwrap();
        assert!(other.open("kid-1", &sealed).is_err());
    }

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
