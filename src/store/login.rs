//! The two statements of a password login, either side of argon2: one
//! counts the attempt against the username and reads the user, the other
//! starts the session and forgets the username's failures. Two short
//! autocommits: a login is the busiest write path after refresh.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::login_throttle::{self, Policy};
use super::users::UserRow;
use crate::domain::{TokenHash, Username};

/// What the database says before the password is checked.
#[derive(Debug)]
pub enum Admission {
    /// The attempt is counted; the user, if there is one by that name.
    Admitted(Option<UserRow>),
    /// Too many failures: nothing was counted.
    Locked(DateTime<Utc>),
}

/// Counts an attempt for `username` before its password is checked, in the
/// statement that reads the user, so that concurrent attempts cannot all
/// slip under the threshold: the attempt that reaches it sets the lock,
/// and every attempt after it sees the lock.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn admit(
    pool: &PgPool,
    username: &Username,
    policy: Policy,
    now: DateTime<Utc>,
) -> sqlx::Result<Admission> {
    let threshold = i32::try_from(policy.threshold).unwrap_or(i32::MAX);
    // A lock lifted between the two statements (an unlock, or it expired)
    // means trying again; the loop is bounded in case of a pathological race.
    for _ in 0..3 {
        // The lock after the n-th consecutive failure (n >= threshold) lasts
        // base * 2^(n - threshold), capped at max. Failures older than `reset`
        // are forgotten. (`$2::timestamptz`: the statement is prepared without
        // parameter types, and Postgres would otherwise read `$2 + interval`
        // as an interval.)
        let row = sqlx::query!(
            r#"WITH counted AS (
                   INSERT INTO login_throttle AS t (username, failures, locked_until, updated_at)
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
                   RETURNING failures
               )
               SELECT EXISTS (SELECT 1 FROM counted) AS "counted!",
                      u.id AS "id?", u.username AS "username?", u.password_hash AS "password_hash?",
                      u.scopes AS "scopes?", u.disabled AS "disabled?"
               FROM (SELECT 1) AS one LEFT JOIN users u ON u.username = $1"#,
            username.as_str(),
            now,
            threshold,
            policy.base.as_secs_f64(),
            policy.max.as_secs_f64(),
            policy.reset.as_secs_f64(),
        )
        .fetch_one(pool)
        .await?;
        if row.counted {
            let user = match (
                row.id,
                row.username,
                row.password_hash,
                row.scopes,
                row.disabled,
            ) {
                (Some(id), Some(username), Some(password_hash), Some(scopes), Some(disabled)) => {
                    Some(UserRow::from_stored(
                        id,
                        username,
                        password_hash,
                        &scopes,
                        disabled,
                    )?)
                }
                _ => None,
            };
            return Ok(Admission::Admitted(user));
        }
        if let Some(until) = login_throttle::locked_until(pool, username.as_str(), now).await? {
            return Ok(Admission::Locked(until));
        }
    }
    Ok(Admission::Locked(now + chrono::Duration::seconds(1)))
}

pub struct NewSession<'a> {
    pub user_id: Uuid,
    /// As the login typed it, parsed: its failures are forgotten.
    pub username: &'a Username,
    /// The password hash the login was verified against.
    pub verified_hash: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// Starts a session (a refresh-token family) with its first refresh token,
/// if the client gets one, and forgets the username's failures: the right
/// password was given. `None`, and nothing written, when the user changed
/// while the password was being checked.
///
/// The password was verified without a lock, and hashing takes a while:
/// under a share lock on the user, the statement makes sure nothing changed
/// meanwhile (password set, user disabled, logged out everywhere). Each of
/// those writers updates the user row, so they either see this session or
/// it waits for them and re-checks the row as they left it. (A condition on
/// another table would not do: it is read as of the statement's start,
/// before the wait.)
#[tracing::instrument(level = "debug", skip_all, fields(client_id = session.client_id, user_id = %session.user_id))]
pub async fn start_session(
    pool: &PgPool,
    session: NewSession<'_>,
    first: Option<&TokenHash>,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        r#"WITH still_valid AS (
               SELECT u.id FROM users u
               WHERE u.id = $1 AND u.password_hash = $2 AND NOT u.disabled
                 AND (u.sessions_revoked_at IS NULL OR u.sessions_revoked_at < $3)
               FOR SHARE OF u
           ), family AS (
               INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at)
               SELECT $4, id, $5, $6, $3, $7 FROM still_valid
               RETURNING id
           ), first AS (
               INSERT INTO refresh_tokens (id, family_id, parent_id, token_hash, created_at)
               SELECT $8, family.id, NULL, $9, $3 FROM family WHERE $9::bytea IS NOT NULL
           ), forgotten AS (
               DELETE FROM login_throttle WHERE username = $10 AND EXISTS (SELECT 1 FROM family)
           )
           SELECT id AS "id!" FROM family"#,
        session.user_id,
        session.verified_hash,
        now,
        Uuid::new_v4(),
        session.client_id,
        session.scope,
        session.expires_at,
        Uuid::new_v4(),
        first.map(TokenHash::as_bytes),
        session.username.as_str(),
    )
    .fetch_optional(pool)
    .await
}
