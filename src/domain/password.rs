//! Passwords as typed: length rules, never printed. Hashing them is the
//! `hashing` module's job.

use secrecy::{ExposeSecret, SecretString};

pub const MIN_PASSWORD_CHARS: usize = 8;

/// A password as typed, never printed.
pub struct PlainPassword(SecretString);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidPassword {
    #[error("password is longer than {0} bytes")]
    TooLong(usize),
    #[error("password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
}

impl PlainPassword {
    /// For login attempts: only the length cap applies, so the cap (not a
    /// policy) is the only thing an attacker learns.
    pub fn for_login(raw: SecretString, max_len: usize) -> Result<Self, InvalidPassword> {
        if raw.expose_secret().len() > max_len {
            return Err(InvalidPassword::TooLong(max_len));
        }
        Ok(Self(raw))
    }

    /// For setting a password: the length cap and a minimum.
    pub fn new_password(raw: SecretString, max_len: usize) -> Result<Self, InvalidPassword> {
        let pw = Self::for_login(raw, max_len)?;
        if pw.0.expose_secret().chars().count() < MIN_PASSWORD_CHARS {
            return Err(InvalidPassword::TooShort);
        }
        Ok(pw)
    }
}

impl PlainPassword {
    /// The bytes to hash; only the hasher reads them.
    pub(crate) fn expose(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

impl std::fmt::Debug for PlainPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainPassword([REDACTED])")
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, and here is a re-hash at the configured (stronger) cost.
    YesRehashed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_limits() {
        assert!(PlainPassword::for_login(SecretString::from("x".repeat(65)), 64).is_err());
        assert!(PlainPassword::new_password(SecretString::from("short"), 64).is_err());
        assert!(PlainPassword::new_password(SecretString::from("long enough"), 64).is_ok());
    }
}
