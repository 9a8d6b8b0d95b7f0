//! The one place errors become HTTP responses.
//!
//! Every error leaves as the RFC 6749 §5.2 shape `{"error", "error_description"}`
//! with `Cache-Control: no-store`, 404 and 405 included. Descriptions are
//! fixed strings written here or in the domain, never echoes of the request,
//! so no secret can leak through them. Internal errors are logged and
//! answered with a bare `server_error`.
//!
//! Which error type each layer uses:
//! - `domain`: one small error per type (`InvalidUsername`, `InvalidScope`,
//!   `InvalidPassword`, ...), saying what is wrong with a value; `hashing`:
//!   `HashError` (busy or broken);
//! - `store`: `sqlx::Error`, or `anyhow` where rows are parsed;
//! - `grants`, `revocation`, `http`: this `Error`, built from the others
//!   with the `From` impls below (database faults become a 503 whichever way
//!   they arrive);
//! - `cli`, `startup`: `anyhow`, printed as one line with its causes.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed request: missing, repeated or unparsable parameters.
    #[error("{0}")]
    InvalidRequest(String),
    /// The body exceeded `http.max_body_bytes`.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// The body did not arrive within `http.body_timeout`; the connection
    /// is closed, as the rest of the body may still be on its way.
    #[error("request body was not received in time")]
    BodyTimeout,
    /// A chunked body: every body must come with a `Content-Length`. A 400
    /// rather than 411, which clients and API tooling rarely expect.
    #[error("send the request body with a Content-Length (chunked bodies are not accepted)")]
    ChunkedBody,
    /// Unknown client, wrong or missing secret, disabled client.
    #[error("client authentication failed")]
    InvalidClient,
    /// Bad credentials, or a refresh token that is unknown, spent, expired or revoked.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// Password logins refused without checking the password: the username
    /// is locked, or the client's address has used up its failed logins.
    #[error("too many failed attempts; retry later")]
    TooManyAttempts { retry_after: std::time::Duration },
    /// An authenticated client doing something it is not registered for.
    #[error("{0}")]
    UnauthorizedClient(&'static str),
    #[error("grant_type is not supported")]
    UnsupportedGrantType,
    #[error("{0}")]
    InvalidScope(&'static str),
    /// A `resource` that is not registered, not allowed to the client, or
    /// repeated (RFC 8707 §2).
    #[error("{0}")]
    InvalidTarget(&'static str),
    /// A token request's DPoP proof is missing (for a client that must
    /// send one), malformed, replayed or not for this request (RFC 9449 §5).
    #[error("{0}")]
    InvalidDpopProof(String),
    /// The token request's proof lacks a current nonce of ours: here is one
    /// (RFC 9449 §8).
    #[error(
        "the server requires a DPoP nonce: make a new proof with the nonce in the DPoP-Nonce header"
    )]
    UseDpopNonce(String),
    /// An endpoint that takes an access token refused the DPoP proof sent
    /// with a bound token (RFC 9449 §7.1).
    #[error("{0}")]
    ProofRefused(String),
    /// The password was right; a second factor is needed to go on, at the
    /// challenge endpoint with this `auth_session` (first-party apps draft §5.4).
    #[error(
        "a second factor is required: send the code from the authenticator app with this auth_session"
    )]
    InsufficientAuthorization { auth_session: String },
    /// The login behind the access token is older than this call allows
    /// (RFC 9470): log in again.
    #[error("log in again: this needs a login from the last {} minutes", max_age.as_secs() / 60)]
    StaleLogin { max_age: std::time::Duration },
    /// The `auth_session` is unknown, expired, finished or exhausted.
    #[error("auth_session is unknown, expired or used up: start the login again")]
    InvalidSession,
    /// No bearer token at all (RFC 6750 §3.1: no error code in the challenge).
    #[error("a bearer token is required")]
    MissingToken,
    /// Malformed, expired, foreign or revoked bearer token.
    #[error("a valid bearer token is required")]
    InvalidToken,
    /// A valid bearer token without the scope this endpoint needs.
    #[error("the token lacks the required scope")]
    InsufficientScope,
    #[error("{0}")]
    NotFound(&'static str),
    /// The path exists, the method does not; `allow` lists those that do.
    #[error("method not allowed on this path")]
    MethodNotAllowed { allow: String },
    /// This instance already serves `revocation.max_subscribers` streams.
    #[error(
        "too many revocation streams on this instance; retry later, or poll GET /auth/revocations meanwhile"
    )]
    TooManyStreams,
    #[error("{0}")]
    Conflict(&'static str),
    /// Overloaded (hashing queue full), not ready (no signing key or
    /// denylist yet), or the database is unreachable or restarting.
    #[error("the server is busy, retry shortly")]
    TemporarilyUnavailable,
    #[error("internal error")]
    Internal(anyhow::Error),
}

