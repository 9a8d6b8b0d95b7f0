//! Replacing the key-encryption key (KEK): instances configured with a new
//! key and the old one open everything the old one sealed; `tessera keys
//! rewrap` moves every sealed row to the new key, after which an instance
//! with the new key alone signs, checks TOTP codes and accepts the recovery
//! codes handed out before; rows that no configured key opens stop rewrap
//! and startup, naming the fix.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde_json::Value;
use tessera::config::Settings;
use tessera::domain::RecoveryKey;
use tessera::keys::{KekId, SigningAlgorithm};
use uuid::Uuid;

use crate::helpers::{TestApp, captured_logs, spawn_app_with, spawn_on, tessera};
use crate::mfa::{pkce, totp};

/// A fresh key-encryption key, base64 as configured.
fn new_kek() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    STANDARD.encode(bytes)
}

fn bytes(kek: &str) -> [u8; 32] {
    STANDARD.decode(kek).unwrap().try_into().unwrap()
}

/// The identifier startup, rewrap and the `kek_id` columns name `kek` by.
fn id(kek: &str) -> String {
    KekId::of(&bytes(kek)).to_string()
}

fn id_bytes(kek: &str) -> Vec<u8> {
    KekId::of(&bytes(kek)).as_bytes().to_vec()
}

/// Settings with `current` as keys.encryption_key and `previous` after it.
fn keks(current: &str, previous: &[&str]) -> impl FnOnce(&mut Settings) + use<> {
    let current = current.to_owned();
    let previous: Vec<String> = previous.iter().map(|k| (*k).to_owned()).collect();
    move |s: &mut Settings| {
        s.keys.encryption_key = Some(SecretString::from(current));
        s.keys.previous_encryption_keys = previous.into_iter().map(SecretString::from).collect();
    }
}

