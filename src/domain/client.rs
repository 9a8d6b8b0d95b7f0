//! A registered OAuth client, parsed once where it leaves the store.

use std::time::Duration;

use super::{AttributeName, ClientId, GrantType, Resource, Scope};

#[derive(Debug, Clone)]
pub struct Client {
    pub id: ClientId,
    /// SHA-256 of the secret; `None` for a public client.
    pub secret_hash: Option<Vec<u8>>,
    pub grants: Vec<GrantType>,
    pub scopes: Scope,
    pub disabled: bool,
    /// RFC 9449 §10.2: every token request must carry a DPoP proof.
    pub dpop_bound_access_tokens: bool,
    /// The resources it may ask tokens for (RFC 8707); none: the default
    /// audience only.
    pub resources: Vec<Resource>,
    /// Its own lifetimes; unset ones are the server's.
    pub lifetimes: Lifetimes,
    /// The user attributes its access tokens carry.
    pub claims: Vec<AttributeName>,
}

/// A client's own token lifetimes (each bounded by the server's maxima).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifetimes {
    pub access: Option<Duration>,
    pub refresh_idle: Option<Duration>,
    pub refresh_max: Option<Duration>,
}

impl Client {
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some()
    }

    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grants.contains(&grant)
    }

    /// The allowed resource with this URI, if it is one.
    pub fn resource(&self, uri: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.uri.as_str() == uri)
    }
}
