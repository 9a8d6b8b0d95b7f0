use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub scopes: Vec<String>,
    pub disabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("a user with that username already exists")]
    Exists,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[tracing::instrument(level = "debug", skip(pool, password_hash))]
pub async fn insert(
    pool: &PgPool,
    username: &str,
    password_hash: &str,
    scopes: &[String],
    now: DateTime<Utc>,
) -> Result<Uuid, CreateUserError> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, scopes, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(id)
    .bind(username)
    .bind(password_hash)
    .bind(scopes)
    .bind(now)
    .execute(pool)
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

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn find_by_username(pool: &PgPool, username: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as::<_, UserRow>(
        "SELECT id, username, password_hash, scopes, disabled FROM users WHERE username = $1",
    )
    .bind(username)
    .fetch_optional(pool)
    .await
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
    sqlx::query(
        "UPDATE users SET password_hash = $3, updated_at = $4 WHERE id = $1 AND password_hash = $2",
    )
    .bind(id)
    .bind(old_hash)
    .bind(new_hash)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}
