//! JWT access tokens in the RFC 9068 profile.

use chrono::{DateTime, Utc};
use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::Signer;

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
}

impl AccessClaims {
    #[allow(clippy::too_many_arguments)]
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
