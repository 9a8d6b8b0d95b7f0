//! `POST /admin/clients/{client_id}/disable`, `/enable` and `/secret`: the
//! same operations as `tessera client disable|enable|rotate-secret`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{Admin, json};
use crate::error::Error;
use crate::ops::{Reason, SecretChoice};
use crate::state::AppState;

/// The optional body: why, and whether every token the client holds ends.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientChange {
    pub reason: Option<String>,
    #[serde(default)]
    pub revoke_tokens: bool,
}

#[derive(Serialize)]
struct Changed<'a> {
    client_id: &'a str,
    disabled: Option<bool>,
    tokens_revoked: bool,
    /// A generated secret, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<&'a str>,
}

async fn change(
    req: &HttpRequest,
    payload: Payload,
    state: &AppState,
) -> Result<(Reason, bool), Error> {
    let body: ClientChange = json(req, payload, state, true).await?;
    Ok((Reason::parse(body.reason)?, body.revoke_tokens))
}

pub async fn disable(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    set_disabled(admin, req, path, payload, state, true).await
}

pub async fn enable(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    set_disabled(admin, req, path, payload, state, false).await
}

#[tracing::instrument(level = "debug", skip(admin, req, path, payload, state))]
async fn set_disabled(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
    disabled: bool,
) -> Result<HttpResponse, Error> {
    let (reason, revoke_tokens) = change(&req, payload, &state).await?;
    state
        .ops()
        .set_client_disabled(
            &admin.actor,
            &path,
            disabled,
            revoke_tokens,
            &reason,
            admin.now,
        )
        .await?;
    Ok(HttpResponse::Ok().json(Changed {
        client_id: &path,
        disabled: Some(disabled),
        tokens_revoked: revoke_tokens,
        client_secret: None,
    }))
}

/// A new generated secret for a confidential client, returned once.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn rotate_secret(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let (reason, revoke_tokens) = change(&req, payload, &state).await?;
    let secret = state
        .ops()
        .rotate_client_secret(
            &admin.actor,
            &path,
            SecretChoice::Generate,
            revoke_tokens,
            &reason,
            admin.now,
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(Changed {
            client_id: &path,
            disabled: None,
            tokens_revoked: revoke_tokens,
            client_secret: secret.as_ref().map(|s| s.expose()),
        }))
}
