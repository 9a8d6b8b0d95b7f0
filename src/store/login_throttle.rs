//! Failed password logins per username and source, and per username across
//! sources (source `'*'`): the account lockout's shared state. An attempt is
//! counted by `login::admit`, in the statement that reads the user.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// Who is attempting, as the lockout counts it.
#[derive(Debug, Clone, Copy)]
pub struct Attempter<'a> {
    /// The source's key: an address (a /64 for IPv6) or a device credential.
    pub source: &'a str,
    /// A device that logged in as this user before (a valid device
    /// credential): the username-wide lock does not apply to it.
    pub trusted: bool,
}

/// The lockout policy, as the SQL needs it.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures from one source that lock that source out.
    pub threshold: u32,
    /// Failures from untrusted sources, all together, that lock the username.
    pub username_threshold: u32,
    pub base: Duration,
    pub max: Duration,
    pub reset: Duration,
}

impl Policy {
    pub fn threshold(&self) -> i32 {
        i32::try_from(self.threshold).unwrap_or(i32::MAX)
    }

    pub fn username_threshold(&self) -> i32 {
        i32::try_from(self.username_threshold).unwrap_or(i32::MAX)
    }
}

/// Forgets every failure of `username`, from every source (an operator's
/// unlock). Returns whether there were any. The username-wide row is
/// locked first, as every writer of these rows does, and zeroed rather
/// than deleted, so that an attempt counting at the same moment finds it.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn reset(conn: &mut PgConnection, username: &str) -> sqlx::Result<bool> {
    let had_wide = sqlx::query_scalar!(
        r#"SELECT (failures > 0 OR locked_until IS NOT NULL OR locks > 0) AS "had!"
           FROM login_throttle WHERE username = $1 AND source = '*' FOR UPDATE"#,
        username
    )
    .fetch_optional(&mut *conn)
    .await?
    .unwrap_or(false);
    sqlx::query!(
        "UPDATE login_throttle SET failures = 0, locks = 0, locked_until = NULL
         WHERE username = $1 AND source = '*'",
        username
    )
    .execute(&mut *conn)
    .await?;
    let sources = sqlx::query!(
        "DELETE FROM login_throttle
         WHERE username = $1 AND source <> '*' AND (failures > 0 OR locked_until IS NOT NULL)",
        username
    )
    .execute(conn)
    .await?;
    Ok(had_wide || sources.rows_affected() > 0)
}

/// The right password, but no session (a scope the user may not have):
/// as `login::start_session` does, the source's failures are forgotten,
/// in the username-wide count too (`login_forgive` in the migrations).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn succeeded(
    pool: &PgPool,
    username: &str,
    who: Attempter<'_>,
    policy: Policy,
) -> sqlx::Result<()> {
    sqlx::query!(
        "SELECT login_forgive($1, $2, $3, $4)",
        username,
        who.source,
        who.trusted,
        policy.username_threshold(),
    )
    .fetch_one(pool)
    .await?;
    Ok(())
}

/// Takes back a reservation whose password was never checked, or whose
/// login failed on the server's side (the hashing queue was full, the
/// database stalled): one failure fewer in each row it was counted in, and
/// no lock below a threshold (`login_release` in the migrations). A user
/// retrying through an incident does not lock themselves out.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn release(
    pool: &PgPool,
    username: &str,
    who: Attempter<'_>,
    policy: Policy,
) -> sqlx::Result<()> {
    sqlx::query!(
        "SELECT login_release($1, $2, $3, $4, $5)",
        username,
        who.source,
        who.trusted,
        policy.threshold(),
        policy.username_threshold(),
    )
    .fetch_one(pool)
    .await?;
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
        "DELETE FROM login_throttle WHERE (username, source) IN (
             SELECT username, source FROM login_throttle
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
