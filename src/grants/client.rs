//! Client authentication at the token endpoint (RFC 6749 §2.3).

use secrecy::{ExposeSecret, SecretString};

use crate::domain::TokenHash;
use crate::error::Error;
use crate::state::AppState;
use crate::store::clients::{self, ClientRow};

/// Who the request says it comes from, however it said it.
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: Option<SecretString>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// An authenticated, enabled client.
#[derive(Debug, Clone)]
pub struct Client(pub ClientRow);

impl Client {
    pub fn id(&self) -> &str {
        &self.0.client_id
    }

    pub fn is_confidential(&self) -> bool {
        self.0.secret_hash.is_some()
    }

    pub fn may_use(&self, grant_type: &str) -> bool {
        self.0.grant_types.iter().any(|g| g == grant_type)
    }
}

/// Confidential clients must present their secret; public clients must not
/// present one. Every failure is the same `invalid_client`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn authenticate(
    state: &AppState,
    credentials: ClientCredentials,
) -> Result<Client, Error> {
    let row = clients::find(&state.pool, &credentials.client_id)
        .await?
        .ok_or(Error::InvalidClient)?;
    let authenticated = match (&row.secret_hash, &credentials.secret) {
        (Some(stored), Some(given)) => TokenHash::of(given.expose_secret()).matches(stored),
        (None, None) => true,
        _ => false,
    };
    if !authenticated || row.disabled {
        return Err(Error::InvalidClient);
    }
    Ok(Client(row))
}
