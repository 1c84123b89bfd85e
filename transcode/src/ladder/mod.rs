//! Cloud encoding of ABR ladders: one source decoded once, scaled once per
//! rung, encoded with x264 with keyframes forced at the source's keyframe
//! times so that every rung's segments and parts align with the source's.
//!
//! - [`plan`]: which rungs a source gets (no upscaling) and their x264
//!   settings (pure);
//! - [`encoder`]: the GStreamer pipeline;
//! - [`live`]: the stage between a live stream's hub channel and its
//!   packager, with the node's encoding [`live::Budget`].

pub mod encoder;
pub mod live;
pub mod metrics;
pub mod plan;

pub use encoder::{Encoder, Output, SPEED_PRESET};
pub use live::{Budget, LadderLookup, LiveLadders};
pub use plan::{Rung, RungSpec};
