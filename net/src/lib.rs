//! Vela's listener hardening, shared by every listener (HTTP, and the RTMP
//! ingest; HTTPS, HTTP/3 and WHIP are meant to use the same pieces).
//!
//! What a public listener needs, and where it is:
//! - [`limits`]: admission control. A [`limits::ConnectionLimiter`] per
//!   listener caps connections in total, per client address (IPv6 per /64)
//!   and those that have not authenticated yet (the pre-auth budget); an
//!   admitted connection holds a [`limits::ConnectionGuard`] and releases its
//!   pre-auth slot with [`limits::ConnectionGuard::authenticated`] (RTMP: on
//!   an accepted publish; HTTP: on the first complete request head).
//!   Refusals are logged once per incident with a count
//!   ([`limits::RefusalLog`]) and counted in metrics.
//! - [`accept`]: an `accept` that backs off on `EMFILE`/`ENFILE` instead of
//!   spinning.
//! - [`fdlimit`]: raising the soft descriptor limit to the hard one at start-up.
//! - [`http`] and [`http_io`]: the HTTP/1.1 + HTTP/2 listener serving an axum
//!   router with the limits above plus a request-head limit (`408`), an idle
//!   limit (keep-alives, stalled writes) and JSON for hyper's own `400`,
//!   `414` and `431` answers; [`http::serve_connection`] serves one already
//!   accepted (e.g. TLS) stream.
//! - [`https`]: the HTTPS listener (HTTP/1.1 + HTTP/2 by ALPN) on the same
//!   pieces; [`tls`]: the reloadable server certificate of every TLS
//!   listener (and the self-signed one kept in the data directory).
//! - [`h3`]: the HTTP/3 (QUIC) listener with the same admission and time
//!   limits plus address validation (Retry) under load; [`h3_request`]
//!   serves one HTTP/3 request on the router.
//! - [`json_errors`]: the axum middleware that gives every error answer of
//!   the stack (routing `404`/`405`, extractor `413`/`415`/`422`) the JSON
//!   error shape.
//! - [`metrics`]: `vela_connections_open`, `vela_connections_pre_auth`,
//!   `vela_connections_refused_total`, `vela_connections_timed_out_total`,
//!   `vela_accept_errors_total`, `vela_http_layer_errors_total`,
//!   `vela_quic_retries_total`.
//!
//! A refused connection costs one `accept` and one non-blocking write at most.

pub mod accept;
pub mod fdlimit;
pub mod h3;
pub mod h3_request;
pub mod http;
pub mod http_io;
pub mod https;
pub mod json_errors;
pub mod limits;
pub mod metrics;
pub mod prefixed;
pub mod tls;
