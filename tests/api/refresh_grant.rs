use std::time::Duration;

use serde_json::Value;
use tessera::domain::TokenHash;

use crate::helpers::{assert_oauth_error, spawn_app, spawn_app_with};

fn refresh_token(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

async fn session_revoked(app: &crate::helpers::TestApp) -> bool {
    sqlx::query_scalar("SELECT bool_and(revoked_at IS NOT NULL) FROM sessions")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_refresh_rotates_the_token() {
    let app = spawn_app().await;
    app.seed().await;
    let first = refresh_token(&app.login().await);

    let response = app.refresh("mobile", &first).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let second = refresh_token(&body);
    assert_ne!(first, second);
    assert_eq!(body["scope"], "read write");
    assert_eq!(
        app.live_refresh_tokens().await,
        vec![TokenHash::of(&second).0.to_vec()]
    );
    assert_eq!(app.refresh("mobile", &second).await.status(), 200);
}

#[tokio::test]
async fn reusing_a_spent_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    app.seed().await;
    let t0 = refresh_token(&app.login().await);
    let t1 = refresh_token(&app.refresh("mobile", &t0).await.json().await.unwrap());
    let latest: Value = app.refresh("mobile", &t1).await.json().await.unwrap();
    let t2 = refresh_token(&latest);
    let access = latest["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], true);

    // t0's child t1 has been used, so the grace rule cannot apply: reuse.
    assert_oauth_error(app.refresh("mobile", &t0).await, 400, "invalid_grant").await;

    assert!(session_revoked(&app).await);
    assert_oauth_error(app.refresh("mobile", &t2).await, 400, "invalid_grant").await;
    assert!(app.live_refresh_tokens().await.is_empty());
    // Whoever holds the leaked token's access tokens loses them too.
    assert_eq!(app.introspect(access).await["active"], false);
}

#[tokio::test]
async fn a_lost_response_can_be_retried_within_the_grace_period() {
    let app = spawn_app().await;
    app.seed().await;
    let t0 = refresh_token(&app.login().await);
    let lost = refresh_token(&app.refresh("mobile", &t0).await.json().await.unwrap());

    app.advance_clock(Duration::from_secs(5));
    let retry = app.refresh("mobile", &t0).await;
    assert_eq!(retry.status(), 200);
    let replacement = refresh_token(&retry.json().await.unwrap());

    // Only the replacement is live; the unused child was revoked, not the session.
    assert_eq!(
        app.live_refresh_tokens().await,
        vec![TokenHash::of(&replacement).0.to_vec()]
    );
    assert_eq!(app.refresh("mobile", &replacement).await.status(), 200);
    assert!(!session_revoked(&app).await);

    // The revoked child showing up later is reuse.
    assert_oauth_error(app.refresh("mobile", &lost).await, 400, "invalid_grant").await;
    assert!(session_revoked(&app).await);
}

#[tokio::test]
async fn after_the_grace_period_a_second_use_is_reuse() {
    let app = spawn_app().await;
    app.seed().await;
    let t0 = refresh_token(&app.login().await);
    let t1 = refresh_token(&app.refresh("mobile", &t0).await.json().await.unwrap());

    app.advance_clock(Duration::from_secs(11));
    assert_oauth_error(app.refresh("mobile", &t0).await, 400, "invalid_grant").await;
    assert_oauth_error(app.refresh("mobile", &t1).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn concurrent_refreshes_leave_exactly_one_live_token() {
    let app = spawn_app().await;
    app.seed().await;
    let t0 = refresh_token(&app.login().await);

    let attempts = (0..10).map(|_| app.refresh("mobile", &t0));
    let responses = futures_util::future::join_all(attempts).await;

    let mut issued = Vec::new();
    for response in responses {
        assert_eq!(
            response.status(),
            200,
            "within the grace period every retry is served"
        );
        issued.push(refresh_token(&response.json().await.unwrap()));
    }
    let live = app.live_refresh_tokens().await;
    assert_eq!(live.len(), 1);
    let winners: Vec<_> = issued
        .iter()
        .filter(|t| TokenHash::of(t).0.to_vec() == live[0])
        .collect();
    assert_eq!(winners.len(), 1);
    assert_eq!(app.refresh("mobile", winners[0]).await.status(), 200);
}

#[tokio::test]
async fn without_a_grace_period_exactly_one_concurrent_refresh_wins() {
    let app = spawn_app_with(|s| s.tokens.refresh_grace = Duration::ZERO).await;
    app.seed().await;
    let t0 = refresh_token(&app.login().await);

    let attempts = (0..10).map(|_| app.refresh("mobile", &t0));
    let responses = futures_util::future::join_all(attempts).await;

    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        9,
        "{statuses:?}"
    );
    // The losers presented a spent token: that is reuse, so the session is gone.
    assert!(session_revoked(&app).await);
}

#[tokio::test]
async fn refresh_may_narrow_but_not_widen_scope_and_failures_change_nothing() {
    let app = spawn_app().await;
    app.seed().await;
    let t0 = refresh_token(&app.login().await);
    let before: Vec<(Option<chrono::DateTime<chrono::Utc>>,)> =
        sqlx::query_as("SELECT used_at FROM refresh_tokens")
            .fetch_all(&app.pool)
            .await
            .unwrap();

    let widen = app
        .post_token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "mobile"),
            ("refresh_token", &t0),
            ("scope", "read profile"),
        ])
        .await;
    assert_oauth_error(widen, 400, "invalid_scope").await;
    let after: Vec<(Option<chrono::DateTime<chrono::Utc>>,)> =
        sqlx::query_as("SELECT used_at FROM refresh_tokens")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(before, after, "a failed refresh must not spend the token");

    let narrow = app
        .post_token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "mobile"),
            ("refresh_token", &t0),
            ("scope", "read"),
        ])
        .await;
    assert_eq!(narrow.status(), 200);
    let body: Value = narrow.json().await.unwrap();
    assert_eq!(body["scope"], "read");
    // The new refresh token keeps the original grant.
    let again: Value = app
        .refresh("mobile", &refresh_token(&body))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["scope"], "read write");
}

