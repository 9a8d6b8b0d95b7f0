//! Clients: registration.

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::{Actor, Ops, Reason};
use crate::domain::{ClientId, ClientSecret, GrantType, Scope};
use crate::error::Error;
use crate::store::clients::{self, CreateClientError};

/// Where a confidential client's secret comes from.
pub enum SecretChoice {
    /// A public client (a mobile app): no secret.
    None,
    /// Generate one and hand it back, once.
    Generate,
    /// The operator's own (at least 32 characters).
    Given(SecretString),
}

pub struct NewClient {
    pub id: String,
    pub secret: SecretChoice,
    pub grants: Vec<String>,
    pub scopes: Vec<String>,
}

impl Ops<'_> {
    /// Registers a client. Returns the generated secret, if one was asked
    /// for: it is stored only as a hash, so this is the one time it is seen.
    pub async fn create_client(
        &self,
        actor: &Actor,
        new: NewClient,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<Option<ClientSecret>, Error> {
        let id = ClientId::parse(&new.id)?;
        let grants = new
            .grants
            .iter()
            .map(|g| GrantType::parse(g))
            .collect::<Result<Vec<_>, _>>()?;
        let scope = Scope::from_tokens(&new.scopes)?;
        let (secret, generated) = match new.secret {
            SecretChoice::None if grants.contains(&GrantType::ClientCredentials) => {
                return Err(Error::invalid_request(
                    "client_credentials needs a confidential client (one with a secret)",
                ));
            }
            SecretChoice::None => (None, false),
            SecretChoice::Generate => (Some(ClientSecret::generate()), true),
            SecretChoice::Given(raw) => (Some(ClientSecret::parse(raw)?), false),
        };
        let hash = secret.as_ref().map(ClientSecret::hash);
        let mut tx = self.begin().await?;
        clients::insert(
            &mut tx,
            &id,
            hash.as_ref().map(|h| h.as_bytes()),
            &grants,
            &scope,
            now,
        )
        .await
        .map_err(|e| match e {
            CreateClientError::Exists => Error::Conflict("a client with that id already exists"),
            CreateClientError::Db(e) => e.into(),
        })?;
        self.audit(
            &mut tx,
            actor,
            "client.create",
            Some(id.as_str()),
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(secret.filter(|_| generated))
    }
}
