//! Everything sealed under the key-encryption keys, across tables: what
//! startup checks and reports, the deployment secrets kept sealed, and
//! `tessera keys rewrap`, which re-seals it all under the current key.
//!
//! Replacing the key-encryption key (docs/operations.md): every instance
//! gets the new key as `keys.encryption_key` and the old one in
//! `keys.previous_encryption_keys`; `rewrap` moves every row to the new key;
//! then the old key is removed. Startup refuses to run with a row that no
//! configured key can open, naming the fix, instead of failing later on
//! the first request that needs it.

use std::collections::BTreeMap;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::kek::{KekId, KeyEncryptionKeys};
use crate::domain::RecoveryKey;
use crate::error::Error;
use crate::store::sealed::{self as store, Replacement, SealedTable};

/// The purpose of the deployment secret recovery codes are stored under.
pub const RECOVERY_CODES: &str = "recovery-codes";

/// Rows named in an error, at most; the rest are counted.
const NAMED_ROWS: usize = 10;

/// The AAD a user's TOTP secret is sealed with: it opens for that user only.
pub fn totp_label(user_id: Uuid) -> String {
    format!("totp:{user_id}")
}

/// The AAD a deployment secret is sealed with.
pub fn secret_label(purpose: &str) -> String {
    format!("secret:{purpose}")
}

/// The AAD of a row's sealed value (the kid for a signing key).
fn label(table: SealedTable, key: &str) -> String {
    match table {
        SealedTable::SigningKeys => key.to_owned(),
        SealedTable::UserTotp => format!("totp:{key}"),
        SealedTable::SealedSecrets => secret_label(key),
    }
}

/// How errors name a row (never its value).
fn describe(table: SealedTable, key: &str) -> String {
    match table {
        SealedTable::SigningKeys => format!("signing key {key}"),
        SealedTable::UserTotp => format!("the TOTP secret of user {key}"),
        SealedTable::SealedSecrets => format!("the deployment secret {key}"),
    }
}

/// "1 row", "2 rows".
fn rows(n: impl Into<i64>) -> String {
    match n.into() {
        1 => "1 row".to_owned(),
        n => format!("{n} rows"),
    }
}

/// A row no configured key opens.
struct Unopened {
    table: SealedTable,
    key: String,
    /// The key that sealed it, if recorded.
    kek_id: Option<KekId>,
}

/// "N rows ...: a; b; c and 2 more" with what each is and why.
fn list(rows: &[Unopened]) -> String {
    let mut named: Vec<String> = rows
        .iter()
        .take(NAMED_ROWS)
        .map(|row| {
            let why = match row.kek_id {
                Some(id) => format!("sealed under key-encryption key {id}"),
                None => "stored without a key identifier".to_owned(),
            };
            format!("{} ({why})", describe(row.table, &row.key))
        })
        .collect();
    if rows.len() > NAMED_ROWS {
        named.push(format!("and {} more", rows.len() - NAMED_ROWS));
    }
    named.join("; ")
}

/// Opens a stored row with the configured key that sealed it: by its
/// identifier, or for a row stored without one, by trying each key.
fn open(
    keks: &KeyEncryptionKeys,
    table: SealedTable,
    row: &store::SealedRow,
) -> Result<(KekId, Vec<u8>), Unopened> {
    let label = label(table, &row.key);
    let recorded = row.kek_id.as_deref().and_then(KekId::from_stored);
    let opened = match &row.kek_id {
        Some(_) => recorded
            .and_then(|id| keks.find(id))
            .and_then(|key| key.open(&label, &row.sealed).map(|plain| (key.id(), plain))),
        None => keks.identify(&label, &row.sealed),
    };
    opened.ok_or(Unopened {
        table,
        key: row.key.clone(),
        kek_id: recorded,
    })
}

/// Rows per key-encryption key (`None`: stored without an identifier), table by table.
struct Census(BTreeMap<Option<KekId>, BTreeMap<String, i64>>);

impl Census {
    async fn read(conn: &mut PgConnection) -> anyhow::Result<Census> {
        let mut census: BTreeMap<Option<KekId>, BTreeMap<String, i64>> = BTreeMap::new();
        for count in store::census(conn).await? {
            let id = match count.kek_id.as_deref() {
                Some(stored) => Some(KekId::from_stored(stored).ok_or_else(|| {
                    anyhow!("a row of {} has a malformed key identifier", count.table)
                })?),
                None => None,
            };
            *census
                .entry(id)
                .or_default()
                .entry(count.table)
                .or_default() += count.rows;
        }
        Ok(Census(census))
    }

