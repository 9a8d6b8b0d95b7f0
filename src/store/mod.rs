//! All SQL lives here. Functions take a pool or a transaction and plain
//! values; timestamps are passed in, never read from the database clock.
//!
//! Every statement is a `query!`/`query_as!`/`query_scalar!` macro, checked
//! at compile time against the migrated schema, or without a database
//! against the query data committed in `.sqlx/` (regenerate it with
//! `cargo sqlx prepare` after changing a statement or a migration; see the
//! README). A checked statement that returns a column has no `execute`:
//! those run only for their effect (advisory locks, row locks) use
//! `fetch_one`/`fetch_optional` and drop the row.

pub mod audit;
pub mod clients;
pub mod keys;
pub mod login_throttle;
pub mod refresh;
pub mod revocations;
pub mod users;

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::DatabaseSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A lazily connecting pool: the service starts even while the database is
/// still coming up, and `/readyz` reports when it is reachable.
pub fn pool(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let url = settings
        .url
        .as_ref()
        .context("configuration: database.url is not set")?;
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy(url.expose_secret())
        .context("configuration: database.url is not a valid Postgres URL")
}

/// Creates the configured database if it does not exist yet (first run).
pub async fn create_database_if_missing(settings: &DatabaseSettings) -> anyhow::Result<()> {
    use sqlx::migrate::MigrateDatabase;
    let url = settings
        .url
        .as_ref()
        .context("configuration: database.url is not set")?
        .expose_secret();
    if !sqlx::Postgres::database_exists(url)
        .await
        .context("checking whether the database exists")?
    {
        sqlx::Postgres::create_database(url)
            .await
            .context("creating the database")?;
        tracing::info!("created the database");
    }
    Ok(())
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("running database migrations")
}

/// One round trip: is the database answering, and will it take writes?
/// A standby after a failover, or a database set read-only, answers reads
/// but fails every login and refresh.
pub async fn ping(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' AS "writable!""#,
    )
    .fetch_one(pool)
    .await
}

/// Waits for the database with exponential backoff.
pub async fn wait_until_reachable(pool: &PgPool, give_up_after: Duration) -> anyhow::Result<()> {
    with_backoff("database not reachable yet", give_up_after, || async {
        sqlx::query_scalar!("SELECT 1")
            .fetch_one(pool)
            .await
            .context("database unreachable")?;
        Ok(())
    })
    .await
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

/// True when a unique constraint rejected the write.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
