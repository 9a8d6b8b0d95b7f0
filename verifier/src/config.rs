//! What a service tells the kit: who issues its tokens and how to read
//! the revocation feed.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

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
/// // This service is the resource `https://orders.example.com/`
/// // (`tessera resource create https://orders.example.com/ --scope ...`).
/// let verifier = Verifier::start(
///     Config::new("https://auth.example.com", "https://orders.example.com/")
///         .feed_client("orders-api", secret),
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
    /// DPoP (RFC 9449 §7): see [`Config::external_url`].
    pub(crate) external_url: Option<String>,
    pub(crate) require_dpop: bool,
    pub(crate) dpop_window: Duration,
    pub(crate) dpop_replay_capacity: usize,
    pub(crate) dpop_nonce: Option<NonceSecret>,
}

/// The resource server's nonce secret and how long a nonce is accepted.
/// Its `Debug` leaves the secret out: configs end up in logs.
#[derive(Clone)]
pub(crate) struct NonceSecret {
    pub(crate) secret: Vec<u8>,
    pub(crate) lifetime: Duration,
}

impl std::fmt::Debug for NonceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceSecret")
            .field("secret", &"[redacted]")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// Shortest nonce secret accepted: it keys an HMAC.
const MIN_NONCE_SECRET: usize = 16;

impl Config {
    /// `issuer` is compared with the tokens' `iss` exactly and is where
    /// discovery starts (`<issuer>/.well-known/oauth-authorization-server`).
    ///
    /// `resource` is this service's resource URI (RFC 8707): the URI it is
    /// registered under (`tessera resource create <uri>`), which clients
    /// name with `resource=<uri>` when they ask for a token, and which
    /// Tessera puts in the token's `aud`. Compared exactly, as registered
    /// (`https://orders.example.com/` is not `https://orders.example.com`).
    /// A token whose `aud` is another resource is refused
    /// ([`Invalid::WrongAudience`](crate::Invalid::WrongAudience)): a token
    /// one API received cannot be replayed against another. A service that
    /// takes the tokens clients get without naming a resource passes
    /// Tessera's default audience instead (its `audience` setting,
    /// `tessera` by default), which every such token carries.
    pub fn new(issuer: impl Into<String>, resource: impl Into<String>) -> Config {
        Config {
            issuer: issuer.into(),
            audience: resource.into(),
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
            external_url: None,
            require_dpop: false,
            dpop_window: Duration::from_secs(60),
            dpop_replay_capacity: 1_000_000,
            dpop_nonce: None,
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
    /// (`tessera_max_access_token_lifetime`, Tessera's
    /// `tokens.max_access_ttl`: the longest lifetime any client or resource
    /// may give a token), read at discovery; 24 h if the issuer publishes
    /// none.
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

    /// The service's base URL as its clients address it (scheme, host,
    /// port and any path prefix a proxy strips), e.g.
    /// `https://api.example.com`. A DPoP proof's `htu` must be this plus
    /// the request's path (query ignored): the URL the proof was made for,
    /// not the Host header a client may set. Needed to accept DPoP; unset,
    /// a request with the DPoP scheme is answered `500` and logged.
    pub fn external_url(mut self, base: impl Into<String>) -> Config {
        self.external_url = Some(base.into());
        self
    }

    /// Refuse bearer presentations of every token: only `Authorization:
    /// DPoP` with a proof is accepted, and refusals offer only the `DPoP`
    /// challenge. Off by default: both schemes are accepted (a token bound
    /// to a key is refused as a bearer token either way). Needs
    /// [`Config::external_url`].
    pub fn require_dpop(mut self, require: bool) -> Config {
        self.require_dpop = require;
        self
    }

    /// How far a proof's `iat` may be from now, either way (default 60 s).
    /// Proofs are remembered (to refuse replays) this long after their `iat`.
    pub fn dpop_window(mut self, window: Duration) -> Config {
        self.dpop_window = window;
        self
    }

    /// How many proofs the replay cache holds (default 1,000,000, about
    /// 40 MB, per process). A proof is remembered until its `iat` leaves
    /// the window; when that many are, further proofs are refused with
    /// `503` (they could not be remembered) until some age out.
    pub fn dpop_replay_capacity(mut self, capacity: usize) -> Config {
        self.dpop_replay_capacity = capacity;
        self
    }

    /// Require a server nonce in proofs (RFC 9449 §9): a proof without a
    /// valid one is answered `401` with `error="use_dpop_nonce"` and a fresh
    /// nonce in `DPoP-Nonce`. Nonces are stateless (an HMAC of their time of
    /// issue under `secret`, at least 16 bytes): every instance sharing the
    /// secret accepts any other's, each for `lifetime`. Off by default.
    pub fn dpop_nonce(mut self, secret: Vec<u8>, lifetime: Duration) -> Config {
        self.dpop_nonce = Some(NonceSecret { secret, lifetime });
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let issuer = self.issuer.trim_end_matches('/');
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(Error::Config(
                "issuer must be an http(s) URL, e.g. https://auth.example.com".into(),
            ));
        }
        if self.audience.trim().is_empty() {
            return Err(Error::Config(
                "the resource (audience) must be this service's resource URI, e.g. https://orders.example.com/"
                    .into(),
            ));
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
            ("dpop_window", self.dpop_window),
            (
                "dpop_nonce lifetime",
                self.dpop_nonce
                    .as_ref()
                    .map_or(Duration::MAX, |n| n.lifetime),
            ),
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
        self.validate_dpop()?;
        Ok(())
    }

    fn validate_dpop(&self) -> Result<(), Error> {
        if let Some(base) = &self.external_url {
            parse_base(base)?;
        } else if self.require_dpop {
            return Err(Error::Config(
                "require_dpop needs external_url, to check the proofs' htu".into(),
            ));
        }
        if self.dpop_replay_capacity == 0 {
            return Err(Error::Config(
                "dpop_replay_capacity must be greater than zero".into(),
            ));
        }
        if self
            .dpop_nonce
            .as_ref()
            .is_some_and(|n| n.secret.len() < MIN_NONCE_SECRET)
        {
            return Err(Error::Config(format!(
                "the dpop_nonce secret must be at least {MIN_NONCE_SECRET} bytes"
            )));
        }
        Ok(())
    }

    /// The issuer without a trailing slash, to build URLs from.
    pub(crate) fn base_url(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }
}

/// `external_url`, checked: an http(s) URL without query or fragment.
pub(crate) fn parse_base(base: &str) -> Result<Url, Error> {
    let refused = || {
        Error::Config(
            "external_url must be an http(s) URL without query or fragment, e.g. https://api.example.com"
                .into(),
        )
    };
    let url = Url::parse(base).map_err(|_| refused())?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.has_host()
        && url.query().is_none()
        && url.fragment().is_none();
    if !plain {
        return Err(refused());
    }
    Ok(url)
}

pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
