//! The claims of an RFC 9068 access token, as Tessera issues them.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::Error;

/// RFC 9068 §2.2 claims. `sub`, `client_id`, `jti`, `iat` and `exp` are
/// required (a token without them does not deserialise). Every other claim
/// the token carries (the user's attributes, such as `roles` or `tenant`)
/// is in [`Claims::attributes`], read with [`Claims::get`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id, or the client id for a client acting as itself.
    pub sub: String,
    /// The resource the token was issued for (RFC 8707): the URI a client
    /// named with `resource=`, or Tessera's default audience (`tessera`)
    /// for a token asked for without one. Verified to be the configured
    /// one ([`Config::new`](crate::Config::new)).
    pub aud: Audience,
    pub client_id: String,
    #[serde(default)]
    pub scope: Scopes,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The login (session) the token came from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The key the token is bound to (RFC 7800, RFC 9449 §6): present, the
    /// token is accepted only with a proof of that key, never as a bearer
    /// token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// How the user authenticated (RFC 8176): `pwd`, plus `otp` and `mfa`
    /// after a second factor. Absent for a client acting as itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// Every claim not named above: the user's attributes that the client
    /// picked for its tokens (`tessera client set-claims`), e.g.
    /// `{"roles": ["support"], "tenant": "acme"}`, as of when the token was
    /// issued. Read them with [`Claims::get`].
    #[serde(flatten)]
    pub attributes: Map<String, Value>,
}

/// `cnf`: what the presenter of the token must prove it holds. Tessera
/// binds with `jkt` (DPoP); any other confirmation method is one the kit
/// cannot check, so a token carrying only that is never accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The RFC 7638 SHA-256 thumbprint of the client's DPoP key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

impl Claims {
    pub fn scopes(&self) -> &Scopes {
        &self.scope
    }

    /// `Err(InsufficientScope)` unless the token was granted `scope`; the
    /// actix extractor turns that into `403` with `error="insufficient_scope"`.
    pub fn require_scope(&self, scope: &str) -> Result<(), Error> {
        if self.scope.contains(scope) {
            Ok(())
        } else {
            Err(Error::InsufficientScope(scope.to_owned()))
        }
    }

    /// `Err(InsufficientUserAuthentication)` unless the user's login used a
    /// second factor (`amr` has `mfa`); the actix extractor turns that into
    /// RFC 9470's `401` with `error="insufficient_user_authentication"`, and
    /// the app logs the user in again with their second factor.
    pub fn require_second_factor(&self) -> Result<(), Error> {
        let used = self
            .amr
            .as_ref()
            .is_some_and(|methods| methods.iter().any(|m| m == "mfa"));
        if used {
            Ok(())
        } else {
            Err(Error::InsufficientUserAuthentication)
        }
    }

    /// The thumbprint of the DPoP key the token is bound to (`cnf.jkt`),
    /// if it is bound.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.cnf.as_ref()?.jkt.as_deref()
    }

    /// A client acting as itself (client_credentials): `sub` is its client id.
    pub fn is_client(&self) -> bool {
        self.sub == self.client_id
    }

    /// The attribute `name` (one of [`Claims::attributes`]) as a `T`:
    /// `None` when the token does not carry it, or carries it with another
    /// shape (a string where `T` is a list, say), so a check built on it
    /// refuses rather than guesses. Tessera's attribute values are strings,
    /// numbers, booleans and lists of strings. The claims named as fields
    /// (`sub`, `scope`, ...) are not attributes: read the fields.
    ///
    /// ```
    /// # let claims: tessera_verifier::Claims = serde_json::from_value(serde_json::json!({
    /// #     "iss": "https://auth.example.com", "sub": "u", "aud": "https://orders.example.com/",
    /// #     "client_id": "mobile", "iat": 1, "exp": 2, "jti": "j",
    /// #     "roles": ["support"], "tenant": "acme", "level": 2,
    /// # })).unwrap();
    /// let roles = claims.get::<Vec<String>>("roles").unwrap_or_default();
    /// assert!(roles.iter().any(|r| r == "support"));
    /// assert_eq!(claims.get::<&str>("tenant"), Some("acme"));
    /// assert_eq!(claims.get::<u32>("level"), Some(2));
    /// assert_eq!(claims.get::<String>("roles"), None); // a list, not a string
    /// assert_eq!(claims.get::<Vec<String>>("groups"), None); // not in the token
    /// ```
    pub fn get<'a, T: Deserialize<'a>>(&'a self, name: &str) -> Option<T> {
        T::deserialize(self.attributes.get(name)?).ok()
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

/// The granted scopes, a set (the claim is space-separated, RFC 8693 §4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    pub fn parse(raw: &str) -> Scopes {
        Scopes(
            raw.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(scope)?;
            first = false;
        }
        Ok(())
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Ok(Scopes::parse(&raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_a_set_and_round_trip_as_a_string() {
        let scopes = Scopes::parse("write  read read");
        assert_eq!(scopes.len(), 2);
        assert!(scopes.contains("read") && !scopes.contains("rea"));
        assert_eq!(serde_json::to_value(&scopes).unwrap(), "read write");
        let aud: Audience = serde_json::from_str(r#"["a","b"]"#).unwrap();
        assert!(aud.contains("b") && !aud.contains("c"));
    }

    #[cfg(feature = "actix")]
    #[test]
    fn a_call_needing_a_second_factor_answers_rfc9470() {
        use actix_web::ResponseError;
        let claims = |amr: serde_json::Value| -> Claims {
            serde_json::from_value(serde_json::json!({
                "iss": "i", "sub": "u", "aud": "a", "client_id": "c", "iat": 1, "exp": 2,
                "jti": "j", "amr": amr,
            }))
            .unwrap()
        };
        assert!(
            claims(serde_json::json!(["pwd", "otp", "mfa"]))
                .require_second_factor()
                .is_ok()
        );
        let refused = claims(serde_json::json!(["pwd"]))
            .require_second_factor()
            .unwrap_err();
        let response = refused.error_response();
        assert_eq!(response.status(), 401);
        let challenges: Vec<_> = response
            .headers()
            .get_all("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(
            challenges
                .iter()
                .any(|c| c.contains("error=\"insufficient_user_authentication\"")),
            "{challenges:?}"
        );
    }
}
