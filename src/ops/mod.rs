//! Every administrative operation, written once. The admin API and the
//! command line both call these; each runs in one transaction together
//! with its audit row, so a change is never made without its record, nor
//! recorded without being made.

mod audit;
mod clients;
mod keys;
mod resources;
mod tokens;
mod users;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

pub use audit::{AuditRow, Outcome, Refusal};
pub use clients::{NewClient, SecretChoice};
pub use keys::{KeyDistrusted, RotateKey};
pub use resources::NewResource;
pub use users::{NewUser, UserPage};

use crate::config::Settings;
use crate::error::Error;
use crate::hashing::PasswordHasher;
use crate::keys::KeyRing;
use crate::revocation::Denylist;
use crate::store::audit::Entry;

/// Longest reason an operator may give.
pub const MAX_REASON_CHARS: usize = 500;

/// What the operations work with.
#[derive(Clone, Copy)]
pub struct Ops<'a> {
    pub pool: &'a PgPool,
    pub settings: &'a Settings,
    pub hasher: &'a PasswordHasher,
    pub keys: &'a KeyRing,
    /// This instance's denylist, brought up to date as soon as a revocation
    /// commits. The CLI has none: the running instances hear of it through
    /// NOTIFY.
    pub denylist: Option<&'a Denylist>,
}

/// Who is acting, as the audit trail names them.
#[derive(Debug, Clone)]
pub enum Actor {
    /// The holder of an access token with the `admin` scope.
    Token { sub: String, client_id: String },
    /// Someone at the command line; `os_user` is who ran it.
    Cli { os_user: String },
}

impl Actor {
    fn entry<'a>(
        &'a self,
        action: &'a str,
        target: Option<&'a str>,
        reason: Option<&'a str>,
    ) -> Entry<'a> {
        let (actor, actor_client_id, os_user) = match self {
            Actor::Token { sub, client_id } => (sub.as_str(), Some(client_id.as_str()), None),
            Actor::Cli { os_user } => ("cli", None, Some(os_user.as_str())),
        };
        Entry {
            actor,
            actor_client_id,
            os_user,
            action,
            target,
            reason,
            outcome: Outcome::Ok,
        }
    }
}

/// Why an operator did something: optional, bounded.
#[derive(Debug, Clone, Default)]
pub struct Reason(Option<String>);

impl Reason {
    pub fn parse(raw: Option<String>) -> Result<Reason, Error> {
        match raw {
            Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(Error::invalid_request(
                format!("reason is longer than {MAX_REASON_CHARS} characters"),
            )),
            other => Ok(Reason(other)),
        }
    }

    pub fn none() -> Reason {
        Reason(None)
    }

    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'a> Ops<'a> {
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, Error> {
        Ok(self.pool.begin().await?)
    }

    /// Writes the audit row of an operation, in its transaction.
    async fn audit(
        &self,
        conn: &mut PgConnection,
        actor: &Actor,
        action: &str,
        target: Option<&str>,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        crate::store::audit::record(conn, actor.entry(action, target, reason.as_deref()), now)
            .await?;
        Ok(())
    }

    /// Commits, and brings this instance's denylist up to date before the
    /// caller answers (other instances hear of it through NOTIFY).
    async fn commit(&self, tx: Transaction<'_, Postgres>, now: DateTime<Utc>) -> Result<(), Error> {
        match self.denylist {
            Some(denylist) => crate::revocation::commit(tx, self.pool, denylist, now).await?,
            None => tx.commit().await?,
        }
        Ok(())
    }

    /// A read, audited like a change (who looked at what).
    pub async fn audit_read(
        &self,
        actor: &Actor,
        action: &str,
        target: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let mut conn = self.pool.acquire().await?;
        self.audit(&mut conn, actor, action, target, &Reason::none(), now)
            .await
    }
}
