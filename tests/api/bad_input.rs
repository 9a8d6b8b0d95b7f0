//! Hostile and broken requests: always a 4xx in the RFC 6749 shape, never a
//! 500, never a write.

use crate::helpers::{PASSWORD, TestApp, assert_oauth_error, spawn_app};

const FORM: &str = "application/x-www-form-urlencoded";

async fn writes(app: &TestApp) -> (i64, i64, i64) {
    (
        app.count("sessions").await,
        app.count("refresh_tokens").await,
        app.count("users").await,
    )
}

#[tokio::test]
async fn malformed_requests_get_invalid_request() {
    let app = spawn_app().await;
    app.seed().await;
    let before = writes(&app).await;
    let long_username = "u".repeat(2000);
    let long_password = "p".repeat(5000);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (FORM, b"grant_type=password&grant_type=password&client_id=mobile".to_vec(), 400, "invalid_request"),
        (FORM, b"client_id=mobile&username=alice".to_vec(), 400, "invalid_request"),
        (FORM, b"grant_type=implicit&client_id=mobile".to_vec(), 400, "unsupported_grant_type"),
        (FORM, b"grant_type=password&client_id=mobile&password=x".to_vec(), 400, "invalid_request"),
        (FORM, b"grant_type=refresh_token&client_id=mobile".to_vec(), 400, "invalid_request"),
        (FORM, b"grant_type=password&client_id=mobile&username=\xff\xfe&password=x".to_vec(), 400, "invalid_request"),
        (FORM, b"grant_type=password&client_id=mobile&username=%ff%fe&password=x".to_vec(), 400, "invalid_request"),
        // No account can have it: the answer of any unknown user.
        (FORM, format!("grant_type=password&client_id=mobile&username={long_username}&password=x").into_bytes(), 400, "invalid_grant"),
        (FORM, format!("grant_type=password&client_id=mobile&username=alice&password={long_password}").into_bytes(), 400, "invalid_request"),
        ("application/json", b"{\"grant_type\": \"password\",".to_vec(), 400, "invalid_request"),
        ("application/json", b"[1,2,3]".to_vec(), 400, "invalid_request"),
        ("application/json", b"{\"grant_type\":\"password\",\"client_id\":\"mobile\",\"username\":\"alice\",\"password\":12345678}".to_vec(), 400, "invalid_request"),
        ("text/plain", b"grant_type=password".to_vec(), 400, "invalid_request"),
        (FORM, b"grant_type=client_credentials&client_id=a%00b&client_secret=x".to_vec(), 400, "invalid_request"),
        ("application/json", b"{\"grant_type\":\"password\",\"client_id\":\"a\\u0000b\"}".to_vec(), 400, "invalid_request"),
        ("application/json", b"[\"client_credentials\",null,null,null,null,\"mobile\",\"x\"]".to_vec(), 400, "invalid_request"),
        (FORM, vec![b'a'; 20_000], 413, "invalid_request"),
    ];
    for (content_type, body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let response = app.post_token_raw(content_type, body).await;
        assert_eq!(response.status().as_u16(), status, "{content_type} {shown}");
        let text = response.text().await.unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON for {shown}: {text}"));
        assert_eq!(json["error"], code, "{shown}: {json}");
        assert!(
            !text.contains("12345678"),
            "error bodies must not echo values: {text}"
        );
    }
    assert_eq!(writes(&app).await, before);
}

#[tokio::test]
async fn sql_metacharacters_are_just_characters() {
    let app = spawn_app().await;
    app.seed().await;
    for username in [
        "alice' OR '1'='1",
        "alice'; DROP TABLE users; --",
        "\\\"alice\"",
        "%",
        "_lice",
    ] {
        assert_oauth_error(
            app.password_grant("mobile", username, PASSWORD).await,
            400,
            "invalid_grant",
        )
        .await;
    }
    assert_eq!(app.count("users").await, 1);
    assert_eq!(
        app.password_grant("mobile", "alice", PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_not_500s() {
    let app = spawn_app().await;
    let wrong_method = app.get("/auth/token").await;
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    assert_eq!(
        wrong_method.json::<serde_json::Value>().await.unwrap()["error"],
        "method_not_allowed"
    );
    let unknown = app.get("/admin/users").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<serde_json::Value>().await.unwrap()["error"],
        "not_found"
    );
    let head = app
        .http
        .head(format!("{}/.well-known/jwks.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200, "GET routes answer HEAD");
    let post = app
        .http
        .post(format!("{}/.well-known/jwks.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    // A NUL in Basic credentials is not a client id.
    let nul = app
        .http
        .post(format!("{}/auth/token", app.address))
        .basic_auth("a\0b", Some("x"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(nul, 401, "invalid_client").await;
}

#[tokio::test]
async fn repeated_json_keys_are_refused_like_repeated_form_fields() {
    let app = spawn_app().await;
    app.seed().await;
    app.create_user("bob", PASSWORD, &[]).await;
    let body = format!(
        r#"{{"grant_type":"password","client_id":"mobile","username":"bob","username":"alice","password":"{PASSWORD}"}}"#
    );
    let response = app.post_token_raw("application/json", body).await;
    let error = assert_oauth_error(response, 400, "invalid_request").await;
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .contains("`username` is repeated"),
        "{error}"
    );
    let form = format!(
        "grant_type=password&client_id=mobile&username=bob&username=alice&password={PASSWORD}"
    );
    assert_oauth_error(app.post_token_raw(FORM, form).await, 400, "invalid_request").await;
}
