use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::{Admin, check_reason, json};
use crate::error::Error;
use crate::revocation::{self, Presented, Purpose};
use crate::state::AppState;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    token: Option<SecretString>,
    reason: Option<String>,
}

/// Revokes any token: an access token is denylisted until its `exp`, a
/// refresh token's whole family is revoked.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn revoke(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let admin = Admin::authenticate(&req, &state)?;
    let now = state.clock.now();
    let body: RevokeToken = json(&req, payload, &state, false).await?;
    let reason = check_reason(&body.reason)?;
    let token = body
        .token
        .ok_or_else(|| Error::invalid_request("token is required"))?;
    let presented = revocation::identify(
        &state.token_lookup(),
        token.expose_secret(),
        Purpose::Revoke,
        now,
    )
    .await?;
    // The audit names the token by jti or family, never by its value.
    let target = match &presented {
        Presented::Access(claims) => Some(format!("jti:{}", claims.jti)),
        Presented::Refresh(status) => Some(format!("family:{}", status.family_id)),
        Presented::Unknown => None,
    };
    // The revocation and its audit row commit together.
    let mut tx = state.pool.begin().await?;
    let kind = revocation::revoke(
        &mut tx,
        &presented,
        "admin revoked token",
        state.settings.tokens.access_ttl,
        now,
    )
    .await?;
    admin
        .audit(&mut tx, "token.revoke", target.as_deref(), reason, now)
        .await?;
    revocation::commit(tx, &state.pool, &state.denylist, now).await?;
    Ok(HttpResponse::Ok().json(json!({"revoked": kind.is_some(), "token_type": kind})))
}
