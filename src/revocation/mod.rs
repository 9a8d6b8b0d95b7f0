//! Revocation that holds everywhere.
//!
//! Refresh tokens are revoked in Postgres (their whole session), which every
//! instance reads on every refresh. Access tokens are JWTs that verify
//! offline, so revoking one means denylisting its `jti` (until its `exp`) or
//! setting a not-before instant for its user. Postgres is the source of
//! truth; each instance mirrors the live entries in memory (`Denylist`) and
//! learns of new ones through LISTEN/NOTIFY (`crate::sync`). Offline verifiers poll
//! the same entries through `GET /auth/revocations`, or follow them through
//! `GET /auth/revocations/stream`, fed by this instance's denylist (`stream`).

mod denylist;
pub mod feed;
pub mod inspect;
pub mod slots;
pub mod stream;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// An entry of the revocation table, as the feed and stream send it.
pub use crate::store::revocations::RevocationRow;
pub use denylist::Denylist;

use crate::clients::ClientCache;
use crate::domain::access_token::AccessTokenVerifier;
use crate::domain::opaque::MAX_OPAQUE_LEN;
use crate::domain::{AccessClaims, TokenHash};
use crate::error::Error;
use crate::store::{refresh, revocations};
use crate::telemetry::metrics::REVOCATIONS;

/// Logs a user out everywhere: every session is revoked and every
/// access token issued up to `now` is treated as revoked.
pub async fn log_out_everywhere(
    conn: &mut PgConnection,
    user_id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
    access_ttl: std::time::Duration,
) -> anyhow::Result<u64> {
    let sessions = refresh::revoke_user_sessions(conn, user_id, reason, now).await?;
    // Access tokens are denied by session (`sid`), which does not depend on
    // clocks: a refresh that committed just before this, on an instance
    // whose clock is ahead, still loses its token. A login that expired
    // more than an access-token lifetime ago has no live token to deny.
    let horizon = now - chrono::Duration::from_std(access_ttl)?;
    for (session, _) in sessions.iter().filter(|(_, expires)| *expires > horizon) {
        deny_session_tokens(conn, *session, now, access_ttl).await?;
    }
    // And by time, for tokens not tied to a login. After one access-token
    // lifetime nothing issued before `now` is valid, so it can be pruned then.
    let expires_at = now + chrono::Duration::from_std(access_ttl)?;
    revocations::set_not_before(conn, user_id, now, expires_at).await?;
    metrics::counter!(REVOCATIONS, "kind" => "user").increment(1);
    Ok(sessions.len() as u64)
}

/// Ends one session: its refresh tokens are revoked, and so is every
/// access token issued from it.
pub async fn end_session(
    conn: &mut PgConnection,
    session_id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
    access_ttl: std::time::Duration,
) -> anyhow::Result<()> {
    // Already ended (logout repeated, reuse after revocation): nothing to
    // write, so repeated calls cannot flood the revocation log.
    if refresh::revoke_session(conn, session_id, reason, now).await? {
        deny_session_tokens(conn, session_id, now, access_ttl).await?;
    }
    Ok(())
}

/// Denylists every access token of a login by its `sid`, for one
/// access-token lifetime (after that none issued before `now` is valid).
pub async fn deny_session_tokens(
    conn: &mut PgConnection,
    session_id: Uuid,
    now: DateTime<Utc>,
    access_ttl: std::time::Duration,
) -> anyhow::Result<()> {
    let expires_at = now + chrono::Duration::from_std(access_ttl)?;
    revocations::deny_session(conn, session_id, expires_at, now).await?;
    metrics::counter!(REVOCATIONS, "kind" => "session").increment(1);
    Ok(())
}

/// Live denylisted access tokens one client may have before its further
/// revocations become a per-client not-before: a client revoking its own
/// tokens in a loop writes a bounded number of entries, not one per token.
const TOKENS_PER_CLIENT: i64 = 8;

/// Denylists one access token until its own expiry (an expired one needs
/// no entry). Past `TOKENS_PER_CLIENT` live entries for its client, every
/// token of that client issued up to this second is revoked instead, by one
/// per-client entry.
pub async fn deny(
    conn: &mut PgConnection,
    claims: &AccessClaims,
    now: DateTime<Utc>,
    access_ttl: std::time::Duration,
) -> anyhow::Result<()> {
    let expires_at = DateTime::from_timestamp(claims.exp, 0).unwrap_or(now);
    // Revoking it again changes nothing: no lock, no notification.
    if expires_at <= now || revocations::is_denied(conn, &claims.jti).await? {
        return Ok(());
    }
    // Under the write lock: concurrent revocations by one client must not
    // all count seven and all write.
    revocations::lock_and_notify(conn).await?;
    if revocations::live_denied_tokens_of(conn, &claims.client_id, now).await? < TOKENS_PER_CLIENT {
        revocations::deny_access_token(conn, &claims.jti, &claims.client_id, expires_at, now)
            .await?;
        return Ok(());
    }
    write_client_not_before(conn, &claims.client_id, now, access_ttl).await
}

/// Revokes every access token of `client_id` issued up to `now`'s second
/// (tokens carry whole seconds, so a token issued later in that second is
/// revoked too: its holder gets another), for one access-token lifetime.
pub async fn deny_client_tokens(
    conn: &mut PgConnection,
    client_id: &str,
    now: DateTime<Utc>,
    access_ttl: std::time::Duration,
) -> anyhow::Result<()> {
    revocations::lock_and_notify(conn).await?;
    write_client_not_before(conn, client_id, now, access_ttl).await
}

