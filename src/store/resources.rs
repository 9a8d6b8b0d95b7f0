//! The registered resources (RFC 8707) and which clients may ask for them.
//! Clients hold their resources in the in-memory mirror: a change to
//! `client_resources` is announced like a change of the client (the
//! `client_resources_notify` trigger).

use chrono::{DateTime, Utc};

use super::clients::stored_secs;
use crate::domain::{ClientId, Resource, ResourceUri, Scope};

/// Registers a resource. False when one with that URI exists.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn insert(
    conn: &mut sqlx::PgConnection,
    resource: &Resource,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let ttl = resource
        .access_ttl
        .map(|ttl| i32::try_from(ttl.as_secs()).unwrap_or(i32::MAX));
    let inserted = sqlx::query!(
        "INSERT INTO resources (uri, scopes, access_ttl_secs, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (uri) DO NOTHING",
        resource.uri.as_str(),
        &resource.scopes.tokens(),
        ttl,
        now,
    )
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// A registered resource and the clients allowed it.
#[derive(Debug)]
pub struct Listed {
    pub resource: Resource,
    pub clients: Vec<String>,
}

/// Every resource, by URI.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn all(conn: &mut sqlx::PgConnection) -> anyhow::Result<Vec<Listed>> {
    sqlx::query!(
        r#"SELECT r.uri, r.scopes, r.access_ttl_secs,
                  ARRAY(SELECT cr.client_id FROM client_resources cr WHERE cr.uri = r.uri
                        ORDER BY cr.client_id) AS "clients!"
           FROM resources r ORDER BY r.uri"#,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|row| {
        Ok(Listed {
            resource: Resource {
                scopes: Scope::from_tokens(&row.scopes)
                    .map_err(|e| anyhow::anyhow!("resource {}: stored scopes: {e}", row.uri))?,
                uri: ResourceUri::from_stored(row.uri),
                access_ttl: stored_secs(row.access_ttl_secs),
            },
            clients: row.clients,
        })
    })
    .collect()
}

/// Deletes a resource (clients lose it). False when there was none.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn delete(conn: &mut sqlx::PgConnection, uri: &ResourceUri) -> sqlx::Result<bool> {
    let deleted = sqlx::query!("DELETE FROM resources WHERE uri = $1", uri.as_str())
        .execute(conn)
        .await?;
    Ok(deleted.rows_affected() == 1)
}

/// The URIs among `uris` that are not registered.
pub async fn unknown(
    conn: &mut sqlx::PgConnection,
    uris: &[ResourceUri],
) -> sqlx::Result<Vec<String>> {
    let uris: Vec<&str> = uris.iter().map(ResourceUri::as_str).collect();
    sqlx::query_scalar!(
        r#"SELECT u AS "uri!" FROM unnest($1::text[]) AS u
           WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE r.uri = u)"#,
        &uris as &[&str],
    )
    .fetch_all(conn)
    .await
}

/// Replaces the resources a client may ask for (all registered: see
/// `unknown`).
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn set_for_client(
    conn: &mut sqlx::PgConnection,
    client_id: &ClientId,
    uris: &[ResourceUri],
) -> sqlx::Result<()> {
    let uris: Vec<&str> = uris.iter().map(ResourceUri::as_str).collect();
    sqlx::query!(
        "WITH gone AS (
             DELETE FROM client_resources WHERE client_id = $1 AND NOT (uri = ANY($2))
         )
         INSERT INTO client_resources (client_id, uri)
         SELECT $1, u FROM unnest($2::text[]) AS u
         ON CONFLICT DO NOTHING",
        client_id.as_str(),
        &uris as &[&str],
    )
    .execute(conn)
    .await?;
    Ok(())
}
