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
use crate::store::challenges::{
    self, Finished, FlowQuery, Forgive, NewCode, Paid, Taken, TotpFinish,
};
use crate::store::login::NewChallenge;
use crate::store::login_throttle::{Attempter, Policy};
use crate::throttle::lockout::{self, Admitted, Contender};

/// How long a login may wait for its second factor.
const FLOW_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a code may wait to be redeemed.
pub const CODE_TTL: Duration = Duration::from_secs(60);
/// Wrong codes one flow may take before it is used up.
const MAX_WRONG_CODES: i32 = 5;

/// A flow to start with a login's attempt, for a user with a second
/// factor (`store::login::admit`): its token is handed out only if the
/// password is right.
pub struct Flow<'a> {
    pub token: ChallengeToken,
    hash: TokenHash,
    client_id: &'a str,
    /// What the login asked for, or the client's scopes: the flow reads it
    /// back within the user's.
    scope: String,
    /// Fixed by the request that starts the flow, if it had one.
    code_challenge: Option<&'a str>,
    expires_at: DateTime<Utc>,
}

impl<'a> Flow<'a> {
    pub fn new(
        client: &'a Client,
        code_challenge: Option<&'a str>,
        requested: Option<&Scope>,
        now: DateTime<Utc>,
    ) -> Result<Flow<'a>, Error> {
        let token = ChallengeToken::generate();
        Ok(Flow {
            hash: token.hash(),
            token,
            client_id: client.id(),
            scope: requested.unwrap_or(&client.scopes).to_string(),
            code_challenge,
            expires_at: now + chrono::Duration::from_std(FLOW_TTL).map_err(anyhow::Error::from)?,
        })
    }

    /// Its row, bound to the login's DPoP key if any.
    pub fn row<'b>(&'b self, dpop_jkt: Option<&'b str>) -> NewChallenge<'b> {
        NewChallenge {
            token: &self.hash,
            client_id: self.client_id,
            scope: &self.scope,
            code_challenge: self.code_challenge,
            dpop_jkt,
            expires_at: self.expires_at,
        }
    }
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
    let token = TokenHash::of(request.auth_session);
    if let Typed::Totp(typed) = request.typed {
        // The common case: the flow read and the attempt counted in one
        // statement, then one more to finish it.
        let who = Contender::new(None, request.address);
        let policy = lockout::policy(&state.settings.login);
        let attempt = lockout::enter(&state.addresses, &who)?;
        let query = FlowQuery {
            token: &token,
            client_id: client.id(),
            jkt: request.dpop_jkt,
            has_code_challenge: request.code_challenge.is_some(),
        };
        let taken = challenges::live_admitted(
            &state.pool,
            query,
            who.attempter(),
            policy,
            MAX_WRONG_CODES,
            now,
        )
        .await?;
        if let Some(Taken {
            flow,
            admission,
            tries,
            paid_by,
        }) = taken
        {
            let admitted = lockout::admitted(attempt, admission, now)?;
            let guess = TotpGuess {
                typed,
                counted: paid_by.as_ref().map_or(who.attempter(), Paid::attempter),
                policy,
                admitted,
                last_try: tries >= MAX_WRONG_CODES,
            };
            let second = Second::Totp(Box::new(guess));
            return finish(state, client, &request, flow, second, now).await;
        }
    }
    // A recovery code, or a request the common case refused: read the flow
    // (counting nothing) to say why.
    let flow = challenges::live(&state.pool, &token, now)
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
    if flow.code_challenge.is_none() && request.code_challenge.is_none() {
        return Err(Error::invalid_request(
            "code_challenge (S256) is required to finish the login",
        ));
    }
    match request.typed {
        Typed::Recovery(_) => finish(state, client, &request, flow, Second::Recovery, now).await,
        // Only if the flow changed between the two reads.
        Typed::Totp(_) => Err(Error::InvalidSession),
    }
}

/// How the second factor of a flow is checked.
enum Second<'a> {
    /// A TOTP code, its attempt already counted.
    Totp(Box<TotpGuess<'a>>),
    /// A recovery code (counted by `mfa::check`).
    Recovery,
}

/// Checks the second factor and, if right, finishes the flow with its code.
async fn finish(
    state: &AppState,
    client: &Client,
    request: &Continue<'_>,
    flow: challenges::ChallengeRow,
    second: Second<'_>,
    now: DateTime<Utc>,
) -> Result<AuthorizationCode, Error> {
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
    let totp_last_try = match &second {
        Second::Totp(guess) => Some(guess.last_try),
        Second::Recovery => None,
    };
    let right = match second {
        Second::Totp(guess) => {
            let code = code_for.row(&hash, now)?;
            totp(state, &flow, &username, *guess, code, now).await?
        }
        Second::Recovery => {
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
    if let Some(last_try) = totp_last_try {
        // Its try was taken before the guess was checked.
        if last_try {
            challenges::exhaust(&state.pool, flow.id, now).await?;
            return Err(Error::InvalidSession);
        }
        return Err(Error::InsufficientAuthorization {
            auth_session: request.auth_session.to_owned(),
        });
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

/// A TOTP code typed for a flow, its attempt counted and its try taken.
struct TotpGuess<'a> {
    typed: &'a str,
    /// The source whose attempt was counted for it.
    counted: Attempter<'a>,
    policy: Policy,
    admitted: Admitted<'a>,
    /// The flow's last try: a wrong code ends it.
    last_try: bool,
}

/// Spends the step of a right TOTP code, finishes the flow, stores its
/// code and forgives the failures, in one statement. True when the code
/// was right and the flow is finished; false for a wrong or replayed code
/// (counted as a failure).
async fn totp(
    state: &AppState,
    flow: &challenges::ChallengeRow,
    username: &Username,
    guess: TotpGuess<'_>,
    code: NewCode<'_>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let TotpGuess {
        typed,
        counted,
        policy,
        admitted,
        ..
    } = guess;
    let step = match &flow.totp_sealed {
        Some(sealed) => mfa::open(state, flow.user_id, sealed, flow.totp_kek_id.as_deref())?
            .matching_step(typed, now.timestamp()),
        None => None,
    };
    let Some(step) = step else {
        admitted.failed();
        return Ok(false);
    };
    let finish = TotpFinish {
        flow_id: flow.id,
        step,
        code,
        forgive: Forgive {
            username: username.as_str(),
            who: counted,
            policy,
        },
    };
    match challenges::finish_with_totp(&state.pool, finish, now).await {
        Ok(Finished::Done) => Ok(true),
        Ok(Finished::StepUsed) => {
            admitted.failed();
            Ok(false)
        }
        // The code was right, but another request finished the flow.
        Ok(Finished::FlowGone) => {
            lockout::take_back(&state.pool, policy, username, counted).await;
            Err(Error::InvalidSession)
        }
        Err(e) => {
            lockout::take_back(&state.pool, policy, username, counted).await;
            Err(e.into())
        }
    }
}
