//! Password-guessing limits: the per-username lockout (in Postgres, shared
//! by every instance, reserved before hashing) and the per-address bucket.

use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_oauth_error, spawn_app_with, spawn_on};

const LOCKED: &str = "too many failed attempts; retry later";

/// Settings for lockout tests: the address bucket out of the way.
fn roomy(s: &mut tessera::config::Settings) {
    s.login.address_burst = 10_000;
}

async fn wrong(app: &TestApp, username: &str) -> Response {
    app.password_grant("mobile", username, "not the password")
        .await
}

/// Asserts a 429 with the lockout body and returns its `Retry-After`.
async fn assert_throttled(response: Response) -> u64 {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("Retry-After on a 429")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = assert_oauth_error(response, 429, "invalid_grant").await;
    assert_eq!(body["error_description"], LOCKED);
    retry_after
}

/// Retry-After is the lock's end rounded up to the minute (a guesser is not
/// told to the second), and counts down in real time: a slow machine may
/// answer a second or two after the lock was set.
#[track_caller]
fn assert_locked_for(retry_after: u64, lock: u64) {
    let minutes = |secs: u64| secs.div_ceil(60).max(1) * 60;
    assert!(
        retry_after == minutes(lock) || retry_after == minutes(lock.saturating_sub(3)),
        "Retry-After {retry_after}, expected {lock} s rounded up to the minute"
    );
}

/// Fails `username`'s login `times` times, each answered 400 invalid_grant.
async fn fail(app: &TestApp, username: &str, times: usize) {
    for attempt in 1..=times {
        let response = wrong(app, username).await;
        assert_eq!(response.status(), 400, "failure {attempt} of {username}");
    }
}

