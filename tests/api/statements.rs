//! How much each hot path asks of Postgres, counted on the wire: the app
//! talks to the database through a proxy that reads the frontend messages.
//! A statement is an Execute or a simple Query; a round trip is the client
//! sending again after the server has answered (messages the client sends
//! in one go, without waiting, count once). docs/sizing.md, section
//! "Postgres statements per request", quotes these numbers
//! (`cargo test statements -- --nocapture`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{PASSWORD, TestApp, TestDatabase, start_on, time_until};
use crate::mfa::{pkce, totp};

#[derive(Default)]
struct Counts {
    statements: AtomicU64,
    round_trips: AtomicU64,
}

/// Per connection: whether the server has sent anything since the client
/// last did.
#[derive(Default)]
struct Answered(std::sync::atomic::AtomicBool);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    statements: u64,
    round_trips: u64,
}

impl Counts {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            statements: self.statements.load(Ordering::SeqCst),
            round_trips: self.round_trips.load(Ordering::SeqCst),
        }
    }
}

/// Forwards connections to the test database's server, counting.
async fn counting_proxy(upstream: String) -> (u16, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&upstream).await.unwrap();
            let counts = shared.clone();
            tokio::spawn(async move {
                let (mut from_server, to_server) = server.into_split();
                let (from_client, mut to_client) = client.into_split();
                let answered = Arc::new(Answered::default());
                let heard = answered.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    while let Ok(n) = from_server.read(&mut buffer).await {
                        if n == 0 || to_client.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                        heard.0.store(true, Ordering::SeqCst);
                    }
                });
                let _ = frontend(from_client, to_server, &counts, &answered).await;
            });
        }
    });
    (port, counts)
}

/// Copies the client's messages to the server one by one, counting them.
async fn frontend(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counts: &Counts,
    answered: &Answered,
) -> std::io::Result<()> {
    // Untyped until the startup message: SSL/GSS requests, then startup.
    loop {
        let mut len = [0u8; 4];
        from.read_exact(&mut len).await?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        from.read_exact(&mut body).await?;
        to.write_all(&len).await?;
        to.write_all(&body).await?;
        let code = u32::from_be_bytes(body[..4].try_into().unwrap());
        if code != 80877103 && code != 80877104 {
            break;
        }
    }
    let mut listening = false;
    loop {
        let mut header = [0u8; 5];
        from.read_exact(&mut header).await?;
        let len = u32::from_be_bytes(header[1..].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        from.read_exact(&mut body).await?;
        // The connection that LISTENs (its heartbeat runs whatever the
        // requests do) is not a request's cost.
        if matches!(header[0], b'Q' | b'P') && body.windows(7).any(|w| w == b"LISTEN ") {
            listening = true;
        }
        let answered = answered.0.swap(false, Ordering::SeqCst);
        if !listening && matches!(header[0], b'E' | b'Q') {
            counts.statements.fetch_add(1, Ordering::SeqCst);
        }
        if !listening && answered {
            counts.round_trips.fetch_add(1, Ordering::SeqCst);
        }
        to.write_all(&header).await?;
        to.write_all(&body).await?;
    }
}

/// An instance whose pool connections are reached through the proxy,
/// with no background work due during the test.
async fn counted_app() -> (TestApp, Arc<Counts>) {
    let db = Arc::new(TestDatabase::create().await);
    let url = reqwest::Url::parse(&db.url).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let (port, counts) = counting_proxy(upstream).await;
    let mut proxied = url.clone();
    proxied.set_host(Some("127.0.0.1")).unwrap();
    proxied.set_port(Some(port)).unwrap();
    // Plain text, so the proxy can read it.
    proxied.query_pairs_mut().append_pair("sslmode", "disable");
    let app = start_on(db, |s| {
        s.database.url = Some(proxied.to_string().into());
        s.database.max_connections = 2;
        s.revocation.sync_interval = Duration::from_secs(3600);
        s.keys.reload_interval = Duration::from_secs(3600);
    })
    .await;
    app.wait_until_ready().await;
    (app, counts)
}

/// What `request` costs, in the steady state (statements prepared, clients
/// in memory): the least over a few tries, so that a background task
/// running meanwhile cannot inflate it.
async fn cost<F, Fut>(counts: &Counts, mut request: F) -> Snapshot
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..3 {
        request().await;
    }
    let mut least = None::<Snapshot>;
    for _ in 0..5 {
        // sqlx checks a connection as it goes back to the pool, after the
        // response: let the last request's check finish before counting,
        // and this one's before reading the counts.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = counts.snapshot();
        request().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = counts.snapshot();
        let this = Snapshot {
            statements: after.statements - before.statements,
            round_trips: after.round_trips - before.round_trips,
        };
        least = Some(match least {
            Some(l) if (l.statements, l.round_trips) <= (this.statements, this.round_trips) => l,
            _ => this,
        });
    }
    least.unwrap()
}

