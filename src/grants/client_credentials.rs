//! Client credentials grant (RFC 6749 §4.4): a service acting as itself.

use chrono::{DateTime, Utc};

use super::client::Client;
use super::{Issuance, Target, TokenResponse, issue};
use tessera_dpop::Proof;

use crate::domain::Scope;
use crate::error::Error;
use crate::state::AppState;

#[tracing::instrument(level = "debug", skip_all, fields(client_id = %client.id()))]
pub fn grant(
    state: &AppState,
    client: &Client,
    requested: Option<Scope>,
    target: &Target<'_>,
    proof: Option<&Proof>,
    now: DateTime<Utc>,
) -> Result<TokenResponse, Error> {
    // Only a client that proved a secret may act as itself.
    if !client.is_confidential() {
        return Err(Error::UnauthorizedClient(
            "only confidential clients may use client_credentials",
        ));
    }
    let scope =
        client.scopes.clone().grant(requested).map_err(|_| {
            Error::InvalidScope("requested scope exceeds what this client may have")
        })?;
    let scope = target.narrow(&scope)?;
    // Only now: only an authenticated, allowed request may use up room in
    // the replay cache.
    if let Some(proof) = proof {
        state.dpop.remember(client.id(), proof, now)?;
    }
    issue(
        state,
        Issuance {
            subject: client.id().to_owned(),
            session: None,
            client,
            target,
            scope: &scope,
            refresh_token: None,
            jkt: proof.map(|p| p.jkt.as_str()),
            amr: None,
            attributes: None,
            now,
        },
    )
}
