//! Deadlines on connections: a body that trickles in is cut off.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};

/// Sends `head` and then one byte of a 100-byte body every 100 ms; returns
/// the whole response (read until the server closes) and when it began.
async fn trickle(address: &str, head: String) -> (String, Duration) {
    let started = Instant::now();
    let host = address.trim_start_matches("http://");
    let stream = TcpStream::connect(host).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let dripping = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut response = Vec::new();
    let mut first_byte = None;
    let mut chunk = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut chunk))
            .await
            .expect("the server neither answered nor closed the connection");
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                first_byte.get_or_insert_with(|| started.elapsed());
                response.extend_from_slice(&chunk[..n]);
            }
        }
    }
    dripping.abort();
    let at = first_byte.expect("no response at all");
    (String::from_utf8_lossy(&response).into_owned(), at)
}

fn assert_timed_out(listener: &str, (response, at): (String, Duration)) {
    assert!(
        response.starts_with("HTTP/1.1 408"),
        "{listener}: got {response}"
    );
    assert!(
        response.contains(r#""error":"invalid_request""#)
            && response.contains("request body was not received in time"),
        "{listener}: {response}"
    );
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{listener}: {response}"
    );
    assert!(
        at >= Duration::from_millis(900) && at < Duration::from_secs(3),
        "{listener}: answered after {at:?}, deadline 1 s"
    );
}

async fn get_ok(app: &TestApp, path: &str) {
    assert_eq!(app.get(path).await.status(), 200, "{path}");
}

#[tokio::test]
async fn a_slow_body_gets_408_and_its_connection_closed_while_others_are_served() {
    let app = spawn_app_with(|s| s.http.body_timeout = Duration::from_secs(1)).await;
    let token = app.admin_token().await;
    let public = trickle(
        &app.address,
        "POST /auth/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n".to_owned(),
    );
    let admin = trickle(
        &app.admin_address,
        format!(
            "POST /admin/users HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        ),
    );
    let started = Instant::now();
    let others = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..2 {
            get_ok(&app, "/healthz").await;
            get_ok(&app, "/.well-known/jwks.json").await;
        }
        started.elapsed()
    };
    let (public, admin, served_within) = tokio::join!(public, admin, others);
    // The others were answered while both bodies were still trickling in.
    assert!(
        served_within < public.1.min(admin.1),
        "other requests waited for the slow bodies ({served_within:?})"
    );
    // The response is complete only because the server closed the connection.
    assert_timed_out("public", public);
    assert_timed_out("admin", admin);
}

/// Sends a chunked body of a few chunks, then nothing, keeping the socket
/// open; returns what the server sent before it closed the connection.
async fn chunks_then_silence(address: &str, path: &str) -> String {
    let host = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: tessera\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ngrant\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut response))
        .await
        .is_ok();
    let response = String::from_utf8_lossy(&response).into_owned();
    assert!(closed, "the connection was held open after: {response}");
    response
}

#[tokio::test]
async fn a_chunked_body_is_refused_and_its_connection_closed_not_drained() {
    let app = spawn_app_with(|_| {}).await;
    for (address, path) in [
        (&app.address, "/auth/token"),
        (&app.address, "/no/such/path"),
        (&app.admin_address, "/admin/users"),
    ] {
        let response = chunks_then_silence(address, path).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        assert!(response.contains("Content-Length"), "{response}");
        assert!(response.contains("invalid_request"), "{response}");
    }
    // Bodies with a length still work.
    app.seed().await;
    app.login().await;
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let app = spawn_app_with(|s| s.http.max_connections_per_address = 4).await;
    let host = app.address.trim_start_matches("http://").to_owned();
    // Idle connections from 127.0.0.1 until one is closed at once, without
    // a byte read: the test's own pooled client may hold one already.
    let mut held = Vec::new();
    let refused_at = loop {
        let mut connection = TcpStream::connect(&host).await.unwrap();
        let mut buffer = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(300), connection.read(&mut buffer)).await {
            Err(_) => held.push(connection),
            Ok(read) => {
                assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
                break held.len();
            }
        }
        assert!(held.len() <= 4, "more than four connections held");
    };
    assert!((3..=4).contains(&refused_at), "refused after {refused_at}");
    // One closed, and the address may connect again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = TcpStream::connect(&host).await.unwrap();
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    again.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Behind a trusted proxy, its address is shared by everyone: no cap.
    let proxied = spawn_app_with(|s| {
        s.http.max_connections_per_address = 4;
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let host = proxied.address.trim_start_matches("http://").to_owned();
    let mut many = Vec::new();
    for _ in 0..8 {
        many.push(TcpStream::connect(&host).await.unwrap());
    }
    let mut last = many.pop().unwrap();
    last.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    last.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Sends `before` (answered and kept alive), then a chunked request with
/// its whole body, written at once or head first; returns the refusal and
/// whether the server closed the connection after it.
async fn complete_chunked(address: &str, before: Option<&str>, split: bool) -> (String, bool) {
    let host = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.unwrap();
    let mut chunk = [0u8; 4096];
    if let Some(path) = before {
        let request = format!("GET {path} HTTP/1.1\r\nHost: tessera\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(chunk[..read].starts_with(b"HTTP/1.1 200"));
    }
    let head = "POST /auth/token HTTP/1.1\r\nHost: tessera\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n";
    let body = "5\r\ngrant\r\n0\r\n\r\n";
    if split {
        stream.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(body.as_bytes()).await.unwrap();
    } else {
        stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .unwrap();
    }
    let mut response = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response))
        .await
        .is_ok();
    (String::from_utf8_lossy(&response).into_owned(), closed)
}

#[tokio::test]
async fn a_complete_chunked_body_is_refused_and_its_connection_closed() {
    let app = spawn_app_with(|_| {}).await;
    for (before, split) in [
        (None, false),
        (None, true),
        (Some("/healthz"), false),
        (Some("/healthz"), true),
    ] {
        let (response, closed) = complete_chunked(&app.address, before, split).await;
        let case = format!("after {before:?}, split {split}: {response}");
        assert!(response.starts_with("HTTP/1.1 400"), "{case}");
        assert!(
            response.to_ascii_lowercase().contains("connection: close"),
            "{case}"
        );
        assert!(closed, "the connection stayed open: {case}");
    }
}

#[tokio::test]
async fn nothing_pipelined_behind_a_refused_chunked_body_is_served() {
    let app = spawn_app_with(|_| {}).await;
    let host = app.address.trim_start_matches("http://").to_owned();
    let mut connection = TcpStream::connect(&host).await.unwrap();
    connection
        .write_all(
            b"POST /auth/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\r\n5\r\nabcde\r\n0\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_millis(1500),
        connection.read_to_end(&mut answer),
    )
    .await;
    // And a request sent later is not served either.
    let _ = connection
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        connection.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        !answer.contains("200 OK"),
        "served after the refusal: {answer}"
    );
}
