use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Load balancers probe often and give up quickly: a database that does
/// not answer within this long counts as down.
const DATABASE_PROBE: Duration = Duration::from_millis(800);

/// The database answers and takes writes, a signing key is loaded and so
/// is the denylist.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // The body stays a bare true/false; the log line says which server and why.
    let database = match state.database_answers(DATABASE_PROBE).await {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(error = why, "not ready: database unavailable");
            false
        }
    };
    let keys = state.keys.signer(state.clock.now()).is_some();
    let revocations = state.denylist.is_loaded();
    let body = json!({"database": database, "keys": keys, "revocations": revocations});
    if database && keys && revocations {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
