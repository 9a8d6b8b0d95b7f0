//! Building and running the service: `Application::build` binds the listener
//! (port 0 works) and starts serving at once; the database wait, the first
//! signing key and the key load happen in the background, and `/readyz`
//! answers 503 until they are done.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::Condition;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::clients::ClientCache;
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::access_token::AccessTokenVerifier;
use crate::domain::device::DeviceKey;
use crate::dpop::Dpop;
use crate::hashing::PasswordHasher;
use crate::keys::{Distrusted, KeyEncryptionKeys, KeyRing};
use crate::revocation::Denylist;
use crate::revocation::slots::Slots;
use crate::state::AppState;
use crate::sync::Mirrors;
use crate::telemetry;
use crate::telemetry::RequestSpan;
use crate::throttle::AddressLimiter;
use crate::{http, store};

/// How long startup keeps retrying an unreachable database.
const DATABASE_WAIT: Duration = Duration::from_secs(120);

pub struct Application {
    port: u16,
    admin_port: u16,
    public: Server,
    admin: Server,
    init: JoinHandle<anyhow::Result<()>>,
    state: AppState,
    /// The change listener's own connection (`database.listen_url`), and
    /// where it goes, for the log.
    listen: (sqlx::PgPool, String),
    /// Tells open revocation streams that the service is stopping.
    shutdown: watch::Sender<bool>,
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
        let keks = Arc::new(KeyEncryptionKeys::from_settings(&settings)?);
        // Derived keys accept what any configured key-encryption key derived
        // and issue under the current one.
        let secrets: Vec<&[u8]> = keks.all().iter().map(|k| &k.secret()[..]).collect();
        let devices = Arc::new(DeviceKey::derive(&secrets));
        let (public_listener, port) = bind("http.public_addr", &settings.http.public_addr)?;
        let (admin_listener, admin_port) = bind("http.admin_addr", &settings.http.admin_addr)?;
        let admin_url = settings.dpop.admin_url.clone().unwrap_or_else(|| {
            // Where an operator on this host reaches the admin listener.
            let ip = admin_listener.local_addr().map(|a| a.ip());
            match ip {
                Ok(ip) if !ip.is_unspecified() => {
                    format!("http://{}", SocketAddr::new(ip, admin_port))
                }
                _ => format!("http://localhost:{admin_port}"),
            }
        });
        let dpop = Arc::new(Dpop::new(&settings, &admin_url, &secrets));
        let distrusted = Arc::new(Distrusted::default());
        let keys = Arc::new(KeyRing::new(
            keks.clone(),
            settings.tokens.longest_access(),
            distrusted.clone(),
        )?);
        let hasher = PasswordHasher::new(&settings.password, settings.hashing_slots())?;
        let pool = store::pool(&settings.database)?;
        let listen = store::listen_pool(&settings.database)?;
        let denylist = Arc::new(Denylist::new(settings.database.request_timeout, distrusted));
        let clients = Arc::new(ClientCache::new(settings.database.request_timeout));
        let addresses = Arc::new(AddressLimiter::new(&settings.login)?);
        telemetry::metrics::handle();
        let verifier = AccessTokenVerifier {
            keys: keys.clone(),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            max_lifetime: settings.tokens.longest_access(),
            verified: Arc::default(),
        };
        let stream_slots = Arc::new(Slots::new(
            settings.revocation.max_subscribers,
            settings.revocation.max_subscribers_per_client,
        ));
        let (shutdown, shutting_down) = watch::channel(false);
        let state = AppState {
            pool,
            settings: Arc::new(settings),
            keys,
            verifier,
            hasher,
            denylist,
            clients,
            addresses,
            devices,
            dpop,
            sealer: keks,
            recovery: Arc::default(),
            clock,
            stream_slots,
            shutdown: shutting_down,
        };

        let http = &state.settings.http;
        // Admin routes exist only on the admin listener, never on the public one.
        let public = serve(public_listener, state.clone(), http::public_routes, false)?;
        let admin = serve(admin_listener, state.clone(), http::admin_routes, true)?;
        tracing::info!(addr = %http.public_addr, port, "public listener bound");
        tracing::info!(addr = %http.admin_addr, port = admin_port, "admin listener bound");