impl From<sqlx::Error> for Error {
    /// An unreachable, restarting or exhausted database is a retryable 503,
    /// not a 500. The transaction it interrupted did not commit, so nothing
    /// was spent: the client may retry with the same refresh token.
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            if matches!(e, sqlx::Error::PoolTimedOut) {
                metrics::counter!(crate::telemetry::metrics::DB_POOL_TIMEOUTS).increment(1);
            }
            tracing::warn!(error = %e, "database unavailable");
            return Error::TemporarilyUnavailable;
        }
        Error::Internal(e.into())
    }
}

impl From<crate::hashing::HashError> for Error {
    fn from(e: crate::hashing::HashError) -> Self {
        match e {
            crate::hashing::HashError::Busy => Error::TemporarilyUnavailable,
            crate::hashing::HashError::Internal(e) => Error::Internal(e),
        }
    }
}

/// Values refused by the domain's parsers are the caller's mistake; their
/// messages describe the rule, never the value.
macro_rules! invalid_request_from {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for Error {
            fn from(e: $error) -> Self {
                Error::InvalidRequest(e.to_string())
            }
        })*
    };
}

invalid_request_from!(
    crate::domain::username::InvalidUsername,
    crate::domain::password::InvalidPassword,
    crate::domain::scope::InvalidScope,
    crate::domain::client_id::InvalidClientId,
    crate::domain::grant_type::UnknownGrantType,
    crate::domain::opaque::WeakClientSecret,
    crate::domain::resource::InvalidResource,
    crate::domain::attributes::InvalidAttributes,
);

impl From<anyhow::Error> for Error {
    /// Code that returns `anyhow` may be carrying a database fault: it gets
    /// the same 503 as a bare `sqlx::Error`.
    fn from(e: anyhow::Error) -> Self {
        if e.chain()
            .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
            .any(is_unavailable)
        {
            tracing::warn!(error = format!("{e:#}"), "database unavailable");
            return Error::TemporarilyUnavailable;
        }
        Error::Internal(e)
    }
}

/// Faults of the database rather than of the request, after which a retry
/// can succeed: the pool is out of connections or closed, the socket
/// failed, or the server is shutting down, restarting or refusing
/// connections (SQLSTATE class 08, 57P01-57P03), out of resources (class
/// 53), read-only (25006: a failover to a standby, or recovery), cancelled
/// (57014: an operator, or `statement_timeout`), or a transaction lost a
/// lock or serialisation race (55P03, 40001, 40P01).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "57014" | "25006" | "55P03" | "40001" | "40P01"
                )
        }),
        _ => false,
    }
}

/// An internal error as an operator needs it: its whole chain, led by the
/// SQLSTATE when Postgres refused (`42P01`, `26000`...), which names the
/// cause where the message alone may not. Messages carry no request
/// values (Postgres puts those in its DETAIL, which is not shown).
pub fn describe(e: &anyhow::Error) -> String {
    let mut said = Vec::new();
    for cause in e.chain() {
        if let Some(sqlx::Error::Database(db)) = cause.downcast_ref::<sqlx::Error>() {
            let code = db.code().unwrap_or_default();
            said.push(format!(
                "database error (SQLSTATE {code}): {}",
                db.message()
            ));
            return said.join(": ");
        }
        said.push(cause.to_string());
    }
    format!("{e:#}")
}

