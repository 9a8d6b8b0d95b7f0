//! `GET /auth/revocations?since=<cursor>`: the revocation feed for resource
//! servers that verify JWTs offline (scope `revocations:read`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::bearer;
use crate::error::Error;
use crate::state::AppState;
use crate::store::revocations;

pub const FEED_SCOPE: &str = "revocations:read";
const MAX_PAGE: i64 = 1000;

#[derive(Deserialize)]
struct FeedQuery {
    since: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct Feed {
    /// Denylisted access tokens: reject a token with this jti until `exp`.
    revoked_tokens: Vec<RevokedToken>,
    /// Reject tokens whose `sid` is listed, until `exp` (ended logins).
    revoked_sessions: Vec<RevokedSession>,
    /// Reject this user's tokens whose `iat` is before `not_before`.
    revoked_users: Vec<RevokedUser>,
    /// Pass as `since` next time.
    next_cursor: String,
    /// More entries are waiting: call again at once with `next_cursor`.
    has_more: bool,
}

#[derive(Serialize)]
struct RevokedToken {
    jti: String,
    exp: i64,
}

#[derive(Serialize)]
struct RevokedSession {
    sid: String,
    exp: i64,
}

#[derive(Serialize)]
struct RevokedUser {
    sub: String,
    not_before: i64,
}

#[tracing::instrument(level = "debug", name = "revocation_feed", skip_all)]
pub async fn feed(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    bearer::require(&req, &state, FEED_SCOPE)?;
    let query: FeedQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| Error::invalid_request("malformed query string"))?;
    let since = parse_number(query.since.as_deref(), 0, "since")?;
    let limit = parse_number(query.limit.as_deref(), MAX_PAGE, "limit")?.clamp(1, MAX_PAGE);
    // A cursor from another database, or mistyped, would otherwise be
    // echoed back and silently skip every revocation until seq caught up.
    if since > revocations::last_seq(&state.pool).await? {
        return Err(Error::invalid_request(
            "since is ahead of the newest revocation: this cursor is not from this issuer's feed; start over with since=0",
        ));
    }
    let rows = revocations::live_since(&state.pool, since, state.clock.now(), limit).await?;
    let next = rows.last().map(|r| r.seq).unwrap_or(since);
    let mut feed = Feed {
        revoked_tokens: Vec::new(),
        revoked_sessions: Vec::new(),
        revoked_users: Vec::new(),
        next_cursor: next.to_string(),
        has_more: rows.len() as i64 == limit,
    };
    for row in rows {
        let exp = row.expires_at.timestamp();
        match (row.jti, row.session_id, row.user_id, row.not_before) {
            (Some(jti), _, _, _) => feed.revoked_tokens.push(RevokedToken { jti, exp }),
            (None, Some(session), _, _) => feed.revoked_sessions.push(RevokedSession {
                sid: session.to_string(),
                exp,
            }),
            (None, None, Some(user), Some(not_before)) => feed.revoked_users.push(RevokedUser {
                sub: user.to_string(),
                not_before: not_before.timestamp(),
            }),
            _ => {}
        }
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(feed))
}

fn parse_number(raw: Option<&str>, default: i64, name: &'static str) -> Result<i64, Error> {
    match raw {
        None => Ok(default),
        Some(raw) => raw.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            Error::invalid_request(format!("{name} must be a non-negative integer"))
        }),
    }
}
