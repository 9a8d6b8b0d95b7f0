//! OAuth scopes (RFC 6749 §3.3): a set of space-separated tokens.

use std::collections::BTreeSet;
use std::fmt;

/// Longest scope string accepted in a request.
const MAX_SCOPE_LEN: usize = 1024;
const MAX_TOKEN_LEN: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(BTreeSet<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "scope must be space-separated tokens of printable ASCII other than `\"` and `\\`, at most {MAX_SCOPE_LEN} bytes"
)]
pub struct InvalidScope;

/// A request asked for more than it may have.
#[derive(Debug, PartialEq, Eq)]
pub struct ScopeExceeded;

impl Scope {
    pub fn parse(raw: &str) -> Result<Scope, InvalidScope> {
        if raw.len() > MAX_SCOPE_LEN {
            return Err(InvalidScope);
        }
        let tokens = raw.split(' ').filter(|t| !t.is_empty());
        let mut set = BTreeSet::new();
        for token in tokens {
            // scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            let valid = token.len() <= MAX_TOKEN_LEN
                && token
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !valid {
                return Err(InvalidScope);
            }
            set.insert(token.to_owned());
        }
        Ok(Scope(set))
    }

    pub fn from_tokens<I, S>(tokens: I) -> Result<Scope, InvalidScope>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined = tokens
            .into_iter()
            .map(|t| t.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join(" ");
        Scope::parse(&joined)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn intersection(&self, other: &Scope) -> Scope {
        Scope(self.0.intersection(&other.0).cloned().collect())
    }

    /// What a request gets out of this (allowed) scope: all of it when it
    /// asks for nothing, exactly what it asks for when that is a subset.
    pub fn grant(self, requested: Option<Scope>) -> Result<Scope, ScopeExceeded> {
        match requested {
            Some(requested) if !requested.is_empty() => {
                if requested.is_subset(&self) {
                    Ok(requested)
                } else {
                    Err(ScopeExceeded)
                }
            }
            _ => Ok(self),
        }
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn tokens(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for token in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(token)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_normalises_and_rejects_bad_characters() {
        let s = Scope::parse("write  read read").unwrap();
        assert_eq!(s.to_string(), "read write");
        assert!(Scope::parse("").unwrap().is_empty());
        assert_eq!(Scope::parse("a\"b"), Err(InvalidScope));
        assert_eq!(Scope::parse("a\\b"), Err(InvalidScope));
        assert_eq!(Scope::parse("é"), Err(InvalidScope));
        assert_eq!(Scope::parse(&"a".repeat(2000)), Err(InvalidScope));
    }

    #[test]
    fn subset_and_intersection() {
        let all = Scope::parse("a b c").unwrap();
        let some = Scope::parse("a c").unwrap();
        assert!(some.is_subset(&all));
        assert!(!all.is_subset(&some));
        assert_eq!(
            all.intersection(&Scope::parse("c d").unwrap()).to_string(),
            "c"
        );
        assert_eq!(all.clone().grant(None), Ok(all.clone()));
        assert_eq!(all.clone().grant(Some(Scope::default())), Ok(all.clone()));
        assert_eq!(all.clone().grant(Some(some.clone())), Ok(some));
        assert_eq!(
            all.grant(Some(Scope::parse("d").unwrap())),
            Err(ScopeExceeded)
        );
    }
}
