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
    /// Show every key with its state and dates.
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
