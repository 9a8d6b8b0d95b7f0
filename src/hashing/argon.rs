//! argon2id itself: hashing into a caller's block buffer, PHC strings,
//! constant-time verification.

use anyhow::anyhow;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

/// Runs argon2 with `params` in the slot's buffer. A stored hash made with
/// less memory than configured (an older, weaker cost) uses the front of
/// the buffer. One made with more (the configured cost was lowered since)
/// does not fit: it gets a temporary buffer of its own, freed afterwards.
/// That is the one allocation per hash left, and only such users cause it.
fn argon2_into(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    blocks: &mut [Block],
) -> anyhow::Result<()> {
    let needed = argon.params().block_count();
    let result = match blocks.get_mut(..needed) {
        Some(slot) => argon.hash_password_into_with_memory(password, salt, out, slot),
        None => {
            argon.hash_password_into_with_memory(password, salt, out, vec![Block::new(); needed])
        }
    };
    result.map_err(|e| anyhow!("argon2 failed: {e}"))
}

pub(super) fn hash_with(
    params: &Params,
    password: &[u8],
    blocks: &mut [Block],
) -> anyhow::Result<String> {
    let mut salt = [0u8; SALT_LEN];
    rand::fill(&mut salt);
    let mut out = [0u8; OUTPUT_LEN];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon2_into(&argon, password, &salt, &mut out, blocks)?;
    phc_string(params, &salt, &out)
}

/// `$argon2id$v=19$m=...,t=...,p=...$salt$hash`
fn phc_string(params: &Params, salt: &[u8], hash: &[u8]) -> anyhow::Result<String> {
    let phc = |e: argon2::password_hash::phc::Error| anyhow!("encoding a password hash: {e}");
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params)
            .map_err(|e| anyhow!("encoding argon2 parameters: {e}"))?,
        salt: Some(Salt::new(salt).map_err(phc)?),
        hash: Some(Output::new(hash).map_err(phc)?),
    };
    Ok(hash.to_string())
}

/// A hash of no password at all: random salt and random output at the
/// configured cost. Verifying against it runs the full argon2 work and
/// never matches, without hashing anything at startup.
pub(super) fn dummy_hash(params: &Params) -> anyhow::Result<String> {
    let mut salt = [0u8; SALT_LEN];
    let mut out = [0u8; OUTPUT_LEN];
    rand::fill(&mut salt);
    rand::fill(&mut out);
    phc_string(params, &salt, &out)
}

/// Recomputes the stored hash's output (with the parameters, salt and
/// algorithm written in it, so old hashes keep verifying) and compares in
/// constant time.
pub(super) fn verify_with(
    stored: &str,
    password: &[u8],
    blocks: &mut [Block],
) -> anyhow::Result<bool> {
    let parsed =
        PasswordHash::new(stored).map_err(|e| anyhow!("stored password hash is malformed: {e}"))?;
    let algorithm = Algorithm::new(parsed.algorithm.as_str())
        .map_err(|e| anyhow!("stored password hash has an unknown algorithm: {e}"))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| anyhow!("stored password hash has an unknown version: {e}"))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed)
        .map_err(|e| anyhow!("stored password hash has bad parameters: {e}"))?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(anyhow!("stored password hash has no salt or no output"));
    };
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let out = buffer
        .get_mut(..expected.len())
        .ok_or_else(|| anyhow!("stored password hash output is too long"))?;
    let argon = Argon2::new(algorithm, version, params);
    argon2_into(&argon, password, salt.as_ref(), out, blocks)?;
    Ok(out.ct_eq(expected.as_bytes()).into())
}

/// Whether a verified password should be hashed again at the configured
/// cost: the stored hash is weaker in any respect, or needs more memory
/// than the configured cost (it would otherwise need a buffer of its own
/// at every login, beyond the bound of `max_concurrent × memory_kib`).
pub(super) fn needs_rehash(stored: &str, wanted: &Params) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return true;
    }
    match Params::try_from(&parsed) {
        Ok(p) => {
            p.m_cost() != wanted.m_cost()
                || p.t_cost() < wanted.t_cost()
                || p.p_cost() < wanted.p_cost()
        }
        Err(_) => true,
    }
}
