//! Tokens shaped for each API: RFC 8707 resources, per-client lifetimes and
//! user attributes in access tokens.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use tessera::domain::AccessClaims;

use crate::admin::audit_actions;
use crate::helpers::{
    PASSWORD, TestApp, assert_oauth_error, spawn_app, spawn_app_with, tessera, time_until,
};
use crate::mfa::pkce;

const ORDERS: &str = "https://orders.example.com/";
const BILLING: &str = "https://billing.example.com/";

fn claims(jwt: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// Registers a resource through the admin API.
async fn create_resource(app: &TestApp, admin: &str, uri: &str, scope: &str, ttl: Option<u64>) {
    let mut body = json!({"uri": uri, "scope": scope, "reason": "new API"});
    if let Some(ttl) = ttl {
        body["access_ttl"] = json!(ttl);
    }
    let response = app
        .admin(Method::POST, "/admin/resources", admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

async fn put(app: &TestApp, admin: &str, path: &str, body: Value) -> reqwest::Response {
    app.admin(Method::PUT, path, admin)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Waits until this instance's copy of the client satisfies `ready`.
async fn until_client(app: &TestApp, id: &str, ready: impl Fn(&tessera::domain::Client) -> bool) {
    time_until(|| async {
        app.state
            .clients
            .find(&app.pool, id)
            .await
            .unwrap()
            .is_some_and(|c| ready(&c))
    })
    .await;
}

/// alice (read write) and `mobile` (read write profile), with ORDERS (read
/// write, 5 min) and BILLING (read profile) registered and allowed to
/// `mobile`.
async fn with_resources() -> (TestApp, String) {
    let app = spawn_app().await;
    app.seed().await;
    let admin = app.admin_token().await;
    create_resource(&app, &admin, ORDERS, "read write", Some(300)).await;
    create_resource(&app, &admin, BILLING, "read profile", None).await;
    let set = put(
        &app,
        &admin,
        "/admin/clients/mobile/resources",
        json!({"resources": [ORDERS, BILLING]}),
    )
    .await;
    assert_eq!(set.status(), 200);
    until_client(&app, "mobile", |c| c.resources.len() == 2).await;
    (app, admin)
}

async fn login_for(app: &TestApp, resource: &str, scope: Option<&str>) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "password"),
        ("client_id", "mobile"),
        ("username", "alice"),
        ("password", PASSWORD),
        ("resource", resource),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    app.post_token(&form).await
}

#[tokio::test]
async fn a_token_for_a_resource_carries_its_uri_its_scopes_and_its_lifetime() {
    let (app, _) = with_resources().await;
    let response = login_for(&app, ORDERS, None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    // alice has read write; ORDERS accepts read write; nothing else.
    assert_eq!(body["scope"], "read write");
    assert_eq!(body["expires_in"], 300);
    let access = body["access_token"].as_str().unwrap();
    let c = claims(access);
    assert_eq!(c["aud"], ORDERS);
    assert_eq!(c["scope"], "read write");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    let inspected = app.introspect(access).await;
    assert_eq!(inspected["active"], true);
    assert_eq!(inspected["aud"], ORDERS);
    // Without a resource: today's default audience and lifetime.
    let plain = app.login().await;
    assert_eq!(
        claims(plain["access_token"].as_str().unwrap())["aud"],
        "tessera"
    );
    assert_eq!(plain["expires_in"], 600);
    // The registry and the allowance are audited.
    let actions = audit_actions(&app).await;
    assert!(
        actions.iter().any(|a| a == "resource.create"),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a == "client.set_resources"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_token_for_a_resource_is_not_accepted_by_tessera_itself() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    create_resource(&app, &admin, ORDERS, "admin", None).await;
    let secret = app
        .create_confidential_client("svc", &["client_credentials"], &["admin"])
        .await;
    let set = put(
        &app,
        &admin,
        "/admin/clients/svc/resources",
        json!({"resources": [ORDERS]}),
    )
    .await;
    assert_eq!(set.status(), 200);
    until_client(&app, "svc", |c| !c.resources.is_empty()).await;
    let response = app
        .http
        .post(format!("{}/auth/token", app.address))
        .basic_auth("svc", Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("resource", ORDERS)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let token = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(claims(&token)["aud"], ORDERS);
    // The same scope, for another audience: the admin API refuses it.
    let refused = app
        .admin(Method::GET, "/admin/keys", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let accepted = app
        .admin(Method::GET, "/admin/keys", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    // Introspection answers for every audience.
    assert_eq!(app.introspect(&token).await["aud"], ORDERS);
}

#[tokio::test]
async fn unknown_unallowed_and_repeated_resources_are_invalid_target() {
    let (app, admin) = with_resources().await;
    create_resource(&app, &admin, "urn:example:hr", "read", None).await;
    let sessions = app.count("sessions").await;
    // Unknown, registered but not allowed, and not a URI at all.
    for resource in [
        "https://nowhere.example.com/",
        "urn:example:hr",
        "not a uri",
    ] {
        assert_oauth_error(login_for(&app, resource, None).await, 400, "invalid_target").await;
    }
    // Two at once, as a form and as JSON.
    let repeated = format!(
        "grant_type=password&client_id=mobile&username=alice&password={}&resource={}&resource={}",
        urlencode(PASSWORD),
        urlencode(ORDERS),
        urlencode(BILLING)
    );
    let response = app
        .post_token_raw("application/x-www-form-urlencoded", repeated)
        .await;
    assert_oauth_error(response, 400, "invalid_target").await;
    let json = format!(
        r#"{{"grant_type":"password","client_id":"mobile","username":"alice","password":"{PASSWORD}","resource":"{ORDERS}","resource":"{BILLING}"}}"#
    );
    let response = app.post_token_raw("application/json", json).await;
    assert_oauth_error(response, 400, "invalid_target").await;
    // Nothing in common between what is granted and what it accepts.
    let body = assert_oauth_error(
        login_for(&app, BILLING, Some("write")).await,
        400,
        "invalid_scope",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("resource")
    );
    // None of it started a session, and none of it counted as a failure.
    assert_eq!(app.count("sessions").await, sessions);
    assert_eq!(app.count("login_throttle WHERE failures > 0").await, 0);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn refresh_for(app: &TestApp, token: &str, resource: Option<&str>) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("client_id", "mobile"),
        ("refresh_token", token),
    ];
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    app.post_token(&form).await
}

#[tokio::test]
async fn one_login_then_a_refresh_for_each_api() {
    let (app, admin) = with_resources().await;
    create_resource(&app, &admin, "urn:example:profiles", "profile", None).await;
    let set = put(
        &app,
        &admin,
        "/admin/clients/mobile/resources",
        json!({"resources": [ORDERS, BILLING, "urn:example:profiles"]}),
    )
    .await;
    assert_eq!(set.status(), 200);
    until_client(&app, "mobile", |c| c.resources.len() == 3).await;
    let body: Value = login_for(&app, ORDERS, None).await.json().await.unwrap();
    let mut token = body["refresh_token"].as_str().unwrap().to_owned();
    // Not bound to ORDERS: BILLING gets its own token, with the session's
    // scopes that BILLING accepts.
    let billing: Value = refresh_for(&app, &token, Some(BILLING))
        .await
        .json()
        .await
        .unwrap();
    let c = claims(billing["access_token"].as_str().unwrap());
    assert_eq!(
        (c["aud"].as_str(), c["scope"].as_str()),
        (Some(BILLING), Some("read"))
    );
    assert_eq!(billing["scope"], "read");
    assert_eq!(billing["expires_in"], 600);
    let spent = token.clone();
    token = billing["refresh_token"].as_str().unwrap().to_owned();
    // Back to ORDERS, with its lifetime; then the default audience.
    let orders: Value = refresh_for(&app, &token, Some(ORDERS))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        claims(orders["access_token"].as_str().unwrap())["aud"],
        ORDERS
    );
    assert_eq!(orders["expires_in"], 300);
    token = orders["refresh_token"].as_str().unwrap().to_owned();
    let plain: Value = refresh_for(&app, &token, None).await.json().await.unwrap();
    let c = claims(plain["access_token"].as_str().unwrap());
    assert_eq!(
        (c["aud"].as_str(), c["scope"].as_str()),
        (Some("tessera"), Some("read write"))
    );
    token = plain["refresh_token"].as_str().unwrap().to_owned();
    // A resource that shares no scope with the session: refused, and the
    // token is not spent.
    let refused = refresh_for(&app, &token, Some("urn:example:profiles")).await;
    assert_oauth_error(refused, 400, "invalid_scope").await;
    let again = refresh_for(&app, &token, Some(ORDERS)).await;
    assert_eq!(again.status(), 200);
    let live = again.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Rotation and reuse detection hold whatever the resource: a spent
    // token presented again ends the session.
    assert_oauth_error(
        refresh_for(&app, &spent, Some(BILLING)).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(refresh_for(&app, &live, None).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn client_credentials_takes_a_resource_too() {
    let (app, admin) = with_resources().await;
    let secret = app
        .create_confidential_client("svc", &["client_credentials"], &["read", "write"])
        .await;
    put(
        &app,
        &admin,
        "/admin/clients/svc/resources",
        json!({"resources": [BILLING]}),
    )
    .await;
    until_client(&app, "svc", |c| !c.resources.is_empty()).await;
    let token = |resource: &'static str| {
        app.http
            .post(format!("{}/auth/token", app.address))
            .basic_auth("svc", Some(&secret))
            .form(&[("grant_type", "client_credentials"), ("resource", resource)])
            .send()
    };
    let body: Value = token(BILLING).await.unwrap().json().await.unwrap();
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["aud"],
        BILLING
    );
    assert_eq!(body["scope"], "read");
    assert_oauth_error(token(ORDERS).await.unwrap(), 400, "invalid_target").await;
}

#[tokio::test]
async fn per_client_lifetimes_apply_from_the_next_token_within_their_maxima() {
    let app = spawn_app_with(|s| {
        s.tokens.max_access_ttl = Some(Duration::from_secs(3600));
        s.tokens.max_refresh_ttl = Some(Duration::from_secs(90 * 86_400));
    })
    .await;
    app.seed().await;
    let env = [
        ("TESSERA__TOKENS__MAX_ACCESS_TTL", "1h"),
        ("TESSERA__TOKENS__MAX_REFRESH_TTL", "90d"),
    ];
    // Above a maximum: refused, naming it; nothing changes.
    let above = tessera(
        Some(&app),
        &["client", "set-lifetimes", "mobile", "--access-ttl", "2h"],
        "",
        &env,
    );
    assert!(!above.status.success());
    let said = String::from_utf8_lossy(&above.stderr);
    assert!(said.contains("tokens.max_access_ttl"), "{said}");
    assert_eq!(app.login().await["expires_in"], 600);
    let set = tessera(
        Some(&app),
        &[
            "client",
            "set-lifetimes",
            "mobile",
            "--access-ttl",
            "30m",
            "--refresh-idle",
            "1h",
            "--refresh-max",
            "2h",
        ],
        "",
        &env,
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    until_client(&app, "mobile", |c| c.lifetimes.access.is_some()).await;
    let login = app.login().await;
    assert_eq!(login["expires_in"], 1800);
    let access = login["access_token"].as_str().unwrap().to_owned();
    // Longer than the server's default, and still active 20 minutes on:
    // the verification bound is the maximum, not the default.
    app.advance_clock(Duration::from_secs(20 * 60));
    assert_eq!(app.introspect(&access).await["active"], true);
    // Idle: a session unused for an hour ends; one used keeps going until
    // its maximum.
    let token = login["refresh_token"].as_str().unwrap().to_owned();
    app.advance_clock(Duration::from_secs(41 * 60));
    assert_oauth_error(app.refresh("mobile", &token).await, 400, "invalid_grant").await;
    let mut token = app.login().await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        app.advance_clock(Duration::from_secs(35 * 60));
        let response = app.refresh("mobile", &token).await;
        assert_eq!(response.status(), 200);
        token = response.json::<Value>().await.unwrap()["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    // 105 minutes in; at 140 the two-hour maximum has passed.
    app.advance_clock(Duration::from_secs(35 * 60));
    assert_oauth_error(app.refresh("mobile", &token).await, 400, "invalid_grant").await;
    // Back to the server's defaults.
    let reset = tessera(Some(&app), &["client", "set-lifetimes", "mobile"], "", &env);
    assert!(reset.status.success());
    until_client(&app, "mobile", |c| c.lifetimes.access.is_none()).await;
    assert_eq!(app.login().await["expires_in"], 600);
    // The admin API refuses the same way, with a 400.
    let admin = app.admin_token().await;
    let refused = put(
        &app,
        &admin,
        "/admin/clients/mobile/lifetimes",
        json!({"refresh_max": 100 * 86_400}),
    )
    .await;
    let body = assert_oauth_error(refused, 400, "invalid_request").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("tokens.max_refresh_ttl")
    );
}

fn forge(app: &TestApp, lifetime: u64) -> String {
    let now = app.state.clock.now();
    let claims = AccessClaims::new(
        "http://tessera.test",
        "tessera",
        "ops".into(),
        "ops",
        "admin".into(),
        now,
        Duration::from_secs(lifetime),
    );
    claims.sign(&app.state.keys.signer(now).unwrap()).unwrap()
}

#[tokio::test]
async fn the_verification_bound_is_the_longest_lifetime_a_token_may_have() {
    let app = spawn_app_with(|s| s.tokens.max_access_ttl = Some(Duration::from_secs(3600))).await;
    // Up to the maximum: a token some client or resource may get.
    assert_eq!(app.introspect(&forge(&app, 3600)).await["active"], true);
    // Longer: no token of ours lives that long.
    assert_eq!(app.introspect(&forge(&app, 3601)).await["active"], false);
    let metadata: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["tessera_max_access_token_lifetime"], 3600);
    // Without a maximum, the default lifetime is the bound, as before.
    let plain = spawn_app().await;
    assert_eq!(plain.introspect(&forge(&plain, 601)).await["active"], false);
}

#[tokio::test]
async fn attributes_go_only_to_clients_that_ask_and_follow_changes_at_the_next_refresh() {
    let app = spawn_app().await;
    let alice = app.seed().await;
    app.create_public_client("other", &["password", "refresh_token"], &["read"])
        .await;
    let admin = app.admin_token().await;
    // Set on standard input; refused names and sizes change nothing.
    let set = tessera(
        Some(&app),
        &["user", "set-claims", "alice"],
        r#"{"roles": ["support"], "tenant": "acme", "level": 2}"#,
        &[],
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    for refused in [
        json!({"claims": {"sub": "bob"}}),
        json!({"claims": {"email": "a@example.com"}}),
        json!({"claims": {"roles": [1]}}),
        json!({"claims": {"blob": "x".repeat(2100)}}),
        json!({"claims": ["roles"]}),
    ] {
        let response = put(
            &app,
            &admin,
            &format!("/admin/users/{alice}/claims"),
            refused,
        )
        .await;
        assert_oauth_error(response, 400, "invalid_request").await;
    }
    let shown = tessera(Some(&app), &["user", "show", "alice"], "", &[]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains(r#""tenant":"acme""#));
    // By default a client's tokens carry none.
    let plain = claims(app.login().await["access_token"].as_str().unwrap());
    assert!(plain.get("roles").is_none() && plain.get("tenant").is_none());
    let refused = tessera(
        Some(&app),
        &["client", "set-claims", "mobile", "roles", "iss"],
        "",
        &[],
    );
    assert!(!refused.status.success());
    let picked = tessera(
        Some(&app),
        &["client", "set-claims", "mobile", "roles", "level"],
        "",
        &[],
    );
    assert!(
        picked.status.success(),
        "{}",
        String::from_utf8_lossy(&picked.stderr)
    );
    until_client(&app, "mobile", |c| c.claims.len() == 2).await;
    let login = app.login().await;
    let access = login["access_token"].as_str().unwrap();
    let c = claims(access);
    assert_eq!(c["roles"], json!(["support"]));
    assert_eq!(c["level"], 2);
    assert!(c.get("tenant").is_none());
    let inspected = app.introspect(access).await;
    assert_eq!(inspected["roles"], json!(["support"]));
    // Another client that did not ask gets none.
    let other: Value = app
        .password_grant("other", "alice", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        claims(other["access_token"].as_str().unwrap())
            .get("roles")
            .is_none()
    );
    // A change shows at the next refresh.
    let changed = put(
        &app,
        &admin,
        &format!("/admin/users/{alice}/claims"),
        json!({"claims": {"roles": ["support", "billing"]}, "reason": "promoted"}),
    )
    .await;
    assert_eq!(changed.status(), 200);
    let refreshed: Value = app
        .refresh("mobile", login["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let c = claims(refreshed["access_token"].as_str().unwrap());
    assert_eq!(c["roles"], json!(["support", "billing"]));
    assert!(c.get("level").is_none());
}

#[tokio::test]
async fn a_code_from_the_challenge_endpoint_is_redeemed_for_a_resource() {
    let app = spawn_app().await;
    app.seed_first_party().await;
    let admin = app.admin_token().await;
    create_resource(&app, &admin, ORDERS, "write", None).await;
    create_resource(&app, &admin, BILLING, "profile", None).await;
    put(
        &app,
        &admin,
        "/admin/clients/app/resources",
        json!({"resources": [ORDERS, BILLING]}),
    )
    .await;
    until_client(&app, "app", |c| c.resources.len() == 2).await;
    let (verifier, challenge) = pkce();
    let code = app
        .start_flow(&challenge)
        .await
        .json::<Value>()
        .await
        .unwrap()["authorization_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let form = |resource: &'static str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", "app".to_owned()),
            ("code", code.clone()),
            ("code_verifier", verifier.clone()),
            ("resource", resource.to_owned()),
        ]
    };
    let redeem = |resource: &'static str| {
        app.http
            .post(format!("{}/auth/token", app.address))
            .form(&form(resource))
            .send()
    };
    // Nothing in common with BILLING: refused, and the code is not spent.
    assert_oauth_error(redeem(BILLING).await.unwrap(), 400, "invalid_scope").await;
    let tokens: Value = redeem(ORDERS).await.unwrap().json().await.unwrap();
    let c = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(
        (c["aud"].as_str(), c["scope"].as_str()),
        (Some(ORDERS), Some("write"))
    );
    // The session keeps the whole grant: its refresh gets read write.
    let plain: Value = app
        .refresh("app", tokens["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(plain["scope"], "read write");
}

#[tokio::test]
async fn tessera_itself_cannot_be_registered_as_a_resource() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for uri in ["http://tessera.test", "http://tessera.test/"] {
        let response = app
            .admin(Method::POST, "/admin/resources", &admin)
            .json(&json!({"uri": uri, "scope": "admin"}))
            .send()
            .await
            .unwrap();
        assert_oauth_error(response, 400, "invalid_request").await;
    }
}
