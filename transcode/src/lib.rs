//! Vela's GStreamer work: thumbnails of CMAF video and cloud encoding of
//! ABR ladders ([`ladder`]).
//!
//! - [`pipeline`]: GStreamer initialisation (once per process), element
//!   creation that names a missing plugin package, and running a pipeline
//!   with bounded waits and errors mapped to the element that failed.
//! - [`thumbnail`]: the JPEG of the frame shown at a presentation time, from
//!   an init segment plus media fragments.
//! - [`fmp4`]: the small fragmented-MP4 index the thumbnailer plans with
//!   (sample times, codec), before any pipeline runs.
//! - [`nal`]: which access units the decoder can do without (unreferenced
//!   pictures other than the asked one).
//!
//! Everything here blocks: async callers use `tokio::task::spawn_blocking`.
//! The crate links the GStreamer libraries (1.22 on Debian 12); the plugins
//! it needs are looked up at run time and a missing one is an error that
//! names its Debian package.

pub mod fmp4;
pub mod fuzzing;
pub mod ladder;
pub mod nal;
pub mod pipeline;
pub mod thumbnail;

pub use thumbnail::{
    last_frame_time, thumbnail, thumbnail_within, Stage, ThumbnailError, ThumbnailInput,
    ThumbnailRequest, MAX_HEIGHT, MAX_WIDTH, TIME_LIMIT,
};
