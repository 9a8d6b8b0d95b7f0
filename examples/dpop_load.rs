//! Token-endpoint load with and without DPoP for `bench/run.sh`. wrk cannot
//! do this: a proof is accepted once (its `jti` is remembered), so replaying
//! one request would measure replay refusals, not issuance.
//!
//! Each of `workers` tasks holds its own ES256 key (a client holds one) and
//! for `seconds` posts token requests on one shared connection pool:
//! - `client_credentials`: client `$BENCH_CLIENT_ID` (default `svc`) with
//!   `$BENCH_CLIENT_SECRET` in HTTP Basic;
//! - `password`: public client `app`, users `u0..u{users-1}` round-robin,
//!   password `$BENCH_PASSWORD` (default "bench password 123");
//! - `challenge` (without proofs only): a login with a second factor
//!   through the first-party apps challenge endpoint, three requests each:
//!   `POST /auth/challenge` with the password and a fresh PKCE S256
//!   challenge (403 `insufficient_authorization` with an `auth_session`),
//!   `POST /auth/challenge` with the `auth_session` and a TOTP code (200
//!   with an `authorization_code`), then `POST /auth/token` with that code
//!   and the PKCE verifier. A login counts as ok only if all three answered
//!   as expected, the last 200 with an access token. Public client
//!   `$BENCH_NATIVE_CLIENT_ID` (default `native`, granted
//!   `authorization_code`), users and TOTP secrets from the file `enroll`
//!   wrote (`$BENCH_TOTP_FILE`).
//!
//! `enroll` turns TOTP on for users `m0..m{users-1}` (`$BENCH_TOTP_PREFIX`,
//! same password), `workers` at a time, each with its own access token
//! from a password-grant login at client `app`, and writes one line per
//! user to `file`: username, base32 secret, the step its confirmation
//! spent. The server accepts a code for the step before, of and after
//! "now", each step once per user and only after the last one accepted
//! (steps only go forward). So a user gives at most about one login per
//! 30 s step: the confirmation spends the step before when it safely can
//! (leaving "now" and the next one), and `challenge` hands each worker a
//! user with a step still free (the oldest that stays valid for at least
//! the next 5 s), one login per user at a time. When none is free it
//! waits and counts `starved`: too few users for the rate, the row is void.
//! `challenge` writes the steps it spent back to the file, for a next run.
//!
//! With `dpop`, every request carries a fresh proof made just before it is
//! sent (its `htu` is the `token_endpoint` from the server's metadata, its
//! `iat` the local clock), and the response must say `token_type` DPoP.
//! With `none`, the same loop sends no proof and expects Bearer: the fair
//! baseline for the ratio, measured by the same tool on the same pool.
//!
//! cargo run --release --example dpop_load -- <base_url> <client_credentials|password> <dpop|none> [workers] [seconds] [users]
//! cargo run --release --example dpop_load -- <base_url> enroll <file> [workers] [users]
//! cargo run --release --example dpop_load -- <base_url> challenge none [workers] [seconds]
//! Prints one line: rps=… p50_ms=… p99_ms=… ok=… errors=… (and, for
//! `challenge`, starved=…; for `enroll`, enrolled=… seconds=…).
// A load generator for the benchmark: any failure ends the run, loudly; a
// client's proofs are dated by its own clock, as a real client's are.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Client, StatusCode};
use tessera_dpop::ProofKey;

#[derive(Clone, Copy, PartialEq)]
enum Grant {
    ClientCredentials,
    Password,
    Challenge,
}

/// RFC 6238: seconds per step.
const STEP: i64 = 30;
/// A code is handed out only if it stays valid this long (seconds): the
/// password request (argon2, queued) comes before it is sent.
const MARGIN: i64 = 5;

/// A user with TOTP on, and the last step the server accepted for them.
struct TotpUser {
    name: String,
    secret: String,
    key: hmac::Key,
    last_step: i64,
}

