//! The admin API, mounted only on the admin listener. Every call needs a
//! bearer token of this issuer with the `admin` scope, and every call writes
//! an audit row (in the same transaction as the change it makes).

pub mod audit;
pub mod keys;
pub mod refusals;
pub mod sessions;
pub mod tokens;
pub mod users;

use actix_web::HttpRequest;
use actix_web::web::Payload;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{bearer, body};
use crate::domain::AccessClaims;
use crate::error::Error;
use crate::state::AppState;
use crate::store::audit as audit_store;

pub const ADMIN_SCOPE: &str = "admin";
const MAX_REASON_CHARS: usize = 500;

/// The authenticated operator.
pub struct Admin(AccessClaims);

impl Admin {
    pub fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Admin, Error> {
        bearer::require(req, state, ADMIN_SCOPE).map(Admin)
    }

    /// Writes the audit row for this call.
    pub async fn audit(
        &self,
        conn: &mut PgConnection,
        action: &str,
        target: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let entry = audit_store::Entry {
            actor: &self.0.sub,
            actor_client_id: Some(&self.0.client_id),
            os_user: None,
            action,
            target,
            reason,
            outcome: audit_store::Outcome::Ok,
        };
        audit_store::record(conn, entry, now).await?;
        Ok(())
    }
}

/// The optional body of actions that change something: why.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
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

pub fn check_reason(reason: &Option<String>) -> Result<Option<&str>, Error> {
    match reason {
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(Error::invalid_request(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        ))),
        Some(r) => Ok(Some(r.as_str())),
        None => Ok(None),
    }
}

/// Path ids that are not UUIDs name nothing.
pub fn parse_id(raw: &str, what: &'static str) -> Result<Uuid, Error> {
    Uuid::parse_str(raw).map_err(|_| Error::NotFound(what))
}
