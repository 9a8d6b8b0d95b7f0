//! Verifications per second through the actix extractor on one core, for
//! bearer tokens and for DPoP-bound tokens with their proofs, and the cost
//! of the in-memory revocation check.
//!
//! ```sh
//! taskset -c 0 cargo bench -p tessera-verifier --bench verify
//! ```
//!
//! A stand-in issuer on 127.0.0.1 serves discovery, an ES256 JWK Set and a
//! revocation feed of 10,000 tokens, 10,000 logins and 1,000 users (no
//! stream: the kit polls), so the kit starts exactly as it does in a
//! service; then one thread verifies pre-signed tokens in a loop. DPoP
//! proofs are single-use (the replay cache refuses a second use), so each
//! measured request has its own, made beforehand.
// A benchmark: a failure ends the run, and tokens are signed with the wall clock.
#![allow(clippy::panic, clippy::disallowed_methods)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::Payload;
use actix_web::test::TestRequest;
use actix_web::{App, FromRequest, HttpResponse, HttpServer, web};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tessera_dpop::ProofKey;
use tessera_verifier::{Claims, Config, Presented, VerifiedToken, Verifier};
use uuid::Uuid;

const TOKENS: usize = 1000;
const RUN: Duration = Duration::from_secs(3);
/// Proofs made for each DPoP measurement (warm-up included): more than
/// one core verifies in `RUN`.
const PROOFS: usize = 40_000;
const WARM_UP: usize = 2000;
/// The resource server's external URL, the base of the proofs' `htu`.
const EXTERNAL_URL: &str = "https://api.example.com";

struct Issuer {
    jwks: Value,
    feed: Value,
}

async fn metadata(req: actix_web::HttpRequest) -> HttpResponse {
    let base = format!("http://{}", req.connection_info().host());
    HttpResponse::Ok().json(json!({
        "issuer": base, "jwks_uri": format!("{base}/jwks"), "token_endpoint": format!("{base}/token"),
    }))
}

async fn jwks(issuer: web::Data<Arc<Issuer>>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=300"))
        .json(&issuer.jwks)
}

async fn token() -> HttpResponse {
    HttpResponse::Ok()
        .json(json!({"access_token": "feed", "token_type": "Bearer", "expires_in": 3600}))
}

