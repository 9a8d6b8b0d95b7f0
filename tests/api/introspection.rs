//! RFC 7662 introspection.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{assert_oauth_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn active_tokens_are_described() {
    let app = spawn_app().await;
    let user = app.seed().await;
    let session = app.login().await;

    let access = app
        .introspect(session["access_token"].as_str().unwrap())
        .await;
    assert_eq!(access["active"], true);
    assert_eq!(access["token_type"], "Bearer");
    assert_eq!(access["token_use"], "access_token");
    assert_eq!(access["sub"], user.to_string());
    assert_eq!(access["client_id"], "mobile");
    assert_eq!(access["scope"], "read write");
    assert_eq!(access["iss"], "http://tessera.test");
    assert_eq!(access["aud"], "tessera");
    for field in ["exp", "iat"] {
        assert!(access[field].is_i64());
    }
    assert!(access["jti"].is_string());

    let refresh = app
        .introspect(session["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refresh["active"], true);
    assert_eq!(refresh["token_use"], "refresh_token");
    assert!(refresh.get("token_type").is_none());
    assert_eq!(refresh["sub"], user.to_string());
    // Introspection does not spend a refresh token.
    assert_eq!(
        app.refresh("mobile", session["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert_eq!(
        app.introspect(session["refresh_token"].as_str().unwrap())
            .await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn anything_not_currently_valid_is_inactive() {
    let app = spawn_app().await;
    app.seed().await;
    let session = app.login().await;
    let access = session["access_token"].as_str().unwrap().to_owned();

    // Malformed, tampered and foreign tokens.
    let foreign = {
        let other = spawn_app().await;
        other.seed().await;
        other.login().await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for token in [
        "",
        "garbage",
        "a.b.c",
        &format!("{access}x"),
        &foreign,
        &"y".repeat(7_000),
    ] {
        assert_eq!(
            app.introspect(token).await,
            json!({"active": false}),
            "{}",
            &token[..token.len().min(20)]
        );
    }

    // Expired.
    app.advance_clock(Duration::from_secs(601));
    assert_eq!(app.introspect(&access).await, json!({"active": false}));
}

#[tokio::test]
async fn revoked_session_and_not_before_make_tokens_inactive() {
    let app = spawn_app().await;
    let user = app.seed().await;
    let admin = app.admin_token().await;
    let session = app.login().await;
    // Reuse revokes the session: its refresh tokens become inactive.
    let t0 = session["refresh_token"].as_str().unwrap();
    let t1: Value = app.refresh("mobile", t0).await.json().await.unwrap();
    app.refresh("mobile", t1["refresh_token"].as_str().unwrap())
        .await;
    app.refresh("mobile", t0).await;
    assert_eq!(app.introspect(t0).await["active"], false);

    let other = app.login().await;
    app.admin(Method::POST, &format!("/admin/users/{user}/revoke"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.introspect(other["access_token"].as_str().unwrap())
            .await["active"],
        false
    );
    assert_eq!(
        app.introspect(other["refresh_token"].as_str().unwrap())
            .await["active"],
        false
    );
}

#[tokio::test]
async fn only_allowed_clients_and_admins_may_introspect() {
    let app = spawn_app_with(|_| {}).await;
    app.seed().await;
    let session = app.login().await;
    let url = format!("{}/auth/introspect", app.address);
    let token = session["access_token"].as_str().unwrap();

    // A public client, and a confidential client without `introspect`.
    let public = app
        .http
        .post(&url)
        .form(&[("token", token), ("client_id", "mobile")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(public, 400, "unauthorized_client").await;
    let secret = app
        .create_confidential_client("plain", &["client_credentials"], &["read"])
        .await;
    let plain = app
        .http
        .post(&url)
        .basic_auth("plain", Some(&secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(plain, 400, "unauthorized_client").await;
    let wrong = app
        .http
        .post(&url)
        .basic_auth("plain", Some("wrong"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(wrong, 401, "invalid_client").await;

    // Admins introspect with their bearer token; a user's bearer token is refused.
    let admin = app.admin_token().await;
    let as_admin = app
        .http
        .post(&url)
        .bearer_auth(&admin)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(as_admin.json::<Value>().await.unwrap()["active"], true);
    let as_user = app
        .http
        .post(&url)
        .bearer_auth(token)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(as_user.status(), 403);

    let missing = app
        .http
        .post(&url)
        .bearer_auth(&admin)
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(missing, 400, "invalid_request").await;
    let bad_json = app
        .http
        .post(&url)
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_oauth_error(bad_json, 400, "invalid_request").await;
}

/// Verified signatures are remembered; expiry is still checked every time.
#[tokio::test]
async fn a_token_introspected_before_still_expires_on_time() {
    let app = spawn_app().await;
    app.seed().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        assert_eq!(app.introspect(&access).await["active"], true);
    }
    app.advance_clock(std::time::Duration::from_secs(11 * 60));
    assert_eq!(app.introspect(&access).await["active"], false);
}
