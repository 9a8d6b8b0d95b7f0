//! `tessera keys ...`: signing keys.

use std::time::Duration;

use clap::Subcommand;

use super::{Operator, parse_duration};
use crate::config::Settings;
use crate::keys::SigningAlgorithm;
use crate::ops::{Reason, RotateKey};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
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
    /// Distrust a signing key after a compromise, for good: it leaves the
    /// JWKS, every instance and every verifier following the revocation
    /// feed refuses its tokens within a second, and if it was signing, a new
    /// key signs at once. Refresh tokens live on: apps get tokens of the new
    /// key at their next refresh.
    Distrust {
        kid: String,
        /// Why (required; kept with the key and in the audit trail).
        #[arg(long, required = true)]
        reason: String,
        /// Also end every session whose current access token the key signed
        /// (when the key leaked together with data).
        #[arg(long)]
        revoke_sessions: bool,
    },
    /// Show every key with its state and dates, distrusted ones last.
    List,
    /// Re-seal every stored signing key, TOTP secret and deployment secret
    /// under the current key-encryption key (keys.encryption_key), in one
    /// transaction; afterwards keys.previous_encryption_keys can be emptied.
    /// Refuses, changing nothing, if a row opens under no configured key.
    /// Running it again re-seals nothing.
    Rewrap,
}

pub async fn run(settings: &Settings, command: KeysCommand) -> anyhow::Result<()> {
    let cx = Operator::new(settings).await?;
    let ops = cx.ops(settings);
    if let KeysCommand::Rewrap = command {
        let done = ops.rewrap_keys(&cx.actor, cx.now).await?;
        let tables: Vec<String> = done
            .resealed
            .iter()
            .map(|(table, n)| format!("{}: {n}", table.name()))
            .collect();
        println!(
            "re-sealed {} rows under key-encryption key {} ({})",
            done.total(),
            done.kek_id,
            tables.join(", ")
        );
        println!(
            "every sealed row is under key-encryption key {}: keys.previous_encryption_keys can be emptied once every instance runs with it as keys.encryption_key",
            done.kek_id
        );
        return Ok(());
    }
    match command {
        KeysCommand::Rotate {
            delay,
            force,
            algorithm,
        } => {
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
        KeysCommand::Distrust {
            kid,
            reason,
            revoke_sessions,
        } => {
            let reason = Reason::parse(Some(reason))?;
            let done = ops
                .distrust_key(&cx.actor, &kid, revoke_sessions, &reason, cx.now)
                .await?;
            println!("distrusted key {kid}: refused everywhere from now on");
            if let Some(new) = done.replaced_by {
                println!("new key {new} signs from now on");
            }
            if revoke_sessions {
                println!("ended {} sessions", done.sessions_ended);
            }
        }
        // Answered above.
        KeysCommand::List | KeysCommand::Rewrap => {}
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
    for key in ops.distrusted_keys().await? {
        println!(
            "{:<kid_width$}  {:<6}  {:<8}  {:<20}  distrusted {}: {}",
            key.kid,
            key.algorithm,
            "distrusted",
            date(key.activates_at),
            date(key.distrusted_at),
            key.distrust_reason
        );
    }
    Ok(())
}
