//! `POST /auth/revoke` (RFC 7009): clients revoke their own tokens.

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::body;
use super::client_auth::credentials_from;
use super::proof;
use crate::error::Error;
use crate::grants::client;
use crate::revocation::inspect;
use crate::state::AppState;
use crate::telemetry::record_on_request;

/// `token_type_hint` is not read: the token is identified either way (§2.1),
/// and unknown parameters are ignored.
#[derive(Deserialize)]
struct RevokeRequest {
    token: Option<SecretString>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
}

#[tracing::instrument(level = "debug", name = "revoke", skip_all)]
pub async fn revoke(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let request: RevokeRequest = body::form_or_json(&req, payload, &state.settings.http).await?;
    let client = client::authenticate(
        &state,
        credentials_from(&req, request.client_id, request.client_secret)?,
    )
    .await?;
    record_on_request(&req, "client_id", client.id());
    let token = request
        .token
        .ok_or_else(|| Error::invalid_request("token is required"))?;

    let proof = state
        .dpop
        .at_revocation(proof::sent(&req), token.expose_secret(), now)?;
    let revoker = inspect::Revoker {
        client_id: client.id(),
        confidential: client.is_confidential(),
        proven_key: proof.as_ref().map(|p| p.jkt.as_str()),
    };
    inspect::revoke_own(&state.token_lookup(), &revoker, token.expose_secret(), now).await?;
    // Unknown and already-revoked tokens get the same 200 (§2.2).
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .finish())
}
