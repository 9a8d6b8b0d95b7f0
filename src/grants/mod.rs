//! The grant types of the token endpoint (RFC 6749 §4.3, §4.4, §6) and what they
//! share: client authentication and the token response.

pub mod authorization_code;
pub mod challenge;
pub mod client;
pub mod client_credentials;
pub mod password;
pub mod refresh;
pub mod target;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use target::Target;

use crate::domain::access_token::Confirmation;
use crate::domain::{AccessClaims, Attributes, Client, RefreshToken, Scope};
use crate::error::Error;
use crate::state::AppState;

/// The successful token response (RFC 6749 §5.1).
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
    /// After a password login: the device's credential for its next login
    /// (see `domain::device`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// Who the token is for (user id, or client id); logged, not sent.
    #[serde(skip)]
    pub subject: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// What one token response is for.
pub struct Issuance<'a> {
    /// Who the access token is for: a user id, or the client acting as
    /// itself.
    pub subject: String,
    /// The session it belongs to (its `sid`), if any.
    pub session: Option<uuid::Uuid>,
    pub client: &'a Client,
    /// Where the access token goes: its `aud` and lifetime.
    pub target: &'a Target<'a>,
    /// The access token's scope, already narrowed by `target`.
    pub scope: &'a Scope,
    /// The refresh token to hand out with it, if any.
    pub refresh_token: Option<&'a RefreshToken>,
    /// The DPoP key to bind the access token to (`cnf.jkt`), if any.
    pub jkt: Option<&'a str>,
    /// How the user authenticated (`amr`); `None` for a client itself.
    pub amr: Option<&'a [String]>,
    /// The user's attributes, as read with the user: the token carries
    /// those the client picked. `None` for a client itself.
    pub attributes: Option<&'a Attributes>,
    pub now: DateTime<Utc>,
}

/// Signs an access token with the key active at `now`, and builds the
/// response around it.
pub fn issue(state: &AppState, issuance: Issuance<'_>) -> Result<TokenResponse, Error> {
    let Issuance {
        subject,
        session,
        client,
        target,
        scope,
        refresh_token,
        jkt,
        amr,
        attributes,
        now,
    } = issuance;
    let settings = &state.settings;
    let ttl = target.access_ttl(client, &settings.tokens);
    let mut claims = AccessClaims::new(
        &settings.issuer,
        target.audience(&settings.audience),
        subject.clone(),
        client.id(),
        scope.to_string(),
        now,
        ttl,
    );
    claims.sid = session.map(|s| s.to_string());
    claims.amr = amr.map(<[String]>::to_vec);
    if let Some(attributes) = attributes {
        claims.attributes = attributes.pick(&client.claims);
    }
    claims.cnf = jkt.map(|jkt| Confirmation {
        jkt: jkt.to_owned(),
    });
    // No active key only happens before the first load; readiness covers it.
    let signer = state
        .keys
        .signer(now)
        .ok_or(Error::TemporarilyUnavailable)?;
    Ok(TokenResponse {
        access_token: claims.sign(&signer)?,
        // RFC 9449 §5: a bound token is of type DPoP.
        token_type: if jkt.is_some() { "DPoP" } else { "Bearer" },
        expires_in: ttl.as_secs(),
        refresh_token: refresh_token.map(|t| t.expose().to_owned()),
        scope: scope.to_string(),
        device_token: None,
        subject,
    })
}
