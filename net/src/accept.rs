//! An `accept` that survives running out of file descriptors.
//!
//! `accept(2)` failing with `EMFILE`/`ENFILE` (or `ENOBUFS`/`ENOMEM`) leaves
//! the pending connection in the backlog, so the listener is immediately
//! readable again and a naive loop spins at 100 % CPU logging the error.
//! [`Acceptor::accept`] instead sleeps with exponential back-off (10 ms up to
//! 1 s) while the error persists, counts every failure in
//! `vela_accept_errors_total{listener,kind}`, and logs once per incident with
//! a count ([`RefusalLog`]). Per-connection errors such as `ECONNABORTED`
//! are skipped without sleeping.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::limits::RefusalLog;
use crate::metrics;

/// Wraps a listener's `accept` with back-off and incident logging.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    name: &'static str,
    backoff: Duration,
    log: RefusalLog,
}

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Whether an accept error means the process (or system) is out of a resource,
/// so retrying at once would spin.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux; raw codes keep
    // this free of a libc dependency.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

impl Acceptor {
    /// `name` labels metrics and logs (`http`, `rtmp`, ...).
    pub fn new(listener: TcpListener, name: &'static str) -> Self {
        Acceptor {
            listener,
            name,
            backoff: MIN_BACKOFF,
            log: RefusalLog::new(name),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection; never returns an error (failures back off and retry).
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(c) => {
                    self.backoff = MIN_BACKOFF;
                    return c;
                }
                Err(e) if is_resource_exhaustion(&e) => {
                    metrics::ACCEPT_ERRORS
                        .with_label_values(&[self.name, "fd_exhausted"])
                        .inc();
                    self.log.record(
                        "accept_failed",
                        &format_args!(
                            "accept failed: {e}; backing off {} ms",
                            self.backoff.as_millis()
                        ),
                    );
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    metrics::ACCEPT_ERRORS
                        .with_label_values(&[self.name, "other"])
                        .inc();
                    tracing::debug!(listener = self.name, error = %e, "accept failed");
                    // Not a spin risk, but never a busy loop either.
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}
