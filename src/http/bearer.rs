//! Bearer-token authentication (RFC 6750) for the admin API, the
//! revocation feed and admin introspection. Failures say nothing about why.

use actix_web::HttpRequest;
use actix_web::http::header;

use crate::domain::Scope;
use crate::domain::access_token::{self, AccessClaims};
use crate::error::Error;
use crate::state::AppState;
use crate::telemetry::record_on_request;

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
pub fn require(req: &HttpRequest, state: &AppState, scope: &str) -> Result<AccessClaims, Error> {
    let token = token(req).ok_or(Error::MissingToken)?;
    let settings = &state.settings;
    let claims = access_token::verify(
        token,
        &state.keys,
        &settings.issuer,
        &settings.audience,
        state.clock.now(),
    )
    .map_err(|_| Error::InvalidToken)?;
    if state.denylist.is_revoked(&claims) {
        return Err(Error::InvalidToken);
    }
    record_on_request(req, "client_id", &claims.client_id);
    if claims.sub != claims.client_id {
        record_on_request(req, "user_id", &claims.sub);
    }
    let granted = Scope::parse(&claims.scope).map_err(|_| Error::InvalidToken)?;
    if !granted.contains(scope) {
        return Err(Error::InsufficientScope);
    }
    Ok(claims)
}
