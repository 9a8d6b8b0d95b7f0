//! Revoking a token by its value.

use chrono::{DateTime, Utc};

use super::{Actor, Ops, Reason};
use crate::error::Error;
use crate::revocation::{self, Lookup, Presented, Purpose};

impl Ops<'_> {
    /// Revokes any token of ours: a user's access or refresh token ends its
    /// session, a service's access token is denylisted. Returns the kind of
    /// token revoked, if it was one of ours.
    pub async fn revoke_token(
        &self,
        actor: &Actor,
        lookup: &Lookup<'_>,
        token: &str,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<Option<&'static str>, Error> {
        let presented = revocation::identify(lookup, token, Purpose::Revoke, now).await?;
        // The audit names the token by jti or session, never by its value.
        let target = match &presented {
            Presented::Access(claims) => Some(format!("jti:{}", claims.jti)),
            Presented::Refresh(status) => Some(format!("session:{}", status.session_id)),
            Presented::Unknown => None,
        };
        let mut tx = self.begin().await?;
        let ttl = self.settings.tokens.longest_access();
        let kind = revocation::revoke(&mut tx, &presented, "admin revoked token", ttl, now).await?;
        self.audit(
            &mut tx,
            actor,
            "token.revoke",
            target.as_deref(),
            reason,
            now,
        )
        .await?;
        self.commit(tx, now).await?;
        Ok(kind)
    }
}
