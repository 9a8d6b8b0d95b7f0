//! Resource owner password credentials grant (RFC 6749 §4.3).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use tessera_dpop::Proof;

use super::challenge;
use super::client::Client;
use super::{Issuance, Target, TokenResponse, issue};
use crate::domain::password::Verified;
use crate::domain::{AuthorizationCode, GrantType, PlainPassword, RefreshToken, Scope, Username};
use crate::dpop;
use crate::error::Error;
use crate::hashing::HashError;
use crate::state::AppState;
use crate::store::login::{self, Started};
use crate::store::login_throttle::Policy;
use crate::store::users::{self, UserRow};
use crate::telemetry;
use crate::throttle::lockout::{self, Admitted, Contender};

/// RFC 8176: the user gave a password.
pub const PASSWORD_AMR: &str = "pwd";

/// One message for unknown user, wrong password and disabled user.
const BAD_CREDENTIALS: &str = "invalid username or password";

/// What a password login presents besides the client.
pub struct Login {
    pub username: String,
    pub password: SecretString,
    /// The credential this device got at its last successful login, if any.
    pub device_token: Option<SecretString>,
    pub scope: Option<Scope>,
    /// The client's IP, when known.
    pub address: Option<IpAddr>,
    /// The request's DPoP proof, checked: the tokens are bound to its key.
    pub proof: Option<Proof>,
}

/// What a right password leads to.
#[derive(Clone, Copy)]
pub enum Then<'a> {
    /// Tokens (the password grant), for this audience.
    Tokens(&'a Target<'a>),
    /// An authorization code for this PKCE challenge (the challenge
    /// endpoint).
    Code { code_challenge: &'a str },
}

pub enum Outcome {
    Tokens(TokenResponse),
    Code(AuthorizationCode),
}

/// The password grant. A user with a second factor gets 403
/// `insufficient_authorization` and an `auth_session` to go on with at the
/// challenge endpoint.
pub async fn grant(
    state: &AppState,
    client: &Client,
    login: Login,
    target: &Target<'_>,
    now: DateTime<Utc>,
) -> Result<TokenResponse, Error> {
    match self::login(state, client, login, Then::Tokens(target), now).await? {
        Outcome::Tokens(response) => Ok(response),
        Outcome::Code(_) => Err(Error::Internal(anyhow::anyhow!(
            "a password grant ended with a code"
        ))),
    }
}

