//! The asymmetric algorithms access tokens are signed with, and the key
//! that signs. Where keys come from and how they rotate is `keys`' business.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::anyhow;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

/// The asymmetric algorithms Tessera signs with. There is deliberately no HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
    #[serde(rename = "RS256")]
    Rs256,
}

impl SigningAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Rs256 => Algorithm::RS256,
        }
    }
}

impl FromStr for SigningAlgorithm {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(Self::Es256),
            "EdDSA" => Ok(Self::EdDsa),
            "RS256" => Ok(Self::Rs256),
            other => Err(anyhow!(
                "unknown signing algorithm `{other}` (ES256, EdDSA or RS256)"
            )),
        }
    }
}

/// What a token is signed with: the active key and its id.
#[derive(Clone)]
pub struct Signer {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    pub key: Arc<SigningKey>,
}

impl Signer {
    /// A JWS in compact form: `header` (its `alg` and `kid` as given) over
    /// `claims`, signed with this key.
    pub fn sign_jws(
        &self,
        header: &jsonwebtoken::Header,
        claims: &impl Serialize,
    ) -> anyhow::Result<String> {
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let signing_input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(header)?),
            b64(&serde_json::to_vec(claims)?)
        );
        let signature = self.key.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", b64(&signature)))
    }
}

/// A private key, parsed once. jsonwebtoken's `EncodingKey` parses (and so
/// validates) the PKCS#8 document again for every signature, which for
/// ES256 cost as much as the signature itself.
pub enum SigningKey {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

impl SigningKey {
    pub fn from_pkcs8(algorithm: SigningAlgorithm, der: &[u8]) -> anyhow::Result<SigningKey> {
        let invalid = |e| anyhow!("stored {} key is not valid PKCS#8: {e}", algorithm.as_str());
        Ok(match algorithm {
            SigningAlgorithm::Es256 => SigningKey::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            SigningAlgorithm::EdDsa => SigningKey::EdDsa(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            SigningAlgorithm::Rs256 => {
                SigningKey::Rs256(RsaKeyPair::from_pkcs8(der).map_err(|e| invalid(e.to_string()))?)
            }
        })
    }

    /// The JWS signature of `message` (ES256: r || s, as JWS wants).
    pub fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let failed = |_| anyhow!("signing failed");
        match self {
            SigningKey::Es256(key) => Ok(key
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            SigningKey::EdDsa(key) => Ok(key.sign(message).as_ref().to_vec()),
            SigningKey::Rs256(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
        }
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

/// Signing keys distrusted after a compromise, by kid: shared by the key
/// ring, which stops publishing, trusting and signing with them the moment
/// one is added, and the revocation mirror, which hears of them from any
/// instance. It only grows: a distrusted key is never trusted again.
#[derive(Debug, Default)]
pub struct Distrusted {
    kids: RwLock<HashSet<String>>,
    /// Bumped by every addition, so readers notice one with an atomic load.
    generation: AtomicU64,
}

impl Distrusted {
    /// Adds a kid; whether it was new.
    pub fn insert(&self, kid: &str) -> bool {
        let added = self
            .kids
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kid.to_owned());
        if added {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        added
    }

    pub fn contains(&self, kid: &str) -> bool {
        // Every token check asks: with no key ever distrusted (the usual
        // case), one atomic load answers.
        if self.generation() == 0 {
            return false;
        }
        self.kids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(kid)
    }

    /// Changes with every addition.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}
