//! Logs: structured, one line per request, and never a secret.

use crate::helpers::{PASSWORD, captured_logs, spawn_app};

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let app = spawn_app().await;
    app.seed().await;
    let secret = app
        .create_confidential_client("backend", &["password"], &["read"])
        .await;

    let body = app.login().await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let rotated: serde_json::Value = app.refresh("mobile", &refresh).await.json().await.unwrap();
    let url = format!("{}/auth/token", app.address);
    let wrong_password = "hunter2-wrong-password";
    app.password_grant("mobile", "alice", wrong_password).await;
    // A failed login's username may be a mistyped password: never logged.
    let typo_username = "alice-typed-her-password-here";
    app.password_grant("mobile", typo_username, wrong_password)
        .await;
    app.http
        .post(&url)
        .basic_auth("backend", Some(&secret))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    // A token in the query string must not be logged either.
    app.http
        .post(format!("{url}?refresh_token={refresh}"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let logs = captured_logs();
    // The capture works: this test's requests are there...
    assert!(
        logs.contains("/auth/token") && logs.contains("request_id"),
        "no request logs captured"
    );
    assert!(
        logs.contains("\"client_id\":\"backend\""),
        "client ids are logged"
    );
    // ...and none of its secrets.
    let key_material: String =
        sqlx::query_scalar("SELECT encode(private_key_encrypted, 'base64') FROM signing_keys")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let secrets = [
        PASSWORD,
        wrong_password,
        typo_username,
        secret.as_str(),
        access.as_str(),
        access.split('.').nth(2).unwrap(),
        refresh.as_str(),
        &refresh[4..],
        rotated["refresh_token"].as_str().unwrap(),
        rotated["access_token"].as_str().unwrap(),
        &key_material[..40],
    ];
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {}...",
            &secret[..8]
        );
    }
}

#[tokio::test]
async fn each_request_logs_one_structured_line_with_who_and_how_long() {
    let app = spawn_app().await;
    let user = app.seed().await;
    app.login().await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    let logs = captured_logs();
    let user = user.to_string();
    let line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["span"]["user_id"] == user.as_str() && l["span"]["name"] == "request")
        .unwrap_or_else(|| panic!("no request line for user {user}"));
    let span = &line["span"];
    assert_eq!(span["http.route"], "/auth/token");
    assert_eq!(span["http.status_code"], 200);
    assert_eq!(span["client_id"], "mobile");
    assert_eq!(span["grant_type"], "password");
    assert!(span["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(span["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0));
}

#[tokio::test]
async fn the_username_of_a_failed_login_is_never_logged() {
    let app = spawn_app().await;
    app.seed().await;
    // A password typed into the username field.
    let typed = "MyS3cretPassw0rdTypedAsUsername";
    let response = app.password_grant("mobile", typed, "whatever").await;
    assert_eq!(response.status(), 400);
    // Nor the client id of a failed client authentication (a secret pasted
    // into the wrong field).
    let pasted = "tss_PastedSecretInTheClientIdField";
    let response = app.password_grant(pasted, "alice", "whatever").await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        app.password_grant("mobile", "alice", "wrong password")
            .await
            .status(),
        400
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let logs = captured_logs();
    assert!(logs.contains("/auth/token"), "the capture works");
    assert!(!logs.to_lowercase().contains(&typed.to_lowercase()));
    assert!(!logs.contains(pasted));
}

#[test]
fn the_local_profile_logs_at_info() {
    let local =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/local.yaml")).unwrap();
    let yaml: serde_yaml::Value = serde_yaml::from_str(&local).unwrap();
    assert_eq!(yaml["log"]["level"], "info");
}

#[tokio::test]
async fn a_burst_of_malformed_requests_logs_no_errors_and_a_few_info_lines() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app().await;
    let host = app.address.trim_start_matches("http://").to_owned();
    // Heads actix-http cannot parse (it logged each at ERROR), and bodies
    // Tessera refuses (tracing-actix-web logged each 4xx at WARN).
    for i in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        let head = if i % 2 == 0 {
            "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"
        } else {
            "GET /healthz HTTP/9.9\r\n\r\n"
        };
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        assert!(response.starts_with(b"HTTP/1.1 400"));
    }
    for _ in 0..20 {
        let response = app
            .http
            .post(format!("{}/auth/token", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=%ZZ&grant_type=password")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
    }
    let reported = "HTTP connection refused or broken";
    let started = std::time::Instant::now();
    while !captured_logs().contains(reported) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "malformed requests are not reported at all"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let logs = captured_logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let from_http_layer = |line: &&serde_json::Value| {
        let target = line["target"].as_str().unwrap_or_default();
        target.starts_with("actix_http") || target.starts_with("tracing_actix_web")
    };
    let loud: Vec<_> = lines
        .iter()
        .filter(|l| l["level"] == "ERROR" || l["level"] == "WARN")
        .filter(from_http_layer)
        .collect();
    assert!(loud.is_empty(), "{loud:?}");
    // Reported at INFO, a line or two a minute, not one per request (other
    // tests' malformed requests share the same window).
    let reports: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(reported))
        })
        .collect();
    assert!(
        !reports.is_empty() && reports.len() < 10,
        "{} reports of 50 malformed requests",
        reports.len()
    );
    assert!(reports.iter().all(|l| l["level"] == "INFO"));
}
