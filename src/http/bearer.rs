//! Bearer-token authentication (RFC 6750) for the admin API, the
//! revocation feed and admin introspection. Failures say nothing about why.

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};

use crate::domain::Scope;
use crate::domain::access_token::AccessClaims;
use crate::error::Error;
use crate::state::AppState;
use crate::telemetry::record_on_request;

/// The holder of a valid token that lacked the scope a call needed.
#[derive(Clone)]
pub struct Refused(pub AccessClaims);

/// True when the request carries `Authorization: Bearer ...`.
pub fn is_present(req: &HttpRequest) -> bool {
    token(req).is_some()
}

fn token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A valid, unrevoked access token of this issuer whose scope includes `scope`.
pub async fn require(
    req: &HttpRequest,
    state: &AppState,
    scope: &str,
) -> Result<AccessClaims, Error> {
    let token = token(req).ok_or(Error::MissingToken)?;
    let claims = state
        .verifier
        .verify(token, state.clock.now())
        .map_err(|_| Error::InvalidToken)?;
    // Until the denylist is loaded, a revoked token would look valid.
    if !state.denylist.is_loaded() {
        return Err(Error::TemporarilyUnavailable);
    }
    let disabled = state
        .clients
        .is_disabled(&state.pool, &claims.client_id)
        .await?;
    let revoked = state
        .denylist
        .is_revoked_current(&state.pool, &claims, state.clock.now())
        .await?;
    if revoked || disabled {
        return Err(Error::InvalidToken);
    }
    record_on_request(req, "client_id", &claims.client_id);
    if claims.sub != claims.client_id {
        record_on_request(req, "user_id", &claims.sub);
    }
    let granted = Scope::parse(&claims.scope).map_err(|_| Error::InvalidToken)?;
    if !granted.contains(scope) {
        // Who was refused, for the admin listener's audit of refusals.
        req.extensions_mut().insert(Refused(claims));
        return Err(Error::InsufficientScope);
    }
    Ok(claims)
}
