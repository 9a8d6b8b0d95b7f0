//! Password hashing with argon2id, off the async workers and with bounded
//! concurrency: each hash holds `memory_kib` of RAM and a core for ~20 ms, so
//! a burst of logins waits for a slot instead of stalling everything else.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, anyhow};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::config::PasswordSettings;

pub const MIN_PASSWORD_CHARS: usize = 8;

/// A password as typed, never printed.
pub struct PlainPassword(SecretString);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidPassword {
    #[error("password is longer than {0} bytes")]
    TooLong(usize),
    #[error("password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
}

impl PlainPassword {
    /// For login attempts: only the length cap applies, so the cap (not a
    /// policy) is the only thing an attacker learns.
    pub fn for_login(raw: SecretString, max_len: usize) -> Result<Self, InvalidPassword> {
        if raw.expose_secret().len() > max_len {
            return Err(InvalidPassword::TooLong(max_len));
        }
        Ok(Self(raw))
    }

    /// For setting a password: the length cap and a minimum.
    pub fn new_password(raw: SecretString, max_len: usize) -> Result<Self, InvalidPassword> {
        let pw = Self::for_login(raw, max_len)?;
        if pw.0.expose_secret().chars().count() < MIN_PASSWORD_CHARS {
            return Err(InvalidPassword::TooShort);
        }
        Ok(pw)
    }
}

impl std::fmt::Debug for PlainPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainPassword([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many logins already waiting for a hashing slot.
    #[error("password hashing queue is full")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, and here is a re-hash at the configured (stronger) cost.
    YesRehashed(String),
}

#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    /// Verifying against this when the user does not exist costs the same
    /// as a real verification, so timing does not reveal which usernames exist.
    dummy_hash: String,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queue: usize,
}

impl PasswordHasher {
    pub fn new(settings: &PasswordSettings, concurrency: usize) -> anyhow::Result<Self> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| anyhow!("configuration: password.* are not valid argon2 parameters: {e}"))?;
        let dummy_hash = hash_with(&params, b"tessera dummy password for unknown users")?;
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                dummy_hash,
                slots: Arc::new(Semaphore::new(concurrency.max(1))),
                waiting: AtomicUsize::new(0),
                max_queue: settings.max_queue,
            }),
        })
    }

    /// Hashes a new password at the configured cost.
    pub async fn hash(&self, password: PlainPassword) -> Result<String, HashError> {
        let params = self.inner.params.clone();
        self.run(move || hash_with(&params, password.0.expose_secret().as_bytes()))
            .await
    }

    /// Verifies `password` against `stored`, or against the dummy hash when
    /// there is no such user, which always fails but takes as long.
    pub async fn verify(
        &self,
        password: PlainPassword,
        stored: Option<String>,
    ) -> Result<Verified, HashError> {
        let params = self.inner.params.clone();
        let is_real = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.inner.dummy_hash.clone());
        self.run(move || {
            let secret = password.0.expose_secret().as_bytes();
            let ok = verify_with(&stored, secret)?;
            if !(ok && is_real) {
                return Ok(Verified::No);
            }
            if is_weaker(&stored, &params) {
                return Ok(Verified::YesRehashed(hash_with(&params, secret)?));
            }
            Ok(Verified::Yes)
        })
        .await
    }

    /// Hashes waiting for a slot right now.
    pub fn queue_depth(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    {
        let inner = &self.inner;
        // Counted as waiting until a slot is ours, even if the request is
        // dropped meanwhile (a client that hangs up must not leak a place).
        let queued = Waiting::enter(&inner.waiting, inner.max_queue).ok_or(HashError::Busy)?;
        let started = std::time::Instant::now();
        let permit = inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| anyhow!("password hasher is shut down"))?;
        drop(queued);
        metrics::histogram!(crate::observability::HASH_WAIT)
            .record(started.elapsed().as_secs_f64());
        let span = tracing::Span::current();
        // The permit moves into the blocking task: the slot stays taken for
        // as long as argon2 runs, even if this future is dropped.
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
        .await
        .context("password hashing task failed")?;
        Ok(result?)
    }
}

