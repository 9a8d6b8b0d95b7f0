//! The actix-web side: an extractor for verified tokens, and RFC 6750
//! answers for every error.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

use crate::inner::Lookup;
use crate::{Claims, Error, Verifier};

/// The claims of a verified, unrevoked bearer token.
///
/// Needs the [`Verifier`] in the app data (`App::app_data(verifier)` or
/// `web::Data<Verifier>`). Refusals answer RFC 6750: `401` with
/// `WWW-Authenticate: Bearer error="invalid_token"`, `503` while keys or
/// revocations are not loaded or are stale. Take `Result<VerifiedToken,
/// Error>` instead to decide yourself.
///
/// ```no_run
/// use actix_web::{HttpResponse, web};
/// use tessera_verifier::{Error, VerifiedToken};
///
/// async fn orders(token: VerifiedToken) -> Result<HttpResponse, Error> {
///     token.require_scope("orders:read")?; // 403 insufficient_scope otherwise
///     Ok(HttpResponse::Ok().body(format!("orders of {}", token.sub)))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedToken(pub Claims);

impl Deref for VerifiedToken {
    type Target = Claims;
    fn deref(&self) -> &Claims {
        &self.0
    }
}

impl VerifiedToken {
    pub fn into_claims(self) -> Claims {
        self.0
    }
}

/// Ready at once when the key is cached (the usual case); otherwise waits
/// for the rate-limited JWK Set refetch.
pub enum VerifyFuture {
    Ready(Option<Result<VerifiedToken, Error>>),
    Pending(Pin<Box<dyn Future<Output = Result<VerifiedToken, Error>>>>),
}

impl Future for VerifyFuture {
    type Output = Result<VerifiedToken, Error>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            VerifyFuture::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(Error::Config("VerifyFuture polled after completion".into()))
            })),
            VerifyFuture::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl FromRequest for VerifiedToken {
    type Error = Error;
    type Future = VerifyFuture;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> VerifyFuture {
        let verifier = req
            .app_data::<Verifier>()
            .or_else(|| req.app_data::<web::Data<Verifier>>().map(|d| d.get_ref()));
        let Some(verifier) = verifier else {
            return VerifyFuture::Ready(Some(Err(Error::Config(
                "no tessera_verifier::Verifier in the app data".into(),
            ))));
        };
        let Some(token) = bearer(req) else {
            return VerifyFuture::Ready(Some(Err(Error::MissingToken)));
        };
        match verifier.verify_cached(token) {
            Ok(claims) => VerifyFuture::Ready(Some(Ok(VerifiedToken(claims)))),
            Err(Lookup::Failed(e)) => VerifyFuture::Ready(Some(Err(e))),
            Err(Lookup::UnknownKid(_)) => {
                let verifier = verifier.clone();
                let token = token.to_owned();
                VerifyFuture::Pending(Box::pin(async move {
                    verifier.verify(&token).await.map(VerifiedToken)
                }))
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::MissingToken | Error::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Error::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Error::KeysNotLoaded | Error::RevocationsNotLoaded | Error::RevocationsStale { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Config(_) | Error::Issuer(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// RFC 6750 §3: the challenge names the error; the body says no more
    /// than the code (the reason is for the service's logs, not the caller).
    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        let (code, description) = match self {
            Error::MissingToken => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
                ("invalid_token", "a bearer token is required".to_owned())
            }
            Error::InvalidToken(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                ));
                ("invalid_token", "the access token is not valid".to_owned())
            }
            Error::InsufficientScope(scope) => {
                // Scope tokens are printable ASCII without `"` or `\`; any
                // other is left out of the header rather than escaped.
                let challenge = if scope
                    .bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
                {
                    format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"")
                } else {
                    "Bearer error=\"insufficient_scope\"".to_owned()
                };
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response.insert_header((header::WWW_AUTHENTICATE, value));
                }
                (
                    "insufficient_scope",
                    format!("the access token lacks the scope `{scope}`"),
                )
            }
            Error::KeysNotLoaded | Error::RevocationsNotLoaded | Error::RevocationsStale { .. } => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
                (
                    "temporarily_unavailable",
                    "cannot verify tokens right now; retry shortly".to_owned(),
                )
            }
            Error::Config(_) | Error::Issuer(_) => {
                tracing::error!(error = %self, "token verification is misconfigured");
                ("server_error", "internal error".to_owned())
            }
        };
        response.json(json!({"error": code, "error_description": description}))
    }
}
