//! Tokens signed here, with a key as the issuer publishes it (a JWK), and
//! a verifier state loaded without any issuer running: for unit tests.

use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::Config;
use crate::inner::Inner;
use crate::keys::Key;

pub(crate) const ISSUER: &str = "https://auth.example.com";

pub(crate) fn signing_key() -> (EncodingKey, Key) {
    let (encoding, jwk) = signing_jwk("k1");
    (encoding, crate::keys::parse_key(&jwk).unwrap())
}

/// A fresh ES256 key and its public JWK as the issuer publishes it.
pub(crate) fn signing_jwk(kid: &str) -> (EncodingKey, Jwk) {
    let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .unwrap()
        .to_pkcs8v1()
        .unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    (encoding, jwk)
}

pub(crate) fn config() -> Config {
    config_for("tessera")
}

/// The configuration of the service whose resource URI is `resource`.
pub(crate) fn config_for(resource: &str) -> Config {
    Config::new(ISSUER, resource)
        .feed_client("orders-api", "a feed client secret of some length")
        .max_token_lifetime(Duration::from_secs(600))
}

/// State as after discovery and the first feed read.
pub(crate) fn inner_with(config: Config) -> Inner {
    let inner = Inner::new(config).unwrap();
    inner.denylist.mark_loaded();
    inner.denylist.heard_from_issuer();
    inner
}

pub(crate) fn inner() -> Inner {
    inner_with(config())
}

pub(crate) fn claims(now: i64) -> Value {
    json!({
        "iss": ISSUER, "sub": "0b8e4f1c-5a9d-4c7e-9f3a-2d6b1e8c4a70", "aud": "tessera",
        "client_id": "mobile", "scope": "read", "iat": now, "exp": now + 600,
        "jti": "5f2c9a1e-7b3d-4e8f-a6c0-91d4b2e7f358",
    })
}

pub(crate) fn sign(key: &EncodingKey, claims: &Value) -> (String, Header) {
    sign_as(key, "k1", claims)
}

/// A token whose header names `kid`.
pub(crate) fn sign_as(key: &EncodingKey, kid: &str, claims: &Value) -> (String, Header) {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    let token = jsonwebtoken::encode(&header, claims, key).unwrap();
    (token, header)
}

/// Serves `body` as JSON to every GET on a local port, on its own thread,
/// for as long as the test process runs; returns the URL.
pub(crate) fn serve_json(body: Value) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let body = body.to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            // The request is small and bodiless: read up to its blank line.
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=300\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}
