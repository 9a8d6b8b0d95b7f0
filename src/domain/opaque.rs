//! Opaque secrets handed to clients: refresh tokens, client secrets, the
//! challenge flow's `auth_session` and authorization code, recovery codes.
//! They are 256 random bits behind a prefix, stored only as SHA-256 and never
//! printed: `Debug` redacts them.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

const REFRESH_PREFIX: &str = "tsr_";
const CLIENT_SECRET_PREFIX: &str = "tss_";
const CHALLENGE_PREFIX: &str = "tsa_";
const CODE_PREFIX: &str = "tsc_";
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

/// A one-time secret handed to a client, shown once and stored only as
/// its hash.
macro_rules! opaque_token {
    ($(#[$doc:meta])* $name:ident, $prefix:expr) => {
        $(#[$doc])*
        pub struct $name(SecretString);

        impl $name {
            pub fn generate() -> $name {
                $name(random_secret($prefix))
            }

            pub fn hash(&self) -> TokenHash {
                TokenHash::of(self.0.expose_secret())
            }

            pub fn expose(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

opaque_token!(
    /// A refresh token as the client sees it.
    RefreshToken,
    REFRESH_PREFIX
);
opaque_token!(
    /// The draft's `auth_session`: names one login waiting for its second
    /// factor at the challenge endpoint.
    ChallengeToken,
    CHALLENGE_PREFIX
);
opaque_token!(
    /// An authorization code from the challenge endpoint, redeemed once at
    /// the token endpoint.
    AuthorizationCode,
    CODE_PREFIX
);

/// A recovery code: 50 random bits as two groups of five base32 letters
/// (`k3x7q-7mw2p`), easy to copy from paper. Compared (and hashed) without
/// case, spaces or dashes.
pub struct RecoveryCode(SecretString);

/// What recovery codes are stored as: an HMAC keyed by a secret of the
/// deployment, over the user's id and the code. 50 bits are few enough to
/// try them all against a plain hash; without the key, a copy of the
/// database alone does not allow even that, and a code of one user says
/// nothing of another's. The secret is kept sealed under the key-encryption
/// key (`keys::sealed`), not derived from it, so that replacing that key
/// leaves every stored code valid.
pub struct RecoveryKey(aws_lc_rs::hmac::Key);

impl RecoveryKey {
    /// The secret versions before the key-encryption key could be replaced
    /// derived from it: a deployment that existed then keeps it.
    pub fn legacy_secret(kek: &[u8]) -> [u8; 32] {
        use aws_lc_rs::hmac;
        let outer = hmac::Key::new(hmac::HMAC_SHA256, kek);
        let mut secret = [0u8; 32];
        secret.copy_from_slice(hmac::sign(&outer, b"tessera recovery code v1").as_ref());
        secret
    }

    pub fn from_secret(secret: &[u8]) -> RecoveryKey {
        RecoveryKey(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            secret,
        ))
    }

    /// The key versions before the key-encryption key could be replaced
    /// used: derived from `kek`.
    pub fn derive(kek: &[u8]) -> RecoveryKey {
        RecoveryKey::from_secret(&RecoveryKey::legacy_secret(kek))
    }

    /// The stored form of a code as typed, or `None` if it cannot be one.
    pub fn hash(&self, user_id: uuid::Uuid, typed: &str) -> Option<TokenHash> {
        let normal = RecoveryCode::normalise(typed)?;
        let mut context = aws_lc_rs::hmac::Context::with_key(&self.0);
        context.update(user_id.as_bytes());
        context.update(normal.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        Some(TokenHash(out))
    }
}

impl RecoveryCode {
    pub fn generate() -> RecoveryCode {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut bytes = [0u8; 10];
        rand::fill(&mut bytes);
        let letters: String = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
            .collect();
        RecoveryCode(SecretString::from(format!(
            "{}-{}",
            &letters[..5],
            &letters[5..]
        )))
    }

    /// A code as typed, without case, spaces or dashes; `None` if it
    /// cannot be one.
    fn normalise(typed: &str) -> Option<String> {
        let normal: String = typed
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        (normal.len() == 10 && normal.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(normal)
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode([REDACTED])")
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
    fn recovery_codes_are_typed_loosely_and_hashed_per_user_and_key() {
        let key = RecoveryKey::derive(b"secret");
        let (alice, bob) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let code = RecoveryCode::generate();
        assert_eq!(code.expose().len(), 11);
        let typed = code.expose().to_uppercase().replace('-', " ");
        let stored = key.hash(alice, code.expose()).unwrap();
        assert_eq!(key.hash(alice, &typed), Some(stored.clone()));
        assert_ne!(key.hash(bob, code.expose()), Some(stored.clone()));
        assert_ne!(
            RecoveryKey::derive(b"other").hash(alice, code.expose()),
            Some(stored)
        );
        assert_eq!(key.hash(alice, "short"), None);
    }

    #[test]
    fn short_client_secrets_are_refused() {
        assert!(ClientSecret::parse(SecretString::from("short")).is_err());
        assert!(ClientSecret::parse(SecretString::from("x".repeat(32))).is_ok());
    }
}
