//! Usernames: any Unicode text a person might type, within limits.

use std::fmt;

pub const MAX_USERNAME_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidUsername {
    #[error("username is empty")]
    Empty,
    #[error("username is longer than {MAX_USERNAME_CHARS} characters")]
    TooLong,
    #[error("username contains control characters or surrounding whitespace")]
    BadCharacters,
}

impl Username {
    pub fn parse(raw: &str) -> Result<Username, InvalidUsername> {
        if raw.is_empty() {
            return Err(InvalidUsername::Empty);
        }
        if raw.chars().count() > MAX_USERNAME_CHARS {
            return Err(InvalidUsername::TooLong);
        }
        if raw.chars().any(char::is_control) || raw.trim() != raw {
            return Err(InvalidUsername::BadCharacters);
        }
        Ok(Username(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_unicode_and_metacharacters_rejects_junk() {
        assert!(Username::parse("zoë'; DROP TABLE users;--").is_ok());
        assert!(Username::parse("用户").is_ok());
        assert_eq!(Username::parse(""), Err(InvalidUsername::Empty));
        assert_eq!(Username::parse(" bob"), Err(InvalidUsername::BadCharacters));
        assert_eq!(
            Username::parse("a\u{0}b"),
            Err(InvalidUsername::BadCharacters)
        );
        assert_eq!(
            Username::parse(&"x".repeat(129)),
            Err(InvalidUsername::TooLong)
        );
        assert!(Username::parse(&"é".repeat(128)).is_ok());
    }
}
