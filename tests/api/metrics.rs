//! The README's monitoring table against what `/metrics` serves: the same
//! metrics, types and labels; every counter at zero from startup for each
//! documented label value; and no label value the table does not list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{TestDatabase, spawn_app_with};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One row of the README's monitoring table.
#[derive(Debug)]
struct Documented {
    kind: String,
    labels: Vec<String>,
    /// Label values listed as `label`: `a`, `b` (one enumerated label at most).
    values: Option<(String, BTreeSet<String>)>,
}

/// Backticked words of a table cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn documented_metrics() -> BTreeMap<String, Documented> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("docs/operations.md")).unwrap();
    let section = readme
        .split("\n## Monitoring")
        .nth(1)
        .expect("a Monitoring section");
    let rows: Vec<&str> = section
        .lines()
        .skip_while(|l| !l.starts_with("| Metric |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(!rows.is_empty(), "no monitoring table");
    rows.iter()
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 4, "Metric | Type | Labels | What: {row}");
            let names = ticked(cells[0]);
            assert_eq!(names.len(), 1, "one metric per row: {row}");
            let (labels, values) = match cells[2].split_once(':') {
                Some((label, values)) => {
                    let label = ticked(label);
                    assert_eq!(label.len(), 1, "{row}");
                    let values = ticked(values).into_iter().collect();
                    (label.clone(), Some((label[0].clone(), values)))
                }
                None => (ticked(cells[2]), None),
            };
            (
                names[0].clone(),
                Documented {
                    kind: cells[1].to_owned(),
                    labels,
                    values,
                },
            )
        })
        .collect()
}

/// A parsed Prometheus text exposition.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    /// (metric session, labels without `le`, value)
    series: Vec<(String, BTreeMap<String, String>, f64)>,
}

fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match head.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (head, ""),
        };
        let mut parsed = BTreeMap::new();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            if k != "le" {
                parsed.insert(k.to_owned(), v.trim_matches('"').to_owned());
            }
        }
        let session = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| out.types.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        out.series
            .push((session.to_owned(), parsed, value.parse().unwrap()));
    }
    out
}

fn check_names_types_and_labels(exposition: &Exposition) {
    let documented = documented_metrics();
    let served: BTreeSet<&String> = exposition
        .types
        .keys()
        .filter(|n| n.starts_with("tessera_"))
        .collect();
    let listed: BTreeSet<&String> = documented.keys().collect();
    assert_eq!(served, listed, "README table vs /metrics");
    for (name, doc) in &documented {
        assert_eq!(&exposition.types[name], &doc.kind, "type of {name}");
        for (session, labels, _) in exposition.series.iter().filter(|s| &s.0 == name) {
            let keys: Vec<&String> = labels.keys().collect();
            let mut expected: Vec<&String> = doc.labels.iter().collect();
            expected.sort();
            assert_eq!(keys, expected, "labels of {session}");
            if let Some((label, values)) = &doc.values {
                assert!(
                    values.contains(&labels[label]),
                    "{name}{{{label}=\"{}\"}} is served but not in the README",
                    labels[label]
                );
            }
        }
    }
}

