//! Why a file cannot be indexed or a fragment built.

/// An index or fragment failure. Messages name the track (its `tkhd` id) and
/// the box, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum VodError {
    #[error("reading {what} at offset {offset}: {source}")]
    Io {
        what: &'static str,
        offset: u64,
        source: std::io::Error,
    },
    #[error("no moov box in the file (not an MP4/MOV, or truncated)")]
    NoMoov,
    #[error("moov at offset {offset} is {size} bytes but the file ends at {file_len}")]
    MoovPastEof {
        offset: u64,
        size: u64,
        file_len: u64,
    },
    #[error("box {kind} at offset {offset}: {reason}")]
    BadBox {
        kind: String,
        offset: u64,
        reason: String,
    },
    #[error("{what} is {size} bytes, above the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("fragmented MP4 input (moov has mvex) is not supported")]
    Fragmented,
    #[error("track {track}: box {kind}: {source}")]
    Atom {
        track: u32,
        kind: &'static str,
        source: mp4_atom::Error,
    },
    #[error("movie header: {0}")]
    Movie(String),
    #[error("track {track}: missing box {kind}")]
    Missing { track: u32, kind: &'static str },
    #[error("track {track}: box {kind}: {reason}")]
    Table {
        track: u32,
        kind: &'static str,
        reason: String,
    },
    #[error("track {track}: zero timescale in {kind}")]
    ZeroTimescale { track: u32, kind: &'static str },
    #[error("track {track}: unsupported codec {codec}")]
    UnsupportedCodec { track: u32, codec: String },
    #[error("no playable (H.264, HEVC or AAC) track in the file")]
    NoPlayableTrack,
    /// Built bytes that a later stage could not read back.
    #[error("corrupt media: {0}")]
    Corrupt(String),
    #[error("no track {0} in the index")]
    UnknownTrack(u32),
    #[error("track {track}: no segment {segment} (the asset has {count})")]
    UnknownSegment {
        track: u32,
        segment: u32,
        count: u32,
    },
}

impl VodError {
    pub(crate) fn table(track: u32, kind: &'static str, reason: impl Into<String>) -> Self {
        VodError::Table {
            track,
            kind,
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_box(kind: &[u8; 4], offset: u64, reason: impl Into<String>) -> Self {
        VodError::BadBox {
            kind: String::from_utf8_lossy(kind).into_owned(),
            offset,
            reason: reason.into(),
        }
    }
}
