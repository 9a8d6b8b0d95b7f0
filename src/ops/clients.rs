//! Clients: registration and changes. Every instance mirrors the clients
//! in memory; a change reaches them all at commit (the `clients_notify`
//! trigger), so these write only to Postgres.

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::{Actor, Ops, Reason};
use crate::domain::client::Lifetimes;
use crate::domain::{AttributeName, ClientId, ClientSecret, GrantType, ResourceUri, Scope};
use crate::error::Error;
use crate::revocation;
use crate::store::clients::{self, CreateClientError};
use crate::store::resources;

/// Where a confidential client's secret comes from.
pub enum SecretChoice {
    /// A public client (a mobile app): no secret.
    None,
    /// Generate one and hand it back, once.
    Generate,
    /// The operator's own (at least 32 characters).
    Given(SecretString),
}

pub struct NewClient {
    pub id: String,
    pub secret: SecretChoice,
    pub grants: Vec<String>,
    pub scopes: Vec<String>,
    /// Every token request must carry a DPoP proof.
    pub require_dpop: bool,
}

impl Ops<'_> {
    /// Registers a client. Returns the generated secret, if one was asked
    /// for: it is stored only as a hash, so this is the one time it is seen.
    pub async fn create_client(
        &self,
        actor: &Actor,
        new: NewClient,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<Option<ClientSecret>, Error> {
        let id = ClientId::parse(&new.id)?;
        let grants = new
            .grants
            .iter()
            .map(|g| GrantType::parse(g))
            .collect::<Result<Vec<_>, _>>()?;
        let scope = Scope::from_tokens(&new.scopes)?;
        let (secret, generated) = match new.secret {
            SecretChoice::None if grants.contains(&GrantType::ClientCredentials) => {
                return Err(needs_secret());
            }
            SecretChoice::None => (None, false),
            choice => {
                let (secret, generated) = new_secret(choice)?;
                (Some(secret), generated)
            }
        };
        let hash = secret.as_ref().map(ClientSecret::hash);
        let mut tx = self.begin().await?;
        clients::insert(
            &mut tx,
            &id,
            hash.as_ref().map(|h| h.as_bytes()),
            &grants,
            &scope,
            new.require_dpop,
            now,
        )
        .await
        .map_err(|e| match e {
            CreateClientError::Exists => Error::Conflict("a client with that id already exists"),
            CreateClientError::Db(e) => e.into(),
        })?;
        self.audit(
            &mut tx,
            actor,
            "client.create",
            Some(id.as_str()),
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(secret.filter(|_| generated))
    }

    /// Every registered client, by id. Not audited: ids, kinds and grants,
    /// which an operator needs to act at all (never a secret).
    pub async fn list_clients(&self) -> Result<Vec<crate::domain::Client>, Error> {
        let mut all = clients::all(self.pool).await?;
        all.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(all)
    }

    /// Disables (or re-enables) a client. A disabled client can get no
    /// token, and the tokens it holds stop being accepted by this service
    /// (bearer checks, introspection, refresh) while it is disabled;
    /// offline verifiers accept its access tokens until they expire, and
    /// enabling it revives them. With `revoke_tokens` (disabling only) they
    /// end for good, everywhere: see `end_client_tokens`.
    pub async fn set_client_disabled(
        &self,
        actor: &Actor,
        client_id: &str,
        disabled: bool,
        revoke_tokens: bool,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let id = ClientId::parse(client_id)?;
        if revoke_tokens && !disabled {
            return Err(Error::invalid_request(
                "revoke_tokens goes with disabling a client (or rotating its secret), not enabling it",
            ));
        }
        let mut tx = self.begin().await?;
        if !clients::set_disabled(&mut tx, &id, disabled).await? {
            return Err(Error::NotFound("no such client"));
        }
        let action = if disabled {
            "client.disable"
        } else {
            "client.enable"
        };
        self.audit(&mut tx, actor, action, Some(id.as_str()), reason, now)
            .await?;
        if revoke_tokens {
            self.end_client_tokens(&mut tx, actor, &id, reason, now)
                .await?;
        }
        self.commit(tx, now).await
    }

    /// Ends every token the client holds (its refresh tokens, and every
    /// access token issued to it until now, through a per-client not-before
    /// pushed to every instance and verifier), audited as
    /// `client.revoke_tokens`.
    async fn end_client_tokens(
        &self,
        tx: &mut sqlx::PgConnection,
        actor: &Actor,
        id: &ClientId,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let ttl = self.settings.tokens.longest_access();
        let why = reason.as_deref().unwrap_or("client tokens revoked");
        revocation::end_client_tokens(tx, id.as_str(), why, now, ttl).await?;
        self.audit(
            tx,
            actor,
            "client.revoke_tokens",
            Some(id.as_str()),
            reason,
            now,
        )
        .await
    }

    /// Replaces a confidential client's secret; the old one stops working
    /// at once, but tokens minted with it live on unless `revoke_tokens`.
    /// Returns the new secret when one was generated.
    pub async fn rotate_client_secret(
        &self,
        actor: &Actor,
        client_id: &str,
        secret: SecretChoice,
        revoke_tokens: bool,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<Option<ClientSecret>, Error> {
        let id = ClientId::parse(client_id)?;
        let (secret, generated) = new_secret(secret)?;
        let mut tx = self.begin().await?;
        if !clients::set_secret(&mut tx, &id, secret.hash().as_bytes()).await? {
            return Err(Error::NotFound(
                "no such confidential client (a public client has no secret to rotate)",
            ));
        }
        self.audit(
            &mut tx,
            actor,
            "client.rotate_secret",
            Some(id.as_str()),
            reason,
            now,
        )
        .await?;
        if revoke_tokens {
            self.end_client_tokens(&mut tx, actor, &id, reason, now)
                .await?;
        }
        self.commit(tx, now).await?;
        Ok(generated.then_some(secret))
    }

    /// Replaces the grant types and scopes a client may ask for. Tokens
    /// already issued keep their scope until they expire; refreshing is
    /// refused once `refresh_token` is gone, and a refresh can never widen
    /// beyond the new scopes.
    pub async fn set_client_grants(
        &self,
        actor: &Actor,
        client_id: &str,
        grants: &[String],
        scopes: &[String],
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let id = ClientId::parse(client_id)?;
        let grants = grants
            .iter()
            .map(|g| GrantType::parse(g))
            .collect::<Result<Vec<_>, _>>()?;
        let scope = Scope::from_tokens(scopes)?;
        let mut tx = self.begin().await?;
        let confidential = clients::lock_is_confidential(&mut tx, &id)
            .await?
            .ok_or(Error::NotFound("no such client"))?;
        if !confidential && grants.contains(&GrantType::ClientCredentials) {
            return Err(needs_secret());
        }
        clients::set_grants(&mut tx, &id, &grants, &scope).await?;
        self.audit(
            &mut tx,
            actor,
            "client.set_grants",
            Some(id.as_str()),
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether the client must send a DPoP proof with every token request
    /// (`dpop_bound_access_tokens`). Applies from its next token request;
    /// tokens already issued keep their binding, or lack of one.
    pub async fn set_client_dpop_bound(
        &self,
        actor: &Actor,
        client_id: &str,
        bound: bool,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let id = ClientId::parse(client_id)?;
        let mut tx = self.begin().await?;
        if !clients::set_dpop_bound(&mut tx, &id, bound).await? {
            return Err(Error::NotFound("no such client"));
        }
        let action = if bound {
            "client.require_dpop"
        } else {
            "client.allow_bearer"
        };
        self.audit(&mut tx, actor, action, Some(id.as_str()), reason, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the resources a client may ask tokens for (RFC 8707), each
    /// registered; none: the default audience only. Audited as
    /// `client.set_resources`; applies from its next token request.
    /// Returns them as stored (each once, in order).
    pub async fn set_client_resources(
        &self,
        actor: &Actor,
        client_id: &str,
        uris: &[String],
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, Error> {
        let id = ClientId::parse(client_id)?;
        let mut uris = uris
            .iter()
            .map(|u| ResourceUri::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        uris.sort();
        uris.dedup();
        if uris.len() > MAX_RESOURCES {
            return Err(Error::invalid_request(format!(
                "a client may have at most {MAX_RESOURCES} resources"
            )));
        }
        let mut tx = self.begin().await?;
        if clients::lock_is_confidential(&mut tx, &id).await?.is_none() {
            return Err(Error::NotFound("no such client"));
        }
        // Counted, not echoed: a URI may hold characters an error
        // description must not (RFC 6749 §5.2).
        let unknown = resources::unknown(&mut tx, &uris).await?;
        if !unknown.is_empty() {
            return Err(Error::invalid_request(format!(
                "{} of these resources are not registered (tessera resource list; tessera resource create)",
                unknown.len()
            )));
        }
        resources::set_for_client(&mut tx, &id, &uris).await?;
        self.audit(
            &mut tx,
            actor,
            "client.set_resources",
            Some(id.as_str()),
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(uris.iter().map(|u| u.as_str().to_owned()).collect())
    }

    /// Sets a client's own lifetimes, each within the server's maximum
    /// (unset: the server's default). Audited as `client.set_lifetimes`.
    /// The access lifetime and the idle limit are read whenever a token is
    /// issued, so they apply from the next one; the longest session is
    /// fixed when a session starts, so it applies from the next login.
    pub async fn set_client_lifetimes(
        &self,
        actor: &Actor,
        client_id: &str,
        lifetimes: Lifetimes,
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let id = ClientId::parse(client_id)?;
        let tokens = &self.settings.tokens;
        for (name, value, maximum_name, maximum) in [
            (
                "access_ttl",
                lifetimes.access,
                "tokens.max_access_ttl",
                tokens.longest_access(),
            ),
            (
                "refresh_idle",
                lifetimes.refresh_idle,
                "tokens.max_refresh_ttl",
                tokens.longest_refresh(),
            ),
            (
                "refresh_max",
                lifetimes.refresh_max,
                "tokens.max_refresh_ttl",
                tokens.longest_refresh(),
            ),
        ] {
            if let Some(value) = value {
                self.check_lifetime(name, value, maximum_name, maximum)?;
            }
        }
        if lifetimes
            .refresh_max
            .is_some_and(|max| max <= tokens.refresh_grace)
        {
            return Err(Error::invalid_request(
                "refresh_max must be longer than tokens.refresh_grace",
            ));
        }
        let mut tx = self.begin().await?;
        if !clients::set_lifetimes(&mut tx, &id, lifetimes).await? {
            return Err(Error::NotFound("no such client"));
        }
        self.audit(
            &mut tx,
            actor,
            "client.set_lifetimes",
            Some(id.as_str()),
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Chooses which user attributes the client's access tokens carry
    /// (none by default). Audited as `client.set_claims`. Returns them as
    /// stored (each once, in order).
    pub async fn set_client_claims(
        &self,
        actor: &Actor,
        client_id: &str,
        names: &[String],
        reason: &Reason,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, Error> {
        let id = ClientId::parse(client_id)?;
        let mut names = names
            .iter()
            .map(|n| AttributeName::parse(n))
            .collect::<Result<Vec<_>, _>>()?;
        names.sort();
        names.dedup();
        if names.len() > MAX_CLAIMS {
            return Err(Error::invalid_request(format!(
                "a client may pick at most {MAX_CLAIMS} attributes"
            )));
        }
        let mut tx = self.begin().await?;
        if !clients::set_claims(&mut tx, &id, &names).await? {
            return Err(Error::NotFound("no such client"));
        }
        self.audit(
            &mut tx,
            actor,
            "client.set_claims",
            Some(id.as_str()),
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(names.iter().map(|n| n.as_str().to_owned()).collect())
    }
}

/// Most resources one client may be allowed (each is held in memory on
/// every instance, and scanned per token request).
const MAX_RESOURCES: usize = 64;
/// Most attributes one client may pick.
const MAX_CLAIMS: usize = 32;

fn needs_secret() -> Error {
    Error::invalid_request("client_credentials needs a confidential client (one with a secret)")
}

/// A secret as chosen, and whether it was generated (and must be shown).
fn new_secret(choice: SecretChoice) -> Result<(ClientSecret, bool), Error> {
    match choice {
        SecretChoice::Generate => Ok((ClientSecret::generate(), true)),
        SecretChoice::Given(raw) => Ok((ClientSecret::parse(raw)?, false)),
        SecretChoice::None => Err(Error::invalid_request(
            "a confidential client needs a secret",
        )),
    }
}
