//! Native login with a second factor: TOTP enrollment, the first-party apps
//! challenge endpoint, the authorization_code grant with PKCE, recovery
//! codes, and what a login remembers (`amr`). TOTP codes are computed here,
//! by the test's own RFC 6238 implementation, never by the server's.

use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::Value;
use tessera_dpop::ProofKey;

use crate::helpers::{
    PASSWORD, TestApp, assert_oauth_error, spawn_app, spawn_app_with, spawn_on, tessera,
};

/// RFC 6238 with HMAC-SHA1, 6 digits, 30 s steps, from a base32 secret.
pub(crate) fn totp(secret: &str, unix: i64) -> String {
    let mut bits: u64 = 0;
    let mut count = 0;
    let mut key = Vec::new();
    for c in secret.chars() {
        let value = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".find(c).unwrap() as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            key.push((bits >> count) as u8);
        }
    }
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key),
        &(unix / 30).to_be_bytes(),
    );
    let tag = tag.as_ref();
    let offset = (tag[19] & 0xf) as usize;
    let word = u32::from_be_bytes(tag[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", word % 1_000_000)
}

#[test]
fn the_tests_totp_gives_rfc6238_appendix_b() {
    // "12345678901234567890" in base32; the 8-digit values mod 10^6.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(totp(secret, 59), "287082");
    assert_eq!(totp(secret, 1_111_111_109), "081804");
    assert_eq!(totp(secret, 2_000_000_000), "279037");
}

/// A PKCE verifier and its S256 challenge.
pub(crate) fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref());
    (verifier, challenge)
}

impl TestApp {
    pub(crate) fn now_unix(&self) -> i64 {
        self.state.clock.now().timestamp()
    }

    /// alice, and `app`: a public client of the challenge flow.
    pub(crate) async fn seed_first_party(&self) {
        self.seed().await;
        self.create_public_client(
            "app",
            &["authorization_code", "refresh_token", "password"],
            &["read", "write"],
        )
        .await;
    }

    pub(crate) async fn challenge(
        &self,
        form: &[(&str, &str)],
        proof: Option<String>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/auth/challenge", self.address))
            .form(form);
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        request.send().await.unwrap()
    }

