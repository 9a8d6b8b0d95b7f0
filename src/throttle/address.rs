//! Failed password logins per client address: a token bucket per address
//! (governor's GCRA), in memory, per instance.
//!
//! Only failures take a token, yet a login is refused *before* its password
//! is hashed when its address has none left. governor has no "would this
//! pass?" call, so the state store below answers probes that ask without
//! recording anything; the decision itself is always governor's.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use crate::config::LoginSettings;

/// Addresses tracked at most. Past it, failures of new addresses go
/// unrecorded until the periodic prune makes room (the account lockout
/// still applies); memory stays bounded whatever the number of addresses.
const MAX_ADDRESSES: usize = 100_000;

/// Where the failures of addresses not yet tracked go while the table is
/// full: they share one bucket, so filling the table does not open it.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

pub struct AddressLimiter {
    limiter: RateLimiter<Probe, Buckets, DefaultClock>,
    buckets: Arc<DashMapStateStore<IpAddr>>,
    /// Logins admitted and not yet decided, per bucket: each may still fail
    /// and take a token, so admission counts them as taken already.
    /// Bounded by the hashing queue.
    in_flight: Mutex<HashMap<IpAddr, u32>>,
    refill: Duration,
}

/// A login admitted for an address. `fail` takes a token from its bucket;
/// dropping it (success, or an error that checked nothing) takes none.
pub struct Attempt<'a> {
    limiter: &'a AddressLimiter,
    key: IpAddr,
}

impl Attempt<'_> {
    pub fn fail(self) {
        let _ = self.limiter.limiter.check_key(&Probe {
            key: self.key,
            record: true,
        });
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.limiter.leave(self.key);
    }
}

impl AddressLimiter {
    pub fn new(settings: &LoginSettings) -> anyhow::Result<Self> {
        let quota = Quota::with_period(settings.address_refill)
            .ok_or_else(|| anyhow::anyhow!("configuration: login.address_refill must be > 0"))?
            .allow_burst(NonZeroU32::new(settings.address_burst).ok_or_else(|| {
                anyhow::anyhow!("configuration: login.address_burst must be >= 1")
            })?);
        let buckets = Arc::new(DashMapStateStore::default());
        let limiter = RateLimiter::new(quota, Buckets(buckets.clone()), DefaultClock::default());
        Ok(Self {
            limiter,
            buckets,
            in_flight: Mutex::new(HashMap::new()),
            refill: settings.address_refill,
        })
    }

    /// Admits a login from `address` if its bucket could still pay for it
    /// and for every other login from there that is being checked right
    /// now; otherwise how long to wait. Concurrent guesses from one
    /// address cannot all slip in before the first of them fails.
    pub fn admit(&self, address: IpAddr) -> Result<Attempt<'_>, Duration> {
        let key = self.key_for(address);
        let pending = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let count = in_flight.entry(key).or_insert(0);
            *count += 1;
            *count
        };
        let probe = Probe { key, record: false };
        let refused = match NonZeroU32::new(pending) {
            Some(n) => match self.limiter.check_key_n(&probe, n) {
                Ok(Ok(())) => None,
                Ok(Err(until)) => Some(until.wait_time_from(self.limiter.clock().now())),
                // More logins in flight than the bucket can ever hold.
                Err(_) => Some(self.refill),
            },
            None => None,
        };
        match refused {
            None => Ok(Attempt { limiter: self, key }),
            Some(wait) => {
                self.leave(key);
                Err(wait.max(Duration::from_secs(1)))
            }
        }
    }

    fn leave(&self, key: IpAddr) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = in_flight.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&key);
            }
        }
    }

    /// The bucket of `address`: its own, or the shared overflow bucket when
    /// the table is full and it has none yet.
    fn key_for(&self, address: IpAddr) -> IpAddr {
        let key = bucket_key(address);
        if self.buckets.len() >= MAX_ADDRESSES && !self.buckets.contains_key(&key) {
            tracing::debug!(
                "address limiter is full; counting a new address in the overflow bucket"
            );
            return OVERFLOW;
        }
        key
    }

    /// Forgets addresses whose bucket has refilled and gives the memory back.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// IPv6 clients get a /64 each, so one host cannot hop between addresses
/// of its own subnet; IPv4-mapped IPv6 addresses count as IPv4.
fn bucket_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// A look at one address's bucket; `record` takes a token, otherwise the
/// answer is computed and the state left as it was.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Probe {
    key: IpAddr,
    record: bool,
}

struct Buckets(Arc<DashMapStateStore<IpAddr>>);

impl StateStore for Buckets {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if probe.record {
            return self.0.measure_and_replace(&probe.key, f);
        }
        let Some(state) = self.0.get(&probe.key) else {
            return f(None).map(|(answer, _)| answer);
        };
        // Turning every decision into an error makes the store keep the
        // old state; the decision travels out inside the error.
        let asked: Result<std::convert::Infallible, Result<T, E>> =
            state.measure_and_replace(&NotKeyed::NonKey, |previous| match f(previous) {
                Ok((answer, _)) => Err(Ok(answer)),
                Err(refused) => Err(Err(refused)),
            });
        match asked {
            Ok(never) => match never {},
            Err(answer) => answer,
        }
    }
}

impl ShrinkableKeyedStateStore<Probe> for Buckets {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::<IpAddr>::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::<IpAddr>::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, refill: Duration) -> AddressLimiter {
        let settings = LoginSettings {
            lockout_threshold: 10,
            lockout_base: Duration::from_secs(30),
            lockout_max: Duration::from_secs(900),
            lockout_reset: Duration::from_secs(86400),
            address_burst: burst,
            address_refill: refill,
        };
        AddressLimiter::new(&settings).unwrap()
    }

    fn fail(limiter: &AddressLimiter, address: &str) {
        limiter.admit(address.parse().unwrap()).unwrap().fail();
    }

    #[test]
    fn successes_take_nothing_and_failures_empty_the_bucket() {
        let limiter = limiter(3, Duration::from_secs(3600));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10 {
            drop(
                limiter
                    .admit(a)
                    .expect("successful logins never use up the bucket"),
            );
        }
        assert!(limiter.is_empty(), "successes record nothing");
        for _ in 0..3 {
            fail(&limiter, "192.0.2.1");
        }
        let wait = limiter.admit(a).err().unwrap();
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600));
        assert!(limiter.admit("192.0.2.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn logins_in_flight_count_against_the_bucket() {
        let limiter = limiter(3, Duration::from_secs(3600));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let pending: Vec<_> = (0..3).map(|_| limiter.admit(a).unwrap()).collect();
        assert!(limiter.admit(a).is_err(), "three are being checked already");
        drop(pending);
        assert!(
            limiter.admit(a).is_ok(),
            "they succeeded: nothing was taken"
        );
    }

    #[test]
    fn ipv6_addresses_share_their_64_and_mapped_ipv4_is_ipv4() {
        let limiter = limiter(1, Duration::from_secs(3600));
        fail(&limiter, "2001:db8:1:2::1");
        assert!(
            limiter
                .admit("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_err()
        );
        assert!(limiter.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
        fail(&limiter, "::ffff:192.0.2.7");
        assert!(limiter.admit("192.0.2.7".parse().unwrap()).is_err());
    }

    #[test]
    fn refilled_buckets_are_pruned() {
        let limiter = limiter(2, Duration::from_millis(1));
        fail(&limiter, "192.0.2.1");
        assert_eq!(limiter.len(), 1);
        std::thread::sleep(Duration::from_millis(20));
        limiter.prune();
        assert!(limiter.is_empty());
    }
}
