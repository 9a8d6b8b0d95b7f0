use std::time::{Duration, Instant};

use serde_json::Value;
use tessera::config::PasswordSettings;
use tessera::domain::PlainPassword;
use tessera::hashing::PasswordHasher;

use crate::helpers::{PASSWORD, assert_oauth_error, spawn_app, time_until};

#[tokio::test]
async fn password_grant_issues_bearer_and_refresh_tokens() {
    let app = spawn_app().await;
    app.seed().await;

    let response = app.password_grant("mobile", "alice", PASSWORD).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "read write");
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
    let refresh = body["refresh_token"].as_str().unwrap();
    assert!(
        refresh.len() >= 43,
        "refresh tokens carry at least 256 bits"
    );
    // Only the hash is stored.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM refresh_tokens")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, tessera::domain::TokenHash::of(refresh).0.to_vec());
}

#[tokio::test]
async fn json_bodies_are_accepted_too() {
    let app = spawn_app().await;
    app.seed().await;
    let body = serde_json::json!({"grant_type": "password", "username": "alice", "password": PASSWORD, "client_id": "mobile", "scope": "read"});
    let response = app
        .post_token_raw("application/json", body.to_string())
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "read");
}

#[tokio::test]
async fn unknown_user_and_wrong_password_are_indistinguishable() {
    let app = spawn_app().await;
    app.seed().await;

    let wrong = app
        .password_grant("mobile", "alice", "not the password")
        .await;
    let unknown = app
        .password_grant("mobile", "mallory", "not the password")
        .await;

    assert_eq!(wrong.status(), unknown.status());
    let wrong = wrong.bytes().await.unwrap();
    let unknown = unknown.bytes().await.unwrap();
    assert_eq!(wrong, unknown);
    let body: Value = serde_json::from_slice(&wrong).unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

/// Not a benchmark: it checks that an unknown user costs a real argon2
/// verification (the dummy hash), which is what hides whether a user exists.
#[tokio::test]
async fn unknown_users_cost_a_full_password_verification() {
    let app = spawn_app().await;
    app.seed().await;
    async fn median(app: &crate::helpers::TestApp, user: &str) -> Duration {
        let mut times = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let r = app.password_grant("mobile", user, "not the password").await;
            assert_eq!(r.status(), 400);
            times.push(started.elapsed());
        }
        times.sort();
        times[2]
    }
    let wrong = median(&app, "alice").await;
    let unknown = median(&app, "nobody-here").await;
    assert!(
        unknown * 2 >= wrong,
        "unknown user answered in {unknown:?}, wrong password in {wrong:?}: no dummy verification?"
    );
}

#[tokio::test]
async fn disabled_users_and_clients_are_refused() {
    let app = spawn_app().await;
    app.seed().await;
    sqlx::query("UPDATE users SET disabled = true WHERE username = 'alice'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_oauth_error(
        app.password_grant("mobile", "alice", PASSWORD).await,
        400,
        "invalid_grant",
    )
    .await;

    sqlx::query("UPDATE users SET disabled = false")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE clients SET disabled = true")
        .execute(&app.pool)
        .await
        .unwrap();
    // Clients are held in memory; the change arrives within a second.
    let took = time_until(|| async {
        app.password_grant("mobile", "alice", PASSWORD)
            .await
            .status()
            == 401
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let response = app.password_grant("mobile", "alice", PASSWORD).await;
    assert!(response.headers().contains_key("www-authenticate"));
    assert_oauth_error(response, 401, "invalid_client").await;
}

#[tokio::test]
async fn clients_must_exist_and_be_allowed_the_grant() {
    let app = spawn_app().await;
    app.seed().await;
    assert_oauth_error(
        app.password_grant("nope", "alice", PASSWORD).await,
        401,
        "invalid_client",
    )
    .await;
    app.create_public_client("refresh-only", &["refresh_token"], &["read"])
        .await;
    assert_oauth_error(
        app.password_grant("refresh-only", "alice", PASSWORD).await,
        400,
        "unauthorized_client",
    )
    .await;
    let no_client = app
        .post_token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .await;
    assert_oauth_error(no_client, 401, "invalid_client").await;
}

#[tokio::test]
async fn confidential_clients_authenticate_with_basic_or_body_secret() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD, &["read"]).await;
    let secret = app
        .create_confidential_client("backend", &["password"], &["read"])
        .await;
    let params = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
    ];
    let url = format!("{}/auth/token", app.address);

    let basic = app
        .http
        .post(&url)
        .basic_auth("backend", Some(&secret))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);

    let mut with_body = params.to_vec();
    with_body.extend([("client_id", "backend"), ("client_secret", secret.as_str())]);
    assert_eq!(app.post_token(&with_body).await.status(), 200);

    let wrong = app
        .http
        .post(&url)
        .basic_auth("backend", Some("tss_wrong"))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert!(wrong.headers().contains_key("www-authenticate"));
    assert_oauth_error(wrong, 401, "invalid_client").await;

    let mut missing = params.to_vec();
    missing.push(("client_id", "backend"));
    assert_oauth_error(app.post_token(&missing).await, 401, "invalid_client").await;

    let both = app
        .http
        .post(&url)
        .basic_auth("backend", Some(&secret))
        .form(&with_body)
        .send()
        .await
        .unwrap();
    assert_oauth_error(both, 400, "invalid_request").await;
}

