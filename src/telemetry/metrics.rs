//! Prometheus metrics: the recorder, the per-request middleware, and the
//! names every counter and histogram goes by (one place, so dashboards and
//! code agree).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "tessera_http_requests_total";
pub const HTTP_DURATION: &str = "tessera_http_request_duration_seconds";
pub const TOKENS_ISSUED: &str = "tessera_tokens_issued_total";
pub const LOGIN_FAILURES: &str = "tessera_login_failures_total";
/// Password logins refused unchecked; `reason` is `account` or `address`.
pub const LOGIN_THROTTLED: &str = "tessera_login_throttled_total";
pub const REFRESH_REUSE: &str = "tessera_refresh_reuse_detected_total";
pub const REVOCATIONS: &str = "tessera_revocations_total";
/// Open `GET /auth/revocations/stream` connections on this instance.
pub const REVOCATION_STREAMS: &str = "tessera_revocation_stream_subscribers";
pub const HASH_QUEUE_DEPTH: &str = "tessera_password_hash_queue_depth";
pub const HASH_WAIT: &str = "tessera_password_hash_wait_seconds";
pub const DB_POOL_SIZE: &str = "tessera_db_pool_connections";
pub const DB_POOL_MAX: &str = "tessera_db_pool_max_connections";
pub const DB_POOL_TIMEOUTS: &str = "tessera_db_pool_acquire_timeouts_total";
pub const ADMIN_UNAUTHENTICATED: &str = "tessera_admin_unauthenticated_total";
/// Client lookups that read Postgres: the in-memory mirror was not
/// confirmed current.
pub const CLIENT_CACHE_MISSES: &str = "tessera_client_cache_misses_total";
/// DPoP proofs refused with 503 because this instance's replay cache was
/// full (`dpop.replay_capacity` proofs inside their window).
pub const DPOP_REPLAY_FULL: &str = "tessera_dpop_replay_cache_full_total";
/// Proofs this instance remembers to refuse replays.
pub const DPOP_REPLAY_ENTRIES: &str = "tessera_dpop_replay_cache_entries";

/// The `kind` label values of `REVOCATIONS`: one access token denylisted, one
/// session ended, one user logged out everywhere.
pub const REVOCATION_KINDS: [&str; 4] = ["access_token", "session", "user", "client"];

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide recorder, installed on first use. If another recorder
/// is already installed (an embedding program's), metrics go there and
/// `/metrics` renders this one's (empty) view.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        register();
        handle
    })
}

/// How often histogram observations are folded into their buckets. The
/// recorder keeps each observation until then: without this, an instance
/// nobody scrapes would keep every request's latency (a leak of ~15 bytes a
/// request, 6 MiB a minute at 10 k requests/s).
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Folds histogram observations into their buckets, for as long as the
/// server runs (scrapes do it too, but nothing says anyone scrapes).
pub async fn upkeep_forever() {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tick.tick().await;
        handle().run_upkeep();
    }
}

/// Describes every metric and creates every counter series whose labels are
/// known in advance at zero, so that dashboards and `rate()` see them from
/// startup rather than from the first event. Request series (route, method,
/// status) appear with their first request.
fn register() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by route pattern, method and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        "HTTP request latency by route pattern, method and status"
    );
    describe_counter!(TOKENS_ISSUED, "Token responses issued, by grant type");
    describe_counter!(LOGIN_FAILURES, "Failed password logins");
    describe_counter!(
        REFRESH_REUSE,
        "Spent refresh tokens presented again (their login revoked)"
    );
    describe_counter!(
        REVOCATIONS,
        "Revocations by kind: access_token, session, user"
    );
    describe_counter!(
        LOGIN_THROTTLED,
        "Password logins refused unchecked, by reason: account, address"
    );
    describe_counter!(
        ADMIN_UNAUTHENTICATED,
        "Admin calls refused for want of a valid token"
    );
    describe_counter!(
        CLIENT_CACHE_MISSES,
        "Client lookups answered by the database: the in-memory copy was not confirmed current"
    );
    describe_counter!(
        DPOP_REPLAY_FULL,
        "DPoP proofs refused (503) because the replay cache was full"
    );
    describe_gauge!(
        DPOP_REPLAY_ENTRIES,
        "DPoP proofs remembered by this instance to refuse replays"
    );
    describe_gauge!(
        REVOCATION_STREAMS,
        "Open revocation-stream connections on this instance"
    );
    describe_gauge!(
        HASH_QUEUE_DEPTH,
        "Logins waiting for a password-hashing slot"
    );
    describe_histogram!(HASH_WAIT, "Time logins waited for a password-hashing slot");
    describe_gauge!(
        DB_POOL_SIZE,
        "Database pool connections by state (idle, in_use)"
    );
    describe_gauge!(DB_POOL_MAX, "Database pool size limit");
    describe_counter!(
        DB_POOL_TIMEOUTS,
        "Waits for a pooled database connection that timed out"
    );

    for grant_type in crate::domain::GrantType::ALL {
        counter!(TOKENS_ISSUED, "grant_type" => grant_type.as_str()).increment(0);
    }
    for reason in ["account", "address"] {
        counter!(LOGIN_THROTTLED, "reason" => reason).increment(0);
    }
    gauge!(REVOCATION_STREAMS).increment(0.0);
    gauge!(DPOP_REPLAY_ENTRIES).set(0.0);
    for kind in REVOCATION_KINDS {
        counter!(REVOCATIONS, "kind" => kind).increment(0);
    }
    for name in [
        LOGIN_FAILURES,
        REFRESH_REUSE,
        DB_POOL_TIMEOUTS,
        ADMIN_UNAUTHENTICATED,
        CLIENT_CACHE_MISSES,
        DPOP_REPLAY_FULL,
    ] {
        counter!(name).increment(0);
    }
    // Registered, not observed: renders as an empty histogram.
    let _ = histogram!(HASH_WAIT);
}

/// Counts and times every request by route pattern, method and status.
pub async fn track_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let response = next.call(req).await?;
    // Route patterns, not raw paths: bounded label cardinality.
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    counter!(HTTP_REQUESTS, &labels).increment(1);
    histogram!(HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    Ok(response)
}
