//! Vela's HTTP origin for live streams.
//!
//! [`live::LiveRegistry`] attaches a packager task to every stream the hub
//! starts; the task feeds the sans-IO [`vela_packager::LivePackager`] and
//! announces each change on a `watch` channel. The [`http`] handlers render
//! manifests from the packager's timeline on request and serve its segments,
//! parts and init segments; a request that waits for media (LL-HLS blocking
//! reload, a preload-hinted part, a DASH segment still being built) waits on
//! that channel, bounded in time, never by polling. The older part of each
//! DVR window lives in a spool on disk ([`dvr`]), its hot segments in a
//! bounded shared cache ([`dvr_cache`]).
pub mod access;
pub mod cluster;
pub mod dvr;
pub mod dvr_cache;
pub mod fuzzing;
pub mod http;
pub mod live;
pub mod metrics;
pub mod protect;
pub mod record;
pub mod source;
pub mod thumb;
pub mod vod;

pub use http::{router, OriginState};
pub use live::{LiveRegistry, LiveStream, StreamSettings};
