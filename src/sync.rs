//! Keeps each instance's in-memory mirrors in step with Postgres: the
//! revocation denylist and the clients.
//!
//! One connection LISTENs on both channels. Subscribe first, then read: an
//! entry committed between the two is in the read, and one committed later
//! is announced. Every `HEARTBEAT` the connection runs a trivial query:
//! announcements committed before it are buffered by its answer, and are
//! applied in one batch (one denylist catch-up by `seq`, one read of the
//! announced clients, or the whole table after a storm), after which both
//! mirrors are confirmed current. A heartbeat that goes unanswered
//! (a dead or silent connection) restarts the cycle, and the mirrors go
//! stale within `clients::STALE_AFTER`: checks then ask Postgres, and
//! revocation streams end rather than vouch for a list that may be behind. Independently of the listener, and
//! so even while it cannot connect, a periodic re-read covers anything
//! else and prunes expired entries.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::clients::ClientCache;
use crate::clock::Clock;
use crate::keys::KeyRing;
use crate::revocation::Denylist;
use crate::store::{clients, revocations};

/// How often announcements are collected: a change applies on every
/// instance about this long after its commit.
pub const HEARTBEAT: Duration = Duration::from_millis(50);
/// A heartbeat unanswered this long means a dead or silent connection.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// More announced clients than this in one batch: re-read the whole table.
const RELOAD_ALL_ABOVE: usize = 100;

/// What is kept in step.
#[derive(Clone)]
pub struct Mirrors {
    pub pool: PgPool,
    /// The listener's own connection (`database.listen_url`).
    pub listen: PgPool,
    pub denylist: Arc<Denylist>,
    pub clients: Arc<ClientCache>,
    /// Reloaded when an entry distrusts a signing key.
    pub keys: Arc<KeyRing>,
    pub clock: Clock,
}

pub async fn run(mirrors: Mirrors, interval: Duration) {
    tokio::join!(listen_forever(&mirrors), poll_forever(&mirrors, interval));
}

async fn listen_forever(mirrors: &Mirrors) {
    let mut failures = 0u32;
    loop {
        if let Err(e) = listen(mirrors).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "change listener lost; reconnecting"
            );
        }
        // At once the first time (a single dropped connection), then backing
        // off while the database stays away.
        failures = failures.saturating_add(1);
        if failures > 1 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if failures > 20 {
            failures = 1;
        }
    }
}

async fn listen(m: &Mirrors) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut listener = PgListener::connect_with(&m.listen).await?;
    listener
        .listen_all([revocations::CHANNEL, clients::CHANNEL])
        .await?;
    m.denylist.catch_up(&m.pool, m.clock.now()).await?;
    m.keys.follow_distrust(&m.pool, m.clock.now()).await?;
    m.clients.reload_all(&m.pool).await?;
    m.clients.confirm(started);
    m.denylist.confirm(started);
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beat.tick().await;
        let started = Instant::now();
        tokio::time::timeout(HEARTBEAT_TIMEOUT, clients::ping(&mut listener))
            .await
            .map_err(|_| anyhow!("the database did not answer the listener's heartbeat"))??;
        apply_announced(m, &mut listener).await?;
        m.clients.confirm(started);
        m.denylist.confirm(started);
    }
}

/// Applies every announcement the heartbeat's answer brought, in one batch.
async fn apply_announced(m: &Mirrors, listener: &mut PgListener) -> anyhow::Result<()> {
    let mut revoked = false;
    let mut changed = BTreeSet::new();
    while let Some(notification) = listener.next_buffered() {
        if notification.channel() == clients::CHANNEL {
            changed.insert(notification.payload().to_owned());
        } else {
            revoked = true;
        }
    }
    if revoked {
        m.denylist.catch_up(&m.pool, m.clock.now()).await?;
        m.keys.follow_distrust(&m.pool, m.clock.now()).await?;
    }
    if changed.len() > RELOAD_ALL_ABOVE {
        m.clients.reload_all(&m.pool).await?;
    } else if !changed.is_empty() {
        let ids: Vec<String> = changed.into_iter().collect();
        m.clients.reload(&m.pool, &ids).await?;
    }
    Ok(())
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
            m.keys.follow_distrust(&m.pool, now).await?;
            m.clients.reload_all(&m.pool).await
        };
        if let Err(e) = result.await {
            tracing::warn!(error = format!("{e:#}"), "periodic re-read failed");
        }
    }
}
