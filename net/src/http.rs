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
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::accept::Acceptor;
use crate::http_io::{json_error_response, ConnState, GuardedIo, IoLimits};
use crate::limits::{AdmissionLimits, ConnectionGuard, ConnectionLimiter, RefusalLog};
use crate::metrics;

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

async fn stopped(stop: &mut watch::Receiver<bool>) {
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
    let io = TokioIo::new(GuardedIo::new(
        io,
        state.clone(),
        IoLimits {
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
        },
        name,
        opened,
    ));
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let state = state.clone();
        let app = app.clone();
        async move {
            let _in_flight = state.request_started();
            let res = app.oneshot(req.map(Body::new)).await;
            Ok::<_, Infallible>(match res {
                Ok(r) => r,
                Err(never) => match never {},
            })
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(listener = name, error = %e, "HTTP connection ended with an error");
    }
    drop(guard);
}
