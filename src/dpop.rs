//! DPoP (RFC 9449) at the issuer: which proof each request must carry, and
//! what a proof that passed is worth. The checks themselves are
//! `tessera_dpop`'s, shared with the verifier kit.
//!
//! Replay (§11.1), by who could fill the record of used proofs:
//! - password and refresh: in Postgres, in the statement that starts or
//!   rotates the session (no extra round trip), so a proof is refused on
//!   every instance. Not in memory: anyone may send those requests (a
//!   public client's id is public), and a flood of made-up proofs must not
//!   fill a cache that every client shares.
//! - proofs sent with a bound access token: in Postgres too, once the call
//!   is known to be allowed (the proof does not cover the body, so a
//!   captured admin call must not be replayable elsewhere with another).
//! - client_credentials: in this instance's memory (bounded; when full,
//!   proofs are refused with a 503, never let through), once the client
//!   has proved its secret. It writes nothing to Postgres (that is what
//!   makes it fast): across instances a replayed proof can mint one more
//!   token, bound to the same key, for a request that also carried the
//!   client's secret (see docs/dpop.md).

use chrono::{DateTime, Utc};
use tessera_dpop::{Expected, Nonces, Proof, ReplayCache, ReplayRefused};
use url::Url;

use crate::config::Settings;
use crate::domain::Client;
use crate::domain::access_token::CLOCK_LEEWAY_SECS;
use crate::error::Error;
use crate::store::proofs::{self, Used};

/// What the nonce key is derived for, so the secret it comes from is never
/// used for two purposes with one key.
const NONCE_PURPOSE: &[u8] = b"tessera dpop nonce v1";

/// The `DPoP` request headers, as sent.
pub enum Sent<'a> {
    None,
    One(&'a str),
    /// More than one: refused (§4.3 point 1).
    Many,
}

pub struct Dpop {
    window: i64,
    require_nonce: bool,
    /// One per configured key-encryption key: the first issues, any accepts
    /// (a nonce from an instance that already has a new key-encryption key
    /// holds on one that has it as a previous key).
    nonces: Vec<Nonces>,
    replay: ReplayCache,
    /// Entries of `replay` one client may hold.
    per_client: usize,
    /// The public listener's base (the issuer) and the admin listener's.
    public: String,
    admin: String,
}

/// Where a proof is sent: the token endpoint, or an endpoint that takes an
/// access token (§7).
pub enum Target<'a> {
    /// `POST` to an endpoint of the public listener that issues (the
    /// token endpoint, the challenge endpoint).
    Issuing(&'static str),
    Resource {
        method: &'a str,
        path: &'a str,
        access_token: &'a str,
    },
}