impl Error {
    /// The server failed (5xx), not the request.
    pub fn is_server_error(&self) -> bool {
        self.status_code().is_server_error()
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_)
            | Error::PayloadTooLarge
            | Error::BodyTimeout
            | Error::ChunkedBody => "invalid_request",
            Error::InvalidClient => "invalid_client",
            Error::InvalidGrant(_) | Error::TooManyAttempts { .. } => "invalid_grant",
            Error::UnauthorizedClient(_) => "unauthorized_client",
            Error::UnsupportedGrantType => "unsupported_grant_type",
            Error::InvalidScope(_) => "invalid_scope",
            Error::InvalidTarget(_) => "invalid_target",
            Error::InvalidDpopProof(_) | Error::ProofRefused(_) => "invalid_dpop_proof",
            Error::UseDpopNonce(_) => "use_dpop_nonce",
            Error::InsufficientAuthorization { .. } => "insufficient_authorization",
            Error::InvalidSession => "invalid_session",
            Error::StaleLogin { .. } => "insufficient_user_authentication",
            Error::InvalidToken | Error::MissingToken => "invalid_token",
            Error::InsufficientScope => "insufficient_scope",
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::TooManyStreams => "temporarily_unavailable",
            Error::Conflict(_) => "conflict",
            Error::TemporarilyUnavailable => "temporarily_unavailable",
            Error::Internal(_) => "server_error",
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Error::InvalidRequest(description.into())
    }
}

