//! All SQL lives here. Functions take a pool or a transaction and plain
//! values; timestamps are passed in, never read from the database clock.

pub mod clients;
pub mod keys;
pub mod refresh;
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

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("running database migrations")
}

/// Waits for the database with exponential backoff (capped at 5 s per try).
pub async fn wait_until_reachable(pool: &PgPool, give_up_after: Duration) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match sqlx::query("SELECT 1").execute(pool).await {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() < give_up_after => {
                tracing::warn!(error = %e, retry_in = ?delay, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e).context("database unreachable"),
        }
    }
}

/// True when a unique constraint rejected the write.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
