//! What each instance forgets once it no longer matters, so that memory and
//! tables are bounded by recent activity, not by history: refilled address
//! buckets, quiet and unlocked login-failure rows, DPoP proofs out of their
//! window, and logins that expired
//! more than an access-token lifetime ago. (Expired revocations are pruned
//! by the revocation sync, which also re-reads them.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::state::AppState;
use crate::store::{self, challenges, proofs, refresh};
use crate::throttle::lockout;

const EVERY: Duration = Duration::from_secs(60);

/// Rows are deleted in batches, so that no delete holds locks for long.
/// A session's batch also deletes its refresh tokens: one per refresh.
const SESSION_BATCH: i64 = 100;
const FAILURE_BATCH: i64 = 1000;

/// How long one batch may run. Not the request timeout: nobody waits on
/// housekeeping, and a batch that kept being cancelled would never finish,
/// so its table would only grow.
const STATEMENT_LIMIT: Duration = Duration::from_secs(60);

pub async fn run_forever(state: AppState) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        run_once(&state, state.clock.now()).await;
    }
}

/// One pass, as of `now`. Failures are logged; the next pass retries.
pub async fn run_once(state: &AppState, now: DateTime<Utc>) {
    state.addresses.prune();
    metrics::gauge!(crate::telemetry::metrics::DPOP_REPLAY_ENTRIES)
        .set(state.dpop.remembered() as f64);
    match in_batches(state, FAILURE_BATCH, |tx| {
        Box::pin(proofs::prune(&mut **tx, now, FAILURE_BATCH))
    })
    .await
    {
        Ok(0) => {}
        Ok(rows) => tracing::debug!(rows, "pruned used DPoP proofs"),
        Err(e) => tracing::warn!(error = %e, "pruning used DPoP proofs failed"),
    }
    let policy = lockout::policy(&state.settings.login);
    match in_batches(state, FAILURE_BATCH, |tx| {
        Box::pin(lockout::prune(&mut **tx, policy, now, FAILURE_BATCH))
    })
    .await
    {
        Ok(0) => {}
        Ok(rows) => tracing::debug!(rows, "pruned login failure counts"),
        Err(e) => tracing::warn!(error = %e, "pruning login failure counts failed"),
    }
    // Codes are kept a while past their expiry: a late replay of a used
    // one still finds it (and is refused as reused, not as unknown).
    let challenges_before = now - chrono::Duration::minutes(10);
    match in_batches(state, FAILURE_BATCH, |tx| {
        Box::pin(challenges::prune(tx, challenges_before, FAILURE_BATCH))
    })
    .await
    {
        Ok(0) => {}
        Ok(rows) => tracing::debug!(rows, "pruned expired login challenges and codes"),
        Err(e) => tracing::warn!(error = %e, "pruning login challenges failed"),
    }
    let Ok(lifetime) = chrono::Duration::from_std(state.settings.tokens.longest_access()) else {
        return;
    };
    let before = now - lifetime;
    match in_batches(state, SESSION_BATCH, |tx| {
        Box::pin(refresh::prune(&mut **tx, before, SESSION_BATCH))
    })
    .await
    {
        Ok(0) => {}
        Ok(rows) => tracing::debug!(rows, "pruned expired sessions"),
        Err(e) => tracing::warn!(error = %e, "pruning expired sessions failed"),
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Runs `batch` (one transaction each) until it deletes fewer than `size`
/// rows; returns how many it deleted in all.
async fn in_batches<F>(state: &AppState, size: i64, mut batch: F) -> sqlx::Result<u64>
where
    F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, sqlx::Result<u64>>,
{
    let mut total = 0;
    loop {
        let mut tx = store::background(&state.pool, STATEMENT_LIMIT).await?;
        let deleted = batch(&mut tx).await?;
        tx.commit().await?;
        total += deleted;
        if deleted < size as u64 {
            return Ok(total);
        }
    }
}
