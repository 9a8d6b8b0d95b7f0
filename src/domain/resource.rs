//! RFC 8707 resource indicators: the APIs that accept Tessera's tokens, and
//! what a token asked for one of them looks like.

use std::time::Duration;

use super::Scope;

/// Longest resource URI accepted.
const MAX_LEN: usize = 512;

/// A resource's URI: absolute, without a fragment (RFC 8707 §2). Compared
/// exactly as registered: a client asks for it with the same string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceUri(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidResource(pub &'static str);

impl ResourceUri {
    pub fn parse(raw: &str) -> Result<ResourceUri, InvalidResource> {
        if raw.is_empty() || raw.len() > MAX_LEN {
            return Err(InvalidResource(
                "a resource is an absolute URI of at most 512 bytes",
            ));
        }
        // The URL parser would quietly trim or encode these.
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidResource(
                "a resource URI has no spaces or control characters",
            ));
        }
        if raw.contains('#') {
            return Err(InvalidResource(
                "a resource URI must not have a fragment (RFC 8707 §2)",
            ));
        }
        url::Url::parse(raw)
            .map_err(|_| InvalidResource("a resource must be an absolute URI (RFC 8707 §2)"))?;
        Ok(ResourceUri(raw.to_owned()))
    }

    /// A URI as stored: it was parsed when registered.
    pub fn from_stored(raw: String) -> ResourceUri {
        ResourceUri(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A registered resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub uri: ResourceUri,
    /// The scopes it accepts: a token for it carries no others.
    pub scopes: Scope,
    /// Its own access-token lifetime, if it sets one.
    pub access_ttl: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uris_without_fragments_only() {
        for good in [
            "https://api.example.com",
            "https://api.example.com/orders/",
            "urn:example:billing",
        ] {
            assert_eq!(ResourceUri::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "/orders",
            "api.example.com",
            "https://api.example.com/#x",
            "https://api.example.com/ x",
            " https://api.example.com",
        ] {
            assert!(ResourceUri::parse(bad).is_err(), "{bad}");
        }
        assert!(ResourceUri::parse(&format!("https://a/{}", "x".repeat(MAX_LEN))).is_err());
    }
}