#[tokio::test]
async fn scopes_are_limited_to_what_user_and_client_share() {
    let app = spawn_app().await;
    app.seed().await;
    let params = |scope| {
        [
            ("grant_type", "password"),
            ("client_id", "mobile"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("scope", scope),
        ]
    };

    let narrower: Value = app.post_token(&params("write")).await.json().await.unwrap();
    assert_eq!(narrower["scope"], "write");
    // The client may have `profile`, alice may not.
    assert_oauth_error(
        app.post_token(&params("read profile")).await,
        400,
        "invalid_scope",
    )
    .await;
    assert_oauth_error(
        app.post_token(&params("bad\"scope")).await,
        400,
        "invalid_scope",
    )
    .await;
}

#[tokio::test]
async fn weaker_password_hashes_are_upgraded_on_login() {
    let app = spawn_app().await;
    app.create_public_client("mobile", &["password"], &[]).await;
    let weak = PasswordSettings {
        memory_kib: 4096,
        iterations: 1,
        parallelism: 1,
        max_length: 1024,
        max_concurrent: 1,
        max_queue: 1,
    };
    let hash = PasswordHasher::new(&weak, 1)
        .unwrap()
        .hash(PlainPassword::new_password(PASSWORD.to_owned().into(), 1024).unwrap())
        .await
        .unwrap();
    assert!(hash.contains("m=4096"));
    let username = tessera::domain::Username::parse("old-timer").unwrap();
    tessera::store::users::insert(&app.pool, &username, &hash, &[], app.state.clock.now())
        .await
        .unwrap();

    assert_eq!(
        app.password_grant("mobile", "old-timer", PASSWORD)
            .await
            .status(),
        200
    );

    let upgraded: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        upgraded.starts_with("$argon2id$") && upgraded.contains("m=19456,t=2,p=1"),
        "{upgraded}"
    );
    assert_eq!(
        app.password_grant("mobile", "old-timer", PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn unicode_usernames_log_in() {
    let app = spawn_app().await;
    app.create_user("zoë_用户", PASSWORD, &[]).await;
    app.create_public_client("mobile", &["password"], &[]).await;
    assert_eq!(
        app.password_grant("mobile", "zoë_用户", PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_login_burst_is_queued_and_shed_without_stalling_other_endpoints() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.password.max_concurrent = 1;
        s.password.max_queue = 4;
        // Every login is counted against alice until it succeeds: twelve
        // at once would otherwise reach the lockout threshold.
        s.login.lockout_threshold = 100;
    })
    .await;
    app.seed().await;

    let burst = async {
        let logins = (0..12).map(|_| app.password_grant("mobile", "alice", PASSWORD));
        let responses = futures_util::future::join_all(logins).await;
        (responses, Instant::now())
    };
    let jwks = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let status = app.get("/.well-known/jwks.json").await.status();
        (status, Instant::now())
    };
    let ((responses, burst_done), (jwks_status, jwks_done)) = tokio::join!(burst, jwks);

    assert_eq!(jwks_status, 200);
    assert!(jwks_done < burst_done, "JWKS waited for the login burst");
    let mut ok = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                crate::helpers::assert_oauth_error(response, 503, "temporarily_unavailable").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        (1..12).contains(&ok),
        "{ok} of 12 logins succeeded: the queue bound did not apply"
    );
}

#[tokio::test]
async fn clients_without_the_refresh_grant_get_no_refresh_token() {
    let app = spawn_app().await;
    let user = app.seed().await;
    app.create_public_client("kiosk", &["password"], &["read"])
        .await;
    let response = app.password_grant("kiosk", "alice", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(app.count("refresh_tokens").await, 0);
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], true);
    // The login still ends with "log out everywhere", and its session row
    // lives no longer than its access token.
    let expires: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT expires_at FROM sessions")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(expires <= app.state.clock.now() + chrono::Duration::seconds(600));
    let admin = app.admin_token().await;
    app.admin(
        reqwest::Method::POST,
        &format!("/admin/users/{user}/revoke"),
        &admin,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(app.introspect(access).await["active"], false);
}
