//! Refresh token grant (RFC 6749 §6) with rotation and reuse detection
//! (RFC 9700 §4.14.2).
//!
//! Every use spends the presented token and issues a child. A spent token
//! presented again means it leaked: the whole session is revoked. The one
//! exception is a client that lost the response: within `tokens.refresh_grace`
//! of the first use, and only while the child is unused, the child is revoked
//! and a fresh one issued instead. All of it happens under the session's row
//! lock, in one statement or one transaction, so concurrent refreshes cannot
//! both win.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};
use tessera_dpop::Proof;

use super::client::Client;
use super::target::refresh_idle;
use super::{Issuance, Target, TokenResponse, issue};
use crate::domain::opaque::MAX_OPAQUE_LEN;
use crate::domain::{RefreshToken, Scope, TokenHash};
use crate::dpop;
use crate::error::Error;
use crate::revocation;
use crate::state::AppState;
use crate::store::proofs::{self, Used};
use crate::store::refresh::{self, Fresh, Refreshable};

const INVALID: &str = "refresh token is invalid, expired or revoked";

/// How a presented token is spent (presenting it again otherwise is reuse).
enum Spend {
    Rotate,
    /// Lost response: replace the unused child.
    ReplaceChild(uuid::Uuid),
}

/// How long past `database.request_timeout` a refresh waits for the answer
/// to its one statement. Postgres cancels the statement at the timeout
/// (`statement_timeout`, set on every pooled connection), so an answer later
/// than this means the connection itself is gone.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// A refresh must be decided (committed or rolled back) before a client's
/// own timeout: otherwise a client that gave up on a stalled database would
/// retry with a token that was spent after it stopped listening.
///
/// The common case is one statement in autocommit: one round trip, and it
/// is over when Postgres answers, because Postgres itself cancels it after
/// `database.request_timeout` (nothing spent). Only if no answer comes at
/// all (the connection is cut) is the outcome unknown, as for any lost
/// response; a retry within `tokens.refresh_grace` is then answered with a
/// replacement, not treated as reuse. Everything else runs in a
/// transaction that is rolled back when abandoned at the deadline.
#[tracing::instrument(level = "debug", skip_all, fields(client_id = %client.id(), session_id = tracing::field::Empty))]
pub async fn grant(
    state: &AppState,
    client: &Client,
    presented: SecretString,
    requested: Option<Scope>,
    target: &Target<'_>,
    proof: Option<&Proof>,
) -> Result<TokenResponse, Error> {
    if presented.expose_secret().is_empty() || presented.expose_secret().len() > MAX_OPAQUE_LEN {
        return Err(Error::InvalidGrant(INVALID));
    }
    let hash = TokenHash::of(presented.expose_secret());
    let limit = state.settings.database.request_timeout;
    let mut conn = tokio::time::timeout(limit, state.pool.acquire())
        .await
        .map_err(|_| abandoned())??;
    let child = RefreshToken::generate();
    let proof = proof.map(|p| Presented {
        jkt: &p.jkt,
        used: state.dpop.used(p),
    });
    let proof = proof.as_ref();
    if let Some(response) = tokio::time::timeout(
        limit + ANSWER_MARGIN,
        rotate_fresh(state, &mut conn, client, &hash, &requested, target, &child, proof),
    )
    .await
    .map_err(|_| {
        tracing::error!("refresh statement unanswered: the connection to the database was lost, the token may or may not be spent");
        Error::TemporarilyUnavailable
    })??
    {
        return Ok(response);
    }
    // Otherwise the token was spent or revoked (reuse, or a retry within the
    // grace period), or the request is refused: decide under the lock.
    // Dropping the unfinished transaction rolls it back: nothing is spent.
    tokio::time::timeout(
        limit,
        rotate(
            state, &mut conn, client, &hash, requested, target, &child, proof,
        ),
    )
    .await
    .map_err(|_| abandoned())?
}

/// The request's DPoP proof, as a refresh needs it.
struct Presented<'a> {
    jkt: &'a str,
    used: Used,
}

fn abandoned() -> Error {
    tracing::warn!("refresh abandoned: the database did not answer in time");
    Error::TemporarilyUnavailable
}