async fn throttled_total(app: &TestApp, reason: &str) -> f64 {
    let text = app
        .http
        .get(format!("{}/metrics", app.admin_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("tessera_login_throttled_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn admin_user(app: &TestApp, token: &str, id: uuid::Uuid) -> Value {
    app.admin(Method::GET, &format!("/admin/users/{id}"), token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn ten_failures_lock_the_username_even_against_the_right_password() {
    let app = spawn_app_with(roomy).await;
    let alice = app.seed().await;
    let before = throttled_total(&app, "account").await;

    fail(&app, "alice", 10).await;
    assert_locked_for(assert_throttled(wrong(&app, "alice").await).await, 30);
    let right = app.password_grant("mobile", "alice", PASSWORD).await;
    assert_locked_for(assert_throttled(right).await, 30);
    assert!(throttled_total(&app, "account").await >= before + 2.0);

    // Attempts refused while locked are not counted: the lock does not grow.
    app.advance_clock(Duration::from_secs(10));
    assert_locked_for(assert_throttled(wrong(&app, "alice").await).await, 20);
    let token = app.admin_token().await;
    let user = admin_user(&app, &token, alice).await;
    assert_eq!(user["failed_logins"], 10);
    assert!(user["locked_until"].is_string(), "{user}");
}

#[tokio::test]
async fn the_lock_doubles_with_each_further_failure_up_to_the_cap() {
    let app = spawn_app_with(roomy).await;
    app.seed().await;
    fail(&app, "alice", 10).await;
    let mut lock = 30;
    for expected in [60, 120, 240, 480, 900, 900] {
        assert_locked_for(assert_throttled(wrong(&app, "alice").await).await, lock);
        app.advance_clock(Duration::from_secs(lock));
        // The lock is over: one more guess is checked, fails, and locks again.
        assert_eq!(wrong(&app, "alice").await.status(), 400);
        lock = expected;
    }
    assert_locked_for(assert_throttled(wrong(&app, "alice").await).await, 900);
}

#[tokio::test]
async fn a_successful_login_resets_the_count() {
    let app = spawn_app_with(roomy).await;
    let alice = app.seed().await;
    fail(&app, "alice", 9).await;
    assert_eq!(
        app.password_grant("mobile", "alice", PASSWORD)
            .await
            .status(),
        200
    );
    fail(&app, "alice", 10).await;
    assert_throttled(wrong(&app, "alice").await).await;

    // Once the lock is over, the right password gets in and clears it all.
    app.advance_clock(Duration::from_secs(30));
    assert_eq!(
        app.password_grant("mobile", "alice", PASSWORD)
            .await
            .status(),
        200
    );
    let token = app.admin_token().await;
    let user = admin_user(&app, &token, alice).await;
    assert_eq!(user["failed_logins"], 0);
    assert!(user["locked_until"].is_null());
    fail(&app, "alice", 10).await;
}

#[tokio::test]
async fn unknown_usernames_are_counted_and_locked_exactly_like_real_ones() {
    let app = spawn_app_with(roomy).await;
    app.seed().await;
    for attempt in 1..=11 {
        let real = wrong(&app, "alice").await;
        let unknown = wrong(&app, "nobody-here").await;
        assert_eq!(real.status(), unknown.status(), "attempt {attempt}");
        let header = |r: &Response| r.headers().get("retry-after").cloned();
        assert_eq!(header(&real), header(&unknown), "attempt {attempt}");
        assert_eq!(
            real.bytes().await.unwrap(),
            unknown.bytes().await.unwrap(),
            "attempt {attempt}"
        );
    }
    assert_throttled(wrong(&app, "nobody-here").await).await;
}

#[tokio::test]
async fn every_instance_enforces_the_lock_without_hashing() {
    let app = spawn_app_with(roomy).await;
    app.seed().await;
    app.create_user("bob", PASSWORD, &["read"]).await;
    fail(&app, "alice", 10).await;

    // This instance cannot hash at all (no queue): any login that reached
    // argon2 would be a 503. The lock is read from the shared database.
    let other = spawn_on(app.db.clone(), |s| s.password.max_queue = 0).await;
    let right = other.password_grant("mobile", "alice", PASSWORD).await;
    assert_locked_for(assert_throttled(right).await, 30);
    let unlocked = other.password_grant("mobile", "bob", PASSWORD).await;
    assert_oauth_error(unlocked, 503, "temporarily_unavailable").await;

    // That 503 checked no password, so it did not count against bob: ten
    // failures lock him, not nine. And a lock set through the second
    // instance holds on the first.
    let second = app.spawn_second_instance().await;
    fail(&second, "bob", 10).await;
    assert_throttled(app.password_grant("mobile", "bob", PASSWORD).await).await;
}

/// `n` wrong guesses at alice's password at once; their statuses.
async fn concurrent_guesses(app: &TestApp, n: usize) -> Vec<u16> {
    let guesses = (0..n).map(|i| async move {
        app.password_grant("mobile", "alice", &format!("guess {i}"))
            .await
            .status()
            .as_u16()
    });
    futures_util::future::join_all(guesses).await
}

#[tokio::test]
async fn concurrent_guesses_cannot_exceed_the_threshold() {
    let app = spawn_app_with(roomy).await;
    app.seed().await;
    let statuses = concurrent_guesses(&app, 100).await;
    let hashed = statuses.iter().filter(|s| **s == 400).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(hashed + refused, 100, "{statuses:?}");
    assert_eq!(
        hashed, 10,
        "only the threshold's worth of guesses may be checked"
    );
    let failures: i32 = sqlx::query_scalar(
        "SELECT failures FROM login_throttle WHERE username = 'alice' AND source <> '*'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(failures, 10);
}

#[tokio::test]
async fn operators_unlock_through_the_admin_api_and_it_is_audited() {
    let app = spawn_app_with(roomy).await;
    let alice = app.seed().await;
    let token = app.admin_token().await;
    fail(&app, "alice", 10).await;
    assert_throttled(app.password_grant("mobile", "alice", PASSWORD).await).await;

    let unlocked = app
        .admin(
            Method::POST,
            &format!("/admin/users/{alice}/unlock"),
            &token,
        )
        .json(&json!({"reason": "called the help desk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unlocked.status(), 200);
    let user: Value = unlocked.json().await.unwrap();
    assert_eq!(user["id"], alice.to_string());
    assert_eq!(user["failed_logins"], 0);
    assert!(user["locked_until"].is_null());
    let (target, reason): (String, String) = sqlx::query_as(
        "SELECT target, reason FROM audit_log WHERE action = 'user.unlock' AND actor_client_id LIKE 'ops-%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (target.as_str(), reason.as_str()),
        (alice.to_string().as_str(), "called the help desk")
    );
    assert_eq!(
        app.password_grant("mobile", "alice", PASSWORD)
            .await
            .status(),
        200
    );

    let missing = app
        .admin(
            Method::POST,
            &format!("/admin/users/{}/unlock", uuid::Uuid::new_v4()),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let anonymous = app
        .http
        .post(format!("{}/admin/users/{alice}/unlock", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn failed_logins_from_one_address_are_limited() {
    let app = spawn_app_with(|s| {
        s.login.address_burst = 3;
        s.login.address_refill = Duration::from_secs(3600);
    })
    .await;
    app.seed().await;
    let before = throttled_total(&app, "address").await;
    // Successful logins take nothing from the bucket.
    for _ in 0..5 {
        assert_eq!(
            app.password_grant("mobile", "alice", PASSWORD)
                .await
                .status(),
            200
        );
    }
    // Three failures, each for another username (no account is locked)...
    for name in ["u1", "u2", "u3"] {
        assert_eq!(wrong(&app, name).await.status(), 400);
    }
    // ...empty the bucket: any password login from here waits, unchecked.
    let retry = assert_throttled(wrong(&app, "u4").await).await;
    assert!((3500..=3600).contains(&retry), "Retry-After {retry}");
    assert_throttled(app.password_grant("mobile", "alice", PASSWORD).await).await;
    assert!(throttled_total(&app, "address").await >= before + 2.0);
    // Other grants are not affected.
    let secret = app
        .create_confidential_client("svc", &["client_credentials"], &[])
        .await;
    assert_eq!(app.client_token("svc", &secret, None).await.status(), 200);
}

/// A failed login from `app` claiming to come from `header: value`.
async fn wrong_via(app: &TestApp, username: &str, header: &str, value: &str) -> Response {
    app.http
        .post(format!("{}/auth/token", app.address))
        .header(header, value)
        .form(&[
            ("grant_type", "password"),
            ("client_id", "mobile"),
            ("username", username),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    // The tests connect from 127.0.0.1: here that is a trusted proxy.
    let proxied = spawn_app_with(|s| {
        s.login.address_burst = 2;
        s.login.address_refill = Duration::from_secs(3600);
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    proxied.seed().await;
    let xff = "x-forwarded-for";
    for name in ["a1", "a2"] {
        let r = wrong_via(&proxied, name, xff, "198.51.100.7, 203.0.113.1").await;
        assert_eq!(r.status(), 400);
    }
    assert_throttled(wrong_via(&proxied, "a3", xff, "203.0.113.1").await).await;
    // Another client behind the proxy has a bucket of its own...
    let other = wrong_via(&proxied, "a4", xff, "203.0.113.1, 203.0.113.2").await;
    assert_eq!(other.status(), 400);
    // ...and so does the address named by a `Forwarded` header.
    let forwarded = wrong_via(&proxied, "a5", "forwarded", "for=203.0.113.3").await;
    assert_eq!(forwarded.status(), 400);

    // Here 127.0.0.1 is just a client: the headers it sends are ignored.
    let direct = spawn_app_with(|s| {
        s.login.address_burst = 2;
        s.login.address_refill = Duration::from_secs(3600);
    })
    .await;
    direct.seed().await;
    assert_eq!(
        wrong_via(&direct, "b1", xff, "203.0.113.1").await.status(),
        400
    );
    assert_eq!(
        wrong_via(&direct, "b2", xff, "203.0.113.2").await.status(),
        400
    );
    assert_throttled(wrong_via(&direct, "b3", xff, "203.0.113.3").await).await;
    assert_throttled(wrong_via(&direct, "b4", "forwarded", "for=203.0.113.4").await).await;
}

#[tokio::test]
async fn lockouts_are_pruned_once_over_and_quiet() {
    let app = spawn_app_with(behind_proxy).await;
    app.seed().await;
    for _ in 0..10 {
        login_from(&app, "198.51.100.1", "alice", "guess", None).await;
    }
    for _ in 0..3 {
        login_from(&app, "198.51.100.1", "nobody-here", "guess", None).await;
    }
    let policy = tessera::throttle::policy(&app.state.settings.login);
    let prune = |at| tessera::store::login_throttle::prune(&app.pool, policy, at, 1000);
    // Still locked, or failures too recent: kept.
    assert_eq!(prune(app.state.clock.now()).await.unwrap(), 0);
    assert_eq!(app.count("login_throttle").await, 4);

    // A day later alice is locked again, from another address: only the
    // quiet rows go, each by its own username and source.
    app.advance_clock(Duration::from_secs(25 * 3600));
    for _ in 0..10 {
        login_from(&app, "198.51.100.2", "alice", "guess", None).await;
    }
    assert_eq!(prune(app.state.clock.now()).await.unwrap(), 3);
    assert_throttled(login_from(&app, "198.51.100.2", "alice", PASSWORD, None).await).await;
    let later = app.state.clock.now() + chrono::Duration::hours(25);
    assert_eq!(prune(later).await.unwrap(), 2);
    assert_eq!(app.count("login_throttle").await, 0);
}

/// A password login from `from` (a forwarded address: the tests connect
/// from 127.0.0.1, a trusted proxy in `behind_proxy`), with a device
/// credential if given.
async fn login_from(
    app: &TestApp,
    from: &str,
    username: &str,
    password: &str,
    device: Option<&str>,
) -> Response {
    let mut form = vec![
        ("grant_type", "password"),
        ("client_id", "mobile"),
        ("username", username),
        ("password", password),
    ];
    if let Some(device) = device {
        form.push(("device_token", device));
    }
    app.http
        .post(format!("{}/auth/token", app.address))
        .header("x-forwarded-for", from)
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Lockout settings for tests of sources: the address bucket out of the
/// way, 127.0.0.1 a trusted proxy, a username-wide threshold of 15.
fn behind_proxy(s: &mut tessera::config::Settings) {
    s.login.address_burst = 10_000;
    s.login.username_lockout_threshold = 15;
    s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

#[tokio::test]
async fn one_source_cannot_lock_the_others_out() {
    let app = spawn_app_with(behind_proxy).await;
    let alice = app.seed().await;
    let attacker = "198.51.100.66";
    for _ in 0..10 {
        let r = login_from(&app, attacker, "alice", "guess", None).await;
        assert_eq!(r.status(), 400);
    }
    assert_throttled(login_from(&app, attacker, "alice", PASSWORD, None).await).await;
    // Alice, anywhere else, is not locked out...
    let home = login_from(&app, "203.0.113.5", "alice", PASSWORD, None).await;
    assert_eq!(home.status(), 200);
    // ...and after an operator's unlock, ten more guesses from the
    // attacker lock only the attacker again.
    let token = app.admin_token().await;
    let unlock = app
        .admin(
            Method::POST,
            &format!("/admin/users/{alice}/unlock"),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unlock.status(), 200);
    for _ in 0..10 {
        login_from(&app, attacker, "alice", "guess", None).await;
    }
    assert_throttled(login_from(&app, attacker, "alice", "guess", None).await).await;
    let home = login_from(&app, "203.0.113.5", "alice", PASSWORD, None).await;
    assert_eq!(home.status(), 200);
}

#[tokio::test]
async fn guessing_spread_over_many_sources_locks_the_username_but_not_its_devices() {
    let app = spawn_app_with(behind_proxy).await;
    app.seed().await;
    // Alice logged in on her phone before: it holds a device credential.
    let phone = login_from(&app, "203.0.113.5", "alice", PASSWORD, None).await;
    assert_eq!(phone.status(), 200);
    let phone: Value = phone.json().await.unwrap();
    let device = phone["device_token"].as_str().unwrap().to_owned();
    assert!(device.starts_with("tsd_"), "{device}");

    // Fifteen guesses, one from each of fifteen addresses: no source is
    // near its own threshold, the username-wide one is reached.
    for n in 1..=15 {
        let r = login_from(&app, &format!("198.51.100.{n}"), "alice", "guess", None).await;
        assert_eq!(r.status(), 400, "guess {n}");
    }
    let fresh = login_from(&app, "192.0.2.200", "alice", PASSWORD, None).await;
    let retry_after = assert_throttled(fresh).await;
    assert_eq!(retry_after, 60, "rounded up to the minute, not 30");

    // The phone still gets in (and gets a new credential)...
    let again = login_from(&app, "198.51.100.1", "alice", PASSWORD, Some(&device)).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_ne!(again["device_token"], phone["device_token"]);
    // ...but a credential is no master key: a wrong password with it is
    // refused and counted against that device alone, ten lock it.
    for _ in 0..10 {
        let r = login_from(&app, "198.51.100.1", "alice", "guess", Some(&device)).await;
        assert_eq!(r.status(), 400);
    }
    let locked = login_from(&app, "198.51.100.1", "alice", PASSWORD, Some(&device)).await;
    assert_throttled(locked).await;
    let newer = again["device_token"].as_str().unwrap();
    let other_phone = login_from(&app, "198.51.100.1", "alice", PASSWORD, Some(newer)).await;
    assert_eq!(
        other_phone.status(),
        200,
        "another credential is another device"
    );
    // Nor does it work for another username, or once tampered with.
    app.create_user("bob", PASSWORD, &["read"]).await;
    for n in 1..=15 {
        login_from(&app, &format!("198.51.100.{n}"), "bob", "guess", None).await;
    }
    assert_throttled(login_from(&app, "192.0.2.9", "bob", PASSWORD, Some(newer)).await).await;
    let forged = format!("{}A", &newer[..newer.len() - 1]);
    assert_throttled(login_from(&app, "192.0.2.9", "bob", PASSWORD, Some(&forged)).await).await;
}

#[tokio::test]
async fn a_login_that_fails_on_the_servers_side_is_not_counted() {
    let app = spawn_app_with(|s| {
        roomy(s);
        s.database.request_timeout = Duration::from_millis(300);
    })
    .await;
    app.seed().await;
    // The session cannot start while another transaction holds alice's row:
    // the right password gets a 503, nine times.
    let held = crate::helpers::Held::lock(&app.db.url, "SELECT id FROM users FOR UPDATE").await;
    for _ in 0..9 {
        let r = app.password_grant("mobile", "alice", PASSWORD).await;
        assert_oauth_error(r, 503, "temporarily_unavailable").await;
    }
    held.release().await;
    // Each was taken back, its rows with it: nothing is left behind.
    assert_eq!(app.count("login_throttle").await, 0);
    // None of them counts: nine real failures and alice is still in.
    fail(&app, "alice", 9).await;
    let r = app.password_grant("mobile", "alice", PASSWORD).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn names_no_account_can_have_allocate_nothing_and_lock_no_one() {
    let app = spawn_app_with(|s| {
        s.login.address_burst = 2;
        s.login.address_refill = Duration::from_secs(3600);
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    app.seed().await;
    // Refused before any work: nothing to remember, per address or name.
    for n in 0..200u32 {
        let from = format!("10.{}.{}.1", n / 256, n % 256);
        let r = login_from(&app, &from, "no spaces allowed", "x", None).await;
        assert_oauth_error(r, 400, "invalid_grant").await;
    }
    assert!(app.state.addresses.is_empty());
    assert_eq!(app.count("login_throttle").await, 0);
    let r = login_from(&app, "10.0.0.1", "alice", PASSWORD, None).await;
    assert_eq!(r.status(), 200);
    // Real failures do take from the address's bucket.
    login_from(&app, "10.0.0.1", "u1", "x", None).await;
    assert_eq!(app.state.addresses.len(), 1);
}

#[tokio::test]
async fn concurrent_logins_refused_by_a_full_hashing_queue_are_all_taken_back() {
    let app = spawn_app_with(|s| {
        roomy(s);
        s.login.lockout_threshold = 50;
        s.password.max_concurrent = 1;
        s.password.max_queue = 1;
    })
    .await;
    app.seed().await;
    let statuses = concurrent_guesses(&app, 40).await;
    let checked = statuses.iter().filter(|s| **s == 400).count() as i32;
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(checked as usize + busy, 40, "{statuses:?}");
    assert!(busy > 0, "the queue never filled: {statuses:?}");
    // Only the guesses that were checked count, in both rows (the take-backs
    // queue behind the counting in one lock order: no deadlock loses one).
    let counts: Vec<(String, i32)> = sqlx::query_as(
        "SELECT source, failures FROM login_throttle WHERE username = 'alice' ORDER BY source",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        counts,
        [
            ("*".to_owned(), checked),
            ("ip:127.0.0.1".to_owned(), checked)
        ]
    );
}

#[tokio::test]
async fn a_username_wide_lock_is_not_renewed_by_one_guess_when_it_ends() {
    let app = spawn_app_with(behind_proxy).await;
    app.seed().await;
    for n in 1..=15 {
        login_from(&app, &format!("198.51.100.{n}"), "alice", "guess", None).await;
    }
    assert_throttled(login_from(&app, "192.0.2.1", "alice", PASSWORD, None).await).await;
    // While it holds, refused attempts from new addresses store nothing.
    let rows = app.count("login_throttle").await;
    for n in 1..=20 {
        let from = format!("203.0.113.{n}");
        assert_throttled(login_from(&app, &from, "alice", "guess", None).await).await;
    }
    assert_eq!(app.count("login_throttle").await, rows);

    // The lock ends: one guess does not renew it...
    app.advance_clock(Duration::from_secs(31));
    let r = login_from(&app, "198.51.100.99", "alice", "guess", None).await;
    assert_eq!(r.status(), 400);
    let r = login_from(&app, "192.0.2.1", "alice", PASSWORD, None).await;
    assert_eq!(r.status(), 200, "locked again by one guess");
    // ...a whole new burst from many sources does, for twice as long.
    for n in 100..=114 {
        login_from(&app, &format!("198.51.100.{n}"), "alice", "guess", None).await;
    }
    let locked = login_from(&app, "192.0.2.2", "alice", PASSWORD, None).await;
    assert_throttled(locked).await;
    app.advance_clock(Duration::from_secs(31));
    let still = login_from(&app, "192.0.2.2", "alice", PASSWORD, None).await;
    assert_throttled(still).await;
    app.advance_clock(Duration::from_secs(30));
    let r = login_from(&app, "192.0.2.2", "alice", PASSWORD, None).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn requests_refused_before_hashing_count_for_nothing() {
    let app = spawn_app_with(behind_proxy).await;
    app.seed().await;
    // Over-long passwords from many addresses: refused as invalid, never
    // hashed, so never counted against alice.
    let long = "x".repeat(app.state.settings.password.max_length + 1);
    for n in 1..=20 {
        let r = login_from(&app, &format!("198.51.100.{n}"), "alice", &long, None).await;
        assert_oauth_error(r, 400, "invalid_request").await;
    }
    assert_eq!(app.count("login_throttle").await, 0);
    let r = login_from(&app, "192.0.2.1", "alice", PASSWORD, None).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_operators_unlock_during_a_flood_is_never_a_500() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.password.max_queue = 4096;
    })
    .await;
    let alice = app.seed().await;
    let token = app.admin_token().await;
    let flood = (0..60).map(|i| {
        let app = &app;
        async move {
            login_from(
                app,
                &format!("198.51.100.{}", i % 30),
                "alice",
                "guess",
                None,
            )
            .await
            .status()
            .as_u16()
        }
    });
    let unlocks = (0..20).map(|_| {
        let (app, token) = (&app, &token);
        async move {
            app.admin(Method::POST, &format!("/admin/users/{alice}/unlock"), token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let (logins, unlocks) = futures_util::future::join(
        futures_util::future::join_all(flood),
        futures_util::future::join_all(unlocks),
    )
    .await;
    assert!(logins.iter().all(|s| [400, 429].contains(s)), "{logins:?}");
    assert!(unlocks.iter().all(|s| *s == 200), "{unlocks:?}");
}
