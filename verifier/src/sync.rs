//! Background work: discovery, keeping the JWK Set fresh, and following
//! the revocation list (the paged feed once, then the stream; polling the
//! feed while the stream is unavailable).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::denylist::Entry;
use crate::inner::Inner;
use crate::issuer::{self, Endpoints, FeedError};
use crate::sse;

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long to poll before trying the stream again when the issuer has
/// none (404) or says nothing about when to retry.
const NO_STREAM_RETRY: Duration = Duration::from_secs(60);
/// A stream that ends sooner than this counts as a failed attempt, so a
/// peer that keeps closing at once is not reconnected in a tight loop.
const HEALTHY_STREAM: Duration = Duration::from_secs(2);
/// Longest SSE line accepted (an event is ~150 bytes).
const MAX_LINE: usize = 64 * 1024;

struct Backoff(Duration);

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }

    fn reset(&mut self) {
        self.0 = MIN_BACKOFF;
    }
}

/// Discovery, retried until the issuer answers.
async fn endpoints(inner: &Inner) -> Endpoints {
    let mut backoff = Backoff(MIN_BACKOFF);
    loop {
        let found = inner
            .endpoints
            .get_or_try_init(|| inner.issuer.discover())
            .await;
        match found {
            Ok(endpoints) => return endpoints.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "issuer discovery failed; retrying");
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
}

/// Keeps the JWK Set no older than its max-age (kid misses fetch sooner).
pub(crate) async fn refresh_keys(inner: Arc<Inner>) {
    let endpoints = endpoints(&inner).await;
    let mut backoff = Backoff(MIN_BACKOFF);
    loop {
        let fetched = inner.refetch_keys(&endpoints, None, true).await;
        let wait = match fetched {
            Ok(max_age) => {
                backoff.reset();
                max_age.unwrap_or(inner.config.refetch_interval)
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching the JWK Set failed; keeping the cached keys");
                backoff.next()
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Drops entries that deny nothing any more, once a minute.
pub(crate) async fn prune(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        inner.prune();
    }
}

/// How a stream connection ended.
enum Followed {
    /// It ran, then closed (the issuer restarted, the token expired).
    Ended { lasted: Duration },
    /// The cursor is not valid any more: reload from 0.
    Reload,
    /// No stream now; poll, and try again after this long (if said).
    Unavailable(Option<Duration>),
}

/// Follows the revocation list for as long as the verifier lives.
pub(crate) async fn follow_revocations(inner: Arc<Inner>) {
    let endpoints = endpoints(&inner).await;
    let mut cursor = 0;
    let mut loaded = false;
    let mut backoff = Backoff(MIN_BACKOFF);
    loop {
        if !loaded {
            match load(&inner, &endpoints, &mut cursor).await {
                // The backoff is not reset here: a stream that refuses the
                // fresh cursor again (400, 410, reset) must not turn into a
                // tight reload loop. Only a stream that ran resets it.
                Ok(()) => {
                    loaded = true;
                    inner.denylist.mark_loaded();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "loading the revocation feed failed; retrying");
                    tokio::time::sleep(backoff.next()).await;
                    continue;
                }
            }
        }
        let retry = match follow_stream(&inner, &endpoints, &mut cursor).await {
            Followed::Ended { lasted } if lasted >= HEALTHY_STREAM => {
                backoff.reset();
                continue;
            }
            Followed::Ended { .. } => backoff.next(),
            Followed::Reload => {
                (cursor, loaded) = (0, false);
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
            Followed::Unavailable(after) => after.unwrap_or_else(|| backoff.next()),
        };
        // Poll the feed until it is time to try the stream again.
        let until = Instant::now() + retry;
        loop {
            match poll(&inner, &endpoints, &mut cursor).await {
                Ok(()) => {}
                Err(FeedError::Reload) => {
                    (cursor, loaded) = (0, false);
                    tokio::time::sleep(backoff.next()).await;
                    break;
                }
                Err(FeedError::Failed(e)) => {
                    tracing::warn!(error = %e, "polling the revocation feed failed")
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(inner.config.poll_interval)).await;
        }
    }
}

/// Reads the whole feed from `cursor` (0 at first).
async fn load(inner: &Inner, endpoints: &Endpoints, cursor: &mut i64) -> Result<(), crate::Error> {
    loop {
        match poll(inner, endpoints, cursor).await {
            Ok(()) => return Ok(()),
            Err(FeedError::Reload) if *cursor != 0 => *cursor = 0,
            Err(FeedError::Reload) => {
                return Err(crate::Error::Issuer("the feed refused cursor 0".into()));
            }
            Err(FeedError::Failed(e)) => return Err(e),
        }
    }
}

/// Reads every page after `cursor`, applying each.
async fn poll(inner: &Inner, endpoints: &Endpoints, cursor: &mut i64) -> Result<(), FeedError> {
    loop {
        let page = inner.issuer.feed_page(endpoints, *cursor).await?;
        inner.stats.feed_pages.fetch_add(1, Ordering::Relaxed);
        inner.apply(page.entries);
        *cursor = page.next_cursor;
        inner.denylist.heard_from_issuer();
        if !page.has_more {
            return Ok(());
        }
    }
}

async fn follow_stream(inner: &Inner, endpoints: &Endpoints, cursor: &mut i64) -> Followed {
    let started = Instant::now();
    let mut response = match inner.issuer.open_stream(endpoints, *cursor).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the revocation stream; polling");
            return Followed::Unavailable(None);
        }
    };
    match response.status() {
        StatusCode::OK => {}
        StatusCode::BAD_REQUEST | StatusCode::GONE => return Followed::Reload,
        StatusCode::UNAUTHORIZED => {
            inner.issuer.forget_bearer().await;
            return Followed::Unavailable(Some(Duration::ZERO));
        }
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
            tracing::info!("the issuer has no revocation stream; polling the feed");
            return Followed::Unavailable(Some(NO_STREAM_RETRY));
        }
        status => {
            tracing::warn!(%status, "the revocation stream is unavailable; polling");
            return Followed::Unavailable(issuer::retry_after(&response));
        }
    }
    inner.stats.stream_connects.fetch_add(1, Ordering::Relaxed);
    inner.denylist.heard_from_issuer();
    let mut parser = sse::Parser::new(MAX_LINE);
    loop {
        let chunk = tokio::time::timeout(inner.config.stream_idle_timeout, response.chunk()).await;
        let bytes = match chunk {
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) | Ok(Err(_)) => {
                return Followed::Ended {
                    lasted: started.elapsed(),
                };
            }
            Err(_) => {
                tracing::warn!("the revocation stream went silent; reconnecting");
                return Followed::Ended {
                    lasted: Duration::ZERO,
                };
            }
        };
        // Any bytes, keep-alives included, prove the issuer is there.
        inner.denylist.heard_from_issuer();
        let Ok(events) = parser.push(&bytes) else {
            tracing::warn!("the revocation stream sent an over-long line; reconnecting");
            return Followed::Ended {
                lasted: Duration::ZERO,
            };
        };
        for event in events {
            match event.event.as_str() {
                "revocation" => {
                    match serde_json::from_str::<Entry>(&event.data) {
                        Ok(entry) => inner.apply([entry]),
                        Err(_) => tracing::warn!("ignoring a revocation event of an unknown shape"),
                    }
                    if let Some(seq) = event.id.and_then(|id| id.parse().ok()) {
                        *cursor = seq;
                    }
                }
                "reset" => return Followed::Reload,
                _ => {}
            }
        }
    }
}
