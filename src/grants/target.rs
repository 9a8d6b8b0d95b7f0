//! Where an access token goes (RFC 8707 resource indicators): the default
//! audience, or one resource the client is allowed. It decides the token's
//! `aud`, narrows its scope to what the resource accepts, and picks its
//! lifetime: the resource's, else the client's, else the server's.

use std::time::Duration;

use crate::config::TokenSettings;
use crate::domain::{Client, Resource, Scope};
use crate::error::Error;

pub struct Target<'a> {
    resource: Option<&'a Resource>,
}

impl<'a> Target<'a> {
    /// The `resource` of a token request, which must be one the client is
    /// allowed; none means the default audience. Checked before anything is
    /// written or hashed.
    pub fn of(client: &'a Client, resource: Option<&str>) -> Result<Target<'a>, Error> {
        let Some(uri) = resource else {
            return Ok(Target { resource: None });
        };
        let resource = client.resource(uri).ok_or(Error::InvalidTarget(
            "resource is not one this client may ask tokens for",
        ))?;
        Ok(Target {
            resource: Some(resource),
        })
    }

    /// The access token's scope: `granted`, within what the resource
    /// accepts. Nothing in common is `invalid_scope`.
    pub fn narrow(&self, granted: &Scope) -> Result<Scope, Error> {
        let Some(resource) = self.resource else {
            return Ok(granted.clone());
        };
        let narrowed = granted.intersection(&resource.scopes);
        if narrowed.is_empty() {
            return Err(no_common_scope());
        }
        Ok(narrowed)
    }

    /// The scopes a token for this resource may carry at most, if it is
    /// one: for a statement to check before it writes (refresh, code).
    pub fn accepted(&self) -> Option<&Scope> {
        self.resource.map(|r| &r.scopes)
    }

    /// The access token's `aud`.
    pub fn audience<'s>(&'s self, default: &'s str) -> &'s str {
        self.resource.map_or(default, |r| r.uri.as_str())
    }

    /// The access token's lifetime, never above the configured maximum
    /// (which may have been lowered since a client or resource was set):
    /// every verifier refuses a token that lives longer.
    pub fn access_ttl(&self, client: &Client, tokens: &TokenSettings) -> Duration {
        self.resource
            .and_then(|r| r.access_ttl)
            .or(client.lifetimes.access)
            .unwrap_or(tokens.access_ttl)
            .min(tokens.longest_access())
    }
}

impl Target<'_> {
    /// How long a new session lives: the client's (or server's) longest
    /// session when it gets a refresh token, else as long as the access
    /// token.
    pub fn session_ttl(
        &self,
        client: &Client,
        tokens: &TokenSettings,
        refreshable: bool,
    ) -> Duration {
        if refreshable {
            client
                .lifetimes
                .refresh_max
                .unwrap_or(tokens.refresh_ttl)
                .min(tokens.longest_refresh())
        } else {
            self.access_ttl(client, tokens)
        }
    }
}

/// How long a session may go unused: the client's, else the server's.
pub fn refresh_idle(client: &Client, tokens: &TokenSettings) -> Option<Duration> {
    client
        .lifetimes
        .refresh_idle
        .or(tokens.refresh_idle)
        .map(|idle| idle.min(tokens.longest_refresh()))
}

pub fn no_common_scope() -> Error {
    Error::InvalidScope("the resource accepts none of the scopes granted")
}
