//! Every value sealed under a key-encryption key, across the tables that
//! hold one: what startup counts and `tessera keys rewrap` re-seals (see
//! `keys::sealed`). A table that starts holding sealed values belongs here.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// The tables that hold sealed values, each with a `kek_id` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SealedTable {
    /// `private_key_encrypted`, by `kid`.
    SigningKeys,
    /// `secret_sealed`, by `user_id`.
    UserTotp,
    /// `sealed`, by `purpose`.
    SealedSecrets,
}

impl SealedTable {
    pub const ALL: [SealedTable; 3] = [
        SealedTable::SigningKeys,
        SealedTable::UserTotp,
        SealedTable::SealedSecrets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SealedTable::SigningKeys => "signing_keys",
            SealedTable::UserTotp => "user_totp",
            SealedTable::SealedSecrets => "sealed_secrets",
        }
    }
}

/// One sealed value: its row's key (kid, user id or purpose), the value,
/// and the key-encryption key that sealed it (`None`: not recorded).
#[derive(Debug, Clone)]
pub struct SealedRow {
    pub key: String,
    pub sealed: Vec<u8>,
    pub kek_id: Option<Vec<u8>>,
}

/// The rows of `table` not sealed under `kek_id`, locked until the
/// transaction ends (in key order, so two rewraps cannot deadlock).
#[tracing::instrument(level = "debug", skip_all, fields(table = table.name()))]
pub async fn not_under(
    conn: &mut PgConnection,
    table: SealedTable,
    kek_id: &[u8],
) -> sqlx::Result<Vec<SealedRow>> {
    match table {
        SealedTable::SigningKeys => {
            sqlx::query_as!(
                SealedRow,
                r#"SELECT kid AS "key!", private_key_encrypted AS sealed, kek_id
                   FROM signing_keys WHERE kek_id IS DISTINCT FROM $1 ORDER BY kid FOR UPDATE"#,
                kek_id,
            )
            .fetch_all(conn)
            .await
        }
        SealedTable::UserTotp => {
            sqlx::query_as!(
                SealedRow,
                r#"SELECT user_id::text AS "key!", secret_sealed AS sealed, kek_id
                   FROM user_totp WHERE kek_id IS DISTINCT FROM $1 ORDER BY user_id FOR UPDATE"#,
                kek_id,
            )
            .fetch_all(conn)
            .await
        }
        SealedTable::SealedSecrets => {
            sqlx::query_as!(
                SealedRow,
                r#"SELECT purpose AS "key!", sealed, kek_id AS "kek_id?"
                   FROM sealed_secrets WHERE kek_id <> $1 ORDER BY purpose FOR UPDATE"#,
                kek_id,
            )
            .fetch_all(conn)
            .await
        }
    }
}

/// The rows of `table` stored before key identifiers were (every
/// `sealed_secrets` row has one).
#[tracing::instrument(level = "debug", skip_all, fields(table = table.name()))]
pub async fn unidentified(
    conn: &mut PgConnection,
    table: SealedTable,
) -> sqlx::Result<Vec<SealedRow>> {
    match table {
        SealedTable::SigningKeys => {
            sqlx::query_as!(
                SealedRow,
                r#"SELECT kid AS "key!", private_key_encrypted AS sealed, kek_id
                   FROM signing_keys WHERE kek_id IS NULL ORDER BY activates_at, kid"#,
            )
            .fetch_all(conn)
            .await
        }
        SealedTable::UserTotp => {
            sqlx::query_as!(
                SealedRow,
                r#"SELECT user_id::text AS "key!", secret_sealed AS sealed, kek_id
                   FROM user_totp WHERE kek_id IS NULL ORDER BY user_id"#,
            )
            .fetch_all(conn)
            .await
        }
        SealedTable::SealedSecrets => Ok(Vec::new()),
    }
}

/// A row's sealed value replaced: `new` under key `kek_id`, if it still
/// holds `old` (recording the key of a value stored without one is a
/// replacement by itself).
#[derive(Debug, Clone)]
pub struct Replacement {
    pub key: String,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
    pub kek_id: Vec<u8>,
}

