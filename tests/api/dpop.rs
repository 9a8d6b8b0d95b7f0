//! DPoP (RFC 9449) at the issuer: binding, the refresh token of a public
//! client, replay, nonces, malformed proofs, the per-client requirement and
//! every endpoint that takes an access token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use tessera_dpop::ProofKey;

use crate::helpers::{PASSWORD, TestApp, assert_oauth_error, spawn_app, spawn_app_with, tessera};

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

impl TestApp {
    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.state.settings.issuer)
    }

    fn now_secs(&self) -> i64 {
        self.state.clock.now().timestamp()
    }

    /// A proof for the token endpoint, made now.
    pub fn token_proof(&self, key: &ProofKey, nonce: Option<&str>) -> String {
        key.proof("POST", &self.token_url(), self.now_secs(), None, nonce)
            .unwrap()
    }

    /// A token request with these proofs (`DPoP` headers).
    pub async fn post_token_with(
        &self,
        proofs: &[&str],
        params: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/auth/token", self.address))
            .form(params);
        for proof in proofs {
            request = request.header("DPoP", *proof);
        }
        request.send().await.unwrap()
    }

    /// alice's password login through `mobile`, bound to `key`.
    pub async fn dpop_login(&self, key: &ProofKey) -> Value {
        let response = self
            .post_token_with(&[&self.token_proof(key, None)], &login_form())
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn dpop_refresh(
        &self,
        key: Option<&ProofKey>,
        refresh_token: &str,
    ) -> reqwest::Response {
        let proof = key.map(|k| self.token_proof(k, None));
        let proofs: Vec<&str> = proof.iter().map(String::as_str).collect();
        self.post_token_with(
            &proofs,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "mobile"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// An admin-API request with a DPoP-bound token and a proof by `key`.
    pub fn admin_dpop(
        &self,
        method: Method,
        path: &str,
        token: &str,
        key: &ProofKey,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.admin_address);
        let proof = key
            .proof(method.as_str(), &url, self.now_secs(), Some(token), None)
            .unwrap();
        self.http
            .request(method, url)
            .header("authorization", format!("DPoP {token}"))
            .header("DPoP", proof)
    }

    /// A client_credentials token with `scope`, bound to `key`.
    pub async fn bound_service_token(
        &self,
        client_id: &str,
        scope: &str,
        key: &ProofKey,
    ) -> String {
        let secret = self
            .create_confidential_client(client_id, &["client_credentials"], &[scope])
            .await;
        let response = self
            .http
            .post(format!("{}/auth/token", self.address))
            .basic_auth(client_id, Some(&secret))
            .header("DPoP", self.token_proof(key, None))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "DPoP");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

fn login_form() -> [(&'static str, &'static str); 4] {
    [
        ("grant_type", "password"),
        ("client_id", "mobile"),
        ("username", "alice"),
        ("password", PASSWORD),
    ]
}

#[tokio::test]
async fn a_login_with_a_proof_binds_the_access_token_and_the_refresh_token_to_the_key() {
    let app = spawn_app().await;
    app.seed().await;
    for key in [ProofKey::es256().unwrap(), ProofKey::ed25519().unwrap()] {
        let body = app.dpop_login(&key).await;
        assert_eq!(body["token_type"], "DPoP");
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(payload(access)["cnf"]["jkt"], key.jkt());
        let seen = app.introspect(access).await;
        assert_eq!(seen["active"], true);
        assert_eq!(seen["token_type"], "DPoP");
        assert_eq!(seen["cnf"]["jkt"], key.jkt());

        let refresh = body["refresh_token"].as_str().unwrap();
        // Without a proof, and with another key's: refused, nothing spent.
        let bare = app.dpop_refresh(None, refresh).await;
        assert_oauth_error(bare, 400, "invalid_dpop_proof").await;
        let thief = ProofKey::es256().unwrap();
        let stolen = app.dpop_refresh(Some(&thief), refresh).await;
        assert_oauth_error(stolen, 400, "invalid_dpop_proof").await;
        let refreshed = app.dpop_refresh(Some(&key), refresh).await;
        assert_eq!(refreshed.status(), 200);
        let refreshed: Value = refreshed.json().await.unwrap();
        assert_eq!(refreshed["token_type"], "DPoP");
        assert_eq!(
            payload(refreshed["access_token"].as_str().unwrap())["cnf"]["jkt"],
            key.jkt()
        );
    }
    // A login without a proof is a bearer login, as before.
    let bearer = app.login().await;
    assert_eq!(bearer["token_type"], "Bearer");
    assert!(
        payload(bearer["access_token"].as_str().unwrap())
            .get("cnf")
            .is_none()
    );
}

#[tokio::test]
async fn a_stolen_bound_token_is_refused_without_its_key_everywhere_a_token_is_taken() {
    let app = spawn_app().await;
    let key = ProofKey::es256().unwrap();
    let token = app.bound_service_token("ops", "admin", &key).await;
    let thief = ProofKey::es256().unwrap();

    // As a bearer token (§7.2): refused, with a DPoP challenge.
    let response = app
        .admin(Method::GET, "/admin/keys", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenges: Vec<&str> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        challenges
            .iter()
            .any(|c| c.starts_with("DPoP") && c.contains("algs=\"ES256")),
        "{challenges:?}"
    );
    // With a proof by another key.
    let response = app
        .admin_dpop(Method::GET, "/admin/keys", &token, &thief)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    // A proof by the key, but for another token (ath) or another URL (htu).
    let other = app.bound_service_token("ops2", "admin", &key).await;
    let url = format!("{}/admin/keys", app.admin_address);
    let for_other = key
        .proof("GET", &url, app.now_secs(), Some(&other), None)
        .unwrap();
    let response = app
        .http
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("DPoP", for_other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let elsewhere = key
        .proof(
            "GET",
            &format!("{}/admin/audit", app.admin_address),
            app.now_secs(),
            Some(&token),
            None,
        )
        .unwrap();
    let response = app
        .http
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("DPoP", elsewhere)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The holder of the key gets in.
    let response = app
        .admin_dpop(Method::GET, "/admin/keys", &token, &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The revocation feed and admin introspection take it the same way.
    let feed_key = ProofKey::ed25519().unwrap();
    let feed = app
        .bound_service_token("rs", "revocations:read", &feed_key)
        .await;
    let feed_url = format!("{}/auth/revocations", app.state.settings.issuer);
    let as_bearer = app
        .http
        .get(format!("{}/auth/revocations", app.address))
        .bearer_auth(&feed)
        .send()
        .await
        .unwrap();
    assert_eq!(as_bearer.status(), 401);
    let proof = feed_key
        .proof("GET", &feed_url, app.now_secs(), Some(&feed), None)
        .unwrap();
    let proven = app
        .http
        .get(format!("{}/auth/revocations", app.address))
        .header("authorization", format!("DPoP {feed}"))
        .header("DPoP", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(proven.status(), 200);
    let introspect_url = format!("{}/auth/introspect", app.state.settings.issuer);
    let stolen = thief
        .proof("POST", &introspect_url, app.now_secs(), Some(&token), None)
        .unwrap();
    let response = app
        .http
        .post(format!("{}/auth/introspect", app.address))
        .header("authorization", format!("DPoP {token}"))
        .header("DPoP", stolen)
        .form(&[("token", feed.as_str())])
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 401, "invalid_dpop_proof").await;
    let proof = key
        .proof("POST", &introspect_url, app.now_secs(), Some(&token), None)
        .unwrap();
    let response = app
        .http
        .post(format!("{}/auth/introspect", app.address))
        .header("authorization", format!("DPoP {token}"))
        .header("DPoP", proof)
        .form(&[("token", feed.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["cnf"]["jkt"], feed_key.jkt());
}

#[tokio::test]
async fn a_proof_is_accepted_once_on_one_instance_and_across_two() {
    let app = spawn_app().await;
    app.seed().await;
    let secret = app
        .create_confidential_client("svc", &["client_credentials"], &["read"])
        .await;
    let key = ProofKey::es256().unwrap();
    let proof = app.token_proof(&key, None);
    let cc = |proof: String| {
        app.http
            .post(format!("{}/auth/token", app.address))
            .basic_auth("svc", Some(&secret))
            .header("DPoP", proof)
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    assert_eq!(cc(proof.clone()).await.unwrap().status(), 200);
    let again = cc(proof).await.unwrap();
    assert_oauth_error(again, 400, "invalid_dpop_proof").await;

    // Password and refresh: a proof used on one instance is refused on another.
    let other = app.spawn_second_instance().await;
    let proof = app.token_proof(&key, None);
    let first = app.post_token_with(&[&proof], &login_form()).await;
    assert_eq!(first.status(), 200);
    let login: Value = first.json().await.unwrap();
    let replayed = other.post_token_with(&[&proof], &login_form()).await;
    assert_oauth_error(replayed, 400, "invalid_dpop_proof").await;
    let replayed_here = app.post_token_with(&[&proof], &login_form()).await;
    assert_oauth_error(replayed_here, 400, "invalid_dpop_proof").await;
    assert_eq!(
        app.count("sessions").await,
        1,
        "the replays started no session"
    );

    let refresh = login["refresh_token"].as_str().unwrap();
    let proof = app.token_proof(&key, None);
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "mobile"),
        ("refresh_token", refresh),
    ];
    let replay_first = other.post_token_with(&[&proof], &form).await;
    assert_eq!(replay_first.status(), 200);
    let rotated: Value = replay_first.json().await.unwrap();
    // The same proof with the child token, through the first instance.
    let child_form = [
        ("grant_type", "refresh_token"),
        ("client_id", "mobile"),
        ("refresh_token", rotated["refresh_token"].as_str().unwrap()),
    ];
    let replayed = app.post_token_with(&[&proof], &child_form).await;
    assert_oauth_error(replayed, 400, "invalid_dpop_proof").await;
    // ...which spent nothing: a fresh proof refreshes the child.
    let fresh = app
        .post_token_with(&[&app.token_proof(&key, None)], &child_form)
        .await;
    assert_eq!(fresh.status(), 200);
}

#[tokio::test]
async fn a_nonce_issued_by_one_instance_is_accepted_by_another_until_it_is_old() {
    let app = spawn_app_with(|s| s.dpop.require_nonce = true).await;
    app.seed().await;
    let other = crate::helpers::spawn_on(app.db.clone(), |s| s.dpop.require_nonce = true).await;
    let key = ProofKey::es256().unwrap();
    let response = app
        .post_token_with(&[&app.token_proof(&key, None)], &login_form())
        .await;
    let nonce = response.headers()["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_oauth_error(response, 400, "use_dpop_nonce").await;
    let response = other
        .post_token_with(&[&other.token_proof(&key, Some(&nonce))], &login_form())
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().contains_key("dpop-nonce"),
        "a fresh nonce with every success"
    );

    // Past its lifetime (5 minutes by default) it is refused.
    other.advance_clock(std::time::Duration::from_secs(301));
    let response = other
        .post_token_with(&[&other.token_proof(&key, Some(&nonce))], &login_form())
        .await;
    assert_oauth_error(response, 400, "use_dpop_nonce").await;
}

#[tokio::test]
async fn every_malformed_proof_is_a_400_invalid_dpop_proof() {
    let app = spawn_app().await;
    app.seed().await;
    let key = ProofKey::es256().unwrap();
    let url = app.token_url();
    let now = app.now_secs();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()});
    let claims = |htm: &str, htu: &str, iat: i64| json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": htm, "htu": htu, "iat": iat});
    let signed = |header: &Value, claims: &Value| key.sign(header, claims).unwrap();
    let mut private = key.jwk().clone();
    private["d"] = json!("AAAA");
    let unsigned = |header: Value, claims: &Value| {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let good = signed(&header, &claims("POST", &url, now));
    let mut tampered = good.clone();
    tampered.truncate(tampered.len() - 4);
    tampered.push_str("AAAA");
    let cases: Vec<(&str, String)> = vec![
        ("wrong htm", signed(&header, &claims("GET", &url, now))),
        (
            "wrong htu",
            signed(
                &header,
                &claims("POST", "http://elsewhere.test/auth/token", now),
            ),
        ),
        ("old iat", signed(&header, &claims("POST", &url, now - 90))),
        (
            "future iat",
            signed(&header, &claims("POST", &url, now + 90)),
        ),
        (
            "typ JWT",
            signed(
                &json!({"typ": "JWT", "alg": "ES256", "jwk": key.jwk()}),
                &claims("POST", &url, now),
            ),
        ),
        (
            "HS256",
            unsigned(
                json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}),
                &claims("POST", &url, now),
            ),
        ),
        (
            "none",
            unsigned(
                json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk()}),
                &claims("POST", &url, now),
            ),
        ),
        (
            "private jwk",
            signed(
                &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}),
                &claims("POST", &url, now),
            ),
        ),
        (
            "no jwk",
            signed(
                &json!({"typ": "dpop+jwt", "alg": "ES256"}),
                &claims("POST", &url, now),
            ),
        ),
        ("bad signature", tampered),
        (
            "no jti",
            signed(&header, &json!({"htm": "POST", "htu": url, "iat": now})),
        ),
        (
            "oversized",
            signed(
                &header,
                &json!({"jti": "x".repeat(5000), "htm": "POST", "htu": url, "iat": now}),
            ),
        ),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    for (name, proof) in cases {
        let response = app.post_token_with(&[&proof], &login_form()).await;
        assert_eq!(response.status(), 400, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_dpop_proof", "{name}: {body}");
    }
    let two = app
        .post_token_with(
            &[&app.token_proof(&key, None), &app.token_proof(&key, None)],
            &login_form(),
        )
        .await;
    assert_oauth_error(two, 400, "invalid_dpop_proof").await;
    assert_eq!(
        app.count("sessions").await,
        0,
        "no refused proof logged anyone in"
    );
    // The good one still works: the refusals above were the proofs' own.
    let response = app.post_token_with(&[&good], &login_form()).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_client_that_must_use_dpop_gets_no_token_without_a_proof() {
    let app = spawn_app().await;
    app.seed().await;
    let require = tessera(
        Some(&app),
        &["client", "set-dpop", "mobile", "required"],
        "",
        &[],
    );
    assert!(require.status.success(), "{require:?}");
    let list = tessera(Some(&app), &["client", "list"], "", &[]);
    let out = String::from_utf8_lossy(&list.stdout).to_string();
    let line = out.lines().find(|l| l.starts_with("mobile ")).unwrap();
    assert!(line.contains("required"), "{out}");
    // Every instance applies it within a second (the client mirror).
    let mut refused = false;
    for _ in 0..40 {
        let response = app.password_grant("mobile", "alice", PASSWORD).await;
        if response.status() == 400 {
            assert_oauth_error(response, 400, "invalid_dpop_proof").await;
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(refused, "a login without a proof was still accepted");
    let key = ProofKey::es256().unwrap();
    assert_eq!(app.dpop_login(&key).await["token_type"], "DPoP");

    // The admin API sets and shows it too (and audits it).
    let admin = app.admin_token().await;
    let response = app
        .admin(Method::PUT, "/admin/clients/mobile/dpop", &admin)
        .json(&json!({"dpop_bound_access_tokens": false, "reason": "app 2.1 rollback"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let listed: Value = app
        .admin(Method::GET, "/admin/clients", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mobile = listed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == "mobile")
        .unwrap();
    assert_eq!(mobile["dpop_bound_access_tokens"], false);
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action IN ('client.require_dpop', 'client.allow_bearer') AND target = 'mobile'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(audited, 2);
}

#[tokio::test]
async fn the_binding_survives_the_lost_response_grace_and_the_concurrent_refresh_race() {
    let app = spawn_app().await;
    app.seed().await;
    let key = ProofKey::es256().unwrap();
    let login = app.dpop_login(&key).await;
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    // The response to this refresh is "lost": the app retries the same token.
    assert_eq!(app.dpop_refresh(Some(&key), &refresh).await.status(), 200);
    let thief = ProofKey::es256().unwrap();
    let stolen_retry = app.dpop_refresh(Some(&thief), &refresh).await;
    assert_oauth_error(stolen_retry, 400, "invalid_dpop_proof").await;
    let retry = app.dpop_refresh(Some(&key), &refresh).await;
    assert_eq!(retry.status(), 200, "the grace replacement");
    let replacement: Value = retry.json().await.unwrap();
    assert_eq!(
        payload(replacement["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
    let current = replacement["refresh_token"].as_str().unwrap().to_owned();

    // Eight refreshes of one token at once, each with its own proof.
    let attempts = (0..8).map(|_| app.dpop_refresh(Some(&key), &current));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert_eq!(app.live_refresh_tokens().await.len(), 1, "{statuses:?}");
    // Still bound: the live token refreshes with the key only.
    let (live,): (Vec<u8>,) = sqlx::query_as(
        "SELECT t.token_hash FROM refresh_tokens t WHERE t.used_at IS NULL AND t.revoked_at IS NULL",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(!live.is_empty());
    let bound: Option<String> = sqlx::query_scalar("SELECT dpop_jkt FROM sessions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(bound.as_deref(), Some(key.jkt()));
}

#[tokio::test]
async fn a_public_client_revokes_its_bound_refresh_token_without_a_proof() {
    let app = spawn_app().await;
    app.seed().await;
    let key = ProofKey::es256().unwrap();
    let login = app.dpop_login(&key).await;
    let refresh = login["refresh_token"].as_str().unwrap();
    // A copy of the bound access token cannot end the session (revoking an
    // access token ends its session): a public client must prove the key.
    let access = login["access_token"].as_str().unwrap();
    let revoke = |proof: Option<String>| {
        let mut request = app
            .http
            .post(format!("{}/auth/revoke", app.address))
            .form(&[("token", access), ("client_id", "mobile")]);
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        request.send()
    };
    let stolen = revoke(None).await.unwrap();
    assert_oauth_error(stolen, 400, "invalid_dpop_proof").await;
    let revoke_url = format!("{}/auth/revoke", app.state.settings.issuer);
    let thief = ProofKey::es256().unwrap();
    let wrong_key = thief
        .proof("POST", &revoke_url, app.now_secs(), Some(access), None)
        .unwrap();
    assert_oauth_error(
        revoke(Some(wrong_key)).await.unwrap(),
        400,
        "invalid_dpop_proof",
    )
    .await;
    assert_eq!(
        app.introspect(access).await["active"],
        true,
        "nothing was revoked"
    );
    let response = app
        .http
        .post(format!("{}/auth/revoke", app.address))
        .form(&[("token", refresh), ("client_id", "mobile")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let after = app.dpop_refresh(Some(&key), refresh).await;
    assert_oauth_error(after, 400, "invalid_grant").await;
    // The app itself, with its key, revokes the access token.
    let own = key
        .proof("POST", &revoke_url, app.now_secs(), Some(access), None)
        .unwrap();
    assert_eq!(revoke(Some(own)).await.unwrap().status(), 200);
    assert_eq!(app.introspect(access).await["active"], false);
}

#[tokio::test]
async fn discovery_lists_the_proof_algorithms() {
    let app = spawn_app().await;
    let metadata: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    let algs = metadata["dpop_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(
        algs.contains(&json!("ES256")) && algs.contains(&json!("EdDSA")),
        "{metadata}"
    );
}

#[tokio::test]
async fn a_captured_admin_call_cannot_be_replayed_to_another_instance() {
    let app = spawn_app().await;
    // Both instances behind one admin URL, as behind a load balancer.
    let admin_url = app.admin_address.clone();
    let other =
        crate::helpers::spawn_on(app.db.clone(), |s| s.dpop.admin_url = Some(admin_url)).await;
    let key = ProofKey::es256().unwrap();
    let token = app.bound_service_token("ops", "admin", &key).await;
    let url = format!("{}/admin/keys", app.admin_address);
    let proof = key
        .proof("GET", &url, app.now_secs(), Some(&token), None)
        .unwrap();
    let call = |base: &str| {
        app.http
            .get(format!("{base}/admin/keys"))
            .header("authorization", format!("DPoP {token}"))
            .header("DPoP", proof.clone())
            .send()
    };
    assert_eq!(call(&app.admin_address).await.unwrap().status(), 200);
    // The proof names the shared URL: only the record in Postgres refuses it.
    let replayed = other
        .http
        .get(format!("{}/admin/keys", other.admin_address))
        .header("authorization", format!("DPoP {token}"))
        .header("DPoP", proof.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401);
    assert_eq!(call(&app.admin_address).await.unwrap().status(), 401);
}

#[tokio::test]
async fn one_client_cannot_fill_the_replay_cache_for_the_others() {
    let app = spawn_app_with(|s| s.dpop.replay_capacity_per_client = 3).await;
    let greedy = app
        .create_confidential_client("greedy", &["client_credentials"], &["read"])
        .await;
    let fair = app
        .create_confidential_client("fair", &["client_credentials"], &["read"])
        .await;
    let key = ProofKey::es256().unwrap();
    let token = |client: &'static str, secret: String| {
        let proof = app.token_proof(&key, None);
        app.http
            .post(format!("{}/auth/token", app.address))
            .basic_auth(client, Some(secret))
            .header("DPoP", proof)
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    for _ in 0..3 {
        assert_eq!(token("greedy", greedy.clone()).await.unwrap().status(), 200);
    }
    let refused = token("greedy", greedy.clone()).await.unwrap();
    assert_oauth_error(refused, 503, "temporarily_unavailable").await;
    assert_eq!(token("fair", fair.clone()).await.unwrap().status(), 200);
}
