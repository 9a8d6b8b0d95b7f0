//! Clients live in memory on every instance (issue 11); a change made on
//! the command line must reach every instance within a second.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{
    TestApp, assert_oauth_error, spawn_app, spawn_behind_partition, spawn_on, tessera, time_until,
};

/// How long until `app` answers svc's client_credentials request with
/// `expected` (a change applied).
async fn until_token_status(
    app: &TestApp,
    secret: &str,
    scope: Option<&str>,
    expected: u16,
) -> Duration {
    time_until(|| async { status(app.client_token("svc", secret, scope).await).await == expected })
        .await
}

async fn two_instances() -> (TestApp, TestApp) {
    let a = spawn_app().await;
    let b = a.spawn_second_instance().await;
    (a, b)
}

fn cli_ok(app: &TestApp, args: &[&str], stdin: &str) -> String {
    let output = tessera(Some(app), args, stdin, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn status(response: reqwest::Response) -> u16 {
    response.status().as_u16()
}

#[tokio::test]
async fn a_disabled_client_is_refused_on_every_instance_within_a_second() {
    let (a, b) = two_instances().await;
    let secret = a
        .create_confidential_client("svc", &["client_credentials"], &["read"])
        .await;
    // Both instances have the client in memory, and it holds a token.
    assert_eq!(
        status(a.client_token("svc", &secret, None).await).await,
        200
    );
    let held = b.client_token("svc", &secret, None).await;
    assert_eq!(held.status(), 200);
    let held = held.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b.introspect(&held).await["active"], true);

    cli_ok(&a, &["client", "disable", "svc"], "");
    for app in [&a, &b] {
        let took = until_token_status(app, &secret, None, 401).await;
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert_oauth_error(
            app.client_token("svc", &secret, None).await,
            401,
            "invalid_client",
        )
        .await;
        // The token it already holds is refused with it.
        assert_eq!(app.introspect(&held).await["active"], false);
    }

    cli_ok(&a, &["client", "enable", "svc"], "");
    let took = until_token_status(&b, &secret, None, 200).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn a_rotated_secret_replaces_the_old_one_on_every_instance_within_a_second() {
    let (a, b) = two_instances().await;
    let old = a
        .create_confidential_client("svc", &["client_credentials"], &["read"])
        .await;
    assert_eq!(status(b.client_token("svc", &old, None).await).await, 200);

    let printed = cli_ok(&a, &["client", "rotate-secret", "svc"], "");
    let new = printed
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("the generated secret is printed once")
        .to_owned();
    for app in [&a, &b] {
        let took = until_token_status(app, &old, None, 401).await;
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert_eq!(status(app.client_token("svc", &new, None).await).await, 200);
    }
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT secret_hash FROM clients WHERE client_id = 'svc'")
            .fetch_one(&a.pool)
            .await
            .unwrap();
    assert!(
        !String::from_utf8_lossy(&stored).contains(&new),
        "only a hash is stored"
    );
}

#[tokio::test]
async fn changed_grants_and_scopes_apply_on_every_instance_within_a_second() {
    let (a, b) = two_instances().await;
    let secret = a
        .create_confidential_client("svc", &["client_credentials"], &["read", "write"])
        .await;
    assert_eq!(
        status(b.client_token("svc", &secret, Some("write")).await).await,
        200
    );

    cli_ok(
        &a,
        &[
            "client",
            "set-grants",
            "svc",
            "--grant",
            "client_credentials",
            "--scope",
            "read",
        ],
        "",
    );
    let took = time_until(|| async {
        status(b.client_token("svc", &secret, Some("write")).await).await == 400
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_oauth_error(
        b.client_token("svc", &secret, Some("write")).await,
        400,
        "invalid_scope",
    )
    .await;
    assert_eq!(
        status(b.client_token("svc", &secret, Some("read")).await).await,
        200
    );

    // A public client cannot be given client_credentials, and nothing changes.
    a.create_public_client("app", &["password"], &["read"])
        .await;
    let refused = tessera(
        Some(&a),
        &[
            "client",
            "set-grants",
            "app",
            "--grant",
            "client_credentials",
        ],
        "",
        &[],
    );
    assert!(!refused.status.success());
    let grants: Vec<String> =
        sqlx::query_scalar("SELECT grant_types FROM clients WHERE client_id = 'app'")
            .fetch_one(&a.pool)
            .await
            .unwrap();
    assert_eq!(grants, ["password"]);

    cli_ok(
        &a,
        &[
            "client",
            "set-grants",
            "svc",
            "--grant",
            "refresh_token",
            "--scope",
            "read",
        ],
        "",
    );
    let took = until_token_status(&b, &secret, None, 400).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_oauth_error(
        b.client_token("svc", &secret, None).await,
        400,
        "unauthorized_client",
    )
    .await;
}

#[tokio::test]
async fn a_change_that_was_never_announced_is_picked_up_by_the_periodic_re_read() {
    let a = spawn_app().await;
    let b = spawn_on(a.db.clone(), |s| {
        s.revocation.sync_interval = Duration::from_millis(300);
    })
    .await;
    let secret = a
        .create_confidential_client("svc", &["client_credentials"], &["read"])
        .await;
    assert_eq!(
        status(b.client_token("svc", &secret, None).await).await,
        200
    );

    // As if the notification were lost: change the row with the trigger off.
    let mut tx = a.pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE clients DISABLE TRIGGER clients_notify")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE clients SET disabled = true WHERE client_id = 'svc'")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE clients ENABLE TRIGGER clients_notify")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    until_token_status(&b, &secret, None, 401).await;
}

#[tokio::test]
async fn client_changes_are_audited_and_unknown_clients_are_named() {
    let app = spawn_app().await;
    app.create_confidential_client("svc", &["client_credentials"], &["read"])
        .await;
    cli_ok(&app, &["client", "disable", "svc"], "");
    cli_ok(&app, &["client", "rotate-secret", "svc"], "");
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE target = 'svc' ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(actions, ["client.disable", "client.rotate_secret"]);

    let missing = tessera(Some(&app), &["client", "disable", "nobody"], "", &[]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such client"));
}

#[tokio::test]
async fn an_instance_cut_off_from_postgres_stops_trusting_its_copy_of_the_clients() {
    let a = spawn_app().await;
    let (cut_off, partition) = spawn_behind_partition(a.db.clone(), |_| {}).await;
    let secret = a
        .create_confidential_client("svc", &["client_credentials"], &["read"])
        .await;
    let held = cut_off.client_token("svc", &secret, None).await;
    assert_eq!(held.status(), 200);
    let held = held.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rs = cut_off.introspect_raw(&held).await;
    assert_eq!(rs.json::<Value>().await.unwrap()["active"], true);

    // The instance cannot hear of what happens next.
    partition.freeze();
    cli_ok(&a, &["client", "disable", "svc"], "");
    let took = until_token_status(&cut_off, &secret, None, 503).await;
    // The copy goes stale (clients::STALE_AFTER, 3 s) and the instance
    // refuses rather than trust it.
    assert!(took < Duration::from_millis(4000), "took {took:?}");
    assert_oauth_error(
        cut_off.introspect_raw(&held).await,
        503,
        "temporarily_unavailable",
    )
    .await;

    // Back in touch: the change applies.
    partition.heal();
    let took = until_token_status(&cut_off, &secret, None, 401).await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test]
async fn a_storm_of_client_changes_does_not_hold_up_revocations() {
    let (a, b) = two_instances().await;
    a.seed().await;
    let login = a.login().await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    assert_eq!(b.introspect(&access).await["active"], true);
    sqlx::query(
        "INSERT INTO clients (client_id, grant_types, scopes, created_at)
         SELECT 'bulk-' || n, '{password}', '{read}', now() FROM generate_series(1, 5000) n",
    )
    .execute(&a.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE clients SET scopes = '{read,write}' WHERE client_id LIKE 'bulk-%'")
        .execute(&a.pool)
        .await
        .unwrap();
    // Revoked on A right after 10,000 client announcements.
    let revoked = a
        .http
        .post(format!("{}/auth/revoke", a.address))
        .form(&[("client_id", "mobile"), ("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let took = time_until(|| async { b.introspect(&access).await["active"] == false }).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}
