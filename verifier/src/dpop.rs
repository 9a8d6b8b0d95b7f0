//! DPoP-bound tokens at a resource server (RFC 9449 §7): the request's
//! scheme, its one proof, the token's binding to the proof's key, the
//! server nonce and the replay cache. The proof checks themselves are
//! `tessera_dpop`'s, the issuer's own.

use std::time::Duration;

use tessera_dpop::{Expected, Nonces, Proof, ReplayCache, ReplayRefused};
use url::Url;

use crate::config::{Config, parse_base, secs};
use crate::{Claims, Error, Invalid, ProofInvalid};

/// Keeps the resource server's nonces apart from any other use of the
/// secret.
const NONCE_PURPOSE: &[u8] = b"tessera-verifier DPoP-Nonce";

/// What a request presents, for [`Verifier::verify_request`](crate::Verifier::verify_request):
/// its headers as received and the target the proof must name.
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    /// The `Authorization` header: `Bearer <token>` or `DPoP <token>`
    /// (scheme case-insensitive).
    pub authorization: Option<&'a str>,
    /// Every `DPoP` header of the request (exactly one is accepted with the
    /// DPoP scheme; none is looked at with `Bearer`).
    pub dpop: &'a [&'a str],
    /// The request method, as sent (`GET`).
    pub method: &'a str,
    /// The request path (`/orders/7`); a query, if included, is ignored.
    /// `htu` must be the configured `external_url` followed by it.
    pub path: &'a str,
}

/// Without the token or the proofs: whoever logs a request must not log
/// what would let anyone replay it.
impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self
            .authorization
            .and_then(|a| a.split_once(' '))
            .map(|(scheme, _)| scheme);
        f.debug_struct("Presented")
            .field("scheme", &scheme)
            .field("dpop_headers", &self.dpop.len())
            .field("method", &self.method)
            .field("path", &self.path)
            .finish()
    }
}

/// How the token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    Dpop,
}

/// The scheme and token of an `Authorization` header; anything else is
/// no token at all (RFC 6750 §3.1: no error code).
pub(crate) fn authorization(value: Option<&str>) -> Result<(Scheme, &str), Error> {
    let (scheme, token) = value
        .and_then(|v| v.split_once(' '))
        .ok_or(Error::MissingToken)?;
    let token = token.trim();
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(Error::MissingToken);
    };
    if token.is_empty() {
        return Err(Error::MissingToken);
    }
    Ok((scheme, token))
}

/// The DPoP settings and state of one verifier.
pub(crate) struct Dpop {
    /// The base URL without its trailing slash, to put request paths after.
    base: Option<String>,
    required: bool,
    window: i64,
    replay: ReplayCache,
    nonces: Option<Nonces>,
}

impl Dpop {
    pub(crate) fn new(config: &Config) -> Result<Dpop, Error> {
        let base = match &config.external_url {
            Some(base) => Some(parse_base(base)?.as_str().trim_end_matches('/').to_owned()),
            None => None,
        };
        Ok(Dpop {
            base,
            required: config.require_dpop,
            window: secs(config.dpop_window),
            replay: ReplayCache::new(config.dpop_replay_capacity),
            nonces: config.dpop_nonce.as_ref().map(|n| {
                Nonces::derive(
                    &n.secret,
                    NONCE_PURPOSE,
                    n.lifetime.max(Duration::from_secs(1)).as_secs(),
                )
            }),
        })
    }

    /// Bearer tokens are refused outright where DPoP is required.
    pub(crate) fn bearer_allowed(&self) -> Result<(), Error> {
        if self.required {
            return Err(Invalid::BearerNotAccepted.into());
        }
        Ok(())
    }

    /// The proof of a DPoP presentation, checked against the request and
    /// the token (§4.3, `ath` of §7.1). Pure: nothing is recorded, so the
    /// kid-miss path may check it again.
    pub(crate) fn check_proof(
        &self,
        presented: &Presented<'_>,
        token: &str,
        now: i64,
    ) -> Result<Proof, Error> {
        let proof = match presented.dpop {
            [one] => *one,
            [] => return Err(Error::InvalidDpopProof(ProofInvalid::Missing)),
            _ => return Err(Error::InvalidDpopProof(ProofInvalid::Multiple)),
        };
        let Some(base) = &self.base else {
            return Err(Error::Config(
                "a DPoP token was presented but external_url is not set, so its proof cannot be checked"
                    .into(),
            ));
        };
        // The path only: the query and fragment are not part of `htu`.
        let path = presented.path.split(['?', '#']).next().unwrap_or_default();
        let url = Url::parse(&format!("{base}{path}")).map_err(|_| {
            Error::InvalidDpopProof(ProofInvalid::Refused(tessera_dpop::Refused::Url))
        })?;
        let expected = Expected {
            method: presented.method,
            url: &url,
            now,
            window: self.window,
            access_token: Some(token),
        };
        tessera_dpop::check(proof, &expected)
            .map_err(|why| Error::InvalidDpopProof(ProofInvalid::Refused(why)))
    }

    /// After the token verified: it is bound to the proof's key, the proof
    /// carries a current nonce (if required), and it is its first use.
    /// The replay cache comes last, so only proofs for a valid token bound
    /// to their key take room in it.
    pub(crate) fn accept(&self, proof: &Proof, claims: &Claims, now: i64) -> Result<(), Error> {
        match claims.dpop_jkt() {
            None => return Err(Invalid::NotBound.into()),
            Some(jkt) if jkt != proof.jkt => return Err(Invalid::ProofKeyMismatch.into()),
            Some(_) => {}
        }
        if let Some(nonces) = &self.nonces
            && !proof
                .nonce
                .as_deref()
                .is_some_and(|n| nonces.accepts(n, now))
        {
            return Err(Error::UseDpopNonce(nonces.issue(now)));
        }
        let until = proof.iat.saturating_add(self.window);
        self.replay
            .first_use(&proof.jkt, &proof.jti, until, now)
            .map_err(|e| match e {
                ReplayRefused::Replayed => Error::InvalidDpopProof(ProofInvalid::Replayed),
                ReplayRefused::Full | ReplayRefused::OwnerFull => Error::DpopReplayCacheFull,
            })
    }

    /// Where DPoP is required, a refusal of the presentation or the token
    /// offers only the DPoP challenge; the kit's other errors say so
    /// themselves or are not about the token.
    pub(crate) fn answer(&self, error: Error) -> Error {
        match error {
            Error::MissingToken
            | Error::InvalidToken(_)
            | Error::InsufficientScope(_)
            | Error::InsufficientUserAuthentication
                if self.required =>
            {
                Error::DpopRequired(Box::new(error))
            }
            other => other,
        }
    }
}
