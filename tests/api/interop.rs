//! Tessera driven by a client nobody here wrote: panva's oauth4webapi
//! (tests/interop/dpop.mjs) runs the password, refresh and client_credentials
//! grants with DPoP, handling the server's nonce as that library does, and
//! calls the example resource server (the verifier kit) with its bound token.
//! Its tokens checked by a verifier nobody here wrote: panva's jose
//! (tests/interop/audience.mjs) takes a token issued for one resource (RFC
//! 8707) for that resource's URI only.
//! Needs Node.js and `npm ci --prefix tests/interop` (done by .ci/run).

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use tessera_verifier::{Config, Verifier};

use crate::helpers::{PASSWORD, spawn_app_with};
use crate::lifecycle::free_port;
use crate::verifier_kit::{BILLING, ORDERS, login_for, serve_example, with_resources};

const INTEROP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");

/// Fails unless `npm ci --prefix tests/interop` installed `package`.
fn installed(package: &str) {
    assert!(
        std::path::Path::new(INTEROP)
            .join("node_modules")
            .join(package)
            .exists(),
        "run `npm ci --prefix tests/interop` first (needs Node.js)"
    );
}

/// Runs `node <script>` in tests/interop with `env`; fails the test unless
/// it exits 0.
async fn node(script: &'static str, env: Vec<(&'static str, String)>) -> Output {
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .current_dir(INTEROP)
            .envs(env)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test]
async fn oauth4webapi_gets_and_uses_dpop_bound_tokens() {
    installed("oauth4webapi");
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(|s| {
        s.http.public_addr = format!("127.0.0.1:{port}");
        s.issuer = issuer.clone();
        s.dpop.require_nonce = true;
    })
    .await;
    app.seed().await;
    let service_secret = app
        .create_confidential_client("svc", &["client_credentials"], &["read"])
        .await;
    let feed_secret = app
        .create_confidential_client("feed", &["client_credentials"], &["revocations:read"])
        .await;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let resource = format!("http://{}", listener.local_addr().unwrap());
    let verifier = Verifier::start(
        Config::new(issuer.clone(), "tessera")
            .feed_client("feed", feed_secret)
            .external_url(resource.clone()),
    )
    .unwrap();
    verifier.ready(Duration::from_secs(15)).await.unwrap();
    serve_example(verifier, listener);

    node(
        "dpop.mjs",
        vec![
            ("ISSUER", issuer),
            ("RESOURCE", resource),
            ("PASSWORD", PASSWORD.to_owned()),
            ("SERVICE_SECRET", service_secret),
        ],
    )
    .await;
}

#[tokio::test]
async fn jose_takes_a_resource_token_for_that_resource_only() {
    installed("jose");
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(|s| {
        s.http.public_addr = format!("127.0.0.1:{port}");
        s.issuer = issuer.clone();
    })
    .await;
    let user = app.seed().await;
    with_resources(&app, user).await;
    // A token for each API, and one asked for without a resource.
    let mut tokens = serde_json::Map::new();
    for (audience, resource) in [
        (ORDERS, Some(ORDERS)),
        (BILLING, Some(BILLING)),
        ("tessera", None),
    ] {
        let token: Value = login_for(&app, resource).await["access_token"].clone();
        tokens.insert(audience.to_owned(), token);
    }
    let output = node(
        "audience.mjs",
        vec![("ISSUER", issuer), ("TOKENS", json!(tokens).to_string())],
    )
    .await;
    // Three tokens: each accepted once and refused for the two others.
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("3 tokens accepted for their own audience, 6 refused for another"),
        "{said}"
    );
}
