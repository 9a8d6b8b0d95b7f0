//! JWT access tokens in the RFC 9068 profile.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::signing::{Signer, SigningAlgorithm};

/// Where verification finds the public key a token names. Implemented by
/// the key ring; the domain does not know where keys come from.
pub trait VerifyingKeys: Send + Sync {
    /// False until the first key set has been loaded: before that, no
    /// token can be told apart from a forgery.
    fn is_loaded(&self) -> bool;

    /// The key with this id and its algorithm, while it is published at `now`.
    fn verifying_key(
        &self,
        kid: &str,
        now: DateTime<Utc>,
    ) -> Option<(Arc<DecodingKey>, SigningAlgorithm)>;
}

/// Longest token we try to parse.
const MAX_TOKEN_LEN: usize = 8192;

/// How far ahead of our clock `iat`/`nbf` may be: the clock skew allowed
/// between the instances of one deployment.
pub const CLOCK_LEEWAY_SECS: i64 = 30;

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
    /// The session this token came from, if any:
    /// revoking the login revokes the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Never set by us; checked when present so that no token signed with
    /// our key is honoured before its time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The DPoP key the token is bound to (RFC 9449 §6): it is usable only
    /// with a proof signed by that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// How the user authenticated (RFC 8176: `pwd`, and `otp` and `mfa`
    /// after a second factor); none for a client acting as itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The user's attributes that the client picked (`set-claims`): never
    /// a registered claim name (see `attributes`).
    #[serde(flatten)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// The key that signed it (from the JOSE header, once verified; empty
    /// before signing): a key distrusted later ends what it signed.
    #[serde(skip)]
    pub kid: String,
}

/// RFC 7800 confirmation: the SHA-256 JWK thumbprint (RFC 7638) of the key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    pub jkt: String,
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
            nbf: None,
            cnf: None,
            amr: None,
            attributes: serde_json::Map::new(),
            kid: String::new(),
        }
    }

    /// The thumbprint of the key this token is bound to, if it is.
    pub fn jkt(&self) -> Option<&str> {
        self.cnf.as_ref().map(|c| c.jkt.as_str())
    }

    /// Signs with the active key; the header carries `typ: at+jwt` and the kid.
    pub fn sign(&self, signer: &Signer) -> anyhow::Result<String> {
        let mut header = Header::new(signer.algorithm.jwt());
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(signer.kid.clone());
        signer.sign_jws(&header, self)
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
    #[error("signature or issuer does not verify")]
    BadSignature,
    /// Ours, but for another audience (a resource's token at Tessera's own API).
    #[error("issued for another audience")]
    OtherAudience,
    #[error("expired")]
    Expired,
    /// `iat` or `nbf` ahead of our clock, or a lifetime longer than we issue:
    /// whoever signed it, it is not a token we would have made.
    #[error("issued in the future or valid for longer than access tokens live")]
    OutOfBounds,
}

/// Checks access tokens of this issuer: signature, header, issuer,
/// audience and time bounds. One per service, in `AppState`.
#[derive(Clone)]
pub struct AccessTokenVerifier {
    pub keys: Arc<dyn VerifyingKeys>,
    pub issuer: String,
    pub audience: String,
    /// The configured access-token lifetime: no genuine token lives longer.
    pub max_lifetime: Duration,
    /// Tokens whose signature already verified (see `Verified`).
    pub verified: Arc<Verified>,
}

/// Tokens whose signature, header, issuer and audience have verified, by
/// the SHA-256 of their bytes. A resource server introspects the same
/// token on every call it serves; verifying an ES256 signature costs more
/// than the rest of the request. Only what does not depend on time is
/// remembered: expiry and bounds are checked on every use, and so is that
/// the signing key is still published. Bounded: when full, it starts over.
#[derive(Default)]
pub struct Verified {
    /// The claims carry the kid that signed them.
    tokens: std::sync::RwLock<std::collections::HashMap<[u8; 32], AccessClaims>>,
}

/// Most tokens remembered at once (a few MiB at most).
const VERIFIED_CAPACITY: usize = 10_000;

impl Verified {
    fn get(&self, hash: &[u8; 32]) -> Option<AccessClaims> {
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        tokens.get(hash).cloned()
    }

