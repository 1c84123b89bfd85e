//! [`GuardedIo`]: the per-connection I/O wrapper that gives an HTTP
//! connection its time limits, and rewrites hyper's own error answers into
//! the JSON error shape.
//!
//! hyper has no idle keep-alive limit and no way to answer a slow request
//! head; rather than a watchdog task per connection, the limits live in the
//! I/O object hyper polls. Whenever a read, write or flush would wait, the
//! wrapper also polls one timer for the deadline that applies now:
//!
//! - no request is being handled and a request head is open (the connection
//!   is new, or bytes of the next request have arrived): the head must be
//!   complete within the header limit, else HTTP/1 gets a `408` JSON answer
//!   and the connection closes;
//! - no request is being handled and no head is open (an idle keep-alive, or
//!   a response body the peer does not read): after the idle limit without
//!   progress in either direction the connection closes;
//! - a request is being handled (a blocking playlist reload, an upload):
//!   after the idle limit without progress in either direction the
//!   connection closes too (a stalled upload, a stuck peer); handlers that
//!   wait (blocking reloads) wait far less than that.
//!
//! "A request is being handled" is the [`ConnState`] shared with the service
//! wrapper of `crate::http`, which marks when hyper hands it a request and
//! when the handler has answered.
//!
//! hyper answers a malformed HTTP/1 head itself (`400`, `414` URI too long,
//! `431` headers too large) with an empty body, before any handler sees a
//! request. A write that is exactly such a head (an error status and
//! `content-length: 0`, written while no request is being handled) is
//! replaced by the same status with a JSON body and `connection: close`;
//! handlers' own error answers always have a JSON body (see
//! `crate::json_errors`), so they never match.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::limits::PreAuth;
use crate::metrics;

/// What the service side and the I/O side of one connection share.
pub struct ConnState {
    in_flight: AtomicUsize,
    head_open: AtomicBool,
    /// Released when the first request arrives.
    pre_auth: Mutex<Option<PreAuth>>,
}

impl ConnState {
    pub fn new(pre_auth: Option<PreAuth>) -> Self {
        ConnState {
            in_flight: AtomicUsize::new(0),
            head_open: AtomicBool::new(true),
            pre_auth: Mutex::new(pre_auth),
        }
    }

    /// hyper handed a complete request head to the service.
    pub fn request_started(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_open.store(false, Ordering::Release);
        if let Ok(mut p) = self.pre_auth.try_lock() {
            p.take();
        }
        InFlight(self)
    }

    fn in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }
}

/// A request being handled; dropped when the handler has answered.
pub struct InFlight<'a>(&'a ConnState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The time limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct IoLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Unknown,
    H1,
    H2,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// See the module docs.
pub struct GuardedIo<T> {
    inner: T,
    state: std::sync::Arc<ConnState>,
    limits: IoLimits,
    listener: &'static str,
    timer: Pin<Box<Sleep>>,
    head_since: Instant,
    last_progress: Instant,
    proto: Proto,
    sniffed: usize,
    /// Bytes written in place of what hyper asked to write.
    replacement: Option<Bytes>,
    /// A limit fired: every further operation fails.
    dead: bool,
}

impl<T> GuardedIo<T> {
    /// `opened` is when the connection was accepted: the first request's head
    /// is timed from then.
    pub fn new(
        inner: T,
        state: std::sync::Arc<ConnState>,
        limits: IoLimits,
        listener: &'static str,
        opened: Instant,
    ) -> Self {
        GuardedIo {
            inner,
            state,
            limits,
            listener,
            timer: Box::pin(tokio::time::sleep_until(opened + limits.header_timeout)),
            head_since: opened,
            last_progress: opened,
            proto: Proto::Unknown,
            sniffed: 0,
            replacement: None,
            dead: false,
        }
    }

    /// Whether the bytes read so far tell HTTP/1 from HTTP/2 (the prior
    /// knowledge preface, which an ALPN `h2` client sends too).
    pub fn protocol_known(&self) -> bool {
        self.proto != Proto::Unknown
    }

    /// The connection opened with the HTTP/2 preface.
    pub fn is_h2(&self) -> bool {
        self.proto == Proto::H2
    }

    fn deadline(&self) -> (Instant, &'static str) {
        let in_flight = self.state.in_flight();
        if !in_flight && self.state.head_open.load(Ordering::Acquire) {
            (self.head_since + self.limits.header_timeout, "header")
        } else if in_flight {
            (self.last_progress + self.limits.idle_timeout, "stall")
        } else {
            (self.last_progress + self.limits.idle_timeout, "idle")
        }
    }

