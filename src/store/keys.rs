use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub algorithm: String,
    pub private_key_encrypted: Vec<u8>,
    /// Which key-encryption key sealed it (`keys::kek`); `None` if sealed
    /// before that was recorded.
    pub kek_id: Option<Vec<u8>>,
    pub public_jwk: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub activates_at: DateTime<Utc>,
    /// Distrusted after a compromise: kept on the schedule (so the keys
    /// around it keep their dates), never published, trusted or used.
    pub distrusted: bool,
}

/// Every key, oldest activation first.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<StoredKey>> {
    sqlx::query_as!(
        StoredKey,
        r#"SELECT kid, algorithm, private_key_encrypted, kek_id, public_jwk, created_at, activates_at,
                  distrusted_at IS NOT NULL AS "distrusted!"
           FROM signing_keys ORDER BY activates_at, created_at, kid"#,
    )
    .fetch_all(pool)
    .await
}

#[tracing::instrument(level = "debug", skip_all, fields(kid = %key.kid))]
pub async fn insert(conn: &mut sqlx::PgConnection, key: &StoredKey) -> sqlx::Result<()> {
    insert_with(conn, key).await
}

async fn insert_with<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    key: &StoredKey,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO signing_keys (kid, algorithm, private_key_encrypted, kek_id, public_jwk, created_at, activates_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        key.kid,
        key.algorithm,
        key.private_key_encrypted,
        key.kek_id,
        key.public_jwk,
        key.created_at,
        key.activates_at,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Inserts `key` unless any key exists. Instances starting together
/// serialise on an advisory lock, so exactly one key is made. ("Any key",
/// not "any key active at `now`": a racing instance's `now` may be older
/// than the winner's activation time.)
#[tracing::instrument(level = "debug", skip_all, fields(kid = %key.kid))]
pub async fn insert_if_none(pool: &PgPool, key: &StoredKey) -> sqlx::Result<bool> {
    const FIRST_KEY_LOCK: i64 = 0x0074_6573_7365_7261; // "tessera" in ASCII
    let mut tx = pool.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", FIRST_KEY_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    let exists = sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM signing_keys) AS "exists!""#)
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        return Ok(false);
    }
    insert_with(&mut *tx, key).await?;
    tx.commit().await?;
    Ok(true)
}

/// A key distrusted after a compromise, as `keys list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DistrustedKey {
    pub kid: String,
    pub algorithm: String,
    pub created_at: DateTime<Utc>,
    pub activates_at: DateTime<Utc>,
    pub distrusted_at: DateTime<Utc>,
    pub distrust_reason: String,
}

/// Every distrusted key, most recent first.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn distrusted(pool: &PgPool) -> sqlx::Result<Vec<DistrustedKey>> {
    sqlx::query_as!(
        DistrustedKey,
        r#"SELECT kid, algorithm, created_at, activates_at, distrusted_at AS "distrusted_at!",
                  COALESCE(distrust_reason, '') AS "distrust_reason!"
           FROM signing_keys WHERE distrusted_at IS NOT NULL ORDER BY distrusted_at DESC, kid"#,
    )
    .fetch_all(pool)
    .await
}

/// What `distrust` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Distrust {
    Distrusted,
    Already,
    Unknown,
}

/// Marks a key distrusted, for good: it is never listed as trusted again.
#[tracing::instrument(level = "debug", skip(conn, reason))]
pub async fn distrust(
    conn: &mut sqlx::PgConnection,
    kid: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<Distrust> {
    let found = sqlx::query_scalar!(
        r#"SELECT distrusted_at IS NOT NULL AS "already!" FROM signing_keys WHERE kid = $1 FOR UPDATE"#,
        kid,
    )
    .fetch_optional(&mut *conn)
    .await?;
    match found {
        None => Ok(Distrust::Unknown),
        Some(true) => Ok(Distrust::Already),
        Some(false) => {
            sqlx::query!(
                "UPDATE signing_keys SET distrusted_at = $2, distrust_reason = $3 WHERE kid = $1",
                kid,
                now,
                reason,
            )
            .execute(conn)
            .await?;
            Ok(Distrust::Distrusted)
        }
    }
}