        let init = tokio::spawn(initialise(state.clone(), options));
        Ok(Self {
            port,
            admin_port,
            public,
            admin,
            init,
            listen,
            state,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the servers stop or initialisation fails for good (for
    /// example a key-encryption key that cannot open the stored keys).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handles = [self.public.handle(), self.admin.handle()];
        let servers = futures_util::future::try_join(self.public, self.admin);
        tokio::pin!(servers);
        let initialised = tokio::select! {
            result = &mut servers => return result.map(|_| ()).context("HTTP server failed"),
            result = self.init => result.context("startup task panicked")?,
        };
        if let Err(e) = initialised {
            // The servers only process the stop while they are polled.
            let stops = futures_util::future::join_all(handles.iter().map(|h| h.stop(true)));
            let _ = tokio::join!(stops, servers);
            return Err(e);
        }
        let state = self.state;
        let (listen, listen_target) = self.listen;
        tracing::info!(listener = %listen_target, "change listener (LISTEN/NOTIFY) connects there");
        let background = [
            tokio::spawn(end_streams_on_signal(self.shutdown)),
            tokio::spawn(reload_keys(state.clone())),
            tokio::spawn(crate::sync::run(
                Mirrors {
                    pool: state.pool.clone(),
                    listen,
                    denylist: state.denylist.clone(),
                    clients: state.clients.clone(),
                    keys: state.keys.clone(),
                    clock: state.clock.clone(),
                },
                state.settings.revocation.sync_interval,
            )),
            tokio::spawn(crate::housekeeping::run_forever(state.clone())),
            tokio::spawn(telemetry::metrics::upkeep_forever()),
        ];
        let result = servers.await;
        background.iter().for_each(JoinHandle::abort);
        result.map(|_| ()).context("HTTP server failed")
    }
}

fn bind(key: &str, addr: &str) -> anyhow::Result<(TcpListener, u16)> {
    let variable = format!("TESSERA__{}", key.to_uppercase().replace('.', "__"));
    let listener = TcpListener::bind(addr).with_context(|| {
        let issuer = if key == "http.public_addr" {
            " (the issuer URL does not follow it: set TESSERA__ISSUER to match)"
        } else {
            ""
        };
        format!("cannot listen on {key} {addr}; choose another address with {variable}{issuer}")
    })?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

fn serve(
    listener: TcpListener,
    state: AppState,
    routes: fn(&mut web::ServiceConfig),
    audit_refusals: bool,
) -> anyhow::Result<Server> {
    let shutdown_timeout = state.settings.http.shutdown_timeout.as_secs();
    // actix's connection cap is per worker thread: spread the listener's
    // cap over an explicit number of workers.
    let workers = crate::config::cpus();
    let per_worker = state
        .settings
        .connections_per_listener()
        .div_ceil(workers)
        .max(1);
    let peers = Arc::new(http::peer::PeerConnections::new(
        state.settings.http.max_connections_per_address,
        state.settings.http.trusted_proxies.clone(),
    ));
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(
                telemetry::metrics::track_requests,
            ))
            .wrap(Condition::new(
                audit_refusals,
                actix_web::middleware::from_fn(http::audit_refusals),
            ))
            .wrap(actix_web::middleware::from_fn(http::refuse_chunked))
            .wrap(TracingLogger::<RequestSpan>::new())
            .app_data(data.clone())
            .configure(routes)
            .default_service(web::to(http::not_found))
    })
    .on_connect(move |connection, data| peers.on_connect(connection, data))
    .workers(workers)
    .max_connections(per_worker)
    .shutdown_timeout(shutdown_timeout)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Waits for the database, optionally migrates, checks what is sealed under
/// the key-encryption keys, makes sure a signing key exists, loads the keys, normalises old usernames and loads the
/// clients and the denylist. Only then does `/readyz` turn green.
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
    // Before any key is loaded: a row that no configured key-encryption key
    // opens stops startup here, with the fix named.
    let recovery = crate::keys::sealed::check_at_startup(&state.pool, &state.sealer, now).await?;
    // Set once: a second `initialise` never runs on the same state.
    let _ = state.recovery.set(recovery);
    state
        .keys
        .ensure_initial_key(&state.pool, state.settings.keys.algorithm, now)
        .await?;
    state.keys.reload(&state.pool, now).await?;
    store::users::normalise_stored_usernames(&state.pool).await?;
    // Before the denylist, which gates bearer checks and introspection:
    // those also refuse the tokens of disabled clients.
    let loading = std::time::Instant::now();
    state.clients.reload_all(&state.pool).await?;
    state.clients.confirm(loading);
    // Bearer checks and introspection answer 503 until this is done: a
    // revoked token must never pass because this instance has just started.
    store::with_backoff("loading the revocation denylist", DATABASE_WAIT, || async {
        Ok(state.denylist.load(&state.pool, state.clock.now()).await?)
    })
    .await?;
    tracing::info!("ready");
    Ok(())
}

/// actix drains in-flight requests on SIGTERM/SIGINT (it installs its own
/// handlers); an open revocation stream never finishes by itself, so it is
/// told to end here, or every shutdown would wait `http.shutdown_timeout`.
async fn end_streams_on_signal(shutdown: watch::Sender<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            tracing::warn!("cannot listen for SIGTERM; open streams end only with their tokens");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    let _ = shutdown.send(true);
    // Keep the sender: dropping it would look like a second shutdown.
    std::future::pending::<()>().await;
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
