//! The in-memory mirror of live revocation entries.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::AccessClaims;
use crate::store::revocations::{self, RevocationRow};

const PAGE: i64 = 1000;

#[derive(Default)]
pub struct Denylist {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// jti → when the token expires (and the entry can go).
    tokens: HashMap<String, DateTime<Utc>>,
    /// user → (latest not-before, when the entry can go).
    users: HashMap<Uuid, (DateTime<Utc>, DateTime<Utc>)>,
    /// Highest `seq` applied.
    seq: i64,
}

impl Denylist {
    /// True when the token's jti is denylisted or it was issued no later
    /// than (within the same second as) its user's not-before instant.
    pub fn is_revoked(&self, claims: &AccessClaims) -> bool {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        if state.tokens.contains_key(&claims.jti) {
            return true;
        }
        let Ok(user) = Uuid::parse_str(&claims.sub) else {
            return false;
        };
        state
            .users
            .get(&user)
            .is_some_and(|(not_before, _)| claims.iat <= not_before.timestamp())
    }

    pub fn apply(&self, rows: &[RevocationRow]) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            match (row.kind.as_str(), &row.jti, row.user_id, row.not_before) {
                ("access_token", Some(jti), _, _) => {
                    state.tokens.insert(jti.clone(), row.expires_at);
                }
                ("user", _, Some(user), Some(not_before)) => {
                    let entry = state
                        .users
                        .entry(user)
                        .or_insert((not_before, row.expires_at));
                    if not_before >= entry.0 {
                        *entry = (not_before, row.expires_at);
                    }
                }
                _ => tracing::warn!(seq = row.seq, "ignoring malformed revocation row"),
            }
            state.seq = state.seq.max(row.seq);
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
        state.users.retain(|_, (_, expires)| *expires > now);
    }

    /// (denylisted jtis, users with a not-before) held in memory.
    pub fn len(&self) -> (usize, usize) {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        (state.tokens.len(), state.users.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
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
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn denies_by_jti_and_by_not_before_then_prunes() {
        let user = Uuid::new_v4();
        let list = Denylist::default();
        list.apply(&[
            RevocationRow {
                seq: 1,
                kind: "access_token".into(),
                jti: Some("j1".into()),
                user_id: None,
                not_before: None,
                expires_at: at(700),
            },
            RevocationRow {
                seq: 2,
                kind: "user".into(),
                jti: None,
                user_id: Some(user),
                not_before: Some(at(100)),
                expires_at: at(1300),
            },
        ]);
        assert!(list.is_revoked(&claims("someone", "j1", 50)));
        assert!(!list.is_revoked(&claims("someone", "j2", 50)));
        assert!(list.is_revoked(&claims(&user.to_string(), "j3", 99)));
        assert!(
            list.is_revoked(&claims(&user.to_string(), "j3", 100)),
            "same second counts as before"
        );
        assert!(!list.is_revoked(&claims(&user.to_string(), "j4", 101)));
        list.prune(at(800));
        assert_eq!(list.len(), (0, 1));
        list.prune(at(1300));
        assert!(list.is_empty());
    }
}
