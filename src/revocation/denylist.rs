//! The in-memory mirror of live revocation entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::domain::AccessClaims;
use crate::domain::signing::Distrusted;
use crate::store::revocations::{self, RevocationRow};

const PAGE: i64 = 1000;

/// Entries kept for stream subscribers that have not taken them yet. One
/// that falls further behind re-reads the table by `seq` (see `stream`),
/// so this bounds memory, not correctness.
const EVENT_BUFFER: usize = 1024;

/// How long a confirmation holds: as for the client mirror
/// (`clients::STALE_AFTER`), longer than a heartbeat takes on a saturated
/// machine, short enough that a cut-off instance soon stops vouching.
pub const STALE_AFTER: Duration = crate::clients::STALE_AFTER;

pub struct Denylist {
    state: RwLock<State>,
    /// Set once every live entry has been read at startup. Before that, a
    /// revoked token would pass, so nothing may rely on the list.
    loaded: AtomicBool,
    /// Every entry applied for the first time, in `seq` order, for the
    /// revocation stream's subscribers on this instance.
    events: broadcast::Sender<Arc<RevocationRow>>,
    /// When the last confirmed read started: every entry committed before
    /// then is applied. Without a recent one (the listener is cut off from
    /// Postgres, its connection frozen) the list may miss revocations made
    /// on other instances, so checks ask Postgres and streams end.
    confirmed: watch::Sender<Option<Instant>>,
    /// How long a check may wait for Postgres (`database.request_timeout`).
    deadline: Duration,
    /// Distrusted signing keys, shared with the key ring: an entry applied
    /// here stops the key everywhere on this instance at once.
    distrusted: Arc<Distrusted>,
}

impl Default for Denylist {
    fn default() -> Self {
        Denylist::new(Duration::from_secs(5), Arc::default())
    }
}

#[derive(Default)]
struct State {
    /// jti → when the token expires (and the entry can go).
    tokens: HashMap<String, DateTime<Utc>>,
    /// session → when the entry can go.
    sessions: HashMap<Uuid, DateTime<Utc>>,
    /// user → (latest not-before, when the entry can go).
    users: HashMap<Uuid, (DateTime<Utc>, DateTime<Utc>)>,
    /// client → (latest not-before, when the entry can go).
    clients: HashMap<String, (DateTime<Utc>, DateTime<Utc>)>,
    /// Highest `seq` applied.
    seq: i64,
}

/// A not-before entry keeps the latest instant (and its expiry).
fn keep_latest<K>(
    entry: std::collections::hash_map::Entry<'_, K, (DateTime<Utc>, DateTime<Utc>)>,
    not_before: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) {
    let kept = entry.or_insert((not_before, expires_at));
    if not_before >= kept.0 {
        *kept = (not_before, expires_at);
    }
}

impl Denylist {
    pub fn new(deadline: Duration, distrusted: Arc<Distrusted>) -> Self {
        Denylist {
            state: RwLock::default(),
            loaded: AtomicBool::default(),
            events: broadcast::Sender::new(EVENT_BUFFER),
            confirmed: watch::Sender::new(None),
            deadline,
            distrusted,
        }
    }

    /// Records that every entry committed before `started` is applied.
    pub fn confirm(&self, started: Instant) {
        self.confirmed.send_replace(Some(started));
    }

    /// True while a confirmation is recent enough to vouch for the list.
    pub fn is_current(&self) -> bool {
        self.confirmed
            .borrow()
            .is_some_and(|at| at.elapsed() < STALE_AFTER)
    }

