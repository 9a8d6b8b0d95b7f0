//! DPoP-bound tokens through the kit (RFC 9449 §7): tokens signed here,
//! proofs made with `tessera_dpop::ProofKey`, checked by
//! `Verifier::verify_request` and answered by the actix extractor.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header::WWW_AUTHENTICATE;
use actix_web::test::TestRequest;
use actix_web::{FromRequest, ResponseError, web};
use jsonwebtoken::EncodingKey;
use serde_json::json;
use tessera_dpop::{ProofKey, Refused};

use crate::inner::unix_now;
use crate::testing::{self, claims, inner_with, sign, signing_key};
use crate::{Claims, Config, Error, Invalid, Presented, ProofInvalid, VerifiedToken, Verifier};

const BASE: &str = "https://api.example.com";
const PATH: &str = "/orders/7";
const ALGS: &str = r#"algs="ES256 ES384 EdDSA PS256 RS256""#;

struct Kit {
    verifier: Verifier,
    signer: EncodingKey,
    client: ProofKey,
    now: i64,
}

fn kit(configure: impl FnOnce(Config) -> Config) -> Kit {
    let (signer, key) = signing_key();
    let inner = inner_with(configure(testing::config().external_url(BASE)));
    inner.keys.insert("k1", key);
    Kit {
        verifier: Verifier::from_inner(inner),
        signer,
        client: ProofKey::es256().unwrap(),
        now: unix_now(),
    }
}

impl Kit {
    /// A token bound to `jkt`, or a plain bearer token; `jti` tells tokens apart.
    fn token(&self, jkt: Option<&str>, jti: &str) -> String {
        let mut claims = claims(self.now);
        claims["jti"] = json!(jti);
        if let Some(jkt) = jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        sign(&self.signer, &claims).0
    }

    fn bound(&self) -> String {
        self.token(Some(self.client.jkt()), "bound")
    }

    /// A proof for GET `BASE` + `PATH` now, for `token`.
    fn proof(&self, token: &str) -> String {
        self.proof_with("GET", &format!("{BASE}{PATH}"), self.now, Some(token), None)
    }

    fn proof_with(
        &self,
        method: &str,
        url: &str,
        iat: i64,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        self.client.proof(method, url, iat, token, nonce).unwrap()
    }

    async fn dpop(&self, token: &str, proofs: &[&str]) -> Result<Claims, Error> {
        self.request(&format!("DPoP {token}"), proofs, PATH).await
    }

    async fn request(
        &self,
        authorization: &str,
        proofs: &[&str],
        path: &str,
    ) -> Result<Claims, Error> {
        let presented = Presented {
            authorization: Some(authorization),
            dpop: proofs,
            method: "GET",
            path,
        };
        self.verifier.verify_request(&presented).await
    }

    /// Through the actix extractor: GET `PATH` with these headers.
    async fn extract(&self, headers: &[(&str, &str)]) -> Result<VerifiedToken, Error> {
        let mut request = TestRequest::get()
            .uri(PATH)
            .app_data(web::Data::new(self.verifier.clone()));
        for (name, value) in headers {
            request = request.append_header((*name, *value));
        }
        VerifiedToken::from_request(&request.to_http_request(), &mut Payload::None).await
    }
}

fn invalid(result: Result<Claims, Error>) -> Invalid {
    match result {
        Err(e) => match e.reason() {
            Error::InvalidToken(why) => *why,
            other => panic!("expected an invalid token, got {other:?}"),
        },
        Ok(_) => panic!("expected an invalid token, got claims"),
    }
}

fn bad_proof(result: Result<Claims, Error>) -> ProofInvalid {
    match result {
        Err(Error::InvalidDpopProof(why)) => why,
        other => panic!("expected an invalid proof, got {other:?}"),
    }
}

