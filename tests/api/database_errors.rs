//! Database errors name the server (host, port, database, user) and the
//! cause, never the password: in the CLI (which fails at once), in the
//! startup retries of `serve`, and in `/readyz`'s log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::helpers::{captured_logs, test_settings};

const PASSWORD: &str = "hunter2-never-printed";

fn closed_port() -> u16 {
    // Bound and released: nothing listens there now.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(database_url: &str, extra: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["keys", "list"])
        .current_dir(std::env::temp_dir())
        .env_remove("TESSERA_ENV")
        .env("TESSERA__DATABASE__URL", database_url)
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output, started.elapsed())
}

fn assert_described(output: &Output, expected: &[&str]) {
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for part in expected {
        assert!(stderr.contains(part), "`{part}` not in: {stderr}");
    }
    assert!(
        !stderr.contains(PASSWORD) && !stdout.contains(PASSWORD),
        "password printed: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

/// A stand-in Postgres that answers every login with `code` (and message).
fn fake_postgres(code: &'static str, message: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer_with_error(stream, code, message);
        }
    });
    port
}

fn read_message(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let mut body = vec![0u8; u32::from_be_bytes(length) as usize - 4];
    stream.read_exact(&mut body)?;
    Ok(body)
}

fn answer_with_error(mut stream: TcpStream, code: &str, message: &str) -> std::io::Result<()> {
    let mut first = read_message(&mut stream)?;
    // SSLRequest (80877103): "no TLS here", then the startup message follows.
    if first.len() == 4 && u32::from_be_bytes(first[..4].try_into().unwrap()) == 80877103 {
        stream.write_all(b"N")?;
        first = read_message(&mut stream)?;
    }
    let _ = first;
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut response = vec![b'E'];
    response.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
    response.extend_from_slice(&fields);
    stream.write_all(&response)
}

#[test]
fn the_cli_fails_at_once_naming_server_database_and_cause() {
    // Connection refused: at once, not after a pool timeout.
    let port = closed_port();
    let (output, took) = cli(
        &format!("postgres://tessera:{PASSWORD}@127.0.0.1:{port}/vault"),
        &[],
    );
    assert_described(
        &output,
        &[
            &format!("127.0.0.1:{port}"),
            "database `vault`",
            "user `tessera`",
            "connection refused",
        ],
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");

    // Authentication failed.
    let port = fake_postgres(
        "28P01",
        "password authentication failed for user \"tessera\"",
    );
    let (output, _) = cli(
        &format!("postgres://tessera:{PASSWORD}@127.0.0.1:{port}/vault"),
        &[],
    );
    assert_described(
        &output,
        &[&format!("127.0.0.1:{port}"), "authentication failed"],
    );

    // Unknown database, on the real server.
    let server = crate::postgres::server_url();
    let base = server.rsplit_once('/').unwrap().0;
    let (output, _) = cli(&format!("{base}/tessera_no_such_database"), &[]);
    assert_described(
        &output,
        &[
            "database `tessera_no_such_database`",
            "unknown database",
            "tessera migrate",
        ],
    );

    // A server that accepts and never answers: the attempt is bounded.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let (output, took) = cli(
        &format!("postgres://tessera:{PASSWORD}@127.0.0.1:{port}/vault"),
        &[("TESSERA__DATABASE__ACQUIRE_TIMEOUT", "1s")],
    );
    assert_described(
        &output,
        &[&format!("127.0.0.1:{port}"), "timed out after 1.0s"],
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(silent);
}

#[test]
fn serve_logs_each_startup_attempt_with_server_and_cause() {
    let port = closed_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("serve")
        .current_dir(std::env::temp_dir())
        .env_remove("TESSERA_ENV")
        .env_remove("RUST_LOG")
        .env(
            "TESSERA__DATABASE__URL",
            format!("postgres://tessera:{PASSWORD}@127.0.0.1:{port}/vault"),
        )
        .env("TESSERA__HTTP__PUBLIC_ADDR", "127.0.0.1:0")
        .env("TESSERA__HTTP__ADMIN_ADDR", "127.0.0.1:0")
        .env("TESSERA__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Logs go to standard error.
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let warning = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) if line.contains("database not reachable yet") => break line,
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no startup warning within 10s: {seen:#?}");
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    for part in [
        &format!("127.0.0.1:{port}"),
        "database `vault`",
        "connection refused",
    ] {
        assert!(warning.contains(part), "`{part}` not in {warning}");
    }
    assert!(!warning.contains(PASSWORD));
    assert!(seen.iter().all(|l| !l.contains(PASSWORD)));
}

#[tokio::test]
async fn readyz_logs_why_the_database_is_unavailable() {
    let port = closed_port();
    let database = format!("readyz_{}", uuid::Uuid::new_v4().simple());
    let url = format!("postgres://tessera:{PASSWORD}@127.0.0.1:{port}/{database}");
    let mut settings = test_settings(&url);
    settings.database.url = Some(SecretString::from(url));
    settings.database.acquire_timeout = Duration::from_millis(300);
    std::sync::LazyLock::force(&crate::helpers::LOGS);
    let app = tessera::startup::Application::build(settings, Default::default())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let ready = reqwest::get(format!("{address}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let logs = captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("not ready: database unavailable") && l.contains(&database))
        .unwrap_or_else(|| panic!("no readyz log line for {database}"));
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(line.contains("connection refused"), "{line}");
    assert!(!logs.contains(PASSWORD), "the password reached the logs");
}
