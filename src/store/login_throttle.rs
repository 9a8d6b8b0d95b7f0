//! Failed password logins per username: the account lockout's shared state.
//! An attempt is counted by `login::admit`, in the statement that reads the user.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The lockout policy, as the SQL needs it.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub threshold: u32,
    pub base: Duration,
    pub max: Duration,
    pub reset: Duration,
}

/// When the username's lock ends, if it is locked now.
pub async fn locked_until(
    pool: &PgPool,
    username: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar!(
        "SELECT locked_until FROM login_throttle WHERE username = $1 AND locked_until > $2",
        username,
        now,
    )
    .fetch_optional(pool)
    .await?
    .flatten())
}

/// Forgets the failures of `username` (a successful login, or an operator's
/// unlock). Returns whether there were any.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn reset<'e, E: sqlx::PgExecutor<'e>>(executor: E, username: &str) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM login_throttle WHERE username = $1", username)
        .execute(executor)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Takes back a reservation whose password was never checked (the hashing
/// queue was full): one failure fewer, and no lock below the threshold.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn release(pool: &PgPool, username: &str, policy: Policy) -> sqlx::Result<()> {
    let left = sqlx::query_scalar!(
        "UPDATE login_throttle
         SET failures = failures - 1,
             locked_until = CASE WHEN failures - 1 < $2 THEN NULL ELSE locked_until END
         WHERE username = $1 AND failures > 0
         RETURNING failures",
        username,
        i32::try_from(policy.threshold).unwrap_or(i32::MAX),
    )
    .fetch_optional(pool)
    .await?;
    // Back at zero: the row goes, so attempts that were never checked (a
    // flood of 503s) leave nothing behind.
    if left == Some(0) {
        sqlx::query!(
            "DELETE FROM login_throttle WHERE username = $1 AND failures = 0",
            username
        )
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Deletes rows that are not locked and have seen no failure for
/// `policy.reset`: the table holds recent failures, not history. Rows of
/// usernames that do not exist go on the same schedule as the others, so
/// that the lockout behaves the same for both.
/// At most `limit` rows a call (housekeeping repeats it): a table sprayed
/// with made-up usernames is emptied in batches, none of them long.
#[tracing::instrument(level = "debug", skip(executor))]
pub async fn prune<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    policy: Policy,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM login_throttle WHERE username IN (
             SELECT username FROM login_throttle
             WHERE (locked_until IS NULL OR locked_until <= $1)
               AND updated_at <= $1 - make_interval(secs => $2)
             LIMIT $3)",
        now,
        policy.reset.as_secs_f64(),
        limit,
    )
    .execute(executor)
    .await?;
    Ok(done.rows_affected())
}
