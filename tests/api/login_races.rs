//! A password login runs for a while (argon2) between reading the user and
//! starting its session: what an operator does meanwhile must win.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Held, PASSWORD, TestApp, spawn_app, spawn_app_with};

async fn live_sessions(app: &TestApp, user: uuid::Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// A login whose session statement starts while an admin call (`revoke`:
/// log out everywhere, or `disable`) holds the user row, and so waits for
/// it. Returns the login's status, its refresh's status, and the user's
/// live sessions afterwards.
async fn login_racing_admin(admin_path: &str) -> (u16, Option<u16>, i64) {
    let app = spawn_app().await;
    let user = app.seed().await;
    let admin = app.admin_token().await;
    // An existing session, so that the logout has one to revoke (and stalls on it).
    app.login().await;
    // One failed attempt, so that alice has a failure-count row to lock.
    assert_eq!(
        app.password_grant("mobile", "alice", "wrong")
            .await
            .status(),
        400
    );
    // Stops the next login before argon2 (it has read its "now").
    let before_hashing = Held::lock(
        &app.db.url,
        "SELECT 1 FROM login_throttle WHERE username = 'alice' FOR UPDATE",
    )
    .await;
    // Stops the admin call after it took the user row, before it commits.
    let admin_stalled = Held::lock(&app.db.url, "SELECT 1 FROM sessions FOR UPDATE").await;
    let login = async {
        let response = app.password_grant("mobile", "alice", PASSWORD).await;
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    };
    let operator = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let call = app
            .admin(
                Method::POST,
                &format!("/admin/users/{user}/{admin_path}"),
                &admin,
            )
            .send();
        let unblock = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            before_hashing.release().await; // the login hashes, then waits on the user row
            tokio::time::sleep(Duration::from_millis(800)).await;
            admin_stalled.release().await; // the admin call commits; the login goes on
        };
        tokio::join!(call, unblock).0.unwrap().status().as_u16()
    };
    let ((status, body), called) = tokio::join!(login, operator);
    assert_eq!(called, 200, "admin call");
    let refreshed = match body["refresh_token"].as_str() {
        Some(token) => Some(app.refresh("mobile", token).await.status().as_u16()),
        None => None,
    };
    (status, refreshed, live_sessions(&app, user).await)
}

#[tokio::test]
async fn a_login_in_flight_does_not_survive_log_out_everywhere() {
    let (status, refreshed, live) = login_racing_admin("revoke").await;
    assert_eq!(
        (status, refreshed, live),
        (400, None, 0),
        "login, its refresh, live sessions after log-out-everywhere"
    );
}

#[tokio::test]
async fn a_login_in_flight_does_not_survive_disable() {
    let (status, refreshed, live) = login_racing_admin("disable").await;
    assert_eq!(
        (status, refreshed, live),
        (400, None, 0),
        "login, its refresh, live sessions after disable"
    );
}

#[tokio::test]
async fn housekeeping_empties_a_sprayed_failure_table_despite_the_request_timeout() {
    let app = spawn_app_with(|s| {
        s.database.request_timeout = Duration::from_millis(200);
    })
    .await;
    // Every made-up username guessed leaves a row; one delete of them all
    // outlasts a request's timeout.
    sqlx::query(
        "INSERT INTO login_throttle (username, source, failures, locked_until, updated_at)
         SELECT 'spray' || g, '*', 1, NULL, now() - interval '2 days' FROM generate_series(1, 300000) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    tessera::housekeeping::run_once(&app.state, app.state.clock.now()).await;
    assert_eq!(app.count("login_throttle").await, 0);
}
