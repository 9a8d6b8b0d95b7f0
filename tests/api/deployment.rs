//! What can be checked of the Docker deployment without a Docker engine:
//! the compose file configures only keys Tessera reads, and the binary run
//! with exactly that configuration becomes ready and issues tokens.
//! `tests/compose/smoke.sh` (run by `.ci/run` where an engine is available)
//! builds the image and runs the compose file for real.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera::config::{Environment, Settings, Sources};

use crate::helpers::TestDatabase;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Encryption keys published in the repository, which production refuses.
const PUBLISHED_KEYS: [&str; 2] = [
    "dGVzc2VyYS1sb2NhbC1kZXYta2V5LW5vdC1zZWNyZXQ=",
    "RVhBTVBMRS1PTkxZLXJlcGxhY2UtbWUtMzItYnl0ZXM=",
];

/// `.env.example` as compose would read `.env` once the operator has filled
/// in the required values.
fn dotenv() -> HashMap<String, String> {
    let mut vars = example_env();
    vars.insert("POSTGRES_PASSWORD".into(), "0123456789abcdef".into());
    vars.insert(
        "TESSERA_ENCRYPTION_KEY".into(),
        "bm90LXRoZS1leGFtcGxlLWtleS0zMi1ieXRlcy0hISE=".into(),
    );
    vars
}

fn example_env() -> HashMap<String, String> {
    read(".env.example")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        })
        .collect()
}

/// Compose interpolation: `${VAR}`, `${VAR:-default}`, `${VAR:?error}`.
fn interpolate(value: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed ${") + start;
        let expr = &rest[start + 2..end];
        let (name, fallback) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr.split_once(":?").map(|(n, _)| n).unwrap_or(expr), None),
        };
        let resolved = vars
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .or(fallback.map(str::to_owned));
        out.push_str(&resolved.unwrap_or_else(|| panic!("${{{name}}} is not set in .env")));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn compose_file() -> serde_yaml::Value {
    serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

/// The `tessera` service's environment, interpolated from the filled-in `.env`.
fn compose_environment() -> (HashMap<String, String>, Vec<String>) {
    let compose = compose_file();
    let service = &compose["services"]["tessera"];
    let environment = service["environment"]
        .as_mapping()
        .expect("environment is a map");
    let vars = dotenv();
    let env = environment
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_yaml::Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().unwrap().to_owned(), interpolate(&value, &vars))
        })
        .collect();
    let command = service["command"]
        .as_sequence()
        .expect("command is a list")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (env, command)
}

