//! Limits on password guessing, checked before a password is hashed so that
//! a refused attempt costs no argon2 work:
//!
//! - per username (`store::login_throttle`): consecutive failures lock the
//!   username for a doubling backoff; the count lives in Postgres, so every
//!   instance enforces the same lock;
//! - per client address (`address`): a token bucket of failed logins, in
//!   memory on each instance.

pub mod address;

use std::time::Duration;

pub use address::AddressLimiter;

use crate::config::LoginSettings;
use crate::state::AppState;
use crate::store::login_throttle::{self, Policy};

/// How often both limiters forget what no longer matters.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub fn policy(settings: &LoginSettings) -> Policy {
    Policy {
        threshold: settings.lockout_threshold,
        base: settings.lockout_base,
        max: settings.lockout_max,
        reset: settings.lockout_reset,
    }
}

/// Keeps both limiters bounded: refilled address buckets and quiet,
/// unlocked username rows are dropped.
pub async fn prune_forever(state: AppState) {
    let policy = policy(&state.settings.login);
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tick.tick().await;
        state.addresses.prune();
        match login_throttle::prune(&state.pool, policy, state.clock.now()).await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "pruned login failure counts"),
            Err(e) => tracing::warn!(error = %e, "pruning login failure counts failed"),
        }
    }
}
