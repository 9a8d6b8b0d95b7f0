//! The connections themselves: the pool and its limits, creating and
//! migrating the database, reachability checks, and errors that name the
//! server and the cause (never the password). The configured URL is
//! parsed in one place, `options`.

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::config::DatabaseSettings;

/// `database.url`, checked and parsed. Only Postgres URLs are taken: sqlx
/// would read `mysql://` as a Postgres server's address.
fn options(settings: &DatabaseSettings) -> anyhow::Result<(PgConnectOptions, &str)> {
    let url = settings
        .url
        .as_ref()
        .context("configuration: database.url is not set")?
        .expose_secret();
    parse_url(url, "database.url")
}

/// A Postgres URL from the configuration key `name`.
fn parse_url<'a>(url: &'a str, name: &str) -> anyhow::Result<(PgConnectOptions, &'a str)> {
    // Named only when it is plainly a scheme: the rest of the URL may hold
    // a password.
    match url.split_once("://") {
        Some(("postgres" | "postgresql", _)) => {}
        Some((scheme, _))
            if scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) =>
        {
            anyhow::bail!(
                "configuration: {name} must start with postgres:// or postgresql:// (Tessera needs Postgres), not {scheme}://"
            )
        }
        _ => anyhow::bail!(
            "configuration: {name} must start with postgres:// or postgresql:// (Tessera needs Postgres)"
        ),
    }
    let options = url
        .parse()
        .with_context(|| format!("configuration: {name} is not a valid Postgres URL"))?;
    Ok((options, url))
}

/// Where the change listener connects (`LISTEN` needs a session of its
/// own, which a pooler in transaction mode never gives): `database.listen_url`,
/// or `database.url` without one. A pool of one lazy connection, and what
/// to log about it (never the password).
pub fn listen_pool(settings: &DatabaseSettings) -> anyhow::Result<(PgPool, String)> {
    let (options, from) = match &settings.listen_url {
        Some(url) => (
            parse_url(url.expose_secret(), "database.listen_url")?.0,
            "database.listen_url",
        ),
        None => (options(settings)?.0, "database.url"),
    };
    let said = format!("{} ({from})", describe_target(&options));
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options);
    Ok((pool, said))
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A lazily connecting pool: the service starts even while the database is
/// still coming up, and `/readyz` reports when it is reachable.
///
/// Postgres cancels any statement on these connections that runs longer
/// than `database.request_timeout` (`statement_timeout`): no request's work
/// outlives its deadline on the server, and a statement that commits on
/// its own (the refresh's) is decided within it. Migrations lift the limit.
pub fn pool(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let (options, _) = options(settings)?;
    let timeout = format!("{}ms", settings.request_timeout.as_millis().max(1));
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        // No ping before every use: that is a round trip per request. A
        // connection that died (database restart) fails its next statement
        // instead; that request gets a 503 with Retry-After, and sqlx
        // drops the broken connection.
        .test_before_acquire(false)
        .connect_lazy_with(options.options([("statement_timeout", timeout)])))
}

/// A transaction for background work (housekeeping) whose statements may
/// run for up to `limit` instead of a request's timeout: no client waits on
/// them, and a batch over a large table can take longer.
pub async fn background(
    pool: &PgPool,
    limit: Duration,
) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query_scalar!(
        r#"SELECT set_config('statement_timeout', $1, true) AS "set!""#,
        format!("{}ms", limit.as_millis()),
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(tx)
}

/// Creates the configured database if it does not exist yet (first run).
pub async fn create_database_if_missing(settings: &DatabaseSettings) -> anyhow::Result<()> {
    use sqlx::migrate::MigrateDatabase;
    let (options, url) = options(settings)?;
    let server = describe_server(&options);
    let database = database_name(&options);
    // sqlx's helpers connect to the server's maintenance database, once and
    // with no time limit of their own.
    let limit = settings.acquire_timeout;
    let exists = tokio::time::timeout(limit, sqlx::Postgres::database_exists(url))
        .await
        .map_err(|_| timed_out(limit))
        .and_then(|r| r.map_err(|e| cause(&e)))
        .map_err(|cause| {
            anyhow::anyhow!(
                "cannot check whether database `{database}` exists on {server}: {cause}"
            )
        })?;
    if !exists {
        sqlx::Postgres::create_database(url).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot create database `{database}` on {server}: {}",
                cause(&e)
            )
        })?;
        tracing::info!(database, "created the database");
    }
    Ok(())
}

/// Applies pending migrations on a connection of its own, without the
/// pool's statement timeout: building an index on a large table may take
/// longer, and so may waiting for another instance that is migrating.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    // Startup options apply in order: this one overrides the pool's.
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .options([("statement_timeout", "0")]);
    let own = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with(options);
    let done = MIGRATOR
        .run(&own)
        .await
        .context("running database migrations");
    own.close().await;
    done
}

