use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::{Client, ClientId, GrantType, Scope};

struct ClientRow {
    pub client_id: String,
    pub secret_hash: Option<Vec<u8>>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub disabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateClientError {
    #[error("a client with that id already exists")]
    Exists,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[tracing::instrument(level = "debug", skip(conn, secret_hash))]
pub async fn insert(
    conn: &mut sqlx::PgConnection,
    client_id: &ClientId,
    secret_hash: Option<&[u8]>,
    grant_types: &[GrantType],
    scopes: &Scope,
    now: DateTime<Utc>,
) -> Result<(), CreateClientError> {
    sqlx::query!(
        "INSERT INTO clients (client_id, secret_hash, grant_types, scopes, created_at)
         VALUES ($1, $2, $3, $4, $5)",
        client_id.as_str(),
        secret_hash,
        // A type override: the macro would check a text[] parameter against
        // `&[String]` only.
        &grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>() as &[&str],
        &scopes.tokens(),
        now,
    )
    .execute(conn)
    .await
    .map_err(|e| {
        if super::is_unique_violation(&e) {
            CreateClientError::Exists
        } else {
            e.into()
        }
    })?;
    Ok(())
}

/// The id is not logged: until it is found, it may be a pasted secret.
/// Stored grant types and scopes are parsed here, once.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find(pool: &PgPool, client_id: &str) -> anyhow::Result<Option<Client>> {
    let row = sqlx::query_as!(
        ClientRow,
        "SELECT client_id, secret_hash, grant_types, scopes, disabled FROM clients WHERE client_id = $1",
        client_id,
    )
    .fetch_optional(pool)
    .await?;
    row.map(Client::try_from).transpose()
}

impl TryFrom<ClientRow> for Client {
    type Error = anyhow::Error;

    fn try_from(row: ClientRow) -> anyhow::Result<Client> {
        let grants = row
            .grant_types
            .iter()
            .map(|g| GrantType::parse(g))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("client {}: stored grant type: {e}", row.client_id))?;
        let scopes = Scope::from_tokens(&row.scopes)
            .map_err(|e| anyhow::anyhow!("client {}: stored scopes: {e}", row.client_id))?;
        Ok(Client {
            id: ClientId::from_stored(row.client_id),
            secret_hash: row.secret_hash,
            grants,
            scopes,
            disabled: row.disabled,
        })
    }
}
