//! The binary as an orchestrator runs it: health checks, SIGTERM, metrics.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{PASSWORD, TestApp, spawn_app};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
    envs: Vec<(String, String)>,
}

impl Server {
    pub(crate) fn start(app: &TestApp, extra: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut envs = vec![
            ("TESSERA__DATABASE__URL".to_owned(), app.db.url.clone()),
            (
                "TESSERA__HTTP__PUBLIC_ADDR".to_owned(),
                format!("127.0.0.1:{port}"),
            ),
            (
                "TESSERA__HTTP__ADMIN_ADDR".to_owned(),
                format!("127.0.0.1:{}", free_port()),
            ),
        ];
        envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("serve")
            .env_remove("TESSERA_ENV")
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Server { child, port, envs }
    }

    pub(crate) fn healthcheck(&self) -> bool {
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("healthcheck")
            .env_remove("TESSERA_ENV")
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    pub(crate) async fn wait_until_healthy(&self) {
        let started = Instant::now();
        while !self.healthcheck() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never became healthy"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < limit, "did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let app = spawn_app().await;
    app.seed().await;
    let mut server = Server::start(&app, &[("TESSERA__HTTP__SHUTDOWN_TIMEOUT", "10s")]);
    server.wait_until_healthy().await;

    let url = format!("http://127.0.0.1:{}/auth/token", server.port);
    let http = reqwest::Client::new();
    let logins: Vec<_> = (0..6)
        .map(|_| {
            let request = http.post(&url).form(&[
                ("grant_type", "password"),
                ("client_id", "mobile"),
                ("username", "alice"),
                ("password", PASSWORD),
            ]);
            tokio::spawn(request.send())
        })
        .collect();
    // Let the requests reach the server (six logins queue on argon2), then stop it.
    tokio::time::sleep(Duration::from_millis(30)).await;
    server.terminate();

    for login in logins {
        let response = login.await.unwrap().expect("in-flight request completed");
        assert_eq!(response.status(), 200);
    }
    let status = server.wait_for_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    assert!(
        !server.healthcheck(),
        "healthcheck must fail once the service is gone"
    );
}

#[tokio::test]
async fn serve_migrate_creates_a_missing_database_and_becomes_ready() {
    // First start against a database that does not exist yet: `serve
    // --migrate` (what compose runs) creates it, migrates and becomes ready.
    let database = crate::helpers::TestDatabase::adopt(format!(
        "tessera_new_{}",
        uuid::Uuid::new_v4().simple()
    ));
    let url = database.url.clone();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--migrate"])
        .env_remove("TESSERA_ENV")
        .env("TESSERA__DATABASE__URL", &url)
        .env("TESSERA__HTTP__PUBLIC_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "TESSERA__HTTP__ADMIN_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let started = Instant::now();
    loop {
        if reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_listener_only() {
    let app = spawn_app().await;
    app.seed().await;
    let session = app.login().await;
    app.password_grant("mobile", "alice", "wrong password")
        .await;
    let t0 = session["refresh_token"].as_str().unwrap();
    let t1: serde_json::Value = app.refresh("mobile", t0).await.json().await.unwrap();
    app.refresh("mobile", t1["refresh_token"].as_str().unwrap())
        .await;
    app.refresh("mobile", t0).await; // reuse
    app.http
        .post(format!("{}/auth/revoke", app.address))
        .form(&[
            ("client_id", "mobile"),
            ("token", session["access_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();

    assert_eq!(app.get("/metrics").await.status(), 404);
    let response = app
        .http
        .get(format!("{}/metrics", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for expected in [
        r#"tessera_http_requests_total{route="/auth/token",method="POST",status="200"}"#,
        r#"tessera_http_request_duration_seconds_bucket{route="/auth/token",method="POST",status="200",le="0.1"}"#,
        r#"tessera_tokens_issued_total{grant_type="password"}"#,
        r#"tessera_tokens_issued_total{grant_type="refresh_token"}"#,
        "tessera_login_failures_total",
        "tessera_refresh_reuse_detected_total",
        r#"tessera_revocations_total{kind="session"}"#,
        "tessera_password_hash_queue_depth",
        "tessera_password_hash_wait_seconds_bucket",
        r#"tessera_db_pool_connections{state="idle"}"#,
        "tessera_db_pool_max_connections",
    ] {
        assert!(text.contains(expected), "missing {expected}");
    }
}
