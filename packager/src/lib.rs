//! The CMAF packager (sans-IO).
pub mod boxes;
pub mod live;

pub use live::{LivePackager, PackagerConfig, Part, Rendition, Segment};
