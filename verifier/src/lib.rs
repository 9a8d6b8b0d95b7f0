//! Verify Tessera access tokens offline, and
//! honour their revocation.
//!
//! - **Keys:** discovery (`<issuer>/.well-known/oauth-authorization-server`)
//!   gives `jwks_uri`; the JWK Set is cached for its `Cache-Control: max-age`
//!   and kept while the issuer is down; a token naming an unknown `kid`
//!   triggers one refetch, at most one per `refetch_interval`. A key the
//!   issuer distrusts (a `distrusted_key` entry of the feed or stream) is
//!   refused from then on, for good: its tokens are
//!   [`Invalid::DistrustedKey`] even while the cached set still holds it,
//!   and it is left out of every set fetched later.
//! - **Claims (RFC 9068):** `typ` `at+jwt`; the algorithm is the key's,
//!   never the token's alone; `iss`; `aud` is this service's resource URI
//!   (RFC 8707, required by [`Config::new`]: a token issued for another
//!   resource is refused, [`Invalid::WrongAudience`]); `exp`/`nbf`/`iat`
//!   with a small leeway; `exp - iat` no longer than the issuer's published
//!   maximum access-token lifetime (`tessera_max_access_token_lifetime` in
//!   its metadata) unless `max_token_lifetime` is set; `sub`, `client_id`,
//!   `jti` required; scopes as a set ([`Claims::require_scope`]); the
//!   user's attributes, typed ([`Claims::get`]:
//!   `claims.get::<Vec<String>>("roles")`).
//! - **DPoP (RFC 9449 §7):** `Authorization: DPoP <token>` with exactly
//!   one `DPoP` proof, checked as the issuer checks it (`tessera-dpop`):
//!   `typ`, algorithm, public `jwk`, signature, `htm`, `htu` (the
//!   configured `external_url` + path), `iat` window, `ath`, a replay cache
//!   of `jti`s, and an optional server nonce; the token's `cnf.jkt` must be
//!   the proof key's thumbprint. A bound token presented as a bearer token
//!   is refused; `require_dpop` refuses bearer presentations altogether
//!   ([`Verifier::verify_request`]).
//! - **Revocations:** the paged feed is read from 0, then the stream is
//!   followed (the feed is polled while the stream is unavailable); tokens
//!   are refused by `jti`, by login (`sid`) and by user not-before
//!   (`iat < not_before`), exactly as Tessera refuses them. When nothing has
//!   been heard from the issuer for `max_staleness`, verification fails with
//!   [`Error::RevocationsStale`].
//! - **actix-web:** [`VerifiedToken`] extracts the claims from either
//!   scheme and answers RFC 6750 and RFC 9449 errors.

#[cfg(feature = "actix")]
mod actix;
mod claims;
mod config;
mod denylist;
#[cfg(test)]
mod distrust_tests;
mod dpop;
#[cfg(test)]
mod dpop_tests;
mod error;
mod inner;
mod issuer;
mod keys;
#[cfg(test)]
mod resource_tests;
mod sse;
mod sync;
#[cfg(test)]
mod testing;
mod verifier;

#[cfg(feature = "actix")]
pub use actix::{VerifiedToken, VerifyFuture};
pub use claims::{Audience, Claims, Confirmation, Scopes};
pub use config::{Config, DEFAULT_MAX_TOKEN_LIFETIME};
pub use dpop::Presented;
pub use error::{Error, Invalid, ProofInvalid};
pub use verifier::{Health, Stats, Verifier};
