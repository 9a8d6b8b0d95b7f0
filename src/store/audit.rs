//! The audit trail: admin API calls and CLI changes, written in the same
//! transaction as the change they record, and admin calls refused to a
//! valid token (outcome `denied`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

pub struct Entry<'a> {
    /// The token's `sub`, or `cli`.
    pub actor: &'a str,
    /// The token's `client_id`; none for the CLI.
    pub actor_client_id: Option<&'a str>,
    /// For the CLI: the operating-system user who ran it.
    pub os_user: Option<&'a str>,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A valid token without the scope the call needs.
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub actor: String,
    pub actor_client_id: Option<String>,
    pub os_user: Option<String>,
    pub action: String,
    pub outcome: String,
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
    sqlx::query!(
        "INSERT INTO audit_log (actor, actor_client_id, os_user, action, target, reason, outcome, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        entry.actor,
        entry.actor_client_id,
        entry.os_user,
        entry.action,
        entry.target,
        entry.reason,
        entry.outcome.as_str(),
        now,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records an admin call refused to a valid token, at most once a minute
/// per caller and call: any token holder can knock, and the table must not
/// grow with how often they do.
#[tracing::instrument(level = "debug", skip_all, fields(action = entry.action))]
pub async fn record_refusal(
    conn: &mut PgConnection,
    entry: Entry<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    // `$7::timestamptz`: the statement is prepared without parameter types,
    // and Postgres would otherwise read `$7 - interval` as an interval.
    sqlx::query!(
        "INSERT INTO audit_log (actor, actor_client_id, os_user, action, target, reason, outcome, created_at)
         SELECT $1, $2, $3, $4, $5, $6, 'denied', $7::timestamptz
         WHERE NOT EXISTS (
             SELECT 1 FROM audit_log WHERE outcome = 'denied' AND actor = $1 AND action = $4
             AND created_at > $7 - interval '1 minute')",
        entry.actor,
        entry.actor_client_id,
        entry.os_user,
        entry.action,
        entry.target,
        entry.reason,
        now,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Newest first; `before` is the id cursor from the previous page.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn page(pool: &PgPool, before: Option<i64>, limit: i64) -> sqlx::Result<Vec<AuditRow>> {
    sqlx::query_as!(
        AuditRow,
        "SELECT id, actor, actor_client_id, os_user, action, outcome, target, reason, created_at FROM audit_log
         WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
        before,
        limit,
    )
    .fetch_all(pool)
    .await
}
