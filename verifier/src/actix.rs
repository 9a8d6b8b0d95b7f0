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

use tessera_dpop::ALGORITHMS;

use crate::inner::Lookup;
use crate::{Claims, Error, Invalid, Presented, Verifier};

/// The claims of a verified, unrevoked token, presented as a bearer token
/// or with DPoP (RFC 9449 §7: `Authorization: DPoP <token>` and one `DPoP`
/// proof for this method and `external_url` + path).
///
/// Needs the [`Verifier`] in the app data (`App::app_data(verifier)` or
/// `web::Data<Verifier>`). Refusals answer RFC 6750 and RFC 9449: `401`
/// with `WWW-Authenticate: Bearer error="invalid_token"` and
/// `DPoP error="invalid_token", algs="..."` (only the latter where DPoP is
/// required), `DPoP error="invalid_dpop_proof"` for a bad proof,
/// `DPoP error="use_dpop_nonce"` with a `DPoP-Nonce` header when a server
/// nonce is required, `503` while keys or revocations are not loaded or are
/// stale. Take `Result<VerifiedToken, Error>` instead to decide yourself.
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
// `Ready` is the usual case and lives on the stack; boxing it to match
// `Pending` would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
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
        let headers = req.headers();
        // A header that is not text is no token / a malformed proof.
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let dpop: Vec<&str> = headers
            .get_all(DPOP)
            .map(|v| v.to_str().unwrap_or_default())
            .collect();
        let presented = Presented {
            authorization,
            dpop: &dpop,
            method: req.method().as_str(),
            path: req.uri().path(),
        };
        match verifier.verify_request_cached(&presented) {
            Ok(claims) => VerifyFuture::Ready(Some(Ok(VerifiedToken(claims)))),
            Err(Lookup::Failed(e)) => VerifyFuture::Ready(Some(Err(e))),
            Err(Lookup::UnknownKid(_)) => {
                let verifier = verifier.clone();
                let authorization = authorization.map(str::to_owned);
                let dpop: Vec<String> = dpop.iter().map(|p| (*p).to_owned()).collect();
                let method = presented.method.to_owned();
                let path = presented.path.to_owned();
                VerifyFuture::Pending(Box::pin(async move {
                    let dpop: Vec<&str> = dpop.iter().map(String::as_str).collect();
                    let presented = Presented {
                        authorization: authorization.as_deref(),
                        dpop: &dpop,
                        method: &method,
                        path: &path,
                    };
                    verifier.verify_request(&presented).await.map(VerifiedToken)
                }))
            }
        }
    }
}

