//! The tokio driver: accepts TCP (or TLS) connections and runs one
//! [`RtmpSession`] per connection, acting on its events.
//!
//! The driver owns all I/O and time: it reads, feeds the session with the
//! current time, writes what the session queues, and sleeps until the
//! session's next timer or the connection's deadline. Deadlines: the RTMP
//! handshake must complete within [`IngestLimits::handshake_timeout`] of
//! accepting; afterwards a connection that sends nothing for
//! [`IngestLimits::idle_timeout`] is closed, and so is one whose peer stops
//! reading for as long, and so is one that has not published within
//! [`IngestLimits::publish_timeout`]. While publishing, a session that
//! receives no audio or video for [`SessionConfig::media_timeout`] ends too
//! (the session core's timer), so a client that only acknowledges cannot
//! squat a stream name.
//!
//! Admission ([`vela_net::limits::ConnectionLimiter`], shared by RTMP and
//! RTMPS under the metrics label `rtmp`): connections in total
//! ([`IngestLimits::max_connections`]), per client address
//! ([`IngestLimits::per_address`]) and not yet publishing
//! ([`IngestLimits::pre_publish`], the pre-auth budget, given back when a
//! publish is accepted). Beyond a cap a new connection is closed at once and
//! the refusal is logged once per incident with a count. Until it publishes a
//! connection reads through a small buffer ([`PRE_PUBLISH_READ_BUFFER`]), so
//! sockets that never publish stay cheap; the accept loop backs off when the
//! process is out of file descriptors ([`vela_net::accept::Acceptor`]).
//!
//! Shutdown: [`IngestContext::shutdown`] stops every `serve_rtmp` loop and
//! ends every publish *cleanly* (consumers get `End`, so recordings are
//! finalised), then [`IngestContext::wait_closed`] waits for the connections.
//!
//! Publishing: on a publish request the [`PublishAuthorizer`] names the
//! stream, [`StreamHub::publish`] claims it (a second publisher on a live name
//! is refused like an unauthorised one: `NetStream.Publish.BadName`, then
//! close), media events go to the [`Publisher`], a clean unpublish calls
//! [`Publisher::finish`], and a lost connection just drops the publisher so
//! the hub keeps the stream for a reconnect.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};
use vela_media::hub::{PublishError, Publisher, StreamHub};
use vela_net::accept::Acceptor;
use vela_net::limits::{AdmissionLimits, ConnectionGuard, ConnectionLimiter, RefusalLog};

use crate::metrics;
use crate::session::{RtmpSession, SessionConfig, SessionError, SessionEvent};
use crate::PublishAuthorizer;

/// Connection and protocol limits of the RTMP listener.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Concurrent connections; more are closed on accept.
    pub max_connections: usize,
    /// Concurrent connections from one client address (IPv6: one /64).
    pub per_address: usize,
    /// Concurrent connections that have not (yet) published: the budget
    /// of unauthenticated sessions.
    pub pre_publish: usize,
    /// From accept (including the TLS handshake) to a completed RTMP handshake.
    pub handshake_timeout: Duration,
    /// Longest silence from the peer (or longest blocked write) after the handshake.
    pub idle_timeout: Duration,
    /// Longest wait for the authoriser.
    pub authorize_timeout: Duration,
    /// From accept (or the end of a publish) to an accepted publish: a
    /// connection that only pings is not an ingest and gives its slot back.
    pub publish_timeout: Duration,
    /// Bytes read from the socket at a time while publishing (before, [`PRE_PUBLISH_READ_BUFFER`]).
    pub read_buffer: usize,
    pub session: SessionConfig,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_connections: 10_000,
            per_address: 64,
            pre_publish: 1_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            authorize_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(30),
            read_buffer: 64 * 1024,
            session: SessionConfig::default(),
        }
    }
}

/// The read buffer of a connection until it publishes: the handshake's
/// 1536-byte packets and commands fit, and idle sessions stay cheap.
pub const PRE_PUBLISH_READ_BUFFER: usize = 2048;

/// What every RTMP connection shares.
pub struct IngestContext {
    pub hub: StreamHub,
    pub authorizer: Arc<dyn PublishAuthorizer>,
    pub limits: IngestLimits,
    limiter: ConnectionLimiter,
    refusals: RefusalLog,
    shutdown: watch::Sender<bool>,
}

impl IngestContext {
    pub fn new(
        hub: StreamHub,
        authorizer: Arc<dyn PublishAuthorizer>,
        limits: IngestLimits,
    ) -> Self {
        let limiter = ConnectionLimiter::new(
            "rtmp",
            AdmissionLimits {
                max_connections: limits.max_connections,
                per_address: limits.per_address,
                pre_auth: limits.pre_publish,
            },
        );
        let (shutdown, _) = watch::channel(false);
        IngestContext {
            hub,
            authorizer,
            limits,
            limiter,
            refusals: RefusalLog::new("rtmp"),
            shutdown,
        }
    }

