//! JWT access tokens in the RFC 9068 profile.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{KeyRing, Signer};

/// Longest token we try to parse.
const MAX_TOKEN_LEN: usize = 8192;

/// RFC 9068 §2.2 claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    /// The user id, or the client id for client_credentials.
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The login (refresh-token family) this token came from, if any:
    /// revoking the login revokes the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl AccessClaims {
    pub fn new(
        issuer: &str,
        audience: &str,
        subject: String,
        client_id: &str,
        scope: String,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> AccessClaims {
        let iat = now.timestamp();
        AccessClaims {
            iss: issuer.to_owned(),
            sub: subject,
            aud: audience.to_owned(),
            client_id: client_id.to_owned(),
            scope,
            iat,
            exp: iat.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: Uuid::new_v4().to_string(),
            sid: None,
        }
    }

    /// Signs with the active key; the header carries `typ: at+jwt` and the kid.
    pub fn sign(&self, signer: &Signer) -> anyhow::Result<String> {
        let mut header = Header::new(signer.algorithm.jwt());
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(signer.kid.clone());
        Ok(jsonwebtoken::encode(&header, self, &signer.key)?)
    }
}

/// Why a presented access token is not valid. Callers outside this module
/// only ever say "invalid": the reason is for logs and tests.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidToken {
    #[error("not a JWT access token")]
    Malformed,
    #[error("signed by a key we do not publish")]
    UnknownKey,
    #[error("signature, issuer or audience does not verify")]
    BadSignature,
    #[error("expired")]
    Expired,
}

/// Verifies signature (with the key named by `kid`, and only with that
/// key's algorithm), `typ`, issuer, audience and expiry at `now`.
/// Revocation is checked separately (see `revocation::Denylist`).
pub fn verify(
    token: &str,
    keys: &KeyRing,
    issuer: &str,
    audience: &str,
    now: DateTime<Utc>,
) -> Result<AccessClaims, InvalidToken> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(InvalidToken::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| InvalidToken::Malformed)?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(InvalidToken::Malformed);
    }
    let kid = header.kid.ok_or(InvalidToken::Malformed)?;
    let (key, algorithm) = keys.verifier(&kid, now).ok_or(InvalidToken::UnknownKey)?;
    if header.alg != algorithm.jwt() {
        return Err(InvalidToken::BadSignature);
    }
    let mut validation = Validation::new(algorithm.jwt());
    // Expiry is checked below against our clock, not the system's.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
        .map_err(|_| InvalidToken::BadSignature)?
        .claims;
    if claims.exp <= now.timestamp() {
        return Err(InvalidToken::Expired);
    }
    Ok(claims)
}