#[tokio::test]
async fn refresh_tokens_are_bound_to_their_client_and_expire() {
    let app = spawn_app().await;
    app.seed().await;
    app.create_public_client("other-app", &["refresh_token"], &["read", "write"])
        .await;
    let t0 = refresh_token(&app.login().await);

    assert_oauth_error(app.refresh("other-app", &t0).await, 400, "invalid_grant").await;
    assert_oauth_error(
        app.refresh("mobile", "tsr_not-a-real-token").await,
        400,
        "invalid_grant",
    )
    .await;
    // Still usable by its own client: the failures above changed nothing.
    let t1 = refresh_token(&app.refresh("mobile", &t0).await.json().await.unwrap());

    app.advance_clock(Duration::from_secs(30 * 86400 + 1));
    assert_oauth_error(app.refresh("mobile", &t1).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn disabling_a_user_stops_refresh() {
    let app = spawn_app().await;
    app.seed().await;
    let t0 = refresh_token(&app.login().await);
    sqlx::query("UPDATE users SET disabled = true")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_oauth_error(app.refresh("mobile", &t0).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn a_replayed_token_asking_for_more_scope_is_still_reuse() {
    let app = spawn_app().await;
    app.seed().await;
    let t0 = refresh_token(&app.login().await);
    let t1 = refresh_token(&app.refresh("mobile", &t0).await.json().await.unwrap());
    app.refresh("mobile", &t1).await;

    let greedy = app
        .post_token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "mobile"),
            ("refresh_token", &t0),
            ("scope", "admin"),
        ])
        .await;
    assert_oauth_error(greedy, 400, "invalid_grant").await;
    assert!(session_revoked(&app).await);
}

#[tokio::test]
async fn a_login_verified_against_a_password_that_changed_meanwhile_gets_no_session() {
    let app = spawn_app().await;
    let user = app.seed().await;
    let verified: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // The password is reset while the login's argon2 check is running...
    sqlx::query("UPDATE users SET password_hash = 'changed'")
        .execute(&app.pool)
        .await
        .unwrap();
    // ...so the session it then tries to create is refused.
    let username = tessera::domain::Username::parse("alice").unwrap();
    let session = tessera::store::login::NewSession {
        user_id: user,
        username: &username,
        who: tessera::store::login_throttle::Attempter {
            source: "ip:127.0.0.1",
            trusted: false,
        },
        policy: tessera::throttle::policy(&app.state.settings.login),
        verified_hash: &verified,
        client_id: "mobile",
        scope: "read",
        expires_at: app.state.clock.now() + chrono::Duration::days(1),
        dpop_jkt: None,
    };
    let token = tessera::domain::RefreshToken::generate();
    let created = tessera::store::login::start_session(
        &app.pool,
        session,
        Some(&token.hash()),
        None,
        app.state.clock.now(),
    )
    .await
    .unwrap();
    assert!(matches!(
        created,
        tessera::store::login::Started::UserChanged
    ));
    assert_eq!(app.count("sessions").await, 0);
}

#[tokio::test]
async fn a_refresh_never_grants_more_than_the_client_may_have_now() {
    let app = spawn_app().await;
    app.seed().await;
    let t0 = refresh_token(&app.login().await);
    // The operator narrows the client after the login.
    sqlx::query("UPDATE clients SET scopes = '{read}' WHERE client_id = 'mobile'")
        .execute(&app.pool)
        .await
        .unwrap();
    let token = std::sync::Mutex::new(t0);
    let took = crate::helpers::time_until(|| {
        let (app, token) = (&app, &token);
        async move {
            let presented = token.lock().unwrap().clone();
            let response = app.refresh("mobile", &presented).await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            *token.lock().unwrap() = refresh_token(&body);
            body["scope"] == "read"
        }
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let token = token.into_inner().unwrap();
    // Asking for what the client lost is refused, and spends nothing.
    let wider = app
        .post_token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "mobile"),
            ("refresh_token", &token),
            ("scope", "read write"),
        ])
        .await;
    assert_oauth_error(wider, 400, "invalid_scope").await;
    assert_eq!(app.refresh("mobile", &token).await.status(), 200);
}