#[tokio::test]
async fn hot_paths_ask_postgres_for_no_more_than_they_must() {
    let (app, counts) = counted_app().await;
    app.seed().await;
    let secret = app
        .create_confidential_client("svc", &["client_credentials"], &["read", "introspect"])
        .await;

    let first = app.login().await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let current = std::sync::Mutex::new(first);
    let refresh_cost = cost(&counts, || {
        let (app, current) = (&app, &current);
        async move {
            let presented = current.lock().unwrap().clone();
            let response = app.refresh("mobile", &presented).await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            *current.lock().unwrap() = body["refresh_token"].as_str().unwrap().to_owned();
        }
    })
    .await;

    let cc_cost = cost(&counts, || {
        let (app, secret) = (&app, &secret);
        async move {
            assert_eq!(app.client_token("svc", secret, None).await.status(), 200);
        }
    })
    .await;

    // An unknown client id is answered from memory too: a flood of them
    // costs Postgres nothing.
    let unknown_cost = cost(&counts, || {
        let app = &app;
        async move {
            let id = format!("nobody-{}", uuid::Uuid::new_v4().simple());
            assert_eq!(app.client_token(&id, "x", None).await.status(), 401);
        }
    })
    .await;
    assert_eq!(
        unknown_cost,
        Snapshot {
            statements: 0,
            round_trips: 0
        }
    );

    let access = app
        .client_token("svc", &secret, None)
        .await
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let introspect_cost = cost(&counts, || {
        let (app, secret, access) = (&app, &secret, &access);
        async move {
            let response = app
                .http
                .post(format!("{}/auth/introspect", app.address))
                .basic_auth("svc", Some(secret))
                .form(&[("token", access.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(response.json::<Value>().await.unwrap()["active"], true);
        }
    })
    .await;

    let password_cost = cost(&counts, || {
        let app = &app;
        async move {
            let response = app.password_grant("mobile", "alice", PASSWORD).await;
            assert_eq!(response.status(), 200);
        }
    })
    .await;

    eprintln!(
        "statements (round trips) per request: refresh {} ({}), client_credentials {} ({}), \
         introspection of an access token {} ({}), password {} ({})",
        refresh_cost.statements,
        refresh_cost.round_trips,
        cc_cost.statements,
        cc_cost.round_trips,
        introspect_cost.statements,
        introspect_cost.round_trips,
        password_cost.statements,
        password_cost.round_trips,
    );
    // Client credentials and introspection of an access token: CPU only.
    assert_eq!(
        cc_cost,
        Snapshot {
            statements: 0,
            round_trips: 0
        }
    );
    assert_eq!(
        introspect_cost,
        Snapshot {
            statements: 0,
            round_trips: 0
        }
    );
    // Refresh: one statement in autocommit (and sqlx's check of the
    // connection when it goes back to the pool, after the response).
    assert_eq!(refresh_cost.statements, 1, "{refresh_cost:?}");
    assert!(refresh_cost.round_trips <= 2, "{refresh_cost:?}");
    // Password: one statement before argon2 (count the attempt, read the
    // user), one after (the session, failures forgotten).
    assert_eq!(password_cost.statements, 2, "{password_cost:?}");
    assert!(password_cost.round_trips <= 4, "{password_cost:?}");
}

#[tokio::test]
async fn a_login_with_a_second_factor_asks_postgres_four_times() {
    let (app, counts) = counted_app().await;
    app.seed_first_party().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (secret, _) = app.enroll(&access).await;
    let login_cost = cost(&counts, || {
        let (app, secret) = (&app, &secret);
        async move {
            // Each login's code is of a step not used before.
            app.advance_clock(Duration::from_secs(30));
            let (verifier, challenge) = pkce();
            let auth_session = app.flow_wanting_otp(&challenge).await;
            let sent = app
                .send_otp(&auth_session, &totp(secret, app.now_unix()))
                .await;
            assert_eq!(sent.status(), 200);
            let code = sent.json::<Value>().await.unwrap()["authorization_code"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(app.redeem(&code, &verifier).await.status(), 200);
        }
    })
    .await;
    eprintln!(
        "statements (round trips) per login with a second factor (three requests): {} ({})",
        login_cost.statements, login_cost.round_trips
    );
    // The password's statement also starts the flow; the code's reads the
    // flow and takes a try, another finishes it; the redemption is one.
    assert_eq!(login_cost.statements, 4, "{login_cost:?}");
}

#[tokio::test]
async fn tokens_shaped_for_an_api_cost_no_more_statements() {
    let (app, counts) = counted_app().await;
    app.seed().await;
    let admin = app.admin_token().await;
    let api = "https://orders.example.com/";
    let created = app
        .admin(reqwest::Method::POST, "/admin/resources", &admin)
        .json(&serde_json::json!({"uri": api, "scope": "read", "access_ttl": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for (path, body) in [
        (
            "/admin/clients/mobile/resources",
            serde_json::json!({"resources": [api]}),
        ),
        (
            "/admin/clients/mobile/claims",
            serde_json::json!({"claims": ["roles"]}),
        ),
    ] {
        let set = app
            .admin(reqwest::Method::PUT, path, &admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(set.status(), 200);
    }
    time_until(|| async {
        let client = app.state.clients.find(&app.pool, "mobile").await.unwrap();
        client.is_some_and(|c| !c.resources.is_empty() && !c.claims.is_empty())
    })
    .await;
    let login = || async {
        app.post_token(&[
            ("grant_type", "password"),
            ("client_id", "mobile"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("resource", api),
        ])
        .await
    };
    let first = login().await.json::<Value>().await.unwrap();
    assert_eq!(first["expires_in"], 300);
    let current = std::sync::Mutex::new(first["refresh_token"].as_str().unwrap().to_owned());
    let refresh_cost = cost(&counts, || {
        let (app, current) = (&app, &current);
        async move {
            let presented = current.lock().unwrap().clone();
            let response = app
                .post_token(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", "mobile"),
                    ("refresh_token", &presented),
                    ("resource", api),
                ])
                .await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            *current.lock().unwrap() = body["refresh_token"].as_str().unwrap().to_owned();
        }
    })
    .await;
    let password_cost = cost(&counts, || async {
        assert_eq!(login().await.status(), 200);
    })
    .await;
    // As without a resource or attributes: they come from memory (the
    // client) and from the statements that read the user anyway.
    assert_eq!(refresh_cost.statements, 1, "{refresh_cost:?}");
    assert_eq!(password_cost.statements, 2, "{password_cost:?}");
}
