//! Sessions and their refresh tokens. Every decision about a presented token is made
//! while holding its session's row lock, so concurrent refreshes serialise.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::proofs::Used;
use crate::domain::{Attributes, Scope, TokenHash};

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_id: String,
    pub scope: Scope,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub user_disabled: bool,
    /// The DPoP key its refresh tokens are bound to, if any.
    pub dpop_jkt: Option<String>,
    /// How its login was authenticated (RFC 8176).
    pub amr: Vec<String>,
    /// When it was last used (refreshed), or started.
    pub last_active: DateTime<Utc>,
    /// Its user's attributes now.
    pub attributes: Attributes,
}

/// A session row as stored; its scope is parsed once, in `lock_by_token`.
struct StoredSession {
    id: Uuid,
    user_id: Uuid,
    client_id: String,
    scope: String,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    user_disabled: bool,
    dpop_jkt: Option<String>,
    amr: Vec<String>,
    last_active: DateTime<Utc>,
    claims: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: Uuid,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A fresh token spent and its child stored, in one statement.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub scope: Scope,
    pub amr: Vec<String>,
    pub attributes: Attributes,
}

/// What else a session must satisfy to be refreshed now.
pub struct Refreshable<'a> {
    /// The scope asked for (space-separated), which must be within the
    /// session's, if any.
    pub requested: Option<&'a str>,
    /// The session's scope must share one of these (the scopes a token
    /// for the requested resource may carry), if set.
    pub overlapping: Option<&'a [String]>,
    /// It must have been used (or started) less than this long ago, if set.
    pub idle: Option<std::time::Duration>,
}

/// What the one-statement refresh did.
#[derive(Debug)]
pub enum Fresh {
    Rotated(Rotated),
    /// Not the common case: nothing spent (see `lock_by_token`).
    NotFresh,
    /// The request's DPoP proof was used before: nothing written.
    ProofReplayed,
}

/// The common case of a refresh in one statement (one round trip): if the
/// presented token is unused and unrevoked, its session live and
/// `client_id`'s, its user enabled and `requested` (space-separated; NULL
/// for all) within the session's scope, lock the session by recording its
/// use, spend the token and store the child. `None` when any of that does
/// not hold: the caller decides why, with the statements below (reuse,
/// grace, errors).
///
/// The session is locked (updated) before the token is (`spent` reads
/// `sess`), and the token update re-checks `used_at IS NULL` against a
/// concurrent winner, so two refreshes with one token cannot both succeed.
/// Nothing is written unless the token is spent, except that the loser of
/// such a race records a use of the session, as the winner did.
///
/// A session bound to a DPoP key rotates only for a proof by that key
/// (`jkt`). The proof (`proof`) is recorded only if the token is spent;
/// if it was recorded before (a replay, maybe through another instance),
/// its primary key fails the whole statement, so nothing is spent. Times are
/// `now` plus however long the statement waited (for the lock, say), so a
/// stall cannot stamp the token as spent earlier than it was.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn rotate_fresh(
    conn: &mut PgConnection,
    presented: &TokenHash,
    client_id: &str,
    child: &TokenHash,
    // The request's DPoP proof: its key's thumbprint, and what to record.
    proof: Option<(&str, &Used)>,
    refreshable: Refreshable<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<Fresh> {
    let row = sqlx::query!(
        r#"WITH sess AS (
               UPDATE sessions f
               SET last_used_at = $3::timestamptz + (clock_timestamp() - statement_timestamp())
               FROM users u
               WHERE f.id = (SELECT session_id FROM refresh_tokens
                             WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL)
                 AND u.id = f.user_id AND NOT u.disabled
                 AND f.client_id = $2 AND f.revoked_at IS NULL AND f.expires_at > $3
                 AND ($4::text IS NULL OR string_to_array($4, ' ') <@ string_to_array(f.scope, ' '))
                 AND (f.dpop_jkt IS NULL OR f.dpop_jkt = $7)
                 AND ($10::text[] IS NULL OR string_to_array(f.scope, ' ') && $10)
                 AND ($11::float8 IS NULL
                      OR COALESCE(f.last_used_at, f.created_at) > $3 - make_interval(secs => $11))
               RETURNING f.id, f.user_id, f.scope, f.amr, u.claims
           ), spent AS (
               UPDATE refresh_tokens t
               SET used_at = $3::timestamptz + (clock_timestamp() - statement_timestamp())
               FROM sess
               WHERE t.token_hash = $1 AND t.session_id = sess.id AND t.used_at IS NULL AND t.revoked_at IS NULL
               RETURNING t.id, t.session_id
           ), child AS (
               INSERT INTO refresh_tokens (id, session_id, parent_id, token_hash, created_at)
               SELECT $5, spent.session_id, spent.id, $6, $3 FROM spent
           ), proof AS (
               INSERT INTO dpop_proofs (proof_key, expires_at)
               SELECT $8, $9 FROM spent WHERE $8::bytea IS NOT NULL
           )
           SELECT sess.id AS "session_id!", sess.user_id AS "user_id!", sess.scope AS "scope!",
                  sess.amr AS "amr!", sess.claims AS "claims!"
           FROM sess JOIN spent ON spent.session_id = sess.id"#,
        presented.as_bytes(),
        client_id,
        now,
        refreshable.requested,
        Uuid::new_v4(),
        child.as_bytes(),
        proof.map(|(jkt, _)| jkt),
        proof.map(|(_, used)| used.key.as_slice()),
        proof.map(|(_, used)| used.until),
        refreshable.overlapping,
        refreshable.idle.map(|idle| idle.as_secs_f64()),
    )
    .fetch_optional(conn)
    .await;
    let row = match row {
        Err(e) if super::is_unique_violation(&e) => return Ok(Fresh::ProofReplayed),
        other => other?,
    };
    let Some(row) = row else {
        return Ok(Fresh::NotFresh);
    };
    Ok(Fresh::Rotated(Rotated {
        scope: Scope::parse(&row.scope).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        session_id: row.session_id,
        user_id: row.user_id,
        amr: row.amr,
        attributes: Attributes::from_stored(row.claims),
    }))
}

