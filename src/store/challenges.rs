//! The challenge flow (draft-ietf-oauth-first-party-apps): logins waiting
//! for their second factor, and the authorization codes they end with.
//! Every single use is decided by the statement that spends it.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::login::Admission;
use super::login_throttle::{Attempter, Policy};
use crate::domain::{Attributes, TokenHash};

/// Whose failures a right second factor forgives.
pub struct Forgive<'a> {
    pub username: &'a str,
    pub who: Attempter<'a>,
    pub policy: Policy,
}

/// A live challenge and its user as they are now.
#[derive(Debug)]
pub struct ChallengeRow {
    pub id: Uuid,
    pub client_id: String,
    pub user_id: Uuid,
    pub username: String,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub dpop_jkt: Option<String>,
    pub user_disabled: bool,
    /// The user's confirmed TOTP secret, sealed, read with the flow so
    /// that checking a code costs no more round trips.
    pub totp_sealed: Option<Vec<u8>>,
    /// The key-encryption key that sealed it (see `keys::kek`).
    pub totp_kek_id: Option<Vec<u8>>,
}

/// The challenge named by this `auth_session`, if it is unfinished and
/// unexpired at `now`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn live(
    pool: &PgPool,
    token: &TokenHash,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<ChallengeRow>> {
    sqlx::query_as!(
        ChallengeRow,
        r#"SELECT c.id, c.client_id, c.user_id, u.username,
                  array_to_string(ARRAY(SELECT unnest(string_to_array(c.scope, ' '))
                                        INTERSECT SELECT unnest(u.scopes) ORDER BY 1), ' ') AS "scope!",
                  c.code_challenge, c.dpop_jkt,
                  u.disabled AS user_disabled, t.secret_sealed AS "totp_sealed?",
                  t.kek_id AS "totp_kek_id?"
           FROM login_challenges c JOIN users u ON u.id = c.user_id
           LEFT JOIN user_totp t ON t.user_id = c.user_id AND t.confirmed_at IS NOT NULL
           WHERE c.token_hash = $1 AND c.finished_at IS NULL AND c.expires_at > $2
             AND (u.sessions_revoked_at IS NULL OR u.sessions_revoked_at < c.created_at)"#,
        token.as_bytes(),
        now,
    )
    .fetch_optional(pool)
    .await
}

/// The challenge named by this `auth_session`, if it is this client's,
/// unfinished and unexpired at `now`, its DPoP key is `jkt` (when it has
/// one), it has or gets a PKCE challenge and has a try left (fewer than
/// `max_tries` taken): that try is taken by this statement, so concurrent
/// guesses cannot exceed it. The flow's first try was paid for by its
/// password's attempt (`create`); any later one counts an attempt of `who`
/// against its username in the same statement, as a password's is
/// (`login_attempt`). Nothing is counted when there is no such challenge.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn live_admitted(
    pool: &PgPool,
    flow: FlowQuery<'_>,
    who: Attempter<'_>,
    policy: Policy,
    max_tries: i32,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<Taken>> {
    // OFFSET 0 keeps the lateral subquery whole, so its condition gates the
    // function (a one-time filter) instead of filtering what it returned.
    let row = sqlx::query!(
        r#"WITH c AS (
               UPDATE login_challenges c SET failures = c.failures + 1
               FROM users u LEFT JOIN user_totp t ON t.user_id = u.id AND t.confirmed_at IS NOT NULL
               WHERE c.token_hash = $1 AND c.client_id = $2 AND c.finished_at IS NULL AND c.expires_at > $3
                 AND c.failures < $13
                 AND u.id = c.user_id AND NOT u.disabled
                 AND (u.sessions_revoked_at IS NULL OR u.sessions_revoked_at < c.created_at)
                 AND (c.dpop_jkt IS NULL OR c.dpop_jkt = $4)
                 AND (c.code_challenge IS NOT NULL OR $5)
               RETURNING c.id, c.client_id, c.user_id, u.username,
                         array_to_string(ARRAY(SELECT unnest(string_to_array(c.scope, ' '))
                                               INTERSECT SELECT unnest(u.scopes) ORDER BY 1), ' ') AS scope,
                         c.code_challenge, c.dpop_jkt,
                         u.disabled AS user_disabled, t.secret_sealed AS totp_sealed,
                         t.kek_id AS totp_kek_id, c.failures,
                         CASE WHEN c.failures = 1 THEN c.paid_source END AS paid_source, c.paid_trusted
           )
           SELECT c.id AS "id!", c.client_id AS "client_id!", c.user_id AS "user_id!",
                  c.username AS "username!", c.scope AS "scope!", c.code_challenge, c.dpop_jkt,
                  c.user_disabled AS "user_disabled!", c.totp_sealed AS "totp_sealed?",
                  c.totp_kek_id AS "totp_kek_id?",
                  c.failures AS "tries!", c.paid_source AS "paid_source?", c.paid_trusted AS "paid_trusted!",
                  COALESCE(a.admitted, true) AS "admitted!", a.locked_until AS "locked_until?"
           FROM c LEFT JOIN LATERAL (
               SELECT * FROM login_attempt(c.username, $6, $7, $3, $8, $9, $10, $11, $12)
               WHERE c.paid_source IS NULL OFFSET 0
           ) AS a ON true"#,
        flow.token.as_bytes(),
        flow.client_id,
        now,
        flow.jkt,
        flow.has_code_challenge,
        who.source,
        who.trusted,
        policy.threshold(),
        policy.username_threshold(),
        policy.base.as_secs_f64(),
        policy.max.as_secs_f64(),
        policy.reset.as_secs_f64(),
        max_tries,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| {
        let admission = if row.admitted {
            Admission::Admitted(None)
        } else {
            Admission::Locked(
                row.locked_until
                    .unwrap_or(now + chrono::Duration::seconds(1)),
            )
        };
        let flow = ChallengeRow {
            id: row.id,
            client_id: row.client_id,
            user_id: row.user_id,
            username: row.username,
            scope: row.scope,
            code_challenge: row.code_challenge,
            dpop_jkt: row.dpop_jkt,
            user_disabled: row.user_disabled,
            totp_sealed: row.totp_sealed,
            totp_kek_id: row.totp_kek_id,
        };
        Taken {
            flow,
            admission,
            tries: row.tries,
            paid_by: row.paid_source.map(|source| Paid {
                source,
                trusted: row.paid_trusted,
            }),
        }
    }))
}

