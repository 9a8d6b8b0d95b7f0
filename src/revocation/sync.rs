//! Keeps the in-memory denylist in step with Postgres on every instance.
//!
//! Subscribe first, then read everything after the last applied `seq`: an
//! entry committed between the two is read by the catch-up, and one
//! committed later arrives as a notification. A lost connection (which
//! loses notifications) restarts the cycle. Independently of the listener,
//! and so even while it cannot connect, a periodic catch-up covers anything
//! else and prunes expired entries.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::Denylist;
use crate::clock::Clock;
use crate::store::revocations::{self, CHANNEL};

pub async fn run(pool: PgPool, denylist: Arc<Denylist>, clock: Clock, interval: Duration) {
    tokio::join!(
        listen_forever(&pool, &denylist, &clock),
        poll_forever(&pool, &denylist, &clock, interval)
    );
}

async fn listen_forever(pool: &PgPool, denylist: &Denylist, clock: &Clock) {
    loop {
        if let Err(e) = listen(pool, denylist, clock).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "revocation listener lost; reconnecting"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn listen(pool: &PgPool, denylist: &Denylist, clock: &Clock) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    denylist.catch_up(pool, clock.now()).await?;
    loop {
        match listener.try_recv().await? {
            Some(_) => denylist.catch_up(pool, clock.now()).await?,
            // The connection dropped: notifications may have been lost.
            None => anyhow::bail!("connection closed"),
        }
    }
}

async fn poll_forever(pool: &PgPool, denylist: &Denylist, clock: &Clock, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let now = clock.now();
        denylist.prune(now);
        let result = async {
            revocations::prune(pool, now).await?;
            denylist.catch_up(pool, now).await
        };
        if let Err(e) = result.await {
            tracing::warn!(error = %e, "periodic revocation catch-up failed");
        }
    }
}
