//! `POST /admin/resources`, `GET /admin/resources`, `DELETE
//! /admin/resources?uri=...`: the same operations as `tessera resource
//! create|list|delete`.

use std::time::Duration;

use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{Admin, json, reason};
use crate::domain::Resource;
use crate::error::Error;
use crate::ops::{NewResource, Reason};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    pub uri: Option<String>,
    /// Space-separated scopes the resource accepts.
    pub scope: Option<String>,
    /// Seconds; unset: the client's or the server's lifetime.
    pub access_ttl: Option<u64>,
    pub reason: Option<String>,
}

/// A resource as the admin API shows it.
#[derive(Serialize)]
struct Shown<'a> {
    uri: &'a str,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_ttl: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clients: Option<&'a [String]>,
}

fn shown<'a>(resource: &'a Resource, clients: Option<&'a [String]>) -> Shown<'a> {
    Shown {
        uri: resource.uri.as_str(),
        scope: resource.scopes.to_string(),
        access_ttl: resource.access_ttl.map(|d| d.as_secs()),
        clients,
    }
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn create(
    admin: Admin,
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let body: Create = json(&req, payload, &state, false).await?;
    let new = NewResource {
        uri: body
            .uri
            .ok_or_else(|| Error::invalid_request("uri is required"))?,
        scopes: body
            .scope
            .ok_or_else(|| Error::invalid_request("scope is required"))?
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        access_ttl: body.access_ttl.map(Duration::from_secs),
    };
    let reason = Reason::parse(body.reason)?;
    let resource = state
        .ops()
        .create_resource(&admin.actor, new, &reason, admin.now)
        .await?;
    Ok(HttpResponse::Created().json(shown(&resource, None)))
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn list(_admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let listed = state.ops().list_resources().await?;
    let resources: Vec<Shown<'_>> = listed
        .iter()
        .map(|l| shown(&l.resource, Some(&l.clients)))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "resources": resources })))
}

#[derive(Deserialize)]
struct Which {
    uri: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn delete(
    admin: Admin,
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    // Parsed here, not by an extractor: a malformed or repeated `uri` is
    // an RFC 6749 error like any other.
    let which: Which = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| Error::invalid_request("malformed query string: give one uri"))?;
    let uri = which
        .uri
        .as_deref()
        .ok_or_else(|| Error::invalid_request("the uri query parameter is required"))?;
    let reason = reason(&req, payload, &state).await?;
    state
        .ops()
        .delete_resource(&admin.actor, uri, &reason, admin.now)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