    fn insert(&self, hash: [u8; 32], claims: AccessClaims) {
        let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= VERIFIED_CAPACITY {
            tokens.clear();
        }
        tokens.insert(hash, claims);
    }
}

impl AccessTokenVerifier {
    /// A token of ours for our own audience (Tessera's APIs) that is valid
    /// at `now`: a token for a resource is not accepted here.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, InvalidToken> {
        let claims = self.verify_any_audience(token, now)?;
        if claims.aud != self.audience {
            return Err(InvalidToken::OtherAudience);
        }
        Ok(claims)
    }

    /// A token of ours, for whichever audience, that is valid at `now`
    /// (introspection answers for every resource).
    pub fn verify_any_audience(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, InvalidToken> {
        let claims = self.verify_issued(token, now)?;
        if claims.exp <= now.timestamp() {
            return Err(InvalidToken::Expired);
        }
        Ok(claims)
    }

    /// A token of ours (any audience), also one that expired at most `expired_for` ago:
    /// revoking a stale access token must still end its login, whose
    /// refresh token may live on.
    pub fn verify_revocable(
        &self,
        token: &str,
        now: DateTime<Utc>,
        expired_for: Duration,
    ) -> Result<AccessClaims, InvalidToken> {
        let claims = self.verify_issued(token, now)?;
        let expired_for = i64::try_from(expired_for.as_secs()).unwrap_or(i64::MAX);
        if claims.exp.saturating_add(expired_for) <= now.timestamp() {
            return Err(InvalidToken::Expired);
        }
        Ok(claims)
    }

    /// Signature, header, issuer, audience and the bounds of a token we
    /// could have issued; not expiry.
    fn verify_issued(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, InvalidToken> {
        let claims = self.decode_remembered(token, now)?;
        let now = now.timestamp();
        let max_lifetime = i64::try_from(self.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        if claims.iat > now.saturating_add(CLOCK_LEEWAY_SECS)
            || claims
                .nbf
                .is_some_and(|nbf| nbf > now.saturating_add(CLOCK_LEEWAY_SECS))
            || claims.exp.saturating_sub(claims.iat) > max_lifetime
        {
            return Err(InvalidToken::OutOfBounds);
        }
        Ok(claims)
    }

    /// `decode`, or what it said of these exact bytes before, while the key
    /// that signed them is still published.
    fn decode_remembered(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, InvalidToken> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(InvalidToken::Malformed);
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        if let Some(claims) = self.verified.get(&hash) {
            return match self.keys.verifying_key(&claims.kid, now) {
                Some(_) => Ok(claims),
                None => Err(InvalidToken::UnknownKey),
            };
        }
        let claims = decode(token, self.keys.as_ref(), &self.issuer, now)?;
        self.verified.insert(hash, claims.clone());
        Ok(claims)
    }
}

/// Verifies signature (with the key named by `kid`, and only with that
/// key's algorithm), `typ` and issuer, of a token no longer than
/// `MAX_TOKEN_LEN` (checked by the caller, before hashing it). Audience,
/// expiry and bounds are the caller's; revocation is checked separately
/// (see `revocation::Denylist`). The claims carry the header's `kid`.
fn decode(
    token: &str,
    keys: &dyn VerifyingKeys,
    issuer: &str,
    now: DateTime<Utc>,
) -> Result<AccessClaims, InvalidToken> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| InvalidToken::Malformed)?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(InvalidToken::Malformed);
    }
    let kid = header.kid.ok_or(InvalidToken::Malformed)?;
    let (key, algorithm) = keys
        .verifying_key(&kid, now)
        .ok_or(InvalidToken::UnknownKey)?;
    if header.alg != algorithm.jwt() {
        return Err(InvalidToken::BadSignature);
    }
    let mut validation = Validation::new(algorithm.jwt());
    // Expiry is checked below against our clock, not the system's.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    validation.set_issuer(&[issuer]);
    // Every audience is one we issued for; which one a caller takes is its
    // own check (`verify`).
    validation.validate_aud = false;
    let mut claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
        .map_err(|_| InvalidToken::BadSignature)?
        .claims;
    claims.kid = kid;
    Ok(claims)
}
