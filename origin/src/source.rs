//! The seam between a presentation and the bytes of its files.
//!
//! Manifests are rendered from a [`vela_packager::Presentation`]; the files
//! they name (init segments, segments, parts) come from the presentation's
//! [`MediaSource`]. A live stream keeps its files in memory; stored media
//! builds them from the source file on request. The encryption layer
//! ([`crate::protect`]) reads clear files through the same trait, so every
//! source gets the same DRM.
//!
//! Implementations may block (a file read): callers that run on an async
//! worker use `spawn_blocking` for sources that do I/O.

use bytes::Bytes;

/// The clear bytes of a presentation's files, by rendition id.
pub trait MediaSource: Send + Sync {
    /// Init segment `version` of a rendition.
    fn init(&self, rid: &str, version: u32) -> Option<Bytes>;
    /// A complete segment, as its chunks in order (a live segment's parts,
    /// or one fragment).
    fn segment(&self, rid: &str, msn: u64) -> Option<Vec<Bytes>>;
    /// Part `idx` of segment `msn` (low-latency sources only).
    fn part(&self, rid: &str, msn: u64, idx: usize) -> Option<Bytes>;
    /// The oldest segment of a rendition whose encrypted variants are worth
    /// keeping in memory: a live stream keeps only the recent part of its
    /// window in memory (the rest is in the DVR spool), and its cache of
    /// encrypted files must not grow with the window either.
    fn cache_floor(&self, _rid: &str) -> u64 {
        0
    }
}