/// A try taken by `live_admitted`.
pub struct Taken {
    pub flow: ChallengeRow,
    pub admission: Admission,
    /// The tries taken, this one included.
    pub tries: i32,
    /// The source whose password's attempt paid for this try, if it was
    /// the first: that source's failures are the ones a right code forgives.
    pub paid_by: Option<Paid>,
}

/// A source that paid for a try, as stored.
pub struct Paid {
    pub source: String,
    pub trusted: bool,
}

impl Paid {
    pub fn attempter(&self) -> Attempter<'_> {
        Attempter {
            source: &self.source,
            trusted: self.trusted,
        }
    }
}

/// Which challenge a request names, and what it brings.
pub struct FlowQuery<'a> {
    pub token: &'a TokenHash,
    pub client_id: &'a str,
    /// The key of the request's DPoP proof, if any.
    pub jkt: Option<&'a str>,
    /// The request gives a PKCE challenge of its own.
    pub has_code_challenge: bool,
}

/// Ends a flow whose tries are used up (the last one was wrong).
pub async fn exhaust(pool: &PgPool, id: Uuid, now: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE login_challenges SET finished_at = $2 WHERE id = $1 AND finished_at IS NULL",
        id,
        now,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Counts a wrong code; at `max` the challenge is finished (exhausted).
/// Returns whether it is still usable.
pub async fn fail(pool: &PgPool, id: Uuid, max: i32, now: DateTime<Utc>) -> sqlx::Result<bool> {
    let still = sqlx::query_scalar!(
        r#"UPDATE login_challenges
           SET failures = failures + 1,
               finished_at = CASE WHEN failures + 1 >= $2 THEN $3::timestamptz ELSE NULL END
           WHERE id = $1 AND finished_at IS NULL
           RETURNING finished_at IS NULL AS "usable!""#,
        id,
        max,
        now,
    )
    .fetch_optional(pool)
    .await?;
    Ok(still.unwrap_or(false))
}

/// Finishes the challenge and stores its code, in one transaction: false
/// (and nothing written) if another request finished it first.
pub async fn finish_with_code(
    pool: &PgPool,
    id: Uuid,
    code: NewCode<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let finished = sqlx::query!(
        "UPDATE login_challenges SET finished_at = $2 WHERE id = $1 AND finished_at IS NULL",
        id,
        now,
    )
    .execute(&mut *tx)
    .await?;
    if finished.rows_affected() != 1 {
        return Ok(false);
    }
    insert_code(&mut tx, code, now).await?;
    tx.commit().await?;
    Ok(true)
}

/// A flow finished with a TOTP code: the step to spend, the code to store,
/// and whose failures to forgive.
pub struct TotpFinish<'a> {
    pub flow_id: Uuid,
    pub step: i64,
    pub code: NewCode<'a>,
    pub forgive: Forgive<'a>,
}

/// What `finish_with_totp` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    Done,
    /// A code of this step (or a later one) was accepted before: a replay.
    StepUsed,
    /// Another request finished the flow first.
    FlowGone,
}

