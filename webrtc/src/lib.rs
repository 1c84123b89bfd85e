//! Vela's WebRTC ingest: WHIP (RFC 9725) publishers, from browsers and
//! encoders, into the media model ([`vela_media`]), so a WHIP stream is
//! packaged and served (LL-HLS, DASH, Smooth) like an RTMP one.
//!
//! The peer connection is [str0m](https://docs.rs/str0m)'s sans-IO `Rtc`:
//! ICE (lite: Vela answers the publisher's checks on one public address),
//! DTLS-SRTP, RTP/RTCP with its jitter buffer, NACK, PLI/FIR and TWCC
//! feedback, and the H.264 depacketiser (single NAL, STAP-A, FU-A).
//! Vela's own parts:
//!
//! - [`avc`]: depacketised Annex B pictures to length-prefixed samples and
//!   avcC records (sans-IO, fuzzed).
//! - [`assemble`]: the sans-IO publish assembler: pictures and their RTP
//!   times in, media events out; when to ask for a keyframe so that
//!   segments are cut at the configured target.
//! - [`sdpfrag`]: the trickle ICE fragments of WHIP `PATCH` (fuzzed).
//! - [`server`]: the tokio driver, one task and one UDP socket for every
//!   session; limits, timeouts and cleanup.
//! - [`play`]: the sans-IO WHEP viewer feed (H.264 forwarded as is).
//! - [`whip`], [`whep`]: the HTTP resources (axum routes).
//! - [`metrics`]: Prometheus metrics.
//!
//! docs/webrtc.md describes the design, the choice of str0m and what is
//! still missing.

pub mod assemble;
pub mod avc;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod play;
pub mod sdpfrag;
pub mod server;
pub mod whep;
pub mod whip;

pub use server::{start, WebRtcConfig, WebRtcHandle, WebRtcLimits};
