//! `POST /auth/introspect` (RFC 7662) for confidential clients holding the
//! `introspect` scope, and for admins (bearer token with `admin`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::client_auth::credentials_from;
use super::{bearer, body};
use crate::error::Error;
use crate::grants::client;
use crate::revocation::inspect::{self, Active};
use crate::state::AppState;
use crate::telemetry::record_on_request;

/// The client scope that allows introspection.
pub const INTROSPECT_SCOPE: &str = "introspect";

/// `token_type_hint` is not read: the token is identified either way.
#[derive(Deserialize)]
struct IntrospectRequest {
    token: Option<SecretString>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
}

#[derive(Serialize)]
struct Introspection {
    active: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    details: Option<Active>,
}

#[tracing::instrument(level = "debug", name = "introspect", skip_all)]
pub async fn introspect(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let request: IntrospectRequest =
        body::form_or_json(&req, payload, &state.settings.http).await?;
    if bearer::is_present(&req) {
        bearer::require(&req, &state, "admin").await?;
    } else {
        let client = client::authenticate(
            &state,
            credentials_from(&req, request.client_id, request.client_secret)?,
        )
        .await?;
        record_on_request(&req, "client_id", client.id());
        if !client.is_confidential() || !client.scopes.contains(INTROSPECT_SCOPE) {
            return Err(Error::UnauthorizedClient(
                "the client is not allowed to introspect",
            ));
        }
    }
    let token = request
        .token
        .ok_or_else(|| Error::invalid_request("token is required"))?;

    let details = inspect::introspect(&state.token_lookup(), token.expose_secret(), now).await?;

    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(Introspection {
            active: details.is_some(),
            details,
        }))
}
