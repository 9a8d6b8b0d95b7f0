//! One subscriber of `GET /auth/revocations/stream`: every live entry after
//! its cursor, then each new one as this instance's denylist applies it.
//!
//! The denylist already hears of every revocation on any instance within
//! milliseconds (LISTEN/NOTIFY, with catch-up by `seq`), so the stream is
//! fed from there rather than from a LISTEN connection per subscriber.
//! Order of work: subscribe to the denylist's events, then read the table
//! after the cursor; an entry committed in between is in the read or among
//! the events, and events at or below the cursor are skipped, so there is
//! neither a gap nor a repeat. A subscriber that falls behind the event
//! buffer re-reads the table from its cursor the same way.
//!
//! A stream vouches only for what its instance knows: while the denylist
//! is unconfirmed (the listener cut off from Postgres) none starts, and an
//! open one ends, so its follower reconnects elsewhere or goes stale.
//!
//! Memory per subscriber is bounded: one page of the table at a time, a
//! small channel to the HTTP body, and a reader that keeps that channel
//! full for too long is dropped (it reconnects with `Last-Event-ID`).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::Denylist;
use super::slots::Slot;
use crate::clock::Clock;
use crate::domain::AccessClaims;
use crate::store::revocations::{self, RevocationRow};
use crate::telemetry::metrics::REVOCATION_STREAMS;

/// Entries read from the table at once (~150 bytes each as events).
const PAGE: i64 = 250;

/// Messages queued for the HTTP body; each is at most one page of entries.
/// One: with the message being written, a reader that stops reading holds
/// about two pages (~75 KiB), not more.
const BUFFER: usize = 1;

/// What the HTTP layer writes to the stream.
#[derive(Debug)]
pub enum Message {
    /// Entries in `seq` order.
    Entries(Vec<Arc<RevocationRow>>),
    /// Nothing new; the connection is alive.
    KeepAlive,
}

/// Why a stream ended, for the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ReaderGone,
    SlowReader,
    TokenExpired,
    TokenRevoked,
    ShuttingDown,
    DatabaseFailed,
    /// The denylist lost its confirmation (see `Denylist::is_current`).
    Stale,
}

/// How often a stream checks that its instance's denylist is still
/// confirmed: a stream ends within this long of the list going stale.
const STALE_CHECK: Duration = Duration::from_millis(500);

pub struct Subscription {
    pub pool: PgPool,
    pub denylist: Arc<Denylist>,
    /// The stream also ends when the holder's client is disabled.
    pub clients: Arc<crate::clients::ClientCache>,
    pub clock: Clock,
    /// The subscriber's bearer token: the stream ends when it expires or
    /// is revoked, so no token keeps a stream open beyond its life.
    pub holder: AccessClaims,
    /// Entries after this `seq` are sent.
    pub since: i64,
    pub keepalive: Duration,
    /// How long one read of the table may take (`database.request_timeout`).
    pub deadline: Duration,
    pub shutdown: watch::Receiver<bool>,
    /// Held for the life of the stream (`revocation.max_subscribers`).
    pub slot: Slot,
    /// The reader's connection: the stream (and its slot) ends as soon as
    /// the reader hangs up, not at the next write.
    pub hangup: Option<tokio::net::TcpStream>,
}

/// Starts following; the stream ends when the receiver is dropped.
pub fn start(subscription: Subscription) -> mpsc::Receiver<Message> {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        metrics::gauge!(REVOCATION_STREAMS).increment(1.0);
        let end = subscription.run(&tx).await;
        metrics::gauge!(REVOCATION_STREAMS).decrement(1.0);
        tracing::debug!(?end, "revocation stream ended");
    });
    rx
}

