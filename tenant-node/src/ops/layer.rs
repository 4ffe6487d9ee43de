//! The tower layer on the API and web servers that counts gRPC calls by
//! method and status code and times them until their status, and counts
//! the live streams (`Watch`) open.
//!
//! The status is where the call puts it: in the response headers for a
//! trailers-only answer (most errors), in the trailers for native gRPC, and
//! in the body's trailer frame (flag 0x80) for grpc-web. A call whose body
//! is dropped before any status (the client went away) counts as
//! `CANCELLED`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::Frame;
use tonic::body::Body;
use tonic::codegen::Bytes;
use tonic::codegen::http::{HeaderMap, Request, Response};

use super::metrics::Metrics;

#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<Request<Body>> for Metered<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The service that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let content_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let grpc = content_type.starts_with("application/grpc");
        let grpc_web = content_type.starts_with("application/grpc-web");
        let names = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .map(|(s, m)| (s.to_string(), m.to_string()));
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let start = Instant::now();
            let response = inner.call(request).await?;
            let (Some((service, method)), true) = (names, grpc) else {
                return Ok(response);
            };
            let (parts, body) = response.into_parts();
            let code = status_in(&parts.headers);
            let watching = method == "Watch" && code.is_none();
            let call = Call {
                metrics,
                service,
                method,
                start,
                code,
                grpc_web,
                live: watching,
            };
            if watching {
                call.metrics.live_stream_opened();
            }
            Ok(Response::from_parts(
                parts,
                Body::new(MeteredBody {
                    inner: body,
                    call: Some(call),
                }),
            ))
        })
    }
}

/// What is known of a call until its status arrives.
struct Call {
    metrics: Arc<Metrics>,
    service: String,
    method: String,
    start: Instant,
    code: Option<&'static str>,
    grpc_web: bool,
    /// A live stream counted open, to count closed when the call ends.
    live: bool,
}

impl Call {
    fn finish(self, code: &'static str) {
        // A method no service has, or a service nobody serves: one label
        // for all, so made-up paths cannot grow the label sets.
        let (service, method) = if code == "UNIMPLEMENTED" {
            ("unknown", "unknown")
        } else {
            (self.service.as_str(), self.method.as_str())
        };
        self.metrics
            .observe_call(service, method, code, self.start.elapsed().as_secs_f64());
        if self.live {
            self.metrics.live_stream_closed();
        }
    }
}

struct MeteredBody {
    inner: Body,
    call: Option<Call>,
}

impl MeteredBody {
    fn end(&mut self, code: Option<&'static str>) {
        if let Some(call) = self.call.take() {
            let code = code.or(call.code).unwrap_or("CANCELLED");
            call.finish(code);
        }
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        self.end(None);
    }
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = status_in(trailers);
                    self.end(code);
                } else if let Some(data) = frame.data_ref()
                    && self.call.as_ref().is_some_and(|c| c.grpc_web)
                    && data.first() == Some(&0x80)
                {
                    let code = grpc_web_status(data);
                    self.end(code);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                let code = code_name(status.code());
                self.end(Some(code));
            }
            Poll::Ready(None) => {
                let known = self.call.as_ref().and_then(|c| c.code);
                self.end(known.or(Some("UNKNOWN")));
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` of a header or trailer block, by its code's name.
fn status_in(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    let code: i32 = value.trim().parse().ok()?;
    Some(code_name(tonic::Code::from_i32(code)))
}

/// The status in grpc-web's trailer frame: flag, length, then the trailers
/// as `name: value\r\n` lines.
fn grpc_web_status(frame: &[u8]) -> Option<&'static str> {
    let text = std::str::from_utf8(frame.get(5..)?).ok()?;
    text.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("grpc-status") {
            return None;
        }
        let code: i32 = value.trim().parse().ok()?;
        Some(code_name(tonic::Code::from_i32(code)))
    })
}

/// A gRPC code as the gRPC specification spells it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_from_headers_and_grpc_web_trailer_frames() {
        let mut headers = HeaderMap::new();
        assert_eq!(status_in(&headers), None);
        headers.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(status_in(&headers), Some("NOT_FOUND"));
        let trailers = b"grpc-status:0\r\ngrpc-message:\r\n";
        let mut frame = vec![0x80, 0, 0, 0, trailers.len() as u8];
        frame.extend_from_slice(trailers);
        assert_eq!(grpc_web_status(&frame), Some("OK"));
        assert_eq!(grpc_web_status(&[0x80]), None);
    }
}
