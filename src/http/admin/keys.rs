use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{Admin, json};
use crate::domain::signing::SigningAlgorithm;
use crate::error::Error;
use crate::ops::{Reason, RotateKey};
use crate::state::AppState;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// Seconds until the new key signs (default `keys.rotation_delay`).
    delay_seconds: Option<u64>,
    #[serde(default)]
    force: bool,
    algorithm: Option<SigningAlgorithm>,
    reason: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn list(admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let ops = state.ops();
    let keys = ops.list_keys(&admin.actor, admin.now).await?;
    let distrusted = ops.distrusted_keys().await?;
    Ok(HttpResponse::Ok().json(json!({ "keys": keys, "distrusted": distrusted })))
}

/// The body of `POST /admin/keys/{kid}/distrust`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distrust {
    reason: Option<String>,
    #[serde(default)]
    revoke_sessions: bool,
}

/// Same as `tessera keys distrust`: both call `ops::distrust_key`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn distrust(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let body: Distrust = json(&req, payload, &state, false).await?;
    let reason = Reason::parse(body.reason)?;
    let done = state
        .ops()
        .distrust_key(
            &admin.actor,
            &path,
            body.revoke_sessions,
            &reason,
            admin.now,
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "kid": done.kid,
        "replaced_by": done.replaced_by,
        "sessions_ended": done.sessions_ended,
    })))
}

/// Same policy as `tessera keys rotate`: both call `ops::rotate_key`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn rotate(
    admin: Admin,
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let body: Rotate = json(&req, payload, &state, true).await?;
    let reason = Reason::parse(body.reason)?;
    let rotate = RotateKey {
        delay: body.delay_seconds.map(std::time::Duration::from_secs),
        force: body.force,
        algorithm: body.algorithm,
    };
    let ops = state.ops();
    let kid = ops
        .rotate_key(&admin.actor, rotate, &reason, admin.now)
        .await?;
    Ok(HttpResponse::Created().json(json!({ "kid": kid, "keys": state.keys.list(admin.now) })))
}
