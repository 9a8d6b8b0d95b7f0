//! Revocation events (see the migration for the ordering guarantee).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub const CHANNEL: &str = "tessera_revocations";
const WRITE_LOCK: i64 = 0x0074_6573_7372_6576; // "tessrev"

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRow {
    pub seq: i64,
    pub kind: String,
    pub jti: Option<String>,
    pub user_id: Option<Uuid>,
    pub not_before: Option<DateTime<Utc>>,
    pub session_id: Option<Uuid>,
    pub client_id: Option<String>,
    /// A distrusted signing key.
    pub kid: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Takes the revocation write lock for the caller's transaction (every
/// writer of this table takes it: `seq` order is commit order) and
/// announces the change at commit. Taken before a count that decides what
/// to write, so that concurrent writers cannot all count the same number.
pub async fn lock_and_notify(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    // Delivered at commit; the payload is only a nudge, readers catch up by seq.
    sqlx::query!("SELECT pg_notify($1, '')", CHANNEL)
        .fetch_one(conn)
        .await?;
    Ok(())
}

/// Whether the access token with this jti is denylisted already.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn is_denied(conn: &mut PgConnection, jti: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM revocations WHERE kind = 'access_token' AND jti = $1) AS "known!""#,
        jti,
    )
    .fetch_one(conn)
    .await
}

/// Denylists an access token of `client_id` until its own expiry. Idempotent.
/// The caller holds the write lock (`lock_and_notify`): it counted the
/// client's entries under it.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn deny_access_token(
    conn: &mut PgConnection,
    jti: &str,
    client_id: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO revocations (kind, jti, client_id, expires_at, created_at)
         VALUES ('access_token', $1, $2, $3, $4)
         ON CONFLICT (jti) WHERE kind = 'access_token' DO NOTHING",
        jti,
        client_id,
        expires_at,
        now,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Every access token of `user_id` issued before `not_before` is revoked.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn set_not_before(
    conn: &mut PgConnection,
    user_id: Uuid,
    not_before: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    lock_and_notify(conn).await?;
    sqlx::query!(
        "INSERT INTO revocations (kind, user_id, not_before, expires_at, created_at) VALUES ('user', $1, $2, $3, $2)",
        user_id,
        not_before,
        expires_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Live denylisted access tokens of `client_id`.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn live_denied_tokens_of(
    conn: &mut PgConnection,
    client_id: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM revocations
           WHERE kind = 'access_token' AND client_id = $1 AND expires_at > $2"#,
        client_id,
        now,
    )
    .fetch_one(conn)
    .await
}

/// Every access token of `client_id` issued before `not_before` is revoked.
/// Replaces the client's earlier entry (one per client), unless that one
/// reaches further already. The caller holds the write lock
/// (`lock_and_notify`).
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn set_client_not_before(
    conn: &mut PgConnection,
    client_id: &str,
    not_before: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let replaced = sqlx::query!(
        "DELETE FROM revocations WHERE kind = 'client' AND client_id = $1 AND not_before < $2",
        client_id,
        not_before,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO revocations (kind, client_id, not_before, expires_at, created_at)
         VALUES ('client', $1, $2, $3, $4)
         ON CONFLICT (client_id) WHERE kind = 'client' DO NOTHING",
        client_id,
        not_before,
        expires_at,
        now,
    )
    .execute(conn)
    .await?;
    tracing::debug!(replaced = replaced.rows_affected(), "client not-before set");
    Ok(())
}

/// Every token signed by the key `kid` is refused, for as long as
/// `expires_at` (no token it signed, or that anyone can forge with it, is
/// ever valid again: the caller makes that far off).
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn distrust_key(
    conn: &mut PgConnection,
    kid: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    lock_and_notify(conn).await?;
    sqlx::query!(
        "INSERT INTO revocations (kind, kid, expires_at, created_at) VALUES ('distrusted_key', $1, $2, $3)
         ON CONFLICT (kid) WHERE kind = 'distrusted_key' DO NOTHING",
        kid,
        expires_at,
        now,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Every access token of a session is revoked.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn deny_session(
    conn: &mut PgConnection,
    session_id: Uuid,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    lock_and_notify(conn).await?;
    sqlx::query!(
        "INSERT INTO revocations (kind, session_id, expires_at, created_at) VALUES ('session', $1, $2, $3)",
        session_id,
        expires_at,
        now,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Live entries after `after_seq`, oldest first.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn live_since(
    pool: &PgPool,
    after_seq: i64,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<RevocationRow>> {
    sqlx::query_as!(
        RevocationRow,
        "SELECT seq, kind, jti, user_id, not_before, session_id, client_id, kid, expires_at FROM revocations
         WHERE seq > $1 AND expires_at > $2 ORDER BY seq LIMIT $3",
        after_seq,
        now,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// The highest `seq` ever handed out (0 before the first entry), whether
/// or not that entry has since been pruned: no valid cursor is above it.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn last_seq(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('revocations', 'seq')), 0) AS "seq!""#,
    )
    .fetch_one(pool)
    .await
}

/// The highest `seq` ever pruned (0 before the first prune): a cursor
/// below it may have skipped deleted entries.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn pruned_seq(pool: &PgPool) -> sqlx::Result<i64> {
    let seq = sqlx::query_scalar!("SELECT pruned_seq FROM revocation_horizon")
        .fetch_optional(pool)
        .await?;
    Ok(seq.unwrap_or(0))
}

/// Deletes entries that no longer deny anything, and raises the horizon
/// to the highest `seq` deleted (in the same statement, so a reader never
/// sees the rows gone and the horizon not yet moved).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn prune(pool: &PgPool, now: DateTime<Utc>) -> sqlx::Result<u64> {
    let deleted = sqlx::query_scalar!(
        r#"WITH gone AS (DELETE FROM revocations WHERE expires_at <= $1 RETURNING seq),
         horizon AS (
             UPDATE revocation_horizon SET pruned_seq = GREATEST(pruned_seq, (SELECT max(seq) FROM gone))
             WHERE EXISTS (SELECT 1 FROM gone)
         )
         SELECT count(*) AS "deleted!" FROM gone"#,
        now
    )
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(deleted).unwrap_or(0))
}