    /// As `is_revoked`, but never on a list that may be behind: unconfirmed,
    /// it first catches up from Postgres (an error, hence a 503, if Postgres
    /// does not answer within the deadline).
    pub async fn is_revoked_current(
        &self,
        pool: &PgPool,
        claims: &AccessClaims,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        if !self.is_current() {
            let started = Instant::now();
            tokio::time::timeout(self.deadline, self.catch_up(pool, now))
                .await
                .map_err(|_| sqlx::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
            self.confirm(started);
        }
        Ok(self.is_revoked(claims))
    }

    /// True when the token was signed by a distrusted key, its jti or
    /// session (`sid`) is denylisted, or it was
    /// issued in a second wholly before its user's not-before instant.
    ///
    /// A token issued earlier in the same second as a log-out-everywhere is
    /// caught by its `sid` (every user token carries one, and the log-out
    /// denylists every session it ends); comparing whole seconds here would
    /// also kill a login made just after the log-out.
    pub fn is_revoked(&self, claims: &AccessClaims) -> bool {
        // Signed by a distrusted key: whatever else it says.
        if self.distrusted.contains(&claims.kid) {
            return true;
        }
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        if state.tokens.contains_key(&claims.jti) {
            return true;
        }
        let session = claims.sid.as_deref().and_then(|s| Uuid::parse_str(s).ok());
        if session.is_some_and(|s| state.sessions.contains_key(&s)) {
            return true;
        }
        // A client's not-before is set at a second's end (see
        // `deny_client_tokens`): every token it covers has an earlier `iat`.
        let by_client = state
            .clients
            .get(&claims.client_id)
            .is_some_and(|(not_before, _)| claims.iat < not_before.timestamp());
        if by_client {
            return true;
        }
        let Ok(user) = Uuid::parse_str(&claims.sub) else {
            return false;
        };
        state
            .users
            .get(&user)
            .is_some_and(|(not_before, _)| claims.iat < not_before.timestamp())
    }

    /// Reads every live entry; only then does `is_loaded` turn true.
    pub async fn load(&self, pool: &PgPool, now: DateTime<Utc>) -> sqlx::Result<()> {
        let started = Instant::now();
        self.catch_up(pool, now).await?;
        self.confirm(started);
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Entries applied from now on, each once and in `seq` order (they are
    /// sent under the write lock, and only when `seq` is new). Subscribe
    /// before reading the table: an entry committed in between is then
    /// either in the read or received here, never neither.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RevocationRow>> {
        self.events.subscribe()
    }

    pub fn apply(&self, rows: &[RevocationRow]) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            // Concurrent catch-ups may read the same rows; only the first
            // application is news for subscribers.
            let fresh = row.seq > state.seq;
            match (row.kind.as_str(), row.not_before) {
                ("access_token", _) if row.jti.is_some() => {
                    let jti = row.jti.clone().unwrap_or_default();
                    state.tokens.insert(jti, row.expires_at);
                }
                ("session", _) if row.session_id.is_some() => {
                    let session = row.session_id.unwrap_or_default();
                    state.sessions.insert(session, row.expires_at);
                }
                ("user", Some(not_before)) if row.user_id.is_some() => {
                    let user = row.user_id.unwrap_or_default();
                    keep_latest(state.users.entry(user), not_before, row.expires_at);
                }
                ("client", Some(not_before)) if row.client_id.is_some() => {
                    let client = row.client_id.clone().unwrap_or_default();
                    keep_latest(state.clients.entry(client), not_before, row.expires_at);
                }
                ("distrusted_key", _) if row.kid.is_some() => {
                    if self
                        .distrusted
                        .insert(row.kid.as_deref().unwrap_or_default())
                    {
                        tracing::warn!(
                            kid = row.kid.as_deref(),
                            "signing key distrusted: its tokens are refused from now on"
                        );
                    }
                }
                _ => tracing::warn!(seq = row.seq, "ignoring malformed revocation row"),
            }
            state.seq = state.seq.max(row.seq);
            if fresh && self.events.receiver_count() > 0 {
                // No subscriber is not an error: nobody is listening.
                let _ = self.events.send(Arc::new(row.clone()));
            }
        }
    }

    /// Reads every entry written since the last one applied.
    pub async fn catch_up(&self, pool: &PgPool, now: DateTime<Utc>) -> sqlx::Result<()> {
        loop {
            let after = self.state.read().unwrap_or_else(|p| p.into_inner()).seq;
            let rows = revocations::live_since(pool, after, now, PAGE).await?;
            self.apply(&rows);
            if (rows.len() as i64) < PAGE {
                return Ok(());
            }
        }
    }