/// The common case, in one statement that writes nothing unless all is
/// well. Whatever could refuse the request after that statement committed
/// is checked before it: the requested scope against the client's and the
/// resource's (by the statement, where it depends on the session's), and
/// that there is a key to sign with. `None`: not the common case.
#[allow(clippy::too_many_arguments)]
async fn rotate_fresh(
    state: &AppState,
    conn: &mut PgConnection,
    client: &Client,
    hash: &TokenHash,
    requested: &Option<Scope>,
    target: &Target<'_>,
    child: &RefreshToken,
    proof: Option<&Presented<'_>>,
) -> Result<Option<TokenResponse>, Error> {
    let wanted = requested.as_ref().filter(|r| !r.is_empty());
    if wanted.is_some_and(|r| !r.is_subset(&client.scopes)) {
        return Ok(None); // refused after reuse detection, under the lock
    }
    // What a token for the resource could carry: the statement refreshes
    // only a session that has one of these.
    let overlapping = target.accepted().map(|accepted| {
        wanted
            .unwrap_or(&client.scopes)
            .intersection(accepted)
            .tokens()
    });
    if overlapping.as_ref().is_some_and(Vec::is_empty) {
        return Ok(None); // refused after reuse detection, under the lock
    }
    let before = state.clock.now();
    if state.keys.signer(before).is_none() {
        return Err(Error::TemporarilyUnavailable);
    }
    let wanted = wanted.map(Scope::to_string);
    let rotated = match refresh::rotate_fresh(
        conn,
        hash,
        client.id(),
        &child.hash(),
        proof.map(|p| (p.jkt, &p.used)),
        Refreshable {
            requested: wanted.as_deref(),
            overlapping: overlapping.as_deref(),
            idle: refresh_idle(client, &state.settings.tokens),
        },
        before,
    )
    .await?
    {
        Fresh::Rotated(rotated) => rotated,
        Fresh::NotFresh => return Ok(None),
        Fresh::ProofReplayed => return Err(Error::InvalidDpopProof(dpop::REPLAYED.into())),
    };
    tracing::Span::current().record("session_id", tracing::field::display(rotated.session_id));
    let scope = target.narrow(&refreshed_scope(&rotated.scope, client, requested.clone())?)?;
    issue(
        state,
        Issuance {
            subject: rotated.user_id.to_string(),
            session: Some(rotated.session_id),
            client,
            target,
            scope: &scope,
            refresh_token: Some(child),
            jkt: proof.map(|p| p.jkt),
            amr: Some(&rotated.amr),
            attributes: Some(&rotated.attributes),
            now: state.clock.now(),
        },
    )
    .map(Some)
}