fn tessera_vars(env: &HashMap<String, String>) -> HashMap<String, String> {
    env.iter()
        .filter(|(k, _)| k.starts_with("TESSERA__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn every_compose_variable_is_a_configuration_key() {
    let (env, _) = compose_environment();
    assert_eq!(
        env.get("TESSERA_ENV").map(String::as_str),
        Some("production")
    );
    let vars = tessera_vars(&env);
    assert!(
        vars.contains_key("TESSERA__DATABASE__URL")
            && vars.contains_key("TESSERA__KEYS__ENCRYPTION_KEY")
    );
    for key in env.keys() {
        assert!(
            key == "TESSERA_ENV" || key.starts_with("TESSERA__"),
            "{key} is not read by Tessera"
        );
    }
    // The image has no configuration directory: built-in defaults and variables only.
    let settings = Settings::load(Sources {
        dir: None,
        environment: Some(Environment::Production),
        vars: Some(vars.clone()),
    })
    .unwrap_or_else(|e| panic!("compose configuration is rejected: {e:#}"));
    assert_eq!(settings.http.public_addr, "0.0.0.0:8080");

    // Production refuses every key published in the repository.
    for key in PUBLISHED_KEYS {
        let mut published = vars.clone();
        published.insert("TESSERA__KEYS__ENCRYPTION_KEY".into(), key.into());
        let error = Settings::load(Sources {
            dir: None,
            environment: Some(Environment::Production),
            vars: Some(published),
        })
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("published in this repository"),
            "{error:#}"
        );
    }

    // The check has teeth: a misspelt key is refused.
    let mut typo = vars;
    typo.insert("TESSERA__TOKENS__ACESS_TTL".into(), "5m".into());
    let error = Settings::load(Sources {
        dir: None,
        environment: Some(Environment::Production),
        vars: Some(typo),
    })
    .unwrap_err();
    assert!(format!("{error:#}").contains("acess_ttl"));
}

/// A `.env` copied from the example and not filled in must stop `docker
/// compose up` before anything starts (`${VAR:?}` refuses empty values), so
/// that no example password can be fixed into the database volume.
#[test]
fn the_env_example_leaves_every_secret_empty_and_compose_requires_them() {
    let example = example_env();
    for secret in ["POSTGRES_PASSWORD", "TESSERA_ENCRYPTION_KEY"] {
        assert_eq!(
            example.get(secret).map(String::as_str),
            Some(""),
            "{secret} must be present and empty in .env.example"
        );
    }
    let compose = read("docker-compose.yml");
    for secret in ["POSTGRES_PASSWORD", "TESSERA_ENCRYPTION_KEY"] {
        assert!(
            compose.contains(&format!("${{{secret}:?")),
            "compose does not require {secret}"
        );
    }
    for key in PUBLISHED_KEYS {
        assert!(!read(".env.example").contains(key));
    }
}

/// Host ports come from variables with the documented defaults, and the
/// admin port is bound to the loopback interface only.
#[test]
fn compose_host_ports_are_variables_and_the_admin_port_is_local() {
    let compose = compose_file();
    let ports: Vec<String> = compose["services"]["tessera"]["ports"]
        .as_sequence()
        .expect("ports is a list")
        .iter()
        .map(|p| interpolate(p.as_str().expect("short port syntax"), &HashMap::new()))
        .collect();
    assert_eq!(ports, ["8080:8080", "127.0.0.1:8081:8081"]);
    let chosen = HashMap::from([
        ("TESSERA_PUBLIC_PORT".to_owned(), "18080".to_owned()),
        ("TESSERA_ADMIN_PORT".to_owned(), "18081".to_owned()),
    ]);
    let raw = compose["services"]["tessera"]["ports"]
        .as_sequence()
        .unwrap();
    let ports: Vec<String> = raw
        .iter()
        .map(|p| interpolate(p.as_str().unwrap(), &chosen))
        .collect();
    assert_eq!(ports, ["18080:8080", "127.0.0.1:18081:8081"]);
}

#[tokio::test]
async fn the_binary_runs_with_exactly_the_compose_configuration() {
    let (env, command) = compose_environment();
    let mut vars = tessera_vars(&env);
    // Swap the compose database for a database on the local server that does
    // not exist yet (as on a first `docker compose up`), and the published
    // ports for free ones. Everything else is used as written.
    let database =
        TestDatabase::adopt(format!("tessera_compose_{}", uuid::Uuid::new_v4().simple()));
    vars.insert("TESSERA__DATABASE__URL".into(), database.url.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    vars.insert(
        "TESSERA__HTTP__PUBLIC_ADDR".into(),
        format!("127.0.0.1:{port}"),
    );
    vars.insert(
        "TESSERA__HTTP__ADMIN_ADDR".into(),
        format!("127.0.0.1:{admin_port}"),
    );
    let issuer = vars
        .get("TESSERA__ISSUER")
        .cloned()
        .expect("compose sets the issuer");

    let run = |args: &[&str], stdin: &str| {
        // Not the repository: the binary needs no config/ beside it.
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .current_dir(std::env::temp_dir())
            .args(args)
            .env_clear()
            .env("TESSERA_ENV", &env["TESSERA_ENV"])
            .envs(&vars)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child
    };
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    let mut server = run(&args, "");
    let started = Instant::now();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    while !reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
        if let Some(status) = server.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("exited with {status}: {err}");
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The README's first steps, through the same binary and configuration.
    let user = run(
        &[
            "user",
            "create",
            "alice",
            "--password-stdin",
            "--scope",
            "read",
        ],
        "a production password\n",
    )
    .wait_with_output()
    .unwrap();
    assert!(
        user.status.success(),
        "{}",
        String::from_utf8_lossy(&user.stderr)
    );
    let client = run(
        &[
            "client",
            "create",
            "mobile",
            "--public",
            "--grant",
            "password,refresh_token",
            "--scope",
            "read",
        ],
        "",
    )
    .wait_with_output()
    .unwrap();
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    let token: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "mobile"),
            ("username", "alice"),
            ("password", "a production password"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claims = crate::jwks::verify_with_jwks_for(
        &format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
        token["access_token"].as_str().expect("a token"),
        &issuer,
        vars.get("TESSERA__AUDIENCE")
            .map(String::as_str)
            .unwrap_or("tessera"),
    )
    .await
    .unwrap();
    assert_eq!(claims["scope"], "read");
    let _ = server.kill();
    let _ = server.wait();
}

/// No engine here to build the image; check what a build would trip over.
#[test]
fn dockerfile_builds_from_the_repo_and_runs_unprivileged() {
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
    // Everything compiled into the binary must be in the build context.
    for input in [
        "Cargo.lock",
        ".sqlx",
        "migrations",
        "openapi.yaml",
        "config",
        "src",
        "verifier",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("COPY") && l.contains(input)),
            "{input} is not copied"
        );
    }
    let ignored = read(".dockerignore");
    for input in [
        "migrations",
        "openapi.yaml",
        "src",
        "config",
        "Cargo",
        "verifier",
    ] {
        assert!(
            !ignored
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == input),
            ".dockerignore drops {input}"
        );
    }
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as {user}"
    );
    let healthcheck = lines
        .iter()
        .position(|l| l.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK");
    assert!(
        lines[healthcheck..]
            .iter()
            .take(3)
            .any(|l| l.contains("\"healthcheck\"")),
        "HEALTHCHECK uses `tessera healthcheck`"
    );
    // useradd --system warns about a uid outside 100-999.
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("useradd") && l.contains("--system")),
        "useradd --system with uid 10001"
    );
    // Dependencies are built in a layer of their own, before the sources are copied.
    let deps = lines
        .iter()
        .position(|l| l.starts_with("COPY Cargo.toml Cargo.lock"))
        .expect("manifests copied on their own");
    let sources = lines
        .iter()
        .position(|l| l.starts_with("COPY src"))
        .expect("sources copied");
    assert!(
        lines[deps..sources]
            .iter()
            .any(|l| l.contains("cargo build --release --locked")),
        "no dependency-caching layer"
    );
}
