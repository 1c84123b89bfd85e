//! Recording a live stream as a plain progressive MP4, sans-IO.
//!
//! A recording is made of pieces; each piece becomes one ordinary MP4 file
//! that the VOD path ([`crate::MediaIndex`], the on-the-fly packagers,
//! thumbnails) plays like any stored file. A new piece starts when the
//! stream's codec configuration changes ([`Push::NeedsNewPiece`]).
//!
//! # Files
//!
//! A piece on disk is two append-only files that the driver keeps:
//!
//! * the media file (`recording.mp4`): `ftyp`, an `mdat` header whose 64-bit
//!   size is 0 while recording, then the samples' bytes in arrival order.
//!   When finished, the `mdat` size is patched in place and the `moov` is
//!   written after the `mdat` (moov at the end, `co64` chunk offsets);
//! * the journal (`recording.journal`, format in `journal.rs`): a header
//!   record with the tracks and their codec configurations, then one 24-byte
//!   record per sample, each appended after the sample's bytes.
//!
//! # Driver protocol
//!
//! 1. [`RecordingWriter::start`] gives the first bytes of both files. For
//!    every event, [`RecordingWriter::push`]; on [`Push::Appended`] write
//!    [`Append::media`] to the media file, *then* [`Append::journal`] to the
//!    journal (the order is what makes recovery sound: a record never
//!    describes bytes that were not handed to the media file first).
//! 2. On `End`, a codec change or a size/duration policy: [`RecordingWriter::finish`]
//!    and apply the [`Finish`] (see its docs), then delete the journal.
//! 3. After a crash (`kill -9`, power loss): [`RecordingWriter::recover`]
//!    with the journal's bytes and the media file's length, then `finish`
//!    as in 2. Samples whose record is complete and whose data lies in the
//!    file are kept; a torn last record and trailing data are dropped.
//!
//! The core does no I/O and reads no clock: bytes in, bytes out. Sample
//! bytes are not copied (`Append::media` shares the frame's buffer); the
//! writer keeps about 24 bytes per sample to build the `moov`.
//!
//! # Limits
//!
//! At most [`MAX_TRACKS`] tracks, [`MAX_SAMPLE_SIZE`]-byte samples, a
//! [`MAX_HEADER`]-byte journal header, and [`MAX_PIECE_SAMPLES`] samples per
//! piece (then [`Push::NeedsNewPiece`]): that keeps the `moov` well below
//! what [`crate::MediaIndex`] reads.

mod error;
mod journal;
mod moov;
mod writer;

#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use error::RecordError;
pub use writer::RecordingWriter;

/// Tracks per piece.
pub const MAX_TRACKS: usize = 16;
/// Largest sample accepted.
pub const MAX_SAMPLE_SIZE: usize = 64 << 20;
/// Largest journal header record body.
pub const MAX_HEADER: usize = 1 << 20;
/// Samples per piece: about 15 hours of 30 fps video with 48 kHz AAC; its
/// `moov` stays below 200 MB.
pub const MAX_PIECE_SAMPLES: u64 = 1 << 22;
/// Decode times stay below this, as in the VOD index.
pub(crate) const MAX_TIME: i64 = 1 << 62;

/// Bytes to append: `media` to the media file first, then `journal` to the
/// journal. Either may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    pub media: Bytes,
    pub journal: Bytes,
}

/// How to finish the media file. In this order:
///
/// 1. truncate the media file to [`Finish::body_end`] (`media_len -
///    moov.len()`, the end of the last kept sample; after a recovery this
///    drops unjournaled trailing data) and append `moov` after it;
/// 2. make that durable (fsync), then write the 8 bytes `mdat_size` at
///    offset `mdat_size_at` (the `mdat`'s 64-bit size, 0 until then).
///
/// The file is then `media_len` bytes. Patching the size last means a file
/// whose `mdat` size is set always has its `moov` ([`is_finished_mp4`]);
/// a crash in between is recovered from the journal as before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub mdat_size_at: u64,
    pub mdat_size: [u8; 8],
    pub moov: Bytes,
    pub media_len: u64,
}

impl Finish {
    /// Where the `moov` goes: the media file's length before it.
    pub fn body_end(&self) -> u64 {
        self.media_len.saturating_sub(self.moov.len() as u64)
    }
}

/// What [`RecordingWriter::push`] made of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// A sample: append these bytes.
    Appended(Append),
    /// Nothing to write (a discontinuity, an unchanged track set, `End`, a
    /// frame before the first keyframe or overlapping the timeline).
    Ignored,
    /// The track set changed, the piece is full ([`MAX_PIECE_SAMPLES`]), or a
    /// track's timestamps jumped further than a 32-bit sample duration holds:
    /// finish this piece, start another (with the new tracks), and push the
    /// event again there.
    NeedsNewPiece,
}

/// Whether a media file's first bytes (`head`, at least 32 are enough) and
/// length say it is a finished recording: `ftyp`, then an `mdat` with its
/// 64-bit size patched, and something (the `moov`) after it. A piece that
/// is not finished needs [`RecordingWriter::recover`].
pub fn is_finished_mp4(head: &[u8], file_len: u64) -> bool {
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(head.get(at..at + 4)?.try_into().ok()?))
    };
    let Some(ftyp_len) = be32(0) else {
        return false;
    };
    if head.get(4..8) != Some(b"ftyp") || !(16..=256).contains(&ftyp_len) {
        return false;
    }
    let m = ftyp_len as usize;
    if be32(m) != Some(1) || head.get(m + 4..m + 8) != Some(b"mdat") {
        return false;
    }
    let Some(size) = head
        .get(m + 8..m + 16)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
    else {
        return false;
    };
    size >= 16
        && (m as u64)
            .checked_add(size)
            .and_then(|end| end.checked_add(8))
            .is_some_and(|end| end <= file_len)
}
