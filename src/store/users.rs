use anyhow::bail;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{Attributes, Scope, Username};

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub scopes: Scope,
    pub disabled: bool,
    /// A confirmed second factor (TOTP): a password alone does not log in.
    pub second_factor: bool,
    /// What access tokens may carry of them (the client picks).
    pub attributes: Attributes,
}

impl UserRow {
    /// A row as stored; its scopes are parsed once, here.
    pub(crate) fn from_stored(
        id: Uuid,
        username: String,
        password_hash: String,
        scopes: &[String],
        disabled: bool,
    ) -> sqlx::Result<Self> {
        Ok(UserRow {
            scopes: Scope::from_tokens(scopes).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            id,
            username,
            password_hash,
            disabled,
            second_factor: false,
            attributes: Attributes::default(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("a user with that username already exists")]
    Exists,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[tracing::instrument(level = "debug", skip(executor, password_hash))]
pub async fn insert<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    username: &Username,
    password_hash: &str,
    scopes: &[String],
    now: DateTime<Utc>,
) -> Result<Uuid, CreateUserError> {
    let id = Uuid::new_v4();
    sqlx::query!(
        "INSERT INTO users (id, username, password_hash, scopes, created_at, updated_at, username_normalised)
         VALUES ($1, $2, $3, $4, $5, $5, true)",
        id,
        username.as_str(),
        password_hash,
        scopes,
        now,
    )
    .execute(executor)
    .await
    .map_err(|e| {
        if super::is_unique_violation(&e) {
            CreateUserError::Exists
        } else {
            e.into()
        }
    })?;
    Ok(id)
}

/// Replaces a hash only if it is still the one we verified, so an upgrade
/// racing a password change never undoes the change.
#[tracing::instrument(level = "debug", skip(pool, old_hash, new_hash))]
pub async fn upgrade_password_hash(
    pool: &PgPool,
    id: Uuid,
    old_hash: &str,
    new_hash: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET password_hash = $3, updated_at = $4 WHERE id = $1 AND password_hash = $2",
        id,
        old_hash,
        new_hash,
        now,
    )
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UserView {
    pub id: Uuid,
    pub username: String,
    pub scopes: Vec<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Recent failed password logins from every source that is not a
    /// trusted device (the username-wide count).
    pub failed_logins: i32,
    /// The latest end of any lock on the username, for a source or for all
    /// of them; locked (somewhere) while in the future.
    pub locked_until: Option<DateTime<Utc>>,
    /// A confirmed second factor (never the secret).
    pub second_factor: bool,
    /// The user's attributes (`claims`), for access tokens of clients that
    /// pick them.
    pub claims: serde_json::Value,
}

#[tracing::instrument(level = "debug", skip(conn))]
pub async fn find_by_id(conn: &mut sqlx::PgConnection, id: Uuid) -> sqlx::Result<Option<UserView>> {
    sqlx::query_as!(
        UserView,
        r#"SELECT u.id, u.username, u.scopes, u.disabled, u.created_at, u.updated_at,
                COALESCE(t.failures, 0) AS "failed_logins!",
                (SELECT max(l.locked_until) FROM login_throttle l WHERE l.username = u.username) AS locked_until,
                EXISTS (SELECT 1 FROM user_totp m WHERE m.user_id = u.id AND m.confirmed_at IS NOT NULL) AS "second_factor!",
                u.claims
         FROM users u LEFT JOIN login_throttle t ON t.username = u.username AND t.source = '*'
         WHERE u.id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await
}

/// Users by username, after `after` (a page cursor) and, with `exactly`,
/// only that one; at most `limit`, in username order.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn page(
    pool: &PgPool,
    exactly: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<UserView>> {
    sqlx::query_as!(
        UserView,
        r#"SELECT u.id, u.username, u.scopes, u.disabled, u.created_at, u.updated_at,
                COALESCE(t.failures, 0) AS "failed_logins!",
                (SELECT max(l.locked_until) FROM login_throttle l WHERE l.username = u.username) AS locked_until,
                EXISTS (SELECT 1 FROM user_totp m WHERE m.user_id = u.id AND m.confirmed_at IS NOT NULL) AS "second_factor!",
                u.claims
         FROM users u LEFT JOIN login_throttle t ON t.username = u.username AND t.source = '*'
         WHERE ($1::text IS NULL OR u.username = $1) AND ($2::text IS NULL OR u.username > $2)
         ORDER BY u.username LIMIT $3"#,
        exactly,
        after,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// Replaces a user's attributes (validated). False when there is no such
/// user. The next access token carries them: login and refresh read them
/// with the user.
#[tracing::instrument(level = "debug", skip(conn, attributes))]
pub async fn set_claims(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    attributes: &Attributes,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let value = serde_json::Value::Object(attributes.as_map().clone());
    let done = sqlx::query!(
        "UPDATE users SET claims = $2, updated_at = $3 WHERE id = $1",
        id,
        value,
        now,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Returns false when there is no such user.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn set_disabled(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    disabled: bool,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1",
        id,
        disabled,
        now,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[tracing::instrument(level = "debug", skip(conn, password_hash))]
pub async fn set_password_hash(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    password_hash: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1",
        id,
        password_hash,
        now,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How long one statement of the startup normalisation may run, waiting
/// for another instance's included.
const NORMALISE_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Brings usernames stored before they were normalised (PRECIS) into their
/// normalised form, once per row. Two rows that normalise to the same name
/// (`Alice` and `alice`) are a collision an operator must resolve: startup
/// stops and names both. A stored name the profile refuses is left as it
/// is (nobody can log in with it any more) and logged by id.
pub async fn normalise_stored_usernames(pool: &PgPool) -> anyhow::Result<()> {
    // Not bound by the request timeout: an instance starting while another
    // works through many stored names waits for it.
    let mut tx = super::background(pool, NORMALISE_LIMIT).await?;
    // One instance at a time; the others find nothing left to do.
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('tessera.normalise_usernames'))")
        .fetch_one(&mut *tx)
        .await?;
    let rows = sqlx::query!("SELECT id, username FROM users WHERE NOT username_normalised")
        .fetch_all(&mut *tx)
        .await?;
    for row in rows {
        let (id, stored) = (row.id, row.username);
        let normalised = match Username::parse(&stored) {
            Ok(name) => name.as_str().to_owned(),
            Err(e) => {
                tracing::warn!(user_id = %id, reason = %e, "stored username is not allowed any more; that user cannot log in until renamed");
                stored.clone()
            }
        };
        let other: Option<Uuid> = sqlx::query_scalar!(
            "SELECT id FROM users WHERE username = $1 AND id <> $2",
            normalised,
            id,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(other) = other {
            bail!(
                "users {id} and {other} have usernames that are the same after normalisation \
                 (case, width, Unicode composition); rename or delete one \
                 (UPDATE users SET username = '...' WHERE id = '...'), then start again"
            );
        }
        sqlx::query!(
            "UPDATE users SET username = $2, username_normalised = true WHERE id = $1",
            id,
            normalised,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
