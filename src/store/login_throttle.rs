//! Failed password logins per username: the account lockout's shared state.

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

/// Counts an attempt for `username` before its password is checked, in one
/// statement so that concurrent attempts cannot all slip under the
/// threshold: the attempt that reaches it sets the lock, and every attempt
/// after it sees the lock. Returns `Some(locked_until)` without counting
/// anything when the username is locked.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn reserve(
    pool: &PgPool,
    username: &str,
    policy: Policy,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    let threshold = i32::try_from(policy.threshold).unwrap_or(i32::MAX);
    // A lock lifted between the two statements (an unlock, or it expired)
    // means trying again; the loop is bounded in case of a pathological race.
    for _ in 0..3 {
        // The lock after the n-th consecutive failure (n >= threshold) lasts
        // base * 2^(n - threshold), capped at max. Failures older than `reset`
        // are forgotten. (`$2::timestamptz`: the statement is prepared without
        // parameter types, and Postgres would otherwise read `$2 + interval`
        // as an interval.)
        let counted: Option<i32> = sqlx::query_scalar!(
            "INSERT INTO login_throttle AS t (username, failures, locked_until, updated_at)
             VALUES ($1, 1, CASE WHEN $3 <= 1 THEN $2::timestamptz + make_interval(secs => $4) END, $2)
             ON CONFLICT (username) DO UPDATE SET
                 failures = CASE WHEN t.updated_at <= $2 - make_interval(secs => $6) THEN 1
                                 ELSE t.failures + 1 END,
                 locked_until = CASE
                     WHEN t.updated_at <= $2 - make_interval(secs => $6) THEN
                         CASE WHEN $3 <= 1 THEN $2 + make_interval(secs => $4) END
                     WHEN t.failures + 1 >= $3 THEN
                         $2 + make_interval(secs => LEAST($5, $4 * power(2, LEAST(t.failures + 1 - $3, 40))))
                     END,
                 updated_at = $2
             WHERE t.locked_until IS NULL OR t.locked_until <= $2
             RETURNING failures",
            username,
            now,
            threshold,
            policy.base.as_secs_f64(),
            policy.max.as_secs_f64(),
            policy.reset.as_secs_f64(),
        )
        .fetch_optional(pool)
        .await?;
        if counted.is_some() {
            return Ok(None);
        }
        let locked_until: Option<DateTime<Utc>> = sqlx::query_scalar!(
            "SELECT locked_until FROM login_throttle WHERE username = $1 AND locked_until > $2",
            username,
            now,
        )
        .fetch_optional(pool)
        .await?
        .flatten();
        if locked_until.is_some() {
            return Ok(locked_until);
        }
    }
    Ok(Some(now + chrono::Duration::seconds(1)))
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
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn prune(pool: &PgPool, policy: Policy, now: DateTime<Utc>) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM login_throttle
         WHERE (locked_until IS NULL OR locked_until <= $1)
           AND updated_at <= $1 - make_interval(secs => $2)",
        now,
        policy.reset.as_secs_f64(),
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
