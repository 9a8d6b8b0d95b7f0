use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{Admin, check_reason, json};
use crate::domain::signing::SigningAlgorithm;
use crate::error::Error;
use crate::state::AppState;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// Seconds until the new key signs (default `keys.rotation_delay`).
    delay_seconds: Option<u64>,
    /// Allow a delay shorter than the JWKS cache lifetime plus the key
    /// reload interval (emergency rotation after a key compromise): tokens
    /// signed meanwhile may fail at verifiers with a cached JWKS.
    #[serde(default)]
    force: bool,
    algorithm: Option<SigningAlgorithm>,
    reason: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let admin = Admin::authenticate(&req, &state)?;
    let now = state.clock.now();
    let mut conn = state.pool.acquire().await?;
    admin.audit(&mut conn, "keys.list", None, None, now).await?;
    Ok(HttpResponse::Ok().json(json!({ "keys": state.keys.list(now) })))
}

/// Same semantics as `tessera keys rotate`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn rotate(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let admin = Admin::authenticate(&req, &state)?;
    let now = state.clock.now();
    let body: Rotate = json(&req, payload, &state, true).await?;
    let reason = check_reason(&body.reason)?;
    let delay = body
        .delay_seconds
        .map(std::time::Duration::from_secs)
        .unwrap_or(state.settings.keys.rotation_delay);
    if delay > std::time::Duration::from_secs(30 * 86400) {
        return Err(Error::invalid_request("delay_seconds is at most 30 days"));
    }
    let minimum = state.settings.min_rotation_delay();
    if delay < minimum && !body.force {
        return Err(Error::invalid_request(format!(
            "delay_seconds below {} lets the new key sign before verifiers know it; set force for an emergency rotation",
            minimum.as_secs()
        )));
    }
    let algorithm = body.algorithm.unwrap_or(state.settings.keys.algorithm);
    // The new key and its audit row commit together.
    let mut tx = state.pool.begin().await?;
    let kid = state.keys.rotate(&mut tx, algorithm, now, delay).await?;
    admin
        .audit(&mut tx, "keys.rotate", Some(&kid), reason, now)
        .await?;
    tx.commit().await?;
    state.keys.reload(&state.pool, now).await?;
    Ok(HttpResponse::Created().json(json!({ "kid": kid, "keys": state.keys.list(now) })))
}