    pub(crate) async fn start_flow(&self, challenge: &str) -> reqwest::Response {
        self.challenge(
            &[
                ("client_id", "app"),
                ("response_type", "code"),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            None,
        )
        .await
    }

    pub(crate) async fn redeem(&self, code: &str, verifier: &str) -> reqwest::Response {
        self.post_token(&[
            ("grant_type", "authorization_code"),
            ("client_id", "app"),
            ("code", code),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// Enrolls alice's TOTP with `access` and returns the secret and the
    /// recovery codes; then moves the clock to the next step (the
    /// confirming code's step is spent).
    pub(crate) async fn enroll(&self, access: &str) -> (String, Vec<String>) {
        let response = self
            .http
            .post(format!("{}/auth/mfa/totp", self.address))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let secret = body["secret"].as_str().unwrap().to_owned();
        let uri = body["otpauth_uri"].as_str().unwrap();
        assert!(
            uri.starts_with("otpauth://totp/tessera.test:alice?secret=")
                && uri.contains("&issuer=tessera.test&algorithm=SHA1&digits=6&period=30"),
            "{uri}"
        );
        let confirmed = self
            .http
            .post(format!("{}/auth/mfa/totp/confirm", self.address))
            .bearer_auth(access)
            .form(&[("code", totp(&secret, self.now_unix()).as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(confirmed.status(), 200);
        let codes: Vec<String> = confirmed.json::<Value>().await.unwrap()["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(codes.len(), 10);
        self.advance_clock(Duration::from_secs(30));
        (secret, codes)
    }

    /// Starts alice's flow and expects the second factor to be asked for.
    pub(crate) async fn flow_wanting_otp(&self, challenge: &str) -> String {
        let response = self.start_flow(challenge).await;
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "insufficient_authorization");
        assert_eq!(body["otp_required"], true);
        body["auth_session"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn send_otp(&self, auth_session: &str, otp: &str) -> reqwest::Response {
        self.challenge(
            &[
                ("client_id", "app"),
                ("auth_session", auth_session),
                ("otp", otp),
            ],
            None,
        )
        .await
    }
}

fn claims(jwt: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn without_a_second_factor_the_password_gets_a_code_and_a_code_is_used_once() {
    let app = spawn_app().await;
    app.seed_first_party().await;
    let (verifier, challenge) = pkce();
    let response = app.start_flow(&challenge).await;
    assert_eq!(response.status(), 200);
    let code = response.json::<Value>().await.unwrap()["authorization_code"]
        .as_str()
        .unwrap()
        .to_owned();
    // The wrong verifier: refused, and the code is not spent by it.
    let (other_verifier, _) = pkce();
    assert_oauth_error(
        app.redeem(&code, &other_verifier).await,
        400,
        "invalid_grant",
    )
    .await;
    let tokens = app.redeem(&code, &verifier).await;
    assert_eq!(tokens.status(), 200);
    let tokens: Value = tokens.json().await.unwrap();
    assert_eq!(
        claims(tokens["access_token"].as_str().unwrap())["amr"],
        serde_json::json!(["pwd"])
    );
    // As after a password login: the device's credential for the next one.
    assert!(tokens["device_token"].as_str().unwrap().starts_with("tsd_"));
    let refresh = tokens["refresh_token"].as_str().unwrap();
    // A second use: refused, and the session the first use started ends.
    assert_oauth_error(app.redeem(&code, &verifier).await, 400, "invalid_grant").await;
    assert_oauth_error(app.refresh("app", refresh).await, 400, "invalid_grant").await;
    // A flow without PKCE never gets a code.
    let no_pkce = app
        .challenge(
            &[
                ("client_id", "app"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            None,
        )
        .await;
    assert_oauth_error(no_pkce, 400, "invalid_request").await;
    // Codes expire after 60 s.
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
    app.advance_clock(Duration::from_secs(61));
    assert_oauth_error(app.redeem(&code, &verifier).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn with_totp_on_the_login_asks_for_a_code_and_remembers_it() {
    let app = spawn_app().await;
    app.seed_first_party().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (secret, _) = app.enroll(&access).await;

    let (verifier, challenge) = pkce();
    let auth_session = app.flow_wanting_otp(&challenge).await;
    // A wrong code: asked again, with the same auth_session.
    let wrong = app.send_otp(&auth_session, "000000").await;
    assert_eq!(wrong.status(), 403);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["auth_session"],
        auth_session.as_str()
    );
    let right = app
        .send_otp(&auth_session, &totp(&secret, app.now_unix()))
        .await;
    assert_eq!(right.status(), 200);
    let code = right.json::<Value>().await.unwrap()["authorization_code"]
        .as_str()
        .unwrap()
        .to_owned();
    // The flow is finished: its auth_session is no longer good.
    let again = app
        .send_otp(&auth_session, &totp(&secret, app.now_unix()))
        .await;
    assert_oauth_error(again, 400, "invalid_session").await;

    let tokens: Value = app.redeem(&code, &verifier).await.json().await.unwrap();
    let amr = serde_json::json!(["pwd", "otp", "mfa"]);
    assert_eq!(claims(tokens["access_token"].as_str().unwrap())["amr"], amr);
    assert_eq!(
        app.introspect(tokens["access_token"].as_str().unwrap())
            .await["amr"],
        amr
    );
    // Kept across refreshes.
    let refreshed: Value = app
        .refresh("app", tokens["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        claims(refreshed["access_token"].as_str().unwrap())["amr"],
        amr
    );

    // The same step's code on a second flow: already used (once per user).
    let (_, challenge) = pkce();
    let second = app.flow_wanting_otp(&challenge).await;
    let replayed = app.send_otp(&second, &totp(&secret, app.now_unix())).await;
    assert_eq!(replayed.status(), 403, "a code is accepted once");

    // The user view says the factor is on, never the secret.
    let show = tessera(Some(&app), &["user", "show", "alice"], "", &[]);
    let out = String::from_utf8_lossy(&show.stdout).to_string();
    assert!(out.contains("second_factor: true"), "{out}");
    assert!(!out.contains(&secret));
}

#[tokio::test]
async fn the_password_grant_hands_an_app_over_to_the_challenge_endpoint() {
    let app = spawn_app().await;
    app.seed_first_party().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (secret, _) = app.enroll(&access).await;
    // A client that could never finish the flow is told so, with no auth_session.
    let stuck = app.password_grant("mobile", "alice", PASSWORD).await;
    let body = assert_oauth_error(stuck, 400, "unauthorized_client").await;
    assert!(body.get("auth_session").is_none());
    // An older app: the password grant now answers 403 with an auth_session.
    let response = app.password_grant("app", "alice", PASSWORD).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_authorization");
    let auth_session = body["auth_session"].as_str().unwrap();
    // A newer one goes on at the challenge endpoint, giving PKCE now.
    let (verifier, challenge) = pkce();
    let code = app
        .challenge(
            &[
                ("client_id", "app"),
                ("auth_session", auth_session),
                ("otp", &totp(&secret, app.now_unix())),
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
            None,
        )
        .await;
    assert_eq!(code.status(), 200);
    let code = code.json::<Value>().await.unwrap()["authorization_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.redeem(&code, &verifier).await.status(), 200);

    // Without PKCE the flow cannot finish (and the code is not spent).
    app.advance_clock(Duration::from_secs(30));
    let response = app.password_grant("app", "alice", PASSWORD).await;
    let auth_session = response.json::<Value>().await.unwrap()["auth_session"]
        .as_str()
        .unwrap()
        .to_owned();
    let no_pkce = app
        .send_otp(&auth_session, &totp(&secret, app.now_unix()))
        .await;
    assert_oauth_error(no_pkce, 400, "invalid_request").await;
}

#[tokio::test]
async fn recovery_codes_work_once_and_a_new_set_voids_the_old() {
    let app = spawn_app().await;
    app.seed_first_party().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (secret, codes) = app.enroll(&access).await;
    let (verifier, challenge) = pkce();
    let auth_session = app.flow_wanting_otp(&challenge).await;
    // Typed loosely: upper case, a space for the dash.
    let typed = codes[0].to_uppercase().replace('-', " ");
    let response = app
        .challenge(
            &[
                ("client_id", "app"),
                ("auth_session", &auth_session),
                ("recovery_code", &typed),
            ],
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let code = response.json::<Value>().await.unwrap()["authorization_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let tokens: Value = app.redeem(&code, &verifier).await.json().await.unwrap();
    assert_eq!(
        claims(tokens["access_token"].as_str().unwrap())["amr"],
        serde_json::json!(["pwd", "mfa"])
    );
    let (_, challenge) = pkce();
    let auth_session = app.flow_wanting_otp(&challenge).await;
    let reused = app
        .challenge(
            &[
                ("client_id", "app"),
                ("auth_session", &auth_session),
                ("recovery_code", &codes[0]),
            ],
            None,
        )
        .await;
    assert_eq!(reused.status(), 403, "a recovery code works once");

    // A new set for a current code: the old set is void.
    let fresh: Value = app
        .http
        .post(format!("{}/auth/mfa/recovery-codes", app.address))
        .bearer_auth(&access)
        .form(&[("code", totp(&secret, app.now_unix()).as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fresh["recovery_codes"].as_array().unwrap().len(), 10);
    let old = app
        .challenge(
            &[
                ("client_id", "app"),
                ("auth_session", &auth_session),
                ("recovery_code", &codes[1]),
            ],
            None,
        )
        .await;
    assert_eq!(old.status(), 403, "the old set is void");
}

#[tokio::test]
async fn a_flow_is_used_up_by_wrong_codes_and_by_time() {
    let app = spawn_app_with(|s| s.login.lockout_threshold = 50).await;
    app.seed_first_party().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.enroll(&access).await;
    let (_, challenge) = pkce();
    let auth_session = app.flow_wanting_otp(&challenge).await;
    for _ in 0..4 {
        assert_eq!(app.send_otp(&auth_session, "000000").await.status(), 403);
    }
    let fifth = app.send_otp(&auth_session, "000000").await;
    assert_oauth_error(fifth, 400, "invalid_session").await;
    let after = app.send_otp(&auth_session, "000000").await;
    assert_oauth_error(after, 400, "invalid_session").await;

    let auth_session = app.flow_wanting_otp(&challenge).await;
    app.advance_clock(Duration::from_secs(5 * 60 + 1));
    let expired = app.send_otp(&auth_session, "000000").await;
    assert_oauth_error(expired, 400, "invalid_session").await;
    // Another client cannot go on with it either.
    let unknown = app
        .challenge(
            &[
                ("client_id", "app"),
                ("auth_session", "tsa_made_up"),
                ("otp", "123456"),
            ],
            None,
        )
        .await;
    assert_oauth_error(unknown, 400, "invalid_session").await;
}

#[tokio::test]
async fn wrong_codes_count_in_the_lockout_shared_by_two_instances() {
    let app = spawn_app_with(|s| s.login.lockout_threshold = 3).await;
    app.seed_first_party().await;
    let other = spawn_on(app.db.clone(), |s| s.login.lockout_threshold = 3).await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (secret, _) = app.enroll(&access).await;
    let (_, challenge) = pkce();
    let first = app.flow_wanting_otp(&challenge).await;
    let second = app.flow_wanting_otp(&challenge).await;
    // A code used through one instance is spent for the other.
    let code = totp(&secret, app.now_unix());
    assert_eq!(app.send_otp(&first, &code).await.status(), 200);
    assert_eq!(other.send_otp(&second, &code).await.status(), 403);
    // Three wrong codes across both instances lock the username.
    assert_eq!(other.send_otp(&second, "000000").await.status(), 403);
    assert_eq!(app.send_otp(&second, "111111").await.status(), 403);
    let locked = other
        .send_otp(&second, &totp(&secret, app.now_unix() + 30))
        .await;
    assert_eq!(locked.status(), 429);
}

#[tokio::test]
async fn a_login_left_at_its_second_factor_counts_until_a_right_code() {
    let app = spawn_app_with(|s| s.login.lockout_threshold = 3).await;
    app.seed_first_party().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (secret, _) = app.enroll(&access).await;
    let (_, challenge) = pkce();
    // A right password alone is not a login: each attempt stays counted,
    // and three lock the source.
    let _left = app.flow_wanting_otp(&challenge).await;
    let _also_left = app.flow_wanting_otp(&challenge).await;
    let third = app.flow_wanting_otp(&challenge).await;
    assert_eq!(app.start_flow(&challenge).await.status(), 429);
    // A right code forgives its own flow's attempt (and lifts the lock),
    // but not those of the two flows never tried.
    let code = totp(&secret, app.now_unix() + 30);
    assert_eq!(app.send_otp(&third, &code).await.status(), 200);
    let _fourth = app.flow_wanting_otp(&challenge).await;
    assert_eq!(app.start_flow(&challenge).await.status(), 429);
}

#[tokio::test]
async fn a_flow_started_with_a_dpop_proof_stays_bound_to_its_key() {
    let app = spawn_app().await;
    app.seed_first_party().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (secret, _) = app.enroll(&access).await;
    let key = ProofKey::es256().unwrap();
    let url = format!("{}/auth/challenge", app.state.settings.issuer);
    let proof = |key: &ProofKey| key.proof("POST", &url, app.now_unix(), None, None).unwrap();
    let (verifier, challenge) = pkce();
    let started = app
        .challenge(
            &[
                ("client_id", "app"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            Some(proof(&key)),
        )
        .await;
    assert_eq!(started.status(), 403);
    let auth_session = started.json::<Value>().await.unwrap()["auth_session"]
        .as_str()
        .unwrap()
        .to_owned();
    let form = |otp: String| {
        vec![
            ("client_id", "app".to_owned()),
            ("auth_session", auth_session.clone()),
            ("otp", otp),
        ]
    };
    let thief = ProofKey::es256().unwrap();
    let otp = totp(&secret, app.now_unix());
    let without = app
        .http
        .post(format!("{}/auth/challenge", app.address))
        .form(&form(otp.clone()))
        .send()
        .await
        .unwrap();
    assert_oauth_error(without, 400, "invalid_dpop_proof").await;
    let with_other = app
        .http
        .post(format!("{}/auth/challenge", app.address))
        .header("DPoP", proof(&thief))
        .form(&form(otp.clone()))
        .send()
        .await
        .unwrap();
    assert_oauth_error(with_other, 400, "invalid_dpop_proof").await;
    let with_key = app
        .http
        .post(format!("{}/auth/challenge", app.address))
        .header("DPoP", proof(&key))
        .form(&form(otp))
        .send()
        .await
        .unwrap();
    assert_eq!(with_key.status(), 200);
    let code = with_key.json::<Value>().await.unwrap()["authorization_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let redeem = |proof: String| {
        app.http
            .post(format!("{}/auth/token", app.address))
            .header("DPoP", proof)
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", "app"),
                ("code", &code),
                ("code_verifier", &verifier),
            ])
            .send()
    };
    let stolen = redeem(app.token_proof(&thief, None)).await.unwrap();
    assert_oauth_error(stolen, 400, "invalid_dpop_proof").await;
    let tokens = redeem(app.token_proof(&key, None)).await.unwrap();
    assert_eq!(tokens.status(), 200);
    let tokens: Value = tokens.json().await.unwrap();
    assert_eq!(tokens["token_type"], "DPoP");
    assert_eq!(
        claims(tokens["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
}

#[tokio::test]
async fn enrollment_rules_and_turning_it_off() {
    let app = spawn_app().await;
    app.seed_first_party().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mfa = |method: Method, path: &str, token: &str| {
        app.http
            .request(method, format!("{}{path}", app.address))
            .bearer_auth(token.to_owned())
    };
    // A client's own token cannot enroll anyone.
    let service = app.service_token("svc", &["read"]).await;
    let refused = mfa(Method::POST, "/auth/mfa/totp", &service)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // Until confirmed, nothing changes; a wrong code confirms nothing.
    let pending: Value = mfa(Method::POST, "/auth/mfa/totp", &access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wrong = mfa(Method::POST, "/auth/mfa/totp/confirm", &access)
        .form(&[("code", "000000")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(wrong, 400, "invalid_request").await;
    assert_eq!(
        app.password_grant("app", "alice", PASSWORD).await.status(),
        200
    );
    assert!(pending["secret"].is_string());
    // A new enrollment replaces the pending one; once on, a third is a 409.
    let (secret, codes) = app.enroll(&access).await;
    let again = mfa(Method::POST, "/auth/mfa/totp", &access)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    // Off with a recovery code; then the password alone logs in again.
    let off = mfa(Method::DELETE, "/auth/mfa/totp", &access)
        .form(&[("recovery_code", codes[3].as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 204);
    assert_eq!(
        app.password_grant("app", "alice", PASSWORD).await.status(),
        200
    );
    assert!(!secret.is_empty());

    // An operator turns it off for a lost phone (audited).
    let (_, _) = app.enroll(&access).await;
    assert_eq!(
        app.password_grant("app", "alice", PASSWORD).await.status(),
        403
    );
    let reset = tessera(Some(&app), &["user", "mfa-reset", "alice"], "", &[]);
    assert!(reset.status.success(), "{reset:?}");
    assert_eq!(
        app.password_grant("app", "alice", PASSWORD).await.status(),
        200
    );
    let (_, _) = app.enroll(&access).await;
    let admin = app.admin_token().await;
    let user_id: Value = app
        .admin(Method::GET, "/admin/users?username=alice", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = user_id["users"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(user_id["users"][0]["second_factor"], true);
    let reset = app
        .admin(Method::DELETE, &format!("/admin/users/{id}/mfa"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(
        app.password_grant("app", "alice", PASSWORD).await.status(),
        200
    );
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'user.mfa_reset'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audited, 2);
    // The secret is stored sealed, never as the base32 the user saw.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_sealed FROM user_totp")
        .fetch_one(&app.pool)
        .await
        .unwrap_or_default();
    assert!(!String::from_utf8_lossy(&stored).contains(&secret));
}

#[tokio::test]
async fn a_right_password_does_not_wipe_the_wrong_codes_before_it() {
    let app = spawn_app_with(|s| s.login.lockout_threshold = 3).await;
    app.seed_first_party().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (secret, _) = app.enroll(&access).await;
    let (_, challenge) = pkce();
    let first = app.flow_wanting_otp(&challenge).await;
    assert_eq!(app.send_otp(&first, "000000").await.status(), 403);
    assert_eq!(app.send_otp(&first, "111111").await.status(), 403);
    // The password again: a new flow, but the two wrong codes still count.
    let second = app.flow_wanting_otp(&challenge).await;
    assert_eq!(app.send_otp(&second, "222222").await.status(), 403);
    let locked = app.send_otp(&second, &totp(&secret, app.now_unix())).await;
    assert_eq!(
        locked.status(),
        429,
        "three wrong codes lock, whatever the passwords between"
    );
    // The password grant does not wipe them either.
    let response = app.password_grant("app", "alice", PASSWORD).await;
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn turning_it_on_needs_a_recent_login_not_just_a_fresh_token() {
    let app = spawn_app().await;
    app.seed_first_party().await;
    let login = app.login().await;
    // Eleven minutes on, a refresh gives a fresh access token of the same
    // (old) login: a copied token cannot plant the copier's authenticator.
    app.advance_clock(Duration::from_secs(11 * 60));
    let refreshed: Value = app
        .refresh("mobile", login["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let stale = app
        .http
        .post(format!("{}/auth/mfa/totp", app.address))
        .bearer_auth(refreshed["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let challenge = stale.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\"")
            && challenge.contains("max_age=\"600\""),
        "{challenge}"
    );
    assert_oauth_error(stale, 401, "insufficient_user_authentication").await;
    // A new login may.
    let fresh = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.enroll(&fresh).await;
}

#[tokio::test]
async fn concurrent_guesses_cannot_take_more_than_a_flows_tries() {
    let app = spawn_app_with(|s| {
        s.login.lockout_threshold = 100;
        s.login.username_lockout_threshold = 100;
        s.login.address_burst = 100;
    })
    .await;
    app.seed_first_party().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.enroll(&access).await;
    let (_, challenge) = pkce();
    let auth_session = app.flow_wanting_otp(&challenge).await;
    let guesses = (0..12).map(|i| {
        let guess = format!("{:06}", 100_000 + i);
        let auth_session = auth_session.clone();
        let app = &app;
        async move { app.send_otp(&auth_session, &guess).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let asked_again = statuses.iter().filter(|s| **s == 403).count();
    assert!(asked_again <= 4, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 403 || *s == 400),
        "{statuses:?}"
    );
    // Tries taken: at most five, however many guesses raced; and only the
    // guesses that got a try were checked (and counted in the lockout).
    let failures: i32 = sqlx::query_scalar("SELECT failures FROM login_challenges")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(failures <= 5, "{failures}");
    let checked: i32 = sqlx::query_scalar(
        "SELECT failures FROM login_throttle WHERE username = 'alice' AND source = '*'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(checked <= 5, "{checked} guesses were checked");
}
