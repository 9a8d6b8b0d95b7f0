//! The authorization code grant for codes from the challenge endpoint
//! (RFC 6749 §4.1.3 with PKCE, RFC 7636; first-party apps draft §6): no
//! `redirect_uri`, single use, 60 s, bound to the client, the PKCE
//! challenge and the DPoP key of its flow. A code presented again ends the
//! session its first use started (RFC 6749 §4.1.2).

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use subtle::ConstantTimeEq;
use tessera_dpop::Proof;

use super::client::Client;
use super::target::no_common_scope;
use super::{Issuance, Target, TokenResponse, issue};
use crate::domain::opaque::MAX_OPAQUE_LEN;
use crate::domain::{GrantType, RefreshToken, Scope, TokenHash, Username};
use crate::dpop;
use crate::error::Error;
use crate::revocation;
use crate::state::AppState;
use crate::store::challenges::{self, Redeem, Redemption};

const INVALID: &str = "the code is invalid, expired or used, or the code_verifier does not match";

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[tracing::instrument(level = "debug", skip_all, fields(client_id = %client.id()))]
pub async fn grant(
    state: &AppState,
    client: &Client,
    code: SecretString,
    verifier: String,
    target: &Target<'_>,
    proof: Option<&Proof>,
    now: DateTime<Utc>,
) -> Result<TokenResponse, Error> {
    if !valid_verifier(&verifier) {
        return Err(Error::invalid_request(
            "code_verifier must be 43 to 128 unreserved characters (RFC 7636)",
        ));
    }
    let code = code.expose_secret();
    if code.is_empty() || code.len() > MAX_OPAQUE_LEN {
        return Err(Error::InvalidGrant(INVALID));
    }
    // Whatever could refuse the request once the code is spent is checked
    // before: that there is a key to sign with.
    if state.keys.signer(now).is_none() {
        return Err(Error::TemporarilyUnavailable);
    }
    let hash = TokenHash::of(code);
    let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref());
    let jkt = proof.map(|p| p.jkt.as_str());
    let used = proof.map(|p| state.dpop.used(p));
    let refresh_token = client
        .may_use(GrantType::RefreshToken)
        .then(RefreshToken::generate);
    let ttl = target.session_ttl(client, &state.settings.tokens, refresh_token.is_some());
    let first = refresh_token.as_ref().map(RefreshToken::hash);
    let client_scopes = client.scopes.tokens();
    // What a token for the resource could carry: the code is redeemed only
    // if what it stands for has one of these.
    let overlapping = target
        .accepted()
        .map(|accepted| client.scopes.intersection(accepted).tokens());
    if overlapping.as_ref().is_some_and(Vec::is_empty) {
        return Err(no_common_scope());
    }
    let redemption = Redemption {
        code: &hash,
        client_id: client.id(),
        client_scopes: &client_scopes,
        code_challenge: &challenge,
        overlapping: overlapping.as_deref(),
        jkt,
        // As at the password grant: a public client's session is bound to
        // the key; a confidential client's to its secret.
        session_jkt: jkt.filter(|_| !client.is_confidential()),
        session_expires_at: now + chrono::Duration::from_std(ttl).map_err(anyhow::Error::from)?,
        first: first.as_ref(),
        proof: used.as_ref(),
    };
    let mut conn = state.pool.acquire().await?;
    let redeemed = match challenges::redeem_fresh(&mut conn, redemption, now).await? {
        Redeem::Redeemed(redeemed) => redeemed,
        Redeem::ProofReplayed => return Err(Error::InvalidDpopProof(dpop::REPLAYED.into())),
        Redeem::NotFresh => {
            let presented = Presented {
                hash: &hash,
                challenge: &challenge,
                jkt,
                overlapping: overlapping.as_deref(),
            };
            return Err(refused(state, &mut conn, client, presented, now).await);
        }
    };
    let scope = Scope::parse(&redeemed.scope).map_err(|_| Error::InvalidGrant(INVALID))?;
    let scope = target.narrow(&scope)?;
    let mut response = issue(
        state,
        Issuance {
            subject: redeemed.user_id.to_string(),
            session: Some(redeemed.session_id),
            client,
            target,
            scope: &scope,
            refresh_token: refresh_token.as_ref(),
            jkt,
            amr: Some(&redeemed.amr),
            attributes: Some(&redeemed.attributes),
            now,
        },
    )?;
    // As after a password login: the device's credential for its next
    // login, so that a known device gets past the username-wide lock.
    if let Ok(username) = Username::parse(&redeemed.username) {
        response.device_token = Some(state.devices.issue(&username, now));
    }
    Ok(response)
}

/// A code as the token request presents it.
struct Presented<'a> {
    hash: &'a TokenHash,
    /// The S256 challenge of the request's verifier.
    challenge: &'a str,
    jkt: Option<&'a str>,
    /// The scopes a token for the requested resource could carry, if any.
    overlapping: Option<&'a [String]>,
}

/// Why a code was not redeemed, decided under its row lock: a code used
/// before ends the session its first use started (whoever redeemed it
/// first may not be the app).
async fn refused(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    client: &Client,
    presented: Presented<'_>,
    now: DateTime<Utc>,
) -> Error {
    let Presented {
        hash,
        challenge,
        jkt,
        overlapping,
    } = presented;
    let decided = async {
        let mut tx = conn.begin().await?;
        let Some(row) = challenges::lock_code(&mut tx, hash).await? else {
            return Ok(Error::InvalidGrant(INVALID));
        };
        if row.client_id != client.id() {
            return Ok(Error::InvalidGrant(INVALID));
        }
        if row.used_at.is_some() {
            if let Some(session) = row.session_id {
                let ttl = state.settings.tokens.longest_access();
                revocation::end_session(&mut tx, session, "code reuse", now, ttl).await?;
                revocation::commit(tx, &state.pool, &state.denylist, now).await?;
                tracing::warn!(session_id = %session, "authorization code reused; its session revoked");
            }
            return Ok(Error::InvalidGrant(INVALID));
        }
        if row.dpop_jkt.is_some()
            && row.dpop_jkt.as_deref() != jkt
            && row.expires_at > now
            && !row.user_gone
            && bool::from(challenge.as_bytes().ct_eq(row.code_challenge.as_bytes()))
        {
            return Ok(Error::InvalidDpopProof(
                "the code is bound to a DPoP key: send a proof signed by that key".into(),
            ));
        }
        // A good code for a resource that accepts none of its scopes:
        // unspent, it can still be redeemed for another.
        if let Some(overlapping) = overlapping
            && row.expires_at > now
            && !row.user_gone
            && row
                .dpop_jkt
                .as_deref()
                .is_none_or(|bound| Some(bound) == jkt)
            && bool::from(challenge.as_bytes().ct_eq(row.code_challenge.as_bytes()))
            && !row
                .scope
                .split(' ')
                .any(|s| overlapping.iter().any(|o| o == s))
        {
            return Ok(no_common_scope());
        }
        Ok::<Error, Error>(Error::InvalidGrant(INVALID))
    };
    match decided.await {
        Ok(answer) | Err(answer) => answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc7636_example_verifier_gives_its_challenge() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(valid_verifier(verifier));
        assert_eq!(
            URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref()),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(!valid_verifier("short"));
    }
}
