//! The JWKS as bytes, rendered once per key set: every verifier fetches it,
//! and what it lists changes only when a key is added or stops being
//! published.

use std::sync::{Arc, RwLock};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// A rendered document and its strong validator.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub body: Bytes,
    /// A quoted strong ETag: the base64url SHA-256 of `body`.
    pub etag: String,
}

impl Rendered {
    pub fn new(body: Vec<u8>) -> Rendered {
        let hash = digest(&SHA256, &body);
        let etag = format!(
            "\"{}\"",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.as_ref())
        );
        Rendered {
            body: Bytes::from(body),
            etag,
        }
    }

    /// Whether an `If-None-Match` value names this version (RFC 9110
    /// §13.1.2: a list of ETags, or `*`; weak comparison).
    pub fn matches(&self, if_none_match: &str) -> bool {
        if_none_match.trim() == "*"
            || if_none_match
                .split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == self.etag)
    }
}

/// The last rendering, with the key-ring snapshot it was rendered from and
/// the instant until which it holds (the next key-schedule boundary): a
/// request costs one pointer comparison until the key set changes.
pub struct Cache<S> {
    last: RwLock<Option<Entry<S>>>,
}

struct Entry<S> {
    source: Arc<S>,
    until: Option<DateTime<Utc>>,
    rendered: Arc<Rendered>,
}

impl<S> Default for Cache<S> {
    fn default() -> Self {
        Cache {
            last: RwLock::new(None),
        }
    }
}

impl<S> Cache<S> {
    /// The rendering of `source` at `now`; `render` returns the bytes and
    /// when they next may change (`None`: never, for this source).
    pub fn get(
        &self,
        source: &Arc<S>,
        now: DateTime<Utc>,
        render: impl FnOnce() -> (Vec<u8>, Option<DateTime<Utc>>),
    ) -> Arc<Rendered> {
        if let Some(entry) = &*self.last.read().unwrap_or_else(|p| p.into_inner())
            && Arc::ptr_eq(&entry.source, source)
            && entry.until.is_none_or(|until| now < until)
        {
            return entry.rendered.clone();
        }
        let (body, until) = render();
        let rendered = Arc::new(Rendered::new(body));
        *self.last.write().unwrap_or_else(|p| p.into_inner()) = Some(Entry {
            source: source.clone(),
            until,
            rendered: rendered.clone(),
        });
        rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_once_per_source_until_its_next_change() {
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap();
        let until = DateTime::from_timestamp(2_000, 0).unwrap();
        let cache = Cache::default();
        let source = Arc::new(1);
        let mut renders = 0;
        let mut render = |body: &'static [u8]| {
            renders += 1;
            (body.to_vec(), Some(until))
        };
        let first = cache.get(&source, t0, || render(b"{\"keys\":[]}"));
        let again = cache.get(&source, t0, || render(b"other"));
        assert!(Arc::ptr_eq(&first, &again));
        assert!(first.matches(&first.etag));
        assert!(first.matches(&format!("\"x\", W/{}", first.etag)));
        assert!(first.matches("*"));
        assert!(!first.matches("\"x\""));
        // The schedule moved on: rendered again.
        let later = cache.get(&source, until, || render(b"{\"keys\":[1]}"));
        assert_ne!(later.etag, first.etag);
        // A new snapshot (a reload) with the same content: same ETag.
        let reloaded = cache.get(&Arc::new(1), until, || render(b"{\"keys\":[1]}"));
        assert_eq!(reloaded.etag, later.etag);
        assert_eq!(renders, 3);
    }
}