/// Runs `tessera <args>` with these keys, as an operator's shell would set them.
fn cli(app: &TestApp, args: &[&str], current: &str, previous: &[&str]) -> (bool, String, String) {
    let previous = previous.join(",");
    let output = tessera(
        Some(app),
        args,
        "",
        &[
            ("TESSERA__KEYS__ENCRYPTION_KEY", current),
            ("TESSERA__KEYS__PREVIOUS_ENCRYPTION_KEYS", &previous),
        ],
    );
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every sealed value with its key identifier, table by table, in a fixed order.
async fn sealed_rows(app: &TestApp) -> Vec<(String, Vec<u8>, Option<Vec<u8>>)> {
    sqlx::query_as(
        "SELECT 'signing_keys:' || kid, private_key_encrypted, kek_id FROM signing_keys
         UNION ALL SELECT 'user_totp:' || user_id, secret_sealed, kek_id FROM user_totp
         UNION ALL SELECT 'sealed_secrets:' || purpose, sealed, kek_id FROM sealed_secrets
         ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// The database as a version before key identifiers left it: none
/// recorded, and the recovery-code key derived from the KEK, not stored.
async fn as_an_earlier_version_left_it(app: &TestApp) {
    for statement in [
        "UPDATE signing_keys SET kek_id = NULL",
        "UPDATE user_totp SET kek_id = NULL",
        "DELETE FROM sealed_secrets",
    ] {
        sqlx::query(statement).execute(&app.pool).await.unwrap();
    }
}

async fn alice(app: &TestApp) -> Uuid {
    sqlx::query_scalar("SELECT id FROM users WHERE username = 'alice'")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// A token signed by `app`: it signs, and says with which key.
async fn signs(app: &TestApp) -> String {
    let token = app
        .service_token(&format!("svc-{}", Uuid::new_v4().simple()), &["read"])
        .await;
    assert_eq!(app.introspect(&token).await["active"], true);
    kid_of(&token)
}

/// alice's login through the challenge endpoint with a TOTP code of the
/// next step (the last one used is spent) or a recovery code.
async fn second_factor_login(app: &TestApp, secret: &str, recovery: Option<&str>) {
    let (verifier, challenge) = pkce();
    let auth_session = app.flow_wanting_otp(&challenge).await;
    let response = match recovery {
        Some(code) => {
            app.challenge(
                &[
                    ("client_id", "app"),
                    ("auth_session", &auth_session),
                    ("recovery_code", code),
                ],
                None,
            )
            .await
        }
        None => {
            app.advance_clock(Duration::from_secs(30));
            app.send_otp(&auth_session, &totp(secret, app.now_unix()))
                .await
        }
    };
    assert_eq!(response.status(), 200, "second factor refused");
    let code = response.json::<Value>().await.unwrap()["authorization_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.redeem(&code, &verifier).await.status(), 200);
}

async fn enroll_alice(app: &TestApp) -> (String, Vec<String>) {
    app.seed_first_party().await;
    let access = app.login().await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.enroll(&access).await
}

#[tokio::test]
async fn a_new_kek_opens_the_old_keys_rows_and_rewrap_moves_them_all_to_it() {
    let (old, new) = (new_kek(), new_kek());
    let a = spawn_app_with(keks(&old, &[])).await;
    let (secret, codes) = enroll_alice(&a).await;
    let first_kid: String = sqlx::query_scalar("SELECT kid FROM signing_keys")
        .fetch_one(&a.pool)
        .await
        .unwrap();
    // Rows as an earlier version stored them: without a key identifier.
    sqlx::query("UPDATE signing_keys SET kek_id = NULL")
        .execute(&a.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE user_totp SET kek_id = NULL")
        .execute(&a.pool)
        .await
        .unwrap();

    // 1. An instance with the new key current and the old one previous.
    let b = spawn_on(a.db.clone(), keks(&new, &[&old])).await;
    // It recorded which key sealed the rows stored without one...
    for (id, _, kek_id) in sealed_rows(&b).await {
        assert_eq!(kek_id, Some(id_bytes(&old)), "{id}");
    }
    // ...and said what each key seals, by identifier.
    let logs = captured_logs();
    assert!(
        logs.contains(&format!(
            "key-encryption key {} (previous 1) still seals 3 rows (signing_keys: 1, user_totp: 1, sealed_secrets: 1)",
            id(&old)
        )),
        "{logs}"
    );
    // Everything the old key sealed works there.
    assert_eq!(signs(&b).await, first_kid);
    second_factor_login(&b, &secret, None).await;
    second_factor_login(&b, &secret, Some(&codes[0])).await;
    // What it seals now is under the new key.
    let now = b.state.clock.now();
    let rotated = b
        .state
        .keys
        .rotate(
            &mut b.pool.acquire().await.unwrap(),
            SigningAlgorithm::Es256,
            now,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    let rotated_id: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT kek_id FROM signing_keys WHERE kid = $1")
            .bind(&rotated)
            .fetch_one(&b.pool)
            .await
            .unwrap();
    assert_eq!(rotated_id, Some(id_bytes(&new)));
    let before = sealed_rows(&b).await;

    // 2. Rewrap: every row of the old key, in one go.
    let (ok, out, err) = cli(&b, &["keys", "rewrap"], &new, &[&old]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "re-sealed 3 rows under key-encryption key {} (signing_keys: 1, user_totp: 1, sealed_secrets: 1)",
            id(&new)
        )),
        "{out}"
    );
    let after = sealed_rows(&b).await;
    assert_eq!(after.len(), before.len());
    for ((row, old_value, _), (_, new_value, kek_id)) in before.iter().zip(&after) {
        assert_eq!(kek_id, &Some(id_bytes(&new)), "{row}");
        // Re-sealed (a fresh nonce), except the key sealed under the new key already.
        assert_eq!(
            old_value == new_value,
            row == &format!("signing_keys:{rotated}"),
            "{row}"
        );
    }
    // Idempotent: nothing is left to re-seal, and nothing changes.
    let (ok, out, err) = cli(&b, &["keys", "rewrap"], &new, &[&old]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "re-sealed 0 rows under key-encryption key {} (signing_keys: 0, user_totp: 0, sealed_secrets: 0)",
            id(&new)
        )),
        "{out}"
    );
    assert_eq!(sealed_rows(&b).await, after);
    // Both runs audited, by who ran them, naming the key now in use.
    let audit: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT actor, target, os_user FROM audit_log WHERE action = 'keys.rewrap' ORDER BY id",
    )
    .fetch_all(&b.pool)
    .await
    .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    for (actor, target, os_user) in &audit {
        assert_eq!(actor, "cli");
        assert_eq!(
            target.as_deref(),
            Some(format!("kek:{}", id(&new)).as_str())
        );
        assert!(os_user.is_some());
    }
    // The instance that ran through it keeps working.
    b.state
        .keys
        .reload(&b.pool, b.state.clock.now())
        .await
        .unwrap();
    second_factor_login(&b, &secret, None).await;

    // An instance started now says the old key can go.
    spawn_on(a.db.clone(), keks(&new, &[&old])).await;
    let logs = captured_logs();
    assert!(
        logs.contains(&format!(
            "key-encryption key {} (previous 1) seals nothing: it can be removed from keys.previous_encryption_keys",
            id(&old)
        )),
        "{logs}"
    );

    // 3. The old key removed: an instance with the new key alone.
    let c = spawn_on(a.db.clone(), keks(&new, &[])).await;
    assert!(captured_logs().contains(&format!(
        "key-encryption key {} (current) seals 4 rows (signing_keys: 2, user_totp: 1, sealed_secrets: 1)",
        id(&new)
    )));
    c.advance_clock(Duration::from_secs(60));
    assert_eq!(signs(&c).await, first_kid);
    second_factor_login(&c, &secret, None).await;
    second_factor_login(&c, &secret, Some(&codes[1])).await;

    // No key, secret or code ever reached the logs.
    let logs = captured_logs();
    for secret in [
        old.as_str(),
        new.as_str(),
        secret.as_str(),
        codes[1].as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret was logged");
    }
}

#[tokio::test]
async fn recovery_codes_of_an_earlier_version_survive_the_upgrade_and_the_rotation() {
    let (old, new) = (new_kek(), new_kek());
    let a = spawn_app_with(keks(&old, &[])).await;
    as_an_earlier_version_left_it(&a).await;
    // This version starting on it keeps the key earlier versions derived
    // from the KEK: the codes it hands out are keyed as theirs were.
    let b = spawn_on(a.db.clone(), keks(&old, &[])).await;
    let (secret, codes) = enroll_alice(&b).await;
    let user = alice(&b).await;
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT code_hash FROM recovery_codes WHERE user_id = $1")
            .bind(user)
            .fetch_all(&b.pool)
            .await
            .unwrap();
    let legacy = RecoveryKey::derive(&bytes(&old));
    for code in &codes {
        let hash = legacy.hash(user, code).unwrap();
        assert!(stored.contains(&hash.as_bytes().to_vec()));
    }
    // Exactly what an earlier version leaves, codes included; rewrap runs
    // before any instance of this version has started on it.
    as_an_earlier_version_left_it(&b).await;
    let (ok, out, err) = cli(&b, &["keys", "rewrap"], &new, &[&old]);
    assert!(ok, "{err}");
    assert!(
        out.contains("re-sealed 2 rows") && out.contains("(signing_keys: 1, user_totp: 1"),
        "{out}"
    );

    // The old key gone: codes handed out before all this still work.
    let c = spawn_on(a.db.clone(), keks(&new, &[])).await;
    c.advance_clock(Duration::from_secs(60));
    second_factor_login(&c, &secret, Some(&codes[0])).await;
    second_factor_login(&c, &secret, None).await;
    signs(&c).await;
}

#[tokio::test]
async fn rewrap_refuses_and_changes_nothing_when_a_row_opens_under_no_configured_key() {
    let (old, new, lost) = (new_kek(), new_kek(), new_kek());
    let a = spawn_app_with(keks(&old, &[])).await;
    enroll_alice(&a).await;
    // A signing key sealed under a key that the rewrap below is not given.
    let (ok, _, err) = cli(&a, &["keys", "rotate"], &lost, &[&old]);
    assert!(ok, "{err}");
    let lost_kid: String = sqlx::query_scalar("SELECT kid FROM signing_keys WHERE kek_id = $1")
        .bind(id_bytes(&lost))
        .fetch_one(&a.pool)
        .await
        .unwrap();

    let before = sealed_rows(&a).await;
    let (ok, out, err) = cli(&a, &["keys", "rewrap"], &new, &[&old]);
    assert!(!ok, "{out}");
    for expected in [
        "nothing was re-sealed",
        &format!(
            "signing key {lost_kid} (sealed under key-encryption key {})",
            id(&lost)
        ),
        "keys.previous_encryption_keys",
    ] {
        assert!(err.contains(expected), "`{expected}` not in: {err}");
    }
    assert_eq!(sealed_rows(&a).await, before, "nothing changed");

    // Stored without an identifier, it is refused as well.
    sqlx::query("UPDATE signing_keys SET kek_id = NULL WHERE kid = $1")
        .bind(&lost_kid)
        .execute(&a.pool)
        .await
        .unwrap();
    let before = sealed_rows(&a).await;
    let (ok, _, err) = cli(&a, &["keys", "rewrap"], &new, &[&old]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "signing key {lost_kid} (stored without a key identifier)"
        )),
        "{err}"
    );
    assert_eq!(sealed_rows(&a).await, before, "nothing changed");
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'keys.rewrap'")
            .fetch_one(&a.pool)
            .await
            .unwrap();
    assert_eq!(audited, 0, "a refused rewrap did nothing to audit");

    // With that key listed too (two previous keys, in one variable), it runs.
    let (ok, out, err) = cli(&a, &["keys", "rewrap"], &new, &[&old, &lost]);
    assert!(ok, "{err}");
    assert!(
        out.contains("re-sealed 4 rows")
            && out.contains("(signing_keys: 2, user_totp: 1, sealed_secrets: 1)"),
        "{out}"
    );
    assert!(
        sealed_rows(&a)
            .await
            .iter()
            .all(|(_, _, kek_id)| kek_id == &Some(id_bytes(&new)))
    );
}

