//! Key compromise: a distrusted signing key is dropped everywhere within a
//! second, replaced at once when it was signing, and pushed to verifiers.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_oauth_error, spawn_app, tessera, time_until};
use crate::revocation_stream::{Sse, open};

fn kid_of(jwt: &str) -> String {
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn jwks_kids(app: &TestApp) -> (Vec<String>, String) {
    let response = app.get("/.well-known/jwks.json").await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let kids = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    (kids, etag)
}

#[tokio::test]
async fn a_distrusted_signing_key_is_refused_everywhere_within_a_second_and_replaced() {
    let a = spawn_app().await;
    a.seed().await;
    let b = a.spawn_second_instance().await;
    let login = a.login().await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let leaked = kid_of(&access);
    let admin = b.admin_token().await;
    let reader = b.service_token("gateway", &["revocations:read"]).await;
    let (kids, etag) = jwks_kids(&b).await;
    assert!(kids.contains(&leaked));
    assert_eq!(b.introspect(&access).await["active"], true);

    let started = Instant::now();
    let done = tessera(
        Some(&a),
        &[
            "keys",
            "distrust",
            &leaked,
            "--reason",
            "found in a leaked backup",
        ],
        "",
        &[],
    );
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(said.contains("new key"), "{said}");
    // The other instance refuses its tokens within a second.
    time_until(|| async {
        b.introspect(&access).await["active"] == false
            && a.introspect(&access).await["active"] == false
    })
    .await;
    let took = started.elapsed();
    eprintln!("both instances refused the key's tokens after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let refused = b
        .admin(Method::GET, "/admin/keys", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let feed = b
        .http
        .get(format!("{}/auth/revocations", b.address))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 401);
    // Gone from the JWKS, whose ETag changes.
    let (kids, new_etag) = jwks_kids(&b).await;
    assert!(!kids.contains(&leaked), "{kids:?}");
    assert_ne!(new_etag, etag);
    // The app's next refresh gets a token of the new key, on either instance.
    let refreshed = b.refresh("mobile", &refresh).await;
    assert_eq!(refreshed.status(), 200);
    let fresh = refreshed.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_kid = kid_of(&fresh);
    assert_ne!(new_kid, leaked);
    assert!(kids.contains(&new_kid));
    assert_eq!(a.introspect(&fresh).await["active"], true);
    // A new operator token works; the key is listed as distrusted, with why.
    let admin = a.admin_token().await;
    let listed: Value = a
        .admin(Method::GET, "/admin/keys", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["distrusted"][0]["kid"], leaked.as_str());
    assert_eq!(
        listed["distrusted"][0]["distrust_reason"],
        "found in a leaked backup"
    );
    let shown = tessera(Some(&a), &["keys", "list"], "", &[]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("distrusted") && shown.contains("leaked backup"),
        "{shown}"
    );
    // Never again: a second distrust is refused, and so is an unknown kid.
    let again = a
        .admin(
            Method::POST,
            &format!("/admin/keys/{leaked}/distrust"),
            &admin,
        )
        .json(&json!({"reason": "again"}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(again, 409, "conflict").await;
    let unknown = a
        .admin(Method::POST, "/admin/keys/nope/distrust", &admin)
        .json(&json!({"reason": "typo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // The audit trail has it, with the reason.
    let audit: Value = a
        .admin(Method::GET, "/admin/audit", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "keys.distrust")
        .cloned()
        .unwrap();
    assert_eq!(entry["target"], leaked.as_str());
    assert_eq!(entry["reason"], "found in a leaked backup");
}

#[tokio::test]
async fn a_reason_is_required_and_revoke_sessions_ends_the_keys_sessions() {
    let app = spawn_app().await;
    app.seed().await;
    let first = app.login().await;
    let second = app.login().await;
    let leaked = kid_of(first["access_token"].as_str().unwrap());
    let admin = app.admin_token().await;
    let path = format!("/admin/keys/{leaked}/distrust");
    let no_reason = app
        .admin(Method::POST, &path, &admin)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(no_reason, 400, "invalid_request").await;
    let done: Value = app
        .admin(Method::POST, &path, &admin)
        .json(&json!({"reason": "memory dump", "revoke_sessions": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(done["replaced_by"].is_string());
    // Both logins' current tokens were the key's: both sessions end.
    assert!(done["sessions_ended"].as_u64().unwrap() >= 2, "{done}");
    for login in [first, second] {
        let refused = app
            .refresh("mobile", login["refresh_token"].as_str().unwrap())
            .await;
        assert_oauth_error(refused, 400, "invalid_grant").await;
    }
    // A login after it is signed by the new key and lives.
    let after = app.login().await;
    assert_eq!(
        kid_of(after["access_token"].as_str().unwrap()),
        done["replaced_by"].as_str().unwrap()
    );
    assert_eq!(
        app.refresh("mobile", after["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_feed_and_the_stream_carry_the_distrusted_key() {
    let app = spawn_app().await;
    let reader = app.service_token("gateway", &["revocations:read"]).await;
    let mut stream = Sse::new(open(&app, &reader, None, None).await);
    // A key published ahead of its time leaks: distrusting it leaves the
    // signing key (and the reader's token) alone.
    let rotated = tessera(Some(&app), &["keys", "rotate"], "", &[]);
    assert!(rotated.status.success());
    let said = String::from_utf8_lossy(&rotated.stdout);
    let pending = said.split_whitespace().nth(3).unwrap().to_owned();
    let done = tessera(
        Some(&app),
        &["keys", "distrust", &pending, "--reason", "test"],
        "",
        &[],
    );
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(!String::from_utf8_lossy(&done.stdout).contains("new key"));
    let (_, event, data) = stream.next_event(Duration::from_secs(2)).await.unwrap();
    assert_eq!(event, "revocation");
    assert_eq!(data, json!({"kind": "distrusted_key", "kid": pending}));
    let feed: Value = app
        .http
        .get(format!("{}/auth/revocations", app.address))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(feed["distrusted_keys"], json!([{"kid": pending}]));
    let (kids, _) = jwks_kids(&app).await;
    assert!(!kids.contains(&pending));
}

#[tokio::test]
async fn distrusting_a_key_brings_no_older_key_back() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let old = kid_of(&admin);
    let rotated = app
        .admin(Method::POST, "/admin/keys/rotate", &admin)
        .json(&json!({"delay_seconds": 0, "force": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 201);
    // The old key has expired: nothing it signed is valid any more.
    app.advance_clock(Duration::from_secs(601));
    let (kids, _) = jwks_kids(&app).await;
    assert!(!kids.contains(&old), "{kids:?}");
    let admin = app.admin_token().await;
    let leaked = kid_of(&admin);
    let done = app
        .admin(
            Method::POST,
            &format!("/admin/keys/{leaked}/distrust"),
            &admin,
        )
        .json(&json!({"reason": "leaked with its predecessor's backup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    // Its predecessor keeps its dates: expired, so neither published nor
    // trusted again.
    let (kids, _) = jwks_kids(&app).await;
    assert!(!kids.contains(&old) && !kids.contains(&leaked), "{kids:?}");
    assert_eq!(kids.len(), 1);
}

#[tokio::test]
async fn a_stream_opened_with_a_distrusted_keys_token_ends() {
    let app = spawn_app().await;
    let reader = app.service_token("gateway", &["revocations:read"]).await;
    let leaked = kid_of(&reader);
    let mut stream = Sse::new(open(&app, &reader, None, None).await);
    let done = tessera(
        Some(&app),
        &["keys", "distrust", &leaked, "--reason", "test"],
        "",
        &[],
    );
    assert!(done.status.success());
    // Its own key's entry may come first; then the stream ends.
    let mut ended = false;
    for _ in 0..3 {
        match stream.next_event(Duration::from_secs(5)).await {
            None => {
                ended = true;
                break;
            }
            Some(event) => eprintln!("stream: {event:?}"),
        }
    }
    assert!(ended, "the stream outlived the key that signed its token");
}
