//! The cursor rules of `GET /auth/revocations` and its stream: which
//! cursors are this issuer's, where a page ends, and where a stream may
//! resume.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::Denylist;
use crate::error::Error;
use crate::store::revocations::{self, RevocationRow};

/// One page of live entries after a cursor.
pub struct Page {
    pub rows: Vec<RevocationRow>,
    /// Pass as `since` next time.
    pub next_cursor: i64,
    /// The page is full: more entries may be waiting.
    pub has_more: bool,
}

/// Live entries after `since`, at most `limit`.
pub async fn page(
    pool: &PgPool,
    since: i64,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Page, Error> {
    refuse_cursor_ahead(pool, since, "since").await?;
    // Read before the rows: everything pruned up to it was committed before
    // they were read.
    let pruned = revocations::pruned_seq(pool).await?;
    let rows = revocations::live_since(pool, since, now, limit).await?;
    let has_more = rows.len() as i64 == limit;
    let mut next_cursor = rows.last().map(|r| r.seq).unwrap_or(since);
    if !has_more {
        // Every live entry after `since` is in this page, and nothing at or
        // below the horizon can still arrive (entries are written in `seq`
        // order), so the cursor moves at least to the horizon: the stream
        // accepts it, however long ago the last entry was pruned.
        next_cursor = next_cursor.max(pruned);
    }
    Ok(Page {
        rows,
        next_cursor,
        has_more,
    })
}

/// Whether a stream may start after `since` (named `name` in errors) on
/// this instance.
pub async fn stream_may_start(
    pool: &PgPool,
    denylist: &Denylist,
    since: i64,
    name: &str,
) -> Result<(), Error> {
    // Entries reach a stream through this instance's denylist: one that
    // cannot be confirmed current would keep its follower falsely fresh.
    if !denylist.is_current() {
        return Err(Error::TemporarilyUnavailable);
    }
    // Any cursor the feed takes: the entries pruned after an old one had
    // expired, so they deny nothing, and a reload from 0 would not bring
    // them back either (an old cursor used to be refused with 410, which
    // anyone could provoke by revoking a token just before it expired,
    // sending every follower to reload the whole feed).
    refuse_cursor_ahead(pool, since, name).await
}

/// A cursor from another database, or mistyped, would otherwise be echoed
/// back and silently skip every revocation until seq caught up.
async fn refuse_cursor_ahead(pool: &PgPool, since: i64, name: &str) -> Result<(), Error> {
    if since > revocations::last_seq(pool).await? {
        return Err(Error::invalid_request(format!(
            "{name} is ahead of the newest revocation: this cursor is not from this issuer's feed; start over with since=0"
        )));
    }
    Ok(())
}