impl Dpop {
    /// `admin_url` is the admin listener's base URL as its callers address
    /// it (`dpop.admin_url`, or the bound address). `secrets` are the
    /// key-encryption keys, the current one first: every instance derives
    /// the same nonce keys from them.
    pub fn new(settings: &Settings, admin_url: &str, secrets: &[&[u8]]) -> Dpop {
        let dpop = &settings.dpop;
        Dpop {
            window: i64::try_from(dpop.window.as_secs()).unwrap_or(i64::MAX),
            require_nonce: dpop.require_nonce,
            nonces: secrets
                .iter()
                .map(|secret| Nonces::derive(secret, NONCE_PURPOSE, dpop.nonce_lifetime.as_secs()))
                .collect(),
            replay: ReplayCache::new(dpop.replay_capacity),
            per_client: dpop.replay_capacity_per_client,
            public: settings.issuer.trim_end_matches('/').to_owned(),
            admin: admin_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The proof of a token request, checked, or `None` when there is none
    /// and the client may go without. Whether it was used before is the
    /// grant's to check (`remember`, or the grant's statement).
    pub fn at_token_endpoint(
        &self,
        sent: Sent<'_>,
        client: &Client,
        now: DateTime<Utc>,
    ) -> Result<Option<Proof>, Error> {
        let proof = match sent {
            Sent::None if client.dpop_bound_access_tokens => {
                return Err(Error::InvalidDpopProof(
                    "this client must send a DPoP proof with every token request".into(),
                ));
            }
            Sent::None => return Ok(None),
            Sent::Many => return Err(Error::InvalidDpopProof(ONE_HEADER.into())),
            Sent::One(proof) => proof,
        };
        self.issuing(proof, "/auth/token", now).map(Some)
    }

    /// The proof of a request to the challenge endpoint, if any: a flow
    /// started with one is bound to its key. Not recorded: a replayed
    /// password request is one more password attempt, and a replayed code
    /// finds its step, or its flow, already spent.
    pub fn at_challenge(&self, sent: Sent<'_>, now: DateTime<Utc>) -> Result<Option<Proof>, Error> {
        match sent {
            Sent::None => Ok(None),
            Sent::Many => Err(Error::InvalidDpopProof(ONE_HEADER.into())),
            Sent::One(proof) => self.issuing(proof, "/auth/challenge", now).map(Some),
        }
    }

    /// A proof sent to an endpoint that issues, with the nonce rule.
    fn issuing(&self, proof: &str, path: &'static str, now: DateTime<Utc>) -> Result<Proof, Error> {
        let proof = self
            .check(proof, Target::Issuing(path), now)
            .map_err(|refused| Error::InvalidDpopProof(refused.to_string()))?;
        if self.require_nonce
            && !proof
                .nonce
                .as_deref()
                .is_some_and(|n| self.nonces.iter().any(|k| k.accepts(n, now.timestamp())))
        {
            return Err(Error::UseDpopNonce(self.nonce(now)));
        }
        Ok(proof)
    }

    /// The proof sent with a DPoP-bound access token (`jkt`) to an endpoint
    /// that takes one: it must be by the token's key and name the token.
    /// Whether it was used before is `record_everywhere`'s, once the call
    /// is known to be allowed.
    pub fn with_token(
        &self,
        sent: Sent<'_>,
        target: Target<'_>,
        jkt: &str,
        now: DateTime<Utc>,
    ) -> Result<Proof, Error> {
        let proof = match sent {
            Sent::One(proof) => proof,
            Sent::None => return Err(Error::ProofRefused("a DPoP proof is required".into())),
            Sent::Many => return Err(Error::ProofRefused(ONE_HEADER.into())),
        };
        let proof = self
            .check(proof, target, now)
            .map_err(|refused| Error::ProofRefused(refused.to_string()))?;
        if proof.jkt != jkt {
            return Err(Error::ProofRefused(
                "the DPoP proof is not signed by the key the token is bound to".into(),
            ));
        }
        Ok(proof)
    }

    /// Records a proof sent with a bound token in Postgres; refused if any
    /// instance recorded it before. One short insert: the calls that take
    /// a token (admin API, feed, introspection) are few.
    pub async fn record_everywhere(&self, pool: &sqlx::PgPool, proof: &Proof) -> Result<(), Error> {
        let used = self.used(proof);
        let mut conn = pool.acquire().await?;
        if proofs::record(&mut conn, &used).await? {
            Ok(())
        } else {
            Err(Error::ProofRefused(REPLAYED.into()))
        }
    }

    /// The proof sent to `POST /auth/revoke` with `token`, if any: what a
    /// public client shows to revoke a DPoP-bound access token (its session
    /// ends with it, so a copy of the token alone must not do that).
    pub fn at_revocation(
        &self,
        sent: Sent<'_>,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Proof>, Error> {
        let proof = match sent {
            Sent::None => return Ok(None),
            Sent::Many => return Err(Error::InvalidDpopProof(ONE_HEADER.into())),
            Sent::One(proof) => proof,
        };
        let target = Target::Resource {
            method: "POST",
            path: "/auth/revoke",
            access_token: token,
        };
        self.check(proof, target, now)
            .map(Some)
            .map_err(|refused| Error::InvalidDpopProof(refused.to_string()))
    }

    /// A fresh nonce for a successful response, when nonces are required:
    /// the client keeps the newest (§8.2).
    pub fn next_nonce(&self, now: DateTime<Utc>) -> Option<String> {
        self.require_nonce.then(|| self.nonce(now))
    }

    /// A nonce by the current key-encryption key's nonce key.
    fn nonce(&self, now: DateTime<Utc>) -> String {
        self.nonces
            .first()
            .map(|k| k.issue(now.timestamp()))
            .unwrap_or_default()
    }

    /// A proof as Postgres records it: its identity, kept until its `iat`
    /// is out of the window anyway, plus the skew allowed between
    /// instances (another instance's clock may still accept this `iat`
    /// when this one prunes the row).
    pub fn used(&self, proof: &Proof) -> Used {
        let until = proof
            .iat
            .saturating_add(self.window)
            .saturating_add(CLOCK_LEEWAY_SECS);
        Used {
            key: proof.identity().to_vec(),
            until: DateTime::from_timestamp(until, 0).unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// Proofs remembered on this instance.
    pub fn remembered(&self) -> usize {
        self.replay.len()
    }

    fn check(
        &self,
        proof: &str,
        target: Target<'_>,
        now: DateTime<Utc>,
    ) -> Result<Proof, tessera_dpop::Refused> {
        let (method, url, access_token) = match target {
            Target::Issuing(path) => ("POST", format!("{}{path}", self.public), None),
            Target::Resource {
                method,
                path,
                access_token,
            } => {
                let base = if path.starts_with("/admin/") {
                    &self.admin
                } else {
                    &self.public
                };
                (method, format!("{base}{path}"), Some(access_token))
            }
        };
        let url = Url::parse(&url).map_err(|_| tessera_dpop::Refused::Url)?;
        tessera_dpop::check(
            proof,
            &Expected {
                method,
                url: &url,
                now: now.timestamp(),
                window: self.window,
                access_token,
            },
        )
    }

    /// Records a proof of `client_id` in this instance's memory; refused if
    /// it was there. One client holds at most `dpop.replay_capacity_per_client`
    /// entries, so no client can fill the cache for the others.
    pub fn remember(
        &self,
        client_id: &str,
        proof: &Proof,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let until = proof.iat.saturating_add(self.window);
        match self.replay.first_use_by(
            client_id,
            self.per_client,
            &proof.jkt,
            &proof.jti,
            until,
            now.timestamp(),
        ) {
            Ok(()) => Ok(()),
            Err(ReplayRefused::Replayed) => Err(Error::InvalidDpopProof(REPLAYED.into())),
            Err(ReplayRefused::Full | ReplayRefused::OwnerFull) => {
                metrics::counter!(crate::telemetry::metrics::DPOP_REPLAY_FULL).increment(1);
                Err(Error::TemporarilyUnavailable)
            }
        }
    }
}

const ONE_HEADER: &str = "send exactly one DPoP header";
pub const REPLAYED: &str = "the DPoP proof was already used; make a new one for every request";
