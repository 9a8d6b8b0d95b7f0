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
use crate::config::{LogFormat, Settings, Sources};
use crate::domain::ClientSecret;
use crate::hashing::PasswordHasher;
use crate::keys::{KeyEncryptionKey, KeyRing, SigningAlgorithm};
use crate::ops::{Actor, NewClient, NewUser, Ops, Reason, RotateKey, SecretChoice};
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
    /// Lift a login lockout: forget the username's failed password logins.
    Unlock { username: String },
    /// Turn the user's second factor off (a lost phone): the next login
    /// asks for the password only, until they enroll again.
    MfaReset { username: String },
    /// List users (id, username, state), in username order.
    List {
        /// Start after this username (the last one of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// At most this many (up to 500).
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show one user by username: id, scopes, state, failed logins.
    Show { username: String },
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// List the registered clients: id, kind, state, whether DPoP is
    /// required, grants and scopes.
    List,
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
        /// Every token request must carry a DPoP proof (RFC 9449
        /// `dpop_bound_access_tokens`): the client only ever gets
        /// sender-constrained tokens.
        #[arg(long)]
        require_dpop: bool,
    },
    /// Whether every token request of the client must carry a DPoP proof
    /// (`dpop_bound_access_tokens`); from its next token request.
    SetDpop {
        client_id: String,
        /// `required`, or `optional` (bearer tokens without a proof).
        #[arg(value_parser = ["required", "optional"])]
        mode: String,
    },
    /// Disable a client: it gets no more tokens, and the tokens it holds are
    /// refused here while it is disabled (offline verifiers accept its
    /// access tokens until they expire, unless --revoke-tokens). Every
    /// instance applies it within a second.
    Disable {
        client_id: String,
        /// Also end every token it holds, for good and everywhere: its
        /// refresh tokens, and its access tokens through the revocation feed.
        #[arg(long)]
        revoke_tokens: bool,
    },
    /// Enable a disabled client again.
    Enable { client_id: String },
    /// Replace a confidential client's secret (the old one stops working at
    /// once). Without --secret-stdin a secret is generated and printed once.
    RotateSecret {
        client_id: String,
        /// Read the new secret (at least 32 characters) from standard input.
        #[arg(long)]
        secret_stdin: bool,
        /// Also end every token minted with the old secret (and its refresh
        /// tokens), at Tessera and at every verifier following the feed.
        #[arg(long)]
        revoke_tokens: bool,
    },
    /// Replace the grant types and scopes a client may ask for.
    SetGrants {
        client_id: String,
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

fn parse_duration(s: &str) -> Result<Duration, String> {
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
        Command::User(command) => user(&settings, command).await,
        Command::Client(command) => client(&settings, command).await,
        Command::Keys(command) => keys(&settings, command).await,
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
struct Operator {
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
                KeyEncryptionKey::new(&settings.encryption_key()?)?,
                settings.tokens.longest_access(),
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

async fn user(settings: &Settings, command: UserCommand) -> anyhow::Result<()> {
    let cx = Operator::new(settings).await?;
    let ops = cx.ops(settings);
    match command {
        UserCommand::Create {
            username, scope, ..
        } => {
            let new = NewUser {
                username,
                password: read_secret("password")?,
                scopes: scope.scopes,
            };
            let user = ops
                .create_user(&cx.actor, new, &Reason::none(), cx.now)
                .await?;
            println!("created user {} with id {}", user.username, user.id);
        }
        UserCommand::List { after, limit } => {
            let users = ops.find_users(None, after.as_deref(), limit).await?.users;
            let width = users
                .iter()
                .map(|u| u.username.len())
                .max()
                .unwrap_or(0)
                .max(8);
            println!("{:<36}  {:<width$}  STATE", "ID", "USERNAME");
            for user in users {
                let state = if user.disabled { "disabled" } else { "enabled" };
                println!("{:<36}  {:<width$}  {state}", user.id, user.username);
            }
        }
        UserCommand::Show { username } => {
            let Some(user) = ops.find_users(Some(&username), None, 1).await?.users.pop() else {
                bail!("no such user: {username}");
            };
            println!("id: {}", user.id);
            println!("username: {}", user.username);
            println!("scopes: {}", user.scopes.join(" "));
            println!("disabled: {}", user.disabled);
            println!("failed_logins: {}", user.failed_logins);
            println!("second_factor: {}", user.second_factor);
            if let Some(locked_until) = user.locked_until {
                println!(
                    "locked_until: {}",
                    locked_until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
        }
        UserCommand::MfaReset { username } => {
            let Some(user) = ops.find_users(Some(&username), None, 1).await?.users.pop() else {
                bail!("no such user: {username}");
            };
            ops.reset_mfa(&cx.actor, user.id, &Reason::none(), cx.now)
                .await?;
            println!("second factor of {username} turned off");
        }
        UserCommand::Unlock { username } => {
            if ops
                .unlock_username(&cx.actor, &username, &Reason::none(), cx.now)
                .await?
            {
                println!("unlocked {username}: failed logins forgotten");
            } else {
                println!("{username} had no failed logins");
            }
        }
    }
    Ok(())
}

async fn client(settings: &Settings, command: ClientCommand) -> anyhow::Result<()> {
    let cx = Operator::new(settings).await?;
    let ops = cx.ops(settings);
    let (actor, none, now) = (&cx.actor, &Reason::none(), cx.now);
    match command {
        ClientCommand::List => {
            let clients = ops.list_clients().await?;
            let width = clients
                .iter()
                .map(|c| c.id().len())
                .max()
                .unwrap_or(0)
                .max(9);
            println!(
                "{:<width$}  {:<12}  {:<8}  {:<8}  {:<40}  SCOPES",
                "CLIENT_ID", "KIND", "STATE", "DPOP", "GRANTS"
            );
            for client in clients {
                let kind = if client.is_confidential() {
                    "confidential"
                } else {
                    "public"
                };
                let state = if client.disabled {
                    "disabled"
                } else {
                    "enabled"
                };
                let dpop = if client.dpop_bound_access_tokens {
                    "required"
                } else {
                    "optional"
                };
                let grants: Vec<&str> = client.grants.iter().map(|g| g.as_str()).collect();
                println!(
                    "{:<width$}  {kind:<12}  {state:<8}  {dpop:<8}  {:<40}  {}",
                    client.id(),
                    grants.join(","),
                    client.scopes
                );
            }
        }
        ClientCommand::Create {
            client_id,
            public,
            secret_stdin,
            grants,
            scope,
            require_dpop,
        } => {
            let secret = match (public, secret_stdin) {
                (true, _) => SecretChoice::None,
                (false, true) => SecretChoice::Given(read_secret("client secret")?),
                (false, false) => SecretChoice::Generate,
            };
            let new = NewClient {
                id: client_id.clone(),
                secret,
                grants,
                scopes: scope.scopes,
                require_dpop,
            };
            let generated = ops.create_client(actor, new, none, now).await?;
            println!("created client {client_id}");
            print_generated(generated);
        }
        ClientCommand::SetDpop { client_id, mode } => {
            let required = mode == "required";
            ops.set_client_dpop_bound(actor, &client_id, required, none, now)
                .await?;
            println!("DPoP is {mode} for client {client_id}");
        }
        ClientCommand::Disable {
            client_id,
            revoke_tokens,
        } => {
            ops.set_client_disabled(actor, &client_id, true, revoke_tokens, none, now)
                .await?;
            println!("disabled client {client_id}");
            if revoke_tokens {
                println!("revoked every token of client {client_id}");
            }
        }
        ClientCommand::Enable { client_id } => {
            ops.set_client_disabled(actor, &client_id, false, false, none, now)
                .await?;
            println!("enabled client {client_id}");
        }
        ClientCommand::RotateSecret {
            client_id,
            secret_stdin,
            revoke_tokens,
        } => {
            let secret = if secret_stdin {
                SecretChoice::Given(read_secret("client secret")?)
            } else {
                SecretChoice::Generate
            };
            let generated = ops
                .rotate_client_secret(actor, &client_id, secret, revoke_tokens, none, now)
                .await?;
            println!("replaced the secret of client {client_id}");
            print_generated(generated);
        }
        ClientCommand::SetGrants {
            client_id,
            grants,
            scope,
        } => {
            ops.set_client_grants(actor, &client_id, &grants, &scope.scopes, none, now)
                .await?;
            println!("updated grant types and scopes of client {client_id}");
        }
    }
    Ok(())
}

fn print_generated(secret: Option<ClientSecret>) {
    if let Some(secret) = secret {
        println!("client_secret: {}", secret.expose());
        eprintln!("Store this secret now: it is not shown again and cannot be recovered.");
    }
}

async fn keys(settings: &Settings, command: KeysCommand) -> anyhow::Result<()> {
    let cx = Operator::new(settings).await?;
    let ops = cx.ops(settings);
    if let KeysCommand::Rotate {
        delay,
        force,
        algorithm,
    } = command
    {
        let algorithm = algorithm.unwrap_or(settings.keys.algorithm);
        let delay = delay.unwrap_or(settings.keys.rotation_delay);
        let rotate = RotateKey {
            delay: Some(delay),
            force,
            algorithm: Some(algorithm),
        };
        let kid = ops
            .rotate_key(&cx.actor, rotate, &Reason::none(), cx.now)
            .await?;
        println!(
            "new {} key {kid} activates in {}s",
            algorithm.as_str(),
            delay.as_secs()
        );
    }
    let keys = ops.list_keys(&cx.actor, cx.now).await?;
    // Whole seconds in UTC: every date is 20 characters, so columns line up.
    let date =
        |d: chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let maybe =
        |d: Option<chrono::DateTime<chrono::Utc>>| d.map(date).unwrap_or_else(|| "-".into());
    let kid_width = keys.iter().map(|k| k.kid.len()).max().unwrap_or(0).max(3);
    println!(
        "{:<kid_width$}  {:<6}  {:<8}  {:<20}  {:<20}  EXPIRES",
        "KID", "ALG", "STATE", "ACTIVATES", "RETIRED"
    );
    for key in keys {
        println!(
            "{:<kid_width$}  {:<6}  {:<8}  {:<20}  {:<20}  {}",
            key.kid,
            key.algorithm.as_str(),
            format!("{:?}", key.state).to_lowercase(),
            date(key.activates_at),
            maybe(key.retired_at),
            maybe(key.expires_at)
        );
    }
    Ok(())
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
