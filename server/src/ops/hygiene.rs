//! HTTP hygiene middleware: the body-read deadline and JSON `405`s.
//!
//! - **Body-read deadline.** actix times out a request's head
//!   (`client_request_timeout`), not its body: a client that sent headers
//!   and then stalled held a connection and a worker's extractor forever.
//!   Every request body must now arrive in full within the configured
//!   deadline (default 60 s, `--body-timeout-secs`) counted from when its
//!   headers arrived; past it the extractor fails, the answer is
//!   `408 body_timeout`, and the connection is closed.
//! - **405.** A path served with other methods answers `405
//!   method_not_allowed` with the JSON error body and an `Allow` header
//!   listing the methods the OpenAPI document gives that path (actix's own
//!   405 has an empty body).

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::rt::time::{sleep, Sleep};
use actix_web::web::{self, Bytes};
use actix_web::{HttpMessage as _, ResponseError as _};
use futures_util::Stream;

use crate::ops::metrics::Metrics;
use crate::{ApiError, AppState};

/// Default time a request's body has to arrive, counted from its headers.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// A request body that fails with `TimedOut` once its deadline passes.
struct Deadline {
    inner: Payload,
    sleep: Pin<Box<Sleep>>,
    fired: bool,
    metrics: Arc<Metrics>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.fired {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(item) => Poll::Ready(item),
            Poll::Pending => {
                if self.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.fired = true;
                self.metrics.body_timeout();
                Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request body deadline passed",
                )))))
            }
        }
    }
}

/// Whether the request announces a body.
fn has_body(req: &ServiceRequest) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0")
}

/// Middleware: the body-read deadline and JSON 405s (see the module docs).
pub(crate) async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>().cloned() {
        if has_body(&req) {
            let inner = req.take_payload();
            let body = Deadline {
                inner,
                sleep: Box::pin(sleep(state.body_timeout())),
                fired: false,
                metrics: Arc::clone(state.metrics()),
            };
            req.set_payload(Payload::Stream { payload: Box::pin(body) });
        }
    }
    let res = next.call(req).await?;
    if res.status() != StatusCode::METHOD_NOT_ALLOWED {
        return Ok(res.map_into_left_body());
    }
    let pattern = res.request().match_pattern();
    let allow = pattern.as_deref().map(crate::openapi::allowed_methods).unwrap_or_default();
    let (req, _) = res.into_parts();
    let answer = ApiError::MethodNotAllowed { allow }.error_response();
    Ok(ServiceResponse::new(req, answer).map_into_right_body())
}
