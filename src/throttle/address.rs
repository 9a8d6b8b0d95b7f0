//! Failed password logins per source (a client address, or a device that
//! presented its credential): a bucket of failures per source, in memory,
//! per instance.
//!
//! Only failures take from a bucket, yet a login is refused *before* its
//! password is hashed when its source has none left. Each bucket is one
//! instant (GCRA's theoretical arrival time: the bucket is full again
//! then), so a look without recording is plain arithmetic.
//!
//! The table is bounded. A source is added only when one of its logins
//! fails after hashing (requests refused earlier allocate nothing), and a
//! full table evicts the sources that failed least recently rather than
//! sending new ones to a shared bucket: filling the table with made-up
//! forwarded addresses buys an attacker nothing against anyone else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::LoginSettings;
use crate::domain::device::Device;

/// Sources tracked at most; memory stays bounded (~50 bytes each).
const MAX_SOURCES: usize = 100_000;

/// A full table evicts this share of it at once (the least recently
/// failing), so eviction costs amortised O(1) per new source.
const EVICT_DIVISOR: usize = 16;

/// Whose failures a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A client address; IPv6 clients get a /64 each, so one host cannot
    /// hop between addresses of its own subnet, and IPv4-mapped IPv6
    /// addresses count as IPv4.
    Address(IpAddr),
    /// A device with a valid credential for the username it tries: one
    /// misbehaving device behind a carrier's NAT costs only itself.
    Device(u128),
}

impl Source {
    pub fn address(address: IpAddr) -> Source {
        Source::Address(match address.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
            v4 => v4,
        })
    }

    pub fn device(device: Device) -> Source {
        Source::Device(device.0)
    }

    /// The key the account lockout counts this source's failures under.
    pub fn key(&self) -> String {
        match self {
            Source::Address(address) => format!("ip:{address}"),
            Source::Device(id) => Device(*id).source(),
        }
    }
}

pub struct AddressLimiter {
    table: Mutex<Table>,
    /// One more failure is allowed every `refill`...
    refill: Duration,
    /// ...and at most `burst` in a row.
    burst: u32,
    max_sources: usize,
}

#[derive(Default)]
struct Table {
    /// Source → when its bucket is full again (only sources with failures
    /// that have not refilled yet are worth keeping).
    full_at: HashMap<Source, Instant>,
    /// Logins admitted and not yet decided, per source: each may still fail
    /// and take from the bucket, so admission counts them as taken already.
    /// Bounded by the hashing queue.
    in_flight: HashMap<Source, u32>,
}

/// A login admitted for a source. `fail` takes from its bucket; dropping it
/// (success, or an error that checked nothing) takes nothing.
pub struct Attempt<'a> {
    limiter: &'a AddressLimiter,
    source: Source,
}

impl Attempt<'_> {
    pub fn fail(self) {
        self.limiter.record_failure(self.source, Instant::now());
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.limiter.leave(self.source);
    }
}

impl AddressLimiter {
    pub fn new(settings: &LoginSettings) -> anyhow::Result<Self> {
        Self::with_capacity(settings, MAX_SOURCES)
    }

    fn with_capacity(settings: &LoginSettings, max_sources: usize) -> anyhow::Result<Self> {
        if settings.address_refill.is_zero() {
            anyhow::bail!("configuration: login.address_refill must be > 0");
        }
        if settings.address_burst == 0 {
            anyhow::bail!("configuration: login.address_burst must be >= 1");
        }
        Ok(Self {
            table: Mutex::default(),
            refill: settings.address_refill,
            burst: settings.address_burst,
            max_sources,
        })
    }

