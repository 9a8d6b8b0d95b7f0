//! The `DPoP` request header (RFC 9449 §4.1), as sent.

use actix_web::HttpRequest;

use crate::dpop::Sent;

pub fn sent(req: &HttpRequest) -> Sent<'_> {
    let mut values = req.headers().get_all("dpop");
    match (values.next(), values.next()) {
        (None, _) => Sent::None,
        // A value that is not visible ASCII is no JWT: refused as malformed.
        (Some(value), None) => Sent::One(value.to_str().unwrap_or_default()),
        (Some(_), Some(_)) => Sent::Many,
    }
}
