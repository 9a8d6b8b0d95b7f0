//! The admin API: its own listener, bearer tokens with `admin`, audit rows.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp, spawn_app};

pub(crate) async fn audit_actions(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn admin_routes_exist_only_on_the_admin_listener() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let public = app
        .http
        .get(format!("{}/admin/keys", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let admin = app
        .admin(Method::GET, "/admin/keys", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    // And the public API is not on the admin listener.
    let token_on_admin = app
        .http
        .post(format!("{}/auth/token", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(token_on_admin.status(), 404);
}

#[tokio::test]
async fn admin_calls_need_a_valid_token_with_the_admin_scope() {
    let app = spawn_app().await;
    app.seed().await;
    let user_token = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let service = app.service_token("reporting", &["reports"]).await;
    let url = format!("{}/admin/keys", app.admin_address);

    let none = app.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(
        none.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    for bad in ["garbage", "a.b.c", &format!("{user_token}x")] {
        let response = app.http.get(&url).bearer_auth(bad).send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": "invalid_token", "error_description": "a valid bearer token is required"})
        );
    }
    // Asked twice each: refusals are recorded once a minute per caller and call.
    for without_admin in [&user_token, &service, &user_token, &service] {
        let response = app
            .http
            .get(&url)
            .bearer_auth(without_admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"],
            "insufficient_scope"
        );
    }
    // Refusals to a valid token are audited (who asked for what); calls
    // without a valid token are not stored.
    let refused: Vec<(String, Option<String>, String, String)> =
        sqlx::query_as("SELECT actor, actor_client_id, action, outcome FROM audit_log ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(refused.len(), 2, "{refused:?}");
    for (actor, client_id, action, outcome) in &refused {
        assert_eq!(action, "GET /admin/keys");
        assert_eq!(outcome, "denied");
        assert!(client_id.is_some() && !actor.is_empty());
    }
    assert_eq!(refused[0].1.as_deref(), Some("mobile"));
    assert_eq!(refused[1].1.as_deref(), Some("reporting"));

    // An admin user's password-grant token works too.
    app.create_user("root", PASSWORD, &["admin"]).await;
    app.create_public_client("console", &["password"], &["admin"])
        .await;
    let body: Value = app
        .password_grant("console", "root", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let admin_user = body["access_token"].as_str().unwrap();
    assert_eq!(
        app.http
            .get(&url)
            .bearer_auth(admin_user)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn operators_manage_users_and_every_action_is_audited() {
    let app = spawn_app().await;
    app.create_public_client("mobile", &["password", "refresh_token"], &["read"])
        .await;
    let token = app.admin_token().await;

    let created = app
        .admin(Method::POST, "/admin/users", &token)
        .json(&json!({"username": "dora", "password": PASSWORD, "scopes": ["read"], "reason": "onboarding"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let user: Value = created.json().await.unwrap();
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(user["username"], "dora");
    assert!(user.get("password_hash").is_none());
    assert_eq!(
        app.password_grant("mobile", "dora", PASSWORD)
            .await
            .status(),
        200
    );

    let again = app
        .admin(Method::POST, "/admin/users", &token)
        .json(&json!({"username": "dora", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);

    let read: Value = app
        .admin(Method::GET, &format!("/admin/users/{id}"), &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["id"], id.as_str());

    // Disabling logs dora out and stops logins; enabling lets her back in.
    let session = app
        .password_grant("mobile", "dora", PASSWORD)
        .await
        .json::<Value>()
        .await
        .unwrap();
    let disabled = app
        .admin(Method::POST, &format!("/admin/users/{id}/disable"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    assert_eq!(disabled.json::<Value>().await.unwrap()["disabled"], true);
    assert_eq!(
        app.password_grant("mobile", "dora", PASSWORD)
            .await
            .status(),
        400
    );
    assert_eq!(
        app.refresh("mobile", session["refresh_token"].as_str().unwrap())
            .await
            .status(),
        400
    );
    assert_eq!(
        app.introspect(session["access_token"].as_str().unwrap())
            .await["active"],
        false
    );
    app.admin(Method::POST, &format!("/admin/users/{id}/enable"), &token)
        .send()
        .await
        .unwrap();
    app.advance_clock(std::time::Duration::from_secs(1));
    assert_eq!(
        app.password_grant("mobile", "dora", PASSWORD)
            .await
            .status(),
        200
    );

    // A new password works, the old one does not, and sessions are gone.
    let before = app
        .password_grant("mobile", "dora", PASSWORD)
        .await
        .json::<Value>()
        .await
        .unwrap();
    let set = app
        .admin(Method::PUT, &format!("/admin/users/{id}/password"), &token)
        .json(&json!({"password": "a brand new password", "reason": "reset request #42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    assert_eq!(
        app.password_grant("mobile", "dora", PASSWORD)
            .await
            .status(),
        400
    );
    assert_eq!(
        app.password_grant("mobile", "dora", "a brand new password")
            .await
            .status(),
        200
    );
    assert_eq!(
        app.refresh("mobile", before["refresh_token"].as_str().unwrap())
            .await
            .status(),
        400
    );

    assert_eq!(
        audit_actions(&app).await,
        [
            "user.create",
            // The refused second creation (409), recorded with its outcome.
            "POST /admin/users",
            "user.read",
            "user.disable",
            "user.enable",
            "user.set_password"
        ]
    );
    let (actor, reason): (String, Option<String>) =
        sqlx::query_as("SELECT actor, reason FROM audit_log WHERE action = 'user.set_password'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(actor.starts_with("ops-"));
    assert_eq!(reason.as_deref(), Some("reset request #42"));
    let logged: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(reason, '') || target FROM audit_log")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(
        logged
            .iter()
            .all(|l| !l.contains(PASSWORD) && !l.contains("brand new"))
    );
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_one_by_one() {
    let app = spawn_app().await;
    let user = app.seed().await;
    let token = app.admin_token().await;
    let first = app.login().await;
    let second = app.login().await;

    let list: Value = app
        .admin(
            Method::GET,
            &format!("/admin/users/{user}/sessions"),
            &token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["client_id"], "mobile");
    assert!(sessions[0]["created_at"].is_string() && sessions[0].get("last_used_at").is_some());

    // Revoke the session of the first login only.
    let session: uuid::Uuid =
        sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(
                tessera::domain::TokenHash::of(first["refresh_token"].as_str().unwrap())
                    .0
                    .to_vec(),
            )
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let revoked = app
        .admin(
            Method::DELETE,
            &format!("/admin/users/{user}/sessions/{session}"),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let first_access = first["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(first_access).await["active"], false);
    assert_eq!(
        app.introspect(second["access_token"].as_str().unwrap())
            .await["active"],
        true
    );
    assert_eq!(
        app.refresh("mobile", first["refresh_token"].as_str().unwrap())
            .await
            .status(),
        400
    );
    assert_eq!(
        app.refresh("mobile", second["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );

    let missing = app
        .admin(
            Method::DELETE,
            &format!("/admin/users/{user}/sessions/{session}"),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn logging_a_user_out_everywhere_kills_sessions_and_access_tokens() {
    let app = spawn_app().await;
    let user = app.seed().await;
    let token = app.admin_token().await;
    let a = app.login().await;
    let b = app.login().await;

    let response = app
        .admin(Method::POST, &format!("/admin/users/{user}/revoke"), &token)
        .json(&json!({"reason": "stolen phone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["sessions_revoked"],
        2
    );
    for session in [&a, &b] {
        assert_eq!(
            app.introspect(session["access_token"].as_str().unwrap())
                .await["active"],
            false
        );
        assert_eq!(
            app.refresh("mobile", session["refresh_token"].as_str().unwrap())
                .await
                .status(),
            400
        );
    }
    // Logging in again afterwards works and yields live tokens.
    app.advance_clock(std::time::Duration::from_secs(1));
    let fresh = app.login().await;
    assert_eq!(
        app.introspect(fresh["access_token"].as_str().unwrap())
            .await["active"],
        true
    );
}

#[tokio::test]
async fn tokens_are_revoked_by_value_and_keys_rotated() {
    let app = spawn_app().await;
    app.seed().await;
    let token = app.admin_token().await;
    let session = app.login().await;
    let access = session["access_token"].as_str().unwrap();
    let refresh = session["refresh_token"].as_str().unwrap();

    let revoke = |value: &str| {
        app.admin(Method::POST, "/admin/tokens/revoke", &token)
            .json(&json!({"token": value}))
            .send()
    };
    let body: Value = revoke(access).await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({"revoked": true, "token_type": "access_token"}));
    assert_eq!(app.introspect(access).await["active"], false);
    // A user's access token ends its login (RFC 7009 §2.1): one denylist
    // entry for the session, and its refresh token is dead too.
    assert_eq!(app.refresh("mobile", refresh).await.status(), 400);
    assert_eq!(app.state.denylist.len(), (0, 1, 0));
    let rotated = app.login().await;
    let body: Value = revoke(rotated["refresh_token"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"revoked": true, "token_type": "refresh_token"})
    );
    assert_eq!(
        app.refresh("mobile", rotated["refresh_token"].as_str().unwrap())
            .await
            .status(),
        400
    );
    let body: Value = revoke("tsr_unknown").await.unwrap().json().await.unwrap();
    assert_eq!(body["revoked"], false);

    let rotate = app
        .admin(Method::POST, "/admin/keys/rotate", &token)
        .json(&json!({"delay_seconds": 0, "force": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotate.status(), 201);
    let kid = rotate.json::<Value>().await.unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys: Value = app
        .admin(Method::GET, "/admin/keys", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let states: Vec<(String, String)> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&(kid.clone(), "active".into())),
        "{states:?}"
    );
    assert!(states.iter().any(|(_, s)| s == "retired"));
    let next = app.login().await;
    assert_eq!(
        jsonwebtoken::decode_header(next["access_token"].as_str().unwrap())
            .unwrap()
            .kid
            .unwrap(),
        kid
    );
    // The admin token signed by the old key still works.
    assert_eq!(
        app.admin(Method::GET, "/admin/keys", &token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn the_audit_log_pages_newest_first() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    for _ in 0..5 {
        app.admin(Method::GET, "/admin/keys", &token)
            .send()
            .await
            .unwrap();
    }
    let first: Value = app
        .admin(Method::GET, "/admin/audit?limit=3", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = first["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert!(entries[0]["id"].as_i64() > entries[1]["id"].as_i64());
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .admin(
            Method::GET,
            &format!("/admin/audit?limit=3&before={cursor}"),
            &token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<i64> = second["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "5 key listings; the first audit read is written after its page is read"
    );
    assert!(ids.iter().all(|id| *id < cursor.parse::<i64>().unwrap()));
    for entry in entries {
        for field in ["actor", "actor_client_id", "action", "created_at"] {
            assert!(entry[field].is_string(), "{field} in {entry}");
        }
    }
}

#[tokio::test]
async fn bad_admin_input_gets_4xx_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.seed().await;
    let token = app.admin_token().await;
    let users_before = app.count("users").await;
    let send = |method: Method, path: &str, content_type: &str, body: Vec<u8>| {
        app.admin(method, path, &token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let json = "application/json";
    let cases: Vec<(Method, String, &str, Vec<u8>, u16)> = vec![
        (Method::POST, "/admin/users".into(), json, b"{\"username\":".to_vec(), 400),
        (Method::POST, "/admin/users".into(), json, b"{\"username\": 5, \"password\": \"long enough pw\"}".to_vec(), 400),
        (Method::POST, "/admin/users".into(), json, b"{\"username\": \"x\"}".to_vec(), 400),
        (Method::POST, "/admin/users".into(), json, b"{\"username\": \"x\", \"password\": \"short\"}".to_vec(), 400),
        (Method::POST, "/admin/users".into(), json, b"{\"username\": \"x\", \"password\": \"long enough pw\", \"admin\": true}".to_vec(), 400),
        (Method::POST, "/admin/users".into(), json, format!("{{\"username\": \"{}\", \"password\": \"long enough pw\"}}", "u".repeat(500)).into_bytes(), 400),
        (Method::POST, "/admin/users".into(), json, b"{\"username\": \"x\", \"password\": \"long enough pw\", \"scopes\": [\"bad\\\"scope\"]}".to_vec(), 400),
        (Method::POST, "/admin/users".into(), "text/plain", b"username=x".to_vec(), 400),
        (Method::POST, "/admin/users".into(), json, vec![b' '; 20_000], 413),
        (Method::GET, "/admin/users/not-a-uuid".into(), json, vec![], 404),
        (Method::GET, format!("/admin/users/{}", uuid::Uuid::new_v4()), json, vec![], 404),
        (Method::POST, format!("/admin/users/{}/disable", uuid::Uuid::new_v4()), json, vec![], 404),
        (Method::POST, format!("/admin/users/{user}/disable"), json, b"{\"reason\": 7}".to_vec(), 400),
        (Method::PUT, format!("/admin/users/{user}/password"), json, b"{}".to_vec(), 400),
        (Method::POST, "/admin/tokens/revoke".into(), json, b"[]".to_vec(), 400),
        (Method::POST, "/admin/keys/rotate".into(), json, b"{\"algorithm\": \"HS256\"}".to_vec(), 400),
        (Method::POST, "/admin/keys/rotate".into(), json, b"{\"delay_seconds\": -1}".to_vec(), 400),
        (Method::POST, "/admin/keys/rotate".into(), json, b"{\"delay_seconds\": 5}".to_vec(), 400),
        (Method::GET, "/admin/audit?limit=abc".into(), json, vec![], 400),
        (Method::DELETE, "/admin/users/x/sessions/y".into(), json, vec![], 404),
    ];
    for (method, path, content_type, body, status) in cases {
        let response = send(method.clone(), &path, content_type, body)
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON"));
        assert!(
            body["error"].is_string() && body["error_description"].is_string(),
            "{method} {path}: {body}"
        );
    }
    assert_eq!(app.count("users").await, users_before);
    assert_eq!(app.count("signing_keys").await, 1);
    let disabled: bool = sqlx::query_scalar("SELECT disabled FROM users WHERE id = $1")
        .bind(user)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!disabled);
    // Nothing was done; every refusal was recorded as one.
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE outcome = 'ok'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(done, 0);
    assert!(app.count("audit_log").await > 0);
}

/// The refusal rows: outcome, action, target.
async fn refusals(app: &TestApp) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT outcome, action, target FROM audit_log WHERE outcome <> 'ok' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_admin_tokens_refused_calls_are_audited_with_outcome_and_target() {
    let app = spawn_app().await;
    let alice = app.seed().await;
    let bob = app.create_user("bob", PASSWORD, &["read"]).await;
    let token = app.admin_token().await;
    let login = app.password_grant("mobile", "bob", PASSWORD).await;
    assert_eq!(login.status(), 200);
    let bobs: Uuid = sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1")
        .bind(bob)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let unknown = Uuid::new_v4();
    let json = "application/json";
    // Method, path, body, status; the outcome and target recorded.
    type Case = (Method, String, Vec<u8>, u16, &'static str, String);
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            format!("/admin/users/{unknown}"),
            vec![],
            404,
            "not_found",
            format!("/admin/users/{unknown}"),
        ),
        (
            Method::POST,
            "/admin/users".into(),
            b"{\"username\": \"alice\", \"password\": \"long enough pw\"}".to_vec(),
            409,
            "conflict",
            "username alice".into(),
        ),
        (
            Method::POST,
            "/admin/keys/rotate".into(),
            b"{\"delay_seconds\": 5}".to_vec(),
            400,
            "invalid",
            "/admin/keys/rotate".into(),
        ),
        // bob's login named under alice.
        (
            Method::DELETE,
            format!("/admin/users/{alice}/sessions/{bobs}"),
            vec![],
            404,
            "not_found",
            format!("/admin/users/{alice}/sessions/{bobs}"),
        ),
    ];
    // Each twice: repeats within a minute are folded into one row.
    for _ in 0..2 {
        for (method, path, body, status, _, _) in &cases {
            let response = app
                .admin(method.clone(), path, &token)
                .header("content-type", json)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), *status, "{method} {path}");
        }
    }
    let rows = refusals(&app).await;
    assert_eq!(rows.len(), cases.len(), "{rows:?}");
    for ((method, _, _, _, outcome, target), (got_outcome, action, got_target)) in
        cases.iter().zip(&rows)
    {
        assert_eq!(got_outcome, outcome);
        assert_eq!(got_target, target);
        assert!(action.starts_with(method.as_str()), "{action}");
    }
    let (actor, client_id): (String, Option<String>) =
        sqlx::query_as("SELECT actor, actor_client_id FROM audit_log WHERE outcome = 'conflict'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(client_id.is_some_and(|c| c.starts_with("ops-")) && !actor.is_empty());
    // Each id probed leaves its own row.
    for _ in 0..3 {
        let response = app
            .admin(
                Method::GET,
                &format!("/admin/users/{}", Uuid::new_v4()),
                &token,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    assert_eq!(refusals(&app).await.len(), cases.len() + 3);
    // The session was not ended.
    let revoked: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT revoked_at FROM sessions WHERE id = $1")
            .bind(bobs)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(revoked.is_none());
}

#[tokio::test]
async fn forty_concurrent_identical_refusals_leave_one_row() {
    let app = spawn_app().await;
    app.seed().await;
    let user_token = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = app.admin_token().await;
    let unknown = format!("/admin/users/{}", Uuid::new_v4());
    for (token, path, status, outcome) in [
        (&user_token, "/admin/keys", 403, "denied"),
        (&admin, unknown.as_str(), 404, "not_found"),
    ] {
        let calls = (0..40).map(|_| async {
            app.admin(Method::GET, path, token)
                .send()
                .await
                .unwrap()
                .status()
        });
        for got in futures_util::future::join_all(calls).await {
            assert_eq!(got.as_u16(), status);
        }
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE outcome = $1")
            .bind(outcome)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(rows, 1, "{outcome}");
    }
}
