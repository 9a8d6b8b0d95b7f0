//! Token-endpoint load with and without DPoP for `bench/run.sh`. wrk cannot
//! do this: a proof is accepted once (its `jti` is remembered), so replaying
//! one request would measure replay refusals, not issuance.
//!
//! Each of `workers` tasks holds its own ES256 key (a client holds one) and
//! for `seconds` posts token requests on one shared connection pool:
//! - `client_credentials`: client `$BENCH_CLIENT_ID` (default `svc`) with
//!   `$BENCH_CLIENT_SECRET` in HTTP Basic;
//! - `password`: public client `app`, users `u0..u{users-1}` round-robin,
//!   password `$BENCH_PASSWORD` (default "bench password 123").
//!
//! With `dpop`, every request carries a fresh proof made just before it is
//! sent (its `htu` is the `token_endpoint` from the server's metadata, its
//! `iat` the local clock), and the response must say `token_type` DPoP.
//! With `none`, the same loop sends no proof and expects Bearer: the fair
//! baseline for the ratio, measured by the same tool on the same pool.
//!
//! cargo run --release --example dpop_load -- <base_url> <client_credentials|password> <dpop|none> [workers] [seconds] [users]
//! Prints one line: rps=… p50_ms=… p99_ms=… ok=… errors=…
// A load generator for the benchmark: any failure ends the run, loudly; a
// client's proofs are dated by its own clock, as a real client's are.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Client;
use tessera_dpop::ProofKey;

#[derive(Clone, Copy, PartialEq)]
enum Grant {
    ClientCredentials,
    Password,
}

struct Shared {
    http: Client,
    token_url: String,
    /// The proofs' `htu`: the issuer's token endpoint as it names it.
    htu: String,
    grant: Grant,
    with_proof: bool,
    client_id: String,
    client_secret: String,
    password: String,
    users: u64,
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
            Grant::Password => builder.form(&[
                ("grant_type", "password"),
                ("client_id", "app"),
                ("username", &username),
                ("password", &self.password),
            ]),
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

    async fn run(self: Arc<Self>, worker: u64, deadline: Instant) -> Tally {
        let key = ProofKey::es256().expect("a proof key");
        let mut tally = Tally::default();
        let mut n = worker;
        while Instant::now() < deadline {
            let started = Instant::now();
            let result = self.request(&key, n).await;
            tally
                .latencies_us
                .push(started.elapsed().as_micros() as u64);
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

#[tokio::main]
async fn main() {
    const USAGE: &str = "usage: dpop_load <base_url> <client_credentials|password> <dpop|none> [workers] [seconds] [users]";
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).expect(USAGE).trim_end_matches('/').to_owned();
    let grant = match args.get(2).map(String::as_str) {
        Some("client_credentials") => Grant::ClientCredentials,
        Some("password") => Grant::Password,
        _ => panic!("{USAGE}"),
    };
    let with_proof = match args.get(3).map(String::as_str) {
        Some("dpop") => true,
        Some("none") => false,
        _ => panic!("{USAGE}"),
    };
    let num = |i: usize, default: u64| -> u64 {
        args.get(i)
            .map(|a| a.parse().expect("numeric argument"))
            .unwrap_or(default)
    };
    let (workers, seconds, users) = (num(4, 32), num(5, 10), num(6, 16).max(1));
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let client_secret = env("BENCH_CLIENT_SECRET", "");
    if grant == Grant::ClientCredentials && client_secret.is_empty() {
        panic!("client_credentials needs $BENCH_CLIENT_SECRET");
    }
    let http = Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(workers as usize)
        .build()
        .expect("http client");

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
        htu,
        grant,
        with_proof,
        client_id: env("BENCH_CLIENT_ID", "svc"),
        client_secret,
        password: env("BENCH_PASSWORD", "bench password 123"),
        users,
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
    println!(
        "rps={:.1} p50_ms={:.2} p99_ms={:.2} ok={} errors={}",
        all.ok as f64 / elapsed,
        percentile_ms(&all.latencies_us, 50.0),
        percentile_ms(&all.latencies_us, 99.0),
        all.ok,
        all.errors
    );
}
