//! The `tessera` command line. Secrets (passwords, client secrets) are read
//! from standard input, never from arguments, so they stay out of shell
//! history and process listings.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use sqlx::PgPool;

use crate::clock::Clock;
use crate::config::{LogFormat, Settings};
use crate::domain::{ClientSecret, PasswordHasher, PlainPassword, Scope, Username};
use crate::grants::GRANT_TYPES;
use crate::keys::{KeyEncryptionKey, KeyRing, SigningAlgorithm};
use crate::startup::{Application, Options};
use crate::store::{self, clients, users};

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
Set issuer (TESSERA__ISSUER) to the public URL clients use. Every key and its
default: README.md, section Configuration.";

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
    User(UserCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        username: String,
        /// Read the password from standard input (required: never pass it as an argument).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        scope: ScopeArg,
    },
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a client. Without --public or --secret-stdin a secret is
    /// generated and printed once.
    Create {
        client_id: String,
        /// A public client (mobile app): no secret, identified by client_id alone.
        #[arg(long, conflicts_with = "secret_stdin")]
        public: bool,
        /// Read the client secret (at least 32 characters) from standard input.
        #[arg(long)]
        secret_stdin: bool,
        /// Comma-separated grant types: password, refresh_token, client_credentials.
        #[arg(long = "grant", value_delimiter = ',', required = true)]
        grants: Vec<String>,
        #[command(flatten)]
        scope: ScopeArg,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a new signing key. It is published at once and starts signing
    /// after --delay (default keys.rotation_delay); the old key stays
    /// published until the tokens it signed have expired.
    Rotate {
        #[arg(long, value_parser = parse_duration)]
        delay: Option<Duration>,
        /// Allow a delay shorter than keys.jwks_max_age + keys.reload_interval
        /// (emergency rotation after a compromise; verifiers with a cached
        /// JWKS may reject tokens of the new key until they refetch).
        #[arg(long)]
        force: bool,
        /// Algorithm of the new key (default keys.algorithm): ES256, EdDSA or RS256.
        #[arg(long)]
        algorithm: Option<SigningAlgorithm>,
    },
    /// Show every key with its state and dates.
    List,
}

#[derive(Debug, Args)]
struct ScopeArg {
    /// Allowed scopes, space-separated or repeated.
    #[arg(long = "scope")]
    scopes: Vec<String>,
}

impl ScopeArg {
    fn parse(&self) -> anyhow::Result<Scope> {
        Scope::from_tokens(&self.scopes).context("--scope")
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::duration::parse(s)
        .ok_or_else(|| format!("`{s}` is not a duration (e.g. 0s, 10m, 1h)"))
}

pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load_with(cli.config.as_deref())?;
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

    if let Command::Healthcheck = cli.command {
        return healthcheck(&settings.http.public_addr);
    }
    match cli.command {
        Command::Healthcheck => Ok(()),
        Command::Serve { migrate } => {
            let app = Application::build(settings, Options { migrate }).await?;
            app.run_until_stopped().await
        }
        Command::Migrate => {
            store::create_database_if_missing(&settings.database).await?;
            let pool = connect(&settings).await?;
            store::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::User(UserCommand::Create {
            username,
            password_stdin: _,
            scope,
        }) => {
            let username = Username::parse(&username)?;
            let scope = scope.parse()?;
            let password = PlainPassword::new_password(
                read_secret("password")?,
                settings.password.max_length,
            )?;
            let hasher = PasswordHasher::new(&settings.password, 1)?;
            let hash = hasher.hash(password).await?;
            let pool = connect(&settings).await?;
            let id = users::insert(
                &pool,
                username.as_str(),
                &hash,
                &scope.tokens(),
                Clock::default().now(),
            )
            .await?;
            println!("created user {username} with id {id}");
            Ok(())
        }
        Command::Client(ClientCommand::Create {
            client_id,
            public,
            secret_stdin,
            grants,
            scope,
        }) => {
            if client_id.is_empty()
                || client_id.len() > 255
                || client_id.chars().any(|c| c.is_control() || c == ':')
            {
                bail!("client_id must be 1 to 255 characters, without control characters or `:`");
            }
            for grant in &grants {
                if !GRANT_TYPES.contains(&grant.as_str()) {
                    bail!(
                        "--grant: unknown grant type `{grant}` (supported: {})",
                        GRANT_TYPES.join(", ")
                    );
                }
            }
            if public && grants.iter().any(|g| g == "client_credentials") {
                bail!("--grant client_credentials needs a confidential client (drop --public)");
            }
            let scope = scope.parse()?;
            let (secret, generated) = match (public, secret_stdin) {
                (true, _) => (None, false),
                (false, true) => (
                    Some(ClientSecret::parse(read_secret("client secret")?)?),
                    false,
                ),
                (false, false) => (Some(ClientSecret::generate()), true),
            };
            let pool = connect(&settings).await?;
            let hash = secret.as_ref().map(|s| s.hash());
            let now = Clock::default().now();
            clients::insert(
                &pool,
                &client_id,
                hash.as_ref().map(|h| h.as_bytes()),
                &grants,
                &scope.tokens(),
                now,
            )
            .await?;
            println!("created client {client_id}");
            if let (Some(secret), true) = (secret, generated) {
                println!("client_secret: {}", secret.expose());
                eprintln!("Store this secret now: it is not shown again and cannot be recovered.");
            }
            Ok(())
        }
        Command::Keys(command) => {
            let pool = connect(&settings).await?;
            let ring = KeyRing::new(
                KeyEncryptionKey::new(&settings.encryption_key()?)?,
                settings.tokens.access_ttl,
            )?;
            let now = Clock::default().now();
            if let KeysCommand::Rotate {
                delay,
                force,
                algorithm,
            } = command
            {
                let algorithm = algorithm.unwrap_or(settings.keys.algorithm);
                let delay = delay.unwrap_or(settings.keys.rotation_delay);
                let minimum = settings.min_rotation_delay();
                if delay < minimum && !force {
                    bail!(
                        "--delay below {}s lets the new key sign before verifiers and other instances know it; add --force for an emergency rotation",
                        minimum.as_secs()
                    );
                }
                let kid = ring
                    .rotate(&mut *pool.acquire().await?, algorithm, now, delay)
                    .await?;
                println!(
                    "new {} key {kid} activates in {}s",
                    algorithm.as_str(),
                    delay.as_secs()
                );
            }
            ring.reload(&pool, now).await?;
            println!(
                "{:<44} {:<6} {:<8} {:<26} {:<26} {:<26}",
                "KID", "ALG", "STATE", "ACTIVATES", "RETIRED", "EXPIRES"
            );
            let date = |d: Option<chrono::DateTime<chrono::Utc>>| {
                d.map(|d| d.to_rfc3339()).unwrap_or_else(|| "-".into())
            };
            for key in ring.list(now) {
                println!(
                    "{:<44} {:<6} {:<8} {:<26} {:<26} {:<26}",
                    key.kid,
                    key.algorithm.as_str(),
                    format!("{:?}", key.state).to_lowercase(),
                    key.activates_at.to_rfc3339(),
                    date(key.retired_at),
                    date(key.expires_at)
                );
            }
            Ok(())
        }
    }
}

/// One direct connection attempt first: an operator at a terminal wants
/// "connection refused at host:port" now, not a pool timeout later.
async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    store::check_reachable(&settings.database).await?;
    store::pool(&settings.database)
}

/// One line from standard input, without its line ending.
fn read_secret(what: &str) -> anyhow::Result<SecretString> {
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
