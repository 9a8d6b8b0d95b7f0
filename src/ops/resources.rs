//! Resources (RFC 8707): the APIs that accept Tessera's tokens. Registered
//! here; a client asks for one only once it is allowed it
//! (`set_client_resources`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Actor, Ops, Reason};
use crate::domain::{Resource, ResourceUri, Scope};
use crate::error::Error;
use crate::store::resources::{self, Listed};

pub struct NewResource {
    pub uri: String,
    pub scopes: Vec<String>,
    /// Its own access-token lifetime, if any.
    pub access_ttl: Option<Duration>,
}

impl Ops<'_> {
    /// Registers a resource, audited as `resource.create`.
    pub async fn create_resource(
        &self,
        actor: &Actor,
        new: NewResource,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<Resource, Error> {
        let uri = ResourceUri::parse(&new.uri)?;
        // Tessera's own APIs accept tokens for its audience alone: a resource
        // by that name (or the issuer's) would hand its tokens to them.
        if [&self.settings.audience, &self.settings.issuer]
            .iter()
            .any(|own| own.trim_end_matches('/') == uri.as_str().trim_end_matches('/'))
        {
            return Err(Error::invalid_request(
                "a resource cannot be Tessera itself (its audience or issuer)",
            ));
        }
        let scopes = Scope::from_tokens(&new.scopes)?;
        if scopes.is_empty() {
            return Err(Error::invalid_request(
                "a resource accepts at least one scope",
            ));
        }
        if let Some(ttl) = new.access_ttl {
            self.check_lifetime(
                "access_ttl",
                ttl,
                "tokens.max_access_ttl",
                self.settings.tokens.longest_access(),
            )?;
        }
        let resource = Resource {
            uri,
            scopes,
            access_ttl: new.access_ttl,
        };
        let mut tx = self.begin().await?;
        if !resources::insert(&mut tx, &resource, now).await? {
            return Err(Error::Conflict("a resource with that URI already exists"));
        }
        self.audit(
            &mut tx,
            actor,
            "resource.create",
            Some(resource.uri.as_str()),
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(resource)
    }

    /// Every resource with the clients allowed it. Not audited, like the
    /// client list.
    pub async fn list_resources(&self) -> Result<Vec<Listed>, Error> {
        let mut conn = self.pool.acquire().await?;
        Ok(resources::all(&mut conn).await?)
    }

    /// Deletes a resource, audited as `resource.delete`: no client can ask
    /// for it any more (every instance hears of it at commit). Tokens
    /// issued for it live until they expire.
    pub async fn delete_resource(
        &self,
        actor: &Actor,
        uri: &str,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let uri = ResourceUri::parse(uri)?;
        let mut tx = self.begin().await?;
        if !resources::delete(&mut tx, &uri).await? {
            return Err(Error::NotFound("no such resource"));
        }
        self.audit(
            &mut tx,
            actor,
            "resource.delete",
            Some(uri.as_str()),
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A lifetime an operator set, within the server's maximum for it.
    pub(super) fn check_lifetime(
        &self,
        name: &str,
        value: Duration,
        maximum_name: &str,
        maximum: Duration,
    ) -> Result<(), Error> {
        if value.is_zero() {
            return Err(Error::invalid_request(format!(
                "{name} must be greater than zero"
            )));
        }
        if value > maximum {
            return Err(Error::invalid_request(format!(
                "{name} ({}s) is above {maximum_name} ({}s): raise that in the configuration first",
                value.as_secs(),
                maximum.as_secs()
            )));
        }
        Ok(())
    }
}
