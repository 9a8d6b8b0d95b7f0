//! `/auth/mfa/...`: a user turns their second factor on and off, with
//! their own access token (`Authorization: Bearer` or `DPoP`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::client_ip::client_ip;
use super::{bearer, body};
use crate::error::Error;
use crate::mfa::{self, Typed, Typist};
use crate::state::AppState;

#[derive(Deserialize)]
struct Codes {
    code: Option<SecretString>,
    recovery_code: Option<SecretString>,
}

/// The user of the request's access token, and the code they sent (if the
/// call takes one).
async fn typist(req: &HttpRequest, state: &AppState) -> Result<Typist, Error> {
    let claims = bearer::require_user(req, state).await?;
    let user_id = Uuid::parse_str(&claims.sub).map_err(|_| Error::InvalidToken)?;
    let session = claims.sid.as_deref().and_then(|s| Uuid::parse_str(s).ok());
    Typist::of(
        state,
        user_id,
        session,
        client_ip(req, &state.settings.http),
    )
    .await
}

fn no_store(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    response
}

/// `POST /auth/mfa/totp`: a new enrollment (its secret, shown once).
pub async fn begin(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let who = typist(&req, &state).await?;
    let enrollment = mfa::begin(&state, &who, state.clock.now()).await?;
    Ok(no_store(HttpResponse::Ok()).json(json!({
        "secret": enrollment.secret,
        "otpauth_uri": enrollment.otpauth_uri,
    })))
}

/// `POST /auth/mfa/totp/confirm`: the first code turns it on.
pub async fn confirm(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let codes: Codes = body::form_or_json(&req, payload, &state.settings.http).await?;
    let who = typist(&req, &state).await?;
    let code = codes
        .code
        .ok_or_else(|| Error::invalid_request("code is required"))?;
    let recovery = mfa::confirm(&state, &who, code.expose_secret(), state.clock.now()).await?;
    Ok(no_store(HttpResponse::Ok()).json(json!({ "recovery_codes": recovery })))
}

/// `DELETE /auth/mfa/totp`: off, with a current code or a recovery code.
pub async fn turn_off(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let codes: Codes = body::form_or_json(&req, payload, &state.settings.http).await?;
    let who = typist(&req, &state).await?;
    let typed = match (&codes.code, &codes.recovery_code) {
        (Some(code), None) => Typed::Totp(code.expose_secret()),
        (None, Some(code)) => Typed::Recovery(code.expose_secret()),
        _ => return Err(Error::invalid_request("send either code or recovery_code")),
    };
    mfa::turn_off(&state, &who, typed, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /auth/mfa/recovery-codes`: a new set for a current code.
pub async fn recovery_codes(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let codes: Codes = body::form_or_json(&req, payload, &state.settings.http).await?;
    let who = typist(&req, &state).await?;
    let code = codes
        .code
        .ok_or_else(|| Error::invalid_request("code is required"))?;
    let recovery =
        mfa::new_recovery_codes(&state, &who, code.expose_secret(), state.clock.now()).await?;
    Ok(no_store(HttpResponse::Ok()).json(json!({ "recovery_codes": recovery })))
}
