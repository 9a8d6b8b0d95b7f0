//! All SQL lives here. Functions take a pool or a transaction and plain
//! values; timestamps are passed in, never read from the database clock.
//!
//! Every statement is a `query!`/`query_as!`/`query_scalar!` macro, checked
//! at compile time against the migrated schema, or without a database
//! against the query data committed in `.sqlx/` (regenerate it with
//! `cargo sqlx prepare` after changing a statement or a migration; see
//! docs/development.md). A checked statement that returns a column has no `execute`:
//! those run only for their effect (advisory locks, row locks) use
//! `fetch_one`/`fetch_optional` and drop the row.

pub mod audit;
pub mod challenges;
pub mod clients;
mod connection;
pub mod keys;
pub mod login;
pub mod login_throttle;
pub mod mfa;
pub mod proofs;
pub mod refresh;
pub mod resources;
pub mod revocations;
pub mod sealed;
pub mod users;

pub use connection::{
    MIGRATOR, background, cause, check_reachable, connect_once, create_database_if_missing,
    describe_target, listen_pool, migrate, ping, pool, wait_until_reachable, with_backoff,
};

/// True when a unique constraint rejected the write.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
