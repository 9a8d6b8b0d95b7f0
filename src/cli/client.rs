//! `tessera client ...`: the registered OAuth clients.

use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;

use super::{Operator, ScopeArg, parse_duration, read_secret};
use crate::config::Settings;
use crate::domain::client::Lifetimes;
use crate::domain::{Client, ClientSecret};
use crate::ops::{NewClient, Reason, SecretChoice};

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
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
    /// Show one client: kind, state, grants, scopes, resources, lifetimes
    /// and the attributes its tokens carry.
    Show { client_id: String },
    /// Replace the resources (RFC 8707) the client may ask tokens for, each
    /// registered with `tessera resource create`; none: the default
    /// audience only.
    SetResources {
        client_id: String,
        /// Resource URIs, exactly as registered.
        uris: Vec<String>,
    },
    /// Set the client's own lifetimes, each within the configured maximum
    /// (tokens.max_access_ttl, tokens.max_refresh_ttl); an option left out
    /// goes back to the server's default. The access lifetime and the idle
    /// limit apply from the next token; the longest session, from the next
    /// login (a session's end is fixed when it starts).
    SetLifetimes {
        client_id: String,
        /// Access tokens (unless a resource sets its own).
        #[arg(long, value_parser = parse_duration)]
        access_ttl: Option<Duration>,
        /// A session unused this long ends.
        #[arg(long, value_parser = parse_duration)]
        refresh_idle: Option<Duration>,
        /// A session ends this long after its login, however used.
        #[arg(long, value_parser = parse_duration)]
        refresh_max: Option<Duration>,
    },
    /// Choose which user attributes the client's access tokens carry
    /// (none: no attributes, the default).
    SetClaims {
        client_id: String,
        /// Attribute names, for example: roles tenant.
        names: Vec<String>,
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

pub async fn run(settings: &Settings, command: ClientCommand) -> anyhow::Result<()> {
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
        ClientCommand::Show { client_id } => {
            let Some(client) = ops
                .list_clients()
                .await?
                .into_iter()
                .find(|c| c.id() == client_id)
            else {
                bail!("no such client: {client_id}");
            };
            show(&client, settings);
        }
        ClientCommand::SetResources { client_id, uris } => {
            ops.set_client_resources(actor, &client_id, &uris, none, now)
                .await?;
            if uris.is_empty() {
                println!("client {client_id} gets tokens for the default audience only");
            } else {
                println!("client {client_id} may ask for: {}", uris.join(" "));
            }
        }
        ClientCommand::SetLifetimes {
            client_id,
            access_ttl,
            refresh_idle,
            refresh_max,
        } => {
            let lifetimes = Lifetimes {
                access: access_ttl,
                refresh_idle,
                refresh_max,
            };
            ops.set_client_lifetimes(actor, &client_id, lifetimes, none, now)
                .await?;
            println!("updated the lifetimes of client {client_id}");
        }
        ClientCommand::SetClaims { client_id, names } => {
            ops.set_client_claims(actor, &client_id, &names, none, now)
                .await?;
            if names.is_empty() {
                println!("client {client_id}'s tokens carry no user attributes");
            } else {
                println!("client {client_id}'s tokens carry: {}", names.join(" "));
            }
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

/// One client, one field per line (never its secret).
fn show(client: &Client, settings: &Settings) {
    let secs = |d: Option<Duration>, default: &str| {
        d.map_or_else(
            || format!("{default} (server default)"),
            |d| format!("{}s", d.as_secs()),
        )
    };
    let tokens = &settings.tokens;
    println!("client_id: {}", client.id());
    println!(
        "kind: {}",
        if client.is_confidential() {
            "confidential"
        } else {
            "public"
        }
    );
    println!("disabled: {}", client.disabled);
    println!(
        "dpop_bound_access_tokens: {}",
        client.dpop_bound_access_tokens
    );
    let grants: Vec<&str> = client.grants.iter().map(|g| g.as_str()).collect();
    println!("grant_types: {}", grants.join(","));
    println!("scope: {}", client.scopes);
    let resources: Vec<&str> = client.resources.iter().map(|r| r.uri.as_str()).collect();
    println!("resources: {}", resources.join(" "));
    println!(
        "access_ttl: {}",
        secs(
            client.lifetimes.access,
            &format!("{}s", tokens.access_ttl.as_secs())
        )
    );
    let idle = tokens
        .refresh_idle
        .map_or_else(|| "none".to_owned(), |d| format!("{}s", d.as_secs()));
    println!(
        "refresh_idle: {}",
        secs(client.lifetimes.refresh_idle, &idle)
    );
    println!(
        "refresh_max: {}",
        secs(
            client.lifetimes.refresh_max,
            &format!("{}s", tokens.refresh_ttl.as_secs())
        )
    );
    let claims: Vec<&str> = client.claims.iter().map(|c| c.as_str()).collect();
    println!("claims: {}", claims.join(" "));
}