/// Spends the TOTP step, finishes the flow, stores its code and forgives
/// the source's failures, in one statement: nothing but the step is
/// written unless the flow was still open, and nothing at all unless the
/// step was unspent (on any instance).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn finish_with_totp(
    pool: &PgPool,
    finish: TotpFinish<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<Finished> {
    let code = &finish.code;
    let row = sqlx::query!(
        r#"WITH step AS (
               UPDATE user_totp SET last_step = $3
               WHERE user_id = $2 AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < $3)
               RETURNING user_id
           ), flow AS (
               UPDATE login_challenges SET finished_at = $4
               WHERE id = $1 AND finished_at IS NULL AND EXISTS (SELECT 1 FROM step)
               RETURNING id
           ), code AS (
               INSERT INTO authorization_codes
                   (code_hash, client_id, user_id, scope, code_challenge, dpop_jkt, amr, expires_at, created_at)
               SELECT $5, $6, $2, $7, $8, $9, $10, $11, $4 FROM flow
           ), forgiven AS (
               -- Attempts that paid for the user's other untried flows
               -- from this source stay counted (see `live_admitted`).
               SELECT login_forgive($12, $13, $14, $15, (
                   SELECT count(*)::integer FROM login_challenges p
                   WHERE p.user_id = $2 AND p.paid_source = $13 AND p.failures = 0
                     AND p.finished_at IS NULL AND p.expires_at > $4 AND p.id <> $1))
               FROM flow
           )
           SELECT EXISTS (SELECT 1 FROM step) AS "step_spent!", EXISTS (SELECT 1 FROM flow) AS "finished!"
           FROM (VALUES (1)) AS one (x) LEFT JOIN forgiven ON true"#,
        finish.flow_id,
        code.user_id,
        finish.step,
        now,
        code.code.as_bytes(),
        code.client_id,
        code.scope,
        code.code_challenge,
        code.dpop_jkt,
        code.amr as &[&str],
        code.expires_at,
        finish.forgive.username,
        finish.forgive.who.source,
        finish.forgive.who.trusted,
        finish.forgive.policy.username_threshold(),
    )
    .fetch_one(pool)
    .await?;
    Ok(match (row.step_spent, row.finished) {
        (true, true) => Finished::Done,
        (true, false) => Finished::FlowGone,
        (false, _) => Finished::StepUsed,
    })
}

