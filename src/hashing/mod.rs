//! The password-hashing pool: argon2id, off the async workers and with bounded
//! concurrency: each hash holds `memory_kib` of RAM and a core for ~20 ms, so
//! a burst of logins waits for a slot instead of stalling everything else.
//!
//! Each slot owns its argon2 block buffer, allocated on the slot's first
//! hash and reused for every hash after it. Allocating 19 MiB per hash made
//! the allocator keep what was freed (glibc raises its mmap threshold after
//! each large free, so later buffers come from arenas that never shrink):
//! memory grew with the request rate instead of staying at
//! `max_concurrent × memory_kib`. Reuse also saves the page faults.
//!
//! The slots are threads of their own, one per slot, running at the lowest
//! CPU priority (nice 19): a flood of logins then takes only the CPU that
//! nothing else wants, and a refresh or a JWKS fetch (and the Postgres
//! backends serving them) preempts argon2 instead of queueing behind it.

mod argon;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use anyhow::{Context, anyhow};
use argon2::{Block, Params};
use tokio::sync::{Semaphore, oneshot};

use argon::{dummy_hash, hash_with, needs_rehash, verify_with};

use crate::config::PasswordSettings;
use crate::domain::password::{PlainPassword, Verified};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many logins already waiting for a hashing slot.
    #[error("password hashing queue is full")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
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
    /// Work for the slot threads. A job is sent only with a permit, so a
    /// thread is free to take it.
    jobs: mpsc::Sender<Job>,
    /// The block buffers of the slots not hashing right now. A slot's
    /// permit guarantees a buffer here, or room to allocate the slot's
    /// first one, so there are never more than `slots` buffers. The slot
    /// threads hold it; this handle is for the tests.
    #[cfg_attr(not(test), allow(dead_code))]
    buffers: Arc<Buffers>,
    waiting: AtomicUsize,
    max_queue: usize,
}

/// One hash, run on a slot thread with a buffer from the free list.
type Job = Box<dyn FnOnce(&Buffers) + Send>;

impl PasswordHasher {
    pub fn new(settings: &PasswordSettings, concurrency: usize) -> anyhow::Result<Self> {
        return_large_frees_to_the_os();
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| anyhow!("configuration: password.* are not valid argon2 parameters: {e}"))?;
        let dummy_hash = dummy_hash(&params)?;
        let concurrency = concurrency.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let buffers = Arc::new(Buffers {
            free: Mutex::new(Vec::new()),
            block_count: params.block_count(),
        });
        for slot in 0..concurrency {
            let (queue, buffers) = (queue.clone(), buffers.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{slot}"))
                .spawn(move || slot_thread(&queue, &buffers))
                .context("cannot start a password-hashing thread")?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                dummy_hash,
                slots: Arc::new(Semaphore::new(concurrency)),
                jobs,
                buffers,
                waiting: AtomicUsize::new(0),
                max_queue: settings.max_queue,
            }),
        })
    }

    /// Hashes a new password at the configured cost.
    pub async fn hash(&self, password: PlainPassword) -> Result<String, HashError> {
        let params = self.inner.params.clone();
        self.run(move |blocks| hash_with(&params, password.expose(), blocks))
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
        self.run(move |blocks| {
            let secret = password.expose();
            let ok = verify_with(&stored, secret, blocks)?;
            if !(ok && is_real) {
                return Ok(Verified::No);
            }
            if needs_rehash(&stored, &params) {
                return Ok(Verified::YesRehashed(hash_with(&params, secret, blocks)?));
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
        F: FnOnce(&mut Vec<Block>) -> anyhow::Result<T> + Send + 'static,
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
        metrics::histogram!(crate::telemetry::metrics::HASH_WAIT)
            .record(started.elapsed().as_secs_f64());
        let span = tracing::Span::current();
        let (done, result) = oneshot::channel();
        // The permit moves into the job: the slot stays taken for as long
        // as argon2 runs, even if this future is dropped.
        let job: Job = Box::new(move |buffers| {
            let _permit = permit;
            let mut blocks = buffers.take();
            let result = span.in_scope(|| work(&mut blocks));
            buffers.give_back(blocks);
            let _ = done.send(result);
        });
        self.inner
            .jobs
            .send(job)
            .map_err(|_| anyhow!("password hasher is shut down"))?;
        let result = result.await.context("password hashing failed")?;
        Ok(result?)
    }
}

/// A slot thread: takes jobs until the hasher is dropped, hashing at the
/// lowest priority with a buffer from the free list.
fn slot_thread(queue: &Mutex<mpsc::Receiver<Job>>, buffers: &Buffers) {
    lower_priority();
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return;
        };
        // A panic fails that one hash (its caller sees the channel close),
        // not the slot.
        if catch_unwind(AssertUnwindSafe(|| job(buffers))).is_err() {
            tracing::error!("password hashing panicked");
        }
    }
}

struct Buffers {
    free: Mutex<Vec<Vec<Block>>>,
    block_count: usize,
}

