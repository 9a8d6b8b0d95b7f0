//! Access-token authentication for the admin API, the revocation feed and
//! admin introspection: `Authorization: Bearer` (RFC 6750), or `DPoP` with
//! a proof for a DPoP-bound token (RFC 9449 §7). Failures of the token say
//! nothing about why; a refused proof says which rule it broke.

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};

use super::proof;
use crate::domain::Scope;
use crate::domain::access_token::AccessClaims;
use crate::dpop::Target;
use crate::error::Error;
use crate::state::AppState;
use crate::telemetry::record_on_request;

/// The holder of a valid token that lacked the scope a call needed.
#[derive(Clone)]
pub struct Refused(pub AccessClaims);

/// How the token was presented.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

/// True when the request carries `Authorization: Bearer ...` or `DPoP ...`.
pub fn is_present(req: &HttpRequest) -> bool {
    token(req).is_some()
}

fn token(req: &HttpRequest) -> Option<(Scheme, &str)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some((Scheme::Bearer, token.trim()))
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Some((Scheme::Dpop, token.trim()))
    } else {
        None
    }
}

/// A valid, unrevoked access token of this issuer whose scope includes `scope`.
pub async fn require(
    req: &HttpRequest,
    state: &AppState,
    scope: &str,
) -> Result<AccessClaims, Error> {
    let (claims, proof) = authenticate(req, state).await?;
    let granted = Scope::parse(&claims.scope).map_err(|_| Error::InvalidToken)?;
    if !granted.contains(scope) {
        // Who was refused, for the admin listener's audit of refusals.
        req.extensions_mut().insert(Refused(claims));
        return Err(Error::InsufficientScope);
    }
    allowed(state, proof).await?;
    Ok(claims)
}

/// A valid, unrevoked access token of a user (not of a client acting as
/// itself), whatever its scope: the user's own settings (`/auth/mfa`).
pub async fn require_user(req: &HttpRequest, state: &AppState) -> Result<AccessClaims, Error> {
    let (claims, proof) = authenticate(req, state).await?;
    if claims.sub == claims.client_id || claims.sid.is_none() {
        return Err(Error::InvalidToken);
    }
    allowed(state, proof).await?;
    Ok(claims)
}

/// Last, once everything else holds: a proof takes room only for a call
/// that is allowed. Recorded in Postgres, so a captured call (whose body
/// the proof does not cover) cannot be replayed to another instance.
async fn allowed(state: &AppState, proof: Option<tessera_dpop::Proof>) -> Result<(), Error> {
    if let Some(proof) = proof {
        state.dpop.record_everywhere(&state.pool, &proof).await?;
    }
    Ok(())
}

/// A valid, unrevoked access token of this issuer, and the DPoP proof it
/// came with if it is bound (checked, not yet recorded).
async fn authenticate(
    req: &HttpRequest,
    state: &AppState,
) -> Result<(AccessClaims, Option<tessera_dpop::Proof>), Error> {
    let (scheme, token) = token(req).ok_or(Error::MissingToken)?;
    let now = state.clock.now();
    let claims = state
        .verifier
        .verify(token, now)
        .map_err(|_| Error::InvalidToken)?;
    let proof = match (scheme, claims.jkt()) {
        (Scheme::Bearer, None) => None,
        // A bound token used as a bearer token is a copied one (§7.2); an
        // unbound one under the DPoP scheme proves nothing.
        (Scheme::Bearer, Some(_)) | (Scheme::Dpop, None) => return Err(Error::InvalidToken),
        (Scheme::Dpop, Some(jkt)) => {
            let target = Target::Resource {
                method: req.method().as_str(),
                path: req.path(),
                access_token: token,
            };
            Some(state.dpop.with_token(proof::sent(req), target, jkt, now)?)
        }
    };
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
        .is_revoked_current(&state.pool, &claims, now)
        .await?;
    if revoked || disabled {
        return Err(Error::InvalidToken);
    }
    record_on_request(req, "client_id", &claims.client_id);
    if claims.sub != claims.client_id {
        record_on_request(req, "user_id", &claims.sub);
    }
    Ok((claims, proof))
}
