use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::{Client, ClientId, GrantType, Scope};

struct ClientRow {
    pub client_id: String,
    pub secret_hash: Option<Vec<u8>>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub disabled: bool,
    pub dpop_bound_access_tokens: bool,
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
    dpop_bound: bool,
    now: DateTime<Utc>,
) -> Result<(), CreateClientError> {
    sqlx::query!(
        "INSERT INTO clients (client_id, secret_hash, grant_types, scopes, dpop_bound_access_tokens, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        client_id.as_str(),
        secret_hash,
        // A type override: the macro would check a text[] parameter against
        // `&[String]` only.
        &grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>() as &[&str],
        &scopes.tokens(),
        dpop_bound,
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

/// Channel on which the `clients_notify` trigger announces each changed
/// client_id, at commit.
pub const CHANNEL: &str = "tessera_clients";

/// Every client, for the in-memory mirror on each instance.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn all(pool: &PgPool) -> anyhow::Result<Vec<Client>> {
    sqlx::query_as!(
        ClientRow,
        "SELECT client_id, secret_hash, grant_types, scopes, disabled, dpop_bound_access_tokens FROM clients",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(Client::try_from)
    .collect()
}

/// These clients, as they are now (ids not found are left out).
#[tracing::instrument(level = "debug", skip_all, fields(count = client_ids.len()))]
pub async fn find_many(pool: &PgPool, client_ids: &[String]) -> anyhow::Result<Vec<Client>> {
    sqlx::query_as!(
        ClientRow,
        "SELECT client_id, secret_hash, grant_types, scopes, disabled, dpop_bound_access_tokens FROM clients WHERE client_id = ANY($1)",
        client_ids,
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(Client::try_from)
    .collect()
}

/// Answers at once: proves the connection alive (the listener's heartbeat).
pub async fn ping(conn: &mut sqlx::postgres::PgListener) -> sqlx::Result<()> {
    sqlx::query!("SELECT 1 AS alive").fetch_one(conn).await?;
    Ok(())
}

/// Disables or enables a client. False when there is no such client.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn set_disabled(
    conn: &mut sqlx::PgConnection,
    client_id: &ClientId,
    disabled: bool,
) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "UPDATE clients SET disabled = $2 WHERE client_id = $1",
        client_id.as_str(),
        disabled,
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Replaces a confidential client's secret. False when there is no such
/// client, or it is public (a public client never gets a secret this way:
/// that would change what it is).
#[tracing::instrument(level = "debug", skip(conn, secret_hash))]
pub async fn set_secret(
    conn: &mut sqlx::PgConnection,
    client_id: &ClientId,
    secret_hash: &[u8],
) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "UPDATE clients SET secret_hash = $2 WHERE client_id = $1 AND secret_hash IS NOT NULL",
        client_id.as_str(),
        secret_hash,
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Whether every token request of the client must carry a DPoP proof.
/// False when there is no such client.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn set_dpop_bound(
    conn: &mut sqlx::PgConnection,
    client_id: &ClientId,
    bound: bool,
) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "UPDATE clients SET dpop_bound_access_tokens = $2 WHERE client_id = $1",
        client_id.as_str(),
        bound,
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Locks a client's row for a change; whether it is confidential, or
/// `None` when there is no such client.
pub async fn lock_is_confidential(
    conn: &mut sqlx::PgConnection,
    client_id: &ClientId,
) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar!(
        r#"SELECT secret_hash IS NOT NULL AS "confidential!" FROM clients WHERE client_id = $1 FOR UPDATE"#,
        client_id.as_str(),
    )
    .fetch_optional(conn)
    .await
}

/// Replaces what a client may ask for. False when there is no such client.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn set_grants(
    conn: &mut sqlx::PgConnection,
    client_id: &ClientId,
    grant_types: &[GrantType],
    scopes: &Scope,
) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "UPDATE clients SET grant_types = $2, scopes = $3 WHERE client_id = $1",
        client_id.as_str(),
        &grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>() as &[&str],
        &scopes.tokens(),
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// The id is not logged: until it is found, it may be a pasted secret.
/// Stored grant types and scopes are parsed here, once.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find(pool: &PgPool, client_id: &str) -> anyhow::Result<Option<Client>> {
    let row = sqlx::query_as!(
        ClientRow,
        "SELECT client_id, secret_hash, grant_types, scopes, disabled, dpop_bound_access_tokens FROM clients WHERE client_id = $1",
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
            dpop_bound_access_tokens: row.dpop_bound_access_tokens,
        })
    }
}
