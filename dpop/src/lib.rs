//! DPoP (RFC 9449): sender-constrained tokens.
//!
//! A client holds a key pair and sends, with every token request and every
//! call made with a bound token, a proof: a JWT signed by that key, naming
//! the request (`htm`, `htu`), when it was made (`iat`), a unique `jti`,
//! and with a token, the token's hash (`ath`). A token bound to the key
//! carries its RFC 7638 thumbprint (`cnf.jkt`); a copy of the token is
//! useless without the private key.
//!
//! - [`check`]: the checks of §4.3 (and `ath` of §7), pure: the caller
//!   supplies the request, the clock and the window.
//! - [`ReplayCache`]: each proof accepted once while its `iat` is in the
//!   window, in bounded memory.
//! - [`Nonces`]: stateless server nonces (§8, §9): an HMAC over the time of
//!   issue, so every instance sharing the secret accepts every other's.
//! - [`ProofKey`]: a key pair that makes proofs (for clients, tests and
//!   benchmarks).
//!
//! Used by the issuer (token endpoint, admin API) and by the verifier kit
//! (resource servers), so both apply the same rules.

mod key;
mod nonce;
mod proof;
mod replay;

pub use key::ProofKey;
pub use nonce::Nonces;
pub use proof::{ALGORITHMS, Expected, MAX_PROOF_LEN, Proof, Refused, check, token_hash};
pub use replay::{ReplayCache, ReplayRefused};
