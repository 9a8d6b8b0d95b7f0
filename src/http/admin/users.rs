use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::{Admin, json, parse_id, reason, refusals};
use crate::error::Error;
use crate::ops::{NewUser, Reason};
use crate::state::AppState;

const NO_USER: &str = "no such user";

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    username: String,
    password: SecretString,
    #[serde(default)]
    scopes: Vec<String>,
    reason: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: SecretString,
    reason: Option<String>,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn create(
    admin: Admin,
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let body: NewUserBody = json(&req, payload, &state, false).await?;
    // A 409 is about this username; the path does not name it.
    refusals::name_target(&req, format!("username {}", body.username));
    let reason = Reason::parse(body.reason)?;
    let new = NewUser {
        username: body.username,
        password: body.password,
        scopes: body.scopes,
    };
    let user = state
        .ops()
        .create_user(&admin.actor, new, &reason, admin.now)
        .await?;
    Ok(HttpResponse::Created().json(user))
}

#[derive(Deserialize)]
struct FindQuery {
    username: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// `GET /admin/users?username=` (that user, as logins spell it) or
/// `?after=&limit=` (a page, in username order).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn find(
    _admin: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let query: FindQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| Error::invalid_request("malformed query string"))?;
    let limit = match query.limit {
        None => 100,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::invalid_request("limit must be a positive integer"))?,
    };
    // A cursor is a username we sent: bounded, and never a byte Postgres
    // cannot hold.
    if query
        .after
        .as_deref()
        .is_some_and(|after| after.chars().count() > 128 || after.chars().any(char::is_control))
    {
        return Err(Error::invalid_request(
            "after must be the next_cursor of a previous page",
        ));
    }
    let page = state
        .ops()
        .find_users(query.username.as_deref(), query.after.as_deref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn read(
    admin: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let id = parse_id(&path, NO_USER)?;
    let user = state.ops().read_user(&admin.actor, id, admin.now).await?;
    Ok(HttpResponse::Ok().json(user))
}

/// Disabling also logs the user out everywhere.
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
    let id = parse_id(&path, NO_USER)?;
    let reason = reason(&req, payload, &state).await?;
    let user = state
        .ops()
        .set_disabled(&admin.actor, id, disabled, &reason, admin.now)
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

/// Setting a password logs the user out everywhere.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_password(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let id = parse_id(&path, NO_USER)?;
    let body: NewPassword = json(&req, payload, &state, false).await?;
    let reason = Reason::parse(body.reason)?;
    state
        .ops()
        .set_password(&admin.actor, id, body.password, &reason, admin.now)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Logs the user out everywhere: every session, and every access token
/// issued until now.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn revoke_everywhere(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let id = parse_id(&path, NO_USER)?;
    let reason = reason(&req, payload, &state).await?;
    let sessions = state
        .ops()
        .log_out_everywhere(&admin.actor, id, &reason, admin.now)
        .await?;
    Ok(HttpResponse::Ok()
        .json(json!({"sessions_revoked": sessions, "not_before": admin.now.timestamp()})))
}

/// The body of `PUT /admin/users/{id}/claims`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsChange {
    pub claims: Option<serde_json::Value>,
    pub reason: Option<String>,
}

/// Replaces the user's attributes; answers with the user.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_claims(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let id = parse_id(&path, NO_USER)?;
    let body: ClaimsChange = json(&req, payload, &state, false).await?;
    let claims = body
        .claims
        .ok_or_else(|| Error::invalid_request("claims (a JSON object) is required"))?;
    let reason = Reason::parse(body.reason)?;
    let user = state
        .ops()
        .set_user_claims(&admin.actor, id, claims, &reason, admin.now)
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

/// Turns the user's second factor off (a lost phone).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn reset_mfa(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let id = parse_id(&path, NO_USER)?;
    let reason = reason(&req, payload, &state).await?;
    state
        .ops()
        .reset_mfa(&admin.actor, id, &reason, admin.now)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Lifts a login lockout: forgets the username's failed logins.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn unlock(
    admin: Admin,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let id = parse_id(&path, NO_USER)?;
    let reason = reason(&req, payload, &state).await?;
    let user = state
        .ops()
        .unlock(&admin.actor, id, &reason, admin.now)
        .await?;
    Ok(HttpResponse::Ok().json(user))
}