    /// Drops entries whose tokens have expired anyway.
    pub fn prune(&self, now: DateTime<Utc>) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.tokens.retain(|_, expires| *expires > now);
        state.sessions.retain(|_, expires| *expires > now);
        state.users.retain(|_, (_, expires)| *expires > now);
        state.clients.retain(|_, (_, expires)| *expires > now);
    }

    /// Entries held in memory: (access tokens, logins, users and clients).
    pub fn len(&self) -> (usize, usize, usize) {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        (
            state.tokens.len(),
            state.sessions.len(),
            state.users.len() + state.clients.len(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, jti: &str, iat: i64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            sub: sub.into(),
            aud: "a".into(),
            client_id: "c".into(),
            scope: String::new(),
            iat,
            exp: iat + 600,
            jti: jti.into(),
            sid: None,
            nbf: None,
            cnf: None,
            amr: None,
            attributes: serde_json::Map::new(),
            kid: String::new(),
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn row(seq: i64, kind: &str, expires: i64) -> RevocationRow {
        RevocationRow {
            seq,
            kind: kind.into(),
            jti: None,
            user_id: None,
            not_before: None,
            session_id: None,
            client_id: None,
            kid: None,
            expires_at: at(expires),
        }
    }

    #[test]
    fn denies_by_jti_session_and_not_before_then_prunes() {
        let user = Uuid::new_v4();
        let session = Uuid::new_v4();
        let list = Denylist::default();
        list.apply(&[
            RevocationRow {
                jti: Some("j1".into()),
                ..row(1, "access_token", 700)
            },
            RevocationRow {
                user_id: Some(user),
                not_before: Some(at(100)),
                ..row(2, "user", 1300)
            },
            RevocationRow {
                session_id: Some(session),
                ..row(3, "session", 900)
            },
        ]);
        assert!(list.is_revoked(&claims("someone", "j1", 50)));
        assert!(!list.is_revoked(&claims("someone", "j2", 50)));
        assert!(list.is_revoked(&claims(&user.to_string(), "j3", 99)));
        assert!(
            !list.is_revoked(&claims(&user.to_string(), "j3", 100)),
            "the same second is left to the sid entries"
        );
        assert!(!list.is_revoked(&claims(&user.to_string(), "j4", 101)));
        let in_session = AccessClaims {
            sid: Some(session.to_string()),
            ..claims("someone", "j5", 500)
        };
        assert!(list.is_revoked(&in_session));
        assert_eq!(list.len(), (1, 1, 1));
        list.prune(at(800));
        assert_eq!(list.len(), (0, 1, 1));
        list.prune(at(1300));
        assert!(list.is_empty());
    }

    #[test]
    fn a_client_not_before_denies_its_earlier_tokens_only() {
        let list = Denylist::default();
        let client = |client_id: &str, not_before: i64, seq: i64| RevocationRow {
            client_id: Some(client_id.into()),
            not_before: Some(at(not_before)),
            ..row(seq, "client", not_before + 600)
        };
        list.apply(&[client("svc", 100, 1)]);
        let token = |client_id: &str, iat: i64| AccessClaims {
            client_id: client_id.into(),
            ..claims("svc", "j", iat)
        };
        assert!(list.is_revoked(&token("svc", 99)));
        assert!(!list.is_revoked(&token("svc", 100)));
        assert!(!list.is_revoked(&token("other", 99)));
        // A later entry replaces it; an older one read late does not.
        list.apply(&[client("svc", 200, 2), client("svc", 150, 3)]);
        assert!(list.is_revoked(&token("svc", 199)));
        list.prune(at(800));
        assert!(list.is_empty());
    }

    #[test]
    fn subscribers_hear_each_entry_once_in_seq_order() {
        let list = Denylist::default();
        list.apply(&[RevocationRow {
            jti: Some("before".into()),
            ..row(1, "access_token", 700)
        }]);
        let mut events = list.subscribe();
        let jti = |seq: i64| RevocationRow {
            jti: Some(format!("j{seq}")),
            ..row(seq, "access_token", 700)
        };
        list.apply(&[jti(2), jti(3)]);
        // A concurrent catch-up read the same rows and one more.
        list.apply(&[jti(2), jti(3), jti(4)]);
        let mut seen = Vec::new();
        while let Ok(row) = events.try_recv() {
            seen.push(row.seq);
        }
        assert_eq!(seen, [2, 3, 4]);
    }
}
