//! Tokens issued for one resource (RFC 8707) and the user's attributes
//! they carry, through the kit: a service configured with its resource URI
//! refuses tokens for any other, and reads the attributes typed.

use actix_web::dev::Payload;
use actix_web::http::header::WWW_AUTHENTICATE;
use actix_web::test::TestRequest;
use actix_web::{FromRequest, ResponseError, web};
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};

use crate::inner::unix_now;
use crate::testing::{claims, config_for, inner_with, sign, signing_key};
use crate::{Claims, Error, Invalid, VerifiedToken, Verifier};

const ORDERS: &str = "https://orders.example.com/";
const BILLING: &str = "https://billing.example.com/";

/// A verifier for the service whose resource URI is `resource`, with the
/// key that signs the tokens cached.
fn service(resource: &str) -> (Verifier, EncodingKey) {
    let (signer, key) = signing_key();
    let inner = inner_with(config_for(resource));
    inner.keys.insert("k1", key);
    (Verifier::from_inner(inner), signer)
}

/// A token for `aud`, with `extra` claims on top of Tessera's.
fn token(signer: &EncodingKey, aud: Value, extra: Value) -> String {
    let mut claims = claims(unix_now());
    claims["aud"] = aud;
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    sign(signer, &claims).0
}

fn invalid(result: Result<Claims, Error>) -> Invalid {
    match result {
        Err(Error::InvalidToken(why)) => why,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn only_tokens_for_the_configured_resource_are_accepted() {
    let (orders, signer) = service(ORDERS);
    let claims = orders
        .verify(&token(&signer, json!(ORDERS), json!({})))
        .await
        .unwrap();
    assert!(claims.aud.contains(ORDERS));
    // An array holding it is fine (RFC 7519 §4.1.3; Tessera sends one string).
    assert!(
        orders
            .verify(&token(&signer, json!([BILLING, ORDERS]), json!({})))
            .await
            .is_ok()
    );
    // Another resource, the default audience, and the same URI spelled
    // differently: refused, naming the reason.
    for aud in [
        json!(BILLING),
        json!("tessera"),
        json!("https://orders.example.com"),
        json!("https://ORDERS.example.com/"),
        json!([BILLING]),
        json!([]),
    ] {
        assert_eq!(
            invalid(orders.verify(&token(&signer, aud.clone(), json!({}))).await),
            Invalid::WrongAudience,
            "{aud}"
        );
    }
    let (billing, signer) = service(BILLING);
    assert!(
        billing
            .verify(&token(&signer, json!(BILLING), json!({})))
            .await
            .is_ok()
    );
    assert_eq!(
        invalid(
            billing
                .verify(&token(&signer, json!(ORDERS), json!({})))
                .await
        ),
        Invalid::WrongAudience
    );
}

#[tokio::test]
async fn a_token_for_another_resource_is_answered_as_such() {
    let (orders, signer) = service(ORDERS);
    let other = format!("Bearer {}", token(&signer, json!(BILLING), json!({})));
    let request = TestRequest::get()
        .uri("/orders")
        .append_header(("authorization", other.as_str()))
        .app_data(web::Data::new(orders.clone()))
        .to_http_request();
    let error = VerifiedToken::from_request(&request, &mut Payload::None)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the access token is not valid: issued for another resource: aud is not this service's resource URI"
    );
    let response = error.error_response();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers().get(WWW_AUTHENTICATE).unwrap(),
        r#"Bearer error="invalid_token""#
    );
    let body: Value = serde_json::from_slice(
        &actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        body,
        json!({
            "error": "invalid_token",
            "error_description": "the access token was issued for another resource",
        })
    );
    // Any other refusal still says nothing about the token.
    let expired = {
        let mut claims = claims(unix_now() - 3600);
        claims["aud"] = json!(ORDERS);
        format!("Bearer {}", sign(&signer, &claims).0)
    };
    let request = TestRequest::get()
        .append_header(("authorization", expired.as_str()))
        .app_data(web::Data::new(orders))
        .to_http_request();
    let error = VerifiedToken::from_request(&request, &mut Payload::None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidToken(Invalid::Expired)));
    let body = actix_web::body::to_bytes(error.error_response().into_body())
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error_description"],
        "the access token is not valid"
    );
}

#[test]
fn a_service_must_say_which_resource_it_is() {
    for resource in ["", "  "] {
        match config_for(resource).validate() {
            Err(Error::Config(message)) => {
                assert!(message.contains("resource URI"), "{message}")
            }
            other => panic!("{resource:?}: {other:?}"),
        }
    }
    assert!(config_for(ORDERS).validate().is_ok());
}

#[tokio::test]
async fn the_users_attributes_are_read_typed_from_a_verified_token() {
    let (orders, signer) = service(ORDERS);
    let attributes = json!({
        "roles": ["support", "billing"], "tenant": "acme", "level": 2, "staff": true,
    });
    let claims = orders
        .verify(&token(&signer, json!(ORDERS), attributes.clone()))
        .await
        .unwrap();
    // The attributes are the claims the kit does not name; the named ones
    // are still fields.
    assert_eq!(Value::Object(claims.attributes.clone()), attributes);
    assert_eq!(claims.client_id, "mobile");
    assert_eq!(claims.scopes().iter().collect::<Vec<_>>(), ["read"]);
    assert_eq!(
        claims.get::<Vec<String>>("roles"),
        Some(vec!["support".to_owned(), "billing".to_owned()])
    );
    assert_eq!(
        claims.get::<Vec<&str>>("roles"),
        Some(vec!["support", "billing"])
    );
    assert_eq!(claims.get::<&str>("tenant"), Some("acme"));
    assert_eq!(claims.get::<String>("tenant"), Some("acme".to_owned()));
    assert_eq!(claims.get::<i64>("level"), Some(2));
    assert_eq!(claims.get::<bool>("staff"), Some(true));
    // Another shape, a claim not there, a named claim: none.
    assert_eq!(claims.get::<String>("roles"), None);
    assert_eq!(claims.get::<Vec<String>>("tenant"), None);
    assert_eq!(claims.get::<bool>("level"), None);
    assert_eq!(claims.get::<Vec<String>>("groups"), None);
    assert_eq!(claims.get::<String>("sub"), None);
    // Serialised back (what a service may log or answer), they are
    // top-level claims again, as in the token.
    let back = serde_json::to_value(&claims).unwrap();
    assert_eq!(back["roles"], json!(["support", "billing"]));
    assert_eq!(back["tenant"], "acme");
    assert_eq!(back["aud"], ORDERS);
    assert!(back.get("attributes").is_none());
    // A token without attributes has none, and the checks still apply to
    // a token that has some.
    let plain = orders
        .verify(&token(&signer, json!(ORDERS), json!({})))
        .await
        .unwrap();
    assert!(plain.attributes.is_empty());
    assert_eq!(plain.get::<Vec<String>>("roles"), None);
    assert_eq!(
        invalid(
            orders
                .verify(&token(&signer, json!(BILLING), attributes))
                .await
        ),
        Invalid::WrongAudience
    );
}
