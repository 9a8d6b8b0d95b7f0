//! Logging: one span per request (tracing-actix-web) with a request id,
//! pretty locally and JSON in production.
//!
//! What never reaches a log: request bodies, query strings (only the path is
//! recorded), the Authorization header, and any secret type (they redact
//! their `Debug`). The client address is the TCP peer, because
//! `Forwarded`/`X-Forwarded-For` are set by whoever sends the request.
//!
//! What anyone can cause is not logged above INFO: a refused request is
//! the INFO line of its request (with its status; tracing-actix-web's WARN
//! per 4xx is off), and a request too malformed to reach the service, which
//! actix-http logs at ERROR, is reported at INFO at most twice a minute.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Span, Subscriber};
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::{self, Layer};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Installs the global subscriber. `level` is an `EnvFilter` directive;
/// `RUST_LOG`, when set, wins.
pub fn init<W>(format: LogFormat, level: &str, writer: W) -> anyhow::Result<()>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(level))?;
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(ConnectionErrors::default());
    // Colour only for a person at a terminal: escape codes in a log file or
    // a pipe are noise (and `NO_COLOR` asks for none).
    let ansi = format == LogFormat::Pretty
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_span_events(FmtSpan::CLOSE);
    let not_connection_errors = filter_fn(|meta| !is_connection_error(meta));
    match format {
        LogFormat::Json => registry
            .with(
                fmt.json()
                    .with_current_span(true)
                    .flatten_event(true)
                    .with_filter(not_connection_errors),
            )
            .try_init()?,
        LogFormat::Pretty => registry
            .with(fmt.compact().with_filter(not_connection_errors))
            .try_init()?,
    }
    Ok(())
}

/// actix-http logs each connection it gives up on at ERROR: every malformed
/// request head ("stream error: request parse error: ..."), and also
/// failed writes to a peer that went away. Anyone can send those, so they
/// are kept out of the log and reported by `ConnectionErrors` instead.
fn is_connection_error(meta: &Metadata<'_>) -> bool {
    *meta.level() == Level::ERROR && meta.target() == "actix_http::h1::dispatcher"
}

/// How often connection errors are summarised.
const CONNECTION_ERRORS_WINDOW: Duration = Duration::from_secs(60);

/// Reports connection errors at INFO, at most two lines a minute: the first
/// of a window at once, and how many followed (with the last) at its end.
#[derive(Default)]
struct ConnectionErrors(Arc<Mutex<ErrorWindow>>);

#[derive(Default)]
struct ErrorWindow {
    /// When the current window opened: until it ends, errors are only
    /// counted. A window whose report task died with its runtime (an actix
    /// worker restarted) ends all the same.
    opened: Option<Instant>,
    count: u64,
    last: String,
}

impl<S: Subscriber> Layer<S> for ConnectionErrors {
    fn on_event(&self, event: &Event<'_>, _: layer::Context<'_, S>) {
        if !is_connection_error(event.metadata()) {
            return;
        }
        // actix-http runs on a tokio runtime; without one there is no
        // server to report on.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut message = Message(String::new());
        event.record(&mut message);
        let mut window = self.0.lock().unwrap_or_else(|p| p.into_inner());
        window.last = message.0;
        let open = window
            .opened
            .is_some_and(|at| at.elapsed() < CONNECTION_ERRORS_WINDOW + Duration::from_secs(5));
        if open {
            window.count += 1;
            return;
        }
        let opened = Instant::now();
        window.opened = Some(opened);
        window.count = 0;
        let first = window.last.clone();
        // Logged from a task: an event logged while this one is being
        // dispatched would be dropped.
        runtime.spawn(report_connection_errors(self.0.clone(), opened, first));
    }
}

async fn report_connection_errors(window: Arc<Mutex<ErrorWindow>>, opened: Instant, first: String) {
    tracing::info!(
        error = %first,
        "HTTP connection refused or broken (malformed request, or the peer went away); \
         more are counted and reported once a minute"
    );
    tokio::time::sleep(CONNECTION_ERRORS_WINDOW).await;
    let (count, last) = {
        let mut window = window.lock().unwrap_or_else(|p| p.into_inner());
        if window.opened != Some(opened) {
            return;
        }
        window.opened = None;
        (
            std::mem::take(&mut window.count),
            std::mem::take(&mut window.last),
        )
    };
    if count > 0 {
        tracing::info!(
            count,
            last_error = %last,
            "HTTP connections refused or broken in the last minute"
        );
    }
}

/// The `message` of an event.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
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
