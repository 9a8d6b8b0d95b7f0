//! `GET /auth/revocations?since=<cursor>`: the revocation feed for resource
//! servers that verify JWTs offline (scope `revocations:read`), and
//! `GET /auth/revocations/stream`: the same entries pushed as Server-Sent
//! Events.

use std::convert::Infallible;
use std::fmt::Write as _;

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::{bearer, peer};
use crate::error::Error;
use crate::revocation::stream::{self, Message, Subscription};
use crate::revocation::{RevocationRow, feed};
use crate::state::AppState;

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
    /// Reject this client's tokens (`client_id` claim) whose `iat` is
    /// before `not_before`.
    revoked_clients: Vec<RevokedClient>,
    /// Signing keys distrusted after a compromise: reject every token whose
    /// header names this `kid`, for good, whatever a JWKS says.
    distrusted_keys: Vec<DistrustedKey>,
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

#[derive(Serialize)]
struct RevokedClient {
    client_id: String,
    not_before: i64,
}

#[derive(Serialize)]
struct DistrustedKey {
    kid: String,
}

/// One entry as the stream sends it: a feed item plus its kind.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    AccessToken(RevokedToken),
    Session(RevokedSession),
    User(RevokedUser),
    Client(RevokedClient),
    DistrustedKey(DistrustedKey),
}

impl Entry {
    fn of(row: &RevocationRow) -> Option<Entry> {
        let exp = row.expires_at.timestamp();
        if let Some(kid) = &row.kid {
            return Some(Entry::DistrustedKey(DistrustedKey { kid: kid.clone() }));
        }
        match (&row.jti, row.session_id, row.user_id, row.not_before) {
            (Some(jti), _, _, _) => Some(Entry::AccessToken(RevokedToken {
                jti: jti.clone(),
                exp,
            })),
            (None, Some(session), _, _) => Some(Entry::Session(RevokedSession {
                sid: session.to_string(),
                exp,
            })),
            (None, None, Some(user), Some(not_before)) => Some(Entry::User(RevokedUser {
                sub: user.to_string(),
                not_before: not_before.timestamp(),
            })),
            (None, None, None, Some(not_before)) => row.client_id.as_ref().map(|client_id| {
                Entry::Client(RevokedClient {
                    client_id: client_id.clone(),
                    not_before: not_before.timestamp(),
                })
            }),
            _ => None,
        }
    }
}

#[tracing::instrument(level = "debug", name = "revocation_feed", skip_all)]
pub async fn feed(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    bearer::require(&req, &state, FEED_SCOPE).await?;
    let query: FeedQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| Error::invalid_request("malformed query string"))?;
    let since = parse_number(query.since.as_deref(), 0, "since")?;
    let limit = parse_number(query.limit.as_deref(), MAX_PAGE, "limit")?.clamp(1, MAX_PAGE);
    let page = feed::page(&state.pool, since, limit, state.clock.now()).await?;
    let mut feed = Feed {
        revoked_tokens: Vec::new(),
        revoked_sessions: Vec::new(),
        revoked_users: Vec::new(),
        revoked_clients: Vec::new(),
        distrusted_keys: Vec::new(),
        next_cursor: page.next_cursor.to_string(),
        has_more: page.has_more,
    };
    for row in &page.rows {
        match Entry::of(row) {
            Some(Entry::AccessToken(token)) => feed.revoked_tokens.push(token),
            Some(Entry::Session(session)) => feed.revoked_sessions.push(session),
            Some(Entry::User(user)) => feed.revoked_users.push(user),
            Some(Entry::Client(client)) => feed.revoked_clients.push(client),
            Some(Entry::DistrustedKey(key)) => feed.distrusted_keys.push(key),
            None => {}
        }
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(feed))
}

#[derive(Deserialize)]
struct StreamQuery {
    since: Option<String>,
}

/// How soon an EventSource reconnects after the stream ends.
const RECONNECT_MS: u32 = 1000;

/// `GET /auth/revocations/stream`: every live entry after the cursor, then
/// each new one, as Server-Sent Events (see `revocation::stream`).
#[tracing::instrument(level = "debug", name = "revocation_stream", skip_all)]
pub async fn stream(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let holder = bearer::require(&req, &state, FEED_SCOPE).await?;
    // Taken before any database work, so a crowd over the limit costs
    // nothing but this refusal.
    let slot = state
        .stream_slots
        .take(&holder.client_id)
        .map_err(|_| Error::TooManyStreams)?;
    let query: StreamQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| Error::invalid_request("malformed query string"))?;
    // A reconnecting EventSource sends `Last-Event-ID` and repeats the
    // original URL, so the header is the newer cursor.
    let (since, name) = match req.headers().get("last-event-id") {
        Some(value) if !value.is_empty() => {
            let raw = Some(value.to_str().unwrap_or(""));
            (parse_number(raw, 0, "Last-Event-ID")?, "Last-Event-ID")
        }
        _ => (parse_number(query.since.as_deref(), 0, "since")?, "since"),
    };
    feed::stream_may_start(&state.pool, &state.denylist, since, name).await?;
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        // Reverse proxies (nginx) must pass events through unbuffered.
        .insert_header(("x-accel-buffering", HeaderValue::from_static("no")));
    if req.method() == Method::HEAD {
        return Ok(response.finish());
    }
    let messages = stream::start(Subscription {
        pool: state.pool.clone(),
        denylist: state.denylist.clone(),
        clients: state.clients.clone(),
        clock: state.clock.clone(),
        holder,
        since,
        keepalive: state.settings.revocation.stream_keepalive,
        deadline: state.settings.database.request_timeout,
        shutdown: state.shutdown.clone(),
        slot,
        hangup: peer::watch(&req),
    });
    let hello = Bytes::from(format!("retry: {RECONNECT_MS}\n: connected\n\n"));
    let body = futures_util::stream::unfold(
        (Some(hello), messages),
        |(hello, mut messages)| async move {
            if let Some(hello) = hello {
                return Some((Ok::<_, Infallible>(hello), (None, messages)));
            }
            let message = messages.recv().await?;
            Some((Ok(Bytes::from(event_text(&message))), (None, messages)))
        },
    );
    Ok(response.streaming(body))
}

/// The Server-Sent Events text of one message: an event per entry with its
/// `seq` as id, a comment for a keep-alive.
fn event_text(message: &Message) -> String {
    let mut text = String::new();
    match message {
        Message::Entries(rows) => {
            for row in rows {
                let Some(entry) = Entry::of(row) else {
                    continue;
                };
                // Serialising these plain structs cannot fail.
                let data = serde_json::to_string(&entry).unwrap_or_default();
                let _ = write!(text, "id: {}\nevent: revocation\ndata: {data}\n\n", row.seq);
            }
        }
        Message::KeepAlive => text.push_str(": keep-alive\n\n"),
    }
    text
}

fn parse_number(raw: Option<&str>, default: i64, name: &'static str) -> Result<i64, Error> {
    match raw {
        None => Ok(default),
        Some(raw) => raw.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            Error::invalid_request(format!("{name} must be a non-negative integer"))
        }),
    }
}
