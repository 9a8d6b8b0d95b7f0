//! `POST /auth/challenge`: the authorization challenge endpoint of
//! draft-ietf-oauth-first-party-apps-04 (§5), for first-party native apps
//! that log in without a browser.

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::client_auth::credentials_from;
use super::client_ip::client_ip;
use super::{body, proof};
use crate::domain::{GrantType, Scope};
use crate::error::Error;
use crate::grants::challenge::{self, Continue};
use crate::grants::client;
use crate::grants::password::{self, Login, Outcome, Then};
use crate::mfa::Typed;
use crate::state::AppState;
use crate::telemetry::record_on_request;

#[derive(Deserialize)]
struct ChallengeRequest {
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    response_type: Option<String>,
    scope: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
    /// The device credential of the app's last login, as at the password
    /// grant (it lets a known device past the username-wide lock).
    device_token: Option<SecretString>,
    auth_session: Option<SecretString>,
    otp: Option<SecretString>,
    recovery_code: Option<SecretString>,
}

#[derive(Serialize)]
struct Issued<'a> {
    authorization_code: &'a str,
}

#[tracing::instrument(level = "debug", name = "challenge", skip_all)]
pub async fn challenge(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let request: ChallengeRequest = body::form_or_json(&req, payload, &state.settings.http).await?;
    let now = state.clock.now();
    let credentials = credentials_from(&req, request.client_id, request.client_secret)?;
    let client = client::authenticate(&state, credentials).await?;
    record_on_request(&req, "client_id", client.id());
    if !client.may_use(GrantType::AuthorizationCode) {
        return Err(Error::UnauthorizedClient(
            "the client is not allowed to use authorization_code",
        ));
    }
    if request
        .response_type
        .as_deref()
        .is_some_and(|t| t != "code")
    {
        return Err(Error::invalid_request("response_type must be code"));
    }
    let code_challenge = pkce_challenge(request.code_challenge, request.code_challenge_method)?;
    let proof = state.dpop.at_challenge(proof::sent(&req), now)?;
    let dpop_jkt = proof.as_ref().map(|p| p.jkt.as_str());
    let address = client_ip(&req, &state.settings.http);

    let code = match (request.auth_session, request.username, request.password) {
        (Some(auth_session), None, None) => {
            let typed = match (&request.otp, &request.recovery_code) {
                (Some(otp), None) => Typed::Totp(otp.expose_secret()),
                (None, Some(code)) => Typed::Recovery(code.expose_secret()),
                _ => {
                    return Err(Error::invalid_request(
                        "send auth_session with either otp or recovery_code",
                    ));
                }
            };
            let request = Continue {
                auth_session: auth_session.expose_secret(),
                typed,
                code_challenge: code_challenge.as_deref(),
                dpop_jkt,
                address,
            };
            challenge::go_on(&state, &client, request, now).await?
        }
        (None, Some(username), Some(password)) => {
            let code_challenge = code_challenge.ok_or_else(|| {
                Error::invalid_request("code_challenge and code_challenge_method=S256 are required")
            })?;
            let scope = request
                .scope
                .map(|s| Scope::parse(&s))
                .transpose()
                .map_err(|_| Error::InvalidScope("scope is malformed"))?;
            let login = Login {
                username,
                password,
                device_token: request.device_token,
                scope,
                address,
                proof,
            };
            let then = Then::Code {
                code_challenge: &code_challenge,
            };
            match password::login(&state, &client, login, then, now).await? {
                Outcome::Code(code) => code,
                Outcome::Tokens(_) => {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "a challenge login ended with tokens"
                    )));
                }
            }
        }
        _ => {
            return Err(Error::invalid_request(
                "send username and password, or auth_session with otp or recovery_code",
            ));
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(Issued {
            authorization_code: code.expose(),
        }))
}

/// The PKCE challenge, if given: S256 only (RFC 7636 §4.2: 43 base64url
/// characters, the SHA-256 of the verifier).
fn pkce_challenge(
    challenge: Option<String>,
    method: Option<String>,
) -> Result<Option<String>, Error> {
    let Some(challenge) = challenge else {
        return Ok(None);
    };
    if method.as_deref() != Some("S256") {
        return Err(Error::invalid_request("code_challenge_method must be S256"));
    }
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid_request(
            "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
        ));
    }
    Ok(Some(challenge))
}
