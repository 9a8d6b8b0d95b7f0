//! A registered OAuth client, parsed once where it leaves the store.

use super::{ClientId, GrantType, Scope};

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
}
