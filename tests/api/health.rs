use secrecy::SecretString;

use crate::helpers::{spawn_app, test_settings};

#[tokio::test]
async fn healthz_and_readyz_when_everything_is_up() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"database": true, "keys": true, "revocations": true})
    );
}

#[tokio::test]
async fn readyz_is_503_while_the_database_is_unreachable() {
    // Nothing listens on port 1.
    let mut settings = test_settings("postgres://postgres@127.0.0.1:1/nowhere");
    settings.database.url = Some(SecretString::from(
        "postgres://postgres@127.0.0.1:1/nowhere",
    ));
    settings.database.acquire_timeout = std::time::Duration::from_millis(200);
    let app = tessera::startup::Application::build(settings, Default::default())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{address}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = http.get(format!("{address}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["database"], false);
    // A down database is a retryable 503, not a 500.
    let token = http
        .post(format!("{address}/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "x"),
            ("username", "a"),
            ("password", "b"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.headers()["retry-after"], "1");
    crate::helpers::assert_oauth_error(token, 503, "temporarily_unavailable").await;
}
