//! Talking to the issuer: discovery, the JWK Set, the feed client's own
//! token (client_credentials) and the revocation feed.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CACHE_CONTROL, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::denylist::Entry;
use crate::{Config, Error};

/// Largest body read from the issuer (a page of the feed is ~100 KiB).
const MAX_BODY: usize = 4 << 20;
/// The feed token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);
const FEED_SCOPE: &str = "revocations:read";

/// Where things are, from the issuer's metadata (RFC 8414).
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) jwks_uri: String,
    pub(crate) token_endpoint: String,
    pub(crate) feed: String,
    pub(crate) stream: String,
    /// The longest access-token lifetime the issuer says it issues.
    pub(crate) max_access_token_lifetime: Option<Duration>,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
    /// Tessera's own field: seconds; absent from other issuers.
    tessera_max_access_token_lifetime: Option<u64>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

/// One page of `GET /auth/revocations`.
#[derive(Deserialize)]
struct FeedPage {
    revoked_tokens: Vec<FeedToken>,
    revoked_sessions: Vec<FeedSession>,
    revoked_users: Vec<FeedUser>,
    /// Absent from issuers that predate per-client entries.
    #[serde(default)]
    revoked_clients: Vec<FeedClient>,
    /// Absent from issuers that predate distrusting keys.
    #[serde(default)]
    distrusted_keys: Vec<FeedKey>,
    next_cursor: String,
    has_more: bool,
}

#[derive(Deserialize)]
struct FeedToken {
    jti: String,
    exp: i64,
}

#[derive(Deserialize)]
struct FeedSession {
    sid: String,
    exp: i64,
}

#[derive(Deserialize)]
struct FeedUser {
    sub: String,
    not_before: i64,
}

#[derive(Deserialize)]
struct FeedClient {
    client_id: String,
    not_before: i64,
}

#[derive(Deserialize)]
struct FeedKey {
    kid: String,
}

/// A page of entries and the cursor after it.
pub(crate) struct Page {
    pub(crate) entries: Vec<Entry>,
    pub(crate) next_cursor: i64,
    pub(crate) has_more: bool,
}

impl TryFrom<FeedPage> for Page {
    type Error = Error;

    /// The page's entries, each turned into the stream's shape.
    fn try_from(page: FeedPage) -> Result<Page, Error> {
        let next_cursor = page
            .next_cursor
            .parse()
            .map_err(|_| Error::Issuer("revocation feed: bad next_cursor".into()))?;
        let mut entries = Vec::new();
        entries.extend(page.revoked_tokens.into_iter().map(|t| Entry::AccessToken {
            jti: t.jti,
            exp: t.exp,
        }));
        entries.extend(page.revoked_sessions.into_iter().map(|s| Entry::Session {
            sid: s.sid,
            exp: s.exp,
        }));
        entries.extend(page.revoked_users.into_iter().map(|u| Entry::User {
            sub: u.sub,
            not_before: u.not_before,
        }));
        entries.extend(page.revoked_clients.into_iter().map(|c| Entry::Client {
            client_id: c.client_id,
            not_before: c.not_before,
        }));
        entries.extend(
            page.distrusted_keys
                .into_iter()
                .map(|k| Entry::DistrustedKey { kid: k.kid }),
        );
        Ok(Page {
            entries,
            next_cursor,
            has_more: page.has_more,
        })
    }
}

/// What the feed said other than a page.
pub(crate) enum FeedError {
    /// The cursor is not valid here (ahead of the newest entry, or pruned):
    /// start over from 0.
    Reload,
    Failed(Error),
}

pub(crate) struct Issuer {
    pub(crate) http: reqwest::Client,
    issuer: String,
    base: String,
    client_id: String,
    secret: SecretString,
    timeout: Duration,
    token: Mutex<Option<(String, Instant)>>,
}

