//! A user's attributes (`{"roles": ["support"], "tenant": "acme"}`), and
//! the names a client picks from them for its access tokens.

use serde_json::{Map, Value};

/// Most bytes a user's attributes take, as compact JSON.
pub const MAX_BYTES: usize = 2048;
/// Longest attribute name.
const MAX_NAME_LEN: usize = 64;

/// Names an attribute may not take: Tessera's own claims and every other
/// claim name registered with IANA (JSON Web Token Claims), whose meaning a
/// verifier may already act on. `roles`, `groups` and `entitlements` are
/// registered too, but RFC 9068 §2.2.3.1 defines them for exactly this:
/// a user's authorization attributes in an access token.
const RESERVED: &[&str] = &[
    // RFC 7519, RFC 9068 and Tessera's own.
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "sid",
    "cnf",
    "amr",
    "acr",
    "auth_time",
    "azp",
    "typ",
    "cty",
    "act",
    "may_act",
    // RFC 7662's introspection response, which carries the attributes too.
    "active",
    "token_type",
    "token_use",
    "username",
    // Names resource servers read as scopes or keys, whatever the case.
    "scp",
    "scopes",
    "kid",
    // OpenID Connect.
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "email",
    "email_verified",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
    "nonce",
    "at_hash",
    "c_hash",
    "sub_jwk",
    "events",
    "_claim_names",
    "_claim_sources",
    "verified_claims",
    "place_of_birth",
    "nationalities",
    "birth_family_name",
    "birth_given_name",
    "birth_middle_name",
    "salutation",
    "title",
    "msisdn",
    "also_known_as",
    // Others in the registry.
    "sip_from_tag",
    "sip_date",
    "sip_callid",
    "sip_cseq_num",
    "sip_via_branch",
    "orig",
    "dest",
    "mky",
    "toe",
    "txn",
    "rph",
    "vot",
    "vtm",
    "attest",
    "origid",
    "jcard",
    "at_use_nbr",
    "div",
    "opt",
    "vc",
    "vp",
    "sph",
    "ace_profile",
    "cnonce",
    "exi",
    "token_introspection",
    "ueid",
    "sueids",
    "oemid",
    "hwmodel",
    "hwversion",
    "secboot",
    "dbgstat",
    "location",
    "eat_profile",
    "submods",
    "cdniv",
    "cdnicrit",
    "cdniip",
    "cdniuc",
    "cdniets",
    "cdnistt",
    "cdnistd",
    "sig_val_claims",
    "authorization_details",
    "htm",
    "htu",
    "ath",
    "atc",
    "sub_id",
    "rcd",
    "rcdi",
    "crn",
    "msgi",
    "_sd",
    "_sd_alg",
    "sd_hash",
    "uptime",
    "bootcount",
    "bootseed",
    "dloas",
    "swname",
    "swversion",
    "manifests",
    "measurements",
    "measres",
    "intuse",
    "geohash",
    "rdap_allowed_purposes",
    "rdap_dnt_allowed",
    "status",
    "ttl",
    "key_attestation",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidAttributes(pub String);

fn invalid(message: impl Into<String>) -> InvalidAttributes {
    InvalidAttributes(message.into())
}

/// An attribute name: 1–64 of `A-Z a-z 0-9 _ - . :`, not reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeName(String);

impl AttributeName {
    pub fn parse(raw: &str) -> Result<AttributeName, InvalidAttributes> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
        if raw.is_empty() || raw.len() > MAX_NAME_LEN || !raw.chars().all(allowed) {
            return Err(invalid(
                "an attribute name is 1 to 64 characters of A-Z a-z 0-9 _ - . :",
            ));
        }
        // Case-insensitively: some verifiers match claim names that way.
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(raw)) {
            return Err(invalid(format!(
                "`{raw}` is a registered JWT claim name (or Tessera's own): choose another"
            )));
        }
        Ok(AttributeName(raw.to_owned()))
    }

    /// A name as stored: it was parsed when set.
    pub fn from_stored(raw: String) -> AttributeName {
        AttributeName(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user's attributes: a JSON object of at most `MAX_BYTES`, whose names
/// are `AttributeName`s and whose values are strings, numbers, booleans or
/// arrays of strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(Map<String, Value>);

impl Attributes {
    pub fn parse(value: Value) -> Result<Attributes, InvalidAttributes> {
        let Value::Object(map) = value else {
            return Err(invalid("attributes are a JSON object"));
        };
        let size = serde_json::to_vec(&map).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_BYTES {
            return Err(invalid(format!(
                "attributes take at most {MAX_BYTES} bytes as JSON (these take {size})"
            )));
        }
        for (name, value) in &map {
            AttributeName::parse(name)?;
            let fits = match value {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => true,
                Value::Array(items) => items.iter().all(Value::is_string),
                Value::Null | Value::Object(_) => false,
            };
            if !fits {
                return Err(invalid(format!(
                    "attribute `{name}`: a value is a string, number, boolean or array of strings"
                )));
            }
        }
        Ok(Attributes(map))
    }

    /// Attributes as stored: they were parsed when set. Anything but an
    /// object reads as none.
    pub fn from_stored(value: Value) -> Attributes {
        match value {
            Value::Object(map) => Attributes(map),
            _ => Attributes::default(),
        }
    }

    /// The attributes of these names that the user has.
    pub fn pick(&self, names: &[AttributeName]) -> Map<String, Value> {
        names
            .iter()
            .filter_map(|n| Some((n.0.clone(), self.0.get(&n.0)?.clone())))
            .collect()
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_names_and_size_are_bounded() {
        let ok = Attributes::parse(
            json!({"roles": ["support"], "tenant": "acme", "level": 3, "vip": true}),
        );
        assert!(ok.is_ok());
        for bad in [
            json!(["roles"]),
            json!({"sub": "someone-else"}),
            json!({"email": "x@example.com"}),
            json!({"active": false}),
            json!({"Sub": "evil"}),
            json!({"scp": "admin"}),
            json!({"tenant": {"id": 1}}),
            json!({"tenant": null}),
            json!({"roles": [1, 2]}),
            json!({"bad name": "x"}),
            json!({"blob": "x".repeat(MAX_BYTES)}),
        ] {
            assert!(Attributes::parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_client_gets_only_the_names_it_picks() {
        let attributes = Attributes::parse(json!({"roles": ["a"], "tenant": "acme"})).unwrap();
        let names = [
            AttributeName::parse("tenant").unwrap(),
            AttributeName::parse("missing").unwrap(),
        ];
        assert_eq!(
            serde_json::Value::Object(attributes.pick(&names)),
            json!({"tenant": "acme"})
        );
    }
}