/// A place in the hashing queue, given back on drop.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize, max: usize) -> Option<Self> {
        if count.fetch_add(1, Ordering::AcqRel) >= max {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_with(params: &Params, password: &[u8]) -> anyhow::Result<String> {
    argon2(params)
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| anyhow!("hashing a password failed: {e}"))
}

fn verify_with(stored: &str, password: &[u8]) -> anyhow::Result<bool> {
    let parsed =
        PasswordHash::new(stored).map_err(|e| anyhow!("stored password hash is malformed: {e}"))?;
    // Parameters come from the stored hash, so old hashes keep verifying.
    let params = Params::try_from(&parsed)
        .map_err(|e| anyhow!("stored password hash has bad parameters: {e}"))?;
    Ok(argon2(&params).verify_password(password, &parsed).is_ok())
}

fn is_weaker(stored: &str, wanted: &Params) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return true;
    }
    match Params::try_from(&parsed) {
        Ok(p) => {
            p.m_cost() < wanted.m_cost()
                || p.t_cost() < wanted.t_cost()
                || p.p_cost() < wanted.p_cost()
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(memory_kib: u32) -> PasswordSettings {
        PasswordSettings {
            memory_kib,
            iterations: 2,
            parallelism: 1,
            max_length: 64,
            max_concurrent: 1,
            max_queue: 4,
        }
    }

    fn pw(s: &str) -> PlainPassword {
        PlainPassword::for_login(SecretString::from(s), 64).unwrap()
    }

    #[tokio::test]
    async fn verifies_and_upgrades_weaker_hashes() {
        let weak = PasswordHasher::new(&settings(8192), 1).unwrap();
        let strong = PasswordHasher::new(&settings(19456), 1).unwrap();
        let old = weak.hash(pw("correct horse")).await.unwrap();
        assert_eq!(
            weak.verify(pw("correct horse"), Some(old.clone()))
                .await
                .unwrap(),
            Verified::Yes
        );
        assert_eq!(
            strong
                .verify(pw("wrong horse"), Some(old.clone()))
                .await
                .unwrap(),
            Verified::No
        );
        let Verified::YesRehashed(new) =
            strong.verify(pw("correct horse"), Some(old)).await.unwrap()
        else {
            panic!("a weaker hash must be upgraded");
        };
        assert!(new.contains("m=19456"));
        assert_eq!(
            strong.verify(pw("correct horse"), Some(new)).await.unwrap(),
            Verified::Yes
        );
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        let h = PasswordHasher::new(&settings(19456), 1).unwrap();
        let dummy_password = "tessera dummy password for unknown users";
        assert_eq!(
            h.verify(pw(dummy_password), None).await.unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn abandoned_requests_neither_leak_queue_places_nor_free_busy_slots() {
        // Slow enough (~0.5 s) that the checks below run while it hashes.
        let slow = PasswordSettings {
            iterations: 8,
            ..settings(65536)
        };
        let h = PasswordHasher::new(&slow, 1).unwrap();
        // Start a hash and drop its future after one poll: the work keeps its slot.
        let running = h.hash(pw("first password"));
        let _ = tokio::time::timeout(std::time::Duration::ZERO, running).await;
        // Queue and abandon more than max_queue requests.
        for _ in 0..10 {
            let waiting = h.hash(pw("another password"));
            let _ = tokio::time::timeout(std::time::Duration::ZERO, waiting).await;
        }
        assert_eq!(h.queue_depth(), 0, "dropped waiters give their place back");
        assert_eq!(
            h.inner.slots.available_permits(),
            0,
            "the abandoned hash still holds its slot"
        );
        // And the hasher still works.
        assert!(h.hash(pw("last password")).await.is_ok());
    }

    #[test]
    fn length_limits() {
        assert!(PlainPassword::for_login(SecretString::from("x".repeat(65)), 64).is_err());
        assert!(PlainPassword::new_password(SecretString::from("short"), 64).is_err());
        assert!(PlainPassword::new_password(SecretString::from("long enough"), 64).is_ok());
    }
}
