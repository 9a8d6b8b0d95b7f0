//! What the admin listener does with calls it refuses. A valid token
//! without the `admin` scope (403) is a known party asking for something it
//! may not have: an audit row records who asked for what (once a minute
//! per caller and call, however often they ask). A call without a
//! valid token (401) is logged and counted, never stored, so that nobody
//! without a token can grow the audit table.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};

use crate::error::Error;
use crate::http::bearer::Refused;
use crate::state::AppState;
use crate::store::audit::{self, Entry, Outcome};

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
    let refused = response.request().extensions().get::<Refused>().cloned();
    let (Some(Refused(claims)), Some(state)) = (refused, state) else {
        return Ok(response.map_into_left_body());
    };
    let request = response.request();
    let action = format!(
        "{} {}",
        request.method(),
        request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into())
    );
    let target: String = request.path().chars().take(MAX_TARGET_CHARS).collect();
    let entry = Entry {
        actor: &claims.sub,
        actor_client_id: Some(&claims.client_id),
        os_user: None,
        action: &action,
        target: Some(&target),
        reason: None,
        outcome: Outcome::Denied,
    };
    let recorded = match state.pool.acquire().await {
        Ok(mut conn) => audit::record_refusal(&mut conn, entry, state.clock.now()).await,
        Err(e) => Err(e),
    };
    match recorded {
        Ok(()) => Ok(response.map_into_left_body()),
        // A refusal that cannot be recorded is answered as the fault it is.
        Err(e) => {
            let (request, _) = response.into_parts();
            let error = Error::from(e).error_response();
            Ok(ServiceResponse::new(request, error).map_into_right_body())
        }
    }
}
