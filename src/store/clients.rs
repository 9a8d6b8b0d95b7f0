use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::client::Lifetimes;
use crate::domain::{AttributeName, Client, ClientId, GrantType, Resource, ResourceUri, Scope};

struct ClientRow {
    pub client_id: String,
    pub secret_hash: Option<Vec<u8>>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub disabled: bool,
    pub dpop_bound_access_tokens: bool,
    pub access_ttl_secs: Option<i32>,
    pub refresh_idle_secs: Option<i32>,
    pub refresh_max_secs: Option<i32>,
    pub claims: Vec<String>,
    /// Its resources, as `StoredResource`s.
    pub resources: serde_json::Value,
}

/// A resource as the client query aggregates it.
#[derive(serde::Deserialize)]
struct StoredResource {
    uri: String,
    scopes: Vec<String>,
    access_ttl_secs: Option<i32>,
}

/// Seconds as stored (positive, by a check constraint).
pub(crate) fn stored_secs(secs: Option<i32>) -> Option<Duration> {
    secs.and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
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
        r#"SELECT c.client_id, c.secret_hash, c.grant_types, c.scopes, c.disabled, c.dpop_bound_access_tokens,
                  c.access_ttl_secs, c.refresh_idle_secs, c.refresh_max_secs, c.claims,
                  COALESCE((SELECT jsonb_agg(jsonb_build_object(
                                'uri', r.uri, 'scopes', r.scopes, 'access_ttl_secs', r.access_ttl_secs)
                                ORDER BY r.uri)
                            FROM client_resources cr JOIN resources r ON r.uri = cr.uri
                            WHERE cr.client_id = c.client_id), '[]') AS "resources!"
           FROM clients c"#,
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
        r#"SELECT c.client_id, c.secret_hash, c.grant_types, c.scopes, c.disabled, c.dpop_bound_access_tokens,
                  c.access_ttl_secs, c.refresh_idle_secs, c.refresh_max_secs, c.claims,
                  COALESCE((SELECT jsonb_agg(jsonb_build_object(
                                'uri', r.uri, 'scopes', r.scopes, 'access_ttl_secs', r.access_ttl_secs)
                                ORDER BY r.uri)
                            FROM client_resources cr JOIN resources r ON r.uri = cr.uri
                            WHERE cr.client_id = c.client_id), '[]') AS "resources!"
           FROM clients c WHERE c.client_id = ANY($1)"#,
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

/// Sets a client's own lifetimes (`None`: the server's). False when there
/// is no such client.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn set_lifetimes(
    conn: &mut sqlx::PgConnection,
    client_id: &ClientId,
    lifetimes: Lifetimes,
) -> sqlx::Result<bool> {
    let secs = |d: Option<Duration>| d.map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX));
    let updated = sqlx::query!(
        "UPDATE clients SET access_ttl_secs = $2, refresh_idle_secs = $3, refresh_max_secs = $4
         WHERE client_id = $1",
        client_id.as_str(),
        secs(lifetimes.access),
        secs(lifetimes.refresh_idle),
        secs(lifetimes.refresh_max),
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Sets the user attributes a client's access tokens carry. False when
/// there is no such client.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn set_claims(
    conn: &mut sqlx::PgConnection,
    client_id: &ClientId,
    names: &[AttributeName],
) -> sqlx::Result<bool> {
    let names: Vec<&str> = names.iter().map(AttributeName::as_str).collect();
    let updated = sqlx::query!(
        "UPDATE clients SET claims = $2 WHERE client_id = $1",
        client_id.as_str(),
        &names as &[&str],
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
        r#"SELECT c.client_id, c.secret_hash, c.grant_types, c.scopes, c.disabled, c.dpop_bound_access_tokens,
                  c.access_ttl_secs, c.refresh_idle_secs, c.refresh_max_secs, c.claims,
                  COALESCE((SELECT jsonb_agg(jsonb_build_object(
                                'uri', r.uri, 'scopes', r.scopes, 'access_ttl_secs', r.access_ttl_secs)
                                ORDER BY r.uri)
                            FROM client_resources cr JOIN resources r ON r.uri = cr.uri
                            WHERE cr.client_id = c.client_id), '[]') AS "resources!"
           FROM clients c WHERE c.client_id = $1"#,
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
        let resources = serde_json::from_value::<Vec<StoredResource>>(row.resources)
            .map_err(|e| anyhow::anyhow!("client {}: stored resources: {e}", row.client_id))?
            .into_iter()
            .map(|r| {
                Ok(Resource {
                    scopes: Scope::from_tokens(&r.scopes)
                        .map_err(|e| anyhow::anyhow!("resource {}: stored scopes: {e}", r.uri))?,
                    uri: ResourceUri::from_stored(r.uri),
                    access_ttl: stored_secs(r.access_ttl_secs),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Client {
            id: ClientId::from_stored(row.client_id),
            secret_hash: row.secret_hash,
            grants,
            scopes,
            disabled: row.disabled,
            dpop_bound_access_tokens: row.dpop_bound_access_tokens,
            resources,
            lifetimes: Lifetimes {
                access: stored_secs(row.access_ttl_secs),
                refresh_idle: stored_secs(row.refresh_idle_secs),
                refresh_max: stored_secs(row.refresh_max_secs),
            },
            claims: row
                .claims
                .into_iter()
                .map(AttributeName::from_stored)
                .collect(),
        })
    }
}
