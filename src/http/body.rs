//! Reading and parsing request bodies ourselves, so that every failure
//! (too large, too slow, not UTF-8, malformed, wrong content type) is an
//! RFC 6749 error rather than actix's plain-text default. Every body on both
//! listeners is read here, so `http.body_timeout` bounds them all.

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{BytesMut, Payload};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::config::HttpSettings;
use crate::error::Error;

/// Reads at most `http.max_body_bytes` of body, all of it within
/// `http.body_timeout`: a client trickling its body a byte at a time gets
/// a 408 and loses the connection instead of holding it for ever.
pub async fn read(payload: Payload, http: &HttpSettings) -> Result<BytesMut, Error> {
    tokio::time::timeout(http.body_timeout, read_all(payload, http.max_body_bytes))
        .await
        .map_err(|_| Error::BodyTimeout)?
}

async fn read_all(mut payload: Payload, limit: usize) -> Result<BytesMut, Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| Error::invalid_request("request body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads (within the limits of `http`) and parses a form or JSON body.
pub async fn form_or_json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: Payload,
    http: &HttpSettings,
) -> Result<T, Error> {
    let raw = read(payload, http).await?;
    parse(req, &raw)
}

/// Parses a form-urlencoded or JSON body into `T`.
pub fn parse<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, Error> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match content_type.as_str() {
        "application/x-www-form-urlencoded" => {
            // Percent-decoding is lossy on invalid UTF-8; refuse instead of
            // guessing, so a mangled password is never compared.
            let text = std::str::from_utf8(body)
                .map_err(|_| Error::invalid_request("body is not valid UTF-8"))?;
            if !form_values_are_clean(text) {
                return Err(Error::invalid_request(
                    "form values must be valid UTF-8 without NUL characters",
                ));
            }
            serde_urlencoded::from_str(text).map_err(|e| malformed("form", &e))
        }
        "application/json" => {
            let value: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| malformed("JSON", &e))?;
            // Only objects: serde would otherwise map an array onto fields by position.
            if !value.is_object() {
                return Err(Error::invalid_request("JSON body must be an object"));
            }
            if has_nul(&value) {
                return Err(Error::invalid_request(
                    "strings must not contain NUL characters",
                ));
            }
            // From the bytes, not from `value`: a `Value` keeps only the
            // last of repeated keys, while the derived struct parser
            // refuses a repeated field, as the form parser does.
            serde_json::from_slice(body).map_err(|e| malformed("JSON", &e))
        }
        _ => Err(Error::invalid_request(
            "Content-Type must be application/x-www-form-urlencoded or application/json",
        )),
    }
}

/// Describes a parse failure without echoing any value from the body (serde
/// quotes offending values, which may be passwords).
fn malformed(kind: &str, e: &dyn std::fmt::Display) -> Error {
    let message = e.to_string();
    let field = message
        .split('`')
        .nth(1)
        .filter(|f| f.len() <= 32 && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    let detail = match field {
        // One audience per access token (RFC 8707 §2 lets a server refuse
        // more than one with `invalid_target`).
        Some("resource") if message.starts_with("duplicate field") => {
            return Error::InvalidTarget(
                "one resource per token request: ask for each API's token in turn",
            );
        }
        Some(field) if message.starts_with("duplicate field") => {
            format!("parameter `{field}` is repeated")
        }
        _ if message.starts_with("invalid type") => "every parameter must be a string".to_owned(),
        _ => "syntax error".to_owned(),
    };
    Error::invalid_request(format!("malformed {kind} body: {detail}"))
}

/// True when every percent-encoded value decodes to valid UTF-8 without NUL
/// (Postgres text cannot hold NUL; it would surface as a 500).
fn form_values_are_clean(text: &str) -> bool {
    text.split(['&', '=']).all(|part| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .is_ok_and(|decoded| !decoded.contains('\0'))
    })
}

fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_percent_encoded_invalid_utf8_and_nul() {
        assert!(form_values_are_clean("username=z%C3%B6e&password=a+b%21"));
        assert!(!form_values_are_clean("username=%FF%FE"));
        assert!(!form_values_are_clean("client_id=a%00b"));
        assert!(form_values_are_clean("a=100%"));
        assert!(has_nul(&serde_json::json!({"a": ["x\u{0}"]})));
    }
}
