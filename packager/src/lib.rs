//! The packager: the format-neutral presentation model and its writers.
//!
//! [`presentation`] describes what can be played (renditions, segments,
//! parts, liveness) with no format's words; [`hls`], [`dash`] and [`smooth`]
//! render it, and only it, as manifests; the MPD and the Smooth manifest are
//! built as a typed XML tree ([`xml`]), and encryption reaches them as typed
//! signalling ([`protection`]), never as preformatted markup.
//! [`live::LivePackager`] (sans-IO)
//! turns the media model's events into CMAF init segments, segments and
//! low-latency parts, written once per rendition, and describes them as a
//! presentation; stored media (the `vela-vod` crate) describes itself the
//! same way. Nothing here does I/O or reads a clock: the origin drives it
//! and serves what it holds.
pub mod boxes;
pub mod dash;
pub mod fuzzing;
pub mod hls;
pub mod live;
pub mod presentation;
pub mod protection;
pub mod smooth;
pub mod time_fmt;
pub mod xml;

pub use live::{Changes, LivePackager, PackagerConfig, SpoolJob};
pub use presentation::{Liveness, Part, Presentation, Rendition, Segment};