struct Shared {
    http: Client,
    token_url: String,
    challenge_url: String,
    /// The proofs' `htu`: the issuer's token endpoint as it names it.
    htu: String,
    grant: Grant,
    with_proof: bool,
    client_id: String,
    client_secret: String,
    native_client_id: String,
    /// `password`: the public client that logs in (`$BENCH_PUBLIC_CLIENT_ID`,
    /// default `app`), and the RFC 8707 resource it asks for, if any
    /// (`$BENCH_RESOURCE`).
    public_client_id: String,
    resource: Option<String>,
    password: String,
    users: u64,
    /// `challenge`: users not in a login now, least recently used first.
    totp_users: Mutex<VecDeque<TotpUser>>,
    starved: AtomicU64,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The HMAC-SHA1 key of a base32 (RFC 4648, unpadded) TOTP secret.
fn totp_key(secret: &str) -> hmac::Key {
    let mut bits: u64 = 0;
    let mut count = 0;
    let mut key = Vec::new();
    for c in secret.trim_end_matches('=').chars() {
        let value = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
            .find(c.to_ascii_uppercase())
            .expect("a base32 secret") as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            key.push((bits >> count) as u8);
        }
    }
    hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key)
}

/// RFC 6238 (HOTP of the step counter): 6 digits.
fn totp(key: &hmac::Key, step: i64) -> String {
    let tag = hmac::sign(key, &step.to_be_bytes());
    let tag = tag.as_ref();
    let offset = (tag[19] & 0xf) as usize;
    let word =
        u32::from_be_bytes(tag[offset..offset + 4].try_into().expect("4 bytes")) & 0x7fff_ffff;
    format!("{:06}", word % 1_000_000)
}

/// The oldest step after `last_step` whose code the server accepts now
/// and for at least `MARGIN` more seconds, if any.
fn free_step(last_step: i64, now: i64) -> Option<i64> {
    let current = now.div_euclid(STEP);
    let oldest = if STEP - now.rem_euclid(STEP) >= MARGIN {
        current - 1
    } else {
        current
    };
    let step = (last_step + 1).max(oldest);
    (step <= current + 1).then_some(step)
}

/// A fresh PKCE verifier (32 random bytes, base64url) and its S256 challenge.
fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).expect("random bytes");
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref());
    (verifier, challenge)
}

/// Posts a form; the status and the body as JSON (or an error naming the
/// request).
async fn post_form(
    builder: reqwest::RequestBuilder,
    what: &str,
) -> Result<(StatusCode, serde_json::Value, String), String> {
    let response = builder
        .send()
        .await
        .map_err(|e| format!("{what}: transport: {}", chain(&e)))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("{what}: body: {e}"))?;
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    Ok((status, json, body))
}

impl Shared {
    /// One token request; Ok if it was answered 200 with the expected
    /// token type.
    async fn request(&self, key: &ProofKey, n: u64) -> Result<(), String> {
        let username = format!("u{}", n % self.users);
        let mut builder = self.http.post(&self.token_url);
        builder = match self.grant {
            Grant::ClientCredentials => builder
                .basic_auth(&self.client_id, Some(&self.client_secret))
                .form(&[("grant_type", "client_credentials")]),
            Grant::Password => {
                let mut form = vec![
                    ("grant_type", "password"),
                    ("client_id", self.public_client_id.as_str()),
                    ("username", &username),
                    ("password", &self.password),
                ];
                if let Some(resource) = &self.resource {
                    form.push(("resource", resource));
                }
                builder.form(&form)
            }
            Grant::Challenge => unreachable!("a challenge login is three requests"),
        };
        if self.with_proof {
            let proof = key
                .proof("POST", &self.htu, now_secs(), None, None)
                .map_err(|_| "signing a proof".to_owned())?;
            builder = builder.header("DPoP", proof);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| format!("transport: {}", chain(&e)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| format!("body: {e}"))?;
        if status != reqwest::StatusCode::OK {
            return Err(format!("{status}: {body}"));
        }
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("json: {e}"))?;
        let expected = if self.with_proof { "DPoP" } else { "Bearer" };
        match json["token_type"].as_str() {
            Some(t) if t.eq_ignore_ascii_case(expected) => Ok(()),
            _ => Err(format!("200 without token_type {expected}: {body}")),
        }
    }

    /// A user with a step still free, taken out of the pool, and that step.
    fn take_user(&self) -> Option<(TotpUser, i64)> {
        let now = now_secs();
        let mut pool = self.totp_users.lock().expect("user pool");
        let (i, step) = pool
            .iter()
            .enumerate()
            .find_map(|(i, user)| free_step(user.last_step, now).map(|step| (i, step)))?;
        pool.remove(i).map(|user| (user, step))
    }

