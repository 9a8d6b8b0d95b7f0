//! TOTP (RFC 6238) as authenticator apps make it: HMAC-SHA1, 6 digits,
//! 30-second steps, the secret shown as base32 (RFC 4648, no padding).
//! Pure: the caller supplies the time, and says which steps were used.

use aws_lc_rs::hmac;
use subtle::ConstantTimeEq;

/// Seconds per step.
pub const PERIOD: i64 = 30;
const DIGITS: u32 = 6;
/// 160 bits, the size RFC 4226 recommends (the HMAC-SHA1 key size).
const SECRET_BYTES: usize = 20;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A user's TOTP secret. Never logged: `Debug` says nothing of it.
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    pub fn generate() -> TotpSecret {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::fill(&mut bytes[..]);
        TotpSecret(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> TotpSecret {
        TotpSecret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret as authenticator apps take it: base32 without padding.
    pub fn base32(&self) -> String {
        let mut out = String::with_capacity(self.0.len().div_ceil(5) * 8);
        let mut buffer: u64 = 0;
        let mut bits = 0;
        for &byte in &self.0 {
            buffer = (buffer << 8) | u64::from(byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
            }
        }
        if bits > 0 {
            out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
        }
        out
    }

    /// The code of time step `step` (RFC 6238: HOTP of the step counter).
    pub fn code(&self, step: i64) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.0);
        let tag = hmac::sign(&key, &step.to_be_bytes());
        let tag = tag.as_ref();
        // RFC 4226 §5.3 dynamic truncation.
        let offset = usize::from(tag[tag.len() - 1] & 0x0f);
        let mut word = [0u8; 4];
        word.copy_from_slice(&tag[offset..offset + 4]);
        let binary = u32::from_be_bytes(word) & 0x7fff_ffff;
        format!("{:06}", binary % 10u32.pow(DIGITS))
    }

    /// The step of `code` among the step of `now` and the one either side
    /// (clock drift between phone and server), if it is one of theirs.
    /// Each candidate is compared in constant time.
    pub fn matching_step(&self, code: &str, now: i64) -> Option<i64> {
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = now.div_euclid(PERIOD);
        let mut found = None;
        for step in [current - 1, current, current + 1] {
            if bool::from(self.code(step).as_bytes().ct_eq(code.as_bytes())) {
                found = Some(step);
            }
        }
        found
    }

    /// The `otpauth://` URI authenticator apps scan (Key Uri Format).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        // RFC 3986 unreserved characters stay as they are.
        const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, KEEP).to_string();
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
            enc(issuer),
            enc(account),
            self.base32(),
            enc(issuer)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, the SHA-1 rows (8-digit codes there; ours are
    /// the same value mod 10^6).
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        for (time, eight_digits) in [
            (59_i64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(secret.code(time / PERIOD), eight_digits[2..], "T = {time}");
        }
    }

    #[test]
    fn codes_of_the_neighbouring_steps_match_and_others_do_not() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        let now = 1_111_111_111;
        let step = now / PERIOD;
        assert_eq!(secret.matching_step(&secret.code(step), now), Some(step));
        assert_eq!(
            secret.matching_step(&secret.code(step - 1), now),
            Some(step - 1)
        );
        assert_eq!(
            secret.matching_step(&secret.code(step + 1), now),
            Some(step + 1)
        );
        assert_eq!(secret.matching_step(&secret.code(step + 2), now), None);
        assert_eq!(secret.matching_step("12345", now), None);
        assert_eq!(secret.matching_step("abcdef", now), None);
    }

    #[test]
    fn base32_is_rfc4648() {
        // RFC 4648 §10: BASE32("foobar") = "MZXW6YTBOI======".
        assert_eq!(
            TotpSecret::from_bytes(b"foobar".to_vec()).base32(),
            "MZXW6YTBOI"
        );
        assert_eq!(TotpSecret::generate().base32().len(), 32);
    }
}
