//! Opaque secrets handed to clients: refresh tokens and client secrets.
//! They are 256 random bits behind a prefix, stored only as SHA-256 and never
//! printed: `Debug` redacts them.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

const REFRESH_PREFIX: &str = "tsr_";
const CLIENT_SECRET_PREFIX: &str = "tss_";
/// Longest opaque secret we bother hashing; anything longer is not ours.
pub const MAX_OPAQUE_LEN: usize = 512;

/// SHA-256 of an opaque secret: what the database stores and looks up by.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(secret: &str) -> TokenHash {
        let d = digest(&SHA256, secret.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        TokenHash(out)
    }

    /// Constant-time comparison against a stored hash.
    pub fn matches(&self, stored: &[u8]) -> bool {
        stored.len() == 32 && bool::from(self.0.ct_eq(stored))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({})", URL_SAFE_NO_PAD.encode(&self.0[..6]))
    }
}

fn random_secret(prefix: &str) -> SecretString {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    SecretString::from(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// A refresh token as the client sees it.
pub struct RefreshToken(SecretString);

impl RefreshToken {
    pub fn generate() -> RefreshToken {
        RefreshToken(random_secret(REFRESH_PREFIX))
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.0.expose_secret())
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken([REDACTED])")
    }
}

/// A confidential client's secret.
pub struct ClientSecret(SecretString);

#[derive(Debug, thiserror::Error)]
#[error("client secrets must be 32 to {MAX_OPAQUE_LEN} characters")]
pub struct WeakClientSecret;

impl ClientSecret {
    pub fn generate() -> ClientSecret {
        ClientSecret(random_secret(CLIENT_SECRET_PREFIX))
    }

    /// An operator-chosen secret; it must be long enough that SHA-256 is a
    /// safe way to store it.
    pub fn parse(raw: SecretString) -> Result<ClientSecret, WeakClientSecret> {
        let len = raw.expose_secret().chars().count();
        if !(32..=MAX_OPAQUE_LEN).contains(&len) {
            return Err(WeakClientSecret);
        }
        Ok(ClientSecret(raw))
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.0.expose_secret())
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_long_unique_and_redacted() {
        let a = RefreshToken::generate();
        let b = RefreshToken::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with("tsr_"));
        assert_eq!(a.expose().len(), 4 + 43);
        assert!(!format!("{a:?}").contains(&a.expose()[4..]));
        assert!(a.hash().matches(&TokenHash::of(a.expose()).0));
        assert!(!a.hash().matches(&b.hash().0));
    }

    #[test]
    fn short_client_secrets_are_refused() {
        assert!(ClientSecret::parse(SecretString::from("short")).is_err());
        assert!(ClientSecret::parse(SecretString::from("x".repeat(32))).is_ok());
    }
}
