// The integration suite: helpers and tests may unwrap and panic (a failure
// is what a test reports), and forge tokens with the wall clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod admin;
mod bad_input;
mod brute_force;
mod cli;
mod client_changes;
mod client_credentials;
mod database_errors;
mod deadlines;
mod deployment;
mod distrust;
mod dpop;
mod faults;
mod forged_tokens;
mod health;
mod helpers;
mod interop;
mod introspection;
mod jwks;
mod kek;
mod keys;
mod lifecycle;
mod listener;
mod logging;
mod login_races;
mod metrics;
mod mfa;
mod openapi;
mod password_grant;
mod postgres;
mod readme;
mod refresh_grant;
mod resources;
mod revocation;
mod revocation_stream;
mod statements;
mod usernames;
mod verifier_kit;
