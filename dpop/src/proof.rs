//! One proof, checked (RFC 9449 §4.3, and `ath` of §7.1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

/// The signature algorithms accepted in proofs (`dpop_signing_alg_values_supported`):
/// asymmetric only (§4.3 point 5), the ones mobile key stores offer.
pub const ALGORITHMS: &[&str] = &["ES256", "ES384", "EdDSA", "PS256", "RS256"];

/// Longest proof looked at. An RSA-4096 proof is under 2 KiB.
pub const MAX_PROOF_LEN: usize = 4096;

/// Longest `jti` and `nonce` accepted: both are kept or compared, and
/// nothing of ours makes them longer.
const MAX_JTI_LEN: usize = 256;
const MAX_NONCE_LEN: usize = 256;

/// Members of a JWK that only a private key has (RFC 7518 §6). A proof
/// carrying one has leaked its key; `k` is a symmetric key, never allowed.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What the proof must match: the request it came with.
pub struct Expected<'a> {
    /// The request's method (`htm`), as sent: `POST`, `GET`.
    pub method: &'a str,
    /// The request's URL as the client addressed it (`htu`); its query and
    /// fragment are ignored.
    pub url: &'a Url,
    /// Now, in seconds since the epoch.
    pub now: i64,
    /// How far `iat` may be from `now`, either way, in seconds.
    pub window: i64,
    /// The access token presented with the proof, whose hash `ath` must be
    /// (§7.1); `None` at the token endpoint, where `ath` is not checked.
    pub access_token: Option<&'a str>,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key (`cnf.jkt`).
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    /// The server nonce the proof carries, for the caller to check.
    pub nonce: Option<String>,
}

/// Why a proof was refused. The messages describe the rule, never the
/// value: they are safe to send back as `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the DPoP proof is not a well-formed JWT with htm, htu, iat and jti")]
    Malformed,
    #[error("the DPoP proof is too large")]
    TooLarge,
    #[error("the DPoP proof's typ must be dpop+jwt")]
    Type,
    #[error("the DPoP proof's alg is not supported (see dpop_signing_alg_values_supported)")]
    Algorithm,
    #[error("the DPoP proof's jwk must be a public EC, OKP or RSA key")]
    Key,
    #[error("the DPoP proof's signature does not verify with its jwk")]
    Signature,
    #[error("the DPoP proof's htm does not match the request method")]
    Method,
    #[error("the DPoP proof's htu does not match the request URL")]
    Url,
    #[error("the DPoP proof's iat is too far from the server's time")]
    IssuedAt,
    #[error("the DPoP proof's jti is missing or too long")]
    Jti,
    #[error("the DPoP proof's ath does not match the access token")]
    TokenHash,
}

#[derive(Deserialize)]
struct Claims {
    htm: String,
    htu: String,
    iat: f64,
    jti: String,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

impl Proof {
    /// What identifies this proof for replay (see [`identity`]).
    pub fn identity(&self) -> [u8; 32] {
        identity(&self.jkt, &self.jti)
    }
}

/// What identifies a proof for replay: SHA-256 of its key's thumbprint and
/// its `jti` (one `jti` under two keys is two proofs). The replay cache
/// and the issuer's table of used proofs both key by it.
pub fn identity(jkt: &str, jti: &str) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(jkt.as_bytes());
    context.update(&[0]);
    context.update(jti.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// `ath`: the base64url SHA-256 of the access token's ASCII bytes.
pub fn token_hash(access_token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Checks a proof against the request it came with. Replay (`jti`) and the
/// server nonce are the caller's: see [`crate::ReplayCache`] and
/// [`crate::Nonces`].
pub fn check(proof: &str, expected: &Expected<'_>) -> Result<Proof, Refused> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(Refused::TooLarge);
    }
    let (algorithm, jwk) = header(proof)?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| Refused::Key)?;
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = match jsonwebtoken::decode::<Claims>(proof, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind;
            return Err(match e.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => Refused::Signature,
                ErrorKind::InvalidKeyFormat
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidRsaKey(_) => Refused::Key,
                _ => Refused::Malformed,
            });
        }
    };
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(Refused::Jti);
    }
    if claims.htm != expected.method {
        return Err(Refused::Method);
    }
    if !same_target(&claims.htu, expected.url) {
        return Err(Refused::Url);
    }
    if !claims.iat.is_finite() {
        return Err(Refused::Malformed);
    }
    // Saturating: an absurd `iat` is simply out of the window.
    let iat = claims.iat.floor() as i64;
    if iat < expected.now.saturating_sub(expected.window)
        || iat > expected.now.saturating_add(expected.window)
    {
        return Err(Refused::IssuedAt);
    }
    if let Some(token) = expected.access_token
        && claims.ath.as_deref() != Some(token_hash(token).as_str())
    {
        return Err(Refused::TokenHash);
    }
    if claims
        .nonce
        .as_ref()
        .is_some_and(|n| n.len() > MAX_NONCE_LEN)
    {
        return Err(Refused::Malformed);
    }
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| Refused::Key)?;
    Ok(Proof {
        jkt,
        jti: claims.jti,
        iat,
        nonce: claims.nonce,
    })
}

