//! `GET /admin/clients`, `POST /admin/clients/{client_id}/disable`,
//! `/enable` and `/secret`, and `PUT /admin/clients/{client_id}/dpop`,
//! `/resources`, `/lifetimes` and `/claims`: the same operations as `tessera
//! client list|disable|enable|rotate-secret|set-dpop|set-resources|set-lifetimes|set-claims`.

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{Admin, json};
use crate::domain::client::Lifetimes;
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

/// A client as listed: never its secret.
#[derive(Serialize)]
struct Listed<'a> {
    client_id: &'a str,
    /// `confidential` or `public`.
    kind: &'static str,
    disabled: bool,
    dpop_bound_access_tokens: bool,
    grant_types: Vec<&'static str>,
    scope: String,
    resources: Vec<&'a str>,
    /// Its own lifetimes in seconds; absent: the server's.
    lifetimes: LifetimesBody,
    claims: Vec<&'a str>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn list(_admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let clients = state.ops().list_clients().await?;
    let listed: Vec<Listed<'_>> = clients
        .iter()
        .map(|c| Listed {
            client_id: c.id(),
            kind: if c.is_confidential() {
                "confidential"
            } else {
                "public"
            },
            disabled: c.disabled,
            dpop_bound_access_tokens: c.dpop_bound_access_tokens,
            grant_types: c.grants.iter().map(|g| g.as_str()).collect(),
            scope: c.scopes.to_string(),
            resources: c.resources.iter().map(|r| r.uri.as_str()).collect(),
            lifetimes: LifetimesBody::from(c.lifetimes),
            claims: c.claims.iter().map(|n| n.as_str()).collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "clients": listed })))
}

/// Whether the client must send a DPoP proof with every token request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopChange {
    pub dpop_bound_access_tokens: Option<bool>,
    pub reason: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_dpop(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let body: DpopChange = json(&req, payload, &state, false).await?;
    let bound = body
        .dpop_bound_access_tokens
        .ok_or_else(|| Error::invalid_request("dpop_bound_access_tokens is required"))?;
    let reason = Reason::parse(body.reason)?;
    state
        .ops()
        .set_client_dpop_bound(&admin.actor, &path, bound, &reason, admin.now)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "client_id": path.as_str(),
        "dpop_bound_access_tokens": bound,
    })))
}

/// The body of `PUT /admin/clients/{client_id}/resources`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesChange {
    pub resources: Option<Vec<String>>,
    pub reason: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_resources(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let body: ResourcesChange = json(&req, payload, &state, false).await?;
    let uris = body
        .resources
        .ok_or_else(|| Error::invalid_request("resources (a list of URIs) is required"))?;
    let reason = Reason::parse(body.reason)?;
    let stored = state
        .ops()
        .set_client_resources(&admin.actor, &path, &uris, &reason, admin.now)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "client_id": path.as_str(),
        "resources": stored,
    })))
}

/// A client's own lifetimes, in seconds; absent or null: the server's.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LifetimesBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_ttl: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_idle: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_max: Option<u64>,
}

impl From<Lifetimes> for LifetimesBody {
    fn from(l: Lifetimes) -> Self {
        LifetimesBody {
            access_ttl: l.access.map(|d| d.as_secs()),
            refresh_idle: l.refresh_idle.map(|d| d.as_secs()),
            refresh_max: l.refresh_max.map(|d| d.as_secs()),
        }
    }
}

/// The body of `PUT /admin/clients/{client_id}/lifetimes`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifetimesChange {
    pub access_ttl: Option<u64>,
    pub refresh_idle: Option<u64>,
    pub refresh_max: Option<u64>,
    pub reason: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_lifetimes(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let body: LifetimesChange = json(&req, payload, &state, true).await?;
    let lifetimes = Lifetimes {
        access: body.access_ttl.map(Duration::from_secs),
        refresh_idle: body.refresh_idle.map(Duration::from_secs),
        refresh_max: body.refresh_max.map(Duration::from_secs),
    };
    let reason = Reason::parse(body.reason)?;
    state
        .ops()
        .set_client_lifetimes(&admin.actor, &path, lifetimes, &reason, admin.now)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "client_id": path.as_str(),
        "lifetimes": LifetimesBody::from(lifetimes),
    })))
}

/// The body of `PUT /admin/clients/{client_id}/claims`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsChange {
    pub claims: Option<Vec<String>>,
    pub reason: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_claims(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let body: ClaimsChange = json(&req, payload, &state, false).await?;
    let names = body
        .claims
        .ok_or_else(|| Error::invalid_request("claims (a list of attribute names) is required"))?;
    let reason = Reason::parse(body.reason)?;
    let stored = state
        .ops()
        .set_client_claims(&admin.actor, &path, &names, &reason, admin.now)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "client_id": path.as_str(),
        "claims": stored,
    })))
}