/// Builds an instance and runs it until it fails to start; its error.
async fn refused_start(app: &TestApp, configure: impl FnOnce(&mut Settings)) -> String {
    let mut settings = crate::helpers::test_settings(&app.db.url);
    configure(&mut settings);
    let instance = tessera::startup::Application::build(settings, Default::default())
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(20), instance.run_until_stopped())
        .await
        .expect("it should have refused to start");
    format!(
        "{:#}",
        outcome.expect_err("it should have refused to start")
    )
}

#[tokio::test]
async fn startup_refuses_rows_sealed_under_a_key_it_is_not_given_and_names_the_fix() {
    let (old, new) = (new_kek(), new_kek());
    let a = spawn_app_with(keks(&old, &[])).await;
    // A key sealed by an instance already on the new key.
    let (ok, _, err) = cli(&a, &["keys", "rotate"], &new, &[&old]);
    assert!(ok, "{err}");

    let error = refused_start(&a, keks(&old, &[])).await;
    assert!(
        error.contains(&format!(
            "1 row (signing_keys: 1, user_totp: 0, sealed_secrets: 0) sealed under key-encryption key {}, which is not configured: add that key to keys.previous_encryption_keys",
            id(&new)
        )),
        "{error}"
    );
    assert!(!error.contains(&new) && !error.contains(&old), "{error}");

    // The same row stored without an identifier: no configured key opens it.
    let kid: String = sqlx::query_scalar("SELECT kid FROM signing_keys WHERE kek_id = $1")
        .bind(id_bytes(&new))
        .fetch_one(&a.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE signing_keys SET kek_id = NULL WHERE kid = $1")
        .bind(&kid)
        .execute(&a.pool)
        .await
        .unwrap();
    let error = refused_start(&a, keks(&old, &[])).await;
    assert!(
        error.contains(&format!(
            "1 row stored without a key identifier open under no configured key-encryption key: signing key {kid}"
        )) && error.contains("keys.previous_encryption_keys"),
        "{error}"
    );

    // Given both keys, it starts.
    let b = spawn_on(a.db.clone(), keks(&new, &[&old])).await;
    signs(&b).await;
}