async fn scrape(url: &str) -> Exposition {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    parse(&response.text().await.unwrap())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process of its own: the metrics registry is process-wide, and the
/// other tests in this binary move the counters.
#[tokio::test]
async fn a_fresh_process_serves_every_documented_metric_with_counters_at_zero() {
    let database =
        TestDatabase::adopt(format!("tessera_metrics_{}", uuid::Uuid::new_v4().simple()));
    let port = free_port();
    let admin_port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--migrate"])
        .current_dir(std::env::temp_dir())
        .env_remove("TESSERA_ENV")
        .env("TESSERA__DATABASE__URL", &database.url)
        .env("TESSERA__HTTP__PUBLIC_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "TESSERA__HTTP__ADMIN_ADDR",
            format!("127.0.0.1:{admin_port}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let started = Instant::now();
    while !reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
        assert!(child.try_wait().unwrap().is_none(), "tessera exited");
        assert!(started.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exposition = scrape(&format!("http://127.0.0.1:{admin_port}/metrics")).await;
    let _ = child.kill();
    let _ = child.wait();

    check_names_types_and_labels(&exposition);
    for (name, doc) in documented_metrics() {
        if doc.kind != "counter" || name.starts_with("tessera_http_") {
            continue;
        }
        let series: Vec<_> = exposition.series.iter().filter(|s| s.0 == name).collect();
        match &doc.values {
            Some((label, values)) => {
                let served: BTreeSet<String> = series.iter().map(|s| s.1[label].clone()).collect();
                assert_eq!(&served, values, "{name} at startup");
            }
            None => assert_eq!(series.len(), 1, "{name} at startup"),
        }
        for (_, labels, value) in series {
            assert_eq!(*value, 0.0, "{name}{labels:?} at startup");
        }
    }
}

/// After every kind of event, the label values are still the documented
/// ones, and each documented value has been counted (so the table cannot
/// list a value the code never emits).
#[tokio::test]
async fn every_event_is_counted_under_a_documented_label() {
    // Low limits, so this test throttles by account and by address itself.
    let app = spawn_app_with(|s| {
        s.login.lockout_threshold = 1;
        s.login.address_burst = 3;
    })
    .await;
    let user_id = app.seed().await;
    let secret = app
        .create_confidential_client("metrics-svc", &["client_credentials"], &["read"])
        .await;
    // A service token, revoked: one access token denylisted.
    let service: serde_json::Value = app
        .client_token("metrics-svc", &secret, None)
        .await
        .json()
        .await
        .unwrap();
    let revoked = app
        .http
        .post(format!("{}/auth/revoke", app.address))
        .basic_auth("metrics-svc", Some(&secret))
        .form(&[("token", service["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let session = app.login().await;
    // A login through the challenge endpoint, its code redeemed.
    app.create_public_client("first-party", &["authorization_code"], &["read"])
        .await;
    let verifier = "v".repeat(43);
    let challenge = {
        use base64::Engine;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    };
    let code: serde_json::Value = app
        .http
        .post(format!("{}/auth/challenge", app.address))
        .form(&[
            ("client_id", "first-party"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("username", "alice"),
            ("password", crate::helpers::PASSWORD),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let redeemed = app
        .post_token(&[
            ("grant_type", "authorization_code"),
            ("client_id", "first-party"),
            ("code", code["authorization_code"].as_str().unwrap()),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(redeemed.status(), 200);
    app.password_grant("mobile", "nobody-0", "wrong password")
        .await;
    let t0 = session["refresh_token"].as_str().unwrap();
    let t1: serde_json::Value = app.refresh("mobile", t0).await.json().await.unwrap();
    // Past the grace period for lost responses: reuse, the login is revoked.
    app.advance_clock(std::time::Duration::from_secs(11));
    app.refresh("mobile", t0).await;
    let revoke = |token: String| {
        app.http
            .post(format!("{}/auth/revoke", app.address))
            .form(&[("client_id", "mobile".to_owned()), ("token", token)])
            .send()
    };
    let second = app.login().await;
    revoke(second["access_token"].as_str().unwrap().to_owned())
        .await
        .unwrap();
    revoke(second["refresh_token"].as_str().unwrap().to_owned())
        .await
        .unwrap();
    assert!(t1["refresh_token"].is_string());
    let token = app.admin_token().await;
    let response = app
        .admin(
            reqwest::Method::POST,
            &format!("/admin/users/{user_id}/revoke"),
            &token,
        )
        .json(&json!({"reason": "metrics test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A client whose every token is revoked (the leaked-secret drill).
    let client = app
        .create_confidential_client("leaky", &["client_credentials"], &[])
        .await;
    drop(client);
    let response = app
        .admin(reqwest::Method::POST, "/admin/clients/leaky/secret", &token)
        .json(&json!({"revoke_tokens": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Last, as they lock alice and this address: alice's first failure
    // locks her (threshold 1), so the second is refused by `account`; the
    // guesses at unknown names then empty this address's bucket (`address`).
    for username in ["alice", "alice", "nobody-1", "nobody-2", "nobody-3"] {
        app.password_grant("mobile", username, "wrong password")
            .await;
    }
    let exposition = scrape(&format!("{}/metrics", app.admin_address)).await;
    check_names_types_and_labels(&exposition);
    for (name, doc) in documented_metrics() {
        let Some((label, values)) = &doc.values else {
            continue;
        };
        if doc.kind != "counter" {
            continue;
        }
        for value in values {
            let counted = exposition
                .series
                .iter()
                .any(|(n, labels, v)| n == &name && &labels[label] == value && *v > 0.0);
            assert!(counted, "{name}{{{label}=\"{value}\"}} was never counted");
        }
    }
    for name in [
        "tessera_login_failures_total",
        "tessera_refresh_reuse_detected_total",
    ] {
        assert!(
            exposition.series.iter().any(|s| s.0 == name && s.2 > 0.0),
            "{name} was not counted"
        );
    }
}
