//! Client authentication on the wire (RFC 6749 §2.3): HTTP Basic
//! (`client_secret_basic`), body fields (`client_secret_post`), or a bare
//! `client_id` for public clients.

use actix_web::HttpRequest;
use actix_web::http::header;
use base64::Engine;
use secrecy::SecretString;

use crate::domain::client_id::MAX_CLIENT_ID_LEN;
use crate::error::Error;
use crate::grants::client::ClientCredentials;

/// Client identity from HTTP Basic (`client_secret_basic`) or the body
/// (`client_secret_post`, or just `client_id` for public clients). Using both
/// methods at once is refused (§2.3).
pub fn credentials_from(
    req: &HttpRequest,
    body_id: Option<String>,
    body_secret: Option<SecretString>,
) -> Result<ClientCredentials, Error> {
    let credentials = match basic_auth(req)? {
        Some((id, secret)) => {
            if body_secret.is_some() {
                return Err(Error::invalid_request(
                    "use only one client authentication method",
                ));
            }
            if body_id.as_deref().is_some_and(|b| b != id) {
                return Err(Error::invalid_request(
                    "client_id does not match the Authorization header",
                ));
            }
            ClientCredentials {
                client_id: id,
                secret: Some(secret),
            }
        }
        None => {
            let client_id = body_id.ok_or(Error::InvalidClient)?;
            ClientCredentials {
                client_id,
                secret: body_secret,
            }
        }
    };
    if credentials.client_id.is_empty() || credentials.client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(Error::InvalidClient);
    }
    Ok(credentials)
}

/// Parses `Authorization: Basic base64(urlencode(id):urlencode(secret))`.
fn basic_auth(req: &HttpRequest) -> Result<Option<(String, SecretString)>, Error> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| Error::InvalidClient)?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(Error::InvalidClient);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Error::InvalidClient);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or(Error::InvalidClient)?;
    let (id, secret) = decoded.split_once(':').ok_or(Error::InvalidClient)?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .filter(|c| !c.contains('\0'))
            .map(|c| c.into_owned())
            .ok_or(Error::InvalidClient)
    };
    Ok(Some((unescape(id)?, SecretString::from(unescape(secret)?))))
}