/// A password login, ending as `then` says (or in a challenge for the
/// second factor).
#[tracing::instrument(level = "debug", skip_all, fields(client_id = %client.id(), user_id = tracing::field::Empty))]
pub async fn login(
    state: &AppState,
    client: &Client,
    login: Login,
    then: Then<'_>,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
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
    // Everything that can refuse the request without hashing comes before
    // the attempt is counted: a request that is never hashed must not count
    // (an over-long password would otherwise lock any account at no cost).
    let password = PlainPassword::for_login(login.password, state.settings.password.max_length)?;
    let who = Contender::new(device, login.address);
    let policy = lockout::policy(&state.settings.login);
    // A login that can go on at the challenge endpoint starts its flow in
    // the statement that counts the attempt; the flow's token is handed out
    // only if the password is right and the user has a second factor.
    let flow = match then {
        Then::Code { code_challenge } => Some(Some(code_challenge)),
        // Only a client that can redeem the code can go on.
        Then::Tokens(_) => client.may_use(GrantType::AuthorizationCode).then_some(None),
    }
    .map(|code_challenge| challenge::Flow::new(client, code_challenge, login.scope.as_ref(), now))
    .transpose()?;
    let jkt = login.proof.as_ref().map(|p| p.jkt.as_str());
    let flow_row = flow.as_ref().map(|f| f.row(jkt));
    let admitted = lockout::admit(
        &state.pool,
        &state.addresses,
        policy,
        &username,
        &who,
        flow_row,
        now,
    )
    .await?;
    let checked = Checked {
        state,
        client,
        username: &username,
        who: &who,
        policy,
        scope: login.scope,
        proof: login.proof.as_ref(),
        then,
        flow,
        now,
    };
    match checked.finish(password, admitted).await {
        Err(e) if e.is_server_error() => {
            lockout::take_back(&state.pool, policy, &username, who.attempter()).await;
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
    who: &'a Contender,
    policy: Policy,
    scope: Option<Scope>,
    proof: Option<&'a Proof>,
    then: Then<'a>,
    /// The flow started for a user with a second factor, if one could be.
    flow: Option<challenge::Flow<'a>>,
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
        mut admitted: Admitted<'_>,
    ) -> Result<Outcome, Error> {
        let Some(user) = self.verify_password(password, admitted.user.take()).await? else {
            admitted.failed();
            return Err(Error::InvalidGrant(BAD_CREDENTIALS));
        };
        let scope = self.grant_scope(&user).await?;
        let (state, client, now) = (self.state, self.client, self.now);
        if user.second_factor {
            // A flow the client could never finish is no use to it.
            if !client.may_use(GrantType::AuthorizationCode) {
                self.right_password(&user).await?;
                return Err(Error::UnauthorizedClient(
                    "this user has a second factor: the client must log in through the challenge endpoint (grant type authorization_code)",
                ));
            }
            // Started with the attempt, which stays counted: it pays for
            // the flow's first code, and a right code forgives it.
            let flow = self.flow.ok_or_else(|| {
                anyhow::anyhow!("a user with a second factor, but no flow was started")
            })?;
            return Err(Error::InsufficientAuthorization {
                auth_session: flow.token.expose().to_owned(),
            });
        }
        let target = match self.then {
            Then::Tokens(target) => target,
            Then::Code { code_challenge } => {
                self.right_password(&user).await?;
                let code = challenge::CodeFor {
                    client_id: client.id(),
                    user_id: user.id,
                    scope: &scope.to_string(),
                    code_challenge,
                    dpop_jkt: self.proof.map(|p| p.jkt.as_str()),
                    amr: &[PASSWORD_AMR],
                };
                return Ok(Outcome::Code(
                    challenge::issue_code(state, code, now).await?,
                ));
            }
        };
        let access_scope = match target.narrow(&scope) {
            Ok(narrowed) => narrowed,
            Err(e) => {
                self.right_password(&user).await?;
                return Err(e);
            }
        };
        match self
            .start_session(&user, &scope, target, &access_scope)
            .await?
        {
            Some(response) => Ok(Outcome::Tokens(response)),
            None => {
                admitted.failed();
                Err(Error::InvalidGrant(BAD_CREDENTIALS))
            }
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

    /// The password was right, so its attempt is not a failure. Without a
    /// second factor, the source's earlier failures are forgotten too (they
    /// were typos). With one, only this attempt is taken back: wrong codes
    /// count like wrong passwords, and a right password must not wipe them
    /// (or a thief of the password could guess codes without end); a right
    /// code forgives them (`mfa`).
    async fn right_password(&self, user: &UserRow) -> Result<(), Error> {
        let (pool, policy) = (&self.state.pool, self.policy);
        if user.second_factor {
            lockout::take_back(pool, policy, self.username, self.who.attempter()).await;
            Ok(())
        } else {
            lockout::forgive(pool, policy, self.username, self.who).await
        }
    }

    /// What was asked for, within what this user and client may have.
    async fn grant_scope(&self, user: &UserRow) -> Result<Scope, Error> {
        let allowed = self.client.scopes.intersection(&user.scopes);
        match allowed.grant(self.scope.clone()) {
            Ok(scope) => Ok(scope),
            Err(_) => {
                self.right_password(user).await?;
                Err(Error::InvalidScope(
                    "requested scope exceeds what this user and client may have",
                ))
            }
        }
    }

    /// Starts the login's session and issues its tokens; `None` when the
    /// password changed, the user was disabled or logged out everywhere
    /// while this login was being checked.
    /// The session keeps the whole `scope`; the access token carries
    /// `access_scope`, narrowed for its `target`.
    async fn start_session(
        &self,
        user: &UserRow,
        scope: &Scope,
        target: &Target<'_>,
        access_scope: &Scope,
    ) -> Result<Option<TokenResponse>, Error> {
        let (state, client, now) = (self.state, self.client, self.now);
        // Every login is a session (its `sid` is how logging out reaches its
        // access tokens), but only a client allowed to refresh gets a refresh
        // token; without one, the session ends with its access token.
        let refresh_token = client
            .may_use(GrantType::RefreshToken)
            .then(RefreshToken::generate);
        let ttl = target.session_ttl(client, &state.settings.tokens, refresh_token.is_some());
        let ttl = chrono::Duration::from_std(ttl).map_err(anyhow::Error::from)?;
        let scope_text = scope.to_string();
        let session = login::NewSession {
            user_id: user.id,
            username: self.username,
            who: self.who.attempter(),
            policy: self.policy,
            verified_hash: &user.password_hash,
            client_id: client.id(),
            scope: &scope_text,
            expires_at: now + ttl,
            // RFC 9449 §5: a public client's refresh token is bound to the
            // key; a confidential client's stays bound to its secret.
            dpop_jkt: self
                .proof
                .filter(|_| !client.is_confidential())
                .map(|p| p.jkt.as_str()),
        };
        let first = refresh_token.as_ref().map(RefreshToken::hash);
        let proof = self.proof.map(|p| state.dpop.used(p));
        // It also forgets the source's failures: the right password was given.
        let session =
            match login::start_session(&state.pool, session, first.as_ref(), proof.as_ref(), now)
                .await?
            {
                Started::Session(session) => session,
                Started::UserChanged => return Ok(None),
                Started::ProofReplayed => {
                    // Replayed through another instance: the password was right.
                    self.right_password(user).await?;
                    return Err(Error::InvalidDpopProof(dpop::REPLAYED.into()));
                }
            };
        let mut response = issue(
            state,
            Issuance {
                subject: user.id.to_string(),
                session: Some(session),
                client,
                target,
                scope: access_scope,
                refresh_token: refresh_token.as_ref(),
                jkt: self.proof.map(|p| p.jkt.as_str()),
                amr: Some(&[PASSWORD_AMR.to_owned()]),
                attributes: Some(&user.attributes),
                now,
            },
        )?;
        // A fresh credential at every login: the app keeps the newest.
        response.device_token = Some(state.devices.issue(self.username, now));
        Ok(Some(response))
    }
}
