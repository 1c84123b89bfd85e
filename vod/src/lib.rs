//! On-the-fly VOD packaging, as nginx-vod-module does it: a stored MP4/MOV
//! file is indexed once, and CMAF init segments and media fragments are built
//! from its samples on request, without re-encoding and without writing
//! segment files.
//!
//! # Design
//!
//! * [`MediaIndex::open`] reads the top-level box headers (seeking over
//!   `mdat`, so a file whose `moov` is at the end costs two small reads and the
//!   `moov`), decodes the `moov` with mp4-atom and plans the segments of every
//!   playable track. The per-sample tables (`stsz`, `stco`/`co64`, `ctts`,
//!   `stts`, `stsc`, `stss`) are walked once to plan and validate, then
//!   dropped: the index keeps, per segment and track, a cursor into each table
//!   (entry index, position in a run, file offset of the first sample) and the
//!   tables' file positions. A fragment re-reads only its own slice of each
//!   table from the file (`fragment.rs`), so the index of a 2-hour asset stays
//!   in the hundreds of kilobytes ([`MediaIndex::heap_size`]).
//! * Segmentation (`plan.rs`): one list of cut times shared by every track, on
//!   the first video track's keyframes (a segment starts at the first keyframe
//!   at least 0.9 x the target after the segment's start, as the live
//!   packager does), or every `target` seconds for audio-only files. Every
//!   track has the same segment numbers over the same times.
//! * Edit lists ([`EditShift`]): the player of the source presents a sample
//!   at `dts + cts + shift`, `shift = empty edits - media_time of the first
//!   media edit`. The fragments keep exactly that presentation time: a
//!   positive shift moves decode times (`tfdt`), a negative one goes into the
//!   composition offsets (trun version 1). Later edits are not applied (all
//!   samples are passed through).
//! * I/O is positional through [`ReadAt`] (a `File` or bytes in memory); the
//!   parse and plan are pure functions of bytes.
//! * [`cache`]: a byte-bounded LRU of indexes (keyed by path, size and mtime)
//!   and one of built fragments.
//! * [`record`]: the sans-IO recorder that writes a live stream as a
//!   progressive MP4 (moov at the end) with a crash-recovery journal, so a
//!   recording becomes a stored file this crate plays.

pub mod cache;
mod error;
mod fragment;
mod index;
mod moov;
mod plan;
mod read;
pub mod record;
mod scan;
mod tables;

pub mod fuzzing;

#[cfg(test)]
mod synth;
#[cfg(test)]
mod tests;

pub use cache::{FragmentCache, FragmentKey, IndexCache};
pub use error::VodError;
pub use fragment::MAX_FRAGMENT_PAYLOAD;
pub use index::{IndexOptions, MediaIndex, SegmentInfo, TrackInfo};
pub use moov::EditShift;
pub use plan::{MAX_SAMPLES, MAX_SEGMENTS};
pub use read::ReadAt;
