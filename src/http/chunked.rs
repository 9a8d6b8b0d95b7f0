//! Request bodies must come with a `Content-Length`.
//!
//! actix-http drains a chunked request body that a handler did not read to
//! the end, to reuse the connection, and does so with no deadline: a client
//! that sends a few chunks and then nothing held its connection forever,
//! and 2,000 of them took a listener down. Every body Tessera accepts is a
//! small form or JSON document that every client sends with a length, so
//! chunked requests are refused at once (400 `invalid_request`), and
//! their connection is closed rather than drained: the unread payload is
//! kept alive until the response is on its way, which makes actix close
//! the connection after it instead of draining; requests pipelined behind
//! the refused one get the same refusal, so nothing more is served on it.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, ResponseError};

use crate::error::Error;

pub async fn refuse_chunked(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let ending = super::peer::is_ending(req.request());
    if !ending && !req.headers().contains_key(header::TRANSFER_ENCODING) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    super::peer::end_connection(req.request());
    let unread = req.take_payload();
    let response = Error::ChunkedBody.error_response().map_body(|_, body| {
        BoxBody::new(Closing {
            bytes: body.try_into_bytes().ok(),
            _unread: unread,
        })
    });
    Ok(req.into_response(response).map_into_right_body())
}

/// The refusal's body, holding the unread request body until the last
/// byte is out: actix then closes the connection instead of draining.
struct Closing {
    bytes: Option<Bytes>,
    _unread: Payload,
}

impl MessageBody for Closing {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(self.bytes.take().map(Ok))
    }
}