    /// Polls the deadline that applies now; `Ready(phase)` once it has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<&'static str> {
        let (at, phase) = self.deadline();
        if self.timer.deadline() != at {
            self.timer.as_mut().reset(at);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.dead = true;
                metrics::TIMED_OUT
                    .with_label_values(&[self.listener, phase])
                    .inc();
                Poll::Ready(phase)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn observe_read(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let now = Instant::now();
        self.last_progress = now;
        if self.proto == Proto::Unknown {
            let n = (H2_PREFACE.len() - self.sniffed).min(data.len());
            if data[..n] != H2_PREFACE[self.sniffed..self.sniffed + n] {
                self.proto = Proto::H1;
            } else {
                self.sniffed += n;
                if self.sniffed == H2_PREFACE.len() {
                    self.proto = Proto::H2;
                }
            }
        }
        // HTTP/1: bytes while nothing is being handled start the next head.
        // HTTP/2: frames between requests (pings, window updates) are not heads.
        if self.proto == Proto::H1
            && !self.state.in_flight()
            && !self.state.head_open.load(Ordering::Acquire)
        {
            self.state.head_open.store(true, Ordering::Release);
            self.head_since = now;
        }
    }
}

fn timed_out(phase: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{phase} time limit"))
}

/// The JSON answer for an HTTP-layer error status.
pub fn json_error_response(status: u16, retry_after: Option<u32>) -> Bytes {
    let (reason, code, message) = crate::json_errors::describe(status);
    let body = crate::json_errors::body(code, message);
    let retry = retry_after
        .map(|s| format!("retry-after: {s}\r\n"))
        .unwrap_or_default();
    Bytes::from(format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry}connection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// If `buf` is hyper's own empty error answer, its status.
fn hyper_error_status(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    if !matches!(status, 400 | 408 | 413 | 414 | 431) {
        return None;
    }
    // Exactly one head, no body, and no content type.
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(&buf[..end]).ok()?.to_ascii_lowercase();
    (head.contains("\r\ncontent-length: 0") && !head.contains("\r\ncontent-type:"))
        .then_some(status)
}

impl<T: AsyncWrite + Unpin> GuardedIo<T> {
    /// Writes out a pending replacement; `Ready(Ok)` once none is left.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(r) = self.replacement.as_mut() {
            if r.is_empty() {
                self.replacement = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, r) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => r.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    return match self.poll_deadline(cx) {
                        Poll::Ready(p) => Poll::Ready(Err(timed_out(p))),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn maybe_replace(&mut self, buf: &[u8]) -> bool {
        if self.proto != Proto::H1 || self.state.in_flight() {
            return false;
        }
        let Some(status) = hyper_error_status(buf) else {
            return false;
        };
        metrics::HTTP_LAYER_ERRORS
            .with_label_values(&[itoa_status(status)])
            .inc();
        self.replacement = Some(json_error_response(status, None));
        true
    }
}

fn itoa_status(s: u16) -> &'static str {
    match s {
        400 => "400",
        408 => "408",
        413 => "413",
        414 => "414",
        431 => "431",
        _ => "other",
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(timed_out("connection")));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.observe_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_deadline(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready("idle") => Poll::Ready(Ok(())), // EOF: a clean close
                Poll::Ready(phase) => {
                    if this.proto == Proto::H1
                        || (this.proto == Proto::Unknown && this.sniffed == 0)
                    {
                        // Best effort, never waits: a 408 for a head that did not come.
                        let answer = json_error_response(408, None);
                        metrics::HTTP_LAYER_ERRORS.with_label_values(&["408"]).inc();
                        let _ = Pin::new(&mut this.inner).poll_write(cx, &answer);
                    }
                    Poll::Ready(Err(timed_out(phase)))
                }
            },
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(timed_out("connection")));
        }
        std::task::ready!(this.poll_replacement(cx))?;
        if this.maybe_replace(buf) {
            let _ = this.poll_replacement(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.last_progress = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_deadline(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(_) => Poll::Ready(Err(timed_out("write"))),
            },
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(timed_out("connection")));
        }
        std::task::ready!(this.poll_replacement(cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if first.len() == total && this.maybe_replace(first) {
                let _ = this.poll_replacement(cx)?;
                return Poll::Ready(Ok(total));
            }
        }
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.last_progress = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_deadline(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(_) => Poll::Ready(Err(timed_out("write"))),
            },
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_replacement(cx))?;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => match this.poll_deadline(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(_) => Poll::Ready(Err(timed_out("write"))),
            },
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.dead {
            std::task::ready!(this.poll_replacement(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hypers_own_error_heads_only() {
        let own = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 12:00:00 GMT\r\n\r\n";
        assert_eq!(hyper_error_status(own), Some(414));
        let own431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(hyper_error_status(own431), Some(431));
        // A handler's JSON answer, a success, a head followed by a body: untouched.
        let json = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_error_status(json), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_error_status(ok), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nxx";
        assert_eq!(hyper_error_status(with_body), None);
        assert_eq!(hyper_error_status(b"HTTP/1.1 4"), None);
    }

    #[test]
    fn json_answer_is_well_formed() {
        let r = json_error_response(503, Some(5));
        let text = std::str::from_utf8(&r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\nretry-after: 5"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "unavailable");
    }
}
