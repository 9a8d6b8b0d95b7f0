use serde_json::Value;

use crate::helpers::{assert_oauth_error, spawn_app};
use crate::jwks::verify_with_jwks;

#[tokio::test]
async fn services_get_access_tokens_as_themselves() {
    let app = spawn_app().await;
    let secret = app
        .create_confidential_client(
            "billing",
            &["client_credentials"],
            &["invoices:read", "invoices:write"],
        )
        .await;

    let response = app
        .client_token("billing", &secret, Some("invoices:read"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh token for client_credentials"
    );
    assert_eq!(body["scope"], "invoices:read");
    let claims = verify_with_jwks(
        &format!("{}/.well-known/jwks.json", app.address),
        body["access_token"].as_str().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(claims["sub"], "billing");
    assert_eq!(claims["client_id"], "billing");

    // client_secret_post works as well; no scope asked means all allowed.
    let post = app
        .post_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "billing"),
            ("client_secret", secret.as_str()),
        ])
        .await;
    assert_eq!(
        post.json::<Value>().await.unwrap()["scope"],
        "invoices:read invoices:write"
    );
}

#[tokio::test]
async fn wrong_secrets_scopes_and_clients_are_refused() {
    let app = spawn_app().await;
    let secret = app
        .create_confidential_client("billing", &["client_credentials"], &["invoices:read"])
        .await;

    let wrong = app
        .client_token("billing", "tss_not-the-secret", None)
        .await;
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_oauth_error(wrong, 401, "invalid_client").await;
    assert_oauth_error(
        app.client_token("billing", &secret, Some("admin")).await,
        400,
        "invalid_scope",
    )
    .await;

    // A public client cannot act as itself, even if registered for it.
    app.create_public_client("app", &["client_credentials"], &["invoices:read"])
        .await;
    let public = app
        .post_token(&[("grant_type", "client_credentials"), ("client_id", "app")])
        .await;
    assert_oauth_error(public, 400, "unauthorized_client").await;
    // Nor can a confidential client not registered for the grant.
    let other = app
        .create_confidential_client("web", &["password"], &["invoices:read"])
        .await;
    assert_oauth_error(
        app.client_token("web", &other, None).await,
        400,
        "unauthorized_client",
    )
    .await;
}
