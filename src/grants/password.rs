//! Resource owner password credentials grant (RFC 6749 §4.3).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::client::Client;
use super::{Issuance, TokenResponse, issue};
use crate::domain::password::Verified;
use crate::domain::{GrantType, PlainPassword, RefreshToken, Scope, Username};
use crate::error::Error;
use crate::hashing::HashError;
use crate::state::AppState;
use crate::store::login::{self, Admission, Attempter};
use crate::store::login_throttle::{self, Policy};
use crate::store::users::{self, UserRow};
use crate::telemetry;
use crate::throttle;
use crate::throttle::address::{Attempt, Source};

/// One message for unknown user, wrong password and disabled user.
const BAD_CREDENTIALS: &str = "invalid username or password";
/// The lockout's source for a login whose address is not known.
const UNKNOWN_SOURCE: &str = "-";

/// What a password login presents besides the client.
pub struct Login {
    pub username: String,
    pub password: SecretString,
    /// The credential this device got at its last successful login, if any.
    pub device_token: Option<SecretString>,
    pub scope: Option<Scope>,
    /// The client's IP, when known.
    pub address: Option<IpAddr>,
}

/// A password login.
#[tracing::instrument(level = "debug", skip_all, fields(client_id = %client.id(), user_id = tracing::field::Empty))]
pub async fn grant(
    state: &AppState,
    client: &Client,
    login: Login,
    now: DateTime<Utc>,
) -> Result<TokenResponse, Error> {
    // No account can have a name the profile refuses: the same answer as
    // for any unknown user, without hashing (the rule is public anyway).
    // Nothing is counted for it: it cost nothing, and counting it would let
    // made-up addresses fill the table of sources.
    let Ok(username) = Username::parse(&login.username) else {
        metrics::counter!(telemetry::metrics::LOGIN_FAILURES).increment(1);
        return Err(Error::InvalidGrant(BAD_CREDENTIALS));
    };
    // A device that logged in as this user before is its own source: it
    // neither shares its address's limits nor obeys the username-wide lock.
    let device = login.device_token.as_ref().and_then(|token| {
        let ttl = state.settings.login.device_ttl;
        state
            .devices
            .check(token.expose_secret(), &username, now, ttl)
    });
    let source = device
        .map(Source::device)
        .or(login.address.map(Source::address));
    let key = source.map_or_else(|| UNKNOWN_SOURCE.to_owned(), |s| s.key());
    let who = Attempter {
        source: &key,
        trusted: device.is_some(),
    };
    // Both limits are checked before argon2 runs, and both count the
    // attempt before it is decided (and forget it on success), so
    // concurrent guesses cannot all get in under either limit.
    let attempt = source
        .map(|source| state.addresses.admit(source))
        .transpose()
        .map_err(|wait| throttled("address", wait))?;
    let password = PlainPassword::for_login(login.password, state.settings.password.max_length)?;
    let policy = throttle::policy(&state.settings.login);
    let user = match login::admit(&state.pool, &username, who, policy, now).await? {
        Admission::Locked(locked_until) => {
            let wait = (locked_until - now).to_std().unwrap_or_default();
            return Err(throttled("account", coarse(wait)));
        }
        Admission::Admitted(user) => user,
    };
    let checked = Checked {
        state,
        client,
        username: &username,
        who,
        policy,
        scope: login.scope,
        now,
    };
    match checked.finish(password, user, attempt).await {
        // The server failed, not the guess (the hashing queue was full, the
        // database stalled): the attempt is taken back, so users retrying
        // through an incident do not lock themselves out. Best effort: the
        // database may be what failed.
        Err(e) if e.is_server_error() => {
            if let Err(release) =
                login_throttle::release(&state.pool, username.as_str(), who, policy).await
            {
                tracing::warn!(error = %release, "could not take back a login attempt that failed on the server's side");
            }
            Err(e)
        }
        result => result,
    }
}

/// A login admitted by both limits, its attempt counted.
struct Checked<'a> {
    state: &'a AppState,
    client: &'a Client,
    username: &'a Username,
    who: Attempter<'a>,
    policy: Policy,
    scope: Option<Scope>,
    now: DateTime<Utc>,
}

