//! Each proof accepted once (RFC 9449 §11.1), in bounded memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

/// Entries are grouped by when they may be forgotten, in buckets this many
/// seconds wide: whole buckets are dropped, never scanned.
const BUCKET_SECS: i64 = 10;

/// Why a proof was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayRefused {
    #[error("the DPoP proof was already used")]
    Replayed,
    /// As many proofs as the cache holds are still in their window. The
    /// proof is refused (it could not be remembered, so a replay of it
    /// could not be caught); the caller answers 503.
    #[error("too many DPoP proofs in flight; retry shortly")]
    Full,
    /// This owner (a client) already holds its share of the cache: it
    /// cannot crowd out the others.
    #[error("too many DPoP proofs in flight for this client; retry shortly")]
    OwnerFull,
}

/// The proofs seen whose `iat` is still in the window, by a 128-bit hash
/// of key thumbprint and `jti`. A proof needs remembering only until its
/// `iat` leaves the window (`iat + window`): after that it is refused
/// anyway. At most `capacity` entries (about 40 bytes each).
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    /// Bucket start (seconds) → entries that may be forgotten after the
    /// bucket ends.
    by_expiry: BTreeMap<i64, Bucket>,
    len: usize,
    /// Entries held per owner, for owners with a quota.
    owners: HashMap<String, usize>,
}

#[derive(Default)]
struct Bucket {
    keys: HashSet<u128>,
    /// How many of `keys` each owner recorded.
    owners: HashMap<String, usize>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity,
            inner: Mutex::new(Buckets::default()),
        }
    }

    /// Records the proof with this key thumbprint and `jti`, remembered
    /// until `until` (seconds; `iat + window`). `Err(Replayed)` if it was
    /// recorded before.
    pub fn first_use(
        &self,
        jkt: &str,
        jti: &str,
        until: i64,
        now: i64,
    ) -> Result<(), ReplayRefused> {
        self.record(None, jkt, jti, until, now)
    }

    /// As `first_use`, for a proof of `owner` (a client), which may hold at
    /// most `quota` entries: one owner cannot fill the cache for all.
    pub fn first_use_by(
        &self,
        owner: &str,
        quota: usize,
        jkt: &str,
        jti: &str,
        until: i64,
        now: i64,
    ) -> Result<(), ReplayRefused> {
        self.record(Some((owner, quota)), jkt, jti, until, now)
    }

    fn record(
        &self,
        owner: Option<(&str, usize)>,
        jkt: &str,
        jti: &str,
        until: i64,
        now: i64,
    ) -> Result<(), ReplayRefused> {
        let key = key(jkt, jti);
        let mut buckets = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        buckets.forget_before(now);
        if buckets.by_expiry.values().any(|b| b.keys.contains(&key)) {
            return Err(ReplayRefused::Replayed);
        }
        if buckets.len >= self.capacity {
            return Err(ReplayRefused::Full);
        }
        if let Some((owner, quota)) = owner
            && buckets.owners.get(owner).copied().unwrap_or(0) >= quota
        {
            return Err(ReplayRefused::OwnerFull);
        }
        let start = until.div_euclid(BUCKET_SECS) * BUCKET_SECS;
        let bucket = buckets.by_expiry.entry(start).or_default();
        bucket.keys.insert(key);
        if let Some((owner, _)) = owner {
            *bucket.owners.entry(owner.to_owned()).or_default() += 1;
            *buckets.owners.entry(owner.to_owned()).or_default() += 1;
        }
        buckets.len += 1;
        Ok(())
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Buckets {
    /// Drops every bucket that ended before `now`.
    fn forget_before(&mut self, now: i64) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key() + BUCKET_SECS > now {
                break;
            }
            let bucket = entry.remove();
            self.len -= bucket.keys.len();
            for (owner, held) in bucket.owners {
                if let Some(total) = self.owners.get_mut(&owner) {
                    *total = total.saturating_sub(held);
                    if *total == 0 {
                        self.owners.remove(&owner);
                    }
                }
            }
        }
    }
}

/// The first 128 bits of the proof's identity: plenty to tell proofs
/// apart, half the memory.
fn key(jkt: &str, jti: &str) -> u128 {
    let mut first = [0u8; 16];
    first.copy_from_slice(&crate::proof::identity(jkt, jti)[..16]);
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_accepted_once_until_its_window_ends() {
        let cache = ReplayCache::new(10);
        assert_eq!(cache.first_use("k", "1", 160, 100), Ok(()));
        assert_eq!(
            cache.first_use("k", "1", 160, 150),
            Err(ReplayRefused::Replayed)
        );
        // Another key with the same jti is another proof.
        assert_eq!(cache.first_use("other", "1", 160, 150), Ok(()));
        // Its bucket ([160, 170)) ends at 170: forgotten then, not before.
        assert_eq!(
            cache.first_use("k", "1", 230, 169),
            Err(ReplayRefused::Replayed)
        );
        assert_eq!(cache.first_use("k", "1", 230, 170), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn one_owner_cannot_take_more_than_its_quota() {
        let cache = ReplayCache::new(10);
        cache.first_use_by("greedy", 2, "k", "1", 160, 100).unwrap();
        cache.first_use_by("greedy", 2, "k", "2", 160, 100).unwrap();
        assert_eq!(
            cache.first_use_by("greedy", 2, "k", "3", 160, 100),
            Err(ReplayRefused::OwnerFull)
        );
        // Others still get in; and the owner again once its entries expire.
        assert_eq!(cache.first_use_by("fair", 2, "k", "3", 160, 100), Ok(()));
        assert_eq!(cache.first_use_by("greedy", 2, "k", "4", 240, 170), Ok(()));
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let cache = ReplayCache::new(2);
        cache.first_use("k", "1", 160, 100).unwrap();
        cache.first_use("k", "2", 160, 100).unwrap();
        assert_eq!(
            cache.first_use("k", "3", 160, 100),
            Err(ReplayRefused::Full)
        );
        assert_eq!(
            cache.first_use("k", "1", 160, 100),
            Err(ReplayRefused::Replayed)
        );
        assert_eq!(cache.first_use("k", "3", 240, 170), Ok(()));
    }
}