async fn feed(
    issuer: web::Data<Arc<Issuer>>,
    query: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let from_start = query.iter().any(|(k, v)| k == "since" && v == "0");
    if from_start {
        HttpResponse::Ok().json(&issuer.feed)
    } else {
        HttpResponse::Ok().json(
            json!({"revoked_tokens": [], "revoked_sessions": [], "revoked_users": [],
            "next_cursor": issuer.feed["next_cursor"], "has_more": false}),
        )
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn per_second(label: &str, mut op: impl FnMut(usize)) -> f64 {
    // Warm up, then count what fits in RUN.
    for i in 0..WARM_UP {
        op(i);
    }
    let started = Instant::now();
    let mut done = 0;
    while started.elapsed() < RUN {
        for _ in 0..1000 {
            op(done);
            done += 1;
        }
    }
    report(label, done, started)
}

/// As `per_second`, for operations that each index may run only once
/// (a DPoP proof is accepted once): stops at `RUN` or after `available`.
fn per_second_once(label: &str, available: usize, mut op: impl FnMut(usize)) -> f64 {
    for i in 0..WARM_UP {
        op(i);
    }
    let started = Instant::now();
    let mut next = WARM_UP;
    while started.elapsed() < RUN && next + 1000 <= available {
        for _ in 0..1000 {
            op(next);
            next += 1;
        }
    }
    if started.elapsed() < RUN {
        println!("(ran out of proofs before {RUN:?}: raise PROOFS)");
    }
    report(label, next - WARM_UP, started)
}

fn report(label: &str, done: usize, started: Instant) -> f64 {
    let elapsed = started.elapsed().as_secs_f64();
    let rate = done as f64 / elapsed;
    println!(
        "{label:<58} {rate:>12.0} /s {:>10.0} ns each",
        elapsed * 1e9 / done as f64
    );
    rate
}

fn main() -> std::io::Result<()> {
    // One thread runs the kit and the measured loop; the stand-in issuer
    // has its own worker, idle while measuring.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> std::io::Result<()> {
    let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .and_then(|k| k.to_pkcs8v1())
        .map_err(|_| std::io::Error::other("key generation"))?;
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(std::io::Error::other)?;
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(std::io::Error::other)?;
    jwk.common.key_id = Some("bench".into());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let exp = now() + 3600;
    let entries = |n: usize, f: &dyn Fn(usize) -> Value| (0..n).map(f).collect::<Vec<_>>();
    let issuer = Arc::new(Issuer {
        jwks: json!({"keys": [jwk]}),
        feed: json!({
            "revoked_tokens": entries(10_000, &|_| json!({"jti": Uuid::new_v4().to_string(), "exp": exp})),
            "revoked_sessions": entries(10_000, &|_| json!({"sid": Uuid::new_v4().to_string(), "exp": exp})),
            "revoked_users": entries(1_000, &|_| json!({"sub": Uuid::new_v4().to_string(), "not_before": now()})),
            "next_cursor": "21000", "has_more": false,
        }),
    });
    let data = web::Data::new(issuer);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route(
                "/.well-known/oauth-authorization-server",
                web::get().to(metadata),
            )
            .route("/jwks", web::get().to(jwks))
            .route("/token", web::post().to(token))
            .route("/auth/revocations", web::get().to(feed))
    })
    .workers(1)
    .bind("127.0.0.1:0")?;
    let base = format!("http://{}", server.addrs()[0]);
    tokio::spawn(server.run());

    let config = Config::new(&base, "tessera")
        .feed_client("bench", "secret")
        .external_url(EXTERNAL_URL);
    let verifier = Verifier::start(config).map_err(std::io::Error::other)?;
    verifier
        .ready(Duration::from_secs(10))
        .await
        .map_err(std::io::Error::other)?;
    let health = verifier.health();
    println!(
        "revocation list: {} tokens, {} logins, {} users",
        health.revoked_tokens, health.revoked_sessions, health.revoked_users
    );

    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("bench".into());
    let tokens: Vec<String> = (0..TOKENS)
        .map(|_| {
            let claims = json!({
                "iss": base, "sub": Uuid::new_v4().to_string(), "aud": "tessera", "client_id": "mobile",
                "scope": "read write", "iat": now(), "exp": now() + 600,
                "jti": Uuid::new_v4().to_string(), "sid": Uuid::new_v4().to_string(),
            });
            jsonwebtoken::encode(&header, &claims, &key)
        })
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    let requests: Vec<_> = tokens
        .iter()
        .map(|t| {
            TestRequest::default()
                .insert_header(("authorization", format!("Bearer {t}")))
                .app_data(web::Data::new(verifier.clone()))
                .to_http_request()
        })
        .collect();

    let ok =
        |r: Result<VerifiedToken, tessera_verifier::Error>| assert!(r.is_ok(), "{:?}", r.err());
    let bearer = per_second("ES256 through the VerifiedToken extractor", |i| {
        let req = &requests[i % TOKENS];
        let result = futures_ready(VerifiedToken::from_request(req, &mut Payload::None));
        ok(black_box(result));
    });
    let bearer_verify = per_second("ES256 through Verifier::verify", |i| {
        let result = futures_ready(verifier.verify(&tokens[i % TOKENS]));
        assert!(black_box(result).is_ok());
    });

    // The same tokens bound to a client's ES256 key, each request with its
    // own proof of that key.
    let client = ProofKey::es256().map_err(|_| std::io::Error::other("proof key"))?;
    let bound: Vec<String> = (0..TOKENS)
        .map(|_| {
            let claims = json!({
                "iss": base, "sub": Uuid::new_v4().to_string(), "aud": "tessera", "client_id": "mobile",
                "scope": "read write", "iat": now(), "exp": now() + 600,
                "jti": Uuid::new_v4().to_string(), "sid": Uuid::new_v4().to_string(),
                "cnf": {"jkt": client.jkt()},
            });
            jsonwebtoken::encode(&header, &claims, &key)
        })
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    let htu = format!("{EXTERNAL_URL}/whoami");
    let proofs = || -> std::io::Result<Vec<String>> {
        (0..PROOFS)
            .map(|i| client.proof("GET", &htu, now(), Some(&bound[i % TOKENS]), None))
            .collect::<Result<_, _>>()
            .map_err(|_| std::io::Error::other("signing a proof"))
    };
    let dpop_requests: Vec<_> = proofs()?
        .iter()
        .enumerate()
        .map(|(i, proof)| {
            TestRequest::get()
                .uri("/whoami")
                .insert_header(("authorization", format!("DPoP {}", bound[i % TOKENS])))
                .insert_header(("dpop", proof.as_str()))
                .app_data(web::Data::new(verifier.clone()))
                .to_http_request()
        })
        .collect();
    let dpop = per_second_once(
        "ES256 + ES256 DPoP proof through the extractor",
        PROOFS,
        |i| {
            let result = futures_ready(VerifiedToken::from_request(
                &dpop_requests[i],
                &mut Payload::None,
            ));
            ok(black_box(result));
        },
    );
    drop(dpop_requests);
    let verify_proofs = proofs()?;
    let dpop_verify = per_second_once(
        "ES256 + ES256 DPoP proof through Verifier::verify_request",
        PROOFS,
        |i| {
            let authorization = format!("DPoP {}", bound[i % TOKENS]);
            let presented = Presented {
                authorization: Some(&authorization),
                dpop: &[verify_proofs[i].as_str()],
                method: "GET",
                path: "/whoami",
            };
            let result = futures_ready(verifier.verify_request(&presented));
            assert!(black_box(result).is_ok());
        },
    );
    // What the proof adds: its checks alone are pure, so any proof repeats.
    let url = url::Url::parse(&htu).map_err(std::io::Error::other)?;
    per_second("ES256 DPoP proof check alone (tessera_dpop::check)", |i| {
        let expected = tessera_dpop::Expected {
            method: "GET",
            url: &url,
            now: now(),
            window: 60,
            access_token: Some(&bound[i % TOKENS]),
        };
        assert!(black_box(tessera_dpop::check(&verify_proofs[i % TOKENS], &expected)).is_ok());
    });
    println!(
        "DPoP / bearer: {:.2} through the extractor, {:.2} through the Verifier",
        dpop / bearer,
        dpop_verify / bearer_verify
    );
    let claims: Vec<Claims> = tokens
        .iter()
        .map(|t| futures_ready(verifier.verify(t)))
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    per_second(
        "revocation check alone (jti, sid, user; 21,000 entries)",
        |i| {
            assert!(!black_box(verifier.is_revoked(&claims[i % TOKENS])));
        },
    );
    Ok(())
}

/// Polls a future that is ready without waiting (keys are cached, so
/// verification never awaits here) without a runtime round trip.
fn futures_ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("verification waited: the key should be cached"),
    }
}