impl Issuer {
    pub(crate) fn new(config: &Config) -> Result<Issuer, Error> {
        // No overall timeout on the client: the stream is open for as long
        // as the issuer keeps it; other requests set their own.
        let http = reqwest::Client::builder()
            .connect_timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Issuer {
            http,
            issuer: config.issuer.clone(),
            base: config.base_url().to_owned(),
            client_id: config.client_id.clone(),
            secret: config.client_secret.clone(),
            timeout: config.http_timeout,
            token: Mutex::new(None),
        })
    }

    /// RFC 8414 metadata (or the OIDC name for it), whose `issuer` must be
    /// ours (§3.3), so a misdirected URL cannot hand us someone's keys.
    pub(crate) async fn discover(&self) -> Result<Endpoints, Error> {
        let mut last = Error::Issuer("discovery failed".into());
        for name in ["oauth-authorization-server", "openid-configuration"] {
            let url = format!("{}/.well-known/{name}", self.base);
            let metadata: Metadata = match self.get_json(&url).await {
                Ok(metadata) => metadata,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            if metadata.issuer.trim_end_matches('/') != self.base {
                return Err(Error::Issuer(format!(
                    "{url} names issuer {:?}, not {:?}",
                    metadata.issuer, self.issuer
                )));
            }
            return Ok(Endpoints {
                jwks_uri: metadata.jwks_uri,
                token_endpoint: metadata.token_endpoint,
                feed: format!("{}/auth/revocations", self.base),
                stream: format!("{}/auth/revocations/stream", self.base),
                max_access_token_lifetime: metadata
                    .tessera_max_access_token_lifetime
                    .filter(|&secs| secs > 0)
                    .map(Duration::from_secs),
            });
        }
        Err(last)
    }

    /// The JWK Set's keys (each as JSON, to be parsed one by one) and how
    /// long it may be cached.
    pub(crate) async fn jwks(
        &self,
        url: &str,
    ) -> Result<(Vec<serde_json::Value>, Option<Duration>), Error> {
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let response = self.send(self.http.get(url)).await?;
        let max_age = max_age(&response);
        let set: Set = read_json(response).await?;
        Ok((set.keys, max_age))
    }

    /// A token for the feed, fetched with client_credentials and reused
    /// until shortly before it expires. Never logged.
    pub(crate) async fn bearer(&self, endpoints: &Endpoints) -> Result<String, Error> {
        let mut cached = self.token.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let request = self
            .http
            .post(&endpoints.token_endpoint)
            .basic_auth(&self.client_id, Some(self.secret.expose_secret()))
            .form(&[("grant_type", "client_credentials"), ("scope", FEED_SCOPE)]);
        let response = self.send(request).await?;
        let token: TokenResponse = read_json(response).await?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(60));
        let renew_at = Instant::now()
            + lifetime
                .saturating_sub(TOKEN_MARGIN)
                .max(Duration::from_secs(1));
        *cached = Some((token.access_token.clone(), renew_at));
        Ok(token.access_token)
    }

    /// After a 401: the cached token was revoked or expired early.
    pub(crate) async fn forget_bearer(&self) {
        *self.token.lock().await = None;
    }

    /// One page of the feed after `since`.
    pub(crate) async fn feed_page(
        &self,
        endpoints: &Endpoints,
        since: i64,
    ) -> Result<Page, FeedError> {
        let token = self.bearer(endpoints).await.map_err(FeedError::Failed)?;
        let request = self
            .http
            .get(&endpoints.feed)
            .query(&[("since", since)])
            .bearer_auth(token)
            .timeout(self.timeout);
        let response = request
            .send()
            .await
            .map_err(|e| FeedError::Failed(Error::Issuer(format!("revocation feed: {e}"))))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::BAD_REQUEST | StatusCode::GONE => return Err(FeedError::Reload),
            StatusCode::UNAUTHORIZED => {
                self.forget_bearer().await;
                return Err(FeedError::Failed(Error::Issuer(
                    "revocation feed refused the feed client's token".into(),
                )));
            }
            status => {
                return Err(FeedError::Failed(Error::Issuer(format!(
                    "revocation feed answered {status}"
                ))));
            }
        }
        let page: FeedPage = read_json(response).await.map_err(FeedError::Failed)?;
        page.try_into().map_err(FeedError::Failed)
    }

    /// Opens the stream after `since`; the response is the caller's to read.
    pub(crate) async fn open_stream(
        &self,
        endpoints: &Endpoints,
        since: i64,
    ) -> Result<Response, Error> {
        let token = self.bearer(endpoints).await?;
        self.http
            .get(&endpoints.stream)
            .bearer_auth(token)
            .header(ACCEPT, "text/event-stream")
            .header("last-event-id", since.to_string())
            .send()
            .await
            .map_err(|e| Error::Issuer(format!("revocation stream: {e}")))
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, Error> {
        let response = self.send(self.http.get(url)).await?;
        read_json(response).await
    }

    /// Sends with the request timeout; anything but 200 is an error.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, Error> {
        let response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| Error::Issuer(e.without_url().to_string()))?;
        if response.status() != StatusCode::OK {
            return Err(Error::Issuer(format!(
                "{} answered {}",
                response.url().path(),
                response.status()
            )));
        }
        Ok(response)
    }
}

/// `Retry-After` in seconds, if the issuer sent one.
pub(crate) fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_secs)
}

/// `Cache-Control: max-age=N` (`no-store`/`no-cache` count as 0).
fn max_age(response: &Response) -> Option<Duration> {
    let value = response.headers().get(CACHE_CONTROL)?.to_str().ok()?;
    for directive in value.split(',').map(str::trim) {
        let directive = directive.to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(seconds) = directive.strip_prefix("max-age=") {
            return seconds
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    None
}

/// Reads at most `MAX_BODY` bytes and parses them.
async fn read_json<T: DeserializeOwned>(mut response: Response) -> Result<T, Error> {
    let path = response.url().path().to_owned();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::Issuer(format!("{path}: {}", e.without_url())))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Error::Issuer(format!(
                "{path}: body larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| Error::Issuer(format!("{path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Page {
        serde_json::from_str::<FeedPage>(json)
            .unwrap()
            .try_into()
            .ok()
            .unwrap()
    }

    #[test]
    fn feed_items_become_entries_and_unknown_lists_are_skipped() {
        let page = parse(
            r#"{"revoked_tokens":[{"jti":"j","exp":5}],"revoked_sessions":[],"revoked_users":[],
                "revoked_clients":[],"distrusted_keys":[{"kid":"k1"}],
                "revoked_groups":[{"id":"g"}],"next_cursor":"12","has_more":false}"#,
        );
        assert_eq!(
            page.entries,
            [
                Entry::AccessToken {
                    jti: "j".into(),
                    exp: 5
                },
                Entry::DistrustedKey { kid: "k1".into() },
            ]
        );
        assert_eq!(page.next_cursor, 12);
        // An issuer that predates per-client entries and distrusted keys.
        let old = parse(
            r#"{"revoked_tokens":[],"revoked_sessions":[],"revoked_users":[],
                "next_cursor":"0","has_more":true}"#,
        );
        assert!(old.entries.is_empty() && old.has_more);
    }
}
