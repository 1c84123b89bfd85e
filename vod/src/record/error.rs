//! Why a recording piece cannot be started, extended, finished or recovered.

/// A recorder failure. A `push` that fails leaves the writer unchanged (the
/// event is not recorded), so a driver may log the error and go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a recording needs at least one track")]
    NoTracks,
    #[error("{count} tracks, above the limit of {limit}")]
    TooManyTracks { count: usize, limit: usize },
    #[error("track id {0}: zero or used twice")]
    BadTrackId(u32),
    #[error("track {0}: zero timescale")]
    ZeroTimescale(u32),
    #[error("journal header is {size} bytes, above the limit of {limit}")]
    HeaderTooLarge { size: usize, limit: usize },
    #[error("track {track}: a {size}-byte sample, above the limit of {limit}")]
    SampleTooLarge {
        track: u32,
        size: usize,
        limit: usize,
    },
    #[error("frame of track {0}, which the recording does not have")]
    UnknownTrack(u32),
    #[error("track {track}: decode time {dts} plus the timeline shift {shift} overflows")]
    TimeOverflow { track: u32, dts: i64, shift: i64 },
    #[error("no samples recorded: nothing to finish")]
    NoSamples,
    #[error("journal at byte {at}: {reason}")]
    Journal { at: u64, reason: String },
    #[error("media file is {media_len} bytes, shorter than its {data_start}-byte header")]
    MediaTooShort { media_len: u64, data_start: u64 },
}

impl RecordError {
    pub(crate) fn journal(at: usize, reason: impl Into<String>) -> Self {
        RecordError::Journal {
            at: at as u64,
            reason: reason.into(),
        }
    }
}
