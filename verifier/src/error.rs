//! The kit's one error type.

use std::time::Duration;

/// Why a token was refused, or why the verifier cannot answer yet.
///
/// `InvalidToken`, `MissingToken`, `InvalidDpopProof` and `UseDpopNonce`
/// are the caller's fault (401), `InsufficientScope` a permission problem
/// (403); the `*NotLoaded`, `RevocationsStale` and `DpopReplayCacheFull`
/// variants mean the verifier cannot vouch for any token right now (503).
/// `Config` and `Issuer` come from setting up and from the background work,
/// never from a presented token. With [`Config::require_dpop`](crate::Config::require_dpop),
/// refusals of a token come wrapped in `DpopRequired` ([`Error::reason`]
/// unwraps it).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `Authorization: Bearer` or `DPoP` header (RFC 6750 §3.1: no
    /// error code).
    #[error("an access token is required")]
    MissingToken,
    #[error("the access token is not valid: {0}")]
    InvalidToken(Invalid),
    /// A valid token without the scope this call needs.
    #[error("the access token lacks the scope `{0}`")]
    InsufficientScope(String),
    /// A valid token whose login did not use a second factor, for a call
    /// that needs one (RFC 9470).
    #[error("the login of this access token did not use a second factor")]
    InsufficientUserAuthentication,
    /// The request's DPoP proof is missing, duplicated, fails a check of
    /// RFC 9449 §4.3 (or `ath`, §7.1) or was used before.
    #[error("the DPoP proof is not valid: {0}")]
    InvalidDpopProof(ProofInvalid),
    /// The service requires a server nonce in proofs and this one had none
    /// or a stale one (RFC 9449 §9). Carries the fresh nonce to send back
    /// in `DPoP-Nonce`.
    #[error("a DPoP proof with the server's nonce is required")]
    UseDpopNonce(String),
    /// The replay cache holds `dpop_replay_capacity` proofs still in their
    /// window: this one could not be remembered, so is not accepted.
    #[error("too many DPoP proofs in flight; retry shortly")]
    DpopReplayCacheFull,
    /// A refusal at a service that requires DPoP: answered with the `DPoP`
    /// challenge only, never `Bearer`.
    #[error(transparent)]
    DpopRequired(Box<Error>),
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
    /// Issued for another resource (RFC 8707): `aud` is not the resource
    /// URI the kit is configured with ([`Config::new`](crate::Config::new)).
    #[error("issued for another resource: aud is not this service's resource URI")]
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
    /// Signed with a key the issuer has distrusted (a `distrusted_key`
    /// entry of the revocation feed or stream): refused for good, even
    /// while a cached JWK Set still holds the key.
    #[error("signed with a key the issuer has distrusted")]
    DistrustedKey,
    /// `cnf` binds the token to a key, but it was presented as a bearer
    /// token (RFC 9449 §7.2): a copy of a bound token is worth nothing.
    #[error("bound to a DPoP key but presented as a bearer token")]
    BoundTokenAsBearer,
    /// A bearer presentation to a service that requires DPoP.
    #[error("presented as a bearer token where DPoP is required")]
    BearerNotAccepted,
    /// Presented with the DPoP scheme but not bound to any DPoP key.
    #[error("presented with DPoP but carries no cnf.jkt")]
    NotBound,
    /// Bound to another key than the one the proof was signed with.
    #[error("cnf.jkt is not the thumbprint of the DPoP proof's key")]
    ProofKeyMismatch,
}

/// What is wrong with a request's DPoP proof. The messages describe the
/// rule, never the proof: they are sent as `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofInvalid {
    #[error("a DPoP header is required with the DPoP scheme")]
    Missing,
    #[error("exactly one DPoP header is allowed")]
    Multiple,
    #[error("{0}")]
    Refused(tessera_dpop::Refused),
    #[error("the DPoP proof was already used")]
    Replayed,
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
            self.reason(),
            Error::KeysNotLoaded
                | Error::RevocationsNotLoaded
                | Error::RevocationsStale { .. }
                | Error::DpopReplayCacheFull
        )
    }

    /// The error itself, out of a `DpopRequired` wrapper: match on this.
    pub fn reason(&self) -> &Error {
        let mut error = self;
        while let Error::DpopRequired(inner) = error {
            error = inner;
        }
        error
    }
}
