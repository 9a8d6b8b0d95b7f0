//! The registered clients, mirrored in memory on every instance.
//!
//! Clients change rarely and are read on every token, introspection and
//! revocation request, so those requests read them here instead of from
//! Postgres. A change reaches every instance at commit: the `clients_notify`
//! trigger announces the client_id on `tessera_clients`, and `sync` re-reads
//! that row (and everything, after reconnecting and periodically).
//!
//! The mirror is trusted only while it is known current: `sync` confirms it
//! after each heartbeat on its listening connection (every announcement
//! made before the heartbeat has then been applied). Unconfirmed for longer
//! than `STALE_AFTER` (the listener is cut off from Postgres, or starved),
//! lookups and checks of held tokens go to Postgres, and answer 503 if it
//! does not answer: a disabled client or an old secret never keeps working
//! on an instance that cannot hear of it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::watch;

use crate::domain::Client;
use crate::store::clients;
use crate::telemetry::metrics::CLIENT_CACHE_MISSES;

/// How long a confirmation holds. Longer than a heartbeat can take on a
/// saturated machine (up to half a second was measured with both CPUs
/// busy serving requests), so that load alone never makes the copy stale;
/// short enough that a cut-off instance soon refuses.
pub const STALE_AFTER: Duration = Duration::from_secs(3);

pub struct ClientCache {
    clients: RwLock<HashMap<String, Arc<Client>>>,
    /// How long a lookup may wait for Postgres (`database.request_timeout`).
    deadline: Duration,
    /// When the last confirmed heartbeat started: every change committed
    /// before then is in `clients`.
    confirmed: watch::Sender<Option<Instant>>,
    /// Held from reading Postgres to writing the mirror, so a slow full
    /// reload cannot overwrite a row re-read after it: a change committed
    /// during a reload is re-read once that reload is done.
    reloading: tokio::sync::Mutex<()>,
}

impl ClientCache {
    pub fn new(deadline: Duration) -> Self {
        ClientCache {
            clients: RwLock::default(),
            deadline,
            confirmed: watch::Sender::new(None),
            reloading: tokio::sync::Mutex::default(),
        }
    }

    /// The client with this id. From memory while the mirror is current; an
    /// id not there waits for the next confirmation (a client created a
    /// moment ago is there by then), so unknown ids cost no query.
    pub async fn find(
        &self,
        pool: &PgPool,
        client_id: &str,
    ) -> anyhow::Result<Option<Arc<Client>>> {
        let asked = Instant::now();
        if self.is_current() {
            if let Some(client) = self.read().get(client_id) {
                return Ok(Some(client.clone()));
            }
            if self.confirmed_since(asked).await {
                return Ok(self.read().get(client_id).cloned());
            }
        }
        // Not confirmed current: Postgres decides.
        metrics::counter!(CLIENT_CACHE_MISSES).increment(1);
        let found = tokio::time::timeout(self.deadline, clients::find(pool, client_id))
            .await
            // A database that does not answer is unavailable (503), as one
            // that refuses is.
            .map_err(|_| sqlx::Error::Io(std::io::ErrorKind::TimedOut.into()))??
            .map(Arc::new);
        if let Some(found) = &found {
            // Never over a newer entry: a notification handled while this
            // read was in flight wrote a later version of the row.
            self.write()
                .entry(found.id().to_owned())
                .or_insert_with(|| found.clone());
        }
        Ok(found)
    }

    /// Whether the client is disabled: the tokens it holds are refused with
    /// it. From memory while the mirror is current; otherwise Postgres
    /// decides (an error, hence a 503, if it cannot).
    pub async fn is_disabled(&self, pool: &PgPool, client_id: &str) -> anyhow::Result<bool> {
        if let Some(disabled) = self.is_disabled_now(client_id) {
            return Ok(disabled);
        }
        Ok(self
            .find(pool, client_id)
            .await?
            .is_some_and(|c| c.disabled))
    }

    /// As `is_disabled`, without waiting: `None` when only Postgres could
    /// say (the mirror is not confirmed current).
    pub fn is_disabled_now(&self, client_id: &str) -> Option<bool> {
        self.is_current()
            .then(|| self.read().get(client_id).is_some_and(|c| c.disabled))
    }

    /// Records that every change committed before `started` is applied.
    pub fn confirm(&self, started: Instant) {
        self.confirmed.send_replace(Some(started));
    }

    fn is_current(&self) -> bool {
        self.confirmed
            .borrow()
            .is_some_and(|at| at.elapsed() < STALE_AFTER)
    }

    /// Waits (at most `STALE_AFTER`) for a confirmation that started after
    /// `asked` (normally the next heartbeat, within `sync::HEARTBEAT`).
    async fn confirmed_since(&self, asked: Instant) -> bool {
        let mut confirmations = self.confirmed.subscribe();
        let wait = confirmations.wait_for(|at| at.is_some_and(|at| at >= asked));
        matches!(tokio::time::timeout(STALE_AFTER, wait).await, Ok(Ok(_)))
    }

    /// Re-reads the clients announced as changed.
    pub async fn reload(&self, pool: &PgPool, client_ids: &[String]) -> anyhow::Result<()> {
        let _reloading = self.reloading.lock().await;
        let found = clients::find_many(pool, client_ids).await?;
        let mut map = self.write();
        for id in client_ids {
            map.remove(id);
        }
        for client in found {
            map.insert(client.id().to_owned(), Arc::new(client));
        }
        Ok(())
    }

    /// Replaces the mirror with the whole table.
    pub async fn reload_all(&self, pool: &PgPool) -> anyhow::Result<()> {
        let _reloading = self.reloading.lock().await;
        let fresh: HashMap<_, _> = clients::all(pool)
            .await?
            .into_iter()
            .map(|c| (c.id().to_owned(), Arc::new(c)))
            .collect();
        *self.write() = fresh;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Client>>> {
        self.clients.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Client>>> {
        self.clients.write().unwrap_or_else(|p| p.into_inner())
    }
}
