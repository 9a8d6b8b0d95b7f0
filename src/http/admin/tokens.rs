use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::{Admin, json};
use crate::error::Error;
use crate::ops::Reason;
use crate::state::AppState;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    token: Option<SecretString>,
    reason: Option<String>,
}

/// Revokes any token: a user's token ends its session, a service's access
/// token is denylisted until its `exp`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn revoke(
    admin: Admin,
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let body: RevokeToken = json(&req, payload, &state, false).await?;
    let reason = Reason::parse(body.reason)?;
    let token = body
        .token
        .ok_or_else(|| Error::invalid_request("token is required"))?;
    let kind = state
        .ops()
        .revoke_token(
            &admin.actor,
            &state.token_lookup(),
            token.expose_secret(),
            &reason,
            admin.now,
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"revoked": kind.is_some(), "token_type": kind})))
}
