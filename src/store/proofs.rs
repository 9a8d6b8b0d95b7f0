//! DPoP proofs used at the grants that write here (see `crate::dpop`):
//! recorded by the statements in `login` and `refresh`, forgotten here.

use chrono::{DateTime, Utc};

/// A DPoP proof used by a request, to record.
pub struct Used {
    /// The proof's identity (`tessera_dpop::identity`).
    pub key: Vec<u8>,
    /// When its window ends: the row is needed until then.
    pub until: DateTime<Utc>,
}

/// Forgets up to `limit` proofs whose window ended before `now`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn prune<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "DELETE FROM dpop_proofs WHERE proof_key IN (
             SELECT proof_key FROM dpop_proofs WHERE expires_at <= $1 LIMIT $2)",
        now,
        limit,
    )
    .execute(executor)
    .await?
    .rows_affected())
}

/// Records a proof inside the caller's transaction; false if it was
/// recorded before (a replay, maybe through another instance).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn record(conn: &mut sqlx::PgConnection, used: &Used) -> sqlx::Result<bool> {
    Ok(sqlx::query!(
        "INSERT INTO dpop_proofs (proof_key, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &used.key,
        used.until,
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}
