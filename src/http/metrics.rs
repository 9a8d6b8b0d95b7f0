//! `GET /metrics` (admin listener only): Prometheus text format.

use actix_web::{HttpResponse, web};
use metrics::gauge;

use crate::state::AppState;
use crate::telemetry::metrics::{DB_POOL_MAX, DB_POOL_SIZE, HASH_QUEUE_DEPTH};

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // Gauges of current state are sampled at scrape time.
    let pool = &state.pool;
    let idle = pool.num_idle() as f64;
    gauge!(DB_POOL_SIZE, "state" => "idle").set(idle);
    gauge!(DB_POOL_SIZE, "state" => "in_use").set(f64::from(pool.size()) - idle);
    gauge!(DB_POOL_MAX).set(f64::from(state.settings.database.max_connections));
    gauge!(HASH_QUEUE_DEPTH).set(state.hasher.queue_depth() as f64);
    let handle = crate::telemetry::metrics::handle();
    handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}
