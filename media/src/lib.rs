//! Vela's media model, shared by every ingest and by the packager.
//!
//! An ingest (RTMP, WHIP, a file import) normalises what it receives into
//! [`MediaEvent`]s: first the set of [`Track`]s with their codec configuration,
//! then [`Frame`]s (timestamped access units) in decode order per track. The
//! [`hub::StreamHub`] fans those events out to consumers (packager, recorder,
//! thumbnailer) without copying payloads: a frame's data is a [`bytes::Bytes`].
//!
//! Timestamps are in each track's own timescale ([`Track::timescale`]), as
//! 64-bit values that never wrap: an ingest whose protocol wraps (RTMP's 32-bit
//! milliseconds, RTP's 32-bit clock) unwraps before it emits.

pub mod codec;
pub mod hub;

use std::sync::Arc;

use bytes::Bytes;

pub use codec::{AudioCodec, CodecConfig, VideoCodec};

/// Whether a track carries pictures or sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaKind {
    Video,
    Audio,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
        }
    }
}

/// One elementary stream of a published stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Stable within a stream: 1 for the first track, 2 for the second, ...
    pub id: u32,
    /// Ticks per second of every timestamp of this track's frames.
    pub timescale: u32,
    pub config: CodecConfig,
    /// Average bitrate announced by the source (bits/s), when it said one.
    pub bitrate: Option<u32>,
}

impl Track {
    pub fn kind(&self) -> MediaKind {
        self.config.kind()
    }
}

/// The tracks of a stream, in track-id order. Shared by reference.
pub type TrackSet = Arc<Vec<Track>>;

/// One access unit: a coded picture or audio frame.
///
/// Video payloads are length-prefixed NAL units with 4-byte lengths (the
/// ISO/IEC 14496-15 sample format that CMAF stores as is) for H.264/H.265,
/// and a temporal unit of OBUs (low-overhead format) for AV1. Audio payloads
/// are raw AAC frames without ADTS headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub track_id: u32,
    /// Decode timestamp, in the track's timescale.
    pub dts: i64,
    /// Presentation minus decode time (B-frames), in the track's timescale.
    pub cts_offset: i32,
    /// A random-access point (IDR / keyframe). Always true for audio.
    pub keyframe: bool,
    pub data: Bytes,
}

impl Frame {
    pub fn pts(&self) -> i64 {
        self.dts + i64::from(self.cts_offset)
    }
}

/// What flows from an ingest session to the consumers of a live stream.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// The stream's track set, sent before the first frame and again whenever
    /// a codec configuration changes (a new sequence header).
    Tracks(TrackSet),
    Frame(Frame),
    /// The publisher went away and a new one continues the same stream: the
    /// timestamps that follow start a new timeline.
    Discontinuity,
    /// The publisher stopped; nothing follows until a new publish.
    End,
}