impl Checked<'_> {
    /// The rest of a login, along its seams: the password, the scope, the
    /// session. A wrong password, a disabled user, or a user changed while
    /// the password was checked is a failed attempt (it takes from the
    /// address's bucket); anything else leaves the attempt as it was.
    async fn finish(
        self,
        password: PlainPassword,
        user: Option<UserRow>,
        attempt: Option<Attempt<'_>>,
    ) -> Result<TokenResponse, Error> {
        let Some(user) = self.verify_password(password, user).await? else {
            return Err(failed_login(attempt));
        };
        let scope = self.grant_scope(&user).await?;
        match self.start_session(&user, &scope).await? {
            Some(response) => Ok(response),
            None => Err(failed_login(attempt)),
        }
    }

    /// The user, if the password is theirs and they may log in. Unknown
    /// users are verified against a dummy hash: same work, same answer.
    async fn verify_password(
        &self,
        password: PlainPassword,
        user: Option<UserRow>,
    ) -> Result<Option<UserRow>, Error> {
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let verified = match self.state.hasher.verify(password, stored).await {
            Ok(verified) => verified,
            // Nothing was checked: `grant` takes the attempt back.
            Err(HashError::Busy) => return Err(Error::TemporarilyUnavailable),
            Err(HashError::Internal(e)) => return Err(Error::Internal(e)),
        };
        let user = match (verified, user) {
            (Verified::No, _) | (_, None) => return Ok(None),
            (Verified::Yes, Some(user)) => user,
            (Verified::YesRehashed(new_hash), Some(mut user)) => {
                users::upgrade_password_hash(
                    &self.state.pool,
                    user.id,
                    &user.password_hash,
                    &new_hash,
                    self.now,
                )
                .await?;
                tracing::info!(user_id = %user.id, "upgraded password hash to the configured cost");
                user.password_hash = new_hash;
                user
            }
        };
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        Ok((!user.disabled).then_some(user))
    }

    /// What was asked for, within what this user and client may have.
    async fn grant_scope(&self, user: &UserRow) -> Result<Scope, Error> {
        let allowed = self.client.scopes.intersection(&user.scopes);
        match allowed.grant(self.scope.clone()) {
            Ok(scope) => Ok(scope),
            Err(_) => {
                // The right password: its attempt is not a failure.
                let username = self.username.as_str();
                login_throttle::succeeded(&self.state.pool, username, self.who, self.policy)
                    .await?;
                Err(Error::InvalidScope(
                    "requested scope exceeds what this user and client may have",
                ))
            }
        }
    }

    /// Starts the login's session and issues its tokens; `None` when the
    /// password changed, the user was disabled or logged out everywhere
    /// while this login was being checked.
    async fn start_session(
        &self,
        user: &UserRow,
        scope: &Scope,
    ) -> Result<Option<TokenResponse>, Error> {
        let (state, client, now) = (self.state, self.client, self.now);
        // Every login is a session (its `sid` is how logging out reaches its
        // access tokens), but only a client allowed to refresh gets a refresh
        // token; without one, the session ends with its access token.
        let refresh_token = client
            .may_use(GrantType::RefreshToken)
            .then(RefreshToken::generate);
        let ttl = match refresh_token {
            Some(_) => state.settings.tokens.refresh_ttl,
            None => state.settings.tokens.access_ttl,
        };
        let ttl = chrono::Duration::from_std(ttl).map_err(anyhow::Error::from)?;
        let scope_text = scope.to_string();
        let session = login::NewSession {
            user_id: user.id,
            username: self.username,
            who: self.who,
            policy: self.policy,
            verified_hash: &user.password_hash,
            client_id: client.id(),
            scope: &scope_text,
            expires_at: now + ttl,
        };
        let first = refresh_token.as_ref().map(RefreshToken::hash);
        // It also forgets the source's failures: the right password was given.
        let Some(session) = login::start_session(&state.pool, session, first.as_ref(), now).await?
        else {
            return Ok(None);
        };
        let mut response = issue(
            state,
            Issuance {
                subject: user.id.to_string(),
                session: Some(session),
                client_id: client.id(),
                scope,
                refresh_token: refresh_token.as_ref(),
                now,
            },
        )?;
        // A fresh credential at every login: the app keeps the newest.
        response.device_token = Some(state.devices.issue(self.username, now));
        Ok(Some(response))
    }
}

/// A failed login; it also takes a token from the address's bucket (the
/// username's count was already taken before hashing).
fn failed_login(attempt: Option<Attempt<'_>>) -> Error {
    if let Some(attempt) = attempt {
        attempt.fail();
    }
    metrics::counter!(telemetry::metrics::LOGIN_FAILURES).increment(1);
    Error::InvalidGrant(BAD_CREDENTIALS)
}

/// A lock's end rounded up to the minute: a guesser is not told to the
/// second when the next attempt will be admitted (and a person reads
/// "about a minute" as well as "37 seconds").
fn coarse(wait: std::time::Duration) -> std::time::Duration {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    std::time::Duration::from_secs(minutes * 60)
}

fn throttled(reason: &'static str, retry_after: std::time::Duration) -> Error {
    metrics::counter!(telemetry::metrics::LOGIN_THROTTLED, "reason" => reason).increment(1);
    tracing::info!(reason, "password login refused: too many failed attempts");
    Error::TooManyAttempts { retry_after }
}
