//! Tessera driven by a client nobody here wrote: panva's oauth4webapi
//! (tests/interop/dpop.mjs) runs the password, refresh and client_credentials
//! grants with DPoP, handling the server's nonce as that library does, and
//! calls the example resource server (the verifier kit) with its bound token.
//! Needs Node.js and `npm ci --prefix tests/interop` (done by .ci/run).

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use tessera_verifier::{Config, Verifier};

use crate::helpers::{PASSWORD, spawn_app_with};
use crate::lifecycle::free_port;
use crate::verifier_kit::serve_example;

#[tokio::test]
async fn oauth4webapi_gets_and_uses_dpop_bound_tokens() {
    let interop = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    assert!(
        std::path::Path::new(interop)
            .join("node_modules/oauth4webapi")
            .exists(),
        "run `npm ci --prefix tests/interop` first (needs Node.js)"
    );
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

    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("dpop.mjs")
            .current_dir(interop)
            .env("ISSUER", &issuer)
            .env("RESOURCE", &resource)
            .env("PASSWORD", PASSWORD)
            .env("SERVICE_SECRET", &service_secret)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
