//! The HTTP/1.1 + HTTP/2 listener with admission control and time limits,
//! serving an axum [`Router`] (what `axum::serve` does, plus limits).
//!
//! Per connection: [`ConnectionLimiter::admit`] right after accept (refused:
//! a canned `503` JSON answer with `Retry-After`, written without waiting,
//! then close); then the task waits for the socket to become readable before
//! it builds any hyper state, so a silent socket costs a file descriptor and
//! a small task until the header limit closes it; then hyper serves the
//! connection over a [`GuardedIo`] (header, idle and stalled-write limits,
//! JSON for hyper's own error answers). The pre-auth slot of the connection
//! is given back when its first request head is complete.
//!
//! Reuse by other listeners: an HTTPS listener accepts with
//! [`crate::accept::Acceptor`], admits with its own [`ConnectionLimiter`],
//! does the TLS handshake under `timeout(limits.header_timeout, ..)`, then
//! calls [`serve_connection`] with the TLS stream.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use axum::Router;
use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::http1::{self, Parts};
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::accept::Acceptor;
use crate::http_io::{json_error_response, ConnState, GuardedIo, IoLimits};
use crate::limits::{AdmissionLimits, ConnectionGuard, ConnectionLimiter, RefusalLog};
use crate::metrics;
use crate::prefixed::Prefixed;

/// Limits of an HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub admission: AdmissionLimits,
    /// From accept (or the first byte of a later request) to a complete
    /// request head; also bounds a TLS handshake.
    pub header_timeout: Duration,
    /// Longest time without progress in either direction: an idle
    /// keep-alive, a peer that stops reading, a request that stalls.
    pub idle_timeout: Duration,
    /// `Retry-After` of the `503` sent to refused connections, seconds.
    pub retry_after_s: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            admission: AdmissionLimits {
                max_connections: 20_000,
                per_address: 256,
                pre_auth: 4_096,
            },
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            retry_after_s: 5,
        }
    }
}

/// Resolves once `stop` turns true (every listener's shutdown signal).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&v| v).await;
}

/// Serves `app` on `listener` until `stop` turns true, then lets open
/// connections finish (graceful shutdown) and returns once all are closed.
/// `name` labels metrics and logs (`http`, `https`).
pub async fn serve_http(
    listener: TcpListener,
    name: &'static str,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let limiter = ConnectionLimiter::new(name, limits.admission);
    let refusals = RefusalLog::new(name);
    let mut acceptor = Acceptor::new(listener, name);
    loop {
        let (stream, peer) = tokio::select! {
            c = acceptor.accept() => c,
            _ = stopped(&mut stop) => break,
        };
        let guard = match limiter.admit(peer.ip()) {
            Ok(g) => g,
            Err(reason) => {
                refusals.record(
                    reason.as_str(),
                    &format_args!(
                        "{} limit reached; answering 503 with Retry-After: {}",
                        reason.as_str(),
                        limits.retry_after_s
                    ),
                );
                // Never waits: what fits in the socket buffer goes, then close.
                let _ = stream.try_write(&json_error_response(503, Some(limits.retry_after_s)));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let opened = Instant::now();
            // Wait for the first byte before building any hyper state.
            let first = tokio::select! {
                r = tokio::time::timeout(limits.header_timeout, stream.readable()) => r,
                _ = stopped(&mut stop) => return,
            };
            match first {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    metrics::TIMED_OUT
                        .with_label_values(&[name, "header"])
                        .inc();
                    metrics::HTTP_LAYER_ERRORS.with_label_values(&["408"]).inc();
                    let _ = stream.try_write(&json_error_response(408, None));
                    return;
                }
            }
            // Boxed: the task stays small while it waits above.
            Box::pin(serve_connection(
                stream, guard, opened, app, limits, stop, name,
            ))
            .await;
        });
    }
    drop(acceptor);
    limiter.wait_idle().await;
}

/// Serves one admitted connection (plain TCP or a finished TLS handshake)
/// until it closes or `stop` turns true (then gracefully).
///
/// The first bytes tell HTTP/2 (its preface) from HTTP/1. An HTTP/2
/// connection is one hyper connection for its life. HTTP/1 keep-alives are
/// parked between requests: once a response that allows keep-alive is
/// under way, hyper is told to finish that exchange and hand the socket
/// back ([`http1::Connection::poll_without_shutdown`]); the socket then
/// waits for the next request's first bytes with no hyper state (hyper's
/// 8 KiB read buffer and header write buffer would otherwise stay with
/// every idle keep-alive), and a new hyper connection takes over from
/// those bytes. The client sees one ordinary keep-alive connection.
pub async fn serve_connection<I>(
    io: I,
    mut guard: ConnectionGuard,
    opened: Instant,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
    name: &'static str,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(ConnState::new(guard.take_pre_auth()));
    let mut io = GuardedIo::new(
        io,
        state.clone(),
        IoLimits {
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
        },
        name,
        opened,
    );
    // One read buffer for the sniff here and the wake-up reads of a parked
    // keep-alive; hyper's connections are boxed: while a connection waits,
    // its task holds only this future (about 1 KiB), not hyper's state.
    let mut buf = [0u8; FIRST_READ];
    let mut first = BytesMut::new();
    while !io.protocol_known() {
        let n = tokio::select! {
            r = io.read(&mut buf) => r.unwrap_or(0),
            _ = stopped(&mut stop) => 0,
        };
        if n == 0 {
            return;
        }
        first.extend_from_slice(&buf[..n]);
    }
    let park = Arc::new(AtomicBool::new(false));
    let service = RouterService {
        app,
        state,
        park: park.clone(),
        peer: axum::extract::ConnectInfo(std::net::SocketAddr::new(guard.address(), 0)),
    };
    let result = if io.is_h2() {
        let mut conn = Box::pin(
            http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(Prefixed::new(first.freeze(), io)), service),
        );
        tokio::select! {
            r = conn.as_mut() => r,
            _ = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    } else {
        serve_h1(
            first.freeze(),
            io,
            service,
            &park,
            &mut stop,
            name,
            &mut buf,
        )
        .await
    };
    if let Err(e) = result {
        tracing::debug!(listener = name, error = %e, "HTTP connection ended with an error");
    }
    drop(guard);
}