    fn give_back(&self, user: TotpUser) {
        self.totp_users.lock().expect("user pool").push_back(user);
    }

    /// One login with a second factor: password, TOTP code of `step`, code
    /// for tokens. Ok only if the token endpoint answered 200 with tokens.
    async fn challenge_login(&self, user: &TotpUser, step: i64) -> Result<(), String> {
        let (verifier, challenge) = pkce();
        let client_id = self.native_client_id.as_str();
        let (status, json, body) = post_form(
            self.http.post(&self.challenge_url).form(&[
                ("client_id", client_id),
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("username", &user.name),
                ("password", &self.password),
            ]),
            "password",
        )
        .await?;
        let auth_session = match (
            status,
            json["error"].as_str(),
            json["auth_session"].as_str(),
        ) {
            (StatusCode::FORBIDDEN, Some("insufficient_authorization"), Some(session)) => {
                session.to_owned()
            }
            _ => return Err(format!("password: {status}: {body}")),
        };
        let otp = totp(&user.key, step);
        let (status, json, body) = post_form(
            self.http.post(&self.challenge_url).form(&[
                ("client_id", client_id),
                ("auth_session", &auth_session),
                ("otp", &otp),
            ]),
            "otp",
        )
        .await?;
        let code = match (status, json["authorization_code"].as_str()) {
            (StatusCode::OK, Some(code)) => code.to_owned(),
            _ => return Err(format!("otp (step {step}): {status}: {body}")),
        };
        let (status, json, body) = post_form(
            self.http.post(&self.token_url).form(&[
                ("grant_type", "authorization_code"),
                ("client_id", client_id),
                ("code", &code),
                ("code_verifier", &verifier),
            ]),
            "code",
        )
        .await?;
        match (
            status,
            json["access_token"].as_str(),
            json["token_type"].as_str(),
        ) {
            (StatusCode::OK, Some(_), Some(t)) if t.eq_ignore_ascii_case("Bearer") => Ok(()),
            _ => Err(format!("code: {status}: {body}")),
        }
    }

    async fn run(self: Arc<Self>, worker: u64, deadline: Instant) -> Tally {
        let key = ProofKey::es256().expect("a proof key");
        let mut tally = Tally::default();
        let mut n = worker;
        while Instant::now() < deadline {
            let result = if self.grant == Grant::Challenge {
                let Some((user, step)) = self.take_user() else {
                    // Every user has spent the steps valid now: not a
                    // login, and the row says so.
                    self.starved.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let started = Instant::now();
                let result = self.challenge_login(&user, step).await;
                tally
                    .latencies_us
                    .push(started.elapsed().as_micros() as u64);
                // Spent or not, a later step is the safe next one.
                self.give_back(TotpUser {
                    last_step: step,
                    ..user
                });
                result
            } else {
                let started = Instant::now();
                let result = self.request(&key, n).await;
                tally
                    .latencies_us
                    .push(started.elapsed().as_micros() as u64);
                result
            };
            n += 1;
            match result {
                Ok(()) => tally.ok += 1,
                Err(e) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(e);
                }
            }
        }
        tally
    }
}

