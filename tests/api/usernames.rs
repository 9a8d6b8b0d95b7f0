//! Usernames in the PRECIS UsernameCaseMapped profile (RFC 8265 §3.3).

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp, assert_oauth_error, spawn_app};

async fn create(app: &TestApp, token: &str, username: &str) -> reqwest::Response {
    app.admin(Method::POST, "/admin/users", token)
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn one_account_however_its_name_is_typed() {
    let app = spawn_app().await;
    app.create_public_client("mobile", &["password"], &[]).await;
    let admin = app.admin_token().await;

    // NFC josé, then the same name in NFD, in capitals, in full width.
    let created = create(&app, &admin, "jos\u{e9}").await;
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.json::<serde_json::Value>().await.unwrap()["username"],
        "jos\u{e9}"
    );
    for twin in ["jose\u{301}", "JOS\u{c9}", "ＪＯＳＥ\u{301}"] {
        assert_oauth_error(create(&app, &admin, twin).await, 409, "conflict").await;
    }
    assert_eq!(create(&app, &admin, "Alice").await.status(), 201);
    assert_oauth_error(create(&app, &admin, "alice").await, 409, "conflict").await;
    assert_eq!(app.count("users").await, 2);

    // Login normalises the same way.
    for typed in ["jose\u{301}", "José", "alice", "ALICE", "ａｌｉｃｅ"] {
        assert_eq!(
            app.password_grant("mobile", typed, PASSWORD).await.status(),
            200,
            "{typed:?}"
        );
    }
}

#[tokio::test]
async fn invisible_direction_and_mixed_script_names_are_refused() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for bad in [
        "ali\u{200b}ce",   // zero-width space
        "ali\u{202e}ecil", // right-to-left override
        "alic\u{435}",     // Latin with a Cyrillic е
        "bo b",
        "",
    ] {
        assert_oauth_error(create(&app, &admin, bad).await, 400, "invalid_request").await;
    }
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn names_stored_before_normalisation_are_migrated_and_collisions_stop_startup() {
    let app = spawn_app().await;
    let insert = |id: Uuid, name: &'static str| {
        sqlx::query(
            // As an older binary or an import script writes them.
            "INSERT INTO users (id, username, password_hash, created_at, updated_at)
             VALUES ($1, $2, 'x', now(), now())",
        )
        .bind(id)
        .bind(name)
        .execute(&app.pool)
    };
    let bob = Uuid::new_v4();
    insert(bob, "Bob").await.unwrap();
    tessera::store::users::normalise_stored_usernames(&app.pool)
        .await
        .unwrap();
    let stored: String = sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
        .bind(bob)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "bob");

    let (upper, lower) = (Uuid::new_v4(), Uuid::new_v4());
    insert(upper, "Carol").await.unwrap();
    insert(lower, "carol").await.unwrap();
    let error = tessera::store::users::normalise_stored_usernames(&app.pool)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&upper.to_string()) && error.contains(&lower.to_string()),
        "{error}"
    );
    // Nothing was half-done.
    let unchecked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE NOT username_normalised")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(unchecked, 2);
}