/// Bytes read by the listener itself: the protocol sniff, the wake-up read
/// of a parked keep-alive. A request line and a few headers usually fit.
const FIRST_READ: usize = 512;

/// The HTTP/1 side of [`serve_connection`]: one hyper connection per
/// exchange, parked in between.
async fn serve_h1<I>(
    mut prefix: Bytes,
    mut io: GuardedIo<I>,
    service: RouterService,
    park: &AtomicBool,
    stop: &mut watch::Receiver<bool>,
    name: &'static str,
    buf: &mut [u8; FIRST_READ],
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    loop {
        park.store(false, Ordering::Release);
        let mut conn = Box::new(
            http1::Builder::new()
                .serve_connection(TokioIo::new(Prefixed::new(prefix, io)), service.clone()),
        );
        let mut parking = false;
        let mut stopping = false;
        {
            let mut stop_wait = std::pin::pin!(stopped(stop));
            std::future::poll_fn(|cx| loop {
                if !stopping && stop_wait.as_mut().poll(cx).is_ready() {
                    stopping = true;
                    Pin::new(&mut *conn).graceful_shutdown();
                }
                if let Poll::Ready(r) = conn.poll_without_shutdown(cx) {
                    return Poll::Ready(r);
                }
                // Set while hyper polled the service, so the response head
                // is already encoded: keep-alive stays in it, and hyper
                // stops after this exchange.
                if !parking && !stopping && park.swap(false, Ordering::AcqRel) {
                    parking = true;
                    Pin::new(&mut *conn).graceful_shutdown();
                    continue;
                }
                return Poll::Pending;
            })
            .await?;
        }
        let Parts {
            io: tio, read_buf, ..
        } = (*conn).into_parts();
        let (unread, inner) = tio.into_inner().into_parts();
        io = inner;
        if stopping || !parking {
            // hyper ended the exchange for its own reasons (close asked,
            // HTTP/1.0, an unread request body, an error answer).
            let _ = io.shutdown().await;
            return Ok(());
        }
        prefix = if unread.is_empty() {
            read_buf
        } else if read_buf.is_empty() {
            unread
        } else {
            let mut both = BytesMut::with_capacity(read_buf.len() + unread.len());
            both.extend_from_slice(&read_buf);
            both.extend_from_slice(&unread);
            both.freeze()
        };
        if prefix.is_empty() {
            // Parked. The idle limit of `GuardedIo` ends this read with EOF.
            let parked = metrics::PARKED.with_label_values(&[name]);
            parked.inc();
            let n = tokio::select! {
                r = io.read(buf) => r.unwrap_or(0),
                _ = stopped(stop) => 0,
            };
            parked.dec();
            if n == 0 {
                let _ = io.shutdown().await;
                return Ok(());
            }
            prefix = Bytes::copy_from_slice(&buf[..n]);
        }
    }
}

/// The axum router as a hyper service, marking requests in flight for the
/// connection's time limits and raising `park` when an HTTP/1 exchange may
/// be followed by a parked keep-alive.
#[derive(Clone)]
struct RouterService {
    app: Router,
    state: Arc<ConnState>,
    park: Arc<AtomicBool>,
    /// The client's address, handed to handlers as axum's `ConnectInfo`
    /// (port 0: admission knows the address only).
    peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<http::Request<Incoming>> for RouterService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, mut req: http::Request<Incoming>) -> ServiceFuture {
        let state = self.state.clone();
        let app = self.app.clone();
        let park = self.park.clone();
        req.extensions_mut().insert(self.peer);
        Box::pin(async move {
            let _in_flight = state.request_started();
            // hyper keeps such an exchange alive; anything else (a request
            // body the handler may leave unread, `close`, HTTP/1.0) is left
            // to hyper's own keep-alive rules.
            let parkable = req.version() == http::Version::HTTP_11
                && req.body().is_end_stream()
                && !asks_close(req.headers());
            let res = match app.oneshot(req.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if parkable && !asks_close(res.headers()) {
                park.store(true, Ordering::Release);
            }
            Ok(res)
        })
    }
}

fn asks_close(headers: &http::HeaderMap) -> bool {
    headers.get_all(http::header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
