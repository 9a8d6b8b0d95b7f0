use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::{Admin, Reason, check_reason, json, parse_id};
use crate::error::Error;
use crate::revocation;
use crate::state::AppState;
use crate::store::{refresh, users};

/// A user's live logins (refresh-token families).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let admin = Admin::authenticate(&req, &state)?;
    let now = state.clock.now();
    let id = parse_id(&path, "no such user")?;
    let mut conn = state.pool.acquire().await?;
    if users::find_by_id(&mut conn, id).await?.is_none() {
        return Err(Error::NotFound("no such user"));
    }
    let sessions = refresh::live_sessions(&state.pool, id, now).await?;
    admin
        .audit(&mut conn, "sessions.list", Some(&path), None, now)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "sessions": sessions })))
}

/// Revokes one login: every refresh token of that family.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn revoke(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let admin = Admin::authenticate(&req, &state)?;
    let now = state.clock.now();
    let (user, session) = path.into_inner();
    let user_id = parse_id(&user, "no such session")?;
    let session_id = parse_id(&session, "no such session")?;
    let body: Reason = json(&req, payload, &state, true).await?;
    let reason = check_reason(&body.reason)?;
    let mut tx = state.pool.begin().await?;
    if !refresh::revoke_user_family(&mut tx, user_id, session_id, "admin revoked session", now)
        .await?
    {
        return Err(Error::NotFound("no such session"));
    }
    let ttl = state.settings.tokens.access_ttl;
    revocation::deny_session_tokens(&mut tx, session_id, now, ttl).await?;
    admin
        .audit(
            &mut tx,
            "session.revoke",
            Some(&format!("{user}/{session}")),
            reason,
            now,
        )
        .await?;
    revocation::commit(tx, &state.pool, &state.denylist, now).await?;
    Ok(HttpResponse::NoContent().finish())
}