    /// Stops accepting and ends every connection, finishing its publish cleanly.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits until every connection task has ended (use after [`IngestContext::shutdown`]).
    pub async fn wait_closed(&self) {
        self.limiter.wait_idle().await;
    }

    /// Open connections right now.
    pub fn connections(&self) -> usize {
        self.limiter.open()
    }

    /// Open connections that have not published (yet).
    pub fn pre_publish_connections(&self) -> usize {
        self.limiter.pre_auth()
    }
}

/// Accepts RTMP connections (RTMPS when `tls` is given) until
/// [`IngestContext::shutdown`]; each connection runs in its own task.
/// Dropping the future also stops accepting (running connections go on).
pub async fn serve_rtmp(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    ctx: Arc<IngestContext>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let mut shutdown = ctx.shutdown.subscribe();
    let mut listener = Acceptor::new(listener, "rtmp");
    loop {
        let (socket, peer) = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|&stop| stop) => return Ok(()),
        };
        let guard = match ctx.limiter.admit(peer.ip()) {
            Ok(g) => g,
            Err(reason) => {
                ctx.refusals.record(
                    reason.as_str(),
                    &format_args!("{} limit reached; closing new connections", reason.as_str()),
                );
                drop(socket);
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let ctx = ctx.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            metrics::RTMP_CONNECTIONS.inc();
            let deadline = Instant::now() + ctx.limits.handshake_timeout;
            match acceptor {
                None => Box::pin(run_connection(socket, peer, guard, deadline, &ctx)).await,
                Some(acceptor) => {
                    match tokio::time::timeout_at(deadline, acceptor.accept(socket)).await {
                        Ok(Ok(tls)) => {
                            Box::pin(run_connection(tls, peer, guard, deadline, &ctx)).await
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => {
                            timed_out("handshake");
                            debug!(%peer, "TLS handshake timed out")
                        }
                    }
                }
            }
            metrics::RTMP_CONNECTIONS.dec();
        });
    }
}

fn timed_out(phase: &str) {
    vela_net::metrics::TIMED_OUT
        .with_label_values(&["rtmp", phase])
        .inc();
}

/// The publish a connection currently holds.
struct Held {
    name: String,
    publisher: Publisher,
}

struct Connection<'a> {
    ctx: &'a IngestContext,
    peer: SocketAddr,
    held: Option<Held>,
    guard: ConnectionGuard,
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.held.take() {
            // Not finished: the hub keeps the stream for a reconnect.
            info!(peer = %self.peer, stream = %h.name, "publisher connection lost");
            metrics::PUBLISHERS.dec();
            self.ctx.authorizer.publish_stopped(&h.name);
            drop(h.publisher);
        }
    }
}

enum Ended {
    Eof,
    Shutdown,
    Failed(SessionError),
    /// What timed out (for the log) and its metrics phase.
    Timeout(&'static str, &'static str),
    Io(std::io::Error),
}

