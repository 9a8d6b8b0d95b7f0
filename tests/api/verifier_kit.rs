//! The verifier kit (`tessera-verifier`) end to end against real Tessera
//! instances: its example resource server refuses revoked tokens within a
//! second, follows key rotation, resists forged kids and fails closed when
//! the issuer is gone; a kit configured with one resource URI refuses
//! tokens issued for another (RFC 8707) and reads the user's attributes;
//! a distrusted signing key's tokens are refused within a second while the
//! kit's cached JWK Set still holds the key.

use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use tessera::keys::SigningAlgorithm;
use tessera_verifier::{Audience, Config, Error, Invalid, Verifier};
use uuid::Uuid;

use crate::helpers::{
    PASSWORD, TestApp, spawn_app_with, spawn_behind_partition, spawn_on, tessera, time_until,
};
use crate::lifecycle::{Server, free_port};

#[allow(dead_code)]
#[path = "../../verifier/examples/resource_server.rs"]
mod resource_server;

const FEED_CLIENT: &str = "orders-api";

/// Tessera whose issuer is its own address (the kit discovers from it), a
/// second instance on the same database, alice, `mobile`, and the feed client.
async fn issuer_pair() -> (TestApp, TestApp, String, Uuid, String) {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let a = spawn_app_with(|s| {
        s.http.public_addr = format!("127.0.0.1:{port}");
        s.issuer = issuer.clone();
        s.revocation.stream_keepalive = Duration::from_secs(1);
    })
    .await;
    let b = spawn_on(a.db.clone(), |s| s.issuer = issuer.clone()).await;
    let user = a.seed().await;
    let secret = a
        .create_confidential_client(FEED_CLIENT, &["client_credentials"], &["revocations:read"])
        .await;
    (a, b, issuer, user, secret)
}

/// The example resource server, on a free port, with its own verifier.
async fn resource_server(verifier: Verifier) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    serve_example(verifier, listener);
    address
}

/// The example resource server on `listener`.
pub(crate) fn serve_example(verifier: Verifier, listener: std::net::TcpListener) {
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(actix_web::web::Data::new(verifier.clone()))
            .configure(resource_server::routes)
    })
    .workers(1)
    .listen(listener)
    .unwrap();
    tokio::spawn(server.run());
}

/// A kit that has loaded the feed and opened the stream (it connects just
/// after the load).
async fn start_kit(config: Config) -> Verifier {
    let verifier = Verifier::start(config).unwrap();
    verifier.ready(Duration::from_secs(15)).await.unwrap();
    let started = Instant::now();
    while verifier.stats().stream_connects == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the kit never opened the stream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    verifier
}