/// An error with its sources: reqwest's own message rarely says what failed.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// Turns TOTP on for one user: their own token, a secret, a code
/// confirming it. Returns the secret and the step the confirmation spent.
async fn enroll_one(
    http: &Client,
    base: &str,
    username: &str,
    password: &str,
) -> Result<(String, i64), String> {
    let (status, json, body) = post_form(
        http.post(format!("{base}/auth/token")).form(&[
            ("grant_type", "password"),
            ("client_id", "app"),
            ("username", username),
            ("password", password),
        ]),
        "login",
    )
    .await?;
    let token = match (status, json["access_token"].as_str()) {
        (StatusCode::OK, Some(token)) => token.to_owned(),
        _ => return Err(format!("{username}: login: {status}: {body}")),
    };
    let (status, json, body) = post_form(
        http.post(format!("{base}/auth/mfa/totp"))
            .bearer_auth(&token),
        "enrollment",
    )
    .await?;
    let secret = match (status, json["secret"].as_str()) {
        (StatusCode::OK, Some(secret)) => secret.to_owned(),
        _ => return Err(format!("{username}: enrollment: {status}: {body}")),
    };
    let key = totp_key(&secret);
    // The oldest step still safely valid, so that later ones stay free;
    // if a step boundary got in the way, the next free one.
    let mut last = i64::MIN;
    for _ in 0..2 {
        let step = free_step(last, now_secs()).expect("a free step after a refused one");
        let (status, _, body) = post_form(
            http.post(format!("{base}/auth/mfa/totp/confirm"))
                .bearer_auth(&token)
                .form(&[("code", totp(&key, step))]),
            "confirmation",
        )
        .await?;
        if status == StatusCode::OK {
            return Ok((secret, step));
        }
        if status != StatusCode::BAD_REQUEST {
            return Err(format!("{username}: confirmation: {status}: {body}"));
        }
        last = step;
    }
    Err(format!("{username}: confirmation refused twice"))
}

/// `enroll`: TOTP on for `users` users, `workers` at a time; the secrets
/// go to `file`.
async fn enroll(http: Client, base: String, file: &str, workers: u64, users: u64) {
    let prefix = env("BENCH_TOTP_PREFIX", "m");
    let password = env("BENCH_PASSWORD", "bench password 123");
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers.min(users))
        .map(|_| {
            let (http, base, prefix, password, next) = (
                http.clone(),
                base.clone(),
                prefix.clone(),
                password.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut lines = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= users {
                        return lines;
                    }
                    let username = format!("{prefix}{i}");
                    match enroll_one(&http, &base, &username, &password).await {
                        Ok((secret, step)) => lines.push(format!("{username} {secret} {step}\n")),
                        Err(e) => panic!("dpop_load enroll: {e}"),
                    }
                }
            })
        })
        .collect();
    let mut out = String::new();
    for task in tasks {
        out.extend(task.await.expect("enrollment task"));
    }
    std::fs::write(file, out).expect("writing the TOTP secrets");
    println!(
        "enrolled={users} seconds={:.1}",
        started.elapsed().as_secs_f64()
    );
}

/// The users and secrets `enroll` wrote.
fn read_totp_users(file: &str) -> VecDeque<TotpUser> {
    let text = std::fs::read_to_string(file).expect("the TOTP secrets file ($BENCH_TOTP_FILE)");
    text.lines()
        .map(|line| {
            let mut fields = line.split_whitespace();
            let (Some(name), Some(secret), Some(step)) =
                (fields.next(), fields.next(), fields.next())
            else {
                panic!("a line of {file} is not `username secret step`: {line}");
            };
            TotpUser {
                name: name.to_owned(),
                secret: secret.to_owned(),
                key: totp_key(secret),
                last_step: step.parse().expect("a step number"),
            }
        })
        .collect()
}