/// Waits for the database with exponential backoff. Each attempt opens one
/// connection of its own rather than going through the pool, whose timeout
/// error would hide why it could not connect.
pub async fn wait_until_reachable(pool: &PgPool, give_up_after: Duration) -> anyhow::Result<()> {
    let options = pool.connect_options();
    let limit = pool.options().get_acquire_timeout();
    with_backoff("database not reachable yet", give_up_after, || {
        let options = options.clone();
        async move {
            connect_once(&options, limit).await?.close().await.ok();
            Ok(())
        }
    })
    .await
}

/// One `SELECT 1` through the pool, for `/readyz`. A failure says which
/// server and why, never the password.
pub async fn ping(pool: &PgPool) -> anyhow::Result<()> {
    // A standby after a failover, or a database set read-only, answers
    // reads but fails every login and refresh: that is not ready either.
    let writable = sqlx::query_scalar!(
        r#"SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' AS "writable!""#,
    )
    .fetch_one(pool)
    .await;
    let options = pool.connect_options();
    let error = match writable {
        Ok(true) => return Ok(()),
        Ok(false) => anyhow::bail!(
            "{}: the database is read-only (a standby, or default_transaction_read_only)",
            describe_target(&options)
        ),
        Err(e) => e,
    };
    if !matches!(error, sqlx::Error::PoolTimedOut) {
        anyhow::bail!("{}: {}", describe_target(&options), cause(&error));
    }
    // The pool retries refused connections until its timeout and then
    // reports only the timeout: one direct attempt tells the real cause.
    let limit = pool.options().get_acquire_timeout().min(PROBE_TIMEOUT);
    connect_once(&options, limit).await?.close().await.ok();
    anyhow::bail!(
        "{}: timed out waiting for a pooled connection (all {} in use)",
        describe_target(&options),
        pool.options().get_max_connections()
    )
}

/// Upper bound of `ping`'s diagnostic connection attempt.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens one connection within `limit`, with no retries: a server that
/// refuses or rejects us fails at once, with an error naming host, port,
/// database, user and cause, never the password.
pub async fn connect_once(
    options: &PgConnectOptions,
    limit: Duration,
) -> anyhow::Result<PgConnection> {
    tokio::time::timeout(limit, options.connect())
        .await
        .map_err(|_| timed_out(limit))
        .and_then(|r| r.map_err(|e| cause(&e)))
        .map_err(|cause| anyhow::anyhow!("cannot connect to {}: {cause}", describe_target(options)))
}

/// Checks the configured database at once, for commands that should fail
/// fast (the CLI) rather than wait for a server coming up.
pub async fn check_reachable(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let (options, _) = options(settings)?;
    connect_once(&options, settings.acquire_timeout)
        .await?
        .close()
        .await
        .ok();
    Ok(())
}

/// "Postgres at db:5432 (database `tessera`, user `tessera`)": what an
/// operator needs to find the server, and nothing secret.
pub fn describe_target(options: &PgConnectOptions) -> String {
    format!(
        "{} (database `{}`, user `{}`)",
        describe_server(options),
        database_name(options),
        options.get_username()
    )
}

fn describe_server(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => format!("Postgres at {}", socket.display()),
        None => format!("Postgres at {}:{}", options.get_host(), options.get_port()),
    }
}

/// Postgres defaults the database to the user name.
fn database_name(options: &PgConnectOptions) -> String {
    options
        .get_database()
        .unwrap_or(options.get_username())
        .to_owned()
}

fn timed_out(limit: Duration) -> String {
    format!("timed out after {:.1}s", limit.as_secs_f64())
}

/// Why a connection attempt failed, in the words an operator acts on.
/// Server messages name the user or database, never the password.
pub fn cause(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is Postgres running and listening there?)".to_owned()
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            format!("timed out ({io})")
        }
        sqlx::Error::Io(io) if io.to_string().contains("lookup address") => {
            format!("unknown host ({io})")
        }
        sqlx::Error::Io(io) => format!("network error ({io})"),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let what = match code.as_ref() {
                // invalid_password, invalid_authorization_specification
                // (no pg_hba.conf entry, unknown role)
                "28P01" | "28000" => "authentication failed",
                // invalid_catalog_name
                "3D000" => "unknown database",
                // cannot_connect_now
                "57P03" => "the server is starting up or shutting down",
                // too_many_connections
                "53300" => "too many connections",
                _ => "the server refused",
            };
            let hint = if code == "3D000" {
                " (`tessera migrate` or `tessera serve --migrate` creates it)"
            } else {
                ""
            };
            format!("{what}: {}{hint}", db.message())
        }
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_owned(),
        sqlx::Error::Tls(e) => format!("TLS error ({e})"),
        other => other.to_string(),
    }
}

/// Retries `attempt` with exponential backoff (capped at 5 s per try) until
/// it succeeds or `give_up_after` has passed, so a database that starts
/// after the service (docker compose) never makes it crash-loop.
pub async fn with_backoff<F, Fut>(
    what: &str,
    give_up_after: Duration,
    mut attempt: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() < give_up_after => {
                tracing::warn!(error = format!("{e:#}"), retry_in = ?delay, "{what}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}
