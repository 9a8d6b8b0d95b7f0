use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::ClientId;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRow {
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
    grant_types: &[String],
    scopes: &[String],
    now: DateTime<Utc>,
) -> Result<(), CreateClientError> {
    sqlx::query(
        "INSERT INTO clients (client_id, secret_hash, grant_types, scopes, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(client_id.as_str())
    .bind(secret_hash)
    .bind(grant_types)
    .bind(scopes)
    .bind(now)
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
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find(pool: &PgPool, client_id: &str) -> sqlx::Result<Option<ClientRow>> {
    sqlx::query_as::<_, ClientRow>(
        "SELECT client_id, secret_hash, grant_types, scopes, disabled FROM clients WHERE client_id = $1",
    )
    .bind(client_id)
    .fetch_optional(pool)
    .await
}
