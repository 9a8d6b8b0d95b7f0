//! RFC 7009 revocation, the revocation feed, and revocations reaching every
//! instance.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_oauth_error, spawn_app, spawn_on};

async fn revoke(app: &TestApp, client_id: &str, token: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/auth/revoke", app.address))
        .form(&[
            ("token", token),
            ("client_id", client_id),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap()
}

async fn feed(app: &TestApp, token: &str, since: Option<&str>) -> reqwest::Response {
    let query = since.map(|s| format!("?since={s}")).unwrap_or_default();
    app.http
        .get(format!("{}/auth/revocations{query}", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Polls until `check` holds, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within {limit:?}");
}

#[tokio::test]
async fn a_mobile_app_logs_out_by_revoking_its_refresh_token() {
    let app = spawn_app().await;
    app.seed().await;
    let session = app.login().await;
    let other = app.login().await;
    let refresh = session["refresh_token"].as_str().unwrap();

    let response = revoke(&app, "mobile", refresh).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.refresh("mobile", refresh).await.status(), 400);
    assert_eq!(app.introspect(refresh).await, json!({"active": false}));
    // RFC 7009 §2.1: the access tokens of that login go with it...
    let access = session["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], false);
    // ...and offline verifiers learn the login's `sid` from the feed.
    let reader = app.service_token("gateway", &["revocations:read"]).await;
    let listed: Value = feed(&app, &reader, None).await.json().await.unwrap();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(access)
        .unwrap()
        .claims;
    assert_eq!(listed["revoked_sessions"][0]["sid"], claims["sid"]);
    // Other logins are untouched.
    assert_eq!(
        app.refresh("mobile", other["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert_eq!(
        app.introspect(other["access_token"].as_str().unwrap())
            .await["active"],
        true
    );
    // Again, or unknown: still 200, and nothing more is written.
    let entries = app.count("revocations").await;
    assert_eq!(revoke(&app, "mobile", refresh).await.status(), 200);
    assert_eq!(revoke(&app, "mobile", access).await.status(), 200);
    assert_eq!(revoke(&app, "mobile", access).await.status(), 200);
    assert_eq!(
        app.count("revocations").await,
        entries,
        "the login is already ended: revoking its tokens again writes nothing"
    );
    assert_eq!(
        revoke(&app, "mobile", "tsr_never-issued").await.status(),
        200
    );
    assert_eq!(revoke(&app, "mobile", "not.a.jwt").await.status(), 200);
}

#[tokio::test]
async fn revoking_a_users_access_token_ends_its_login_with_one_entry() {
    let app = spawn_app().await;
    app.seed().await;
    let session = app.login().await;
    let access = session["access_token"].as_str().unwrap();
    let refresh = session["refresh_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], true);

    assert_eq!(revoke(&app, "mobile", access).await.status(), 200);
    assert_eq!(app.introspect(access).await["active"], false);
    // One entry for the login, not one per access token: a loop of
    // refresh-then-revoke cannot grow the denylist, because the login is over.
    assert_eq!(app.state.denylist.len(), (0, 1, 0));
    assert_oauth_error(app.refresh("mobile", refresh).await, 400, "invalid_grant").await;

    // Once the token has expired its entry is pruned everywhere. The table
    // first: a catch-up already in flight (the NOTIFY of the revocation,
    // read before the clock moved) may still apply the entry once more, and
    // the next prune drops it again.
    app.advance_clock(Duration::from_secs(601));
    tessera::store::revocations::prune(&app.pool, app.state.clock.now())
        .await
        .unwrap();
    assert_eq!(app.count("revocations").await, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        app.state.denylist.prune(app.state.clock.now());
        if app.state.denylist.len() == (0, 0, 0) || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.state.denylist.len(), (0, 0, 0));
}

#[tokio::test]
async fn a_service_token_is_denylisted_by_jti_until_it_expires() {
    let app = spawn_app().await;
    let secret = app
        .create_confidential_client("billing", &["client_credentials"], &["reports"])
        .await;
    let token: Value = app
        .client_token("billing", &secret, None)
        .await
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap();
    let revoked = app
        .http
        .post(format!("{}/auth/revoke", app.address))
        .basic_auth("billing", Some(&secret))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(app.introspect(access).await["active"], false);
    assert_eq!(app.state.denylist.len(), (1, 0, 0));
    app.advance_clock(Duration::from_secs(601));
    app.state.denylist.prune(app.state.clock.now());
    assert_eq!(app.state.denylist.len(), (0, 0, 0));
}

#[tokio::test]
async fn clients_revoke_only_their_own_tokens() {
    let app = spawn_app().await;
    app.seed().await;
    app.create_public_client("other", &["password"], &["read"])
        .await;
    let session = app.login().await;

    for token in [
        session["refresh_token"].as_str().unwrap(),
        session["access_token"].as_str().unwrap(),
    ] {
        assert_oauth_error(
            revoke(&app, "other", token).await,
            400,
            "unauthorized_client",
        )
        .await;
        assert_eq!(app.introspect(token).await["active"], true);
    }
    assert_oauth_error(
        revoke(&app, "nobody", session["access_token"].as_str().unwrap()).await,
        401,
        "invalid_client",
    )
    .await;
    let missing = app
        .http
        .post(format!("{}/auth/revoke", app.address))
        .form(&[("client_id", "mobile")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(missing, 400, "invalid_request").await;
    let oversized = app
        .http
        .post(format!("{}/auth/revoke", app.address))
        .form(&[("client_id", "mobile"), ("token", &"x".repeat(20_000))])
        .send()
        .await
        .unwrap();
    assert_oauth_error(oversized, 413, "invalid_request").await;
}

#[tokio::test]
async fn the_feed_tells_offline_verifiers_what_was_revoked() {
    let app = spawn_app().await;
    let user = app.seed().await;
    let admin = app.admin_token().await;
    let reader = app
        .service_token("api-gateway", &["revocations:read"])
        .await;
    let first = app.login().await;
    let first_sid = app
        .state
        .verifier
        .verify(
            first["access_token"].as_str().unwrap(),
            app.state.clock.now(),
        )
        .unwrap()
        .sid
        .unwrap();
    revoke(&app, "mobile", first["access_token"].as_str().unwrap()).await;

    let initial = feed(&app, &reader, None).await;
    assert_eq!(initial.status(), 200);
    let initial: Value = initial.json().await.unwrap();
    assert_eq!(initial["revoked_sessions"][0]["sid"], first_sid.as_str());
    assert!(initial["revoked_sessions"][0]["exp"].is_i64());
    assert_eq!(initial["revoked_users"], json!([]));
    let cursor = initial["next_cursor"].as_str().unwrap().to_owned();

    app.admin(Method::POST, &format!("/admin/users/{user}/revoke"), &admin)
        .send()
        .await
        .unwrap();
    let next: Value = feed(&app, &reader, Some(&cursor))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        next["revoked_tokens"],
        json!([]),
        "only what was added since the cursor"
    );
    assert_eq!(next["revoked_users"][0]["sub"], user.to_string());
    assert!(next["revoked_users"][0]["not_before"].is_i64());
    let end: Value = feed(&app, &reader, next["next_cursor"].as_str())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            end["revoked_tokens"].as_array().unwrap().len(),
            end["revoked_users"].as_array().unwrap().len()
        ),
        (0, 0)
    );
    assert_eq!(end["next_cursor"], next["next_cursor"]);

    // Scope `revocations:read` is required; bad cursors are 400s.
    app.advance_clock(Duration::from_secs(1));
    let user_token = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(feed(&app, &user_token, None).await.status(), 403);
    assert_eq!(
        app.http
            .get(format!("{}/auth/revocations", app.address))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_oauth_error(
        feed(&app, &reader, Some("yesterday")).await,
        400,
        "invalid_request",
    )
    .await;
    assert_oauth_error(
        feed(&app, &reader, Some("-5")).await,
        400,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn a_revocation_on_one_instance_reaches_the_others_within_a_second() {
    let a = spawn_app().await;
    a.seed().await;
    let b = a.spawn_second_instance().await;
    let reader = a.service_token("gateway", &["revocations:read"]).await;
    let session = a.login().await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let refresh = session["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(b.introspect(&access).await["active"], true);

    assert_eq!(revoke(&a, "mobile", &access).await.status(), 200);
    let took = eventually(Duration::from_secs(1), || async {
        b.introspect(&access).await["active"] == false
    })
    .await;
    eprintln!("instance B honoured the access-token revocation after {took:?}");
    let listed: Value = feed(&b, &reader, None).await.json().await.unwrap();
    assert_eq!(listed["revoked_sessions"].as_array().unwrap().len(), 1);

    // A refresh-session revocation on A is seen by B's refresh at once (Postgres).
    assert_eq!(revoke(&a, "mobile", &refresh).await.status(), 200);
    assert_oauth_error(b.refresh("mobile", &refresh).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn a_restarted_instance_starts_with_the_full_denylist() {
    let a = spawn_app().await;
    let user = a.seed().await;
    let admin = a.admin_token().await;
    let one = a.login().await;
    revoke(&a, "mobile", one["access_token"].as_str().unwrap()).await;
    let two = a.login().await;
    a.admin(Method::POST, &format!("/admin/users/{user}/revoke"), &admin)
        .send()
        .await
        .unwrap();

    // A fresh process on the same database: the login ended by revoking
    // its access token, the one ended by the logout, and the user's not-before.
    let restarted = spawn_on(a.db.clone(), |_| {}).await;
    assert_eq!(restarted.state.denylist.len(), (0, 2, 1));
    for token in [&one, &two] {
        assert_eq!(
            restarted
                .introspect(token["access_token"].as_str().unwrap())
                .await["active"],
            false
        );
    }
}

#[tokio::test]
async fn a_listener_that_loses_its_connection_catches_up() {
    let a = spawn_app().await;
    a.seed().await;
    let b = a.spawn_second_instance().await;
    let session = a.login().await;
    let access = session["access_token"].as_str().unwrap().to_owned();

    // Kill the LISTEN connections (their last query is the LISTEN or the
    // heartbeat), then revoke while they reconnect.
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND (query ILIKE 'LISTEN%' OR query = 'SELECT 1 AS alive')",
    )
    .fetch_one(&a.pool)
    .await
    .unwrap();
    assert!(killed >= 1, "no listener connection found");
    revoke(&a, "mobile", &access).await;
    eventually(Duration::from_secs(5), || async {
        b.introspect(&access).await["active"] == false
    })
    .await;
}

#[tokio::test]
async fn a_login_right_after_log_out_everywhere_works_even_in_the_same_second() {
    let app = spawn_app().await;
    let user = app.seed().await;
    let admin = app.admin_token().await;
    let mut same_second = false;
    for _ in 0..5 {
        let before = app.login().await;
        let out: Value = app
            .admin(Method::POST, &format!("/admin/users/{user}/revoke"), &admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let after = app.login().await;
        let access = after["access_token"].as_str().unwrap();
        let iat = jsonwebtoken::dangerous::insecure_decode::<Value>(access)
            .unwrap()
            .claims["iat"]
            .as_i64()
            .unwrap();
        // Everything issued before the log-out stays refused...
        assert_eq!(
            app.introspect(before["access_token"].as_str().unwrap())
                .await["active"],
            false
        );
        // ...and the new login is alive.
        assert_eq!(app.introspect(access).await["active"], true);
        same_second |= iat == out["not_before"].as_i64().unwrap();
        if same_second {
            break;
        }
    }
    assert!(same_second, "never managed a login in the log-out's second");
}

#[tokio::test]
async fn the_feed_refuses_a_cursor_from_the_future() {
    let app = spawn_app().await;
    app.seed().await;
    let reader = app.service_token("gateway", &["revocations:read"]).await;
    let session = app.login().await;
    revoke(&app, "mobile", session["refresh_token"].as_str().unwrap()).await;
    let page: Value = feed(&app, &reader, None).await.json().await.unwrap();
    let newest = page["next_cursor"].as_str().unwrap().to_owned();
    // The newest cursor is fine (nothing new); one past it is not.
    assert_eq!(feed(&app, &reader, Some(&newest)).await.status(), 200);
    let ahead = (newest.parse::<i64>().unwrap() + 1).to_string();
    for cursor in [ahead.as_str(), "999999"] {
        let error = assert_oauth_error(
            feed(&app, &reader, Some(cursor)).await,
            400,
            "invalid_request",
        )
        .await;
        assert!(
            error["error_description"]
                .as_str()
                .unwrap()
                .contains("since=0"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn revoking_an_expired_access_token_still_ends_its_login() {
    let app = spawn_app().await;
    app.seed().await;
    let session = app.login().await;
    app.advance_clock(Duration::from_secs(700));
    let access = session["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], false);
    assert_eq!(revoke(&app, "mobile", access).await.status(), 200);
    assert_oauth_error(
        app.refresh("mobile", session["refresh_token"].as_str().unwrap())
            .await,
        400,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn long_expired_logins_are_neither_denylisted_nor_kept() {
    let app = spawn_app().await;
    let user = app.seed().await;
    app.create_public_client("kiosk", &["password"], &["read"])
        .await;
    for _ in 0..3 {
        let response = app
            .password_grant("kiosk", "alice", crate::helpers::PASSWORD)
            .await;
        assert_eq!(response.status(), 200);
    }
    // Those logins ended with their access tokens, 10 minutes later.
    app.advance_clock(Duration::from_secs(1300));
    let admin = app.admin_token().await;
    app.admin(Method::POST, &format!("/admin/users/{user}/revoke"), &admin)
        .send()
        .await
        .unwrap();
    let sessions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM revocations WHERE kind = 'session'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(sessions, 0, "nothing of theirs is live to deny");
    let pruned = tessera::store::refresh::prune(
        &app.pool,
        app.state.clock.now() - chrono::Duration::seconds(600),
        1000,
    )
    .await
    .unwrap();
    assert_eq!(pruned, 3);
    assert_eq!(app.count("sessions").await, 0);
}

async fn service_token_of(app: &TestApp, client_id: &str, secret: &str) -> String {
    let token: Value = app
        .client_token(client_id, secret, None)
        .await
        .json()
        .await
        .unwrap();
    token["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_client_revoking_its_own_tokens_in_a_loop_writes_a_bounded_number_of_entries() {
    let app = spawn_app().await;
    let secret = app
        .create_confidential_client("billing", &["client_credentials"], &["reports"])
        .await;
    let mut revoked = Vec::new();
    for _ in 0..30 {
        let access = service_token_of(&app, "billing", &secret).await;
        let response = app
            .http
            .post(format!("{}/auth/revoke", app.address))
            .basic_auth("billing", Some(&secret))
            .form(&[("token", access.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        revoked.push(access);
    }
    // Eight by jti, then one per-client not-before (replaced, never added).
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM revocations WHERE client_id = 'billing'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(rows <= 9, "{rows} entries for 30 revocations");
    for access in &revoked {
        assert_eq!(app.introspect(access).await["active"], false);
    }
    // The feed carries the client's entry for offline verifiers.
    let reader = app.service_token("gateway", &["revocations:read"]).await;
    let page: Value = feed(&app, &reader, None).await.json().await.unwrap();
    assert_eq!(page["revoked_clients"][0]["client_id"], "billing");
    assert_eq!(page["revoked_tokens"].as_array().unwrap().len(), 8);
    // A token issued after that second is good.
    app.advance_clock(Duration::from_secs(2));
    let fresh = service_token_of(&app, "billing", &secret).await;
    assert_eq!(app.introspect(&fresh).await["active"], true);
}

#[tokio::test]
async fn disable_rotate_enable_with_revoke_tokens_ends_everything_the_client_held() {
    let app = spawn_app().await;
    app.seed().await;
    let secret = app
        .create_confidential_client("svc", &["client_credentials"], &["reports"])
        .await;
    let service = service_token_of(&app, "svc", &secret).await;
    let login = app.login().await;
    let user_access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();

    // Without --revoke-tokens, disable then enable revives the tokens.
    let cli = |args: &[&str]| {
        let output = crate::helpers::tessera(Some(&app), args, "", &[]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    cli(&["client", "disable", "svc"]);
    cli(&["client", "enable", "svc"]);
    eventually(Duration::from_secs(2), || async {
        app.introspect(&service).await["active"] == true
    })
    .await;

    // The leaked-secret drill, through the admin API: a new secret, and
    // every token minted with the old one ends.
    let admin = app.admin_token().await;
    let rotated = app
        .admin(Method::POST, "/admin/clients/svc/secret", &admin)
        .json(&json!({"reason": "secret leaked", "revoke_tokens": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    assert_eq!(rotated["tokens_revoked"], true);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(app.introspect(&service).await["active"], false);
    eventually(Duration::from_secs(2), || async {
        app.client_token("svc", &secret, None).await.status() == 401
    })
    .await;

    // The mobile client, disabled with --revoke-tokens on the command line
    // and enabled again: its logins and access tokens stay ended.
    cli(&["client", "disable", "mobile", "--revoke-tokens"]);
    cli(&["client", "enable", "mobile"]);
    eventually(Duration::from_secs(2), || async {
        app.introspect(&user_access).await["active"] == false
    })
    .await;
    assert_eq!(app.refresh("mobile", &refresh).await.status(), 400);
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE action LIKE 'client.%' ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        actions,
        [
            "client.disable",
            "client.enable",
            "client.rotate_secret",
            "client.revoke_tokens",
            "client.disable",
            "client.revoke_tokens",
            "client.enable"
        ]
    );
    // New tokens from the next second on are good.
    app.advance_clock(Duration::from_secs(2));
    let fresh = service_token_of(&app, "svc", &new_secret).await;
    assert_eq!(app.introspect(&fresh).await["active"], true);
    let login = app.login().await;
    assert_eq!(
        app.introspect(login["access_token"].as_str().unwrap())
            .await["active"],
        true
    );
    // Enabling with revoke_tokens makes no sense: refused.
    let enable = app
        .admin(Method::POST, "/admin/clients/svc/enable", &admin)
        .json(&json!({"revoke_tokens": true}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(enable, 400, "invalid_request").await;
}

#[tokio::test]
async fn concurrent_revocations_by_one_client_stay_within_the_bound() {
    let app = spawn_app().await;
    let secret = app
        .create_confidential_client("billing", &["client_credentials"], &["reports"])
        .await;
    let mut tokens = Vec::new();
    for _ in 0..40 {
        tokens.push(service_token_of(&app, "billing", &secret).await);
    }
    let revocations = tokens.iter().map(|access| {
        let (app, secret) = (&app, &secret);
        async move {
            app.http
                .post(format!("{}/auth/revoke", app.address))
                .basic_auth("billing", Some(secret))
                .form(&[("token", access.as_str())])
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    for status in futures_util::future::join_all(revocations).await {
        assert_eq!(status, 200);
    }
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM revocations WHERE client_id = 'billing' AND kind = 'access_token'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(rows <= 8, "{rows} jti entries");
    for access in &tokens {
        assert_eq!(app.introspect(access).await["active"], false);
    }
}