/// `deny_client_tokens`, the write lock held.
async fn write_client_not_before(
    conn: &mut PgConnection,
    client_id: &str,
    now: DateTime<Utc>,
    access_ttl: std::time::Duration,
) -> anyhow::Result<()> {
    let not_before = DateTime::from_timestamp(now.timestamp() + 1, 0).unwrap_or(now);
    let expires_at = not_before + chrono::Duration::from_std(access_ttl)?;
    revocations::set_client_not_before(conn, client_id, not_before, expires_at, now).await?;
    metrics::counter!(REVOCATIONS, "kind" => "client").increment(1);
    Ok(())
}

/// Ends everything a client holds: its refresh tokens (every session started
/// through it) and every access token issued to it so far, at Tessera and,
/// through the feed and stream, at every verifier. For a leaked secret or
/// a compromised app: "disable, rotate, enable" alone revokes nothing.
pub async fn end_client_tokens(
    conn: &mut PgConnection,
    client_id: &str,
    reason: &str,
    now: DateTime<Utc>,
    access_ttl: std::time::Duration,
) -> anyhow::Result<u64> {
    let sessions = refresh::revoke_client_sessions(conn, client_id, reason, now).await?;
    deny_client_tokens(conn, client_id, now, access_ttl).await?;
    Ok(sessions)
}

/// What a presented token turned out to be.
#[derive(Debug)]
pub enum Presented {
    /// An access token of ours (signature, issuer, audience, bounds), valid
    /// now or, when identified for revocation, recently expired.
    Access(AccessClaims),
    /// A refresh token we issued, in whatever state it is.
    Refresh(refresh::TokenStatus),
    /// Anything else: malformed, foreign, expired, never issued.
    Unknown,
}

/// Why a token is identified: introspection wants it valid now; revocation
/// also takes an access token that has expired but whose session (refresh
/// token) may live on, for as long as a refresh token can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Introspect,
    Revoke,
}

/// What identifying, inspecting and revoking a presented token needs.
pub struct Lookup<'a> {
    pub pool: &'a PgPool,
    pub verifier: &'a AccessTokenVerifier,
    pub denylist: &'a Denylist,
    pub clients: &'a ClientCache,
    /// How long after its expiry an access token may still be revoked (to
    /// end its session): as long as a refresh token can live.
    pub revocable_for: std::time::Duration,
    /// The longest an access token lives (`tokens.max_access_ttl`).
    pub access_ttl: std::time::Duration,
    /// How long a session may go unused, unless its client says otherwise
    /// (`tokens.refresh_idle`).
    pub refresh_idle: Option<std::time::Duration>,
    /// Who issues tokens and for whom, as introspection reports them.
    pub issuer: &'a str,
    pub audience: &'a str,
}

/// Identifies a token without trusting any hint: JWTs are verified, anything
/// else is looked up by hash as a refresh token. Until this instance has
/// loaded its keys and denylist a JWT cannot be told apart from a forgery
/// or a revoked token, so the answer is "retry", never "unknown".
pub async fn identify(
    lookup: &Lookup<'_>,
    token: &str,
    purpose: Purpose,
    now: DateTime<Utc>,
) -> Result<Presented, Error> {
    if token.is_empty() {
        return Ok(Presented::Unknown);
    }
    if token.matches('.').count() == 2 {
        if !lookup.verifier.keys.is_loaded() || !lookup.denylist.is_loaded() {
            return Err(Error::TemporarilyUnavailable);
        }
        let verified = match purpose {
            Purpose::Introspect => lookup.verifier.verify_any_audience(token, now),
            Purpose::Revoke => lookup
                .verifier
                .verify_revocable(token, now, lookup.revocable_for),
        };
        return Ok(match verified {
            Ok(claims) => Presented::Access(claims),
            Err(_) => Presented::Unknown,
        });
    }
    if token.len() > MAX_OPAQUE_LEN {
        return Ok(Presented::Unknown);
    }
    Ok(
        match refresh::status(lookup.pool, &TokenHash::of(token)).await? {
            Some(status) => Presented::Refresh(status),
            None => Presented::Unknown,
        },
    )
}

/// Revokes what `identify` found, inside the caller's transaction (finish
/// with `commit`): a refresh token, or an access token from a login, ends
/// that whole session, access tokens included (RFC 7009 §2.1); an access
/// token of a client acting as itself is denylisted by jti. Returns the
/// token type revoked, if any.
pub async fn revoke(
    conn: &mut PgConnection,
    presented: &Presented,
    reason: &str,
    access_ttl: std::time::Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<&'static str>> {
    let kind = match presented {
        // A user's token ends its session (RFC 7009 §2.1 allows revoking
        // the related refresh token): one entry per session however many of
        // its tokens are revoked, so a loop of refresh-then-revoke cannot
        // flood the denylist that every instance and verifier holds.
        Presented::Access(AccessClaims { sid: Some(sid), .. }) => {
            let session = Uuid::parse_str(sid)?;
            end_session(conn, session, reason, now, access_ttl).await?;
            Some("access_token")
        }
        Presented::Access(claims) => {
            deny(conn, claims, now, access_ttl).await?;
            metrics::counter!(REVOCATIONS, "kind" => "access_token").increment(1);
            Some("access_token")
        }
        Presented::Refresh(status) => {
            end_session(conn, status.session_id, reason, now, access_ttl).await?;
            Some("refresh_token")
        }
        Presented::Unknown => None,
    };
    Ok(kind)
}

/// Commits a transaction that revoked something and applies it to this
/// instance's denylist before the caller answers; other instances hear of it
/// through NOTIFY.
pub async fn commit(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    pool: &PgPool,
    denylist: &Denylist,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    tx.commit().await?;
    denylist.catch_up(pool, now).await?;
    Ok(())
}
