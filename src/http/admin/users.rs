use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::{Admin, Reason, check_reason, json, parse_id};
use crate::domain::{PlainPassword, Scope, Username};
use crate::error::Error;
use crate::revocation;
use crate::state::AppState;
use crate::store::login_throttle;
use crate::store::users::{self, CreateUserError};

const NO_USER: &str = "no such user";

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
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
    req: HttpRequest,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let admin = Admin::authenticate(&req, &state)?;
    let now = state.clock.now();
    let body: NewUser = json(&req, payload, &state, false).await?;
    let reason = check_reason(&body.reason)?;
    let username = Username::parse(&body.username)?;
    let scope = Scope::from_tokens(&body.scopes)?;
    let password = PlainPassword::new_password(body.password, state.settings.password.max_length)?;
    let hash = state.hasher.hash(password).await?;

    let mut tx = state.pool.begin().await?;
    let id = users::insert(&mut *tx, &username, &hash, &scope.tokens(), now)
        .await
        .map_err(|e| match e {
            CreateUserError::Exists => Error::Conflict("a user with that username already exists"),
            CreateUserError::Db(e) => e.into(),
        })?;
    admin
        .audit(&mut tx, "user.create", Some(&id.to_string()), reason, now)
        .await?;
    let user = users::find_by_id(&mut tx, id)
        .await?
        .ok_or(Error::NotFound(NO_USER))?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(user))
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn read(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let admin = Admin::authenticate(&req, &state)?;
    let id = parse_id(&path, NO_USER)?;
    let mut conn = state.pool.acquire().await?;
    let user = users::find_by_id(&mut conn, id)
        .await?
        .ok_or(Error::NotFound(NO_USER))?;
    admin
        .audit(&mut conn, "user.read", Some(&path), None, state.clock.now())
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

/// Disabling also logs the user out everywhere.
pub async fn disable(
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    set_disabled(req, path, payload, state, true).await
}

pub async fn enable(
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    set_disabled(req, path, payload, state, false).await
}

#[tracing::instrument(level = "debug", skip(req, path, payload, state))]
async fn set_disabled(
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
    disabled: bool,
) -> Result<HttpResponse, Error> {
    let admin = Admin::authenticate(&req, &state)?;
    let now = state.clock.now();
    let id = parse_id(&path, NO_USER)?;
    let body: Reason = json(&req, payload, &state, true).await?;
    let reason = check_reason(&body.reason)?;
    let mut tx = state.pool.begin().await?;
    if !users::set_disabled(&mut tx, id, disabled, now).await? {
        return Err(Error::NotFound(NO_USER));
    }
    let action = if disabled {
        revocation::log_out_everywhere(
            &mut tx,
            id,
            "user disabled",
            now,
            state.settings.tokens.access_ttl,
        )
        .await?;
        "user.disable"
    } else {
        "user.enable"
    };
    admin
        .audit(&mut tx, action, Some(&path), reason, now)
        .await?;
    let user = users::find_by_id(&mut tx, id)
        .await?
        .ok_or(Error::NotFound(NO_USER))?;
    revocation::commit(tx, &state.pool, &state.denylist, now).await?;
    Ok(HttpResponse::Ok().json(user))
}

/// Setting a password logs the user out everywhere.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_password(
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let admin = Admin::authenticate(&req, &state)?;
    let now = state.clock.now();
    let id = parse_id(&path, NO_USER)?;
    let body: NewPassword = json(&req, payload, &state, false).await?;
    let reason = check_reason(&body.reason)?;
    let password = PlainPassword::new_password(body.password, state.settings.password.max_length)?;
    let hash = state.hasher.hash(password).await?;
    let mut tx = state.pool.begin().await?;
    if !users::set_password_hash(&mut tx, id, &hash, now).await? {
        return Err(Error::NotFound(NO_USER));
    }
    revocation::log_out_everywhere(
        &mut tx,
        id,
        "password changed",
        now,
        state.settings.tokens.access_ttl,
    )
    .await?;
    admin
        .audit(&mut tx, "user.set_password", Some(&path), reason, now)
        .await?;
    revocation::commit(tx, &state.pool, &state.denylist, now).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Logs the user out everywhere: every session, and every access token
/// issued until now.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn revoke_everywhere(
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let admin = Admin::authenticate(&req, &state)?;
    let now = state.clock.now();
    let id = parse_id(&path, NO_USER)?;
    let body: Reason = json(&req, payload, &state, true).await?;
    let reason = check_reason(&body.reason)?;
    let mut tx = state.pool.begin().await?;
    if users::find_by_id(&mut tx, id).await?.is_none() {
        return Err(Error::NotFound(NO_USER));
    }
    let sessions = revocation::log_out_everywhere(
        &mut tx,
        id,
        "admin revoked",
        now,
        state.settings.tokens.access_ttl,
    )
    .await?;
    admin
        .audit(&mut tx, "user.revoke", Some(&path), reason, now)
        .await?;
    revocation::commit(tx, &state.pool, &state.denylist, now).await?;
    Ok(HttpResponse::Ok()
        .json(json!({"sessions_revoked": sessions, "not_before": now.timestamp()})))
}

/// Lifts a login lockout: forgets the username's failed logins.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn unlock(
    req: HttpRequest,
    path: web::Path<String>,
    payload: Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let admin = Admin::authenticate(&req, &state)?;
    let now = state.clock.now();
    let id = parse_id(&path, NO_USER)?;
    let body: Reason = json(&req, payload, &state, true).await?;
    let reason = check_reason(&body.reason)?;
    let mut tx = state.pool.begin().await?;
    let user = users::find_by_id(&mut tx, id)
        .await?
        .ok_or(Error::NotFound(NO_USER))?;
    login_throttle::reset(&mut *tx, &user.username).await?;
    admin
        .audit(&mut tx, "user.unlock", Some(&path), reason, now)
        .await?;
    let user = users::find_by_id(&mut tx, id)
        .await?
        .ok_or(Error::NotFound(NO_USER))?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(user))
}