#[tokio::main]
async fn main() {
    const USAGE: &str = "usage: dpop_load <base_url> <client_credentials|password|challenge> <dpop|none> [workers] [seconds] [users]\n   or: dpop_load <base_url> enroll <file> [workers] [users]";
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).expect(USAGE).trim_end_matches('/').to_owned();
    let num = |i: usize, default: u64| -> u64 {
        args.get(i)
            .map(|a| a.parse().expect("numeric argument"))
            .unwrap_or(default)
    };
    let http = |workers: u64| {
        Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(workers as usize)
            .build()
            .expect("http client")
    };
    if args.get(2).map(String::as_str) == Some("enroll") {
        let file = args.get(3).expect(USAGE);
        let (workers, users) = (num(4, 32).max(1), num(5, 16));
        enroll(http(workers), base, file, workers, users).await;
        return;
    }
    let grant = match args.get(2).map(String::as_str) {
        Some("client_credentials") => Grant::ClientCredentials,
        Some("password") => Grant::Password,
        Some("challenge") => Grant::Challenge,
        _ => panic!("{USAGE}"),
    };
    let with_proof = match args.get(3).map(String::as_str) {
        Some("dpop") => true,
        Some("none") => false,
        _ => panic!("{USAGE}"),
    };
    if grant == Grant::Challenge && with_proof {
        panic!("challenge logins are driven without proofs only");
    }
    let (workers, seconds, users) = (num(4, 32), num(5, 10), num(6, 16).max(1));
    let client_secret = env("BENCH_CLIENT_SECRET", "");
    if grant == Grant::ClientCredentials && client_secret.is_empty() {
        panic!("client_credentials needs $BENCH_CLIENT_SECRET");
    }
    let totp_users = if grant == Grant::Challenge {
        let users = read_totp_users(&env("BENCH_TOTP_FILE", ""));
        assert!(
            users.len() as u64 >= workers,
            "challenge needs at least one TOTP user per worker"
        );
        users
    } else {
        VecDeque::new()
    };
    let http = http(workers);

    // The issuer names its token endpoint (its `issuer` setting, not the
    // address this tool reaches it at): that is what a proof's htu must be.
    let metadata: serde_json::Value = http
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("server metadata")
        .json()
        .await
        .expect("server metadata as JSON");
    let htu = metadata["token_endpoint"]
        .as_str()
        .expect("token_endpoint in the metadata")
        .to_owned();

    let shared = Arc::new(Shared {
        http,
        token_url: format!("{base}/auth/token"),
        challenge_url: format!("{base}/auth/challenge"),
        htu,
        grant,
        with_proof,
        client_id: env("BENCH_CLIENT_ID", "svc"),
        client_secret,
        native_client_id: env("BENCH_NATIVE_CLIENT_ID", "native"),
        public_client_id: env("BENCH_PUBLIC_CLIENT_ID", "app"),
        resource: std::env::var("BENCH_RESOURCE")
            .ok()
            .filter(|r| !r.is_empty()),
        password: env("BENCH_PASSWORD", "bench password 123"),
        users,
        totp_users: Mutex::new(totp_users),
        starved: AtomicU64::new(0),
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..workers)
        .map(|i| tokio::spawn(shared.clone().run(i, deadline)))
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let tally = task.await.expect("worker task");
        all.latencies_us.extend(tally.latencies_us);
        all.ok += tally.ok;
        all.errors += tally.errors;
        if all.first_error.is_none() {
            all.first_error = tally.first_error;
        }
    }
    // In-flight requests finish after the deadline: divide by the real span.
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    if let Some(e) = &all.first_error {
        eprintln!("dpop_load: first error: {e}");
    }
    if grant == Grant::Challenge {
        // The steps spent here, for a later run with the same users.
        let pool = shared.totp_users.lock().expect("user pool");
        let lines: String = pool
            .iter()
            .map(|u| format!("{} {} {}\n", u.name, u.secret, u.last_step))
            .collect();
        std::fs::write(env("BENCH_TOTP_FILE", ""), lines).expect("writing the TOTP secrets");
    }
    let starved = if grant == Grant::Challenge {
        format!(" starved={}", shared.starved.load(Ordering::Relaxed))
    } else {
        String::new()
    };
    println!(
        "rps={:.1} p50_ms={:.2} p99_ms={:.2} ok={} errors={}{starved}",
        all.ok as f64 / elapsed,
        percentile_ms(&all.latencies_us, 50.0),
        percentile_ms(&all.latencies_us, 99.0),
        all.ok,
        all.errors
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_gives_rfc6238_appendix_b() {
        // "12345678901234567890" in base32; the 8-digit values mod 10^6.
        let key = totp_key("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(totp(&key, 59 / STEP), "287082");
        assert_eq!(totp(&key, 1_111_111_109 / STEP), "081804");
        assert_eq!(totp(&key, 2_000_000_000 / STEP), "279037");
    }

    #[test]
    fn free_steps_go_forward_and_stay_valid() {
        let step = 1_000;
        let start = step * STEP;
        // Early in a step: the one before is still good for 25 s or more.
        assert_eq!(free_step(step - 5, start + 1), Some(step - 1));
        // Late in it: not the one before, which is about to expire.
        assert_eq!(free_step(step - 5, start + STEP - 2), Some(step));
        assert_eq!(free_step(step - 1, start), Some(step));
        assert_eq!(free_step(step, start), Some(step + 1));
        assert_eq!(free_step(step + 1, start), None);
    }
}
