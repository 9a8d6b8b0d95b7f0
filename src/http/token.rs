//! `POST /auth/token` (RFC 6749 §3.2): form or JSON in, token response out.

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use secrecy::SecretString;
use serde::Deserialize;
use tracing_actix_web::RootSpan;

use super::body;
use crate::domain::Scope;
use crate::error::Error;
use crate::grants::client::{self, ClientCredentials};
use crate::grants::{password, refresh};
use crate::state::AppState;

const MAX_CLIENT_ID_LEN: usize = 255;

/// Every parameter any grant takes. Unknown parameters are ignored (§3.2).
#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
    refresh_token: Option<SecretString>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
}

#[tracing::instrument(level = "debug", name = "token", skip_all)]
pub async fn token(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
    root: RootSpan,
) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let raw = body::read(payload, state.settings.http.max_body_bytes).await?;
    let request: TokenRequest = body::parse(&req, &raw)?;

    let grant_type = request
        .grant_type
        .as_deref()
        .ok_or_else(|| Error::invalid_request("grant_type is required"))?;
    if !matches!(grant_type, "password" | "refresh_token") {
        return Err(Error::UnsupportedGrantType);
    }
    root.record("grant_type", grant_type);

    let credentials = client_credentials(&req, request.client_id, request.client_secret)?;
    root.record("client_id", credentials.client_id.as_str());
    let client = client::authenticate(&state, credentials).await?;
    if !client.may_use(grant_type) {
        return Err(Error::UnauthorizedClient);
    }
    let scope = request
        .scope
        .map(|s| Scope::parse(&s))
        .transpose()
        .map_err(|_| Error::InvalidScope("scope is malformed"))?;

    let response = match grant_type {
        "password" => {
            let username = request
                .username
                .ok_or_else(|| Error::invalid_request("username is required"))?;
            let password = request
                .password
                .ok_or_else(|| Error::invalid_request("password is required"))?;
            password::grant(&state, &client, &username, password, scope, now).await?
        }
        _ => {
            let token = request
                .refresh_token
                .ok_or_else(|| Error::invalid_request("refresh_token is required"))?;
            refresh::grant(&state, &client, token, scope, now).await?
        }
    };
    root.record("user_id", response.subject.as_str());
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .json(response))
}

/// Client identity from HTTP Basic (`client_secret_basic`) or the body
/// (`client_secret_post`, or just `client_id` for public clients). Using both
/// methods at once is refused (§2.3).
fn client_credentials(
    req: &HttpRequest,
    body_id: Option<String>,
    body_secret: Option<SecretString>,
) -> Result<ClientCredentials, Error> {
    let credentials = match basic_auth(req)? {
        Some((id, secret)) => {
            if body_secret.is_some() {
                return Err(Error::invalid_request(
                    "use only one client authentication method",
                ));
            }
            if body_id.as_deref().is_some_and(|b| b != id) {
                return Err(Error::invalid_request(
                    "client_id does not match the Authorization header",
                ));
            }
            ClientCredentials {
                client_id: id,
                secret: Some(secret),
            }
        }
        None => {
            let client_id = body_id.ok_or(Error::InvalidClient)?;
            ClientCredentials {
                client_id,
                secret: body_secret,
            }
        }
    };
    if credentials.client_id.is_empty() || credentials.client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(Error::InvalidClient);
    }
    Ok(credentials)
}

/// Parses `Authorization: Basic base64(urlencode(id):urlencode(secret))`.
fn basic_auth(req: &HttpRequest) -> Result<Option<(String, SecretString)>, Error> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| Error::InvalidClient)?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(Error::InvalidClient);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Error::InvalidClient);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or(Error::InvalidClient)?;
    let (id, secret) = decoded.split_once(':').ok_or(Error::InvalidClient)?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| Error::InvalidClient)
    };
    Ok(Some((unescape(id)?, SecretString::from(unescape(secret)?))))
}
