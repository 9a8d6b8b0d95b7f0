//! The two statements of a password login, either side of argon2: one
//! counts the attempt against the username and reads the user, the other
//! starts the session and forgets the username's failures. Two short
//! autocommits: a login is the busiest write path after refresh.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::login_throttle::{Attempter, Policy};
use super::proofs::Used;
use super::users::UserRow;
use crate::domain::{Attributes, TokenHash, Username};

/// A challenge flow to start for a login's user, if they have a second
/// factor (`login::admit`).
pub struct NewChallenge<'a> {
    pub token: &'a TokenHash,
    pub client_id: &'a str,
    /// What the login asked for (or the client's scopes): read back
    /// within the user's scopes as they are then.
    pub scope: &'a str,
    pub code_challenge: Option<&'a str>,
    pub dpop_jkt: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
}

/// What the database says before the password is checked.
#[derive(Debug)]
pub enum Admission {
    /// The attempt is counted; the user, if there is one by that name.
    Admitted(Option<UserRow>),
    /// Too many failures: nothing was counted.
    Locked(DateTime<Utc>),
}

/// Counts an attempt for `username` from `who` before its password is
/// checked, in the statement that reads the user, so that concurrent
/// attempts cannot all slip under a threshold (`login_attempt` in the
/// migrations locks the username's rows in one order and decides).
///
/// With `flow`, a user with a second factor also gets that challenge
/// flow, started here rather than in a statement of its own after the
/// password is checked: its token is handed out only for the right
/// password (a wrong one leaves a flow nobody can name, pruned when it
/// expires), and the attempt counted here pays for its first code
/// (`challenges::live_admitted`). The user has a second factor exactly
/// when the flow was started: both are read in this one statement.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn admit(
    pool: &PgPool,
    username: &Username,
    who: Attempter<'_>,
    policy: Policy,
    flow: Option<NewChallenge<'_>>,
    now: DateTime<Utc>,
) -> sqlx::Result<Admission> {
    let row = sqlx::query!(
        r#"WITH a AS (
               SELECT * FROM login_attempt($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ), flow AS (
               INSERT INTO login_challenges
                   (id, token_hash, client_id, user_id, scope, code_challenge, dpop_jkt, expires_at,
                    created_at, paid_source, paid_trusted)
               SELECT $10, $11, $12, u.id, $13, $14, $15, $16, $4, $2, $3
               FROM a, users u
               WHERE $11::bytea IS NOT NULL AND a.admitted AND u.username = $1
                 AND EXISTS (SELECT 1 FROM user_totp t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL)
           )
           SELECT a.admitted AS "admitted!", a.locked_until,
                  u.id AS "id?", u.username AS "username?", u.password_hash AS "password_hash?",
                  u.scopes AS "scopes?", u.disabled AS "disabled?", u.claims AS "claims?",
                  EXISTS (SELECT 1 FROM user_totp t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL)
                      AS "second_factor!"
           FROM a LEFT JOIN users u ON u.username = $1"#,
        username.as_str(),
        who.source,
        who.trusted,
        now,
        policy.threshold(),
        policy.username_threshold(),
        policy.base.as_secs_f64(),
        policy.max.as_secs_f64(),
        policy.reset.as_secs_f64(),
        Uuid::new_v4(),
        flow.as_ref().map(|f| f.token.as_bytes()),
        flow.as_ref().map(|f| f.client_id),
        flow.as_ref().map(|f| f.scope),
        flow.as_ref().and_then(|f| f.code_challenge),
        flow.as_ref().and_then(|f| f.dpop_jkt),
        flow.as_ref().map(|f| f.expires_at),
    )
    .fetch_one(pool)
    .await?;
    if !row.admitted {
        return Ok(Admission::Locked(
            row.locked_until
                .unwrap_or(now + chrono::Duration::seconds(1)),
        ));
    }
    let user = match (
        row.id,
        row.username,
        row.password_hash,
        row.scopes,
        row.disabled,
    ) {
        (Some(id), Some(username), Some(password_hash), Some(scopes), Some(disabled)) => {
            let mut user = UserRow::from_stored(id, username, password_hash, &scopes, disabled)?;
            user.second_factor = row.second_factor;
            user.attributes = Attributes::from_stored(row.claims.unwrap_or_default());
            Some(user)
        }
        _ => None,
    };
    Ok(Admission::Admitted(user))
}

pub struct NewSession<'a> {
    pub user_id: Uuid,
    /// As the login typed it, parsed: its failures are forgotten.
    pub username: &'a Username,
    /// Whose failures: the source's are forgotten, and the attempt is taken
    /// back from the username-wide count.
    pub who: Attempter<'a>,
    pub policy: Policy,
    /// The password hash the login was verified against.
    pub verified_hash: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub expires_at: DateTime<Utc>,
    /// The DPoP key the session's refresh tokens are bound to, if any.
    pub dpop_jkt: Option<&'a str>,
}

/// What `start_session` did.
#[derive(Debug)]
pub enum Started {
    Session(Uuid),
    /// The user changed while the password was being checked: nothing written.
    UserChanged,
    /// The request's DPoP proof was used before (through another instance):
    /// nothing written.
    ProofReplayed,
}

/// Starts a session with its first refresh token,
/// if the client gets one, and forgets the failures of the login's source:
/// the right password was given there, so they were the user's own typos,
/// and they leave the username-wide count too (this attempt included).
/// Records the request's DPoP proof, if any, in the same statement: a proof
/// used before (on any instance) starts nothing.
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
    proof: Option<&Used>,
    now: DateTime<Utc>,
) -> sqlx::Result<Started> {
    let row = sqlx::query!(
        r#"WITH proof AS (
               INSERT INTO dpop_proofs (proof_key, expires_at)
               SELECT $14, $15 WHERE $14::bytea IS NOT NULL
               ON CONFLICT DO NOTHING
               RETURNING 1 AS fresh
           ), still_valid AS (
               SELECT u.id FROM users u
               WHERE u.id = $1 AND u.password_hash = $2 AND NOT u.disabled
                 AND (u.sessions_revoked_at IS NULL OR u.sessions_revoked_at < $3)
                 AND ($14::bytea IS NULL OR EXISTS (SELECT 1 FROM proof))
               FOR SHARE OF u
           ), session AS (
               INSERT INTO sessions (id, user_id, client_id, scope, created_at, expires_at, dpop_jkt)
               SELECT $4, id, $5, $6, $3, $7, $16 FROM still_valid
               RETURNING id
           ), first AS (
               INSERT INTO refresh_tokens (id, session_id, parent_id, token_hash, created_at)
               SELECT $8, session.id, NULL, $9, $3 FROM session WHERE $9::bytea IS NOT NULL
           ), forgiven AS (
               SELECT login_forgive($10, $11, $12, $13) FROM session
           )
           SELECT session.id AS "id?",
                  ($14::bytea IS NULL OR EXISTS (SELECT 1 FROM proof)) AS "fresh_proof!"
           FROM (VALUES (1)) AS one (x)
           LEFT JOIN session ON true LEFT JOIN forgiven ON true"#,
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
        session.who.source,
        session.who.trusted,
        session.policy.username_threshold(),
        proof.map(|p| p.key.as_slice()),
        proof.map(|p| p.until),
        session.dpop_jkt,
    )
    .fetch_one(pool)
    .await?;
    Ok(match (row.id, row.fresh_proof) {
        (Some(id), _) => Started::Session(id),
        (None, false) => Started::ProofReplayed,
        (None, true) => Started::UserChanged,
    })
}
