//! The HTTP/3 listener: QUIC (quinn, ring) on UDP, HTTP/3 (the h3 crates),
//! serving the same axum [`Router`] as the TCP listeners; one request is
//! served by [`crate::h3_request`].
//!
//! Limits, as on TCP:
//! - Admission: every new connection attempt goes through this listener's
//!   own [`ConnectionLimiter`] (total, per address, pre-request budget);
//!   refused attempts get a QUIC `CONNECTION_REFUSED` and are logged once per
//!   incident ([`RefusalLog`]) and counted in `vela_connections_refused_total`.
//! - Address validation: while more than [`H3Limits::retry_above`] handshakes
//!   are in progress (a flood), a client whose address is not validated yet
//!   gets a Retry (a stateless token round trip) before any state is kept
//!   for it; counted in `vela_quic_retries_total`. quinn also limits what a
//!   server sends to an unvalidated address to three times what it received
//!   (RFC 9000's anti-amplification rule) and caps connection attempts
//!   waiting to be accepted.
//! - Time: the handshake must finish within the header limit; a connection
//!   silent for the idle limit is closed by QUIC's idle timeout; a request
//!   stream must deliver its head within the header limit; a response that
//!   cannot be written for the idle limit is ended.
//! - Streams: at most [`H3Limits::max_streams`] concurrent requests per
//!   connection (QUIC stream credit), request heads of at most
//!   [`H3Limits::max_field_section`] bytes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::HeaderValue;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::ServerConfig;
use tokio::sync::watch;

use crate::http::{stopped, HttpLimits};
use crate::limits::{ConnectionGuard, ConnectionLimiter, RefusalLog};
use crate::metrics;

/// The ALPN protocol of HTTP/3.
pub const ALPN: [&[u8]; 1] = [b"h3"];

/// Limits of the HTTP/3 listener.
#[derive(Debug, Clone, Copy)]
pub struct H3Limits {
    /// Admission and time limits, as for the TCP listeners.
    pub http: HttpLimits,
    /// Concurrent request streams per connection.
    pub max_streams: u32,
    /// Largest request head (QPACK-decoded field section), bytes.
    pub max_field_section: u64,
    /// Handshakes in progress above which unvalidated clients get a Retry
    /// first (0: always).
    pub retry_above: usize,
}