async fn run_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    peer: SocketAddr,
    guard: ConnectionGuard,
    handshake_deadline: Instant,
    ctx: &IngestContext,
) {
    let mut conn = Connection {
        ctx,
        peer,
        held: None,
        guard,
    };
    let mut session = RtmpSession::new(ctx.limits.session.clone());
    let ended = drive(&mut io, &mut session, &mut conn, handshake_deadline).await;
    let key = session.stream_key().to_string();
    match ended {
        Ended::Eof => debug!(%peer, stream = %key, "connection closed by peer"),
        Ended::Shutdown => debug!(%peer, stream = %key, "connection closed for shutdown"),
        Ended::Io(e) => debug!(%peer, stream = %key, error = %e, "connection error"),
        Ended::Timeout(what, phase) => {
            metrics::SESSIONS_FAILED.inc();
            timed_out(phase);
            // Pre-publish timeouts are what floods are made of: not one line each.
            if phase == "publish" || phase == "handshake" {
                debug!(%peer, stream = %key, "{what} timed out; closing");
            } else {
                info!(%peer, stream = %key, "{what} timed out; closing");
            }
        }
        Ended::Failed(e) => {
            metrics::SESSIONS_FAILED.inc();
            if let SessionError::MediaTimeout { .. } = e {
                timed_out("media");
            }
            if matches!(e, SessionError::AppRefused { .. }) {
                // A publish to an application Vela does not serve is a refused publish too.
                metrics::PUBLISH_REFUSED.with_label_values(&["app"]).inc();
            }
            match &e {
                SessionError::PublishRefused { .. }
                | SessionError::AppRefused { .. }
                | SessionError::PlaybackRefused { .. }
                | SessionError::MediaTimeout { .. } => {
                    info!(%peer, error = %e, "session refused")
                }
                _ => warn!(%peer, kind = e.kind(), error = %e, "session failed"),
            }
        }
    }
    // Best effort: let the peer read a refusal before the close.
    let _ = timeout(Duration::from_secs(1), io.shutdown()).await;
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    session: &mut RtmpSession,
    conn: &mut Connection<'_>,
    handshake_deadline: Instant,
) -> Ended {
    let limits = &conn.ctx.limits;
    // Small until a publish is accepted, so thousands of idle sessions stay cheap.
    let mut buf = vec![0u8; PRE_PUBLISH_READ_BUFFER];
    let mut last_input = Instant::now();
    let mut publish_deadline = Some(last_input + limits.publish_timeout);
    let mut shutdown = conn.ctx.shutdown.subscribe();
    loop {
        if *shutdown.borrow_and_update() {
            finish_publish(conn);
            return Ended::Shutdown;
        }
        if conn.held.is_some() && buf.len() < limits.read_buffer {
            buf.resize(limits.read_buffer, 0);
        }
        // Act on everything the session has queued.
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::Transmit(bytes) => {
                    match timeout(limits.idle_timeout, io.write_all(&bytes)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Ended::Io(e),
                        Err(_) => return Ended::Timeout("write", "write"),
                    }
                }
                SessionEvent::PublishRequested { app, stream_key } => {
                    authorize(session, conn, &app, &stream_key).await;
                }
                SessionEvent::Media(ev) => {
                    if let Some(h) = &conn.held {
                        h.publisher.send(ev);
                    }
                }
                SessionEvent::PublishFinished => finish_publish(conn),
                SessionEvent::Failed(e) => {
                    let _ = timeout(Duration::from_secs(1), io.flush()).await;
                    return Ended::Failed(e);
                }
            }
        }
        // TLS buffers records: flush, but never wait on a peer that stopped reading for ever.
        match timeout(limits.idle_timeout, io.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Ended::Io(e),
            Err(_) => return Ended::Timeout("write", "write"),
        }
        match (&conn.held, publish_deadline) {
            (Some(_), _) => publish_deadline = None,
            (None, None) => publish_deadline = Some(Instant::now() + limits.publish_timeout),
            (None, Some(_)) => {}
        }
        let (mut deadline, mut what) = if session.is_handshaking() {
            (handshake_deadline, ("RTMP handshake", "handshake"))
        } else {
            (
                last_input + limits.idle_timeout,
                ("idle connection", "idle"),
            )
        };
        if let Some(p) = publish_deadline.filter(|&p| p < deadline) {
            (deadline, what) = (p, ("wait for a publish", "publish"));
        }
        let timer = session.poll_timeout().map(Instant::from_std);
        let wake = timer.map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            read = io.read(&mut buf) => match read {
                Ok(0) => return Ended::Eof,
                Ok(n) => {
                    last_input = Instant::now();
                    metrics::INGEST_BYTES.inc_by(n as u64);
                    session.handle_input(last_input.into_std(), &buf[..n]);
                }
                Err(e) => return Ended::Io(e),
            },
            _ = shutdown.changed() => {}
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if now >= deadline {
                    return Ended::Timeout(what.0, what.1);
                }
                session.handle_timeout(now.into_std());
            }
        }
    }
}

/// A clean end of the held publish (unpublish or shutdown): consumers get `End`.
fn finish_publish(conn: &mut Connection<'_>) {
    if let Some(h) = conn.held.take() {
        info!(peer = %conn.peer, stream = %h.name, "publish finished");
        metrics::PUBLISHERS.dec();
        h.publisher.finish();
        conn.ctx.authorizer.publish_stopped(&h.name);
    }
}

async fn authorize(
    session: &mut RtmpSession,
    conn: &mut Connection<'_>,
    app: &str,
    stream_key: &str,
) {
    let ctx = conn.ctx;
    let decision = match timeout(
        ctx.limits.authorize_timeout,
        ctx.authorizer.authorize(app, stream_key),
    )
    .await
    {
        Ok(Ok(name)) => match ctx.hub.publish(&name) {
            Ok(publisher) => Ok((name, publisher)),
            Err(PublishError::AlreadyPublishing(name)) => Err(crate::Refusal::new(
                "already_publishing",
                format!("stream {name:?} already has a publisher"),
            )),
        },
        Ok(Err(refusal)) => Err(refusal),
        Err(_) => Err(crate::Refusal::new(
            "authorizer_timeout",
            "the publish could not be authorised in time",
        )),
    };
    match decision {
        Ok((name, publisher)) => {
            info!(peer = %conn.peer, app, stream = %name, "publish started");
            metrics::PUBLISHERS.inc();
            ctx.authorizer.publish_started(&name);
            session.accept_publish(&name);
            conn.held = Some(Held { name, publisher });
            conn.guard.authenticated();
        }
        Err(refusal) => {
            metrics::PUBLISH_REFUSED
                .with_label_values(&[refusal.reason])
                .inc();
            warn!(peer = %conn.peer, app, key = %crate::session::redact(stream_key), reason = refusal.reason, "publish refused: {}", refusal.message);
            session.reject_publish(&refusal.message);
        }
    }
}
