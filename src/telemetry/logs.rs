//! Logging: one span per request (tracing-actix-web) with a request id,
//! pretty locally and JSON in production.
//!
//! What never reaches a log: request bodies, query strings (only the path is
//! recorded), the Authorization header, and any secret type (they redact
//! their `Debug`). The client address is the TCP peer, because
//! `Forwarded`/`X-Forwarded-For` are set by whoever sends the request.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use std::time::Instant;

use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Installs the global subscriber. `level` is an `EnvFilter` directive;
/// `RUST_LOG`, when set, wins.
pub fn init<W>(format: LogFormat, level: &str, writer: W) -> anyhow::Result<()>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(level))?;
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_span_events(FmtSpan::CLOSE);
    match format {
        LogFormat::Json => registry
            .with(fmt.json().with_current_span(true).flatten_event(true))
            .try_init()?,
        LogFormat::Pretty => registry.with(fmt.compact()).try_init()?,
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Started(Instant);

/// Records who a request is for on its root span (one log line per
/// request carries it): `client_id`, `user_id` or `grant_type`.
pub fn record_on_request(req: &actix_web::HttpRequest, field: &'static str, value: &str) {
    if let Some(root) = req.extensions().get::<tracing_actix_web::RootSpan>() {
        root.record(field, value);
    }
}

/// Root span for every request.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Started(Instant::now()));
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let peer = request
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        tracing::info_span!(
            "request",
            request_id = %request_id,
            http.method = %request.method(),
            http.route = %route,
            http.path = %request.path(),
            http.client_ip = %peer,
            http.status_code = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
            grant_type = tracing::field::Empty,
            client_id = tracing::field::Empty,
            user_id = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        if let Ok(response) = outcome
            && let Some(Started(at)) = response.request().extensions().get::<Started>()
        {
            span.record("latency_ms", at.elapsed().as_secs_f64() * 1000.0);
        }
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