/// The header's algorithm and public key, after `typ`, `alg` and `jwk` are
/// checked (§4.3 points 4–7).
fn header(proof: &str) -> Result<(Algorithm, Jwk), Refused> {
    let encoded = proof.split('.').next().ok_or(Refused::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| Refused::Malformed)?;
    let header: Value = serde_json::from_slice(&bytes).map_err(|_| Refused::Malformed)?;
    let typ = header.get("typ").and_then(Value::as_str);
    if !typ.is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(Refused::Type);
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("none");
    if !ALGORITHMS.contains(&alg) {
        return Err(Refused::Algorithm);
    }
    let algorithm: Algorithm = alg.parse().map_err(|_| Refused::Algorithm)?;
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(Refused::Key)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(Refused::Key);
    }
    let kty = jwk.get("kty").and_then(Value::as_str);
    if !matches!(kty, Some("EC" | "OKP" | "RSA")) {
        return Err(Refused::Key);
    }
    // An RSA check costs with the modulus and exponent: at most 4096 bits
    // (a base64url modulus of at most 683 characters) and e = 65537, what
    // every key store makes.
    if kty == Some("RSA")
        && (jwk.get("e").and_then(Value::as_str) != Some("AQAB")
            || jwk
                .get("n")
                .and_then(Value::as_str)
                .is_none_or(|n| n.len() > 683))
    {
        return Err(Refused::Key);
    }
    let jwk: Jwk = serde_json::from_value(Value::Object(jwk.clone())).map_err(|_| Refused::Key)?;
    Ok((algorithm, jwk))
}

/// `htu` names the same resource as the request (§4.3 point 9): both
/// parsed and normalised (scheme and host case, default port, dot
/// segments), query and fragment ignored.
fn same_target(htu: &str, url: &Url) -> bool {
    let Ok(mut htu) = Url::parse(htu) else {
        return false;
    };
    htu.set_query(None);
    htu.set_fragment(None);
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    htu == url
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9449 §4.1's example proof (ES256), checked at its own time.
    const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik\
VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR\
nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE\
QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj\
oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia\
WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg\
4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";

    fn expected<'a>(url: &'a Url, now: i64) -> Expected<'a> {
        Expected {
            method: "POST",
            url,
            now,
            window: 60,
            access_token: None,
        }
    }

    #[test]
    fn the_rfc_example_proof_verifies_and_its_key_has_the_rfc_thumbprint() {
        let url = Url::parse("https://server.example.com/token").unwrap();
        let proof = check(RFC_PROOF, &expected(&url, 1_562_262_616)).unwrap();
        assert_eq!(proof.jti, "-BwC3ESc6acc2lTc");
        assert_eq!(proof.iat, 1_562_262_616);
        // RFC 9449 §6.1 gives this key's thumbprint as the example `cnf.jkt`.
        assert_eq!(proof.jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    }

    #[test]
    fn rfc7638_thumbprint_vector() {
        // RFC 7638 §3.1.
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }))
        .unwrap();
        assert_eq!(
            jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn the_rfc_example_is_refused_elsewhere_or_later() {
        let url = Url::parse("https://server.example.com/token").unwrap();
        let now = 1_562_262_616;
        let other = Url::parse("https://server.example.com/other").unwrap();
        assert_eq!(check(RFC_PROOF, &expected(&other, now)), Err(Refused::Url));
        assert_eq!(
            check(RFC_PROOF, &expected(&url, now + 61)),
            Err(Refused::IssuedAt)
        );
        assert_eq!(
            check(RFC_PROOF, &expected(&url, now - 61)),
            Err(Refused::IssuedAt)
        );
        let get = Expected {
            method: "GET",
            ..expected(&url, now)
        };
        assert_eq!(check(RFC_PROOF, &get), Err(Refused::Method));
        let with_token = Expected {
            access_token: Some("a-token"),
            ..expected(&url, now)
        };
        assert_eq!(check(RFC_PROOF, &with_token), Err(Refused::TokenHash));
        // Query and fragment are ignored; case and default port normalised.
        let same = Url::parse("https://SERVER.example.com:443/token?x=1#f").unwrap();
        assert!(check(RFC_PROOF, &expected(&same, now)).is_ok());
        // One flipped signature byte.
        let mut forged = RFC_PROOF.to_owned();
        forged.pop();
        forged.push('A');
        assert_eq!(
            check(&forged, &expected(&url, now)),
            Err(Refused::Signature)
        );
    }

    #[test]
    fn the_rfc_token_hash_example() {
        // RFC 9449 §7.1: the `ath` of the example access token.
        assert_eq!(
            token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }
}
