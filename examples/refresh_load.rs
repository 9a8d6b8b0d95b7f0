//! Rotation-safe refresh load for `bench/run.sh`. wrk cannot do this: a
//! refresh token is spent by its first use, so replaying one body would
//! measure reuse detection (and revoke the family), not rotation.
//!
//! Each of `workers` tasks logs in once (password grant, public client `app`,
//! user `u{i % users}`), then for `seconds` spends its own current refresh
//! token and keeps the one returned: no two in-flight requests ever hold the
//! same token. Every response is checked (200 and a new refresh token); a
//! failure is counted and the worker logs in again to continue.
//!
//! Logins happen before the timed phase; `delay` seconds after they finish
//! the timing starts, so a script can start other load (a login flood) in
//! between without slowing these logins down.
//!
//! cargo run --release --example refresh_load -- <base_url> [workers] [seconds] [users] [delay]
//! (password: $BENCH_PASSWORD, default "bench password 123"). Prints one line:
//! rps=… p50_ms=… p99_ms=… ok=… errors=…
// A load generator for the benchmark: any failure ends the run, loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Client;

struct Worker {
    http: Client,
    base: Arc<str>,
    username: String,
    password: Arc<str>,
    /// The public client (`$BENCH_PUBLIC_CLIENT_ID`, default `app`) and the
    /// RFC 8707 resource every request asks for, if any (`$BENCH_RESOURCE`).
    client_id: Arc<str>,
    resource: Option<Arc<str>>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Worker {
    async fn login(&self) -> Result<String, String> {
        let mut form = vec![
            ("grant_type", "password"),
            ("client_id", &self.client_id),
            ("username", &self.username),
            ("password", &self.password),
        ];
        if let Some(resource) = &self.resource {
            form.push(("resource", resource));
        }
        self.token_request(&form, None).await
    }

    async fn refresh(&self, token: &str) -> Result<String, String> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", &self.client_id),
            ("refresh_token", token),
        ];
        if let Some(resource) = &self.resource {
            form.push(("resource", resource));
        }
        self.token_request(&form, Some(token)).await
    }

    /// POST /auth/token; the new refresh token, or why there is none.
    async fn token_request(
        &self,
        form: &[(&str, &str)],
        spent: Option<&str>,
    ) -> Result<String, String> {
        let response = self
            .http
            .post(format!("{}/auth/token", self.base))
            .form(form)
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| format!("body: {e}"))?;
        if status != reqwest::StatusCode::OK {
            return Err(format!("{status}: {body}"));
        }
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("json: {e}"))?;
        match json["refresh_token"].as_str() {
            Some(t) if !t.is_empty() && Some(t) != spent => Ok(t.to_owned()),
            _ => Err(format!("200 without a new refresh token: {body}")),
        }
    }

    async fn run(self, mut token: String, deadline: Instant) -> Tally {
        let mut tally = Tally::default();
        while Instant::now() < deadline {
            let started = Instant::now();
            let result = self.refresh(&token).await;
            tally
                .latencies_us
                .push(started.elapsed().as_micros() as u64);
            match result {
                Ok(new) => {
                    token = new;
                    tally.ok += 1;
                }
                Err(e) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(e);
                    // Whether the old token was spent is unknown: start a new family.
                    match self.login().await {
                        Ok(t) => token = t,
                        Err(e) => {
                            tally.first_error.get_or_insert(format!("re-login: {e}"));
                            break;
                        }
                    }
                }
            }
        }
        tally
    }
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
    let args: Vec<String> = std::env::args().collect();
    let base: Arc<str> = args
        .get(1)
        .expect("usage: refresh_load <base_url> [workers] [seconds] [users] [delay]")
        .trim_end_matches('/')
        .into();
    let num = |i: usize, default: u64| -> u64 {
        args.get(i)
            .map(|a| a.parse().expect("numeric argument"))
            .unwrap_or(default)
    };
    let (workers, seconds, users, delay) = (num(2, 16), num(3, 10), num(4, 16).max(1), num(5, 0));
    let password: Arc<str> = std::env::var("BENCH_PASSWORD")
        .unwrap_or_else(|_| "bench password 123".into())
        .into();
    let client_id: Arc<str> = std::env::var("BENCH_PUBLIC_CLIENT_ID")
        .unwrap_or_else(|_| "app".into())
        .into();
    let resource: Option<Arc<str>> = std::env::var("BENCH_RESOURCE")
        .ok()
        .filter(|r| !r.is_empty())
        .map(Into::into);
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");

    let logins: Vec<_> = (0..workers)
        .map(|i| {
            let worker = Worker {
                http: http.clone(),
                base: base.clone(),
                username: format!("u{}", i % users),
                password: password.clone(),
                client_id: client_id.clone(),
                resource: resource.clone(),
            };
            tokio::spawn(async move {
                let token = worker.login().await;
                (worker, token)
            })
        })
        .collect();
    let mut ready = Vec::new();
    for login in logins {
        match login.await.expect("login task") {
            (worker, Ok(token)) => ready.push((worker, token)),
            (worker, Err(e)) => {
                eprintln!("refresh_load: login of {} failed: {e}", worker.username);
                std::process::exit(1);
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(delay)).await;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = ready
        .into_iter()
        .map(|(worker, token)| tokio::spawn(worker.run(token, deadline)))
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
        eprintln!("refresh_load: first error: {e}");
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
