//! The JWKS as bytes, rendered once per key set: every verifier fetches it,
//! and what it lists changes only when a key is added or stops being
//! published.

use std::sync::{Arc, RwLock};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use bytes::Bytes;

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

/// The last rendering, with what it was rendered from.
#[derive(Default)]
pub struct Cache<K> {
    last: RwLock<Option<(K, Arc<Rendered>)>>,
}

impl<K: PartialEq> Cache<K> {
    /// The rendering for `key`, re-rendered only when `key` changed.
    pub fn get(&self, key: K, render: impl FnOnce() -> Vec<u8>) -> Arc<Rendered> {
        if let Some((cached, rendered)) = &*self.last.read().unwrap_or_else(|p| p.into_inner())
            && *cached == key
        {
            return rendered.clone();
        }
        let rendered = Arc::new(Rendered::new(render()));
        *self.last.write().unwrap_or_else(|p| p.into_inner()) = Some((key, rendered.clone()));
        rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_once_per_key_and_matches_its_own_etag() {
        let cache = Cache::default();
        let mut renders = 0;
        let first = cache.get(vec!["a"], || {
            renders += 1;
            b"{\"keys\":[]}".to_vec()
        });
        let again = cache.get(vec!["a"], || {
            renders += 1;
            b"other".to_vec()
        });
        assert_eq!(renders, 1);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(first.matches(&first.etag));
        assert!(first.matches(&format!("\"x\", W/{}", first.etag)));
        assert!(first.matches("*"));
        assert!(!first.matches("\"x\""));
        let changed = cache.get(vec!["a", "b"], || b"{\"keys\":[1]}".to_vec());
        assert_ne!(changed.etag, first.etag);
    }
}
