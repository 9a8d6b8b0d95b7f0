//! The endpoints that are handed a token: RFC 7662 introspection's verdict
//! (is it active, and what is it) and RFC 7009's rule that a client revokes
//! only what was issued to it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Lookup, Presented, Purpose, commit, identify, revoke};
use crate::domain::access_token::Confirmation;
use crate::error::Error;

/// An active token as introspection describes it (RFC 7662 §2.2).
#[derive(Debug, Serialize)]
pub struct Active {
    /// The RFC 6749 token type, so only for access tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// Which kind of token this is: `access_token` or `refresh_token`.
    pub token_use: &'static str,
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    /// The DPoP key a bound access token is bound to (RFC 9449 §6.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// How the user authenticated (RFC 8176), for access tokens of users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The user attributes the access token carries.
    #[serde(flatten)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl Presented {
    /// The client the token was issued to, if it is one of ours.
    pub fn holder(&self) -> Option<&str> {
        match self {
            Presented::Access(claims) => Some(claims.client_id.as_str()),
            Presented::Refresh(status) => Some(status.client_id.as_str()),
            Presented::Unknown => None,
        }
    }
}

/// Whether `token` is active now, and what it is. Never "active" for a
/// token this instance cannot yet know is revoked (503 instead).
pub async fn introspect(
    lookup: &Lookup<'_>,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<Active>, Error> {
    if !lookup.denylist.is_loaded() {
        return Err(Error::TemporarilyUnavailable);
    }
    let presented = identify(lookup, token, Purpose::Introspect, now).await?;
    // The tokens of a disabled client are dead with it (and it cannot refresh).
    if let Some(client_id) = presented.holder()
        && lookup.clients.is_disabled(lookup.pool, client_id).await?
    {
        return Ok(None);
    }
    Ok(match presented {
        Presented::Access(claims) => {
            let revoked = lookup
                .denylist
                .is_revoked_current(lookup.pool, &claims, now)
                .await?;
            (!revoked).then_some(Active {
                token_type: Some(if claims.cnf.is_some() {
                    "DPoP"
                } else {
                    "Bearer"
                }),
                token_use: "access_token",
                sub: claims.sub,
                client_id: claims.client_id,
                scope: claims.scope,
                exp: claims.exp,
                iat: claims.iat,
                jti: claims.jti,
                iss: claims.iss,
                aud: claims.aud,
                cnf: claims.cnf,
                amr: claims.amr,
                attributes: claims.attributes,
            })
        }
        Presented::Refresh(status) => {
            // Its client's sessions may end sooner, unused.
            let client = lookup.clients.find(lookup.pool, &status.client_id).await?;
            let idle = client
                .and_then(|c| c.lifetimes.refresh_idle)
                .or(lookup.refresh_idle);
            status.is_active(now, idle).then(|| Active {
                token_type: None,
                token_use: "refresh_token",
                sub: status.user_id.to_string(),
                client_id: status.client_id,
                scope: status.scope,
                exp: status.expires_at.timestamp(),
                iat: status.created_at.timestamp(),
                jti: status.token_id.to_string(),
                iss: lookup.issuer.to_owned(),
                aud: lookup.audience.to_owned(),
                cnf: None,
                amr: None,
                attributes: serde_json::Map::new(),
            })
        }
        _ => None,
    })
}

/// Who asks to revoke a token at `POST /auth/revoke`.
pub struct Revoker<'a> {
    pub client_id: &'a str,
    pub confidential: bool,
    /// The key of the DPoP proof sent with the request, if any (checked).
    pub proven_key: Option<&'a str>,
}

/// RFC 7009: a client revokes `token` if it was issued to it. Unknown,
/// expired and already-revoked tokens are not an error (§2.2); another
/// client's token is. A public client revoking a DPoP-bound access token
/// must prove its key: revoking it ends the session, and a copy of the
/// token (a public client has no secret) must not be able to log the user
/// out.
pub async fn revoke_own(
    lookup: &Lookup<'_>,
    revoker: &Revoker<'_>,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let presented = identify(lookup, token, Purpose::Revoke, now).await?;
    if presented
        .holder()
        .is_some_and(|holder| holder != revoker.client_id)
    {
        return Err(Error::UnauthorizedClient(
            "the token was not issued to this client",
        ));
    }
    if let Presented::Access(claims) = &presented
        && let Some(bound) = claims.jkt()
        && !revoker.confidential
        && revoker.proven_key != Some(bound)
    {
        return Err(Error::InvalidDpopProof(
            "revoking a DPoP-bound access token needs a DPoP proof by its key".into(),
        ));
    }
    let mut tx = lookup.pool.begin().await?;
    revoke(
        &mut tx,
        &presented,
        "client revocation",
        lookup.access_ttl,
        now,
    )
    .await?;
    commit(tx, lookup.pool, lookup.denylist, now).await?;
    Ok(())
}