    fn tables(counts: &BTreeMap<String, i64>) -> String {
        let parts: Vec<String> = SealedTable::ALL
            .iter()
            .map(|t| {
                format!(
                    "{}: {}",
                    t.name(),
                    counts.get(t.name()).copied().unwrap_or(0)
                )
            })
            .collect();
        parts.join(", ")
    }

    /// Refuses when a row names a key that is not configured.
    fn refuse_unconfigured(&self, keks: &KeyEncryptionKeys) -> anyhow::Result<()> {
        let missing: Vec<String> = self
            .0
            .iter()
            .filter_map(|(id, counts)| {
                let id = (*id)?;
                keks.find(id).is_none().then(|| {
                    let n: i64 = counts.values().sum();
                    format!(
                        "{} ({}) sealed under key-encryption key {id}",
                        rows(n),
                        Census::tables(counts)
                    )
                })
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(anyhow!(
            "{}, which is not configured: add that key to keys.previous_encryption_keys (TESSERA__KEYS__PREVIOUS_ENCRYPTION_KEYS), then run `tessera keys rewrap` to re-seal them under keys.encryption_key",
            missing.join("; ")
        ))
    }

    /// One line per configured key: what it seals, table by table.
    fn log(&self, keks: &KeyEncryptionKeys) {
        let none = BTreeMap::new();
        for key in keks.all() {
            let id = key.id();
            let role = keks.role(id).unwrap_or_default();
            let counts = self.0.get(&Some(id)).unwrap_or(&none);
            let n: i64 = counts.values().sum();
            let tables = Census::tables(counts);
            let sealed = rows(n);
            match (role.as_str(), n) {
                ("current", _) => tracing::info!(
                    kek_id = %id, key = %role, rows = n,
                    "key-encryption key {id} (current) seals {sealed} ({tables})"
                ),
                (_, 0) => tracing::info!(
                    kek_id = %id, key = %role, rows = n,
                    "key-encryption key {id} ({role}) seals nothing: it can be removed from keys.previous_encryption_keys"
                ),
                _ => tracing::warn!(
                    kek_id = %id, key = %role, rows = n,
                    "key-encryption key {id} ({role}) still seals {sealed} ({tables}): run `tessera keys rewrap` to re-seal them under the current key before removing it"
                ),
            }
        }
        if let Some(counts) = self.0.get(&None) {
            let n: i64 = counts.values().sum();
            tracing::info!(
                rows = n,
                "{} ({}) stored without a key identifier meanwhile (by an earlier version): the next start records which key sealed them",
                rows(n),
                Census::tables(counts)
            );
        }
    }
}

/// At startup, before any key is loaded: refuses rows that no configured
/// key-encryption key opens (naming the fix), records the key of rows
/// stored before identifiers were, says what each key seals, and returns
/// the key recovery codes are stored under.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn check_at_startup(
    pool: &PgPool,
    keks: &KeyEncryptionKeys,
    now: DateTime<Utc>,
) -> anyhow::Result<RecoveryKey> {
    let mut conn = pool.acquire().await?;
    Census::read(&mut conn).await?.refuse_unconfigured(keks)?;

    // Rows of earlier versions: their key is found by trying each one.
    let mut unopened = Vec::new();
    let mut found = Vec::new();
    let mut legacy = None;
    for table in SealedTable::ALL {
        let mut replacements = Vec::new();
        for row in store::unidentified(&mut conn, table).await? {
            match open(keks, table, &row) {
                Ok((id, _)) => {
                    // Earlier versions had one key-encryption key: this one.
                    legacy.get_or_insert(id);
                    replacements.push(Replacement {
                        key: row.key,
                        new: row.sealed.clone(),
                        old: row.sealed,
                        kek_id: id.as_bytes().to_vec(),
                    });
                }
                Err(row) => unopened.push(row),
            }
        }
        found.push((table, replacements));
    }
    if !unopened.is_empty() {
        return Err(anyhow!(
            "{} stored without a key identifier open under no configured key-encryption key: {}. Add the key they were sealed with to keys.previous_encryption_keys (TESSERA__KEYS__PREVIOUS_ENCRYPTION_KEYS)",
            rows(unopened.len() as i64),
            list(&unopened)
        ));
    }
    // Before the identifiers are recorded: they are what tells an existing
    // deployment (whose codes are keyed by its key-encryption key) from a
    // new one.
    ensure_recovery_secret(&mut conn, keks, legacy, now).await?;
    let recovery = recovery_key(&mut conn, keks).await?;
    for (table, replacements) in found {
        let recorded = store::replace(&mut conn, table, &replacements).await?;
        if recorded > 0 {
            tracing::info!(
                table = table.name(),
                rows = recorded,
                "recorded which key-encryption key sealed rows stored before key identifiers were"
            );
        }
    }
    Census::read(&mut conn).await?.log(keks);
    Ok(recovery)
}

/// Stores the recovery-code key if the deployment has none yet: for a
/// deployment that existed before it was stored (`legacy`: the key that
/// sealed its rows stored without an identifier), the key earlier versions derived from
/// that key-encryption key, so that every code already handed out keeps
/// working; for a new one, 32 random bytes.
async fn ensure_recovery_secret(
    conn: &mut PgConnection,
    keks: &KeyEncryptionKeys,
    legacy: Option<KekId>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if store::secret(conn, RECOVERY_CODES).await?.is_some() {
        return Ok(());
    }
    let secret = match legacy.and_then(|id| keks.find(id)) {
        Some(key) => RecoveryKey::legacy_secret(key.secret()),
        None => {
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            bytes
        }
    };
    let sealed = keks.seal(&secret_label(RECOVERY_CODES), &secret)?;
    store::insert_secret(
        conn,
        RECOVERY_CODES,
        &sealed.bytes,
        sealed.kek_id.as_bytes(),
        now,
    )
    .await?;
    Ok(())
}

/// The stored recovery-code key, opened.
async fn recovery_key(
    conn: &mut PgConnection,
    keks: &KeyEncryptionKeys,
) -> anyhow::Result<RecoveryKey> {
    let row = store::secret(conn, RECOVERY_CODES)
        .await?
        .ok_or_else(|| anyhow!("the recovery-code key is not stored"))?;
    let secret = keks.open(
        &secret_label(RECOVERY_CODES),
        &row.sealed,
        row.kek_id.as_deref(),
    )?;
    Ok(RecoveryKey::from_secret(&secret))
}

/// What `rewrap` did.
#[derive(Debug, Clone)]
pub struct Rewrapped {
    /// The current key, which now seals every row.
    pub kek_id: KekId,
    /// Rows re-sealed, per table (every table, zero included).
    pub resealed: Vec<(SealedTable, u64)>,
}

impl Rewrapped {
    pub fn total(&self) -> u64 {
        self.resealed.iter().map(|(_, n)| n).sum()
    }
}

/// Re-seals every row not sealed under the current key-encryption key, in
/// the caller's transaction (rows are locked until it ends). Changes
/// nothing and refuses when a row opens under no configured key. Running
/// it again re-seals nothing.
pub async fn rewrap(
    conn: &mut PgConnection,
    keks: &KeyEncryptionKeys,
    now: DateTime<Utc>,
) -> Result<Rewrapped, Error> {
    let current = keks.current();
    let mut plan = Vec::new();
    let mut unopened = Vec::new();
    let mut legacy = None;
    for table in SealedTable::ALL {
        let mut replacements = Vec::new();
        for row in store::not_under(conn, table, current.id().as_bytes()).await? {
            match open(keks, table, &row) {
                Ok((id, plain)) => {
                    if row.kek_id.is_none() {
                        legacy.get_or_insert(id);
                    }
                    replacements.push(Replacement {
                        new: current.seal(&label(table, &row.key), &plain)?,
                        key: row.key,
                        old: row.sealed,
                        kek_id: current.id().as_bytes().to_vec(),
                    });
                }
                Err(row) => unopened.push(row),
            }
        }
        plan.push((table, replacements));
    }
    if !unopened.is_empty() {
        return Err(Error::invalid_request(format!(
            "nothing was re-sealed: {} open under no configured key-encryption key: {}. Add the keys they were sealed with to keys.previous_encryption_keys (TESSERA__KEYS__PREVIOUS_ENCRYPTION_KEYS) and run it again",
            rows(unopened.len() as i64),
            list(&unopened)
        )));
    }
    // A deployment whose instances have not started on this version yet
    // keeps its recovery codes: the key is stored (under the current key)
    // while the signing keys still tell which key-encryption key it was
    // derived from.
    ensure_recovery_secret(conn, keks, legacy, now).await?;
    let mut resealed = Vec::new();
    for (table, replacements) in plan {
        let done = store::replace(conn, table, &replacements).await?;
        if done != replacements.len() as u64 {
            // The rows are locked: this is a bug, not a race.
            return Err(Error::Internal(anyhow!(
                "re-sealing {}: {done} of {} rows replaced",
                table.name(),
                replacements.len()
            )));
        }
        resealed.push((table, done));
    }
    Ok(Rewrapped {
        kek_id: current.id(),
        resealed,
    })
}
