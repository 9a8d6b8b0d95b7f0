//! `tessera user ...`: users, their lockouts, second factor and attributes.

use anyhow::{Context, bail};
use clap::Subcommand;

use super::{Operator, ScopeArg, read_secret};
use crate::config::Settings;
use crate::ops::{NewUser, Reason};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
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
    /// Show one user by username: id, scopes, state, failed logins,
    /// attributes.
    Show { username: String },
    /// Replace the user's attributes with the JSON object on standard input
    /// (at most 2 KiB; for example {"roles": ["support"], "tenant": "acme"}).
    /// Access tokens of clients that pick them carry them from the next
    /// login or refresh.
    SetClaims { username: String },
}

pub async fn run(settings: &Settings, command: UserCommand) -> anyhow::Result<()> {
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
            println!("claims: {}", user.claims);
            if let Some(locked_until) = user.locked_until {
                println!(
                    "locked_until: {}",
                    locked_until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
        }
        UserCommand::SetClaims { username } => {
            let Some(user) = ops.find_users(Some(&username), None, 1).await?.users.pop() else {
                bail!("no such user: {username}");
            };
            let claims = read_json_object()?;
            let user = ops
                .set_user_claims(&cx.actor, user.id, claims, &Reason::none(), cx.now)
                .await?;
            println!("attributes of {username}: {}", user.claims);
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

/// A JSON object from standard input (at most 64 KiB read: the operation
/// bounds it further).
fn read_json_object() -> anyhow::Result<serde_json::Value> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .context("reading the attributes (a JSON object) from standard input")?;
    serde_json::from_str(&text).context("standard input is not a JSON object")
}
