use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::{Admin, parse_id, reason};
use crate::error::Error;
use crate::state::AppState;

/// A user's live sessions.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list(
    admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let id = parse_id(&path, "no such user")?;
    let sessions = state
        .ops()
        .list_sessions(&admin.actor, id, admin.now)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "sessions": sessions })))
}

/// Ends one session: every refresh token of it, and its access tokens.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn revoke(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let (user, session) = path.into_inner();
    let user = parse_id(&user, "no such session")?;
    let session = parse_id(&session, "no such session")?;
    let reason = reason(&req, payload, &state).await?;
    state
        .ops()
        .revoke_session(&admin.actor, user, session, &reason, admin.now)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
