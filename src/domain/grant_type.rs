//! The grant types of the token endpoint (RFC 6749 §4.3, §4.4, §6).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    Password,
    RefreshToken,
    ClientCredentials,
    /// The code of the first-party challenge flow (`POST /auth/challenge`).
    AuthorizationCode,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown grant type (supported: password, refresh_token, client_credentials, authorization_code)"
)]
pub struct UnknownGrantType;

impl GrantType {
    /// Every grant type the token endpoint implements.
    pub const ALL: [GrantType; 4] = [
        GrantType::Password,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
        GrantType::AuthorizationCode,
    ];

    pub fn parse(raw: &str) -> Result<GrantType, UnknownGrantType> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == raw)
            .ok_or(UnknownGrantType)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::Password => "password",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::AuthorizationCode => "authorization_code",
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints_and_nothing_else() {
        for grant in GrantType::ALL {
            assert_eq!(GrantType::parse(grant.as_str()), Ok(grant));
        }
        assert_eq!(GrantType::parse("implicit"), Err(UnknownGrantType));
        assert_eq!(GrantType::parse("Password"), Err(UnknownGrantType));
    }
}
