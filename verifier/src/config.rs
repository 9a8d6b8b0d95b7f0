//! What a service tells the kit: who issues its tokens and how to read
//! the revocation feed.

use std::time::Duration;

use secrecy::SecretString;

use crate::Error;

/// The longest `exp - iat` accepted when neither the configuration nor the
/// issuer's metadata says.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Settings for [`Verifier::start`](crate::Verifier::start).
///
/// ```no_run
/// # async fn run() -> Result<(), tessera_verifier::Error> {
/// use tessera_verifier::{Config, Verifier};
/// let secret = std::env::var("TESSERA_VERIFIER_CLIENT_SECRET").unwrap_or_default();
/// let verifier = Verifier::start(
///     Config::new("https://auth.example.com", "tessera").feed_client("orders-api", secret),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) leeway: Duration,
    /// `None`: the issuer's published maximum, else [`DEFAULT_MAX_TOKEN_LIFETIME`].
    pub(crate) max_token_lifetime: Option<Duration>,
    pub(crate) max_staleness: Duration,
    pub(crate) fail_open_when_stale: bool,
    pub(crate) refetch_interval: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) stream_idle_timeout: Duration,
    pub(crate) http_timeout: Duration,
}

impl Config {
    /// `issuer` is compared with the tokens' `iss` exactly and is where
    /// discovery starts (`<issuer>/.well-known/oauth-authorization-server`);
    /// `audience` must be in their `aud` (Tessera's `audience` setting).
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Config {
        Config {
            issuer: issuer.into(),
            audience: audience.into(),
            client_id: String::new(),
            client_secret: SecretString::from(String::new()),
            leeway: Duration::from_secs(10),
            max_token_lifetime: None,
            max_staleness: Duration::from_secs(60),
            fail_open_when_stale: false,
            refetch_interval: Duration::from_secs(5),
            poll_interval: Duration::from_secs(5),
            stream_idle_timeout: Duration::from_secs(45),
            http_timeout: Duration::from_secs(10),
        }
    }

    /// The confidential client (grant `client_credentials`, scope
    /// `revocations:read`) the kit reads the revocation feed as. Required.
    pub fn feed_client(
        mut self,
        client_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Config {
        self.client_id = client_id.into();
        self.client_secret = SecretString::from(secret.into());
        self
    }

    /// Clock skew allowed on `exp`, `nbf` and `iat` (default 10 s). A
    /// revoked token whose entry the issuer has already pruned (at `exp`)
    /// could pass for this long to a verifier that started after that.
    pub fn leeway(mut self, leeway: Duration) -> Config {
        self.leeway = leeway;
        self
    }

    /// Tokens with `exp - iat` above this are refused. It also says how
    /// long a user's not-before entry must be kept. Unset (the default),
    /// it is the maximum the issuer publishes in its metadata
    /// (`tessera_max_access_token_lifetime`, Tessera's `tokens.access_ttl`),
    /// read at discovery; 24 h if the issuer publishes none.
    pub fn max_token_lifetime(mut self, lifetime: Duration) -> Config {
        self.max_token_lifetime = Some(lifetime);
        self
    }

    /// How long the revocation list may go without news from the issuer
    /// (an event, a keep-alive, a successful poll) before verification
    /// fails with [`Error::RevocationsStale`] (default 60 s; keep it above
    /// the issuer's `revocation.stream_keepalive`, 15 s by default).
    pub fn max_staleness(mut self, staleness: Duration) -> Config {
        self.max_staleness = staleness;
        self
    }

    /// Accept tokens (with a warning in the logs) even when the revocation
    /// list is stale. Off by default: see docs/verifying-tokens.md on
    /// failing closed.
    pub fn fail_open_when_stale(mut self, fail_open: bool) -> Config {
        self.fail_open_when_stale = fail_open;
        self
    }

    /// The JWK Set is fetched at most once per this interval when tokens
    /// name an unknown `kid` (default 5 s), so forged kids cannot make the
    /// kit hammer the issuer.
    pub fn refetch_interval(mut self, interval: Duration) -> Config {
        self.refetch_interval = interval;
        self
    }

    /// How often the feed is polled while the stream is unavailable
    /// (default 5 s).
    pub fn poll_interval(mut self, interval: Duration) -> Config {
        self.poll_interval = interval;
        self
    }

    /// A stream silent for this long (not even a keep-alive) is taken for
    /// dead and reconnected (default 45 s: three of Tessera's keep-alives).
    pub fn stream_idle_timeout(mut self, timeout: Duration) -> Config {
        self.stream_idle_timeout = timeout;
        self
    }

    /// Timeout of each request to the issuer other than the stream
    /// (default 10 s).
    pub fn http_timeout(mut self, timeout: Duration) -> Config {
        self.http_timeout = timeout;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let issuer = self.issuer.trim_end_matches('/');
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(Error::Config(
                "issuer must be an http(s) URL, e.g. https://auth.example.com".into(),
            ));
        }
        if self.audience.is_empty() {
            return Err(Error::Config("audience must not be empty".into()));
        }
        if self.client_id.is_empty() {
            return Err(Error::Config(
                "feed_client: a client id and secret are needed to read the revocation feed".into(),
            ));
        }
        for (name, value) in [
            ("max_staleness", self.max_staleness),
            ("refetch_interval", self.refetch_interval),
            ("poll_interval", self.poll_interval),
            ("stream_idle_timeout", self.stream_idle_timeout),
            ("http_timeout", self.http_timeout),
            (
                "max_token_lifetime",
                self.max_token_lifetime
                    .unwrap_or(DEFAULT_MAX_TOKEN_LIFETIME),
            ),
        ] {
            if value.is_zero() {
                return Err(Error::Config(format!("{name} must be greater than zero")));
            }
        }
        Ok(())
    }

    /// The issuer without a trailing slash, to build URLs from.
    pub(crate) fn base_url(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }
}
