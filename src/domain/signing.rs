//! The asymmetric algorithms access tokens are signed with, and the key
//! that signs. Where keys come from and how they rotate is `keys`' business.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::anyhow;
use jsonwebtoken::{Algorithm, EncodingKey};
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
    pub key: Arc<EncodingKey>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}
