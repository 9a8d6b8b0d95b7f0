//! Resource owner password credentials grant (RFC 6749 §4.3).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::client::Client;
use super::{TokenResponse, issue};
use crate::domain::password::Verified;
use crate::domain::{GrantType, PlainPassword, RefreshToken, Scope, Username};
use crate::error::Error;
use crate::hashing::HashError;
use crate::state::AppState;
use crate::store::login::{self, Admission};
use crate::store::{login_throttle, users};
use crate::telemetry;
use crate::throttle;
use crate::throttle::address::Attempt;

/// One message for unknown user, wrong password and disabled user.
const BAD_CREDENTIALS: &str = "invalid username or password";

/// A password login from `address` (the client's IP, when known).
#[tracing::instrument(level = "debug", skip_all, fields(client_id = %client.id(), user_id = tracing::field::Empty))]
pub async fn grant(
    state: &AppState,
    client: &Client,
    username: &str,
    password: SecretString,
    requested: Option<Scope>,
    address: Option<IpAddr>,
    now: DateTime<Utc>,
) -> Result<TokenResponse, Error> {
    // Both limits are checked before argon2 runs, and both count the
    // attempt before it is decided (and forget it on success), so
    // concurrent guesses cannot all get in under either limit.
    let attempt = address
        .map(|address| state.addresses.admit(address))
        .transpose()
        .map_err(|wait| throttled("address", wait))?;
    let failed = move || failed_login(attempt);
    // No account can have a name the profile refuses: the same answer as
    // for any unknown user, without hashing (the rule is public anyway),
    // and it counts against the address like any failed login.
    let Ok(username) = Username::parse(username) else {
        return Err(failed());
    };
    let password = PlainPassword::for_login(password, state.settings.password.max_length)?;
    let policy = throttle::policy(&state.settings.login);
    let user = match login::admit(&state.pool, &username, policy, now).await? {
        Admission::Locked(locked_until) => {
            let wait = (locked_until - now).to_std().unwrap_or_default();
            return Err(throttled("account", wait));
        }
        Admission::Admitted(user) => user,
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    // Unknown users are verified against a dummy hash: same work, same answer.
    let verified = match state.hasher.verify(password, stored).await {
        Ok(verified) => verified,
        Err(HashError::Busy) => {
            // Nothing was checked, so nothing counts against the username.
            login_throttle::release(&state.pool, username.as_str(), policy).await?;
            return Err(Error::TemporarilyUnavailable);
        }
        Err(HashError::Internal(e)) => return Err(Error::Internal(e)),
    };
    let user = match (verified, user) {
        (Verified::No, _) | (_, None) => return Err(failed()),
        (Verified::Yes, Some(user)) => user,
        (Verified::YesRehashed(new_hash), Some(mut user)) => {
            users::upgrade_password_hash(&state.pool, user.id, &user.password_hash, &new_hash, now)
                .await?;
            tracing::info!(user_id = %user.id, "upgraded password hash to the configured cost");
            user.password_hash = new_hash;
            user
        }
    };
    tracing::Span::current().record("user_id", tracing::field::display(user.id));
    if user.disabled {
        return Err(failed());
    }
    let allowed = client.scopes.intersection(&user.scopes);
    let scope = match allowed.grant(requested) {
        Ok(scope) => scope,
        Err(_) => {
            // The right password: its attempt is not a failure.
            login_throttle::reset(&state.pool, username.as_str()).await?;
            return Err(Error::InvalidScope(
                "requested scope exceeds what this user and client may have",
            ));
        }
    };

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
        username: &username,
        verified_hash: &user.password_hash,
        client_id: client.id(),
        scope: &scope_text,
        expires_at: now + ttl,
    };
    let first = refresh_token.as_ref().map(RefreshToken::hash);
    // It also forgets the username's failures: the right password was given.
    let Some(session) = login::start_session(&state.pool, session, first.as_ref(), now).await?
    else {
        // The password changed, the user was disabled or logged out
        // everywhere while this login was being checked.
        return Err(failed());
    };

    issue(
        state,
        user.id.to_string(),
        Some(session),
        client.id(),
        &scope,
        refresh_token.as_ref(),
        now,
    )
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

fn throttled(reason: &'static str, retry_after: std::time::Duration) -> Error {
    metrics::counter!(telemetry::metrics::LOGIN_THROTTLED, "reason" => reason).increment(1);
    tracing::info!(reason, "password login refused: too many failed attempts");
    Error::TooManyAttempts { retry_after }
}