/// The `WWW-Authenticate` values of the answer to `error`.
fn challenges(error: &Error) -> Vec<String> {
    let response = error.error_response();
    response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_bound_token_with_a_proof_of_its_key_is_accepted() {
    let kit = kit(|c| c);
    let token = kit.bound();
    let claims = kit.dpop(&token, &[&kit.proof(&token)]).await.unwrap();
    assert_eq!(claims.dpop_jkt(), Some(kit.client.jkt()));
    // Through the extractor too, scheme in any case; a query is not part
    // of htu.
    let (authorization, proof) = (format!("dpop {token}"), kit.proof(&token));
    let extracted = kit
        .extract(&[("authorization", &authorization), ("DPoP", &proof)])
        .await
        .unwrap();
    assert_eq!(extracted.client_id, "mobile");
    let proof = kit.proof(&token);
    let path = format!("{PATH}?page=2");
    assert!(
        kit.request(&format!("DPoP {token}"), &[&proof], &path)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn htu_is_the_external_url_with_its_path_prefix_and_the_request_path() {
    let kit = kit(|c| c.external_url("https://gw.example.com/orders-api/"));
    let token = kit.bound();
    let url = format!("https://gw.example.com/orders-api{PATH}");
    let proof = kit.proof_with("GET", &url, kit.now, Some(&token), None);
    assert!(kit.dpop(&token, &[&proof]).await.is_ok());
    let proof = kit.proof(&token); // for https://api.example.com/orders/7
    assert_eq!(
        bad_proof(kit.dpop(&token, &[&proof]).await),
        ProofInvalid::Refused(Refused::Url)
    );
}

#[tokio::test]
async fn a_bound_token_presented_as_a_bearer_token_is_refused() {
    let kit = kit(|c| c);
    let token = kit.bound();
    assert_eq!(
        invalid(kit.verifier.verify(&token).await),
        Invalid::BoundTokenAsBearer
    );
    let authorization = format!("Bearer {token}");
    assert_eq!(
        invalid(kit.request(&authorization, &[], PATH).await),
        Invalid::BoundTokenAsBearer
    );
    // Even with a valid proof alongside: the scheme says bearer.
    let proof = kit.proof(&token);
    assert_eq!(
        invalid(kit.request(&authorization, &[&proof], PATH).await),
        Invalid::BoundTokenAsBearer
    );
    // Answered 401 invalid_token, with a DPoP challenge.
    let error = kit
        .extract(&[("authorization", &authorization)])
        .await
        .unwrap_err();
    assert_eq!(error.status_code(), 401);
    assert_eq!(
        challenges(&error),
        [
            r#"Bearer error="invalid_token""#.to_owned(),
            format!(r#"DPoP error="invalid_token", {ALGS}"#),
        ]
    );
    // An unbound token is still fine as a bearer token.
    let plain = kit.token(None, "plain");
    assert!(kit.verifier.verify(&plain).await.is_ok());
}

#[tokio::test]
async fn the_token_must_be_bound_to_the_proofs_key() {
    let kit = kit(|c| c);
    let token = kit.bound();
    let thief = ProofKey::es256().unwrap();
    let proof = thief
        .proof("GET", &format!("{BASE}{PATH}"), kit.now, Some(&token), None)
        .unwrap();
    assert_eq!(
        invalid(kit.dpop(&token, &[&proof]).await),
        Invalid::ProofKeyMismatch
    );
    // An unbound token cannot be presented with DPoP either.
    let plain = kit.token(None, "plain");
    assert_eq!(
        invalid(kit.dpop(&plain, &[&kit.proof(&plain)]).await),
        Invalid::NotBound
    );
}

#[tokio::test]
async fn the_proof_must_be_for_this_token() {
    let kit = kit(|c| c);
    let token = kit.bound();
    let other = kit.token(Some(kit.client.jkt()), "other");
    assert_eq!(
        bad_proof(kit.dpop(&token, &[&kit.proof(&other)]).await),
        ProofInvalid::Refused(Refused::TokenHash)
    );
    let url = format!("{BASE}{PATH}");
    let without_ath = kit.proof_with("GET", &url, kit.now, None, None);
    assert_eq!(
        bad_proof(kit.dpop(&token, &[&without_ath]).await),
        ProofInvalid::Refused(Refused::TokenHash)
    );
}

#[tokio::test]
async fn the_proof_must_name_this_method_and_url() {
    let kit = kit(|c| c);
    let token = kit.bound();
    let url = format!("{BASE}{PATH}");
    let post = kit.proof_with("POST", &url, kit.now, Some(&token), None);
    assert_eq!(
        bad_proof(kit.dpop(&token, &[&post]).await),
        ProofInvalid::Refused(Refused::Method)
    );
    for url in [
        format!("{BASE}/orders/8"),
        format!("https://other.example.com{PATH}"),
        format!("http://api.example.com{PATH}"),
    ] {
        let proof = kit.proof_with("GET", &url, kit.now, Some(&token), None);
        assert_eq!(
            bad_proof(kit.dpop(&token, &[&proof]).await),
            ProofInvalid::Refused(Refused::Url),
            "{url}"
        );
    }
}

#[tokio::test]
async fn a_proof_is_accepted_once() {
    let kit = kit(|c| c);
    let token = kit.bound();
    let proof = kit.proof(&token);
    assert!(kit.dpop(&token, &[&proof]).await.is_ok());
    assert_eq!(
        bad_proof(kit.dpop(&token, &[&proof]).await),
        ProofInvalid::Replayed
    );
    // A new proof (new jti) for the same request is fine.
    assert!(kit.dpop(&token, &[&kit.proof(&token)]).await.is_ok());
}

#[tokio::test]
async fn a_full_replay_cache_refuses_with_503() {
    let kit = kit(|c| c.dpop_replay_capacity(1));
    let token = kit.bound();
    assert!(kit.dpop(&token, &[&kit.proof(&token)]).await.is_ok());
    let error = kit.dpop(&token, &[&kit.proof(&token)]).await.unwrap_err();
    assert!(matches!(error, Error::DpopReplayCacheFull), "{error:?}");
    assert!(error.is_unavailable());
    assert_eq!(error.status_code(), 503);
}

#[tokio::test]
async fn the_proofs_iat_must_be_within_the_window() {
    let kit = kit(|c| c);
    let token = kit.bound();
    let url = format!("{BASE}{PATH}");
    for iat in [kit.now - 61, kit.now + 61] {
        let proof = kit.proof_with("GET", &url, iat, Some(&token), None);
        assert_eq!(
            bad_proof(kit.dpop(&token, &[&proof]).await),
            ProofInvalid::Refused(Refused::IssuedAt),
            "iat {}",
            iat - kit.now
        );
    }
    let recent = kit.proof_with("GET", &url, kit.now - 50, Some(&token), None);
    assert!(kit.dpop(&token, &[&recent]).await.is_ok());
    // The configured window is the one applied.
    let narrow = self::kit(|c| c.dpop_window(Duration::from_secs(10)));
    let token = narrow.bound();
    let proof = narrow.proof_with("GET", &url, narrow.now - 20, Some(&token), None);
    assert_eq!(
        bad_proof(narrow.dpop(&token, &[&proof]).await),
        ProofInvalid::Refused(Refused::IssuedAt)
    );
}

#[tokio::test]
async fn exactly_one_dpop_header() {
    let kit = kit(|c| c);
    let token = kit.bound();
    let (one, two) = (kit.proof(&token), kit.proof(&token));
    assert_eq!(
        bad_proof(kit.dpop(&token, &[&one, &two]).await),
        ProofInvalid::Multiple
    );
    assert_eq!(
        bad_proof(kit.dpop(&token, &[]).await),
        ProofInvalid::Missing
    );
    // The extractor reads every DPoP header, and answers the proof error
    // with the DPoP challenge alone.
    let authorization = format!("DPoP {token}");
    let error = kit
        .extract(&[
            ("authorization", &authorization),
            ("dpop", &one),
            ("dpop", &two),
        ])
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        Error::InvalidDpopProof(ProofInvalid::Multiple)
    ));
    assert_eq!(error.status_code(), 401);
    assert_eq!(
        challenges(&error),
        [format!(r#"DPoP error="invalid_dpop_proof", {ALGS}"#)]
    );
}

#[tokio::test]
async fn a_required_nonce_is_handed_out_then_accepted() {
    let secret = b"a resource server nonce secret".to_vec();
    let kit = kit(|c| c.dpop_nonce(secret, Duration::from_secs(300)));
    let token = kit.bound();
    let authorization = format!("DPoP {token}");
    let proof = kit.proof(&token);
    let error = kit
        .extract(&[("authorization", &authorization), ("dpop", &proof)])
        .await
        .unwrap_err();
    let Error::UseDpopNonce(nonce) = &error else {
        panic!("expected use_dpop_nonce, got {error:?}");
    };
    let response = error.error_response();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers().get("dpop-nonce").unwrap(),
        nonce.as_str()
    );
    assert_eq!(
        challenges(&error),
        [format!(r#"DPoP error="use_dpop_nonce", {ALGS}"#)]
    );
    let url = format!("{BASE}{PATH}");
    let with_nonce = kit.proof_with("GET", &url, kit.now, Some(&token), Some(nonce));
    assert!(
        kit.extract(&[("authorization", &authorization), ("dpop", &with_nonce)])
            .await
            .is_ok()
    );
    // A nonce of another secret is no nonce of ours.
    let stranger = tessera_dpop::Nonces::derive(b"another secret", b"x", 300).issue(kit.now);
    let forged = kit.proof_with("GET", &url, kit.now, Some(&token), Some(&stranger));
    assert!(matches!(
        kit.dpop(&token, &[&forged]).await,
        Err(Error::UseDpopNonce(_))
    ));
}

#[tokio::test]
async fn require_dpop_refuses_bearer_tokens_and_offers_only_dpop() {
    let kit = kit(|c| c.require_dpop(true));
    let plain = kit.token(None, "plain");
    let authorization = format!("Bearer {plain}");
    assert_eq!(
        invalid(kit.request(&authorization, &[], PATH).await),
        Invalid::BearerNotAccepted
    );
    assert_eq!(
        invalid(kit.verifier.verify(&plain).await),
        Invalid::BearerNotAccepted
    );
    let error = kit
        .extract(&[("authorization", &authorization)])
        .await
        .unwrap_err();
    assert_eq!(error.status_code(), 401);
    assert_eq!(
        challenges(&error),
        [format!(r#"DPoP error="invalid_token", {ALGS}"#)]
    );
    let missing = kit.extract(&[]).await.unwrap_err();
    assert_eq!(challenges(&missing), [format!("DPoP {ALGS}")]);
    // DPoP itself goes through.
    let token = kit.bound();
    assert!(kit.dpop(&token, &[&kit.proof(&token)]).await.is_ok());
}

#[tokio::test]
async fn both_schemes_are_offered_by_default() {
    let kit = kit(|c| c);
    let missing = kit.extract(&[]).await.unwrap_err();
    assert_eq!(
        challenges(&missing),
        ["Bearer".to_owned(), format!("DPoP {ALGS}")]
    );
    let garbage = kit
        .extract(&[("authorization", "DPoP garbage"), ("dpop", "garbage")])
        .await
        .unwrap_err();
    assert!(matches!(garbage, Error::InvalidDpopProof(_)), "{garbage:?}");
    let expired = {
        let mut claims = claims(kit.now - 700);
        claims["cnf"] = json!({ "jkt": kit.client.jkt() });
        sign(&kit.signer, &claims).0
    };
    let error = kit
        .dpop(&expired, &[&kit.proof(&expired)])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidToken(Invalid::Expired)));
    assert_eq!(
        challenges(&error),
        [
            r#"Bearer error="invalid_token""#.to_owned(),
            format!(r#"DPoP error="invalid_token", {ALGS}"#),
        ]
    );
}

#[test]
fn dpop_settings_are_validated() {
    let refused = |config: Config| matches!(config.validate(), Err(Error::Config(_)));
    assert!(testing::config().external_url(BASE).validate().is_ok());
    assert!(refused(testing::config().external_url("api.example.com")));
    assert!(refused(
        testing::config().external_url("ftp://api.example.com")
    ));
    assert!(refused(
        testing::config().external_url("https://api.example.com/?a=1")
    ));
    assert!(refused(testing::config().require_dpop(true)));
    assert!(refused(
        testing::config().external_url(BASE).dpop_replay_capacity(0)
    ));
    assert!(refused(
        testing::config()
            .external_url(BASE)
            .dpop_window(Duration::ZERO)
    ));
    assert!(refused(
        testing::config().dpop_nonce(b"short".to_vec(), Duration::from_secs(300))
    ));
}