impl Buffers {
    /// A free buffer; a slot's first hash allocates it (lazily, so an idle
    /// service does not hold `max_concurrent × memory_kib`).
    fn take(&self) -> Vec<Block> {
        let free = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        free.unwrap_or_else(|| vec![Block::new(); self.block_count])
    }

    fn give_back(&self, blocks: Vec<Block>) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(blocks);
    }
}

/// nice 19 for the calling thread (on Linux, nice is per thread). Lowering
/// priority needs no privilege; failing to is harmless.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only changes this thread's scheduling weight.
        let done =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
        if done != 0 {
            tracing::warn!("could not lower the priority of a password-hashing thread");
        }
    }
}

/// A stored hash that needs more memory than a slot has gets a temporary
/// buffer (until its next login re-hashes it). glibc raises its mmap
/// threshold each time such a large block is freed, after which later ones
/// come from heap arenas that never shrink: memory stayed near 1 GiB after
/// a few hundred such logins. A fixed threshold keeps every large block
/// mmapped, so freeing it gives the memory back.
fn return_large_frees_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only tunes the allocator; 1 MiB is a valid
            // threshold, and it is set once, before any hashing buffer.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::phc::PasswordHash;
    use argon2::{Algorithm, Argon2, Version};
    use secrecy::SecretString;

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

    /// The address of each free slot buffer, sorted.
    fn buffer_addresses(h: &PasswordHasher) -> Vec<usize> {
        let mut addresses: Vec<usize> = h
            .inner
            .buffers
            .free
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.as_ptr() as usize)
            .collect();
        addresses.sort();
        addresses
    }

    #[tokio::test]
    async fn slots_allocate_their_buffer_once_and_reuse_it() {
        let h = PasswordHasher::new(&settings(19456), 2).unwrap();
        assert!(
            buffer_addresses(&h).is_empty(),
            "nothing allocated while idle"
        );
        let stored = h.hash(pw("correct horse")).await.unwrap();
        let first = buffer_addresses(&h);
        assert_eq!(first.len(), 1);
        for _ in 0..3 {
            h.verify(pw("wrong horse"), Some(stored.clone()))
                .await
                .unwrap();
        }
        assert_eq!(buffer_addresses(&h), first, "one slot, one buffer, reused");

        // Concurrent work: at most one buffer per slot, and the same ones
        // from then on.
        let round = || {
            futures_util::future::join_all(
                (0..6).map(|_| h.verify(pw("wrong horse"), Some(stored.clone()))),
            )
        };
        round().await;
        let both = buffer_addresses(&h);
        assert_eq!(both.len(), 2);
        round().await;
        h.verify(pw("nobody"), None).await.unwrap();
        assert_eq!(buffer_addresses(&h), both);
    }

    #[tokio::test]
    async fn hashes_needing_more_memory_than_a_slot_verify_and_are_rehashed_to_fit() {
        let big = PasswordHasher::new(&settings(32768), 1).unwrap();
        let small = PasswordHasher::new(&settings(19456), 1).unwrap();
        let stored = big.hash(pw("correct horse")).await.unwrap();
        let Verified::YesRehashed(fitted) = small
            .verify(pw("correct horse"), Some(stored.clone()))
            .await
            .unwrap()
        else {
            panic!("a hash costlier in memory than configured must be re-hashed");
        };
        assert!(fitted.contains("m=19456"), "{fitted}");
        assert_eq!(
            small.verify(pw("wrong horse"), Some(stored)).await.unwrap(),
            Verified::No
        );
        let slot = small.inner.buffers.free.lock().unwrap()[0].len();
        assert_eq!(slot, 19456, "the slot keeps its configured size");
    }

    /// Slot threads yield the CPU to everything else (nice 19).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn slot_threads_run_at_the_lowest_priority() {
        let h = PasswordHasher::new(&settings(8192), 2).unwrap();
        h.hash(pw("correct horse")).await.unwrap();
        let mut seen = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.starts_with("argon2-") {
                continue;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            // Fields after the parenthesised name; nice is field 19.
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            let nice: i32 = after_name.split(' ').nth(16).unwrap().parse().unwrap();
            assert_eq!(nice, 19, "{comm}");
            seen += 1;
        }
        assert!(seen >= 2, "the slot threads exist");
    }

    #[test]
    fn hashes_are_standard_phc_strings() {
        // Written by the `argon2` crate's own hasher: must verify here.
        use argon2::password_hash::PasswordHasher as _;
        let params = Params::new(19456, 2, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        let mut blocks = vec![Block::new(); params.block_count()];
        assert!(verify_with(&theirs, b"correct horse", &mut blocks).unwrap());
        assert!(!verify_with(&theirs, b"wrong horse", &mut blocks).unwrap());
        // And ours verify with the crate's own verifier.
        use argon2::password_hash::PasswordVerifier as _;
        let ours = hash_with(&params, b"correct horse", &mut blocks).unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
    }
}