impl Default for H3Limits {
    fn default() -> Self {
        H3Limits {
            http: HttpLimits::default(),
            max_streams: 100,
            max_field_section: 64 << 10,
            retry_above: 64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum H3Error {
    #[error("the TLS configuration cannot serve QUIC: {0}")]
    Crypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("cannot listen for HTTP/3 on {addr} (UDP): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The `Alt-Svc` value announcing HTTP/3 on `port`.
pub fn alt_svc(port: u16) -> HeaderValue {
    HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).expect("a valid header value")
}

/// A bound HTTP/3 endpoint, ready to serve.
#[derive(Debug)]
pub struct H3Listener {
    endpoint: quinn::Endpoint,
}

impl H3Listener {
    /// Binds the UDP socket (so a busy port fails start-up) with `tls`
    /// (TLS 1.3 only, ALPN [`ALPN`]).
    pub fn bind(addr: SocketAddr, tls: ServerConfig, limits: &H3Limits) -> Result<Self, H3Error> {
        let crypto = QuicServerConfig::try_from(tls)?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(limits.max_streams.into())
            // The peer's control stream and two QPACK streams (and grease).
            .max_concurrent_uni_streams(8u32.into())
            .max_idle_timeout(
                quinn::IdleTimeout::try_from(limits.http.idle_timeout)
                    .ok()
                    .or_else(|| Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000)))),
            );
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config
            .transport_config(Arc::new(transport))
            // Attempts waiting for this loop to look at them.
            .max_incoming(limits.http.admission.pre_auth.max(64));
        let endpoint = quinn::Endpoint::server(config, addr)
            .map_err(|source| H3Error::Bind { addr, source })?;
        Ok(H3Listener { endpoint })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }
}

/// Decrements a counter when dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Counted(n.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `app` over HTTP/3 until `stop` turns true, then closes connections
/// gracefully (GOAWAY; open requests finish) and returns once all are closed.
pub async fn serve_h3(
    listener: H3Listener,
    name: &'static str,
    app: Router,
    limits: H3Limits,
    mut stop: watch::Receiver<bool>,
) {
    let endpoint = listener.endpoint;
    let limiter = ConnectionLimiter::new(name, limits.http.admission);
    let refusals = RefusalLog::new(name);
    let handshaking = Arc::new(AtomicUsize::new(0));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = stopped(&mut stop) => break,
        };
        if !incoming.remote_address_validated()
            && incoming.may_retry()
            && handshaking.load(Ordering::Relaxed) >= limits.retry_above
        {
            metrics::QUIC_RETRIES.with_label_values(&[name]).inc();
            let _ = incoming.retry();
            continue;
        }
        let peer = incoming.remote_address();
        let guard = match limiter.admit(peer.ip()) {
            Ok(g) => g,
            Err(reason) => {
                refusals.record(
                    reason.as_str(),
                    &format_args!(
                        "{} limit reached; refusing QUIC connections",
                        reason.as_str()
                    ),
                );
                incoming.refuse();
                continue;
            }
        };
        let connecting = match incoming.accept() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(listener = name, %peer, error = %e, "QUIC accept failed");
                continue;
            }
        };
        let handshake = Counted::new(&handshaking);
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let conn = match tokio::time::timeout(limits.http.header_timeout, connecting).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(listener = name, %peer, error = %e, "QUIC handshake failed");
                    return;
                }
                Err(_) => {
                    metrics::TIMED_OUT
                        .with_label_values(&[name, "handshake"])
                        .inc();
                    return;
                }
            };
            drop(handshake);
            serve_connection(conn, guard, app, limits, stop, name).await;
        });
    }
    // No new connections; the open ones were told to go away by `stop`.
    endpoint.set_server_config(None);
    limiter.wait_idle().await;
    endpoint.close(0u32.into(), b"");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

/// Serves the requests of one QUIC connection.
async fn serve_connection(
    conn: quinn::Connection,
    mut guard: ConnectionGuard,
    app: Router,
    limits: H3Limits,
    mut stop: watch::Receiver<bool>,
    name: &'static str,
) {
    let quic = conn.clone();
    let built = h3::server::builder()
        .max_field_section_size(limits.max_field_section)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await;
    let mut h3 = match built {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(listener = name, error = %e, "HTTP/3 connection set-up failed");
            return;
        }
    };
    let pre_auth = Arc::new(std::sync::Mutex::new(guard.take_pre_auth()));
    let mut stopping = false;
    loop {
        let next = tokio::select! {
            r = h3.accept() => r,
            _ = stopped(&mut stop), if !stopping => {
                stopping = true;
                // GOAWAY: open requests finish, accept() then yields None.
                if h3.shutdown(0).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let resolver = match next {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                if !e.is_h3_no_error() {
                    tracing::debug!(listener = name, error = %e, "HTTP/3 connection ended");
                }
                break;
            }
        };
        let app = app.clone();
        let pre_auth = pre_auth.clone();
        let (header_timeout, idle) = (limits.http.header_timeout, limits.http.idle_timeout);
        // Each request on its own task: a slow head delays only itself.
        tokio::spawn(async move {
            let (req, stream) = match tokio::time::timeout(
                header_timeout,
                resolver.resolve_request(),
            )
            .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::debug!(listener = name, error = %e, "HTTP/3 request head rejected");
                    return;
                }
                Err(_) => {
                    metrics::TIMED_OUT
                        .with_label_values(&[name, "header"])
                        .inc();
                    return;
                }
            };
            // The first complete head gives the pre-request slot back.
            drop(pre_auth.lock().unwrap_or_else(|e| e.into_inner()).take());
            if let Err(e) = crate::h3_request::serve_request(req, stream, app, idle).await {
                tracing::debug!(listener = name, error = %e, "HTTP/3 request ended early");
            }
        });
    }
    quic.close(0u32.into(), b"");
    drop(guard);
}
