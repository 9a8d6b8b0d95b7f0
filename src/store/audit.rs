//! The admin audit trail, written in the same transaction as the action.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

pub struct Entry<'a> {
    pub actor: &'a str,
    pub actor_client_id: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub reason: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub actor: String,
    pub actor_client_id: String,
    pub action: String,
    pub target: Option<String>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[tracing::instrument(level = "debug", skip_all, fields(action = entry.action))]
pub async fn record(
    conn: &mut PgConnection,
    entry: Entry<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor, actor_client_id, action, target, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.actor)
    .bind(entry.actor_client_id)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.reason)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Newest first; `before` is the id cursor from the previous page.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn page(pool: &PgPool, before: Option<i64>, limit: i64) -> sqlx::Result<Vec<AuditRow>> {
    sqlx::query_as::<_, AuditRow>(
        "SELECT id, actor, actor_client_id, action, target, reason, created_at FROM audit_log
         WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}
