//! Limits on password guessing, checked before a password is hashed so that
//! a refused attempt costs no argon2 work. A grant asks `lockout` (admit,
//! record a failure, forgive, take back); operators reset through it too.
//!
//! - per username and source (address or device credential), and per
//!   username across untrusted sources: consecutive failures lock for a
//!   doubling backoff; the counts live in Postgres (`store::login_throttle`),
//!   so every instance enforces the same lock;
//! - per source (`address`): a bucket of failed logins, in memory on each
//!   instance.
//!
//! Both are pruned by `housekeeping`.

pub mod address;
pub mod lockout;

pub use address::AddressLimiter;
pub use lockout::policy;
