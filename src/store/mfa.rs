//! Second factors: each user's TOTP secret (sealed) and recovery codes.
//! Every "once" is decided by the statement that writes it, so it holds
//! across instances.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::TokenHash;

/// A user's TOTP as stored.
#[derive(Debug)]
pub struct TotpRow {
    pub secret_sealed: Vec<u8>,
    /// The key-encryption key that sealed it; `None` if sealed before that
    /// was recorded.
    pub kek_id: Option<Vec<u8>>,
    /// False while the enrollment waits for its first code.
    pub confirmed: bool,
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn totp_of(pool: &PgPool, user_id: Uuid) -> sqlx::Result<Option<TotpRow>> {
    sqlx::query_as!(
        TotpRow,
        r#"SELECT secret_sealed, kek_id, confirmed_at IS NOT NULL AS "confirmed!"
           FROM user_totp WHERE user_id = $1"#,
        user_id,
    )
    .fetch_optional(pool)
    .await
}

/// Starts (or restarts) an enrollment. False when TOTP is already on.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn begin_enrollment(
    pool: &PgPool,
    user_id: Uuid,
    sealed: &[u8],
    kek_id: &[u8],
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let written = sqlx::query!(
        "INSERT INTO user_totp (user_id, secret_sealed, kek_id, created_at) VALUES ($1, $2, $4, $3)
         ON CONFLICT (user_id) DO UPDATE SET secret_sealed = $2, kek_id = $4, created_at = $3, last_step = NULL
         WHERE user_totp.confirmed_at IS NULL",
        user_id,
        sealed,
        now,
        kek_id,
    )
    .execute(pool)
    .await?;
    Ok(written.rows_affected() == 1)
}

/// Turns a pending enrollment on, its first code's step used: the
/// enrollment whose secret the code was checked against (`checked`), not
/// one that replaced it meanwhile. False when there is no such pending
/// enrollment (another request replaced or confirmed it).
pub async fn confirm(
    conn: &mut PgConnection,
    user_id: Uuid,
    checked: &[u8],
    step: i64,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "UPDATE user_totp SET confirmed_at = $3, last_step = $2
         WHERE user_id = $1 AND confirmed_at IS NULL AND secret_sealed = $4",
        user_id,
        step,
        now,
        checked,
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Spends time step `step` of the user's (confirmed) TOTP: true only if no
/// code of this or a later step was accepted before, on any instance.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn use_step(pool: &PgPool, user_id: Uuid, step: i64) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "UPDATE user_totp SET last_step = $2
         WHERE user_id = $1 AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < $2)",
        user_id,
        step,
    )
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Replaces the user's recovery codes with these (the old ones void).
pub async fn replace_recovery_codes(
    conn: &mut PgConnection,
    user_id: Uuid,
    hashes: &[TokenHash],
) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
        .execute(&mut *conn)
        .await?;
    let hashes: Vec<Vec<u8>> = hashes.iter().map(|h| h.as_bytes().to_vec()).collect();
    sqlx::query!(
        "INSERT INTO recovery_codes (user_id, code_hash) SELECT $1, unnest($2::bytea[])",
        user_id,
        &hashes,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Spends one recovery code: true only the first time, on any instance.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn use_recovery_code(
    pool: &PgPool,
    user_id: Uuid,
    hash: &TokenHash,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "UPDATE recovery_codes SET used_at = $3
         WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL
           AND EXISTS (SELECT 1 FROM user_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL)",
        user_id,
        hash.as_bytes(),
        now,
    )
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Turns the second factor off: the secret and every recovery code go.
/// False when it was not on (nor pending).
pub async fn remove(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query!("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
        .execute(&mut *conn)
        .await?;
    let removed = sqlx::query!("DELETE FROM user_totp WHERE user_id = $1", user_id)
        .execute(conn)
        .await?;
    Ok(removed.rows_affected() == 1)
}

/// When the login of this session took place (its start), while the
/// session is live; `None` otherwise.
pub async fn login_time(pool: &PgPool, session_id: Uuid) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "SELECT created_at FROM sessions WHERE id = $1 AND revoked_at IS NULL",
        session_id,
    )
    .fetch_optional(pool)
    .await
}
