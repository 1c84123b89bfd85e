//! The CMAF packager (sans-IO).
//!
//! [`live::LivePackager`] turns the media model's events into CMAF init
//! segments, segments and low-latency parts, written once per rendition;
//! [`hls`] and [`dash`] describe that one set of files as HLS/LL-HLS
//! playlists and a DASH MPD. Nothing here does I/O or reads a clock: the
//! origin drives it and serves what it holds.
pub mod boxes;
pub mod dash;
pub mod fuzzing;
pub mod hls;
pub mod live;
pub mod smooth;
pub mod time_fmt;

pub use live::{Changes, LivePackager, PackagerConfig, Part, Rendition, Segment};
