//! Reading the audit trail, and recording the admin calls that were
//! refused (they change nothing, so they have no operation of their own).

use chrono::{DateTime, Utc};

use super::{Actor, Ops};
use crate::error::Error;
use crate::store::audit;
pub use crate::store::audit::{AuditRow, Outcome};

/// An admin call refused to a valid token.
pub struct Refusal<'a> {
    /// The token's `sub` and `client_id`.
    pub actor: &'a str,
    pub client_id: &'a str,
    /// Method and route.
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: Outcome,
    /// Fold by target too (an admin token probing ids leaves a row per id),
    /// not only by caller and call.
    pub per_target: bool,
}

impl Ops<'_> {
    /// A page of the trail, newest first (`before`: the previous page's
    /// cursor). The read itself is audited.
    pub async fn audit_page(
        &self,
        actor: &Actor,
        before: Option<i64>,
        limit: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<AuditRow>, Error> {
        let entries = audit::page(self.pool, before, limit).await?;
        self.audit_read(actor, "audit.read", None, now).await?;
        Ok(entries)
    }

    /// Records a refusal, at most once a minute per caller, call, outcome
    /// (and target, if `per_target`).
    pub async fn record_refusal(
        &self,
        refusal: Refusal<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let entry = audit::Entry {
            actor: refusal.actor,
            actor_client_id: Some(refusal.client_id),
            os_user: None,
            action: refusal.action,
            target: Some(refusal.target),
            reason: None,
            outcome: refusal.outcome,
        };
        let key = if refusal.per_target {
            refusal.target
        } else {
            ""
        };
        let mut conn = self.pool.acquire().await?;
        audit::record_refusal(&mut conn, entry, key, now).await?;
        Ok(())
    }
}
