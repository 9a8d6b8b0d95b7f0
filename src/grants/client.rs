//! Client authentication at the token endpoint (RFC 6749 §2.3).

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::TokenHash;
use crate::error::Error;
use crate::state::AppState;

pub use crate::domain::Client;

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

/// Confidential clients must present their secret; public clients must not
/// present one. Every failure is the same `invalid_client`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn authenticate(
    state: &AppState,
    credentials: ClientCredentials,
) -> Result<Arc<Client>, Error> {
    let client = state
        .clients
        .find(&state.pool, &credentials.client_id)
        .await?
        .ok_or(Error::InvalidClient)?;
    let authenticated = match (&client.secret_hash, &credentials.secret) {
        (Some(stored), Some(given)) => TokenHash::of(given.expose_secret()).matches(stored),
        (None, None) => true,
        _ => false,
    };
    if !authenticated || client.disabled {
        return Err(Error::InvalidClient);
    }
    Ok(client)
}
