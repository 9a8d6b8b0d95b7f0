//! The registered clients, mirrored in memory on every instance.
//!
//! Clients change rarely and are read on every token, introspection and
//! revocation request, so those requests read them here instead of from
//! Postgres. A change reaches every instance at commit: the `clients_notify`
//! trigger announces the client_id on `tessera_clients`, and `sync` re-reads
//! that row (and everything, after reconnecting and periodically).
//!
//! A client not in the mirror is read from Postgres once and added: it may
//! have been created a moment ago, before its notification arrived. Only
//! found clients are added, so the mirror holds no more than the table.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sqlx::PgPool;

use crate::domain::Client;
use crate::store::clients;
use crate::telemetry::metrics::CLIENT_CACHE_MISSES;

#[derive(Default)]
pub struct ClientCache {
    clients: RwLock<HashMap<String, Arc<Client>>>,
    /// Held from reading Postgres to writing the mirror, so a slow full
    /// reload cannot overwrite a row re-read after it: a change committed
    /// during a reload is re-read once that reload is done.
    reloading: tokio::sync::Mutex<()>,
}

impl ClientCache {
    /// The client with this id, from memory when it is there.
    pub async fn find(
        &self,
        pool: &PgPool,
        client_id: &str,
    ) -> anyhow::Result<Option<Arc<Client>>> {
        if let Some(client) = self.read().get(client_id) {
            return Ok(Some(client.clone()));
        }
        metrics::counter!(CLIENT_CACHE_MISSES).increment(1);
        let Some(found) = clients::find(pool, client_id).await? else {
            return Ok(None);
        };
        // Never over a newer entry: a notification handled while this read
        // was in flight wrote a later version of the row.
        let mut map = self.write();
        let entry = map
            .entry(found.id().to_owned())
            .or_insert_with(|| Arc::new(found));
        Ok(Some(entry.clone()))
    }

    /// True when the client is known here and disabled: the tokens it holds
    /// are refused with it. Complete from startup on (the mirror is loaded
    /// before the instance is ready).
    pub fn is_disabled(&self, client_id: &str) -> bool {
        self.read().get(client_id).is_some_and(|c| c.disabled)
    }

    /// Re-reads one client after a change was announced.
    pub async fn reload_one(&self, pool: &PgPool, client_id: &str) -> anyhow::Result<()> {
        let _reloading = self.reloading.lock().await;
        match clients::find(pool, client_id).await? {
            Some(client) => self.write().insert(client_id.to_owned(), Arc::new(client)),
            None => self.write().remove(client_id),
        };
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
