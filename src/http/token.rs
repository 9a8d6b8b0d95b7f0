//! `POST /auth/token` (RFC 6749 §3.2): form or JSON in, token response out.

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde::Deserialize;

use super::body;
use super::client_auth::credentials_from;
use super::client_ip::client_ip;
use super::proof;
use crate::domain::{GrantType, Scope};
use crate::error::{DPOP_NONCE, Error};
use crate::grants::{Target, client};
use crate::grants::{authorization_code, client_credentials, password, refresh};
use crate::state::AppState;
use crate::telemetry;
use crate::telemetry::record_on_request;

/// Every parameter any grant takes. Unknown parameters are ignored (§3.2).
#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
    device_token: Option<SecretString>,
    refresh_token: Option<SecretString>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    /// authorization_code (from the challenge endpoint) and its PKCE verifier.
    code: Option<SecretString>,
    code_verifier: Option<String>,
    /// RFC 8707: the one API the access token is for.
    resource: Option<String>,
}

#[tracing::instrument(level = "debug", name = "token", skip_all)]
pub async fn token(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let request: TokenRequest = body::form_or_json(&req, payload, &state.settings.http).await?;
    // Read once the body is in: a body sent slowly must not make a lock
    // computed from this instant end early.
    let now = state.clock.now();

    let grant_type = request
        .grant_type
        .as_deref()
        .ok_or_else(|| Error::invalid_request("grant_type is required"))?;
    let grant_type = GrantType::parse(grant_type).map_err(|_| Error::UnsupportedGrantType)?;
    record_on_request(&req, "grant_type", grant_type.as_str());

    let credentials = credentials_from(&req, request.client_id, request.client_secret)?;
    // Recorded only once authenticated: a secret pasted into the id field
    // must not reach the log.
    let client = client::authenticate(&state, credentials).await?;
    record_on_request(&req, "client_id", client.id());
    if !client.may_use(grant_type) {
        return Err(Error::UnauthorizedClient(
            "the client is not allowed to use this grant type",
        ));
    }
    let proof = state
        .dpop
        .at_token_endpoint(proof::sent(&req), &client, now)?;
    let scope = request
        .scope
        .map(|s| Scope::parse(&s))
        .transpose()
        .map_err(|_| Error::InvalidScope("scope is malformed"))?;
    let target = Target::of(&client, request.resource.as_deref())?;

    let response = match grant_type {
        GrantType::Password => {
            let username = request
                .username
                .ok_or_else(|| Error::invalid_request("username is required"))?;
            let password = request
                .password
                .ok_or_else(|| Error::invalid_request("password is required"))?;
            let login = password::Login {
                username,
                password,
                device_token: request.device_token,
                scope,
                address: client_ip(&req, &state.settings.http),
                proof,
            };
            password::grant(&state, &client, login, &target, now).await?
        }
        GrantType::ClientCredentials => {
            client_credentials::grant(&state, &client, scope, &target, proof.as_ref(), now)?
        }
        GrantType::RefreshToken => {
            let token = request
                .refresh_token
                .ok_or_else(|| Error::invalid_request("refresh_token is required"))?;
            refresh::grant(&state, &client, token, scope, &target, proof.as_ref()).await?
        }
        GrantType::AuthorizationCode => {
            let code = request
                .code
                .ok_or_else(|| Error::invalid_request("code is required"))?;
            let verifier = request
                .code_verifier
                .ok_or_else(|| Error::invalid_request("code_verifier is required"))?;
            authorization_code::grant(
                &state,
                &client,
                code,
                verifier,
                &target,
                proof.as_ref(),
                now,
            )
            .await?
        }
    };
    record_on_request(&req, "user_id", &response.subject);
    metrics::counter!(telemetry::metrics::TOKENS_ISSUED, "grant_type" => grant_type.as_str())
        .increment(1);
    let mut ok = HttpResponse::Ok();
    ok.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
    // The newest nonce, so the client need not be refused to learn it (§8.2).
    if let Some(nonce) = state.dpop.next_nonce(now) {
        ok.insert_header((DPOP_NONCE, nonce));
    }
    Ok(ok.json(response))
}
