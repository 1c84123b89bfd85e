//! Vela's RTMP ingest: RTMP and RTMPS publishers (OBS, ffmpeg, hardware
//! encoders) normalised into Vela's media model ([`vela_media`]).
//!
//! - [`flv`]: a sans-IO parser of FLV audio/video tag bodies (legacy H.264 and
//!   H.265, Enhanced RTMP H.264/H.265/AV1, AAC) into codec configurations and frames.
//! - [`chunk`] and [`amf0`]: hardened readers of the RTMP chunk stream and of
//!   AMF0. rml_rtmp's own ones panic, overflow the stack or allocate without
//!   bound on hostile input, so nothing the network sends reaches rml_rtmp
//!   unchecked: its `ServerSession` only sees messages re-chunked by its own
//!   serializer after they passed these readers.
//! - [`session`]: the sans-IO RTMP session core (bytes and time in, events
//!   out): handshake, protocol control, connect/publish through rml_rtmp's
//!   `ServerSession`, acknowledgements, and the media assembler (track
//!   announcement, timestamp unwrapping and re-basing, bounded early-frame buffer).
//! - [`server`]: the thin tokio driver (TCP or TLS) that feeds sessions,
//!   enforces connection limits and timeouts, asks the [`PublishAuthorizer`],
//!   and publishes into the [`vela_media::hub::StreamHub`].
//! - [`tls`]: loading the RTMPS certificate; [`metrics`]: Prometheus metrics.
//!
//! The binary's entry points: [`server::serve_rtmp`] with an
//! [`server::IngestContext`] (hub, authoriser, [`server::IngestLimits`]), the
//! [`OpenAuthorizer`] for open mode, and [`tls::load_tls_config`].

pub mod amf0;
pub mod chunk;
pub mod flv;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod server;
pub mod session;
pub mod tls;

use std::future::Future;
use std::pin::Pin;

/// Why a publish was refused. `reason` is a short fixed label (it becomes the
/// `reason` label of `vela_publish_refused_total`); `message` is for logs and
/// goes to the encoder in the `NetStream.Publish.BadName` status description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

/// Decides who may publish, and under which stream name.
///
/// `authorize` gets the RTMP application and the stream key and returns the
/// name to publish under (open mode: the key itself; key mode: the entry id).
/// The hooks are told when a publish under that name starts and stops.
pub trait PublishAuthorizer: Send + Sync + 'static {
    fn authorize(
        &self,
        app: &str,
        stream_key: &str,
    ) -> Pin<Box<dyn Future<Output = Result<String, Refusal>> + Send + '_>>;
    fn publish_started(&self, _name: &str) {}
    fn publish_stopped(&self, _name: &str) {}
}

/// Open mode: application `live`, any key of 1 to 128 characters from
/// `[A-Za-z0-9_.-]`, published under the key itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAuthorizer;

/// Whether a stream key is acceptable in open mode (it becomes a URL path segment).
pub fn is_valid_open_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && key != "."
        && key != ".."
}

impl PublishAuthorizer for OpenAuthorizer {
    fn authorize(
        &self,
        app: &str,
        stream_key: &str,
    ) -> Pin<Box<dyn Future<Output = Result<String, Refusal>> + Send + '_>> {
        let result = if app != "live" {
            Err(Refusal::new(
                "app",
                format!("application {app:?} is not served"),
            ))
        } else if !is_valid_open_key(stream_key) {
            Err(Refusal::new(
                "bad_key",
                "stream keys are 1-128 characters of A-Z a-z 0-9 _ . -",
            ))
        } else {
            Ok(stream_key.to_string())
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_authorizer_rules() {
        let block = |app: &str, key: &str| {
            let a = OpenAuthorizer;
            let fut = a.authorize(app, key);
            // The future is ready; poll it without a runtime.
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut fut = fut;
            match fut.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(r) => r,
                std::task::Poll::Pending => unreachable!(),
            }
        };
        assert_eq!(block("live", "my-show_1.a"), Ok("my-show_1.a".to_string()));
        assert_eq!(block("other", "x").unwrap_err().reason, "app");
        assert_eq!(block("live", "").unwrap_err().reason, "bad_key");
        assert_eq!(block("live", "a/b").unwrap_err().reason, "bad_key");
        assert_eq!(block("live", "..").unwrap_err().reason, "bad_key");
        assert_eq!(block("live", "k?token=1").unwrap_err().reason, "bad_key");
        assert_eq!(
            block("live", &"a".repeat(129)).unwrap_err().reason,
            "bad_key"
        );
        assert!(block("live", &"a".repeat(128)).is_ok());
    }
}