#[allow(clippy::too_many_arguments)]
async fn rotate(
    state: &AppState,
    conn: &mut PgConnection,
    client: &Client,
    hash: &TokenHash,
    requested: Option<Scope>,
    target: &Target<'_>,
    child: &RefreshToken,
    proof: Option<&Presented<'_>>,
) -> Result<TokenResponse, Error> {
    // Recorded for good before anything is decided: a request refused here
    // (a scope, a race, a database fault) must not be replayable with
    // another body. The common path records it with the spend instead.
    if let Some(proof) = proof
        && !proofs::record(conn, &proof.used).await?
    {
        return Err(Error::InvalidDpopProof(dpop::REPLAYED.into()));
    }
    let mut tx = conn.begin().await?;
    let Some((session, token)) = refresh::lock_by_token(&mut tx, hash).await? else {
        return Err(Error::InvalidGrant(INVALID));
    };
    // "Now" is read once the session is locked, not at the edge: the wait
    // for the lock (or a slow database) must not eat into the grace window
    // or stamp the token as spent earlier than it was.
    let now = state.clock.now();
    tracing::Span::current().record("session_id", tracing::field::display(session.id));
    // Bound to the client it was issued to; another client learns nothing.
    if session.client_id != client.id() || session.revoked_at.is_some() || session.expires_at <= now
    {
        return Err(Error::InvalidGrant(INVALID));
    }
    if session.user_disabled {
        return Err(Error::InvalidGrant(INVALID));
    }
    // Unused for longer than its client's sessions may idle: over.
    if let Some(idle) = refresh_idle(client, &state.settings.tokens)
        && session.last_active + chrono::Duration::from_std(idle).map_err(anyhow::Error::from)?
            <= now
    {
        return Err(Error::InvalidGrant(INVALID));
    }
    // Before reuse detection: whoever cannot prove the key cannot use the
    // token, and must not be able to end the session by replaying it.
    if let Some(bound) = &session.dpop_jkt
        && proof.map(|p| p.jkt) != Some(bound.as_str())
    {
        return Err(Error::InvalidDpopProof(
            "the refresh token is bound to a DPoP key: send a proof signed by that key".into(),
        ));
    }
    let grace = chrono::Duration::from_std(state.settings.tokens.refresh_grace)
        .map_err(anyhow::Error::from)?;
    let Some(spend) = spend_of(&mut tx, &token, now, grace).await? else {
        return Err(reused(state, tx, session.id, now).await);
    };
    // Only now, so that a replayed token cannot dodge reuse detection by
    // asking for too much; failing here rolls back and spends nothing.
    let scope = refreshed_scope(&session.scope, client, requested)?;
    let scope = target.narrow(&scope)?;
    match spend {
        Spend::Rotate => refresh::mark_used(&mut tx, session.id, token.id, now).await?,
        Spend::ReplaceChild(child) => {
            refresh::revoke_token(&mut tx, child, now).await?;
            refresh::touch_session(&mut tx, session.id, now).await?;
        }
    }
    refresh::insert_token(&mut tx, session.id, Some(token.id), &child.hash(), now).await?;
    // Sign before committing: if signing fails, the presented token stays usable.
    let response = issue(
        state,
        Issuance {
            subject: session.user_id.to_string(),
            session: Some(session.id),
            client,
            target,
            scope: &scope,
            refresh_token: Some(child),
            jkt: proof.map(|p| p.jkt),
            amr: Some(&session.amr),
            attributes: Some(&session.attributes),
            now,
        },
    )?;
    tx.commit().await?;
    Ok(response)
}

/// How `token` may be spent now: unused, it rotates; used within the
/// grace window while its child is still unused (a lost response), the
/// child is replaced; anything else is reuse (`None`).
async fn spend_of(
    tx: &mut PgConnection,
    token: &refresh::TokenRow,
    now: chrono::DateTime<chrono::Utc>,
    grace: chrono::Duration,
) -> Result<Option<Spend>, Error> {
    Ok(match (token.revoked_at, token.used_at) {
        (Some(_), _) => None,
        (None, None) => Some(Spend::Rotate),
        // Another instance's clock may be ahead of ours, making `now`
        // earlier than its `used_at`: count that as no time passed.
        (None, Some(used_at)) if (now - used_at).max(chrono::Duration::zero()) < grace => {
            match refresh::live_child(tx, token.id).await? {
                Some(child) if child.used_at.is_none() => Some(Spend::ReplaceChild(child.id)),
                _ => None,
            }
        }
        (None, Some(_)) => None,
    })
}

/// A spent token presented again: a leaked token may have minted access
/// tokens too, so the whole session ends, access tokens included. Returns
/// what to answer.
async fn reused(
    state: &AppState,
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    session_id: uuid::Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> Error {
    let ended = async {
        let ttl = state.settings.tokens.longest_access();
        revocation::end_session(&mut tx, session_id, "reuse", now, ttl).await?;
        revocation::commit(tx, &state.pool, &state.denylist, now).await
    };
    if let Err(e) = ended.await {
        return Error::from(e);
    }
    metrics::counter!(crate::telemetry::metrics::REFRESH_REUSE).increment(1);
    tracing::warn!(session_id = %session_id, "refresh token reuse detected; session revoked");
    Error::InvalidGrant(INVALID)
}

/// What a refresh grants: what was asked for, within what the session was
/// granted and what the client may have now (its scopes may have been
/// narrowed since it started).
fn refreshed_scope(
    login: &Scope,
    client: &Client,
    requested: Option<Scope>,
) -> Result<Scope, Error> {
    login
        .intersection(&client.scopes)
        .grant(requested)
        .map_err(|_| Error::InvalidScope("requested scope exceeds the scope originally granted"))
}
