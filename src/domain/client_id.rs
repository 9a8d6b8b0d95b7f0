//! Client ids. A client acting as itself gets tokens whose `sub` is its
//! client id, and a user's tokens have the user's UUID as `sub`; so that a
//! `sub` names one party only (RFC 9068 §5), a client id may never be
//! something that parses as a UUID, in any spelling (hyphenated or not,
//! braced, `urn:uuid:`, any case). The database refuses them too.

use std::fmt;

pub const MAX_CLIENT_ID_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidClientId {
    #[error("client_id must be 1 to {MAX_CLIENT_ID_LEN} bytes")]
    Length,
    #[error("client_id may contain only ASCII letters, digits and `.`, `-`, `_`, `~`")]
    BadCharacters,
    #[error("client_id `cli` is reserved for the command line in the audit trail")]
    Reserved,
    #[error("client_id must not be a UUID: user ids are UUIDs, and the two share the `sub` claim")]
    LooksLikeUserId,
}

impl ClientId {
    pub fn parse(raw: &str) -> Result<ClientId, InvalidClientId> {
        if raw.is_empty() || raw.len() > MAX_CLIENT_ID_LEN {
            return Err(InvalidClientId::Length);
        }
        if uuid::Uuid::try_parse(raw).is_ok() {
            return Err(InvalidClientId::LooksLikeUserId);
        }
        // Printable ASCII without `:` (it separates id and secret in HTTP
        // Basic, RFC 6749 §2.3.1), so that no id can look like another
        // (full-width digits, invisible or direction characters).
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_~".contains(&b))
        {
            return Err(InvalidClientId::BadCharacters);
        }
        // The audit trail's name for the command line.
        if raw.eq_ignore_ascii_case("cli") {
            return Err(InvalidClientId::Reserved);
        }
        Ok(ClientId(raw.to_owned()))
    }

    /// An id read back from the database: it was checked when written
    /// (and the table refuses UUIDs), possibly under older, looser rules
    /// that must not lock an existing client out.
    pub fn from_stored(id: String) -> ClientId {
        ClientId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_every_spelling_of_a_uuid() {
        let id = uuid::Uuid::new_v4();
        for spelling in [
            id.to_string(),
            id.to_string().to_uppercase(),
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
        ] {
            assert_eq!(
                ClientId::parse(&spelling),
                Err(InvalidClientId::LooksLikeUserId),
                "{spelling}"
            );
        }
        assert!(ClientId::parse("mobile").is_ok());
        assert!(ClientId::parse("svc-3f2a").is_ok());
        assert_eq!(ClientId::parse(""), Err(InvalidClientId::Length));
        assert_eq!(ClientId::parse("a:b"), Err(InvalidClientId::BadCharacters));
        assert_eq!(ClientId::parse("a b"), Err(InvalidClientId::BadCharacters));
        assert_eq!(
            ClientId::parse("１4b7289c"),
            Err(InvalidClientId::BadCharacters)
        );
        assert_eq!(
            ClientId::parse("svc\u{200b}"),
            Err(InvalidClientId::BadCharacters)
        );
        assert_eq!(ClientId::parse("CLI"), Err(InvalidClientId::Reserved));
    }
}
