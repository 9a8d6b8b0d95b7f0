//! Building and running the service: `Application::build` binds the listener
//! (port 0 works) and starts serving at once; the database wait, the first
//! signing key and the key load happen in the background, and `/readyz`
//! answers 503 until they are done.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::PasswordHasher;
use crate::keys::{KeyEncryptionKey, KeyRing};
use crate::state::AppState;
use crate::telemetry::RequestSpan;
use crate::{http, store};

/// How long startup keeps retrying an unreachable database.
const DATABASE_WAIT: Duration = Duration::from_secs(120);

pub struct Application {
    port: u16,
    server: Server,
    init: JoinHandle<anyhow::Result<()>>,
    state: AppState,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Apply pending migrations once the database is reachable.
    pub migrate: bool,
}

impl Application {
    pub async fn build(settings: Settings, options: Options) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, options, Clock::default()).await
    }

    /// As `build`, with a clock the caller controls (tests move it forward).
    pub async fn build_with_clock(
        settings: Settings,
        options: Options,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let kek = KeyEncryptionKey::new(&settings.encryption_key()?)?;
        let keys = Arc::new(KeyRing::new(kek, settings.tokens.access_ttl)?);
        let hasher = PasswordHasher::new(&settings.password, settings.password_concurrency())?;
        let pool = store::pool(&settings.database)?;
        let state = AppState {
            pool,
            settings: Arc::new(settings),
            keys,
            hasher,
            clock,
        };

        let listener = TcpListener::bind(&state.settings.http.public_addr).with_context(|| {
            format!(
                "cannot listen on http.public_addr {}",
                state.settings.http.public_addr
            )
        })?;
        let port = listener.local_addr()?.port();
        let server = public_server(listener, state.clone())?;
        tracing::info!(addr = %state.settings.http.public_addr, port, "public listener bound");

        let init = tokio::spawn(initialise(state.clone(), options));
        Ok(Self {
            port,
            server,
            init,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the server stops or initialisation fails for good (for
    /// example a key-encryption key that cannot open the stored keys).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let server = self.server;
        let handle = server.handle();
        tokio::pin!(server);
        let initialised = tokio::select! {
            result = &mut server => return result.context("HTTP server failed"),
            result = self.init => result.context("startup task panicked")?,
        };
        if let Err(e) = initialised {
            // The server only processes the stop while it is polled.
            let _ = tokio::join!(handle.stop(true), server);
            return Err(e);
        }
        let reload = tokio::spawn(reload_keys(self.state));
        let result = server.await;
        reload.abort();
        result.context("HTTP server failed")
    }
}

fn public_server(listener: TcpListener, state: AppState) -> anyhow::Result<Server> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(TracingLogger::<RequestSpan>::new())
            .app_data(data.clone())
            .configure(http::public_routes)
            .default_service(web::to(http::not_found))
    })
    .listen(listener)?
    .run();
    Ok(server)
}

/// Waits for the database, optionally migrates, makes sure a signing key
/// exists and loads the keys. Only then does `/readyz` turn green.
async fn initialise(state: AppState, options: Options) -> anyhow::Result<()> {
    if options.migrate {
        // The server may be up before the database exists (first run).
        let database = &state.settings.database;
        store::with_backoff("database server not reachable yet", DATABASE_WAIT, || {
            store::create_database_if_missing(database)
        })
        .await?;
    }
    store::wait_until_reachable(&state.pool, DATABASE_WAIT).await?;
    if options.migrate {
        store::migrate(&state.pool).await?;
    }
    let now = state.clock.now();
    state
        .keys
        .ensure_initial_key(&state.pool, state.settings.keys.algorithm, now)
        .await?;
    state.keys.reload(&state.pool, now).await?;
    tracing::info!("ready");
    Ok(())
}

/// Picks up keys rotated by the CLI or another instance.
async fn reload_keys(state: AppState) {
    let mut tick = tokio::time::interval(state.settings.keys.reload_interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = state.keys.reload(&state.pool, state.clock.now()).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "reloading signing keys failed; keeping the loaded set"
            );
        }
    }
}
