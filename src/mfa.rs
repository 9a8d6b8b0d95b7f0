//! The second factor: TOTP (RFC 6238) and recovery codes. Enrollment by
//! the user, and the checks the challenge flow makes. Every code a person
//! types, here or at login, goes through `attempt`: it is counted in the
//! per-username lockout exactly like a password, so six digits cannot be
//! guessed by volume, whether by a thief of the password or of an access
//! token.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::totp::TotpSecret;
use crate::domain::{RecoveryCode, RecoveryKey, TokenHash, Username};
use crate::error::Error;
use crate::keys::sealed;
use crate::state::AppState;
use crate::store::{mfa, users};
use crate::throttle::lockout::{self, Contender};

/// Recovery codes per set.
const RECOVERY_CODES: usize = 10;

/// How recent the login behind the access token must be to turn a second
/// factor on: a token copied later from the phone (refreshed, so fresh
/// itself) must not be enough to plant the thief's own authenticator.
pub const ENROLL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// What a new enrollment shows the user, once.
pub struct Enrollment {
    pub secret: String,
    pub otpauth_uri: String,
}

/// A code a person typed: from the authenticator app, or a recovery code.
pub enum Typed<'a> {
    Totp(&'a str),
    Recovery(&'a str),
}

/// RFC 8176 methods for a login finished with this kind of code.
pub fn methods(typed: &Typed<'_>) -> &'static [&'static str] {
    match typed {
        Typed::Totp(_) => &["pwd", "otp", "mfa"],
        Typed::Recovery(_) => &["pwd", "mfa"],
    }
}

/// Who typed a code, for the lockout.
pub struct Typist {
    pub user_id: Uuid,
    pub username: Username,
    pub address: Option<IpAddr>,
    /// The session of the access token they called with, if any.
    pub session: Option<Uuid>,
}

impl Typist {
    /// The user with this id (from their access token), typing from `address`.
    pub async fn of(
        state: &AppState,
        user_id: Uuid,
        session: Option<Uuid>,
        address: Option<IpAddr>,
    ) -> Result<Typist, Error> {
        let user = users::find_by_id(&mut *state.pool.acquire().await?, user_id)
            .await?
            .ok_or(Error::InvalidToken)?;
        Ok(Typist {
            user_id,
            username: Username::parse(&user.username).map_err(|_| Error::InvalidToken)?,
            address,
            session,
        })
    }

    /// 401 `insufficient_user_authentication` (RFC 9470, with `max_age`)
    /// unless the login behind the token is recent.
    async fn logged_in_recently(&self, state: &AppState, now: DateTime<Utc>) -> Result<(), Error> {
        let max_age = chrono::Duration::from_std(ENROLL_MAX_AGE).map_err(anyhow::Error::from)?;
        let logged_in = match self.session {
            Some(session) => mfa::login_time(&state.pool, session).await?,
            None => None,
        };
        match logged_in {
            Some(at) if now - at <= max_age => Ok(()),
            _ => Err(Error::StaleLogin {
                max_age: ENROLL_MAX_AGE,
            }),
        }
    }
}

/// Starts (or restarts) the user's TOTP enrollment. 409 when it is on.
pub async fn begin(
    state: &AppState,
    who: &Typist,
    now: DateTime<Utc>,
) -> Result<Enrollment, Error> {
    who.logged_in_recently(state, now).await?;
    let user_id = who.user_id;
    let secret = TotpSecret::generate();
    let sealed = state.sealer.seal(&label(user_id), secret.as_bytes())?;
    let kek_id = sealed.kek_id.as_bytes();
    if !mfa::begin_enrollment(&state.pool, user_id, &sealed.bytes, kek_id, now).await? {
        return Err(Error::Conflict(
            "a second factor is already on: turn it off first",
        ));
    }
    let issuer = url::Url::parse(&state.settings.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "tessera".to_owned());
    Ok(Enrollment {
        secret: secret.base32(),
        otpauth_uri: secret.otpauth_uri(&issuer, who.username.as_str()),
    })
}

/// Turns the pending enrollment on with its first code; returns the
/// recovery codes, shown once. A wrong code changes nothing.
pub async fn confirm(
    state: &AppState,
    who: &Typist,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, Error> {
    who.logged_in_recently(state, now).await?;
    let pending = mfa::totp_of(&state.pool, who.user_id)
        .await?
        .filter(|t| !t.confirmed)
        .ok_or(Error::Conflict(
            "no enrollment waits for confirmation: start one with POST /auth/mfa/totp",
        ))?;
    let secret = open(
        state,
        who.user_id,
        &pending.secret_sealed,
        pending.kek_id.as_deref(),
    )?;
    let step = attempt(state, who, now, || async {
        Ok(secret.matching_step(code, now.timestamp()))
    })
    .await?
    .ok_or_else(|| Error::invalid_request("the code is wrong or too old"))?;
    let (codes, hashes) = recovery_codes(state, who.user_id)?;
    let mut tx = state.pool.begin().await?;
    if !mfa::confirm(&mut tx, who.user_id, &pending.secret_sealed, step, now).await? {
        return Err(Error::Conflict("the enrollment changed meanwhile"));
    }
    mfa::replace_recovery_codes(&mut tx, who.user_id, &hashes).await?;
    tx.commit().await?;
    Ok(codes)
}

/// Turns the second factor off, with a current code or a recovery code.
pub async fn turn_off(
    state: &AppState,
    who: &Typist,
    typed: Typed<'_>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if !check(state, who, &typed, now).await? {
        return Err(Error::invalid_request("the code is wrong or was used"));
    }
    let mut tx = state.pool.begin().await?;
    mfa::remove(&mut tx, who.user_id).await?;
    tx.commit().await?;
    Ok(())
}

/// A new set of recovery codes (the old set void), for a current code.
pub async fn new_recovery_codes(
    state: &AppState,
    who: &Typist,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, Error> {
    if !check(state, who, &Typed::Totp(code), now).await? {
        return Err(Error::invalid_request("the code is wrong or was used"));
    }
    let (codes, hashes) = recovery_codes(state, who.user_id)?;
    let mut tx = state.pool.begin().await?;
    mfa::replace_recovery_codes(&mut tx, who.user_id, &hashes).await?;
    tx.commit().await?;
    Ok(codes)
}

/// Whether `typed` is a good code of the user's confirmed second factor,
/// spending it (a TOTP step, or the recovery code) if so. Counted in the
/// lockout either way; a locked username is a 429 without checking.
pub async fn check(
    state: &AppState,
    who: &Typist,
    typed: &Typed<'_>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let found = attempt(state, who, now, || async {
        Ok(match typed {
            Typed::Totp(code) => {
                let Some(totp) = mfa::totp_of(&state.pool, who.user_id)
                    .await?
                    .filter(|t| t.confirmed)
                else {
                    return Ok(None);
                };
                let secret = open(
                    state,
                    who.user_id,
                    &totp.secret_sealed,
                    totp.kek_id.as_deref(),
                )?;
                match secret.matching_step(code, now.timestamp()) {
                    // The step is spent by the update: once, on any instance.
                    Some(step) if mfa::use_step(&state.pool, who.user_id, step).await? => Some(()),
                    _ => None,
                }
            }
            Typed::Recovery(code) => match recovery_key(state)?.hash(who.user_id, code) {
                Some(hash)
                    if mfa::use_recovery_code(&state.pool, who.user_id, &hash, now).await? =>
                {
                    Some(())
                }
                _ => None,
            },
        })
    })
    .await?;
    Ok(found.is_some())
}

/// Runs one guess under the lockout: admitted (or 429), then counted as a
/// failure when `guess` finds nothing, forgiven when it finds something,
/// taken back when the server failed.
async fn attempt<T, F, Fut>(
    state: &AppState,
    who: &Typist,
    now: DateTime<Utc>,
    guess: F,
) -> Result<Option<T>, Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, Error>>,
{
    let contender = Contender::new(None, who.address);
    let policy = lockout::policy(&state.settings.login);
    let admitted = lockout::admit(
        &state.pool,
        &state.addresses,
        policy,
        &who.username,
        &contender,
        None,
        now,
    )
    .await?;
    match guess().await {
        Ok(Some(found)) => {
            lockout::forgive(&state.pool, policy, &who.username, &contender).await?;
            Ok(Some(found))
        }
        Ok(None) => {
            admitted.failed();
            Ok(None)
        }
        Err(e) => {
            if e.is_server_error() {
                lockout::take_back(&state.pool, policy, &who.username, contender.attempter()).await;
            }
            Err(e)
        }
    }
}

/// A new set of recovery codes for the user: as shown (once), and as stored.
fn recovery_codes(state: &AppState, user_id: Uuid) -> Result<(Vec<String>, Vec<TokenHash>), Error> {
    let key = recovery_key(state)?;
    Ok((0..RECOVERY_CODES)
        .map(|_| RecoveryCode::generate())
        .filter_map(|code| {
            let hash = key.hash(user_id, code.expose())?;
            Some((code.expose().to_owned(), hash))
        })
        .unzip())
}

/// The key recovery codes are stored under, once startup has read it.
fn recovery_key(state: &AppState) -> Result<&RecoveryKey, Error> {
    state.recovery.get().ok_or(Error::TemporarilyUnavailable)
}

/// The AAD a user's TOTP secret is sealed with: it opens for that user only.
fn label(user_id: Uuid) -> String {
    sealed::totp_label(user_id)
}

/// A user's TOTP secret, opened with the key-encryption key that sealed it.
pub fn open(
    state: &AppState,
    user_id: Uuid,
    sealed: &[u8],
    kek_id: Option<&[u8]>,
) -> Result<TotpSecret, Error> {
    Ok(TotpSecret::from_bytes(state.sealer.open(
        &label(user_id),
        sealed,
        kek_id,
    )?))
}
