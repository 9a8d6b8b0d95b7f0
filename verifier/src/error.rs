//! The kit's one error type.

use std::time::Duration;

/// Why a token was refused, or why the verifier cannot answer yet.
///
/// `InvalidToken` and `MissingToken` are the caller's fault (401),
/// `InsufficientScope` a permission problem (403); the `*NotLoaded` and
/// `RevocationsStale` variants mean the verifier cannot vouch for any token
/// right now (503). `Config` and `Issuer` come from setting up and from the
/// background work, never from a presented token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `Authorization: Bearer` header (RFC 6750 §3.1: no error code).
    #[error("a bearer token is required")]
    MissingToken,
    #[error("the access token is not valid: {0}")]
    InvalidToken(Invalid),
    /// A valid token without the scope this call needs.
    #[error("the access token lacks the scope `{0}`")]
    InsufficientScope(String),
    /// No JWK Set has been fetched yet (the issuer was unreachable so far).
    #[error("the issuer's signing keys are not loaded yet")]
    KeysNotLoaded,
    /// The revocation feed has not been read in full yet.
    #[error("the revocation list is not loaded yet")]
    RevocationsNotLoaded,
    /// Nothing has been heard from the revocation feed or stream for longer
    /// than `max_staleness`: a token revoked meanwhile would pass, so no
    /// token is vouched for (unless `fail_open_when_stale` is set).
    #[error("the revocation list is {behind:?} old, more than max_staleness allows")]
    RevocationsStale { behind: Duration },
    #[error("configuration: {0}")]
    Config(String),
    /// Talking to the issuer failed (discovery, keys, token, feed).
    #[error("issuer: {0}")]
    Issuer(String),
}

/// What is wrong with a presented token. Kept for logs and tests; responses
/// say only `invalid_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("not a JWT with the claims RFC 9068 requires")]
    Malformed,
    #[error("typ is not at+jwt")]
    WrongType,
    #[error("signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("alg differs from the signing key's algorithm")]
    WrongAlgorithm,
    #[error("signature does not verify")]
    BadSignature,
    #[error("iss is not the configured issuer")]
    WrongIssuer,
    #[error("aud does not include the configured audience")]
    WrongAudience,
    #[error("expired")]
    Expired,
    #[error("nbf is in the future")]
    NotYetValid,
    #[error("iat is in the future")]
    IssuedInFuture,
    #[error("exp - iat exceeds max_token_lifetime")]
    TooLongLived,
    #[error("revoked")]
    Revoked,
}

impl From<Invalid> for Error {
    fn from(reason: Invalid) -> Self {
        Error::InvalidToken(reason)
    }
}

impl Error {
    /// True for the errors that mean "try again later" (503), not "this
    /// token is bad".
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::KeysNotLoaded | Error::RevocationsNotLoaded | Error::RevocationsStale { .. }
        )
    }
}