/// Whole seconds for `Retry-After`, rounded up: retrying at the announced
/// time must not be refused again.
fn retry_after_secs(wait: std::time::Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The header that carries a server nonce (RFC 9449 §8).
pub const DPOP_NONCE: &str = "dpop-nonce";

/// `WWW-Authenticate: DPoP algs="..."`, with an error code when there is one.
fn dpop_challenge(error: Option<&str>) -> HeaderValue {
    let algs = tessera_dpop::ALGORITHMS.join(" ");
    let challenge = match error {
        Some(error) => format!("DPoP realm=\"tessera\", error=\"{error}\", algs=\"{algs}\""),
        None => format!("DPoP realm=\"tessera\", algs=\"{algs}\""),
    };
    HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("DPoP"))
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: String,
    /// With `insufficient_authorization`: where the login goes on.
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_session: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    otp_required: Option<bool>,
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::InvalidClient
            | Error::InvalidToken
            | Error::MissingToken
            | Error::ProofRefused(_)
            | Error::StaleLogin { .. } => StatusCode::UNAUTHORIZED,
            Error::InsufficientScope | Error::InsufficientAuthorization { .. } => {
                StatusCode::FORBIDDEN
            }
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Error::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::TemporarilyUnavailable | Error::TooManyStreams => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Error::Internal(e) = self {
            tracing::error!(error = describe(e), "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        response
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        match self {
            Error::InvalidClient => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"tessera\""),
                ));
            }
            // Both schemes are accepted, so both are challenged (RFC 9449 §7.1).
            Error::MissingToken => {
                response
                    .append_header((
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"tessera\""),
                    ))
                    .append_header((header::WWW_AUTHENTICATE, dpop_challenge(None)));
            }
            Error::InvalidToken => {
                response
                    .append_header((
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(
                            "Bearer realm=\"tessera\", error=\"invalid_token\"",
                        ),
                    ))
                    .append_header((
                        header::WWW_AUTHENTICATE,
                        dpop_challenge(Some("invalid_token")),
                    ));
            }
            Error::StaleLogin { max_age } => {
                let challenge = format!(
                    "Bearer realm=\"tessera\", error=\"insufficient_user_authentication\", max_age=\"{}\"",
                    max_age.as_secs()
                );
                if let Ok(challenge) = HeaderValue::from_str(&challenge) {
                    response.insert_header((header::WWW_AUTHENTICATE, challenge));
                }
            }
            Error::ProofRefused(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    dpop_challenge(Some("invalid_dpop_proof")),
                ));
            }
            Error::UseDpopNonce(nonce) => {
                if let Ok(nonce) = HeaderValue::from_str(nonce) {
                    response.insert_header((DPOP_NONCE, nonce));
                }
            }
            Error::InsufficientScope => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"tessera\", error=\"insufficient_scope\"",
                    ),
                ));
            }
            Error::TemporarilyUnavailable => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            // A slot frees only when a stream ends: no use retrying at once.
            Error::TooManyStreams => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
            }
            Error::TooManyAttempts { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs(*retry_after)));
            }
            Error::BodyTimeout | Error::ChunkedBody => {
                response.force_close();
            }
            Error::MethodNotAllowed { allow } => {
                if let Ok(allow) = HeaderValue::from_str(allow) {
                    response.insert_header((header::ALLOW, allow));
                }
            }
            _ => {}
        }
        let description = match self {
            Error::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let auth_session = match self {
            Error::InsufficientAuthorization { auth_session } => Some(auth_session.as_str()),
            _ => None,
        };
        response.json(Body {
            error: self.code(),
            error_description: description,
            auth_session,
            otp_required: auth_session.map(|_| true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn each_error_maps_to_its_rfc6749_code_and_status() {
        #[rustfmt::skip]
        let cases = [
            (Error::invalid_request("x"), StatusCode::BAD_REQUEST, "invalid_request"),
            (Error::PayloadTooLarge, StatusCode::PAYLOAD_TOO_LARGE, "invalid_request"),
            (Error::BodyTimeout, StatusCode::REQUEST_TIMEOUT, "invalid_request"),
            (Error::ChunkedBody, StatusCode::BAD_REQUEST, "invalid_request"),
            (Error::TooManyAttempts { retry_after: std::time::Duration::from_millis(29_001) }, StatusCode::TOO_MANY_REQUESTS, "invalid_grant"),
            (Error::InvalidClient, StatusCode::UNAUTHORIZED, "invalid_client"),
            (Error::InvalidGrant("x"), StatusCode::BAD_REQUEST, "invalid_grant"),
            (Error::UnauthorizedClient("x"), StatusCode::BAD_REQUEST, "unauthorized_client"),
            (Error::UnsupportedGrantType, StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            (Error::InvalidScope("x"), StatusCode::BAD_REQUEST, "invalid_scope"),
            (Error::InvalidTarget("x"), StatusCode::BAD_REQUEST, "invalid_target"),
            (Error::InvalidDpopProof("x".into()), StatusCode::BAD_REQUEST, "invalid_dpop_proof"),
            (Error::UseDpopNonce("n".into()), StatusCode::BAD_REQUEST, "use_dpop_nonce"),
            (Error::ProofRefused("x".into()), StatusCode::UNAUTHORIZED, "invalid_dpop_proof"),
            (Error::InsufficientAuthorization { auth_session: "tsa_x".into() }, StatusCode::FORBIDDEN, "insufficient_authorization"),
            (Error::InvalidSession, StatusCode::BAD_REQUEST, "invalid_session"),
            (Error::StaleLogin { max_age: std::time::Duration::from_secs(600) }, StatusCode::UNAUTHORIZED, "insufficient_user_authentication"),
            (Error::MissingToken, StatusCode::UNAUTHORIZED, "invalid_token"),
            (Error::InvalidToken, StatusCode::UNAUTHORIZED, "invalid_token"),
            (Error::InsufficientScope, StatusCode::FORBIDDEN, "insufficient_scope"),
            (Error::NotFound("x"), StatusCode::NOT_FOUND, "not_found"),
            (Error::MethodNotAllowed { allow: "GET, HEAD".into() }, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (Error::TooManyStreams, StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            (Error::Conflict("x"), StatusCode::CONFLICT, "conflict"),
            (Error::TemporarilyUnavailable, StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            (Error::Internal(anyhow::anyhow!("db password is hunter2")), StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.code(), code);
            assert_eq!(error.status_code(), status);
            let response = error.error_response();
            assert_eq!(
                response.headers().get(header::CACHE_CONTROL).unwrap(),
                "no-store"
            );
        }
    }

    #[test]
    fn internal_details_and_auth_challenges() {
        let response = Error::Internal(anyhow::anyhow!("db password is hunter2")).error_response();
        let bytes = response.into_body().try_into_bytes().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"], "server_error");
        assert!(!String::from_utf8_lossy(&bytes).contains("hunter2"));
        let response = Error::InvalidClient.error_response();
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn throttled_logins_say_when_to_retry_and_slow_bodies_close() {
        let wait = std::time::Duration::from_millis(29_001);
        let response = Error::TooManyAttempts { retry_after: wait }.error_response();
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "30");
        let bytes = response.into_body().try_into_bytes().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "invalid_grant", "error_description": "too many failed attempts; retry later"})
        );
        assert_eq!(retry_after_secs(std::time::Duration::ZERO), 1);
        let response = Error::BodyTimeout.error_response();
        assert!(!response.head().keep_alive());
    }
}
