//! The kit's copy of the issuer's revocation list, applied exactly as
//! Tessera applies its own (`src/revocation/denylist.rs` in the issuer),
//! and the signing keys the issuer has distrusted.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use uuid::Uuid;

use crate::Claims;

/// One entry of the feed or the stream (the stream adds `kind`; feed items
/// are turned into the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// Reject the token with this `jti` until `exp`.
    AccessToken { jti: String, exp: i64 },
    /// Reject tokens whose `sid` is this login, until `exp`.
    Session { sid: String, exp: i64 },
    /// Reject this user's tokens with `iat < not_before`.
    User { sub: String, not_before: i64 },
    /// Reject this client's tokens (`client_id`) with `iat < not_before`.
    Client { client_id: String, not_before: i64 },
    /// Reject every token whose header names this `kid`, for good, whatever
    /// a JWK Set says: the issuer distrusted the key (it leaked).
    DistrustedKey { kid: String },
}

#[derive(Default)]
struct State {
    /// jti → exp.
    tokens: HashMap<String, i64>,
    /// login → exp.
    sessions: HashMap<Uuid, i64>,
    /// user → the latest not-before.
    users: HashMap<Uuid, i64>,
    /// client → the latest not-before.
    clients: HashMap<String, i64>,
}

/// The kids of distrusted keys: never pruned (a distrusted key is never
/// trusted again), and apart from `State` so that the check on every token
/// costs one atomic load while there are none.
#[derive(Default)]
struct Distrusted {
    kids: RwLock<HashSet<String>>,
    any: AtomicBool,
}

pub(crate) struct Denylist {
    state: RwLock<State>,
    distrusted: Distrusted,
    /// The whole feed has been read once.
    loaded: AtomicBool,
    /// When the issuer was last heard from (ms since `epoch`), so the hot
    /// path reads one atomic to know how stale the list is.
    heard_ms: AtomicU64,
    epoch: Instant,
}