/// Locks the session of the token with this hash and returns it with the
/// token as it is now (read after the lock, so never stale).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn lock_by_token(
    conn: &mut PgConnection,
    hash: &TokenHash,
) -> sqlx::Result<Option<(SessionRow, TokenRow)>> {
    let session_id: Option<Uuid> = sqlx::query_scalar!(
        "SELECT session_id FROM refresh_tokens WHERE token_hash = $1",
        hash.as_bytes(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(session_id) = session_id else {
        return Ok(None);
    };
    let stored = sqlx::query_as!(
        StoredSession,
        r#"SELECT f.id, f.user_id, f.client_id, f.scope, f.expires_at, f.revoked_at, u.disabled AS user_disabled, f.dpop_jkt, f.amr,
                COALESCE(f.last_used_at, f.created_at) AS "last_active!", u.claims
         FROM sessions f JOIN users u ON u.id = f.user_id
         WHERE f.id = $1 FOR UPDATE OF f"#,
        session_id,
    )
    .fetch_one(&mut *conn)
    .await?;
    let session = SessionRow {
        scope: Scope::parse(&stored.scope).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        id: stored.id,
        user_id: stored.user_id,
        client_id: stored.client_id,
        expires_at: stored.expires_at,
        revoked_at: stored.revoked_at,
        user_disabled: stored.user_disabled,
        dpop_jkt: stored.dpop_jkt,
        amr: stored.amr,
        last_active: stored.last_active,
        attributes: Attributes::from_stored(stored.claims),
    };
    let token = sqlx::query_as!(
        TokenRow,
        "SELECT id, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
        hash.as_bytes(),
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some((session, token)))
}

/// The child issued when `parent` was used, if it is still live.
pub async fn live_child(conn: &mut PgConnection, parent: Uuid) -> sqlx::Result<Option<TokenRow>> {
    sqlx::query_as!(
        TokenRow,
        "SELECT id, used_at, revoked_at FROM refresh_tokens
         WHERE parent_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1",
        parent,
    )
    .fetch_optional(conn)
    .await
}

pub async fn insert_token(
    conn: &mut PgConnection,
    session_id: Uuid,
    parent_id: Option<Uuid>,
    hash: &TokenHash,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO refresh_tokens (id, session_id, parent_id, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        Uuid::new_v4(),
        session_id,
        parent_id,
        hash.as_bytes(),
        now,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Spends a token and records the session's last use.
pub async fn mark_used(
    conn: &mut PgConnection,
    session_id: Uuid,
    token_id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE refresh_tokens SET used_at = $2 WHERE id = $1",
        token_id,
        now,
    )
    .execute(&mut *conn)
    .await?;
    touch_session(conn, session_id, now).await
}

pub async fn touch_session(
    conn: &mut PgConnection,
    session_id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE sessions SET last_used_at = $2 WHERE id = $1",
        session_id,
        now,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn revoke_token(
    conn: &mut PgConnection,
    token_id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        token_id,
        now,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Returns false when the session was already revoked.
pub async fn revoke_session(
    conn: &mut PgConnection,
    session_id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
        session_id,
        now,
        reason,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A login as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    pub id: Uuid,
    pub client_id: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn live_sessions(
    pool: &PgPool,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<SessionView>> {
    sqlx::query_as!(
        SessionView,
        "SELECT id, client_id, scope, created_at, last_used_at, expires_at FROM sessions
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC",
        user_id,
        now,
    )
    .fetch_all(pool)
    .await
}

/// Revokes every live session of a user, first recording the revocation on
/// the user row (which locks it), so that a login in flight either commits
/// before (and is revoked here) or, waiting on the row, re-checks it and
/// sees the revocation. Returns the revoked sessions with their expiry.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn revoke_user_sessions(
    conn: &mut PgConnection,
    user_id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<(Uuid, DateTime<Utc>)>> {
    sqlx::query!(
        "UPDATE users SET sessions_revoked_at = GREATEST(sessions_revoked_at, $2) WHERE id = $1",
        user_id,
        now,
    )
    .execute(&mut *conn)
    .await?;
    let revoked = sqlx::query!(
        "UPDATE sessions SET revoked_at = $2, revoked_reason = $3
         WHERE user_id = $1 AND revoked_at IS NULL RETURNING id, expires_at",
        user_id,
        now,
        reason,
    )
    .fetch_all(conn)
    .await?;
    Ok(revoked.into_iter().map(|r| (r.id, r.expires_at)).collect())
}

/// Revokes every live session of `client_id` (its refresh tokens end).
/// Returns how many.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn revoke_client_sessions(
    conn: &mut PgConnection,
    client_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE sessions SET revoked_at = $2, revoked_reason = $3
         WHERE client_id = $1 AND revoked_at IS NULL",
        client_id,
        now,
        reason,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Revokes one session if it belongs to `user_id` and is live.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn revoke_user_session(
    conn: &mut PgConnection,
    user_id: Uuid,
    session_id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE sessions SET revoked_at = $3, revoked_reason = $4
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        session_id,
        user_id,
        now,
        reason,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes (at most `limit`) sessions that expired before `before`: no
/// token of theirs can be used or can still be live. Returns how many.
#[tracing::instrument(level = "debug", skip(executor))]
pub async fn prune<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    before: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM sessions WHERE id IN (
             SELECT id FROM sessions WHERE expires_at < $1 LIMIT $2)",
        before,
        limit,
    )
    .execute(executor)
    .await?;
    Ok(done.rows_affected())
}

/// What introspection and revocation need to know about a refresh token.
#[derive(Debug, Clone)]
pub struct TokenStatus {
    pub token_id: Uuid,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub client_id: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub session_revoked_at: Option<DateTime<Utc>>,
    pub user_disabled: bool,
    /// When its session was last used (refreshed), or started.
    pub last_active: DateTime<Utc>,
}

impl TokenStatus {
    /// Usable right now by its client, whose sessions end after `idle`
    /// unused (if set).
    pub fn is_active(&self, now: DateTime<Utc>, idle: Option<std::time::Duration>) -> bool {
        self.used_at.is_none()
            && self.revoked_at.is_none()
            && self.session_revoked_at.is_none()
            && !self.user_disabled
            && self.expires_at > now
            && idle.is_none_or(|idle| {
                chrono::Duration::from_std(idle).is_ok_and(|idle| self.last_active + idle > now)
            })
    }
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn status(pool: &PgPool, hash: &TokenHash) -> sqlx::Result<Option<TokenStatus>> {
    sqlx::query_as!(
        TokenStatus,
        r#"SELECT t.id AS token_id, f.id AS session_id, f.user_id, f.client_id, f.scope, t.created_at, f.expires_at,
                t.used_at, t.revoked_at, f.revoked_at AS session_revoked_at, u.disabled AS user_disabled,
                COALESCE(f.last_used_at, f.created_at) AS "last_active!"
         FROM refresh_tokens t JOIN sessions f ON f.id = t.session_id JOIN users u ON u.id = f.user_id
         WHERE t.token_hash = $1"#,
        hash.as_bytes(),
    )
    .fetch_optional(pool)
    .await
}

/// Live sessions whose latest access token was issued between `from` and
/// `until` (at login, or at their last refresh): those a key that signed
/// during that time signed the current token of.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn sessions_issued_between(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "SELECT id FROM sessions
         WHERE revoked_at IS NULL AND expires_at > $3
           AND COALESCE(last_used_at, created_at) >= $1 AND COALESCE(last_used_at, created_at) <= $2",
        from,
        until,
        now,
    )
    .fetch_all(conn)
    .await
}
