use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database answers and a signing key is loaded.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // The body stays a bare true/false; the log line says which server and why.
    let database = match crate::store::ping(&state.pool).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "not ready: database unavailable");
            false
        }
    };
    let keys = state.keys.signer(state.clock.now()).is_some();
    let body = json!({"database": database, "keys": keys});
    if database && keys {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