impl Denylist {
    pub(crate) fn new() -> Denylist {
        Denylist {
            state: RwLock::default(),
            distrusted: Distrusted::default(),
            loaded: AtomicBool::new(false),
            heard_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// True when the token's `jti` or login (`sid`) is listed, or it was
    /// issued in a second wholly before its user's not-before instant.
    ///
    /// Tessera lists every login that a log-out-everywhere ends by its
    /// `sid`, so tokens from earlier in the not-before second itself are
    /// caught that way; `iat <= not_before` would also refuse a login made
    /// just after the log-out.
    pub(crate) fn is_revoked(&self, claims: &Claims) -> bool {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        if state.tokens.contains_key(&claims.jti) {
            return true;
        }
        let session = claims.sid.as_deref().and_then(|s| Uuid::parse_str(s).ok());
        if session.is_some_and(|s| state.sessions.contains_key(&s)) {
            return true;
        }
        // A client's not-before is set at a second's end: every token it
        // covers has an earlier `iat`.
        let by_client = state
            .clients
            .get(&claims.client_id)
            .is_some_and(|not_before| claims.iat < *not_before);
        if by_client {
            return true;
        }
        let Ok(user) = Uuid::parse_str(&claims.sub) else {
            return false;
        };
        state
            .users
            .get(&user)
            .is_some_and(|not_before| claims.iat < *not_before)
    }

    /// True when the issuer has distrusted the key named `kid`: its tokens
    /// are refused whatever else holds, and it is never loaded from a JWK
    /// Set again.
    pub(crate) fn is_distrusted(&self, kid: &str) -> bool {
        if !self.distrusted.any.load(Ordering::Acquire) {
            return false;
        }
        let kids = self
            .distrusted
            .kids
            .read()
            .unwrap_or_else(|p| p.into_inner());
        kids.contains(kid)
    }

    pub(crate) fn apply(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        for entry in entries {
            match entry {
                Entry::DistrustedKey { kid } => {
                    let mut kids = self
                        .distrusted
                        .kids
                        .write()
                        .unwrap_or_else(|p| p.into_inner());
                    if kids.insert(kid.clone()) {
                        tracing::info!(
                            %kid,
                            "the issuer distrusted a signing key: its tokens are refused from now on"
                        );
                    }
                    self.distrusted.any.store(true, Ordering::Release);
                }
                Entry::AccessToken { jti, exp } => {
                    state.tokens.insert(jti, exp);
                }
                Entry::Session { sid, exp } => match Uuid::parse_str(&sid) {
                    Ok(sid) => {
                        state.sessions.insert(sid, exp);
                    }
                    // Tessera's logins are UUIDs; a token's sid that is not
                    // one is never matched there either.
                    Err(_) => tracing::warn!("ignoring a session entry whose sid is not a UUID"),
                },
                Entry::User { sub, not_before } => match Uuid::parse_str(&sub) {
                    Ok(user) => {
                        let latest = state.users.entry(user).or_insert(not_before);
                        *latest = (*latest).max(not_before);
                    }
                    Err(_) => tracing::warn!("ignoring a user entry whose sub is not a UUID"),
                },
                Entry::Client {
                    client_id,
                    not_before,
                } => {
                    let latest = state.clients.entry(client_id).or_insert(not_before);
                    *latest = (*latest).max(not_before);
                }
            }
        }
    }

    /// Drops entries that can no longer deny anything: a token's or login's
    /// once `exp` is past by more than the leeway (the verifier still takes
    /// a token that long after `exp`), a user's once every token issued
    /// before its not-before has expired. Distrusted keys are kept for good.
    pub(crate) fn prune(&self, now: i64, leeway: Duration, max_lifetime: Duration) {
        let leeway = secs(leeway);
        let lifetime = secs(max_lifetime);
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state
            .tokens
            .retain(|_, exp| exp.saturating_add(leeway) > now);
        state
            .sessions
            .retain(|_, exp| exp.saturating_add(leeway) > now);
        state
            .users
            .retain(|_, nb| nb.saturating_add(lifetime).saturating_add(leeway) > now);
        state
            .clients
            .retain(|_, nb| nb.saturating_add(lifetime).saturating_add(leeway) > now);
    }

    /// Entries held: (access tokens, logins, users and clients).
    pub(crate) fn len(&self) -> (usize, usize, usize) {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        (
            state.tokens.len(),
            state.sessions.len(),
            state.users.len() + state.clients.len(),
        )
    }

    /// How many keys are distrusted.
    pub(crate) fn distrusted_keys(&self) -> usize {
        let kids = self
            .distrusted
            .kids
            .read()
            .unwrap_or_else(|p| p.into_inner());
        kids.len()
    }

    pub(crate) fn mark_loaded(&self) {
        self.heard_from_issuer();
        self.loaded.store(true, Ordering::Release);
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The issuer answered: an event, a keep-alive, a feed page.
    pub(crate) fn heard_from_issuer(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heard_ms.store(ms, Ordering::Release);
    }

    /// How long since the issuer was last heard from.
    pub(crate) fn age(&self) -> Duration {
        let heard = Duration::from_millis(self.heard_ms.load(Ordering::Acquire));
        self.epoch.elapsed().saturating_sub(heard)
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{Audience, Scopes};

    fn claims(sub: &str, jti: &str, iat: i64, sid: Option<&str>) -> Claims {
        Claims {
            iss: "i".into(),
            sub: sub.into(),
            aud: Audience::One("a".into()),
            client_id: "c".into(),
            scope: Scopes::default(),
            iat,
            exp: iat + 600,
            jti: jti.into(),
            sid: sid.map(str::to_owned),
            nbf: None,
            cnf: None,
            amr: None,
            attributes: serde_json::Map::new(),
        }
    }

    #[test]
    fn denies_like_tessera_then_prunes() {
        let user = Uuid::new_v4().to_string();
        let session = Uuid::new_v4().to_string();
        let list = Denylist::new();
        list.apply([
            Entry::AccessToken {
                jti: "j1".into(),
                exp: 700,
            },
            Entry::User {
                sub: user.clone(),
                not_before: 100,
            },
            Entry::Session {
                sid: session.clone(),
                exp: 900,
            },
            // An older not-before never lowers the newer one.
            Entry::User {
                sub: user.clone(),
                not_before: 40,
            },
        ]);
        assert!(list.is_revoked(&claims("svc", "j1", 50, None)));
        assert!(!list.is_revoked(&claims("svc", "j2", 50, None)));
        assert!(list.is_revoked(&claims(&user, "j3", 99, None)));
        assert!(
            !list.is_revoked(&claims(&user, "j3", 100, None)),
            "the not-before second itself is left to the sid entries"
        );
        assert!(list.is_revoked(&claims("svc", "j5", 500, Some(&session))));
        assert!(list.is_revoked(&claims("svc", "j5", 500, Some(&session.to_uppercase()))));
        assert!(!list.is_revoked(&claims("svc", "j5", 500, Some("not-a-uuid"))));
        assert_eq!(list.len(), (1, 1, 1));
        let leeway = Duration::from_secs(10);
        let lifetime = Duration::from_secs(600);
        list.prune(709, leeway, lifetime);
        assert_eq!(list.len(), (1, 1, 1), "kept while the leeway lasts");
        list.prune(710, leeway, lifetime);
        assert_eq!(
            list.len(),
            (0, 1, 0),
            "every token before not-before has expired"
        );
        list.prune(910, leeway, lifetime);
        assert_eq!(list.len(), (0, 0, 0));
    }

    #[test]
    fn stream_events_and_feed_items_share_a_shape() {
        let entry: Entry =
            serde_json::from_str(r#"{"kind":"user","sub":"u","not_before":5}"#).unwrap();
        assert_eq!(
            entry,
            Entry::User {
                sub: "u".into(),
                not_before: 5
            }
        );
        let entry: Entry =
            serde_json::from_str(r#"{"kind":"distrusted_key","kid":"k-9"}"#).unwrap();
        assert_eq!(entry, Entry::DistrustedKey { kid: "k-9".into() });
        // Kinds this kit does not know are not entries (the stream logs and
        // skips them).
        assert!(serde_json::from_str::<Entry>(r#"{"kind":"group","id":"g"}"#).is_err());
    }

    #[test]
    fn distrusted_keys_are_kept_for_good() {
        let list = Denylist::new();
        assert!(!list.is_distrusted("k1"));
        list.apply([
            Entry::DistrustedKey { kid: "k1".into() },
            Entry::AccessToken {
                jti: "j1".into(),
                exp: 700,
            },
            Entry::DistrustedKey { kid: "k1".into() },
        ]);
        assert!(list.is_distrusted("k1"));
        assert!(!list.is_distrusted("k2"));
        assert!(!list.is_distrusted(""));
        assert_eq!(list.distrusted_keys(), 1);
        // Long after every token the key signed has expired.
        let century = 100 * 365 * 24 * 3600;
        list.prune(
            700 + century,
            Duration::from_secs(10),
            Duration::from_secs(600),
        );
        assert_eq!(list.len(), (0, 0, 0));
        assert!(list.is_distrusted("k1"));
        assert_eq!(list.distrusted_keys(), 1);
    }
}
