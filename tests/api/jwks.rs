//! Tokens must verify with nothing but the JWKS, as a resource server would.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::Value;
use tessera::keys::SigningAlgorithm;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// An outside verifier: it knows only the JWKS URL, the issuer and the audience.
pub async fn verify_with_jwks(jwks_url: &str, token: &str) -> Result<Value, String> {
    verify_with_jwks_for(jwks_url, token, "http://tessera.test", "tessera").await
}

pub async fn verify_with_jwks_for(
    jwks_url: &str,
    token: &str,
    issuer: &str,
    audience: &str,
) -> Result<Value, String> {
    let jwks: JwkSet = reqwest::get(jwks_url)
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} not in JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    decode::<Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// Rotates in a key that signs at once (through the admin API).
async fn rotate_key_now(app: &TestApp, algorithm: Option<&str>) {
    let admin = app.admin_token().await;
    let mut body = serde_json::json!({"delay_seconds": 0, "force": true});
    if let Some(algorithm) = algorithm {
        body["algorithm"] = algorithm.into();
    }
    let rotated = app
        .admin(reqwest::Method::POST, "/admin/keys/rotate", &admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 201);
}

fn jwks_url(app: &TestApp) -> String {
    format!("{}/.well-known/jwks.json", app.address)
}

#[tokio::test]
async fn access_tokens_follow_rfc9068_and_verify_with_the_jwks_alone() {
    let app = spawn_app().await;
    let user_id = app.seed().await;
    let body = app.login().await;
    let token = body["access_token"].as_str().unwrap();

    let header = decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let claims = verify_with_jwks(&jwks_url(&app), token).await.unwrap();
    assert_eq!(claims["sub"], user_id.to_string());
    assert_eq!(claims["client_id"], "mobile");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).unwrap();

    let other = app.login().await;
    let other_claims = verify_with_jwks(&jwks_url(&app), other["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_ne!(claims["jti"], other_claims["jti"], "jti must be unique");

    let tampered = format!("{}x", &token[..token.len() - 1]);
    assert!(verify_with_jwks(&jwks_url(&app), &tampered).await.is_err());
}

#[tokio::test]
async fn jwks_is_cacheable_and_well_formed() {
    let app = spawn_app().await;
    let response = app.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    for field in ["kid", "kty", "alg", "crv", "x", "y"] {
        assert!(key[field].is_string(), "missing {field} in {key}");
    }
    assert_eq!(key["use"], "sig");
    assert!(
        key.get("d").is_none(),
        "the private part must never be published"
    );
}

#[tokio::test]
async fn eddsa_and_rs256_are_selectable() {
    for (algorithm, kty) in [
        (SigningAlgorithm::EdDsa, "OKP"),
        (SigningAlgorithm::Rs256, "RSA"),
    ] {
        let app = spawn_app_with(|s| s.keys.algorithm = algorithm).await;
        app.seed().await;
        let token = app.login().await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(decode_header(&token).unwrap().alg, algorithm.jwt());
        assert_eq!(app.jwks().await["keys"][0]["kty"], kty);
        verify_with_jwks(&jwks_url(&app), &token).await.unwrap();
    }
}

#[tokio::test]
async fn metadata_describes_what_is_implemented() {
    let app = spawn_app().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let meta: Value = app.get(path).await.json().await.unwrap();
        assert_eq!(meta["issuer"], "http://tessera.test");
        assert_eq!(meta["token_endpoint"], "http://tessera.test/auth/token");
        assert_eq!(
            meta["jwks_uri"],
            "http://tessera.test/.well-known/jwks.json"
        );
        assert_eq!(
            meta["grant_types_supported"],
            serde_json::json!([
                "password",
                "refresh_token",
                "client_credentials",
                "authorization_code"
            ])
        );
        assert_eq!(
            meta["authorization_challenge_endpoint"],
            "http://tessera.test/auth/challenge"
        );
        assert_eq!(
            meta["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(
            meta["revocation_endpoint"],
            "http://tessera.test/auth/revoke"
        );
        assert_eq!(
            meta["introspection_endpoint"],
            "http://tessera.test/auth/introspect"
        );
        let methods = meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        assert!(
            methods.contains(&"client_secret_basic".into()) && methods.contains(&"none".into())
        );
    }
}

#[tokio::test]
async fn the_jwks_has_a_strong_etag_and_answers_304_until_the_key_set_changes() {
    let app = spawn_app().await;
    let first = app.get("/.well-known/jwks.json").await;
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    let body = first.text().await.unwrap();
    let revalidate = |tag: String| {
        app.http
            .get(format!("{}/.well-known/jwks.json", app.address))
            .header("if-none-match", tag)
            .send()
    };
    let unchanged = revalidate(etag.clone()).await.unwrap();
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.headers()["etag"], etag.as_str());
    assert!(unchanged.headers().contains_key("cache-control"));
    assert!(unchanged.text().await.unwrap().is_empty());
    // The same bytes every time while the key set is the same.
    assert_eq!(
        app.get("/.well-known/jwks.json")
            .await
            .text()
            .await
            .unwrap(),
        body
    );

    // A rotated-in key is published at once: new bytes, new ETag.
    rotate_key_now(&app, None).await;
    let changed = revalidate(etag.clone()).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"], etag.as_str());
    let keys: serde_json::Value = changed.json().await.unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_jwks_drops_an_expired_key_when_the_schedule_says_so_without_a_reload() {
    let app = spawn_app().await;
    rotate_key_now(&app, None).await;
    assert_eq!(app.jwks().await["keys"].as_array().unwrap().len(), 2);
    // The old key's last token has expired: it is no longer published, even
    // though the rendering was cached and no reload happened since.
    app.advance_clock(Duration::from_secs(11 * 60));
    assert_eq!(app.jwks().await["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn discovery_metadata_has_a_strong_etag_and_follows_the_key_algorithms() {
    let app = spawn_app().await;
    let path = "/.well-known/oauth-authorization-server";
    let first = app.get(path).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "application/json");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    let revalidate = |tag: String| {
        app.http
            .get(format!("{}{path}", app.address))
            .header("if-none-match", tag)
            .send()
    };
    let unchanged = revalidate(etag.clone()).await.unwrap();
    assert_eq!(unchanged.status(), 304);
    assert!(unchanged.text().await.unwrap().is_empty());
    // Both well-known names serve the same document.
    let other = app.get("/.well-known/openid-configuration").await;
    assert_eq!(other.headers()["etag"], etag.as_str());

    rotate_key_now(&app, Some("EdDSA")).await;
    let changed = revalidate(etag.clone()).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"], etag.as_str());
    let metadata: Value = changed.json().await.unwrap();
    let algorithms = metadata["access_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algorithms.contains(&Value::from("EdDSA")), "{metadata}");
    assert!(algorithms.contains(&Value::from("ES256")), "{metadata}");
}
