//! What each instance forgets once it no longer matters, so that memory and
//! tables are bounded by recent activity, not by history: refilled address
//! buckets, quiet and unlocked login-failure rows, and logins that expired
//! more than an access-token lifetime ago. (Expired revocations are pruned
//! by the revocation sync, which also re-reads them.)

use std::time::Duration;

use crate::state::AppState;
use crate::store::{login_throttle, refresh};
use crate::throttle;

const EVERY: Duration = Duration::from_secs(60);

/// Sessions are deleted in batches, so that no delete holds locks for long.
const SESSION_BATCH: i64 = 1000;

pub async fn run_forever(state: AppState) {
    let policy = throttle::policy(&state.settings.login);
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let now = state.clock.now();
        state.addresses.prune();
        match login_throttle::prune(&state.pool, policy, now).await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "pruned login failure counts"),
            Err(e) => tracing::warn!(error = %e, "pruning login failure counts failed"),
        }
        let Ok(lifetime) = chrono::Duration::from_std(state.settings.tokens.access_ttl) else {
            continue;
        };
        loop {
            match refresh::prune(&state.pool, now - lifetime, SESSION_BATCH).await {
                Ok(n) if n == SESSION_BATCH as u64 => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning expired sessions failed");
                    break;
                }
            }
        }
    }
}
