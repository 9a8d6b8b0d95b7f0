//! Faults: a restarting instance, a database that restarts or hangs.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::helpers::{Held, spawn_app, start_on, test_settings};

#[tokio::test]
async fn a_starting_instance_trusts_no_token_until_its_denylist_is_loaded() {
    let a = spawn_app().await;
    let user = a.seed().await;
    let admin = a.admin_token().await;
    let revoked_admin = a.admin_token().await;
    let session = a.login().await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        a.admin(Method::GET, &format!("/admin/users/{user}/revoke"), &admin)
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    a.admin(Method::POST, &format!("/admin/users/{user}/revoke"), &admin)
        .send()
        .await
        .unwrap();
    a.admin(Method::POST, "/admin/tokens/revoke", &admin)
        .json(&serde_json::json!({"token": revoked_admin}))
        .send()
        .await
        .unwrap();

    // Hold the denylist back: the new instance loads its keys, then waits.
    let held = Held::lock(&a.db.url, "LOCK TABLE revocations IN ACCESS EXCLUSIVE MODE").await;
    let b = start_on(a.db.clone(), |_| {}).await;
    let started = Instant::now();
    let body = loop {
        let ready = b.get("/readyz").await;
        if let Ok(body) = ready.json::<Value>().await
            && body["keys"] == true
        {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "keys never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["revocations"], false);
    assert_eq!(b.get("/readyz").await.status(), 503);
    // Neither listener may call a revoked token valid meanwhile.
    let introspected = b.introspect_raw(&access).await;
    assert_eq!(introspected.status(), 503);
    assert!(introspected.headers().contains_key("retry-after"));
    assert_eq!(
        b.admin(Method::GET, "/admin/keys", &revoked_admin)
            .send()
            .await
            .unwrap()
            .status(),
        503
    );

    held.release().await;
    b.wait_until_ready().await;
    assert_eq!(b.introspect(&access).await["active"], false);
    assert_eq!(
        b.admin(Method::GET, "/admin/keys", &revoked_admin)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn a_database_fault_mid_refresh_is_a_503_and_spends_nothing() {
    let app = spawn_app().await;
    app.seed().await;
    let refresh = app.login().await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Park the refresh on the session's row lock, then kill its backend as a
    // database restart would (SQLSTATE 57P01).
    let held = Held::lock(&app.db.url, "SELECT id FROM sessions FOR UPDATE").await;
    let pending = tokio::spawn({
        let http = app.http.clone();
        let url = format!("{}/auth/token", app.address);
        let refresh = refresh.clone();
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", "mobile"),
                    ("refresh_token", &refresh),
                ])
                .send()
                .await
                .unwrap()
        }
    });
    let started = Instant::now();
    loop {
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if killed > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refresh never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let response = pending.await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "temporarily_unavailable"
    );
    held.release().await;
    // Nothing was spent: the same refresh token still works, once.
    assert_eq!(app.refresh("mobile", &refresh).await.status(), 200);
}

#[tokio::test]
async fn readyz_says_no_within_a_second_when_the_database_hangs() {
    // Accepts connections and never answers: a hung server or a black hole.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let url = format!("postgres://postgres@127.0.0.1:{port}/tessera");
    let mut settings = test_settings(&url);
    settings.database.acquire_timeout = Duration::from_secs(5);
    let app = tessera::startup::Application::build(settings, Default::default())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let asked = Instant::now();
        let ready = http.get(format!("{address}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "readyz took {:?}",
            asked.elapsed()
        );
    }
    held.abort();
}

#[tokio::test]
async fn a_stalled_refresh_is_rolled_back_before_the_client_gives_up() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.database.request_timeout = Duration::from_millis(500);
    })
    .await;
    app.seed().await;
    let refresh = app.login().await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let held = Held::lock(&app.db.url, "SELECT id FROM sessions FOR UPDATE").await;
    let asked = Instant::now();
    let response = app.refresh("mobile", &refresh).await;
    assert_eq!(response.status(), 503);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    // The database comes back after the deadline: nothing was spent, so
    // the retry is a plain rotation, not "reuse".
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.release().await;
    assert_eq!(app.refresh("mobile", &refresh).await.status(), 200);
    let reused: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(reused, 0);
}

#[tokio::test]
async fn revocation_before_the_keys_are_loaded_is_a_503_not_a_silent_200() {
    let a = spawn_app().await;
    a.seed().await;
    let access = a.login().await["access_token"].as_str().unwrap().to_owned();
    let held = Held::lock(
        &a.db.url,
        "LOCK TABLE signing_keys IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let b = start_on(a.db.clone(), |_| {}).await;
    let revoke = || {
        b.http
            .post(format!("{}/auth/revoke", b.address))
            .form(&[("client_id", "mobile"), ("token", access.as_str())])
            .send()
    };
    let response = revoke().await.unwrap();
    assert_eq!(response.status(), 503);
    held.release().await;
    b.wait_until_ready().await;
    assert_eq!(revoke().await.unwrap().status(), 200);
    assert_eq!(a.introspect(&access).await["active"], false);
}

#[tokio::test]
async fn a_read_only_database_is_not_ready_and_writes_are_503() {
    let app = spawn_app().await;
    app.seed().await;
    let db = app.db.name.clone();
    let set = |on: bool| {
        let sql = format!(
            r#"ALTER DATABASE "{db}" SET default_transaction_read_only = {}"#,
            if on { "on" } else { "off" }
        );
        let pool = app.pool.clone();
        async move {
            // From the maintenance database: once ours is read-only, our own
            // sessions cannot run ALTER DATABASE any more.
            let mut admin = PgConnection::connect(crate::postgres::server_url())
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .unwrap();
            // New sessions pick the setting up: end the service's.
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    set(true).await;
    assert_eq!(app.get("/readyz").await.status(), 503);
    let login = app
        .password_grant("mobile", "alice", crate::helpers::PASSWORD)
        .await;
    assert_eq!(login.status(), 503);
    assert!(login.headers().contains_key("retry-after"));
    set(false).await;
    app.wait_until_ready().await;
    app.login().await;
}

#[tokio::test]
async fn postgres_cancels_a_statement_that_outlives_the_request_timeout() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.database.request_timeout = Duration::from_millis(300);
    })
    .await;
    let asked = Instant::now();
    let error = sqlx::query("SELECT pg_sleep(5)")
        .execute(&app.state.pool)
        .await
        .unwrap_err();
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    let code = error.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("57014"), "{error}");
    assert!(tessera::error::is_unavailable(&error));
}

#[tokio::test]
async fn migrations_are_not_bound_by_the_request_timeout() {
    let app = spawn_app().await;
    // Migrations wait for this lock longer than a request may.
    let held = Held::lock(
        &app.db.url,
        "LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let url = app.db.url.clone();
    let migrate = tokio::task::spawn_blocking(move || {
        let asked = Instant::now();
        let output = crate::helpers::tessera(
            None,
            &["migrate"],
            "",
            &[
                ("TESSERA__DATABASE__URL", url.as_str()),
                ("TESSERA__DATABASE__REQUEST_TIMEOUT", "1s"),
            ],
        );
        (output, asked.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    held.release().await;
    let (output, took) = migrate.await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(took >= Duration::from_secs(2), "it never waited: {took:?}");
}
