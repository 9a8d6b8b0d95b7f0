//! The first-party apps challenge flow (draft-ietf-oauth-first-party-apps
//! §5): a login whose password was right waits here for its second factor
//! (the draft's `auth_session`), and every finished login leaves with an
//! authorization code, redeemed at the token endpoint (`authorization_code`).
//!
//! Why a code and not tokens (draft Appendix C): tokens come from the token
//! endpoint only, where client authentication, PKCE, DPoP binding and
//! refresh rotation already live. The code is single-use, lives 60 s and is
//! worthless without the PKCE verifier the app kept.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::client::Client;
use crate::domain::{AuthorizationCode, ChallengeToken, Scope, TokenHash, Username};
use crate::error::Error;
use crate::mfa::{self, Typed, Typist};
use crate::state::AppState;
use crate::store::challenges::{self, Finished, NewChallenge, NewCode, Release, TotpFinish};
use crate::store::login_throttle::Attempter;
use crate::throttle::lockout::{self, Contender};

/// How long a login may wait for its second factor.
const FLOW_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a code may wait to be redeemed.
pub const CODE_TTL: Duration = Duration::from_secs(60);
/// Wrong codes one flow may take before it is used up.
const MAX_WRONG_CODES: i32 = 5;

/// A login whose password was right, to go on with a second factor.
pub struct Start<'a> {
    pub client_id: &'a str,
    pub user_id: Uuid,
    pub scope: &'a Scope,
    /// Fixed by the request that starts the flow, if it had one.
    pub code_challenge: Option<&'a str>,
    pub dpop_jkt: Option<&'a str>,
}

/// Starts a challenge for a right password, taking back that password's
/// attempt (`release`) in the same statement.
pub async fn start(
    state: &AppState,
    start: Start<'_>,
    release: Release<'_>,
    now: DateTime<Utc>,
) -> Result<ChallengeToken, Error> {
    let token = ChallengeToken::generate();
    let scope = start.scope.to_string();
    let new = NewChallenge {
        token: &token.hash(),
        client_id: start.client_id,
        user_id: start.user_id,
        scope: &scope,
        code_challenge: start.code_challenge,
        dpop_jkt: start.dpop_jkt,
        expires_at: now + chrono::Duration::from_std(FLOW_TTL).map_err(anyhow::Error::from)?,
    };
    challenges::create(&state.pool, new, release, now).await?;
    Ok(token)
}

/// What a finished login's code stands for.
pub struct CodeFor<'a> {
    pub client_id: &'a str,
    pub user_id: Uuid,
    pub scope: &'a str,
    pub code_challenge: &'a str,
    pub dpop_jkt: Option<&'a str>,
    /// RFC 8176 methods the login used.
    pub amr: &'a [&'a str],
}

impl CodeFor<'_> {
    fn row<'b>(&'b self, hash: &'b TokenHash, now: DateTime<Utc>) -> Result<NewCode<'b>, Error> {
        Ok(NewCode {
            code: hash,
            client_id: self.client_id,
            user_id: self.user_id,
            scope: self.scope,
            code_challenge: self.code_challenge,
            dpop_jkt: self.dpop_jkt,
            amr: self.amr,
            expires_at: now + chrono::Duration::from_std(CODE_TTL).map_err(anyhow::Error::from)?,
        })
    }
}

/// A code for a login that needed no second factor.
pub async fn issue_code(
    state: &AppState,
    code_for: CodeFor<'_>,
    now: DateTime<Utc>,
) -> Result<AuthorizationCode, Error> {
    let code = AuthorizationCode::generate();
    let hash = code.hash();
    let mut conn = state.pool.acquire().await?;
    challenges::insert_code(&mut conn, code_for.row(&hash, now)?, now).await?;
    Ok(code)
}

/// A request that goes on with an `auth_session`.
pub struct Continue<'a> {
    pub auth_session: &'a str,
    pub typed: Typed<'a>,
    /// For a flow that started without one (at the password grant).
    pub code_challenge: Option<&'a str>,
    /// The key of this request's DPoP proof, if any.
    pub dpop_jkt: Option<&'a str>,
    pub address: Option<IpAddr>,
}

