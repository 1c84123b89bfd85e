//! One HTTP/3 request served by the axum [`Router`]: the h3 request head
//! and body stream become an `http::Request<Body>`, the router's response
//! head and body frames are written back as they come (so a blocking LL-HLS
//! playlist reload waits in the handler, and a chunked part is sent while
//! it grows, exactly as over TCP).
//!
//! Requests get a `Host` header from `:authority` when they have none, as
//! the handlers read the host from there (as HTTP/1.1 clients send it).
//! A response write that makes no progress for the idle limit (a peer that
//! stops reading) ends the stream.

use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http::header::HOST;
use http::{HeaderValue, Request};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use crate::metrics;

type SendStream = RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type RecvStream = RequestStream<h3_quinn::RecvStream, Bytes>;

/// Why serving one request stopped early (logged at debug level: a client
/// that goes away is normal).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("h3 stream: {0}")]
    Stream(#[from] h3::error::StreamError),
    #[error("response body: {0}")]
    Body(axum::Error),
    #[error("the peer read nothing for {0:?}")]
    Stalled(Duration),
}

/// Adds `Host` from the URI's authority when the request has none.
pub fn host_from_authority<B>(req: &mut Request<B>) {
    if req.headers().contains_key(HOST) {
        return;
    }
    let host = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    if let Some(h) = host {
        req.headers_mut().insert(HOST, h);
    }
}

/// The request body as a stream of the h3 DATA frames' bytes.
fn request_body(recv: RecvStream) -> Body {
    let frames = futures_util::stream::unfold(Some(recv), |recv| async move {
        let mut recv = recv?;
        match recv.recv_data().await {
            Ok(Some(mut buf)) => {
                let bytes = buf.copy_to_bytes(buf.remaining());
                Some((Ok(bytes), Some(recv)))
            }
            Ok(None) => None,
            // Reported once, then the body ends.
            Err(e) => Some((Err(e), None)),
        }
    });
    Body::from_stream(frames)
}

/// Serves one resolved request on `app` and writes the response.
pub async fn serve_request(
    req: Request<()>,
    stream: RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    app: Router,
    idle_timeout: Duration,
) -> Result<(), RequestError> {
    let (mut send, recv): (SendStream, RecvStream) = stream.split();
    let (parts, ()) = req.into_parts();
    let mut req = Request::from_parts(parts, request_body(recv));
    host_from_authority(&mut req);
    let response = match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, mut body) = response.into_parts();
    let write = |what: &'static str| {
        move |_| {
            metrics::TIMED_OUT.with_label_values(&["h3", what]).inc();
            RequestError::Stalled(idle_timeout)
        }
    };
    tokio::time::timeout(
        idle_timeout,
        send.send_response(http::Response::from_parts(parts, ())),
    )
    .await
    .map_err(write("write"))??;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(RequestError::Body)?;
        match frame.into_data() {
            Ok(data) => {
                if !data.is_empty() {
                    tokio::time::timeout(idle_timeout, send.send_data(data))
                        .await
                        .map_err(write("write"))??;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                }
            }
        }
    }
    tokio::time::timeout(idle_timeout, send.finish())
        .await
        .map_err(write("write"))??;
    Ok(())
}
