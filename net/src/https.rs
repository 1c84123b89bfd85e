//! The HTTPS listener: HTTP/1.1 and HTTP/2 (by ALPN) over TLS, serving the
//! same axum [`Router`] through [`serve_connection`] with the same limits as
//! the plain listener.
//!
//! Per connection: [`crate::accept::Acceptor`], admission by this listener's
//! own [`ConnectionLimiter`] (refused: closed at once; a `503` in plain text
//! would mean nothing to a TLS client), a wait for the first byte and then
//! the TLS handshake, both within the header limit counted from accept, then
//! [`serve_connection`] with the TLS stream. The certificate comes from the
//! [`ServerConfig`]'s resolver (a [`crate::tls::CertStore`]), so a reload
//! applies to the next handshake.

use std::sync::Arc;

use axum::Router;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::accept::Acceptor;
use crate::http::{serve_connection, stopped, HttpLimits};
use crate::limits::{ConnectionLimiter, RefusalLog};
use crate::metrics;

/// ALPN protocols the HTTPS listener offers, preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Serves `app` over TLS on `listener` until `stop` turns true, then lets
/// open connections finish and returns once all are closed. `tls` should
/// offer [`ALPN`].
pub async fn serve_https(
    listener: TcpListener,
    name: &'static str,
    app: Router,
    limits: HttpLimits,
    tls: Arc<ServerConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let limiter = ConnectionLimiter::new(name, limits.admission);
    let refusals = RefusalLog::new(name);
    let mut acceptor = Acceptor::new(listener, name);
    let tls = TlsAcceptor::from(tls);
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
                    &format_args!("{} limit reached; closing", reason.as_str()),
                );
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let opened = Instant::now();
            let deadline = opened + limits.header_timeout;
            // Nothing is allocated for the handshake before the first byte.
            let handshake = async {
                stream.readable().await.ok()?;
                tls.accept(stream).await.ok()
            };
            let tls_stream = tokio::select! {
                r = tokio::time::timeout_at(deadline, handshake) => r,
                _ = stopped(&mut stop) => return,
            };
            let tls_stream = match tls_stream {
                Ok(Some(s)) => s,
                // A failed handshake is the client's business (rustls logs
                // at debug level).
                Ok(None) => return,
                Err(_) => {
                    metrics::TIMED_OUT
                        .with_label_values(&[name, "handshake"])
                        .inc();
                    return;
                }
            };
            Box::pin(serve_connection(
                tls_stream, guard, opened, app, limits, stop, name,
            ))
            .await;
        });
    }
    drop(acceptor);
    limiter.wait_idle().await;
}
