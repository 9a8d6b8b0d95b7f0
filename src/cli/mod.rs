//! The `tessera` command line. Secrets (passwords, client secrets) are read
//! from standard input, never from arguments, so they stay out of shell
//! history and process listings.

mod client;
mod keys;
mod resource;
mod user;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use sqlx::PgPool;

use crate::clock::Clock;
use crate::config::{LogFormat, Settings, Sources};
use crate::hashing::PasswordHasher;
use crate::keys::{KeyEncryptionKeys, KeyRing};
use crate::ops::{Actor, Ops};
use crate::startup::{Application, Options};
use crate::store;

/// Where settings come from; shown by `tessera --help` and `tessera serve --help`.
const CONFIGURATION_HELP: &str = "\
Configuration, later sources winning:
  1. defaults built into this binary (the repository's config/base.yaml);
  2. the built-in profile that TESSERA_ENV names: `local` (the default: Postgres
     at postgres://postgres@127.0.0.1:5432/tessera and a public development key)
     or `production` (JSON logs, nothing secret built in);
  3. with --config DIR (or TESSERA_CONFIG_DIR=DIR): DIR/base.yaml, then
     DIR/<TESSERA_ENV>.yaml; DIR must exist and hold at least one of them;
  4. environment variables TESSERA__SECTION__KEY, for example
     TESSERA__DATABASE__URL or TESSERA__TOKENS__ACCESS_TTL=10m.

Required (built in for `local` only):
  database.url         TESSERA__DATABASE__URL=postgres://USER:PASSWORD@HOST:5432/tessera
  keys.encryption_key  TESSERA__KEYS__ENCRYPTION_KEY=<32 random bytes, base64:
                       openssl rand -base64 32>; production refuses the keys
                       published in the repository
While replacing keys.encryption_key, the old key goes in
  TESSERA__KEYS__PREVIOUS_ENCRYPTION_KEYS (comma-separated) until
  `tessera keys rewrap` has re-sealed everything under the new one.
Set issuer (TESSERA__ISSUER) to the public URL clients use. Every key and its
default: docs/configuration.md.";

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "OAuth 2.0 token issuer",
    after_help = CONFIGURATION_HELP
)]
pub struct Cli {
    /// A directory of YAML files read over the built-in defaults: base.yaml,
    /// then <TESSERA_ENV>.yaml.
    #[arg(long, global = true, value_name = "DIR", env = "TESSERA_CONFIG_DIR")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service.
    #[command(after_help = CONFIGURATION_HELP)]
    Serve {
        /// Apply pending database migrations before becoming ready.
        #[arg(long)]
        migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Exit 0 if the local service answers /readyz with 200 (for container health checks).
    Healthcheck,
    /// Manage users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage resources (RFC 8707): the APIs that accept Tessera's tokens.
    #[command(subcommand)]
    Resource(resource::ResourceCommand),
}

#[derive(Debug, Args)]
pub(crate) struct ScopeArg {
    /// Allowed scopes, space-separated or repeated.
    #[arg(long = "scope")]
    pub(crate) scopes: Vec<String>,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::duration::parse(s)
        .ok_or_else(|| format!("`{s}` is not a duration (e.g. 0s, 10m, 1h)"))
}

pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(Sources {
        dir: cli.config.clone(),
        ..Sources::default()
    })?;
    let serving = matches!(cli.command, Command::Serve { .. });
    // Commands other than `serve` only log warnings, keeping their output clean.
    let level = if serving {
        settings.log.level.clone()
    } else {
        "warn".to_owned()
    };
    let format = if serving {
        settings.log.format
    } else {
        LogFormat::Pretty
    };
    crate::telemetry::init(format, &level, std::io::stderr)?;
    for warning in crate::config::misspelt_variables() {
        tracing::warn!("{warning}");
    }

    match cli.command {
        Command::Healthcheck => healthcheck(&settings.http.public_addr),
        Command::Serve { migrate } => {
            let app = Application::build(settings, Options { migrate }).await?;
            app.run_until_stopped().await
        }
        Command::Migrate => migrate(&settings).await,
        Command::User(command) => user::run(&settings, command).await.map_err(explain),
        Command::Client(command) => client::run(&settings, command).await.map_err(explain),
        Command::Keys(command) => keys::run(&settings, command).await.map_err(explain),
        Command::Resource(command) => resource::run(&settings, command).await.map_err(explain),
    }
}

/// An operator at a terminal needs the cause: what the service answers as
/// a bare `server_error` is printed with its chain and SQLSTATE.
fn explain(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<crate::error::Error>() {
        Ok(crate::error::Error::Internal(inner)) => anyhow::anyhow!(crate::error::describe(&inner)),
        Ok(other) => other.into(),
        Err(e) => e,
    }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    store::create_database_if_missing(&settings.database).await?;
    let pool = connect(settings).await?;
    store::migrate(&pool).await?;
    println!("migrations applied");
    Ok(())
}

/// What the operations need, for one command.
pub(crate) struct Operator {
    pool: PgPool,
    hasher: PasswordHasher,
    keys: KeyRing,
    actor: Actor,
    now: chrono::DateTime<chrono::Utc>,
}

impl Operator {
    async fn new(settings: &Settings) -> anyhow::Result<Operator> {
        Ok(Operator {
            pool: connect(settings).await?,
            hasher: PasswordHasher::new(&settings.password, 1)?,
            keys: KeyRing::new(
                std::sync::Arc::new(KeyEncryptionKeys::from_settings(settings)?),
                settings.tokens.longest_access(),
                std::sync::Arc::default(),
            )?,
            actor: Actor::Cli { os_user: os_user() },
            now: Clock::default().now(),
        })
    }

    fn ops<'a>(&'a self, settings: &'a Settings) -> Ops<'a> {
        Ops {
            pool: &self.pool,
            settings,
            hasher: &self.hasher,
            keys: &self.keys,
            denylist: None,
        }
    }
}

/// `$USER` (or `$LOGNAME`) as the shell has it, with the real uid, which
/// the environment cannot fake.
fn os_user() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|_| "unknown".into());
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(name) if !name.is_empty() => format!("{name} (uid {uid})"),
        _ => format!("uid {uid}"),
    }
}

/// One direct connection attempt first: an operator at a terminal wants
/// "connection refused at host:port" now, not a pool timeout later.
async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    store::check_reachable(&settings.database).await?;
    store::pool(&settings.database)
}

/// One line from standard input, without its line ending.
pub(crate) fn read_secret(what: &str) -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Enter the {what}, then press Enter:");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let trimmed = line.trim_end_matches(['\r', '\n']).to_owned();
    if trimmed.is_empty() {
        bail!("no {what} on standard input");
    }
    Ok(SecretString::from(trimmed))
}

/// A bare HTTP/1.1 GET of /readyz on the public port, so container images
/// need no curl. Runs before telemetry and the database pool are set up.
fn healthcheck(public_addr: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let port = public_addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .context("http.public_addr has no port")?;
    let timeout = Duration::from_secs(3);
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, timeout).context("service not listening")?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).context("no HTTP response")?;
    if &head[9..12] != b"200" {
        bail!("not ready (HTTP {})", String::from_utf8_lossy(&head[9..12]));
    }
    Ok(())
}
