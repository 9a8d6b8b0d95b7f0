//! Failed password logins per client address: a token bucket per address
//! (governor's GCRA), in memory, per instance.
//!
//! Only failures take a token, yet a login is refused *before* its password
//! is hashed when its address has none left. governor has no "would this
//! pass?" call, so the state store below answers probes that ask without
//! recording anything; the decision itself is always governor's.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
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

pub struct AddressLimiter {
    limiter: RateLimiter<Probe, Buckets, DefaultClock>,
    buckets: Arc<DashMapStateStore<IpAddr>>,
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
        Ok(Self { limiter, buckets })
    }

    /// `Err(wait)` when `address` has no failed login left right now.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        let probe = Probe {
            key: bucket_key(address),
            record: false,
        };
        self.limiter
            .check_key(&probe)
            .map_err(|until| until.wait_time_from(self.limiter.clock().now()))
    }

    /// Takes a token for a failed login from `address`.
    pub fn record_failure(&self, address: IpAddr) {
        let key = bucket_key(address);
        if self.buckets.len() >= MAX_ADDRESSES && !self.buckets.contains_key(&key) {
            tracing::warn!("address limiter is full; a failed login went unrecorded");
            return;
        }
        // An empty bucket just stays empty: nothing more to record.
        let _ = self.limiter.check_key(&Probe { key, record: true });
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

    #[test]
    fn checking_takes_nothing_and_failures_empty_the_bucket() {
        let limiter = limiter(3, Duration::from_secs(3600));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10 {
            assert!(
                limiter.check(a).is_ok(),
                "checks alone never use up the bucket"
            );
        }
        assert!(limiter.is_empty(), "checks record nothing");
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
            limiter.record_failure(a);
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600));
        assert!(limiter.check("192.0.2.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn ipv6_addresses_share_their_64_and_mapped_ipv4_is_ipv4() {
        let limiter = limiter(1, Duration::from_secs(3600));
        limiter.record_failure("2001:db8:1:2::1".parse().unwrap());
        assert!(
            limiter
                .check("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_err()
        );
        assert!(limiter.check("2001:db8:1:3::1".parse().unwrap()).is_ok());
        limiter.record_failure("::ffff:192.0.2.7".parse().unwrap());
        assert!(limiter.check("192.0.2.7".parse().unwrap()).is_err());
    }

    #[test]
    fn refilled_buckets_are_pruned() {
        let limiter = limiter(2, Duration::from_millis(1));
        limiter.record_failure("192.0.2.1".parse().unwrap());
        assert_eq!(limiter.len(), 1);
        std::thread::sleep(Duration::from_millis(20));
        limiter.prune();
        assert!(limiter.is_empty());
    }
}