/// The second factor of a waiting login: its code, or 403 again for a wrong
/// code (while the flow has tries left), or `invalid_session`.
pub async fn go_on(
    state: &AppState,
    client: &Client,
    request: Continue<'_>,
    now: DateTime<Utc>,
) -> Result<AuthorizationCode, Error> {
    let flow = challenges::live(&state.pool, &TokenHash::of(request.auth_session), now)
        .await?
        // Another client's flow is as good as unknown to this one.
        .filter(|f| f.client_id == client.id() && !f.user_disabled)
        .ok_or(Error::InvalidSession)?;
    if let Some(bound) = &flow.dpop_jkt
        && request.dpop_jkt != Some(bound.as_str())
    {
        return Err(Error::InvalidDpopProof(
            "this login started with a DPoP proof: send a proof by the same key".into(),
        ));
    }
    let code_challenge = flow
        .code_challenge
        .as_deref()
        .or(request.code_challenge)
        .ok_or_else(|| {
            Error::invalid_request("code_challenge (S256) is required to finish the login")
        })?;
    let username = Username::parse(&flow.username).map_err(|_| Error::InvalidSession)?;
    let code = AuthorizationCode::generate();
    let hash = code.hash();
    let code_for = CodeFor {
        client_id: client.id(),
        user_id: flow.user_id,
        scope: &flow.scope,
        code_challenge,
        dpop_jkt: flow.dpop_jkt.as_deref().or(request.dpop_jkt),
        amr: mfa::methods(&request.typed),
    };
    let right = match request.typed {
        Typed::Totp(typed) => {
            let finish = TotpFinish {
                flow_id: flow.id,
                step: 0,
                code: code_for.row(&hash, now)?,
                forgive: Release {
                    username: username.as_str(),
                    who: Attempter {
                        source: "",
                        trusted: false,
                    },
                    policy: lockout::policy(&state.settings.login),
                },
            };
            let guess = TotpGuess {
                sealed: flow.totp_sealed.as_deref(),
                typed,
                address: request.address,
            };
            totp(state, &username, flow.user_id, guess, finish, now).await?
        }
        Typed::Recovery(_) => {
            let typist = Typist {
                user_id: flow.user_id,
                username,
                address: request.address,
                session: None,
            };
            if mfa::check(state, &typist, &request.typed, now).await? {
                let row = code_for.row(&hash, now)?;
                if !challenges::finish_with_code(&state.pool, flow.id, row, now).await? {
                    return Err(Error::InvalidSession);
                }
                true
            } else {
                false
            }
        }
    };
    if right {
        return Ok(code);
    }
    Err(
        if challenges::fail(&state.pool, flow.id, MAX_WRONG_CODES, now).await? {
            Error::InsufficientAuthorization {
                auth_session: request.auth_session.to_owned(),
            }
        } else {
            Error::InvalidSession
        },
    )
}

/// A TOTP code typed for a flow.
struct TotpGuess<'a> {
    /// The user's confirmed secret, sealed (read with the flow).
    sealed: Option<&'a [u8]>,
    typed: &'a str,
    address: Option<IpAddr>,
}

/// The common case of a second factor, in as few round trips as the rules
/// allow: the attempt counted (one statement, as for a password), then the
/// step spent, the flow finished, its code stored and the failures forgiven
/// (one more). True when the code was right and the flow is finished;
/// false for a wrong or replayed code (counted as a failure).
async fn totp(
    state: &AppState,
    username: &Username,
    user_id: Uuid,
    guess: TotpGuess<'_>,
    mut finish: TotpFinish<'_>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let who = Contender::new(None, guess.address);
    let policy = finish.forgive.policy;
    let admitted =
        lockout::admit(&state.pool, &state.addresses, policy, username, &who, now).await?;
    let step = match guess.sealed {
        Some(sealed) => {
            mfa::open(state, user_id, sealed)?.matching_step(guess.typed, now.timestamp())
        }
        None => None,
    };
    let Some(step) = step else {
        admitted.failed();
        return Ok(false);
    };
    finish.step = step;
    finish.forgive.who = who.attempter();
    match challenges::finish_with_totp(&state.pool, finish, now).await {
        Ok(Finished::Done) => Ok(true),
        Ok(Finished::StepUsed) => {
            admitted.failed();
            Ok(false)
        }
        // The code was right, but another request finished the flow.
        Ok(Finished::FlowGone) => {
            lockout::take_back(&state.pool, policy, username, &who).await;
            Err(Error::InvalidSession)
        }
        Err(e) => {
            lockout::take_back(&state.pool, policy, username, &who).await;
            Err(e.into())
        }
    }
}