pub struct NewCode<'a> {
    pub code: &'a TokenHash,
    pub client_id: &'a str,
    pub user_id: Uuid,
    pub scope: &'a str,
    pub code_challenge: &'a str,
    pub dpop_jkt: Option<&'a str>,
    pub amr: &'a [&'a str],
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_code(
    conn: &mut PgConnection,
    code: NewCode<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO authorization_codes
             (code_hash, client_id, user_id, scope, code_challenge, dpop_jkt, amr, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        code.code.as_bytes(),
        code.client_id,
        code.user_id,
        code.scope,
        code.code_challenge,
        code.dpop_jkt,
        code.amr as &[&str],
        code.expires_at,
        now,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A code as stored, locked for its redemption.
#[derive(Debug)]
pub struct CodeRow {
    pub client_id: String,
    pub user_id: Uuid,
    pub username: String,
    pub scope: String,
    pub code_challenge: String,
    pub dpop_jkt: Option<String>,
    pub amr: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub session_id: Option<Uuid>,
    /// Disabled, or logged out everywhere (a password change does that)
    /// since the code was issued.
    pub user_gone: bool,
}

pub async fn lock_code(conn: &mut PgConnection, code: &TokenHash) -> sqlx::Result<Option<CodeRow>> {
    sqlx::query_as!(
        CodeRow,
        r#"SELECT c.client_id, c.user_id, u.username, c.scope, c.code_challenge, c.dpop_jkt, c.amr,
                  c.expires_at, c.used_at, c.session_id,
                  (u.disabled OR COALESCE(u.sessions_revoked_at >= c.created_at, false)) AS "user_gone!"
           FROM authorization_codes c JOIN users u ON u.id = c.user_id
           WHERE c.code_hash = $1 FOR UPDATE OF c"#,
        code.as_bytes(),
    )
    .fetch_optional(conn)
    .await
}

/// Marks a code used by the session it started.
pub async fn spend_code(
    conn: &mut PgConnection,
    code: &TokenHash,
    session_id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE authorization_codes SET used_at = $3, session_id = $2 WHERE code_hash = $1",
        code.as_bytes(),
        session_id,
        now,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets challenges and codes that expired before `before`, up to
/// `limit` of each.
pub async fn prune(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<u64> {
    let challenges = sqlx::query!(
        "DELETE FROM login_challenges WHERE id IN (
             SELECT id FROM login_challenges WHERE expires_at <= $1 LIMIT $2)",
        before,
        limit,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let codes = sqlx::query!(
        "DELETE FROM authorization_codes WHERE code_hash IN (
             SELECT code_hash FROM authorization_codes WHERE expires_at <= $1 LIMIT $2)",
        before,
        limit,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(challenges.max(codes))
}

/// What the one-statement redemption needs.
pub struct Redemption<'a> {
    pub code: &'a TokenHash,
    pub client_id: &'a str,
    /// The client's scopes now: the session gets what the code stands for
    /// within them.
    pub client_scopes: &'a [String],
    /// `BASE64URL(SHA-256(code_verifier))`, to equal the stored challenge.
    pub code_challenge: &'a str,
    /// The code's scope must share one of these (the scopes a token for
    /// the requested resource may carry), if set.
    pub overlapping: Option<&'a [String]>,
    /// The key of the request's DPoP proof, if any.
    pub jkt: Option<&'a str>,
    /// The session to start: its key binding, expiry and first refresh token.
    pub session_jkt: Option<&'a str>,
    pub session_expires_at: DateTime<Utc>,
    pub first: Option<&'a TokenHash>,
    pub proof: Option<&'a super::proofs::Used>,
}

/// A code redeemed in one statement.
#[derive(Debug)]
pub struct Redeemed {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub scope: String,
    pub amr: Vec<String>,
    pub attributes: Attributes,
}

#[derive(Debug)]
pub enum Redeem {
    Redeemed(Redeemed),
    /// Not the common case (used, expired, another client's, the wrong
    /// verifier or key): nothing written; `lock_code` tells why.
    NotFresh,
    /// The request's DPoP proof was used before: nothing written.
    ProofReplayed,
}

/// The common case of a redemption in one statement (one round trip):
/// spends the code if it is unused, unexpired, this client's, its PKCE
/// challenge and DPoP key match and its user may still log in, and starts
/// the session with its first refresh token. The proof is recorded with
/// it; if it was recorded before, its primary key fails the statement.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn redeem_fresh(
    conn: &mut PgConnection,
    r: Redemption<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<Redeem> {
    let session_id = Uuid::new_v4();
    let row = sqlx::query!(
        r#"WITH code AS (
               UPDATE authorization_codes c SET used_at = $1, session_id = $2
               FROM users u
               WHERE c.code_hash = $3 AND c.used_at IS NULL AND c.client_id = $4 AND c.expires_at > $1
                 AND c.code_challenge = $5 AND (c.dpop_jkt IS NULL OR c.dpop_jkt = $6)
                 AND u.id = c.user_id AND NOT u.disabled
                 AND (u.sessions_revoked_at IS NULL OR u.sessions_revoked_at < c.created_at)
                 AND ($14::text[] IS NULL OR string_to_array(c.scope, ' ') && $14)
               RETURNING c.user_id, u.username, c.amr, u.claims,
                   array_to_string(ARRAY(
                       SELECT unnest(string_to_array(c.scope, ' '))
                       INTERSECT SELECT unnest($7::text[]) ORDER BY 1), ' ') AS scope
           ), session AS (
               INSERT INTO sessions (id, user_id, client_id, scope, created_at, expires_at, dpop_jkt, amr)
               SELECT $2, user_id, $4, scope, $1, $8, $9, amr FROM code
               RETURNING id
           ), first AS (
               INSERT INTO refresh_tokens (id, session_id, parent_id, token_hash, created_at)
               SELECT $10, id, NULL, $11, $1 FROM session WHERE $11::bytea IS NOT NULL
           ), proof AS (
               INSERT INTO dpop_proofs (proof_key, expires_at)
               SELECT $12, $13 FROM code WHERE $12::bytea IS NOT NULL
           )
           SELECT user_id AS "user_id!", username AS "username!", amr AS "amr!", scope AS "scope!",
                  claims AS "claims!"
           FROM code"#,
        now,
        session_id,
        r.code.as_bytes(),
        r.client_id,
        r.code_challenge,
        r.jkt,
        r.client_scopes,
        r.session_expires_at,
        r.session_jkt,
        Uuid::new_v4(),
        r.first.map(TokenHash::as_bytes),
        r.proof.map(|p| p.key.as_slice()),
        r.proof.map(|p| p.until),
        r.overlapping,
    )
    .fetch_optional(conn)
    .await;
    let row = match row {
        Err(e) if super::is_unique_violation(&e) => return Ok(Redeem::ProofReplayed),
        other => other?,
    };
    Ok(match row {
        Some(row) => Redeem::Redeemed(Redeemed {
            session_id,
            user_id: row.user_id,
            username: row.username,
            scope: row.scope,
            amr: row.amr,
            attributes: Attributes::from_stored(row.claims),
        }),
        None => Redeem::NotFresh,
    })
}
