//! The audit trail: admin API calls and CLI changes, written in the same
//! transaction as the change they record, and admin calls refused to a
//! valid token (outcome `denied` without the `admin` scope; `not_found`,
//! `conflict`, `invalid` or `refused` for an admin token's).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
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
    /// A valid token without the scope the call needs (403).
    Denied,
    /// An admin token's call naming something that does not exist (404).
    NotFound,
    /// An admin token's call clashing with what exists (409).
    Conflict,
    /// An admin token's call refused as invalid (400).
    Invalid,
    /// An admin token's call refused otherwise (any other 4xx).
    Refused,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::NotFound => "not_found",
            Outcome::Conflict => "conflict",
            Outcome::Invalid => "invalid",
            Outcome::Refused => "refused",
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
/// per caller, call, outcome and `key` (what else tells refusals apart):
/// any token holder can knock, and the table must not grow with how often
/// they do. The unique key makes that hold for concurrent refusals too:
/// of any number arriving at once, one row is written.
#[tracing::instrument(level = "debug", skip_all, fields(action = entry.action))]
pub async fn record_refusal(
    conn: &mut PgConnection,
    entry: Entry<'_>,
    key: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    // Computed here rather than with date_trunc, which would use the
    // session's time zone.
    let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    sqlx::query!(
        "INSERT INTO audit_log (actor, actor_client_id, os_user, action, target, reason, outcome,
                                created_at, refusal_key, refusal_minute)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (actor, action, outcome, refusal_key, refusal_minute)
             WHERE refusal_minute IS NOT NULL DO NOTHING",
        entry.actor,
        entry.actor_client_id,
        entry.os_user,
        entry.action,
        entry.target,
        entry.reason,
        entry.outcome.as_str(),
        now,
        key,
        minute,
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
