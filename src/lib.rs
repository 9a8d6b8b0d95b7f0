//! Tessera: an OAuth 2.0 token issuer.
//!
//! - `http`: routes, body parsing, handlers (thin: read "now", parse, call a grant)
//! - `grants`: the token endpoint's grant types and client authentication
//! - `clients`: the registered clients, mirrored in memory on every instance
//! - `domain`: validated types (scopes, usernames, passwords, opaque tokens, JWT claims)
//! - `dpop`: which DPoP proof each request needs, nonces and replay (checks in `tessera_dpop`)
//! - `hashing`: the argon2id pool (bounded slots with reused buffers, a bounded queue)
//! - `keys`: signing keys, their schedule and the JWKS
//! - `mfa`: the second factor (TOTP, recovery codes): enrollment and the checks a login makes
//! - `ops`: every administrative operation, once, with its audit row (admin API and CLI)
//! - `revocation`: denylist of access tokens, mirrored on every instance
//! - `sync`: keeps those mirrors in step with Postgres (LISTEN/NOTIFY and a re-read)
//! - `throttle`: limits on password guessing, per username and per address
//! - `store`: every SQL statement
//! - `config`, `telemetry` (logs and metrics), `startup`, `cli`: wiring

pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod domain;
pub mod dpop;
pub mod error;
pub mod grants;
pub mod hashing;
pub mod housekeeping;
pub mod http;
pub mod keys;
pub mod mfa;
pub mod ops;
pub mod revocation;
pub mod startup;
pub mod state;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod throttle;