async fn whoami(service: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{service}/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Polls the service until it refuses `token`; returns how long that took.
async fn refused_within(limit: Duration, service: &str, token: &str) -> Duration {
    let started = Instant::now();
    loop {
        let response = whoami(service, token).await;
        if response.status() == 401 {
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer error=\"invalid_token\""
            );
            return started.elapsed();
        }
        assert_eq!(response.status(), 200);
        assert!(started.elapsed() < limit, "still accepted after {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Registers the `billing` service and returns its secret and an access token.
async fn billing_token(app: &TestApp) -> (String, String) {
    let secret = app
        .create_confidential_client("billing", &["client_credentials"], &["reports"])
        .await;
    let token = access(
        &app.client_token("billing", &secret, None)
            .await
            .json()
            .await
            .unwrap(),
    );
    (secret, token)
}

fn access(token: &Value) -> String {
    token["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_example_service_refuses_a_token_within_a_second_of_any_revocation_on_another_instance()
{
    let (a, b, issuer, user, secret) = issuer_pair().await;
    let verifier =
        start_kit(Config::new(&issuer, "tessera").feed_client(FEED_CLIENT, &secret)).await;
    let service = resource_server(verifier.clone()).await;
    let health = reqwest::get(format!("{service}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["revocations"], true);

    // Accepted: the claims come back.
    let login = a.login().await;
    let token = access(&login);
    let response = whoami(&service, &token).await;
    assert_eq!(response.status(), 200);
    let claims: Value = response.json().await.unwrap();
    assert_eq!(claims["sub"], user.to_string());
    assert_eq!(claims["client_id"], "mobile");
    assert_eq!(claims["iss"], issuer.as_str());

    // An admin revocation on the other instance.
    let admin = b.admin_token().await;
    let revoked = b
        .admin(Method::POST, "/admin/tokens/revoke", &admin)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let took = refused_within(Duration::from_secs(1), &service, &token).await;
    eprintln!("admin revocation on B refused by the kit after {took:?}");

    // An RFC 7009 revocation (the app logs out with its refresh token) on B.
    let login = a.login().await;
    let token = access(&login);
    assert_eq!(whoami(&service, &token).await.status(), 200);
    let response = b
        .http
        .post(format!("{}/auth/revoke", b.address))
        .form(&[
            ("token", login["refresh_token"].as_str().unwrap()),
            ("client_id", "mobile"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let took = refused_within(Duration::from_secs(1), &service, &token).await;
    eprintln!("RFC 7009 revocation on B refused by the kit after {took:?}");

    // A service's own token, revoked with RFC 7009: denied by jti.
    let (billing, service_token) = billing_token(&a).await;
    assert_eq!(whoami(&service, &service_token).await.status(), 200);
    b.http
        .post(format!("{}/auth/revoke", b.address))
        .basic_auth("billing", Some(&billing))
        .form(&[("token", service_token.as_str())])
        .send()
        .await
        .unwrap();
    refused_within(Duration::from_secs(1), &service, &service_token).await;

    // Log out everywhere on B: every earlier token of the user is refused,
    // a login made after it is accepted.
    let before = access(&a.login().await);
    let other = access(&a.login().await);
    assert_eq!(whoami(&service, &before).await.status(), 200);
    let out = b
        .admin(Method::POST, &format!("/admin/users/{user}/revoke"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    let took = refused_within(Duration::from_secs(1), &service, &before).await;
    eprintln!("log-out-everywhere on B refused by the kit after {took:?}");
    assert_eq!(whoami(&service, &other).await.status(), 401);
    let after = access(&a.login().await);
    assert_eq!(whoami(&service, &after).await.status(), 200);

    // No token, a bad one, a missing scope.
    let response = reqwest::get(format!("{service}/whoami")).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(whoami(&service, "garbage").await.status(), 401);
    let claims = verifier.verify(&after).await.unwrap();
    assert!(claims.require_scope("read").is_ok());
    assert!(matches!(
        claims.require_scope("admin"),
        Err(Error::InsufficientScope(_))
    ));
}

/// Rotates to a new key that signs at once (as `tessera keys rotate
/// --delay 0 --force` does), on the instance that signs.
async fn rotate_now(app: &TestApp) -> String {
    let now = app.state.clock.now();
    let kid = app
        .state
        .keys
        .rotate(
            &mut app.pool.acquire().await.unwrap(),
            SigningAlgorithm::Es256,
            now,
            Duration::ZERO,
        )
        .await
        .unwrap();
    app.state.keys.reload(&app.pool, now).await.unwrap();
    kid
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_through_the_kid_miss_refetch() {
    let (a, _b, issuer, _user, secret) = issuer_pair().await;
    let interval = Duration::from_secs(1);
    let verifier = start_kit(
        Config::new(&issuer, "tessera")
            .feed_client(FEED_CLIENT, &secret)
            .refetch_interval(interval),
    )
    .await;
    let service = resource_server(verifier.clone()).await;
    let old = access(&a.login().await);
    assert_eq!(whoami(&service, &old).await.status(), 200);
    let fetches = verifier.stats().jwks_fetches;

    // The JWKS says max-age=300: only a kid miss can bring the new key now.
    tokio::time::sleep(interval).await;
    let kid = rotate_now(&a).await;
    assert!(!verifier.key_ids().contains(&kid));
    let new = access(&a.login().await);
    assert_eq!(
        jsonwebtoken::decode_header(&new).unwrap().kid,
        Some(kid.clone())
    );
    assert_eq!(whoami(&service, &new).await.status(), 200);
    assert_eq!(verifier.stats().jwks_fetches, fetches + 1);
    assert!(verifier.key_ids().contains(&kid));
    // Tokens of the old key still verify: it stays published until they expire.
    assert_eq!(whoami(&service, &old).await.status(), 200);
}

/// A token with valid claims, signed by a key Tessera never published.
fn forged(issuer: &str, kid: &str) -> String {
    let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .unwrap()
        .to_pkcs8v1()
        .unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": issuer, "sub": Uuid::new_v4().to_string(), "aud": "tessera", "client_id": "mobile",
        "scope": "read", "iat": now, "exp": now + 600, "jti": Uuid::new_v4().to_string(),
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn forged_kids_trigger_at_most_one_refetch_per_interval() {
    let (_a, _b, issuer, _user, secret) = issuer_pair().await;
    let interval = Duration::from_secs(2);
    let verifier = start_kit(
        Config::new(&issuer, "tessera")
            .feed_client(FEED_CLIENT, &secret)
            .refetch_interval(interval),
    )
    .await;
    let service = resource_server(verifier.clone()).await;
    tokio::time::sleep(interval).await;

    let burst = |round: usize| {
        let (service, issuer) = (service.clone(), issuer.clone());
        async move {
            let requests = (0..25).map(|i| {
                let (service, token) = (
                    service.clone(),
                    forged(&issuer, &format!("forged-{round}-{i}")),
                );
                async move { whoami(&service, &token).await.status() }
            });
            for status in futures_util::future::join_all(requests).await {
                assert_eq!(status, 401);
            }
        }
    };
    let before = verifier.stats().jwks_fetches;
    burst(1).await;
    burst(2).await;
    assert_eq!(
        verifier.stats().jwks_fetches,
        before + 1,
        "50 forged kids within one interval cost one JWKS fetch"
    );
    tokio::time::sleep(interval).await;
    burst(3).await;
    assert_eq!(verifier.stats().jwks_fetches, before + 2);
    assert!(matches!(
        verifier.verify(&forged(&issuer, "forged-direct")).await,
        Err(Error::InvalidToken(Invalid::UnknownKey))
    ));
}

#[tokio::test]
async fn with_tessera_stopped_cached_keys_keep_working_and_staleness_is_reported() {
    let app = spawn_app_with(|_| {}).await;
    app.seed().await;
    let secret = app
        .create_confidential_client(FEED_CLIENT, &["client_credentials"], &["revocations:read"])
        .await;
    // The real binary, so that it can be stopped like in production.
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let mut tessera = Server::start(
        &app,
        &[
            ("TESSERA__HTTP__PUBLIC_ADDR", &format!("127.0.0.1:{port}")),
            ("TESSERA__ISSUER", &issuer),
            ("TESSERA__REVOCATION__STREAM_KEEPALIVE", "1s"),
        ],
    );
    tessera.wait_until_healthy().await;
    // Above keep-alive (1 s) plus the time the binary takes to stop.
    let staleness = Duration::from_secs(3);
    let config = Config::new(&issuer, "tessera")
        .feed_client(FEED_CLIENT, &secret)
        .max_staleness(staleness);
    let strict = start_kit(config.clone()).await;
    let lenient = start_kit(config.fail_open_when_stale(true)).await;
    let service = resource_server(strict.clone()).await;
    let token: Value = reqwest::Client::new()
        .post(format!("{issuer}/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "mobile"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = access(&token);
    assert_eq!(whoami(&service, &token).await.status(), 200);
    // Keep-alives keep a quiet stream fresh.
    tokio::time::sleep(staleness + Duration::from_millis(500)).await;
    assert_eq!(whoami(&service, &token).await.status(), 200);

    // SIGTERM: open streams end, so the drain does not wait for them.
    let stopping = Instant::now();
    tessera.terminate();
    let status = tessera.wait_for_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    eprintln!(
        "Tessera stopped after {:?} with the kits' streams open",
        stopping.elapsed()
    );
    assert!(stopping.elapsed() < Duration::from_secs(5));
    assert!(
        strict.verify(&token).await.is_ok(),
        "cached keys, fresh list"
    );

    tokio::time::sleep(staleness + Duration::from_millis(500)).await;
    assert!(matches!(
        strict.verify(&token).await,
        Err(Error::RevocationsStale { .. })
    ));
    let refused = whoami(&service, &token).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let health = reqwest::get(format!("{service}/healthz")).await.unwrap();
    assert_eq!(health.status(), 503);
    let health: Value = health.json().await.unwrap();
    assert_eq!(
        (health["keys"].clone(), health["stale"].clone()),
        (json!(true), json!(true))
    );
    // The keys themselves still work: a kit told to fail open accepts.
    assert_eq!(lenient.verify(&token).await.unwrap().client_id, "mobile");
    assert!(matches!(
        lenient.verify(&forged(&issuer, "forged")).await,
        Err(Error::InvalidToken(Invalid::UnknownKey))
    ));
}

#[tokio::test]
async fn the_kit_checks_the_rfc9068_claims_and_takes_the_algorithm_from_the_key() {
    let (a, _b, issuer, user, secret) = issuer_pair().await;
    let verifier = start_kit(
        Config::new(&issuer, "tessera")
            .feed_client(FEED_CLIENT, &secret)
            .leeway(Duration::from_secs(10))
            .max_token_lifetime(Duration::from_secs(600)),
    )
    .await;
    // Tessera's own signing key, to sign whatever claims a case needs.
    let signer = a.state.keys.signer(a.state.clock.now()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let base = json!({
        "iss": issuer, "sub": user.to_string(), "aud": "tessera", "client_id": "mobile",
        "scope": "read write", "iat": now, "exp": now + 600,
        "jti": Uuid::new_v4().to_string(), "sid": Uuid::new_v4().to_string(),
    });
    let sign = |claims: &Value, typ: Option<&str>| {
        let mut header = Header::new(signer.algorithm.jwt());
        header.typ = typ.map(str::to_owned);
        header.kid = Some(signer.kid.clone());
        signer.sign_jws(&header, claims).unwrap()
    };
    let with = |patch: Value| {
        let mut claims = base.clone();
        for (name, value) in patch.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    };
    let at = Some("at+jwt");
    let good = sign(&base, at);
    let claims = verifier.verify(&good).await.unwrap();
    assert_eq!(
        claims.scopes().iter().collect::<Vec<_>>(),
        ["read", "write"]
    );
    assert!(
        verifier
            .verify(&sign(&base, Some("application/at+jwt")))
            .await
            .is_ok()
    );
    assert!(
        verifier
            .verify(&sign(&with(json!({"aud": ["other", "tessera"]})), at))
            .await
            .is_ok()
    );
    assert!(
        verifier
            .verify(&sign(&with(json!({"exp": now - 5, "iat": now - 595})), at))
            .await
            .is_ok(),
        "expired within the leeway"
    );

    let cases = [
        (sign(&base, Some("JWT")), Invalid::WrongType),
        (sign(&base, None), Invalid::WrongType),
        (
            sign(&with(json!({"iss": "https://elsewhere"})), at),
            Invalid::WrongIssuer,
        ),
        (
            sign(&with(json!({"aud": "other"})), at),
            Invalid::WrongAudience,
        ),
        (
            sign(&with(json!({"exp": now - 11, "iat": now - 600})), at),
            Invalid::Expired,
        ),
        (
            sign(&with(json!({"nbf": now + 60})), at),
            Invalid::NotYetValid,
        ),
        (
            sign(&with(json!({"iat": now + 60, "exp": now + 660})), at),
            Invalid::IssuedInFuture,
        ),
        (
            sign(&with(json!({"exp": now + 601})), at),
            Invalid::TooLongLived,
        ),
        (sign(&with(json!({"jti": null})), at), Invalid::Malformed),
        (
            sign(&with(json!({"client_id": null})), at),
            Invalid::Malformed,
        ),
        (sign(&with(json!({"sub": ""})), at), Invalid::Malformed),
        (sign(&with(json!({"exp": null})), at), Invalid::Malformed),
    ];
    for (token, reason) in cases {
        match verifier.verify(&token).await {
            Err(Error::InvalidToken(got)) => assert_eq!(got, reason),
            other => panic!("expected {reason:?}, got {other:?}"),
        }
    }

    // A payload swapped under a valid signature, and a header claiming
    // another algorithm for the same key (HS256 with the public key as the
    // secret is the classic confusion): the key's algorithm decides.
    let (head, rest) = good.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let other = sign(&with(json!({"scope": "admin"})), at);
    let other_payload = other.split('.').nth(1).unwrap();
    let swapped = format!("{head}.{other_payload}.{signature}");
    assert!(matches!(
        verifier.verify(&swapped).await,
        Err(Error::InvalidToken(Invalid::BadSignature))
    ));
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    for alg in ["HS256", "ES384", "RS256"] {
        let header = b64(json!({"alg": alg, "typ": "at+jwt", "kid": signer.kid}));
        let confused = format!("{header}.{rest}");
        assert!(
            matches!(
                verifier.verify(&confused).await,
                Err(Error::InvalidToken(Invalid::WrongAlgorithm))
            ),
            "{alg}"
        );
    }
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "at+jwt", "kid": signer.kid})),
        rest.split_once('.').unwrap().0
    );
    assert!(matches!(
        verifier.verify(&none).await,
        Err(Error::InvalidToken(_))
    ));
    let no_kid = format!("{}.{rest}", b64(json!({"alg": "ES256", "typ": "at+jwt"})));
    assert!(matches!(
        verifier.verify(&no_kid).await,
        Err(Error::InvalidToken(Invalid::Malformed))
    ));
}

#[tokio::test]
async fn the_jwks_is_fetched_again_when_its_max_age_runs_out() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(|s| {
        s.http.public_addr = format!("127.0.0.1:{port}");
        s.issuer = issuer.clone();
        s.keys.jwks_max_age = Duration::from_secs(1);
    })
    .await;
    let secret = app
        .create_confidential_client(FEED_CLIENT, &["client_credentials"], &["revocations:read"])
        .await;
    let verifier = start_kit(
        Config::new(&issuer, "tessera")
            .feed_client(FEED_CLIENT, &secret)
            .refetch_interval(Duration::from_secs(1)),
    )
    .await;
    let fetches = verifier.stats().jwks_fetches;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let refreshed = verifier.stats().jwks_fetches - fetches;
    assert!(
        (2..=3).contains(&refreshed),
        "max-age=1: one fetch a second, got {refreshed} in 2.5 s"
    );
}

#[tokio::test]
async fn a_kit_following_an_instance_cut_off_from_postgres_fails_closed() {
    // The kit follows the instance at the issuer's address, whose path to
    // Postgres will freeze; revocations are made on another instance.
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let a = spawn_app_with(|s| s.issuer = issuer.clone()).await;
    let (_cut_off, partition) = spawn_behind_partition(a.db.clone(), |s| {
        s.http.public_addr = format!("127.0.0.1:{port}");
        s.issuer = issuer.clone();
        s.revocation.stream_keepalive = Duration::from_secs(1);
    })
    .await;
    a.seed().await;
    let secret = a
        .create_confidential_client(FEED_CLIENT, &["client_credentials"], &["revocations:read"])
        .await;
    let staleness = Duration::from_secs(3);
    let verifier = start_kit(
        Config::new(&issuer, "tessera")
            .feed_client(FEED_CLIENT, &secret)
            .max_staleness(staleness),
    )
    .await;
    let service = resource_server(verifier.clone()).await;
    let token = access(&a.login().await);
    assert_eq!(whoami(&service, &token).await.status(), 200);

    partition.freeze();
    let frozen = Instant::now();
    let admin = a.admin_token().await;
    let revoked = a
        .admin(Method::POST, "/admin/tokens/revoke", &admin)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    // The cut-off instance never hears of it. Its streams end once its
    // denylist is unconfirmed (3 s), nothing else it answers vouches, and
    // the kit goes stale `staleness` later: from then on it refuses.
    let mut last_accepted = None;
    while frozen.elapsed() < Duration::from_secs(10) {
        let status = whoami(&service, &token).await.status();
        assert!(status == 200 || status == 503, "{status}");
        if status == 200 {
            last_accepted = Some(frozen.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last_accepted = last_accepted.unwrap_or_default();
    eprintln!("revoked token last accepted {last_accepted:?} into the partition");
    assert!(
        last_accepted < Duration::from_secs(8),
        "accepted {last_accepted:?} into the partition"
    );
    let health: Value = reqwest::get(format!("{service}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["stale"], true);

    // Healed, the kit catches up and refuses the token for the right reason.
    partition.heal();
    let healed = Instant::now();
    while whoami(&service, &token).await.status() != 401 {
        assert!(
            healed.elapsed() < Duration::from_secs(10),
            "never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An issuer whose stream refuses every cursor with `status` (as a broken
/// or hostile issuer might): counts the kit's feed and stream requests.
async fn refusing_issuer(
    status: u16,
) -> (String, std::sync::Arc<[std::sync::atomic::AtomicU64; 2]>) {
    use actix_web::{HttpResponse, web};
    use std::sync::atomic::{AtomicU64, Ordering};
    let counts: std::sync::Arc<[AtomicU64; 2]> = std::sync::Arc::default();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (seen, me) = (counts.clone(), base.clone());
    let server = actix_web::HttpServer::new(move || {
        let (seen, me) = (seen.clone(), me.clone());
        let (feed_seen, stream_seen) = (seen.clone(), seen.clone());
        actix_web::App::new()
            .route(
                "/.well-known/oauth-authorization-server",
                web::get().to(move || {
                    let me = me.clone();
                    async move {
                        HttpResponse::Ok().json(json!({
                            "issuer": me,
                            "jwks_uri": format!("{me}/jwks"),
                            "token_endpoint": format!("{me}/token"),
                        }))
                    }
                }),
            )
            .route(
                "/jwks",
                web::get().to(|| async { HttpResponse::Ok().json(json!({"keys": []})) }),
            )
            .route(
                "/token",
                web::post().to(|| async {
                    HttpResponse::Ok().json(json!({"access_token": "t", "expires_in": 600}))
                }),
            )
            .route(
                "/auth/revocations",
                web::get().to(move || {
                    feed_seen[0].fetch_add(1, Ordering::SeqCst);
                    async {
                        HttpResponse::Ok().json(json!({
                            "revoked_tokens": [], "revoked_sessions": [], "revoked_users": [],
                            "next_cursor": "0", "has_more": false,
                        }))
                    }
                }),
            )
            .route(
                "/auth/revocations/stream",
                web::get().to(move || {
                    stream_seen[1].fetch_add(1, Ordering::SeqCst);
                    async move {
                        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                            .json(json!({"error": "cursor_expired"}))
                    }
                }),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", port))
    .unwrap();
    tokio::spawn(server.run());
    (base, counts)
}

#[tokio::test]
async fn the_kit_backs_off_when_the_stream_keeps_refusing_its_cursor() {
    use std::sync::atomic::Ordering;
    for status in [410, 400] {
        let (issuer, counts) = refusing_issuer(status).await;
        let verifier = Verifier::start(
            Config::new(&issuer, "tessera")
                .feed_client(FEED_CLIENT, "a-secret-of-enough-length-000000"),
        )
        .unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (feed, stream) = (
            counts[0].load(Ordering::SeqCst),
            counts[1].load(Ordering::SeqCst),
        );
        eprintln!("{status}: {feed} feed and {stream} stream requests in 4 s");
        // Waits of 0.5, 1 and 2 s: a handful, not a thousand a second.
        assert!(
            (1..=6).contains(&stream),
            "{status}: {stream} stream requests"
        );
        assert!(feed <= 8, "{status}: {feed} feed requests");
        drop(verifier);
    }
}

#[tokio::test]
async fn the_kit_refuses_tokens_living_longer_than_the_issuers_published_access_lifetime() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(|s| {
        s.http.public_addr = format!("127.0.0.1:{port}");
        s.issuer = issuer.clone();
        s.tokens.access_ttl = Duration::from_secs(120);
    })
    .await;
    let user = app.seed().await;
    let secret = app
        .create_confidential_client(FEED_CLIENT, &["client_credentials"], &["revocations:read"])
        .await;
    let metadata: Value = app
        .http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["tessera_max_access_token_lifetime"], 120);

    // Tokens signed with the key the JWKS publishes, living 120 s and 121 s.
    let signer = app.state.keys.signer(app.state.clock.now()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let living = |seconds: i64| {
        let mut header = Header::new(signer.algorithm.jwt());
        header.typ = Some("at+jwt".into());
        header.kid = Some(signer.kid.clone());
        let claims = json!({
            "iss": issuer, "sub": user.to_string(), "aud": "tessera", "client_id": "mobile",
            "scope": "read", "iat": now, "exp": now + seconds, "jti": Uuid::new_v4().to_string(),
        });
        signer.sign_jws(&header, &claims).unwrap()
    };
    let kit = start_kit(Config::new(&issuer, "tessera").feed_client(FEED_CLIENT, &secret)).await;
    assert!(kit.verify(&living(120)).await.is_ok());
    assert!(matches!(
        kit.verify(&living(121)).await,
        Err(Error::InvalidToken(Invalid::TooLongLived))
    ));
    // The example service uses the published lifetime too.
    let service = resource_server(kit.clone()).await;
    assert_eq!(whoami(&service, &living(120)).await.status(), 200);
    assert_eq!(whoami(&service, &living(121)).await.status(), 401);

    // A lifetime set explicitly wins over the published one.
    let explicit = start_kit(
        Config::new(&issuer, "tessera")
            .feed_client(FEED_CLIENT, &secret)
            .max_token_lifetime(Duration::from_secs(3600)),
    )
    .await;
    assert!(explicit.verify(&living(121)).await.is_ok());
}

#[tokio::test]
async fn a_clients_revoked_tokens_are_refused_by_the_kit_within_a_second() {
    let (a, b, issuer, _user, secret) = issuer_pair().await;
    let verifier =
        start_kit(Config::new(&issuer, "tessera").feed_client(FEED_CLIENT, &secret)).await;
    let service = resource_server(verifier.clone()).await;
    let (_, token) = billing_token(&a).await;
    assert_eq!(whoami(&service, &token).await.status(), 200);
    // The secret leaked: rotate it on B and end every token minted with it.
    let admin = b.admin_token().await;
    let rotated = b
        .admin(Method::POST, "/admin/clients/billing/secret", &admin)
        .json(&json!({"revoke_tokens": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    let took = refused_within(Duration::from_secs(1), &service, &token).await;
    eprintln!("client revocation on B refused by the kit after {took:?}");
    // A token minted with the new secret, a second later, is accepted.
    let new_secret = rotated.json::<Value>().await.unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = access(
        &a.client_token("billing", &new_secret, None)
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(whoami(&service, &fresh).await.status(), 200);
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

fn refused_as(result: Result<tessera_verifier::Claims, Error>) -> Invalid {
    match result {
        Err(Error::InvalidToken(why)) => why,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn a_distrusted_key_is_refused_by_the_kit_within_a_second_with_its_cache_still_holding_it() {
    let (a, b, issuer, _user, secret) = issuer_pair().await;
    let interval = Duration::from_secs(1);
    let config = Config::new(&issuer, "tessera")
        .feed_client(FEED_CLIENT, &secret)
        .refetch_interval(interval);
    let verifier = start_kit(config.clone()).await;
    let service = resource_server(verifier.clone()).await;
    let login = a.login().await;
    let token = access(&login);
    let leaked = kid_of(&token);
    assert_eq!(whoami(&service, &token).await.status(), 200);
    assert_eq!(verifier.key_ids(), std::slice::from_ref(&leaked));
    let fetches = verifier.stats().jwks_fetches;

    // The operator's command, on a thread of its own so that the kit keeps
    // following the stream meanwhile.
    let started = Instant::now();
    let (url, kid) = (a.db.url.clone(), leaked.clone());
    let command = tokio::task::spawn_blocking(move || {
        tessera(
            None,
            &[
                "keys",
                "distrust",
                &kid,
                "--reason",
                "found in a leaked backup",
            ],
            "",
            &[("TESSERA__DATABASE__URL", &url)],
        )
    });
    refused_within(Duration::from_secs(1), &service, &token).await;
    let took = started.elapsed();
    eprintln!("the kit refused the distrusted key's token {took:?} after the command started");
    let done = command.await.unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    // Refused for the distrust itself: the JWK Set is the one cached before
    // it, still holding the key, and it was not fetched again.
    assert_eq!(
        refused_as(verifier.verify(&token).await),
        Invalid::DistrustedKey
    );
    assert_eq!(verifier.key_ids(), std::slice::from_ref(&leaked));
    assert_eq!(verifier.stats().jwks_fetches, fetches);
    assert_eq!(verifier.health().distrusted_keys, 1);

    // The app's next refresh gets a token of the key that replaced it, which
    // signs at once: the kit does not know it yet, and refetches the set for
    // it. The leaked key stays refused after that refetch.
    tokio::time::sleep(interval).await;
    let refreshed = a
        .refresh("mobile", login["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status(), 200);
    let fresh = access(&refreshed.json().await.unwrap());
    let replacement = kid_of(&fresh);
    assert_ne!(replacement, leaked);
    assert!(!verifier.key_ids().contains(&replacement));
    assert_eq!(whoami(&service, &fresh).await.status(), 200);
    assert_eq!(verifier.stats().jwks_fetches, fetches + 1);
    assert_eq!(verifier.key_ids(), std::slice::from_ref(&replacement));
    let refused = whoami(&service, &token).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(
        refused_as(verifier.verify(&token).await),
        Invalid::DistrustedKey
    );

    // A kit started afterwards learns it from the feed.
    let cold = start_kit(config).await;
    assert_eq!(cold.health().distrusted_keys, 1);
    assert_eq!(
        refused_as(cold.verify(&token).await),
        Invalid::DistrustedKey
    );
    assert!(cold.verify(&fresh).await.is_ok());

    // The first kit's own feed token was signed by the leaked key: it still
    // hears of revocations made after the distrust, within a second.
    let admin = b.admin_token().await;
    let revoked = b
        .admin(Method::POST, "/admin/tokens/revoke", &admin)
        .json(&json!({"token": fresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    refused_within(Duration::from_secs(1), &service, &fresh).await;
}

/// Two APIs that take Tessera's tokens (RFC 8707 resources).
pub(crate) const ORDERS: &str = "https://orders.example.com/";
pub(crate) const BILLING: &str = "https://billing.example.com/";

async fn admin_put(app: &TestApp, admin: &str, path: &str, body: Value) {
    let response = app
        .admin(Method::PUT, path, admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// ORDERS (read write) and BILLING (read) registered and allowed to
/// `mobile`, whose tokens carry the user's `roles` and `tenant`; `user`
/// (alice) has the role `support` in the tenant `acme`. Waits until the
/// instance has the client's changes.
pub(crate) async fn with_resources(app: &TestApp, user: Uuid) {
    let admin = app.admin_token().await;
    for (uri, scope) in [(ORDERS, "read write"), (BILLING, "read")] {
        let created = app
            .admin(Method::POST, "/admin/resources", &admin)
            .json(&json!({"uri": uri, "scope": scope}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    }
    admin_put(
        app,
        &admin,
        "/admin/clients/mobile/resources",
        json!({"resources": [ORDERS, BILLING]}),
    )
    .await;
    admin_put(
        app,
        &admin,
        "/admin/clients/mobile/claims",
        json!({"claims": ["roles", "tenant"]}),
    )
    .await;
    admin_put(
        app,
        &admin,
        &format!("/admin/users/{user}/claims"),
        json!({"claims": {"roles": ["support"], "tenant": "acme"}}),
    )
    .await;
    time_until(|| async {
        app.state
            .clients
            .find(&app.pool, "mobile")
            .await
            .unwrap()
            .is_some_and(|c| c.resources.len() == 2 && c.claims.len() == 2)
    })
    .await;
}

/// alice's tokens through `mobile`, for `resource` (none: the default
/// audience).
pub(crate) async fn login_for(app: &TestApp, resource: Option<&str>) -> Value {
    let mut form = vec![
        ("grant_type", "password"),
        ("client_id", "mobile"),
        ("username", "alice"),
        ("password", PASSWORD),
    ];
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    let response = app.post_token(&form).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

/// A token refused as issued for another resource.
fn assert_wrong_audience(result: Result<tessera_verifier::Claims, Error>) {
    match result {
        Err(Error::InvalidToken(Invalid::WrongAudience)) => {}
        Ok(claims) => panic!("accepted a token for {:?}", claims.aud),
        Err(other) => panic!("expected WrongAudience, got {other:?}"),
    }
}

async fn tickets(service: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{service}/tickets"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_kit_takes_only_tokens_for_its_resource_and_reads_the_users_roles_from_them() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(|s| {
        s.http.public_addr = format!("127.0.0.1:{port}");
        s.issuer = issuer.clone();
    })
    .await;
    let user = app.seed().await;
    let secret = app
        .create_confidential_client(FEED_CLIENT, &["client_credentials"], &["revocations:read"])
        .await;
    with_resources(&app, user).await;
    let login = login_for(&app, Some(ORDERS)).await;
    let for_orders = access(&login);
    let for_billing = access(&login_for(&app, Some(BILLING)).await);
    let for_tessera = access(&app.login().await);

    // The orders API: its own tokens pass, with the user's attributes typed.
    let orders = start_kit(Config::new(&issuer, ORDERS).feed_client(FEED_CLIENT, &secret)).await;
    let claims = orders.verify(&for_orders).await.unwrap();
    assert_eq!(claims.aud, Audience::One(ORDERS.into()));
    assert_eq!(claims.sub, user.to_string());
    assert_eq!(
        claims.get::<Vec<String>>("roles"),
        Some(vec!["support".to_owned()])
    );
    assert_eq!(claims.get::<&str>("tenant"), Some("acme"));
    assert_eq!(claims.get::<String>("roles"), None, "a list, not a string");
    // Billing's token, and one asked for without a resource (the default
    // audience), are refused for what they are: valid, for another API.
    assert_wrong_audience(orders.verify(&for_billing).await);
    assert_wrong_audience(orders.verify(&for_tessera).await);
    // And the other way round.
    let billing = start_kit(Config::new(&issuer, BILLING).feed_client(FEED_CLIENT, &secret)).await;
    assert!(billing.verify(&for_billing).await.is_ok());
    assert_wrong_audience(billing.verify(&for_orders).await);

    // The example service, as the orders API: the claims it answers carry
    // the attributes; billing's token is a 401 that says why.
    let service = resource_server(orders.clone()).await;
    let response = whoami(&service, &for_orders).await;
    assert_eq!(response.status(), 200);
    let answered: Value = response.json().await.unwrap();
    assert_eq!(
        (answered["aud"].clone(), answered["roles"].clone()),
        (json!(ORDERS), json!(["support"]))
    );
    let refused = whoami(&service, &for_billing).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error_description"],
        "the access token was issued for another resource"
    );
    // Its route for the support team takes alice's token...
    let response = tickets(&service, &for_orders).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["tenant"], "acme");
    // ...and not once she has left the team (read at the next refresh).
    admin_put(
        &app,
        &app.admin_token().await,
        &format!("/admin/users/{user}/claims"),
        json!({"claims": {"roles": ["billing"], "tenant": "acme"}}),
    )
    .await;
    let refreshed = app
        .post_token(&[
            ("grant_type", "refresh_token"),
            ("client_id", "mobile"),
            ("refresh_token", login["refresh_token"].as_str().unwrap()),
            ("resource", ORDERS),
        ])
        .await;
    assert_eq!(refreshed.status(), 200);
    let without_role = access(&refreshed.json().await.unwrap());
    assert_eq!(whoami(&service, &without_role).await.status(), 200);
    let response = tickets(&service, &without_role).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "forbidden"
    );
}