    /// Admits a login from `source` if its bucket could still pay for it
    /// and for every other login from there that is being checked right
    /// now; otherwise how long to wait. Concurrent guesses from one source
    /// cannot all slip in before the first of them fails.
    pub fn admit(&self, source: Source) -> Result<Attempt<'_>, Duration> {
        self.admit_at(source, Instant::now())
    }

    fn admit_at(&self, source: Source, now: Instant) -> Result<Attempt<'_>, Duration> {
        let mut table = self.lock();
        let pending = table.in_flight.get(&source).copied().unwrap_or(0) + 1;
        let full_at = table.full_at.get(&source).copied().unwrap_or(now).max(now);
        // The bucket holds `burst` failures; each pending login may take one.
        let needed = full_at + self.refill * pending;
        let capacity = now + self.refill * self.burst;
        if needed > capacity {
            return Err((needed - capacity).max(Duration::from_secs(1)));
        }
        table.in_flight.insert(source, pending);
        Ok(Attempt {
            limiter: self,
            source,
        })
    }

    fn record_failure(&self, source: Source, now: Instant) {
        let mut table = self.lock();
        if !table.full_at.contains_key(&source) && table.full_at.len() >= self.max_sources {
            table.make_room(now, self.max_sources);
        }
        let full_at = table.full_at.entry(source).or_insert(now);
        *full_at = (*full_at).max(now) + self.refill;
    }

    fn leave(&self, source: Source) {
        let mut table = self.lock();
        if let Some(count) = table.in_flight.get_mut(&source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.in_flight.remove(&source);
            }
        }
    }

    /// Forgets sources whose bucket has refilled and gives the memory back.
    pub fn prune(&self) {
        let now = Instant::now();
        let mut table = self.lock();
        table.full_at.retain(|_, full_at| *full_at > now);
        table.full_at.shrink_to_fit();
        table.in_flight.shrink_to_fit();
    }

    /// Sources tracked.
    pub fn len(&self) -> usize {
        self.lock().full_at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    /// Refilled buckets go first; if that is not enough, the buckets that
    /// refill soonest (their last failure is the oldest) go.
    fn make_room(&mut self, now: Instant, max_sources: usize) {
        self.full_at.retain(|_, full_at| *full_at > now);
        if self.full_at.len() < max_sources {
            return;
        }
        let evict = (max_sources / EVICT_DIVISOR).max(1);
        let mut instants: Vec<Instant> = self.full_at.values().copied().collect();
        let (_, cutoff, _) = instants.select_nth_unstable(evict - 1);
        let cutoff = *cutoff;
        let mut left = evict;
        self.full_at.retain(|_, full_at| {
            if left > 0 && *full_at <= cutoff {
                left -= 1;
                return false;
            }
            true
        });
        tracing::debug!(
            evicted = evict,
            "login failure table full: evicted the least recently failing sources"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, refill: Duration, capacity: usize) -> AddressLimiter {
        let settings = LoginSettings {
            lockout_threshold: 10,
            username_lockout_threshold: 100,
            device_ttl: Duration::from_secs(86400),
            lockout_base: Duration::from_secs(30),
            lockout_max: Duration::from_secs(900),
            lockout_reset: Duration::from_secs(86400),
            address_burst: burst,
            address_refill: refill,
        };
        AddressLimiter::with_capacity(&settings, capacity).unwrap()
    }

    fn ip(text: &str) -> Source {
        Source::address(text.parse().unwrap())
    }

    fn fail(limiter: &AddressLimiter, source: Source) {
        limiter.admit(source).unwrap().fail();
    }

    #[test]
    fn successes_take_nothing_and_failures_empty_the_bucket() {
        let limiter = limiter(3, Duration::from_secs(3600), 100);
        let a = ip("192.0.2.1");
        for _ in 0..10 {
            drop(
                limiter
                    .admit(a)
                    .expect("successful logins never use up the bucket"),
            );
        }
        assert!(limiter.is_empty(), "successes record nothing");
        for _ in 0..3 {
            fail(&limiter, a);
        }
        assert_eq!(limiter.len(), 1);
        assert!(!limiter.is_empty());
        let wait = limiter.admit(a).err().unwrap();
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600));
        assert!(limiter.admit(ip("192.0.2.2")).is_ok());
    }

    #[test]
    fn logins_in_flight_count_against_the_bucket_until_they_end() {
        let limiter = limiter(3, Duration::from_secs(3600), 100);
        let a = ip("192.0.2.1");
        let pending: Vec<_> = (0..3).map(|_| limiter.admit(a).unwrap()).collect();
        assert!(limiter.admit(a).is_err(), "three are being checked already");
        drop(pending);
        assert!(limiter.lock().in_flight.is_empty(), "left, and forgotten");
        let again: Vec<_> = (0..3).map(|_| limiter.admit(a).unwrap()).collect();
        assert_eq!(again.len(), 3, "they succeeded: nothing was taken");
    }

    #[test]
    fn ipv6_addresses_share_their_64_and_mapped_ipv4_is_ipv4() {
        let limiter = limiter(1, Duration::from_secs(3600), 100);
        fail(&limiter, ip("2001:db8:1:2::1"));
        assert!(limiter.admit(ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(limiter.admit(ip("2001:db8:1:3::1")).is_ok());
        fail(&limiter, ip("::ffff:192.0.2.7"));
        assert!(limiter.admit(ip("192.0.2.7")).is_err());
        assert_eq!(ip("::ffff:192.0.2.7").key(), "ip:192.0.2.7");
        assert_eq!(ip("2001:db8:1:2::1").key(), "ip:2001:db8:1:2::");
    }

    #[test]
    fn a_device_has_its_own_bucket_beside_its_address() {
        let limiter = limiter(1, Duration::from_secs(3600), 100);
        fail(&limiter, ip("192.0.2.1"));
        assert!(limiter.admit(ip("192.0.2.1")).is_err());
        let device = Source::device(Device(7));
        assert!(limiter.admit(device).is_ok());
        assert_eq!(device.key(), format!("device:{:032x}", 7));
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_failing_and_shares_no_bucket() {
        let limiter = limiter(1, Duration::from_secs(3600), 32);
        let start = Instant::now();
        let first = ip("198.51.100.1");
        limiter.admit(first).unwrap();
        limiter.record_failure(first, start);
        for n in 0..31u32 {
            let source = Source::Address(IpAddr::from((0x0a00_0000 + n).to_be_bytes()));
            limiter.record_failure(source, start + Duration::from_secs(u64::from(n) + 1));
        }
        assert_eq!(limiter.len(), 32);
        // The table is full: a new source gets a bucket of its own (every
        // new source used to share one, emptied by anyone).
        let late = start + Duration::from_secs(100);
        let newcomer = ip("203.0.113.9");
        assert!(limiter.admit_at(newcomer, late).is_ok());
        limiter.record_failure(newcomer, late);
        assert_eq!(limiter.len(), 31, "two (32 / 16) made room for one");
        assert!(
            !limiter.lock().full_at.contains_key(&first),
            "the least recently failing went first"
        );
        assert!(limiter.admit_at(ip("203.0.113.10"), late).is_ok());
        assert!(limiter.admit_at(newcomer, late).is_err(), "its own failure");
    }

    #[test]
    fn refilled_buckets_are_pruned() {
        let limiter = limiter(2, Duration::from_millis(1), 100);
        fail(&limiter, ip("192.0.2.1"));
        fail(&limiter, ip("192.0.2.2"));
        assert_eq!(limiter.len(), 2);
        std::thread::sleep(Duration::from_millis(20));
        limiter.prune();
        assert!(limiter.is_empty());
    }
}