/// The proof header (RFC 9449 §4.1) and the server-nonce header (§8, §9).
const DPOP: &str = "dpop";
const DPOP_NONCE: &str = "dpop-nonce";

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self.reason() {
            Error::MissingToken
            | Error::InvalidToken(_)
            | Error::InvalidDpopProof(_)
            | Error::UseDpopNonce(_)
            | Error::InsufficientUserAuthentication => StatusCode::UNAUTHORIZED,
            Error::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Error::KeysNotLoaded
            | Error::RevocationsNotLoaded
            | Error::RevocationsStale { .. }
            | Error::DpopReplayCacheFull => StatusCode::SERVICE_UNAVAILABLE,
            Error::Config(_) | Error::Issuer(_) | Error::DpopRequired(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// RFC 6750 §3 and RFC 9449 §7.1: the challenges name the error; the
    /// body says no more than the code and the rule broken (the reason is
    /// for the service's logs, not the caller). Both schemes are offered,
    /// `Bearer` first, unless DPoP is required (`DpopRequired`): then only
    /// `DPoP`. Errors of the proof itself are the DPoP scheme's alone.
    fn error_response(&self) -> HttpResponse {
        let bearer = !matches!(self, Error::DpopRequired(_));
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        let mut challenge = |params: Option<String>, schemes: Schemes| {
            for value in schemes.challenges(bearer, params.as_deref()) {
                response.append_header((header::WWW_AUTHENTICATE, value));
            }
        };
        let (code, description) = match self.reason() {
            Error::MissingToken => {
                challenge(None, Schemes::Both);
                ("invalid_token", "an access token is required".to_owned())
            }
            Error::InvalidToken(why) => {
                challenge(Some("error=\"invalid_token\"".into()), Schemes::Both);
                // How it was presented is the caller's to fix; what is
                // wrong with the token itself is not theirs to learn.
                let description = match why {
                    Invalid::BoundTokenAsBearer => {
                        "the access token is bound to a DPoP key: present it with the DPoP scheme and a proof"
                    }
                    Invalid::BearerNotAccepted => "this service requires DPoP-bound tokens",
                    // The client asked for a token for another API: it
                    // needs one for this service's resource URI.
                    Invalid::WrongAudience => "the access token was issued for another resource",
                    _ => "the access token is not valid",
                };
                ("invalid_token", description.to_owned())
            }
            Error::InsufficientScope(scope) => {
                // Scope tokens are printable ASCII without `"` or `\`; any
                // other is left out of the header rather than escaped.
                let params = if scope
                    .bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
                {
                    format!("error=\"insufficient_scope\", scope=\"{scope}\"")
                } else {
                    "error=\"insufficient_scope\"".to_owned()
                };
                challenge(Some(params), Schemes::Both);
                (
                    "insufficient_scope",
                    format!("the access token lacks the scope `{scope}`"),
                )
            }
            Error::InsufficientUserAuthentication => {
                challenge(
                    Some("error=\"insufficient_user_authentication\"".into()),
                    Schemes::Both,
                );
                (
                    "insufficient_user_authentication",
                    "this call needs a login with a second factor".to_owned(),
                )
            }
            Error::InvalidDpopProof(why) => {
                challenge(Some("error=\"invalid_dpop_proof\"".into()), Schemes::Dpop);
                ("invalid_dpop_proof", why.to_string())
            }
            Error::UseDpopNonce(nonce) => {
                challenge(Some("error=\"use_dpop_nonce\"".into()), Schemes::Dpop);
                if let Ok(value) = HeaderValue::from_str(nonce) {
                    response.insert_header((DPOP_NONCE, value));
                }
                (
                    "use_dpop_nonce",
                    "the DPoP proof must carry the nonce of the DPoP-Nonce header".to_owned(),
                )
            }
            Error::KeysNotLoaded
            | Error::RevocationsNotLoaded
            | Error::RevocationsStale { .. }
            | Error::DpopReplayCacheFull => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
                (
                    "temporarily_unavailable",
                    "cannot verify tokens right now; retry shortly".to_owned(),
                )
            }
            Error::Config(_) | Error::Issuer(_) | Error::DpopRequired(_) => {
                tracing::error!(error = %self, "token verification is misconfigured");
                ("server_error", "internal error".to_owned())
            }
        };
        response.json(json!({"error": code, "error_description": description}))
    }
}

/// Which challenges an error is answered with.
#[derive(Clone, Copy)]
enum Schemes {
    /// Every scheme the service accepts.
    Both,
    /// `DPoP` only: the error is about the proof.
    Dpop,
}

impl Schemes {
    /// The `WWW-Authenticate` values, each with `params`; the DPoP one
    /// lists the proof algorithms accepted.
    fn challenges(self, bearer_accepted: bool, params: Option<&str>) -> Vec<HeaderValue> {
        let schemes: &[&str] = match self {
            Schemes::Both if bearer_accepted => &["Bearer", "DPoP"],
            _ => &["DPoP"],
        };
        let algs = format!("algs=\"{}\"", ALGORITHMS.join(" "));
        schemes
            .iter()
            .map(|scheme| match (*scheme, params) {
                ("DPoP", Some(p)) => format!("DPoP {p}, {algs}"),
                ("DPoP", None) => format!("DPoP {algs}"),
                (scheme, Some(p)) => format!("{scheme} {p}"),
                (scheme, None) => scheme.to_owned(),
            })
            .filter_map(|value| HeaderValue::from_str(&value).ok())
            .collect()
    }
}
