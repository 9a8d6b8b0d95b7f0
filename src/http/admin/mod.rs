//! The admin API, mounted only on the admin listener. Every call needs a
//! bearer token of this issuer with the `admin` scope (the `Admin`
//! extractor), and every call writes an audit row in the same transaction
//! as the change it makes (the operations in `ops` do that). Handlers only
//! translate HTTP to an operation and back.

pub mod audit;
pub mod clients;
pub mod keys;
pub mod refusals;
pub mod resources;
pub mod sessions;
pub mod tokens;
pub mod users;

use actix_web::web::{self, Payload};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{bearer, body};
use crate::error::Error;
use crate::ops::{Actor, Reason};
use crate::state::AppState;

pub const ADMIN_SCOPE: &str = "admin";

/// The authenticated operator, and "now" as read at the edge.
pub struct Admin {
    pub actor: Actor,
    pub now: DateTime<Utc>,
}

impl FromRequest for Admin {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Admin, Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| {
                Error::Internal(anyhow::anyhow!("the admin API has no application state"))
            })?;
            let claims = bearer::require(&req, state, ADMIN_SCOPE).await?;
            let actor = Actor::Token {
                sub: claims.sub,
                client_id: claims.client_id,
            };
            // For `refusals`: a refused call of an admin token is audited.
            req.extensions_mut().insert(actor.clone());
            Ok(Admin {
                actor,
                now: state.clock.now(),
            })
        })
    }
}

/// The optional body of actions that change something: why.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithReason {
    pub reason: Option<String>,
}

/// Reads a JSON body; an empty body is `T::default()` when `optional`.
pub async fn json<T: DeserializeOwned + Default>(
    req: &HttpRequest,
    payload: Payload,
    state: &AppState,
    optional: bool,
) -> Result<T, Error> {
    let raw = body::read(payload, &state.settings.http).await?;
    if raw.is_empty() && optional {
        return Ok(T::default());
    }
    if !req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        return Err(Error::invalid_request(
            "Content-Type must be application/json",
        ));
    }
    body::parse(req, &raw)
}

/// The reason of an optional `{"reason": ...}` body.
pub async fn reason(
    req: &HttpRequest,
    payload: Payload,
    state: &AppState,
) -> Result<Reason, Error> {
    let body: WithReason = json(req, payload, state, true).await?;
    Reason::parse(body.reason)
}

/// Path ids that are not UUIDs name nothing.
pub fn parse_id(raw: &str, what: &'static str) -> Result<Uuid, Error> {
    Uuid::parse_str(raw).map_err(|_| Error::NotFound(what))
}
