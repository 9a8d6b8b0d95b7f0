//! Layered configuration, later sources winning:
//!
//! 1. `config/base.yaml` and 2. `config/<TESSERA_ENV>.yaml` of this repository,
//!    compiled into the binary, so an installed `tessera` runs from any
//!    directory with nothing but environment variables;
//! 3. optionally a directory (`--config DIR` or `TESSERA_CONFIG_DIR`):
//!    `DIR/base.yaml`, then `DIR/<TESSERA_ENV>.yaml`;
//! 4. `TESSERA__SECTION__KEY` environment variables.
//!
//! `Settings::load` parses and validates; a bad value fails startup with one
//! line naming the key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::signing::SigningAlgorithm;

/// The repository's `config/` files, built in (sources 1 and 2 above).
const BUILT_IN_BASE: &str = include_str!("../config/base.yaml");
const BUILT_IN_LOCAL: &str = include_str!("../config/local.yaml");
const BUILT_IN_PRODUCTION: &str = include_str!("../config/production.yaml");

/// Key-encryption secrets published in this repository (`config/local.yaml`,
/// and the example value `.env.example` once shipped): fine for trying things
/// out, never for production.
const PUBLISHED_ENCRYPTION_KEYS: [&str; 2] = [
    "dGVzc2VyYS1sb2NhbC1kZXYta2V5LW5vdC1zZWNyZXQ=",
    "RVhBTVBMRS1PTkxZLXJlcGxhY2UtbWUtMzItYnl0ZXM=",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub issuer: String,
    pub audience: String,
    pub keys: KeySettings,
    pub tokens: TokenSettings,
    pub password: PasswordSettings,
    pub login: LoginSettings,
    pub dpop: DpopSettings,
    pub revocation: RevocationSettings,
    pub log: LogSettings,
    /// Filled from `TESSERA_ENV`, not from the files.
    #[serde(skip, default)]
    pub environment: Environment,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Option<SecretString>,
    /// The change listener's own connection (`LISTEN`): straight to
    /// Postgres when `url` goes through a pooler in transaction mode.
    /// Default: `url`.
    #[serde(default)]
    pub listen_url: Option<SecretString>,
    pub max_connections: u32,
    #[serde(with = "duration")]
    pub acquire_timeout: Duration,
    /// The longest a refresh may wait on the database before it is rolled
    /// back and answered 503 (shorter than clients' own timeouts).
    #[serde(with = "duration")]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub public_addr: String,
    pub admin_addr: String,
    pub max_body_bytes: usize,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// Total time allowed for receiving a request body (408 and close past it).
    #[serde(with = "duration")]
    pub body_timeout: Duration,
    /// Open connections per listener; 0 sizes it for the machine.
    pub max_connections: usize,
    /// Open connections per client address (a /64 for IPv6) on each
    /// listener; trusted proxies are exempt. 0: no limit.
    pub max_connections_per_address: usize,
    /// Peers allowed to name the client through `forwarded_header`.
    #[serde(with = "cidrs")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The one header trusted proxies name the client in. Only one is read:
    /// a proxy that appends to one of them passes the other through as the
    /// client wrote it.
    pub forwarded_header: ForwardedHeader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, ...`
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239)
    Forwarded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub algorithm: SigningAlgorithm,
    /// Seals key material at rest (the current key-encryption key).
    pub encryption_key: Option<SecretString>,
    /// Keys that sealed material before `encryption_key` replaced them: they
    /// open it, never seal (see `keys::kek`). A YAML list, or from the
    /// environment one string of keys separated by commas or spaces.
    #[serde(default, with = "secret_list")]
    pub previous_encryption_keys: Vec<SecretString>,
    /// How long verifiers may cache the JWKS.
    #[serde(with = "duration")]
    pub jwks_max_age: Duration,
    /// How long a rotated-in key is published before it starts signing, so
    /// verifiers holding a cached JWKS learn of it first.
    #[serde(with = "duration")]
    pub rotation_delay: Duration,
    /// How often each instance re-reads the key table.
    #[serde(with = "duration")]
    pub reload_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// An access token's lifetime, unless its client or resource sets one.
    #[serde(with = "duration")]
    pub access_ttl: Duration,
    /// How long a login's session lives at most, unless its client sets it.
    #[serde(with = "duration")]
    pub refresh_ttl: Duration,
    #[serde(with = "duration")]
    pub refresh_grace: Duration,
    /// A session unused this long ends, unless its client sets it; none by
    /// default (sessions end at `refresh_ttl`).
    #[serde(default, deserialize_with = "duration::optional")]
    pub refresh_idle: Option<Duration>,
    /// The longest access-token lifetime a client or resource may be given
    /// (default: `access_ttl`). Every check of how long a token may live
    /// uses it: any token up to it may legitimately exist.
    #[serde(default, deserialize_with = "duration::optional")]
    pub max_access_ttl: Option<Duration>,
    /// The longest session (`refresh_ttl`) or idle time a client may be
    /// given (default: `refresh_ttl`).
    #[serde(default, deserialize_with = "duration::optional")]
    pub max_refresh_ttl: Option<Duration>,
}

impl TokenSettings {
    /// The longest an access token of this deployment may live.
    pub fn longest_access(&self) -> Duration {
        self.max_access_ttl.unwrap_or(self.access_ttl)
    }

    /// The longest a session (and its refresh tokens) may live.
    pub fn longest_refresh(&self) -> Duration {
        self.max_refresh_ttl.unwrap_or(self.refresh_ttl)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_length: usize,
    pub max_concurrent: usize,
    pub max_queue: usize,
}

/// Limits on password guessing: per username (in Postgres, shared by every
/// instance) and per client address (in memory, per instance).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSettings {
    /// Consecutive failures from one source (address, or device) that lock
    /// the username for that source.
    pub lockout_threshold: u32,
    /// Failures from every untrusted source together that lock the username
    /// for all of them (devices that logged in before still get in).
    pub username_lockout_threshold: u32,
    /// How long a device credential (issued at each successful password
    /// login) lets its device past the username-wide lock.
    #[serde(with = "duration")]
    pub device_ttl: Duration,
    /// The first lock's length; every further failure doubles it.
    #[serde(with = "duration")]
    pub lockout_base: Duration,
    #[serde(with = "duration")]
    pub lockout_max: Duration,
    /// A username's failures are forgotten after this long without one.
    #[serde(with = "duration")]
    pub lockout_reset: Duration,
    /// Failed logins an address may make at once.
    pub address_burst: u32,
    /// One more failed login is allowed per address every this long.
    #[serde(with = "duration")]
    pub address_refill: Duration,
}

/// DPoP (RFC 9449) proofs: see `crate::dpop`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopSettings {
    /// How far a proof's `iat` may be from our clock, either way.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Every proof at the token endpoint must carry a nonce of ours.
    pub require_nonce: bool,
    #[serde(with = "duration")]
    pub nonce_lifetime: Duration,
    /// Proofs remembered per instance to refuse replays.
    pub replay_capacity: usize,
    /// ...of which one client may hold at most this many.
    pub replay_capacity_per_client: usize,
    /// The admin listener's URL as its callers address it (the `htu` of
    /// proofs sent to the admin API); the bound admin address if unset.
    #[serde(default)]
    pub admin_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSettings {
    /// Safety net beside LISTEN/NOTIFY: how often each instance re-reads
    /// revocations and prunes expired ones.
    #[serde(with = "duration")]
    pub sync_interval: Duration,
    /// How often `GET /auth/revocations/stream` sends a keep-alive comment
    /// (and re-checks the subscriber's token), so that readers and proxies
    /// can tell a quiet stream from a dead one.
    #[serde(with = "duration")]
    pub stream_keepalive: Duration,
    /// Open revocation streams per instance; more get 503 with `Retry-After`.
    pub max_subscribers: usize,
    /// Open revocation streams of one client per instance.
    pub max_subscribers_per_client: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    #[default]
    Local,
    Production,
}

impl Environment {
    pub fn as_str(&self) -> &'static str {
        match self {
            Environment::Local => "local",
            Environment::Production => "production",
        }
    }

    /// The built-in overlay for this environment.
    fn built_in(&self) -> &'static str {
        match self {
            Environment::Local => BUILT_IN_LOCAL,
            Environment::Production => BUILT_IN_PRODUCTION,
        }
    }

    /// `TESSERA_ENV`, `local` when unset.
    pub fn from_env() -> anyhow::Result<Environment> {
        match std::env::var("TESSERA_ENV") {
            Ok(value) => Environment::try_from(value),
            Err(std::env::VarError::NotPresent) => Ok(Environment::Local),
            Err(std::env::VarError::NotUnicode(_)) => bail!("TESSERA_ENV is not valid UTF-8"),
        }
    }
}

impl TryFrom<String> for Environment {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.to_lowercase().as_str() {
            "local" => Ok(Self::Local),
            "production" => Ok(Self::Production),
            other => {
                bail!("TESSERA_ENV: unknown environment `{other}` (use `local` or `production`)")
            }
        }
    }
}

/// Where settings come from, beside the built-in defaults.
#[derive(Debug, Default)]
pub struct Sources {
    /// A configuration directory (`--config DIR` or `TESSERA_CONFIG_DIR`):
    /// its `base.yaml` and `<environment>.yaml` go on top of the defaults.
    pub dir: Option<PathBuf>,
    /// `None`: `TESSERA_ENV`'s.
    pub environment: Option<Environment>,
    /// Stand-ins for the process environment (tests check deployment files
    /// with them); `None`: the process's own.
    pub vars: Option<HashMap<String, String>>,
}

impl Settings {
    /// The built-in defaults, the files of `sources.dir` if given, and the
    /// `TESSERA__*` variables (of the process, or `sources.vars` in tests),
    /// for `sources.environment` (default: what `TESSERA_ENV` names, else
    /// `local`); then validates.
    pub fn load(sources: Sources) -> anyhow::Result<Settings> {
        let environment = match sources.environment {
            Some(environment) => environment,
            None => Environment::from_env()?,
        };
        Self::build(sources.dir.as_deref(), environment, sources.vars)
    }

    /// Unknown keys anywhere are errors: a misspelt variable must not be
    /// silently ignored. So is a configuration directory that was asked for
    /// and does not exist, or holds neither `base.yaml` nor `<env>.yaml`:
    /// the operator meant something to be read, and it was not.
    fn build(
        dir: Option<&Path>,
        environment: Environment,
        vars: Option<HashMap<String, String>>,
    ) -> anyhow::Result<Settings> {
        use config::{File, FileFormat};
        let mut builder = config::Config::builder()
            .add_source(File::from_str(BUILT_IN_BASE, FileFormat::Yaml))
            .add_source(File::from_str(environment.built_in(), FileFormat::Yaml));
        if let Some(dir) = dir {
            for file in overlay_files(dir, environment)? {
                builder = builder.add_source(File::from(file));
            }
        }
        let raw = builder
            .add_source(
                config::Environment::with_prefix("TESSERA")
                    .prefix_separator("__")
                    .separator("__")
                    .source(vars),
            )
            .build()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        let mut settings: Settings = raw
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        settings.environment = environment;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what serde cannot: presence of secrets, sane lifetimes, key sizes.
    pub fn validate(&self) -> anyhow::Result<()> {
        // Every missing secret at once: an operator should not discover them
        // one restart at a time.
        let mut missing = Vec::new();
        if self.database.url.is_none() {
            missing.push("database.url is not set (TESSERA__DATABASE__URL)");
        }
        if self.keys.encryption_key.is_none() {
            missing.push(
                "keys.encryption_key is not set (TESSERA__KEYS__ENCRYPTION_KEY, 32 bytes base64)",
            );
        }
        if !missing.is_empty() {
            bail!("configuration: {}", missing.join("; "));
        }
        let Some(url) = &self.database.url else {
            bail!("configuration: database.url is not set (TESSERA__DATABASE__URL)");
        };
        if url.expose_secret().trim().is_empty() {
            bail!("configuration: database.url is empty");
        }
        if self.database.max_connections == 0 {
            bail!("configuration: database.max_connections must be at least 1");
        }
        if self.issuer.trim().is_empty() {
            bail!(
                "configuration: issuer must be the public base URL, e.g. https://auth.example.com"
            );
        }
        if !url::Url::parse(&self.issuer).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            bail!(
                "configuration: issuer must be an absolute http(s) URL, e.g. https://auth.example.com"
            );
        }
        if let Some(admin) = &self.dpop.admin_url
            && !url::Url::parse(admin).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            bail!("configuration: dpop.admin_url must be an absolute http(s) URL");
        }
        if self.dpop.replay_capacity == 0 || self.dpop.replay_capacity_per_client == 0 {
            bail!(
                "configuration: dpop.replay_capacity and dpop.replay_capacity_per_client must be at least 1"
            );
        }
        if self.audience.trim().is_empty() {
            bail!("configuration: audience must not be empty");
        }
        for (name, ttl) in [
            ("tokens.access_ttl", self.tokens.access_ttl),
            ("tokens.refresh_ttl", self.tokens.refresh_ttl),
            ("keys.jwks_max_age", self.keys.jwks_max_age),
            ("keys.reload_interval", self.keys.reload_interval),
            ("revocation.sync_interval", self.revocation.sync_interval),
            (
                "revocation.stream_keepalive",
                self.revocation.stream_keepalive,
            ),
            ("database.request_timeout", self.database.request_timeout),
            ("http.body_timeout", self.http.body_timeout),
            ("login.lockout_base", self.login.lockout_base),
            ("login.device_ttl", self.login.device_ttl),
            ("login.address_refill", self.login.address_refill),
            ("dpop.window", self.dpop.window),
            ("dpop.nonce_lifetime", self.dpop.nonce_lifetime),
        ] {
            if ttl.is_zero() {
                bail!("configuration: {name} must be greater than zero");
            }
        }
        if self.keys.rotation_delay < self.min_rotation_delay() {
            bail!(
                "configuration: keys.rotation_delay must be at least keys.jwks_max_age + keys.reload_interval ({}s)",
                self.min_rotation_delay().as_secs()
            );
        }
        let tokens = &self.tokens;
        if tokens.longest_access() < tokens.access_ttl {
            bail!("configuration: tokens.max_access_ttl must be at least tokens.access_ttl");
        }
        if tokens.longest_refresh() < tokens.refresh_ttl {
            bail!("configuration: tokens.max_refresh_ttl must be at least tokens.refresh_ttl");
        }
        if let Some(idle) = tokens.refresh_idle
            && (idle.is_zero() || idle > tokens.longest_refresh())
        {
            bail!(
                "configuration: tokens.refresh_idle must be greater than zero and at most tokens.max_refresh_ttl"
            );
        }
        if self.tokens.refresh_grace >= self.tokens.refresh_ttl {
            bail!("configuration: tokens.refresh_grace must be shorter than tokens.refresh_ttl");
        }
        self.encryption_keys()?;
        if self.password.memory_kib < 19456
            || self.password.iterations < 2
            || self.password.parallelism < 1
        {
            bail!(
                "configuration: password.* is below OWASP's argon2id minimum (memory_kib >= 19456, iterations >= 2, parallelism >= 1)"
            );
        }
        if self.password.max_length < 8 || self.password.max_length > 4096 {
            bail!("configuration: password.max_length must be between 8 and 4096 bytes");
        }
        if self.http.max_body_bytes < 512 {
            bail!("configuration: http.max_body_bytes must be at least 512");
        }
        if self.login.lockout_threshold == 0 {
            bail!("configuration: login.lockout_threshold must be at least 1");
        }
        if self.login.username_lockout_threshold < self.login.lockout_threshold {
            bail!(
                "configuration: login.username_lockout_threshold must be at least login.lockout_threshold"
            );
        }
        if self.login.lockout_max < self.login.lockout_base {
            bail!("configuration: login.lockout_max must be at least login.lockout_base");
        }
        if self.login.lockout_reset < self.login.lockout_max {
            bail!("configuration: login.lockout_reset must be at least login.lockout_max");
        }
        if self.revocation.max_subscribers_per_client == 0 {
            bail!("configuration: revocation.max_subscribers_per_client must be at least 1");
        }
        if self.revocation.max_subscribers == 0 {
            bail!("configuration: revocation.max_subscribers must be at least 1");
        }
        if self.login.address_burst == 0 {
            bail!("configuration: login.address_burst must be at least 1");
        }
        Ok(())
    }

    /// The 32-byte key-encryption key, decoded. Errors name the key.
    pub fn encryption_key(&self) -> anyhow::Result<[u8; 32]> {
        let Some(secret) = &self.keys.encryption_key else {
            bail!(
                "configuration: keys.encryption_key is not set (TESSERA__KEYS__ENCRYPTION_KEY, 32 bytes base64)"
            );
        };
        if self.environment == Environment::Production
            && PUBLISHED_ENCRYPTION_KEYS.contains(&secret.expose_secret().trim())
        {
            bail!(
                "configuration: keys.encryption_key is a key published in this repository; generate one with `openssl rand -base64 32`"
            );
        }
        decode_key(secret).ok_or_else(|| {
            anyhow::anyhow!("configuration: keys.encryption_key must be 32 bytes, base64-encoded")
        })
    }

    /// Every key-encryption key, decoded: the current one, then
    /// `keys.previous_encryption_keys` in order. Errors name the entry, never
    /// its value. A previous key may be a published one (what a deployment
    /// moves away from), but not the current key again: that is a copy
    /// mistake that would leave the old key out.
    pub fn encryption_keys(&self) -> anyhow::Result<Vec<[u8; 32]>> {
        let mut keys = vec![self.encryption_key()?];
        for (n, secret) in self.keys.previous_encryption_keys.iter().enumerate() {
            let n = n + 1;
            let key = decode_key(secret).ok_or_else(|| {
                anyhow::anyhow!(
                    "configuration: keys.previous_encryption_keys entry {n} must be 32 bytes, base64-encoded"
                )
            })?;
            if keys.contains(&key) {
                bail!(
                    "configuration: keys.previous_encryption_keys entry {n} repeats keys.encryption_key or an earlier entry"
                );
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// The shortest safe wait before a rotated-in key signs: every verifier's
    /// cached JWKS and every instance's key set must include it first.
    pub fn min_rotation_delay(&self) -> Duration {
        self.keys.jwks_max_age + self.keys.reload_interval
    }

    /// Connections each listener accepts: `http.max_connections`, or 1024
    /// per CPU when it is 0.
    pub fn connections_per_listener(&self) -> usize {
        match self.http.max_connections {
            0 => 1024 * cpus(),
            n => n,
        }
    }

    /// Passwords hashed at once: `password.max_concurrent`, or one per CPU
    /// when it is 0.
    pub fn hashing_slots(&self) -> usize {
        match self.password.max_concurrent {
            0 => cpus(),
            n => n,
        }
    }
}

/// CPUs this process may use (one worker thread per listener for each).
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A 32-byte key written in base64.
fn decode_key(secret: &SecretString) -> Option<[u8; 32]> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.expose_secret().trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
}

/// Lists of secrets, written as a YAML list or (from an environment
/// variable) as one string separated by commas or whitespace, which base64
/// never holds. An empty string is an empty list.
mod secret_list {
    use secrecy::SecretString;
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
        let items = match Raw::deserialize(d)? {
            Raw::List(items) => items,
            Raw::Text(text) => text
                .split(|c: char| c == ',' || c.is_whitespace())
                .map(str::to_owned)
                .collect(),
        };
        Ok(items
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .map(SecretString::from)
            .collect())
    }
}

/// CIDR lists, written as a YAML list or (from an environment variable) as
/// one comma-separated string; a bare address means just that address.
mod cidrs {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        let items = match Raw::deserialize(d)? {
            Raw::List(items) => items,
            Raw::Text(text) => text.split(',').map(str::to_owned).collect(),
        };
        items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| D::Error::custom(format!("`{s}` is not a CIDR (e.g. 10.0.0.0/8)")))
            })
            .collect()
    }
}

/// Variables of this process that look meant for Tessera but are not read:
/// a single underscore after `TESSERA` (`TESSERA_DATABASE_URL`), or the
/// `DATABASE_URL` other tools use. Each with the spelling that is read.
pub fn misspelt_variables() -> Vec<String> {
    const READ: [&str; 2] = ["TESSERA_ENV", "TESSERA_CONFIG_DIR"];
    let mut found = Vec::new();
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(rest) = name.strip_prefix("TESSERA_")
            && !rest.starts_with('_')
            && !READ.contains(&name)
        {
            let meant = rest.replacen('_', "__", 1);
            found.push(format!(
                "{name} is not read: settings are TESSERA__SECTION__KEY (did you mean TESSERA__{meant}?)"
            ));
        }
        if name == "DATABASE_URL" {
            found
                .push("DATABASE_URL is not read by Tessera: set TESSERA__DATABASE__URL".to_owned());
        }
    }
    found.sort();
    found
}

/// The files of a configuration directory that apply to `environment`, in
/// order: `base.yaml`, then `<environment>.yaml`. At least one must exist.
fn overlay_files(dir: &Path, environment: Environment) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!(
            "configuration: the configuration directory {} (--config or TESSERA_CONFIG_DIR) does not exist",
            dir.display()
        );
    }
    let overlay = format!("{}.yaml", environment.as_str());
    let files: Vec<PathBuf> = ["base.yaml", overlay.as_str()]
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.is_file())
        .collect();
    if files.is_empty() {
        bail!(
            "configuration: the configuration directory {} holds neither base.yaml nor {overlay} (TESSERA_ENV={})",
            dir.display(),
            environment.as_str()
        );
    }
    Ok(files)
}

/// Durations are written `30s`, `10m`, `12h`, `30d` or as plain seconds.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => parse(&t).ok_or_else(|| {
                D::Error::custom(format!(
                    "`{t}` is not a duration (use e.g. 30s, 10m, 12h, 30d)"
                ))
            }),
        }
    }

    /// An optional duration (absent: `None`).
    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        deserialize(d).map(Some)
    }

    pub fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits.parse().ok()?;
        let factor = match unit.trim() {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return None,
        };
        n.checked_mul(factor).map(Duration::from_secs)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_units_and_rejects_garbage() {
            assert_eq!(parse("90"), Some(Duration::from_secs(90)));
            assert_eq!(parse("10m"), Some(Duration::from_secs(600)));
            assert_eq!(parse("30d"), Some(Duration::from_secs(30 * 86400)));
            assert_eq!(parse("0s"), Some(Duration::ZERO));
            assert_eq!(parse("ten minutes"), None);
            assert_eq!(parse("5w"), None);
            assert_eq!(parse(""), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// A fresh empty directory under the system temp dir.
    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tessera-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_built_in_local_profile_needs_nothing_else() {
        let settings = Settings::load(Sources {
            dir: None,
            environment: Some(Environment::Local),
            vars: vars(&[]),
        })
        .unwrap();
        assert_eq!(settings.http.public_addr, "0.0.0.0:8080");
        assert_eq!(settings.log.format, LogFormat::Pretty);
        assert!(settings.database.url.is_some());
    }

    #[test]
    fn built_in_production_requires_the_secrets_from_the_environment() {
        let error = Settings::load(Sources {
            dir: None,
            environment: Some(Environment::Production),
            vars: vars(&[]),
        })
        .unwrap_err();
        // Both missing secrets, in one report.
        assert!(
            format!("{error:#}").contains("TESSERA__DATABASE__URL")
                && format!("{error:#}").contains("TESSERA__KEYS__ENCRYPTION_KEY"),
            "{error:#}"
        );
        let url = ("TESSERA__DATABASE__URL", "postgres://u@db/tessera");
        let error = Settings::load(Sources {
            dir: None,
            environment: Some(Environment::Production),
            vars: vars(&[url]),
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("TESSERA__KEYS__ENCRYPTION_KEY"));
        let key = (
            "TESSERA__KEYS__ENCRYPTION_KEY",
            "bm90LXRoZS1leGFtcGxlLWtleS0zMi1ieXRlcy0hISE=",
        );
        let settings = Settings::load(Sources {
            dir: None,
            environment: Some(Environment::Production),
            vars: vars(&[url, key]),
        })
        .unwrap();
        assert_eq!(settings.log.format, LogFormat::Json);
    }

    #[test]
    fn a_configuration_directory_goes_over_the_built_in_files_and_under_variables() {
        let dir = temp_dir();
        std::fs::write(
            dir.join("base.yaml"),
            "audience: from-base\nissuer: https://base\n",
        )
        .unwrap();
        std::fs::write(dir.join("local.yaml"), "audience: from-local\n").unwrap();
        let settings = Settings::load(Sources {
            dir: Some(dir.clone()),
            environment: Some(Environment::Local),
            vars: vars(&[]),
        })
        .unwrap();
        assert_eq!(settings.audience, "from-local");
        assert_eq!(settings.issuer, "https://base");
        // Everything the directory does not set keeps its built-in value.
        assert_eq!(settings.keys.jwks_max_age, Duration::from_secs(300));
        let env = vars(&[("TESSERA__AUDIENCE", "from-env")]);
        let settings = Settings::load(Sources {
            dir: Some(dir.clone()),
            environment: Some(Environment::Local),
            vars: env,
        })
        .unwrap();
        assert_eq!(settings.audience, "from-env");
        // base.yaml alone applies to every environment.
        std::fs::remove_file(dir.join("local.yaml")).unwrap();
        let settings = Settings::load(Sources {
            dir: Some(dir.clone()),
            environment: Some(Environment::Local),
            vars: vars(&[]),
        })
        .unwrap();
        assert_eq!(settings.audience, "from-base");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_configuration_directory_that_was_asked_for_must_be_there() {
        let missing = std::env::temp_dir().join("tessera-config-does-not-exist");
        let error = Settings::load(Sources {
            dir: Some(missing.clone()),
            environment: Some(Environment::Local),
            vars: vars(&[]),
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("does not exist"), "{error:#}");

        // A directory holding only another environment's file is a mistake too.
        let dir = temp_dir();
        std::fs::write(dir.join("production.yaml"), "audience: x\n").unwrap();
        let error = Settings::load(Sources {
            dir: Some(dir.clone()),
            environment: Some(Environment::Local),
            vars: vars(&[]),
        })
        .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("neither base.yaml nor local.yaml"),
            "{message}"
        );

        // And a file in it that does not parse, or sets an unknown key.
        std::fs::write(dir.join("local.yaml"), "audeince: x\n").unwrap();
        let error = Settings::load(Sources {
            dir: Some(dir.clone()),
            environment: Some(Environment::Local),
            vars: vars(&[]),
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("audeince"), "{error:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn trusted_proxies_come_as_a_list_or_a_comma_separated_variable() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let defaults = Settings::load(Sources {
            dir: Some(dir.clone()),
            environment: Some(Environment::Local),
            vars: Some(Default::default()),
        })
        .unwrap();
        assert!(defaults.http.trusted_proxies.is_empty());
        let vars = [(
            "TESSERA__HTTP__TRUSTED_PROXIES".to_owned(),
            "10.0.0.0/8, 192.0.2.1,2001:db8::/32".to_owned(),
        )];
        let settings = Settings::load(Sources {
            dir: Some(dir.clone()),
            environment: Some(Environment::Local),
            vars: Some(vars.into_iter().collect()),
        })
        .unwrap();
        let nets: Vec<String> = settings
            .http
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]);
        assert_eq!(settings.login.lockout_threshold, 10);
        assert_eq!(settings.http.body_timeout, Duration::from_secs(10));
        assert_eq!(
            settings.revocation.stream_keepalive,
            Duration::from_secs(15)
        );
        assert_eq!(settings.revocation.max_subscribers, 256);
    }

    #[test]
    fn previous_encryption_keys_come_as_a_list_or_one_variable() {
        let current = "bm90LXRoZS1leGFtcGxlLWtleS0zMi1ieXRlcy0hISE=";
        let (a, b) = (
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        );
        let load = |pairs: &[(&str, &str)]| {
            Settings::load(Sources {
                dir: None,
                environment: Some(Environment::Local),
                vars: vars(pairs),
            })
        };
        // None by default: the current key alone.
        let settings = load(&[("TESSERA__KEYS__ENCRYPTION_KEY", current)]).unwrap();
        assert_eq!(settings.encryption_keys().unwrap().len(), 1);
        // Commas or spaces between them; an empty variable is no key.
        for list in [
            format!("{a},{b}"),
            format!(" {a} {b} "),
            format!("{a}, {b},"),
        ] {
            let settings = load(&[
                ("TESSERA__KEYS__ENCRYPTION_KEY", current),
                ("TESSERA__KEYS__PREVIOUS_ENCRYPTION_KEYS", &list),
            ])
            .unwrap();
            let keys = settings.encryption_keys().unwrap();
            assert_eq!(keys.len(), 3, "{list}");
            assert_eq!(keys[1], [0u8; 32]);
            assert_eq!(keys[2], [1u8; 32]);
        }
        let settings = load(&[("TESSERA__KEYS__PREVIOUS_ENCRYPTION_KEYS", "")]).unwrap();
        assert_eq!(settings.encryption_keys().unwrap().len(), 1);
        // A YAML list in a configuration directory.
        let dir = temp_dir();
        std::fs::write(
            dir.join("base.yaml"),
            format!("keys:\n  previous_encryption_keys:\n    - {a}\n    - {b}\n"),
        )
        .unwrap();
        let settings = Settings::load(Sources {
            dir: Some(dir.clone()),
            environment: Some(Environment::Local),
            vars: vars(&[]),
        })
        .unwrap();
        assert_eq!(settings.encryption_keys().unwrap().len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
        // A bad entry is named by its place, never shown; so is a repeat.
        let error = load(&[(
            "TESSERA__KEYS__PREVIOUS_ENCRYPTION_KEYS",
            &format!("{a},not-a-key-at-all"),
        )])
        .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("keys.previous_encryption_keys entry 2")
                && !message.contains("not-a-key-at-all"),
            "{message}"
        );
        let error = load(&[
            ("TESSERA__KEYS__ENCRYPTION_KEY", current),
            ("TESSERA__KEYS__PREVIOUS_ENCRYPTION_KEYS", current),
        ])
        .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("entry 1 repeats keys.encryption_key") && !message.contains(current),
            "{message}"
        );
        // Debug output (a logged Settings) never shows them.
        let settings = load(&[("TESSERA__KEYS__PREVIOUS_ENCRYPTION_KEYS", a)]).unwrap();
        assert!(!format!("{settings:?}").contains(a));
    }
}
