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
use crate::revocation::{self, Presented, Purpose};
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

#[derive(Serialize, Default)]
struct Introspection {
    active: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
}

#[derive(Serialize)]
struct Details {
    /// RFC 7662 §2.2: the RFC 6749 token type, so only for access tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// Which kind of token this is: `access_token` or `refresh_token`.
    token_use: &'static str,
    sub: String,
    client_id: String,
    scope: String,
    exp: i64,
    iat: i64,
    jti: String,
    iss: String,
    aud: String,
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
    // Never "active" for a token this instance cannot yet know is revoked.
    if !state.denylist.is_loaded() {
        return Err(Error::TemporarilyUnavailable);
    }

    let settings = &state.settings;

    let presented = revocation::identify(
        &state.token_lookup(),
        token.expose_secret(),
        Purpose::Introspect,
        now,
    )
    .await?;
    // The tokens of a disabled client are dead with it (and it cannot refresh).
    let holder = match &presented {
        Presented::Access(claims) => Some(claims.client_id.as_str()),
        Presented::Refresh(status) => Some(status.client_id.as_str()),
        Presented::Unknown => None,
    };
    let client_disabled = match holder {
        Some(client_id) => state.clients.is_disabled(&state.pool, client_id).await?,
        None => false,
    };
    let revoked = match &presented {
        Presented::Access(claims) => {
            state
                .denylist
                .is_revoked_current(&state.pool, claims, now)
                .await?
        }
        _ => false,
    };
    let details = match presented {
        Presented::Access(claims) if !client_disabled && !revoked => Some(Details {
            token_type: Some("Bearer"),
            token_use: "access_token",
            sub: claims.sub,
            client_id: claims.client_id,
            scope: claims.scope,
            exp: claims.exp,
            iat: claims.iat,
            jti: claims.jti,
            iss: claims.iss,
            aud: claims.aud,
        }),
        Presented::Refresh(status) if !client_disabled && status.is_active(now) => Some(Details {
            token_type: None,
            token_use: "refresh_token",
            sub: status.user_id.to_string(),
            client_id: status.client_id,
            scope: status.scope,
            exp: status.expires_at.timestamp(),
            iat: status.created_at.timestamp(),
            jti: status.token_id.to_string(),
            iss: settings.issuer.clone(),
            aud: settings.audience.clone(),
        }),
        _ => None,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(Introspection {
            active: details.is_some(),
            details,
        }))
}
