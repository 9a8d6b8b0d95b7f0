//! `tessera resource ...`: the APIs (RFC 8707 resources) that accept
//! Tessera's tokens.

use std::time::Duration;

use clap::Subcommand;

use super::{Operator, ScopeArg, parse_duration};
use crate::config::Settings;
use crate::ops::{NewResource, Reason};

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Register a resource: an absolute URI (no fragment), the scopes it
    /// accepts, optionally its own access-token lifetime. Clients ask for
    /// it once allowed (`tessera client set-resources`).
    Create {
        uri: String,
        #[command(flatten)]
        scope: ScopeArg,
        /// Access tokens for it live this long (at most tokens.max_access_ttl).
        #[arg(long, value_parser = parse_duration)]
        access_ttl: Option<Duration>,
    },
    /// List the resources: URI, scopes, lifetime, the clients allowed each.
    List,
    /// Delete a resource: no client can ask for it any more (tokens issued
    /// for it live until they expire).
    Delete { uri: String },
}

pub async fn run(settings: &Settings, command: ResourceCommand) -> anyhow::Result<()> {
    let cx = Operator::new(settings).await?;
    let ops = cx.ops(settings);
    let (actor, none, now) = (&cx.actor, &Reason::none(), cx.now);
    match command {
        ResourceCommand::Create {
            uri,
            scope,
            access_ttl,
        } => {
            let new = NewResource {
                uri,
                scopes: scope.scopes,
                access_ttl,
            };
            let resource = ops.create_resource(actor, new, none, now).await?;
            println!("created resource {}", resource.uri);
        }
        ResourceCommand::List => {
            let listed = ops.list_resources().await?;
            let width = listed
                .iter()
                .map(|l| l.resource.uri.as_str().len())
                .max()
                .unwrap_or(0)
                .max(3);
            println!(
                "{:<width$}  {:<10}  {:<30}  CLIENTS",
                "URI", "ACCESS_TTL", "SCOPES"
            );
            for l in listed {
                let ttl = l
                    .resource
                    .access_ttl
                    .map_or_else(|| "-".to_owned(), |d| format!("{}s", d.as_secs()));
                println!(
                    "{:<width$}  {ttl:<10}  {:<30}  {}",
                    l.resource.uri.as_str(),
                    l.resource.scopes.to_string(),
                    l.clients.join(",")
                );
            }
        }
        ResourceCommand::Delete { uri } => {
            ops.delete_resource(actor, &uri, none, now).await?;
            println!("deleted resource {uri}");
        }
    }
    Ok(())
}