impl Subscription {
    async fn run(mut self, tx: &mpsc::Sender<Message>) -> End {
        if *self.shutdown.borrow_and_update() {
            return End::ShuttingDown;
        }
        let hangup = self.hangup.take();
        let hung_up = async move {
            match hangup {
                Some(socket) => closed(socket).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(hung_up);
        let mut events = self.denylist.subscribe();
        let mut cursor = self.since;
        if let Err(end) = self.backlog(tx, &mut cursor).await {
            return end;
        }
        let mut tick = tokio::time::interval_at(Instant::now() + self.keepalive, self.keepalive);
        let mut check = tokio::time::interval(STALE_CHECK);
        let expires = Instant::now() + self.lifetime_left();
        loop {
            let message = tokio::select! {
                _ = tx.closed() => return End::ReaderGone,
                _ = &mut hung_up => return End::ReaderGone,
                changed = self.shutdown.changed() => {
                    // An error means the service is gone: stop as well.
                    if changed.is_err() || *self.shutdown.borrow() {
                        return End::ShuttingDown;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(expires) => return End::TokenExpired,
                // An instance cut off from Postgres must not keep its
                // followers "fresh" with keep-alives while revocations made
                // elsewhere pass it by: ending the stream sends them to
                // another instance, or makes them stale (fail closed).
                _ = check.tick() => {
                    if !self.denylist.is_current() {
                        tracing::warn!("revocation stream ended: this instance's denylist is not confirmed current");
                        return End::Stale;
                    }
                    continue;
                }
                _ = tick.tick() => {
                    if let Err(end) = self.holder_still_valid() {
                        return end;
                    }
                    Message::KeepAlive
                }
                event = events.recv() => match event {
                    Ok(row) if row.seq > cursor => {
                        cursor = row.seq;
                        Message::Entries(vec![row])
                    }
                    // Sent already (read from the table first), but this
                    // instance has only now applied it: it may end the
                    // holder's own token (or key).
                    Ok(_) => {
                        if let Err(end) = self.holder_still_valid() {
                            return end;
                        }
                        continue;
                    }
                    Err(RecvError::Lagged(_)) => {
                        if let Err(end) = self.resync(tx, &mut cursor).await {
                            return end;
                        }
                        continue;
                    }
                    Err(RecvError::Closed) => return End::ShuttingDown,
                },
            };
            let entries = matches!(message, Message::Entries(_));
            if let Err(end) = self.send(tx, message).await {
                return end;
            }
            // The entry just sent may be the holder's own token.
            if entries && let Err(end) = self.holder_still_valid() {
                return end;
            }
        }
    }

    /// Sends every live entry after `cursor`, a page at a time.
    async fn backlog(&self, tx: &mpsc::Sender<Message>, cursor: &mut i64) -> Result<(), End> {
        loop {
            // Bounded: a frozen path to Postgres must end the stream, not
            // hold it open and silent.
            let read = revocations::live_since(&self.pool, *cursor, self.clock.now(), PAGE);
            let rows = match tokio::time::timeout(self.deadline, read).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "revocation stream could not read the table");
                    return Err(End::DatabaseFailed);
                }
                Err(_) => {
                    tracing::warn!("revocation stream: the database did not answer in time");
                    return Err(End::DatabaseFailed);
                }
            };
            let Some(last) = rows.last() else {
                return Ok(());
            };
            *cursor = last.seq;
            let full = rows.len() as i64 == PAGE;
            self.send(
                tx,
                Message::Entries(rows.into_iter().map(Arc::new).collect()),
            )
            .await?;
            if !full {
                return Ok(());
            }
        }
    }

    /// After missing events: re-read from the cursor. (Entries pruned
    /// meanwhile had expired: they deny nothing, and a reader that reloaded
    /// the feed would not get them either.)
    async fn resync(&self, tx: &mpsc::Sender<Message>, cursor: &mut i64) -> Result<(), End> {
        self.backlog(tx, cursor).await
    }

    /// A reader whose buffer stays full this long is dropped rather than
    /// buffered for; it resumes with `Last-Event-ID`.
    async fn send(&self, tx: &mpsc::Sender<Message>, message: Message) -> Result<(), End> {
        let patience = (self.keepalive * 2).max(Duration::from_secs(30));
        match tokio::time::timeout(patience, tx.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::ReaderGone),
            Err(_) => Err(End::SlowReader),
        }
    }

    fn holder_still_valid(&self) -> Result<(), End> {
        if self.holder.exp <= self.clock.now().timestamp() {
            return Err(End::TokenExpired);
        }
        // A mirror that cannot be confirmed does not end the stream: the
        // entries it sends come from the denylist, and those are current.
        let disabled = self.clients.is_disabled_now(&self.holder.client_id) == Some(true);
        if self.denylist.is_revoked(&self.holder) || disabled {
            return Err(End::TokenRevoked);
        }
        Ok(())
    }

    fn lifetime_left(&self) -> Duration {
        let left = self.holder.exp.saturating_sub(self.clock.now().timestamp());
        Duration::from_secs(u64::try_from(left).unwrap_or(0))
    }
}

/// Completes when the peer has closed the connection (or reset it).
async fn closed(socket: tokio::net::TcpStream) {
    let mut byte = [0u8; 1];
    loop {
        match socket.peek(&mut byte).await {
            Ok(0) | Err(_) => return,
            // A reader of an event stream sends nothing; one that does is
            // not waited on in a tight loop.
            Ok(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}