/// Applies `replacements` to `table` in one statement; returns how many
/// rows still held their `old` value and were replaced.
#[tracing::instrument(level = "debug", skip_all, fields(table = table.name(), rows = replacements.len()))]
pub async fn replace(
    conn: &mut PgConnection,
    table: SealedTable,
    replacements: &[Replacement],
) -> sqlx::Result<u64> {
    if replacements.is_empty() {
        return Ok(0);
    }
    let keys: Vec<String> = replacements.iter().map(|r| r.key.clone()).collect();
    let old: Vec<Vec<u8>> = replacements.iter().map(|r| r.old.clone()).collect();
    let new: Vec<Vec<u8>> = replacements.iter().map(|r| r.new.clone()).collect();
    let ids: Vec<Vec<u8>> = replacements.iter().map(|r| r.kek_id.clone()).collect();
    let done = match table {
        SealedTable::SigningKeys => {
            sqlx::query!(
                "UPDATE signing_keys s SET private_key_encrypted = v.new, kek_id = v.kek_id
                 FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bytea[]) AS v(key, old, new, kek_id)
                 WHERE s.kid = v.key AND s.private_key_encrypted = v.old",
                &keys,
                &old,
                &new,
                &ids,
            )
            .execute(conn)
            .await?
        }
        SealedTable::UserTotp => {
            sqlx::query!(
                "UPDATE user_totp t SET secret_sealed = v.new, kek_id = v.kek_id
                 FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bytea[]) AS v(key, old, new, kek_id)
                 WHERE t.user_id = v.key::uuid AND t.secret_sealed = v.old",
                &keys,
                &old,
                &new,
                &ids,
            )
            .execute(conn)
            .await?
        }
        SealedTable::SealedSecrets => {
            sqlx::query!(
                "UPDATE sealed_secrets s SET sealed = v.new, kek_id = v.kek_id
                 FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bytea[]) AS v(key, old, new, kek_id)
                 WHERE s.purpose = v.key AND s.sealed = v.old",
                &keys,
                &old,
                &new,
                &ids,
            )
            .execute(conn)
            .await?
        }
    };
    Ok(done.rows_affected())
}

/// How many rows of one table one key-encryption key seals.
#[derive(Debug, Clone)]
pub struct Count {
    pub table: String,
    pub kek_id: Option<Vec<u8>>,
    pub rows: i64,
}

/// Rows per table and key-encryption key, without reading a sealed value.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn census(conn: &mut PgConnection) -> sqlx::Result<Vec<Count>> {
    sqlx::query_as!(
        Count,
        r#"SELECT 'signing_keys' AS "table!", kek_id AS "kek_id?", count(*) AS "rows!"
             FROM signing_keys GROUP BY kek_id
           UNION ALL
           SELECT 'user_totp', kek_id, count(*) FROM user_totp GROUP BY kek_id
           UNION ALL
           SELECT 'sealed_secrets', kek_id, count(*) FROM sealed_secrets GROUP BY kek_id"#,
    )
    .fetch_all(conn)
    .await
}

/// The deployment secret kept for `purpose`, sealed.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn secret(conn: &mut PgConnection, purpose: &str) -> sqlx::Result<Option<SealedRow>> {
    sqlx::query_as!(
        SealedRow,
        r#"SELECT purpose AS "key!", sealed, kek_id AS "kek_id?"
           FROM sealed_secrets WHERE purpose = $1"#,
        purpose,
    )
    .fetch_optional(conn)
    .await
}

/// Stores the secret for `purpose` unless one is stored already (instances
/// starting together each propose one; the first stays).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert_secret(
    conn: &mut PgConnection,
    purpose: &str,
    sealed: &[u8],
    kek_id: &[u8],
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO sealed_secrets (purpose, sealed, kek_id, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (purpose) DO NOTHING",
        purpose,
        sealed,
        kek_id,
        now,
    )
    .execute(conn)
    .await?;
    Ok(())
}
