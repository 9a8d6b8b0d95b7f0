//! What a password login may ask of the limits: to be admitted before its
//! password is hashed, to have a failure recorded, to be forgiven (the
//! right password, but no session) or taken back (the server failed), and
//! what an operator may ask: to reset a username. The counts live in
//! Postgres (`store::login_throttle`, `store::login`), the address buckets
//! in memory (`address`).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::address::{AddressLimiter, Attempt, Source};
use crate::config::LoginSettings;
use crate::domain::Username;
use crate::domain::device::Device;
use crate::error::Error;
use crate::store::login::{self, Admission, NewChallenge};
use crate::store::login_throttle::{self, Attempter, Policy};
use crate::store::users::UserRow;
use crate::telemetry;

/// The lockout's source for a login whose address is not known.
const UNKNOWN_SOURCE: &str = "-";

/// The lockout policy of these settings.
pub fn policy(settings: &LoginSettings) -> Policy {
    Policy {
        threshold: settings.lockout_threshold,
        username_threshold: settings.username_lockout_threshold,
        base: settings.lockout_base,
        max: settings.lockout_max,
        reset: settings.lockout_reset,
    }
}

/// Who is trying, as the limits see them: a device that presented a valid
/// credential for this username is its own source (it neither shares its
/// address's limits nor obeys the username-wide lock); otherwise the
/// address.
pub struct Contender {
    source: Option<Source>,
    key: String,
    trusted: bool,
}

impl Contender {
    pub fn new(device: Option<Device>, address: Option<IpAddr>) -> Contender {
        let source = device.map(Source::device).or(address.map(Source::address));
        Contender {
            key: source.map_or_else(|| UNKNOWN_SOURCE.to_owned(), |s| s.key()),
            trusted: device.is_some(),
            source,
        }
    }

    /// As the statements that count attempts name it.
    pub fn attempter(&self) -> Attempter<'_> {
        Attempter {
            source: &self.key,
            trusted: self.trusted,
        }
    }
}

/// A login admitted by both limits, its attempt counted.
pub struct Admitted<'a> {
    /// The user of that name, if there is one (unknown names are admitted
    /// and counted like real ones).
    pub user: Option<UserRow>,
    attempt: Option<Attempt<'a>>,
}

/// Admits a login before its password is hashed, or refuses it (429 with
/// `Retry-After`). Both limits count the attempt before it is decided, so
/// concurrent guesses cannot all get in under either.
///
/// `flow`: the challenge flow a user with a second factor gets (see
/// `login::admit`).
pub async fn admit<'a>(
    pool: &PgPool,
    addresses: &'a AddressLimiter,
    policy: Policy,
    username: &Username,
    who: &Contender,
    flow: Option<NewChallenge<'_>>,
    now: DateTime<Utc>,
) -> Result<Admitted<'a>, Error> {
    let attempt = enter(addresses, who)?;
    let admission = login::admit(pool, username, who.attempter(), policy, flow, now).await?;
    admitted(attempt, admission, now)
}

/// The in-memory half of `admit`: the source's bucket, before anything is
/// counted in Postgres (a refusal here counts nothing there).
pub fn enter<'a>(
    addresses: &'a AddressLimiter,
    who: &Contender,
) -> Result<Option<Attempt<'a>>, Error> {
    who.source
        .map(|source| addresses.admit(source))
        .transpose()
        .map_err(|wait| throttled("address", wait))
}

/// The other half: what Postgres said when it counted the attempt (in a
/// statement of the caller's, which may read more at the same time).
pub fn admitted<'a>(
    attempt: Option<Attempt<'a>>,
    admission: Admission,
    now: DateTime<Utc>,
) -> Result<Admitted<'a>, Error> {
    match admission {
        Admission::Locked(locked_until) => {
            let wait = (locked_until - now).to_std().unwrap_or_default();
            Err(throttled("account", coarse(wait)))
        }
        Admission::Admitted(user) => Ok(Admitted { user, attempt }),
    }
}

impl Admitted<'_> {
    /// The guess was wrong: it also takes from the source's bucket (the
    /// username's count was taken before hashing).
    pub fn failed(self) {
        if let Some(attempt) = self.attempt {
            attempt.fail();
        }
        metrics::counter!(telemetry::metrics::LOGIN_FAILURES).increment(1);
    }
}

/// The right password, but no session (a scope the user may not have): the
/// attempt is not a failure. (A session's start forgets it in its own
/// statement.)
pub async fn forgive(
    pool: &PgPool,
    policy: Policy,
    username: &Username,
    who: &Contender,
) -> Result<(), Error> {
    login_throttle::succeeded(pool, username.as_str(), who.attempter(), policy).await?;
    Ok(())
}

/// The server failed, not the guess (the hashing queue was full, the
/// database stalled): the attempt is taken back, so users retrying through
/// an incident do not lock themselves out. Best effort: the database may be
/// what failed.
pub async fn take_back(pool: &PgPool, policy: Policy, username: &Username, who: Attempter<'_>) {
    if let Err(e) = login_throttle::release(pool, username.as_str(), who, policy).await {
        tracing::warn!(error = %e, "could not take back a login attempt that failed on the server's side");
    }
}

/// An operator's unlock: every source's failures of `username` are
/// forgotten. Returns whether there were any.
pub async fn reset(conn: &mut sqlx::PgConnection, username: &str) -> Result<bool, Error> {
    Ok(login_throttle::reset(conn, username).await?)
}

/// Housekeeping: deletes up to `limit` rows that are unlocked and quiet.
pub async fn prune<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    policy: Policy,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<u64> {
    login_throttle::prune(executor, policy, now, limit).await
}

/// A lock's end rounded up to the minute: a guesser is not told to the
/// second when the next attempt will be admitted (and a person reads
/// "about a minute" as well as "37 seconds").
fn coarse(wait: std::time::Duration) -> std::time::Duration {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    std::time::Duration::from_secs(minutes * 60)
}

fn throttled(reason: &'static str, retry_after: std::time::Duration) -> Error {
    metrics::counter!(telemetry::metrics::LOGIN_THROTTLED, "reason" => reason).increment(1);
    tracing::info!(reason, "password login refused: too many failed attempts");
    Error::TooManyAttempts { retry_after }
}
