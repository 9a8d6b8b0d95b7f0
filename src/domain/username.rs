//! Usernames, in the PRECIS UsernameCaseMapped profile (RFC 8265 §3.3):
//! width-mapped, lower-cased (Unicode toLowerCase) and NFC-normalised, so that `Alice`, `ａｌｉｃｅ`
//! and `alice` are one account, as are `josé` typed in NFC and in NFD.
//! The profile refuses spaces, control, invisible (zero-width) and
//! bidi-control characters. On top of it, a username must not mix scripts
//! the way spoofs do (UTS #39 mixed-script detection): `pаypal` with a
//! Cyrillic `а` is refused, while Latin with Han, Kana or Hangul is fine.
//!
//! The same parse runs at creation and at login, so what is stored is
//! always the normalised form and a login finds it however it was typed.

use std::fmt;

use precis_profiles::UsernameCaseMapped;
use precis_profiles::precis_core::profile::PrecisFastInvocation;
use unicode_security::mixed_script::AugmentedScriptSet;

pub const MAX_USERNAME_CHARS: usize = 128;
/// Longest input we normalise at all (bytes), so a huge field costs nothing.
const MAX_RAW_BYTES: usize = 4 * MAX_USERNAME_CHARS;

#[derive(Clone, PartialEq, Eq)]
pub struct Username(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidUsername {
    #[error("username is empty")]
    Empty,
    #[error("username is longer than {MAX_USERNAME_CHARS} characters")]
    TooLong,
    #[error(
        "username contains characters that are not allowed (spaces, control, invisible or direction characters)"
    )]
    BadCharacters,
    #[error("username mixes scripts (for example Latin and Cyrillic letters)")]
    MixedScripts,
}

impl Username {
    pub fn parse(raw: &str) -> Result<Username, InvalidUsername> {
        if raw.is_empty() {
            return Err(InvalidUsername::Empty);
        }
        if raw.len() > MAX_RAW_BYTES {
            return Err(InvalidUsername::TooLong);
        }
        // RFC 8265 maps case with Unicode toLowerCase, which is contextual
        // (a final Σ becomes ς); the crate maps one character at a time.
        let lowered = raw.to_lowercase();
        let enforced =
            UsernameCaseMapped::enforce(lowered).map_err(|_| InvalidUsername::BadCharacters)?;
        if enforced.chars().count() > MAX_USERNAME_CHARS {
            return Err(InvalidUsername::TooLong);
        }
        // What is stored must parse to itself, or its owner could not log
        // in by typing it back (characters that lower-case into ones the
        // profile's tables do not allow).
        if UsernameCaseMapped::enforce(enforced.as_ref())
            .ok()
            .as_deref()
            != Some(enforced.as_ref())
        {
            return Err(InvalidUsername::BadCharacters);
        }
        if has_stacked_marks(&enforced) {
            return Err(InvalidUsername::BadCharacters);
        }
        if !is_plausible_script_mix(&enforced) {
            return Err(InvalidUsername::MixedScripts);
        }
        Ok(Username(enforced.into_owned()))
    }

    /// The normalised form: what is stored, compared and counted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// More combining marks on one letter than any language needs: a way to
/// draw one name over another.
fn has_stacked_marks(s: &str) -> bool {
    const MAX_MARKS: usize = 3;
    let mut run = 0;
    for c in s.chars() {
        run = if unicode_normalization::char::is_combining_mark(c) {
            run + 1
        } else {
            0
        };
        if run > MAX_MARKS {
            return true;
        }
    }
    false
}

/// Single-script text (digits and punctuation belong to every script), or
/// Latin mixed with the CJK combinations UTS #39 calls highly restrictive.
fn is_plausible_script_mix(s: &str) -> bool {
    if !AugmentedScriptSet::for_str(s).is_empty() {
        return true;
    }
    let mut without_latin = AugmentedScriptSet::default();
    for c in s.chars() {
        let set = AugmentedScriptSet::for_char(c);
        if !set.base.contains_script(unicode_script::Script::Latin) {
            without_latin.intersect_with(set);
        }
    }
    without_latin.hanb || without_latin.jpan || without_latin.kore
}

/// Usernames are personal data and may be a mistyped password: `Debug`
/// (and so every log line that formats one by accident) shows no content.
impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Username([REDACTED])")
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<String, InvalidUsername> {
        Username::parse(s).map(|u| u.as_str().to_owned())
    }

    #[test]
    fn normalises_width_case_and_composition() {
        assert_eq!(parse("Alice"), Ok("alice".into()));
        assert_eq!(parse("ＡＬＩＣＥ"), Ok("alice".into()));
        assert_eq!(parse("jose\u{301}"), parse("jos\u{e9}"));
        assert_eq!(parse("jos\u{e9}"), Ok("jos\u{e9}".into()));
        assert_eq!(parse("zoë'o@example.com"), Ok("zoë'o@example.com".into()));
        assert_eq!(parse("用户"), Ok("用户".into()));
        assert_eq!(parse("山田taro"), Ok("山田taro".into()));
        assert_eq!(parse("иван"), Ok("иван".into()));
        // Contextual lower-casing: a final capital sigma is ς.
        assert_eq!(parse("ΟΔΥΣΣΕΥΣ"), Ok("οδυσσευς".into()));
        assert_eq!(parse("ΟΔΥΣΣΕΥΣ"), parse("οδυσσευς"));
    }

    #[test]
    fn what_is_stored_parses_to_itself() {
        for name in ["ᎠᎡ", "ΟΔΥΣΣΕΥΣ", "İstanbul", "Straße", "ǅemal", "ﬃ"] {
            if let Ok(stored) = parse(name) {
                assert_eq!(parse(&stored), Ok(stored.clone()), "{name:?}");
            }
        }
        assert_eq!(
            parse(&format!("a{}", "\u{301}".repeat(5))),
            Err(InvalidUsername::BadCharacters)
        );
    }

    #[test]
    fn refuses_what_the_profile_disallows_and_spoofs() {
        assert_eq!(parse(""), Err(InvalidUsername::Empty));
        for bad in [
            " bob",
            "bo b",
            "a\u{0}b",
            "ali\u{200b}ce",   // zero-width space
            "ali\u{202e}ecil", // right-to-left override
            "ali\u{200d}ce",   // zero-width joiner
        ] {
            assert_eq!(parse(bad), Err(InvalidUsername::BadCharacters), "{bad:?}");
        }
        // Latin with a Cyrillic `е` (U+0435).
        assert_eq!(parse("alic\u{435}"), Err(InvalidUsername::MixedScripts));
        assert_eq!(parse(&"x".repeat(129)), Err(InvalidUsername::TooLong));
        assert_eq!(parse(&"x".repeat(4096)), Err(InvalidUsername::TooLong));
        assert!(parse(&"é".repeat(128)).is_ok());
    }

    #[test]
    fn debug_does_not_show_the_name() {
        let name = Username::parse("hunter2").unwrap();
        assert!(!format!("{name:?}").contains("hunter2"));
    }
}
