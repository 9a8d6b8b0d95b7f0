//! The `tessera` binary as an operator uses it.

use std::process::Output;

use crate::helpers::{PASSWORD, spawn_app, tessera};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn operators_create_users_and_clients_from_the_cli() {
    let app = spawn_app().await;
    let password = "a long cli password";
    let user = tessera(
        Some(&app),
        &[
            "user",
            "create",
            "carol",
            "--password-stdin",
            "--scope",
            "read write",
        ],
        &format!("{password}\n"),
        &[],
    );
    assert!(user.status.success(), "{}", stderr(&user));
    assert!(!stdout(&user).contains(password) && !stderr(&user).contains(password));

    let public = tessera(
        Some(&app),
        &[
            "client",
            "create",
            "ios",
            "--public",
            "--grant",
            "password,refresh_token",
            "--scope",
            "read",
        ],
        "",
        &[],
    );
    assert!(public.status.success(), "{}", stderr(&public));

    let body = app.password_grant("ios", "carol", password).await;
    assert_eq!(body.status(), 200);
    let body: serde_json::Value = body.json().await.unwrap();
    assert_eq!(body["scope"], "read");

    // A generated secret is printed once and works.
    let confidential = tessera(
        Some(&app),
        &["client", "create", "svc", "--grant", "password"],
        "",
        &[],
    );
    assert!(confidential.status.success(), "{}", stderr(&confidential));
    let out = stdout(&confidential);
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("secret printed")
        .trim()
        .to_owned();
    let url = format!("{}/auth/token", app.address);
    let ok = app
        .http
        .post(&url)
        .basic_auth("svc", Some(&secret))
        .form(&[
            ("grant_type", "password"),
            ("username", "carol"),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT secret_hash FROM clients WHERE client_id = 'svc'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains(&secret));

    // A chosen secret comes from stdin; a short one is refused.
    let short = tessera(
        Some(&app),
        &[
            "client",
            "create",
            "weak",
            "--secret-stdin",
            "--grant",
            "password",
        ],
        "short\n",
        &[],
    );
    assert!(!short.status.success());
    let duplicate = tessera(
        Some(&app),
        &["user", "create", "carol", "--password-stdin"],
        "another password\n",
        &[],
    );
    assert!(!duplicate.status.success());
    assert!(stderr(&duplicate).contains("already exists"));
    let bad_grant = tessera(
        Some(&app),
        &["client", "create", "x", "--public", "--grant", "implicit"],
        "",
        &[],
    );
    assert!(stderr(&bad_grant).contains("unknown grant type"));
}

#[tokio::test]
async fn operators_unlock_a_locked_username_from_the_cli() {
    let app = spawn_app().await;
    app.seed().await;
    for _ in 0..10 {
        let failed = app.password_grant("mobile", "alice", "not it").await;
        assert_eq!(failed.status(), 400);
    }
    let locked = app.password_grant("mobile", "alice", PASSWORD).await;
    assert_eq!(locked.status(), 429);

    let unlock = tessera(Some(&app), &["user", "unlock", "alice"], "", &[]);
    assert!(unlock.status.success(), "{}", stderr(&unlock));
    assert!(
        stdout(&unlock).contains("unlocked alice"),
        "{}",
        stdout(&unlock)
    );
    let ok = app.password_grant("mobile", "alice", PASSWORD).await;
    assert_eq!(ok.status(), 200);
    let again = tessera(Some(&app), &["user", "unlock", "alice"], "", &[]);
    assert!(again.status.success());
    assert!(stdout(&again).contains("no failed logins"));
}

#[tokio::test]
async fn keys_list_and_rotate() {
    let app = spawn_app().await;
    let list = tessera(Some(&app), &["keys", "list"], "", &[]);
    assert!(list.status.success(), "{}", stderr(&list));
    let kid = app.jwks().await["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(stdout(&list).contains(&kid) && stdout(&list).contains("active"));

    // Too soon for cached JWKS copies, unless forced.
    let hasty = tessera(Some(&app), &["keys", "rotate", "--delay", "0s"], "", &[]);
    assert!(!hasty.status.success());
    assert!(stderr(&hasty).contains("--force"));
    let rotated = tessera(
        Some(&app),
        &[
            "keys",
            "rotate",
            "--delay",
            "0s",
            "--force",
            "--algorithm",
            "EdDSA",
        ],
        "",
        &[],
    );
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let out = stdout(&rotated);
    assert!(out.contains("retired") && out.contains("EdDSA"), "{out}");
    // The table lines up: every column starts where its heading does.
    let lines: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("KID")).collect();
    let starts = |line: &str| -> Vec<usize> {
        let mut starts = vec![0];
        let bytes = line.as_bytes();
        for i in 2..bytes.len() {
            if bytes[i - 1] == b' ' && bytes[i - 2] == b' ' && bytes[i] != b' ' {
                starts.push(i);
            }
        }
        starts
    };
    assert!(lines.len() >= 3, "{out}");
    for row in &lines[1..] {
        assert_eq!(starts(row)[..5], starts(lines[0])[..5], "{out}");
    }

    app.state
        .keys
        .reload(&app.pool, app.state.clock.now())
        .await
        .unwrap();
    assert_eq!(app.jwks().await["keys"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_configuration_fails_with_one_line_naming_the_key() {
    let cases: [(&[(&str, &str)], &str); 9] = [
        (&[("TESSERA__TOKENS__ACCESS_TTL", "0")], "tokens.access_ttl"),
        (&[("TESSERA__DATABASE__URL", "")], "database.url"),
        (&[("TESSERA__KEYS__ALGORITHM", "HS256")], "HS256"),
        (
            &[("TESSERA__LOGIN__LOCKOUT_THRESHOLD", "0")],
            "login.lockout_threshold",
        ),
        (
            &[("TESSERA__LOGIN__LOCKOUT_MAX", "10s")],
            "login.lockout_max",
        ),
        (
            &[("TESSERA__HTTP__TRUSTED_PROXIES", "10.0.0.0/8,nonsense")],
            "nonsense",
        ),
        (
            &[("TESSERA__KEYS__ENCRYPTION_KEY", "too-short")],
            "keys.encryption_key",
        ),
        (
            &[("TESSERA__KEYS__PREVIOUS_ENCRYPTION_KEYS", "too-short")],
            "keys.previous_encryption_keys entry 1",
        ),
        (
            &[
                ("TESSERA_ENV", "production"),
                ("TESSERA__DATABASE__URL", "postgres://x@localhost/x"),
            ],
            "keys.encryption_key",
        ),
    ];
    for (env, expected) in cases {
        let output = tessera(None, &["serve"], "", env);
        assert!(!output.status.success());
        let err = stderr(&output);
        assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
        assert!(err.contains(expected), "expected `{expected}` in: {err}");
    }
}

#[tokio::test]
async fn a_client_id_can_never_be_a_user_id() {
    let app = spawn_app().await;
    let user = app.create_user("dana", "a long cli password", &[]).await;
    for spelling in [
        user.to_string(),
        user.simple().to_string(),
        user.to_string().to_uppercase(),
    ] {
        let refused = tessera(
            Some(&app),
            &[
                "client",
                "create",
                &spelling,
                "--grant",
                "client_credentials",
            ],
            "",
            &[],
        );
        assert!(!refused.status.success());
        assert!(
            stderr(&refused).contains("must not be a UUID"),
            "{}",
            stderr(&refused)
        );
    }
    // The database refuses it too, whoever writes the row.
    let direct = sqlx::query(
        "INSERT INTO clients (client_id, grant_types, created_at) VALUES ($1, '{client_credentials}', now())",
    )
    .bind(user.to_string())
    .execute(&app.pool)
    .await;
    assert!(direct.is_err());
    assert_eq!(app.count("clients").await, 0);
}

#[tokio::test]
async fn cli_changes_are_audited_with_the_os_user() {
    let app = spawn_app().await;
    let user = tessera(
        Some(&app),
        &["user", "create", "erin", "--password-stdin"],
        "a long cli password\n",
        &[("USER", "operator-jo")],
    );
    assert!(user.status.success(), "{}", stderr(&user));
    let client = tessera(
        Some(&app),
        &["client", "create", "tv", "--public", "--grant", "password"],
        "",
        &[("USER", "operator-jo")],
    );
    assert!(client.status.success(), "{}", stderr(&client));
    type Row = (
        String,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT actor, actor_client_id, os_user, action, target FROM audit_log ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row.0, "cli");
        assert_eq!(row.1, None);
        assert!(
            row.2.as_deref().unwrap().starts_with("operator-jo (uid "),
            "{row:?}"
        );
    }
    assert_eq!(rows[0].3, "user.create");
    assert_eq!(rows[1].3, "client.create");
    assert_eq!(rows[1].4.as_deref(), Some("tv"));
}

#[test]
fn help_names_the_configuration_sources_and_required_settings() {
    for args in [&["--help"][..], &["serve", "--help"]] {
        let output = tessera(None, args, "", &[]);
        assert!(output.status.success());
        let help = stdout(&output);
        for expected in [
            "--config <DIR>",
            "TESSERA_CONFIG_DIR",
            "TESSERA_ENV",
            "TESSERA__SECTION__KEY",
            "built into this binary",
            "TESSERA__DATABASE__URL",
            "TESSERA__KEYS__ENCRYPTION_KEY",
        ] {
            assert!(
                help.contains(expected),
                "`{expected}` not in {args:?}:\n{help}"
            );
        }
    }
}

#[test]
fn a_configuration_directory_that_was_asked_for_and_is_missing_fails() {
    let missing = std::env::temp_dir().join(format!("tessera-missing-{}", uuid::Uuid::new_v4()));
    let missing = missing.to_str().unwrap();
    let flag = tessera(None, &["--config", missing, "keys", "list"], "", &[]);
    let variable = tessera(
        None,
        &["keys", "list"],
        "",
        &[("TESSERA_CONFIG_DIR", missing)],
    );
    for output in [flag, variable] {
        assert!(!output.status.success());
        let err = stderr(&output);
        assert!(
            err.contains(missing) && err.contains("does not exist"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_configuration_directory_goes_over_the_built_in_defaults() {
    let app = spawn_app().await;
    let dir = std::env::temp_dir().join(format!("tessera-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    // The database comes from the file; the flag goes after the subcommand too.
    std::fs::write(
        dir.join("local.yaml"),
        format!("database:\n  url: {}\n", app.db.url),
    )
    .unwrap();
    let output = tessera(
        None,
        &["keys", "list", "--config", dir.to_str().unwrap()],
        "",
        &[],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("active"));
}

#[test]
fn a_database_url_that_is_not_postgres_is_refused_by_name() {
    let output = tessera(
        None,
        &["client", "disable", "svc"],
        "",
        &[(
            "TESSERA__DATABASE__URL",
            "mysql://root@127.0.0.1:3306/tessera",
        )],
    );
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("database.url must start with postgres://"),
        "{error}"
    );
    assert!(error.contains("mysql://"), "{error}");
    // Without a scheme, nothing of the URL is repeated: it may hold a password.
    let output = tessera(
        None,
        &["client", "disable", "svc"],
        "",
        &[("TESSERA__DATABASE__URL", "root:hunter2-secret@db/tessera")],
    );
    let error = stderr(&output);
    assert!(
        error.contains("database.url must start with postgres://"),
        "{error}"
    );
    assert!(!error.contains("hunter2-secret"), "{error}");
}

#[test]
fn misspelt_variables_are_named_with_the_spelling_that_is_read() {
    let output = tessera(
        None,
        &["keys", "list"],
        "",
        &[
            (
                "TESSERA_DATABASE_URL",
                "postgres://postgres@127.0.0.1:1/nowhere",
            ),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere"),
        ],
    );
    let error = stderr(&output);
    assert!(
        error.contains("TESSERA_DATABASE_URL is not read")
            && error.contains("did you mean TESSERA__DATABASE__URL?"),
        "{error}"
    );
    assert!(
        error.contains("DATABASE_URL is not read by Tessera: set TESSERA__DATABASE__URL"),
        "{error}"
    );
    // Written to a pipe, not a terminal: no colour codes.
    assert!(!error.contains('\u{1b}'), "{error:?}");
}

#[tokio::test]
async fn a_port_in_use_names_the_variable_that_moves_it() {
    let app = spawn_app().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = tessera(
        Some(&app),
        &["serve"],
        "",
        &[
            ("TESSERA__HTTP__PUBLIC_ADDR", &addr),
            ("TESSERA__HTTP__ADMIN_ADDR", "127.0.0.1:0"),
        ],
    );
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains(&format!("cannot listen on http.public_addr {addr}"))
            && error.contains("TESSERA__HTTP__PUBLIC_ADDR")
            && error.contains("TESSERA__ISSUER"),
        "{error}"
    );
}

#[tokio::test]
async fn users_and_clients_can_be_found_again() {
    let app = spawn_app().await;
    let alice = app.seed().await;
    app.create_user("bob", PASSWORD, &["read"]).await;
    let list = tessera(Some(&app), &["user", "list"], "", &[]);
    assert!(list.status.success(), "{}", stderr(&list));
    let out = stdout(&list);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].starts_with(&alice.to_string()) && rows[0].contains("alice"),
        "{out}"
    );
    assert!(rows[1].contains("bob"), "{out}");
    // Paged by username.
    let after = tessera(Some(&app), &["user", "list", "--after", "alice"], "", &[]);
    assert_eq!(stdout(&after).lines().count(), 2, "{}", stdout(&after));
    // Shown by the name as logins spell it.
    let show = tessera(Some(&app), &["user", "show", "ALICE"], "", &[]);
    assert!(
        stdout(&show).contains(&format!("id: {alice}")),
        "{}",
        stdout(&show)
    );
    let missing = tessera(Some(&app), &["user", "show", "nobody"], "", &[]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("no such user"));

    let clients = tessera(Some(&app), &["client", "list"], "", &[]);
    let out = stdout(&clients);
    let mobile = out
        .lines()
        .find(|l| l.starts_with("mobile "))
        .unwrap_or_default();
    assert!(
        mobile.contains("public") && mobile.contains("password"),
        "{out}"
    );
    assert!(!out.contains("tss_"), "no secret is ever listed: {out}");

    // The admin API finds them too.
    let token = app.admin_token().await;
    let found: serde_json::Value = app
        .admin(reqwest::Method::GET, "/admin/users?username=Alice", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["users"][0]["id"], alice.to_string());
    let page: serde_json::Value = app
        .admin(reqwest::Method::GET, "/admin/users?limit=1", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["users"][0]["username"], "alice");
    assert_eq!(page["next_cursor"], "alice");
    // A cursor that is no username we sent, or a name no account can have,
    // is refused, never a 500.
    let long = format!("after={}", "x".repeat(600));
    let long_name = format!("username={}", "a".repeat(129));
    for bad in ["after=%00", "after=a%0Ab", &long, &long_name] {
        let refused = app
            .admin(reqwest::Method::GET, &format!("/admin/users?{bad}"), &token)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{bad}");
    }
    // POST still creates on the same path.
    let created = app
        .admin(reqwest::Method::POST, "/admin/users", &token)
        .json(&serde_json::json!({"username": "carol", "password": "a long password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let put = app
        .admin(reqwest::Method::PUT, "/admin/users", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "POST, GET, HEAD");
}

#[tokio::test]
async fn a_database_error_is_printed_with_its_cause_not_as_internal_error() {
    let app = crate::helpers::spawn_app().await;
    // A schema the binary does not expect (a pooler's, a half-applied
    // migration...): every change writes its audit row.
    sqlx::query("DROP TABLE audit_log")
        .execute(&app.pool)
        .await
        .unwrap();
    let out = crate::helpers::tessera(
        Some(&app),
        &[
            "client", "create", "broken", "--public", "--grant", "password",
        ],
        "",
        &[],
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("SQLSTATE 42P01") && said.contains("audit_log"),
        "{said}"
    );
    assert!(!said.contains("error: internal error"), "{said}");
}
