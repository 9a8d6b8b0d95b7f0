//! What the admin listener does with calls it refuses. A valid token
//! without the `admin` scope (403) is a known party asking for something it
//! may not have: an audit row records who asked for what (once a minute
//! per caller and call, however often they ask). An admin token's refused
//! calls (404 unknown user or session, 409 existing username, 400 refused
//! rotation or input, any other 4xx) are recorded too, with their outcome
//! and target, once a minute per caller, call, outcome and target: a
//! stolen admin token probing ids leaves one row per id it tried. A call
//! without a valid token (401) is logged and counted, never stored, so that
//! nobody without a token can grow the audit table.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};

use crate::http::bearer::Refused;
use crate::ops::{Actor, Outcome, Refusal};
use crate::state::AppState;

/// Longest request path kept in an audit row.
const MAX_TARGET_CHARS: usize = 200;

pub async fn audit_refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let response = next.call(req).await?;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        metrics::counter!(crate::telemetry::metrics::ADMIN_UNAUTHENTICATED).increment(1);
        tracing::warn!(
            http.path = %response.request().path(),
            "admin call without a valid token refused"
        );
    }
    let Some(state) = state else {
        return Ok(response.map_into_left_body());
    };
    let request = response.request();
    let refused = request.extensions().get::<Refused>().cloned();
    let admin = request.extensions().get::<Actor>().cloned();
    // 403s are folded per caller and call (any token holder can knock);
    // an admin token's refusals per target too, so each probed id shows.
    let (actor, client_id, outcome, per_target) = match (refused, admin) {
        (Some(Refused(claims)), _) => (claims.sub, claims.client_id, Outcome::Denied, false),
        (None, Some(Actor::Token { sub, client_id })) if status.is_client_error() => {
            let outcome = match status {
                StatusCode::NOT_FOUND => Outcome::NotFound,
                StatusCode::CONFLICT => Outcome::Conflict,
                StatusCode::BAD_REQUEST => Outcome::Invalid,
                _ => Outcome::Refused,
            };
            (sub, client_id, outcome, true)
        }
        _ => return Ok(response.map_into_left_body()),
    };
    let action = format!(
        "{} {}",
        request.method(),
        request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into())
    );
    let target = match request.extensions().get::<Target>() {
        Some(Target(named)) => named.clone(),
        None => request.path().to_owned(),
    };
    let target: String = target.chars().take(MAX_TARGET_CHARS).collect();
    let refusal = Refusal {
        actor: &actor,
        client_id: &client_id,
        action: &action,
        target: &target,
        outcome,
        per_target,
    };
    let recorded = state.ops().record_refusal(refusal, state.clock.now()).await;
    match recorded {
        Ok(()) => Ok(response.map_into_left_body()),
        // A refusal that cannot be recorded is answered as the fault it is.
        Err(e) => {
            let (request, _) = response.into_parts();
            let error = e.error_response();
            Ok(ServiceResponse::new(request, error).map_into_right_body())
        }
    }
}

/// What a refused call was about, when the path does not say it (the
/// username of a user that could not be created).
#[derive(Clone)]
pub struct Target(pub String);

/// Names the target an audit row of this call's refusal will carry.
pub fn name_target(req: &actix_web::HttpRequest, target: String) {
    req.extensions_mut().insert(Target(target));
}
