//! Limits on password guessing, checked before a password is hashed so that
//! a refused attempt costs no argon2 work:
//!
//! - per username (`store::login_throttle`): consecutive failures lock the
//!   username for a doubling backoff; the count lives in Postgres, so every
//!   instance enforces the same lock;
//! - per client address (`address`): a token bucket of failed logins, in
//!   memory on each instance.
//!
//! Both are pruned by `housekeeping`.

pub mod address;

pub use address::AddressLimiter;

use crate::config::LoginSettings;
use crate::store::login_throttle::Policy;

pub fn policy(settings: &LoginSettings) -> Policy {
    Policy {
        threshold: settings.lockout_threshold,
        username_threshold: settings.username_lockout_threshold,
        base: settings.lockout_base,
        max: settings.lockout_max,
        reset: settings.lockout_reset,
    }
}
