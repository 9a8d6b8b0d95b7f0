//! Keeps each instance's in-memory mirrors in step with Postgres: the
//! revocation denylist and the clients.
//!
//! Subscribe first, then read: an entry committed between the two is in
//! the read, and one committed later arrives as a notification. The
//! denylist reads everything after its last applied `seq`; the clients
//! re-read the one announced client_id (the whole table after connecting).
//! A lost connection (which loses notifications) restarts the cycle.
//! Independently of the listener, and so even while it cannot connect, a
//! periodic re-read covers anything else and prunes expired entries.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::clients::ClientCache;
use crate::clock::Clock;
use crate::revocation::Denylist;
use crate::store::{clients, revocations};

/// What is kept in step.
#[derive(Clone)]
pub struct Mirrors {
    pub pool: PgPool,
    pub denylist: Arc<Denylist>,
    pub clients: Arc<ClientCache>,
    pub clock: Clock,
}

pub async fn run(mirrors: Mirrors, interval: Duration) {
    tokio::join!(listen_forever(&mirrors), poll_forever(&mirrors, interval));
}

async fn listen_forever(mirrors: &Mirrors) {
    loop {
        if let Err(e) = listen(mirrors).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "change listener lost; reconnecting"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn listen(m: &Mirrors) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(&m.pool).await?;
    listener
        .listen_all([revocations::CHANNEL, clients::CHANNEL])
        .await?;
    m.denylist.catch_up(&m.pool, m.clock.now()).await?;
    m.clients.reload_all(&m.pool).await?;
    loop {
        let Some(notification) = listener.try_recv().await? else {
            // The connection dropped: notifications may have been lost.
            anyhow::bail!("connection closed");
        };
        if notification.channel() == clients::CHANNEL {
            m.clients
                .reload_one(&m.pool, notification.payload())
                .await?;
        } else {
            m.denylist.catch_up(&m.pool, m.clock.now()).await?;
        }
    }
}

async fn poll_forever(m: &Mirrors, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let now = m.clock.now();
        m.denylist.prune(now);
        let result = async {
            revocations::prune(&m.pool, now).await?;
            m.denylist.catch_up(&m.pool, now).await?;
            m.clients.reload_all(&m.pool).await
        };
        if let Err(e) = result.await {
            tracing::warn!(error = format!("{e:#}"), "periodic re-read failed");
        }
    }
}
