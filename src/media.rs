//! Glue between the control plane's media entries and the VOD side: the
//! upload inspector (the VOD crate's MP4 index reader decides whether a file
//! is playable, and reports what it holds) and the catalog that tells the
//! origin which file an entry plays from.

use std::path::Path;
use std::sync::Arc;

use vela_control_plane::content::{
    ContentInspector, EntryStatus, MediaInfo, TrackInfo as CpTrack, TrackKind,
};
use vela_control_plane::ControlPlane;
use vela_media::{CodecConfig, MediaKind};
use vela_origin::vod::{LookupFuture, VodCatalog, VodLookupError, VodSource};
use vela_vod::{IndexOptions, MediaIndex};

/// Checks an upload by indexing it as the VOD origin will.
pub struct VodInspector {
    pub options: IndexOptions,
}

impl ContentInspector for VodInspector {
    fn inspect(&self, path: &Path) -> Result<MediaInfo, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("cannot read the upload: {e}"))?;
        let index = MediaIndex::open(&file, &self.options).map_err(|e| {
            tracing::info!(error = %e, "upload refused as media");
            e.to_string()
        })?;
        Ok(media_info(&index))
    }
}

/// What the entry shows of its content.
pub fn media_info(index: &MediaIndex) -> MediaInfo {
    let tracks = index
        .tracks()
        .map(|t| {
            let mut info = CpTrack {
                kind: match t.kind() {
                    MediaKind::Video => TrackKind::Video,
                    MediaKind::Audio => TrackKind::Audio,
                },
                codec: t.track.config.codec_string(),
                bitrate: t.track.bitrate.map(u64::from),
                language: t
                    .extended_language
                    .clone()
                    .or_else(|| Some(t.language.clone()).filter(|l| l != "und")),
                ..Default::default()
            };
            match &t.track.config {
                CodecConfig::Video {
                    width,
                    height,
                    frame_rate,
                    ..
                } => {
                    info.width = Some(u32::from(*width));
                    info.height = Some(u32::from(*height));
                    info.frame_rate = *frame_rate;
                }
                CodecConfig::Audio {
                    sample_rate,
                    channels,
                    ..
                } => {
                    info.sample_rate = Some(*sample_rate);
                    info.channels = Some(u32::from(*channels));
                }
            }
            info
        })
        .collect();
    MediaInfo {
        duration_s: index.duration_secs(),
        container: "mp4".into(),
        tracks,
    }
}

/// The control plane as the VOD origin's catalog.
pub struct EntryCatalog {
    pub cp: ControlPlane,
}

impl VodCatalog for EntryCatalog {
    fn lookup<'a>(&'a self, entry: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            match self.cp.media_source(entry).await {
                Ok(Some(src)) => match src.status {
                    EntryStatus::Ready | EntryStatus::Processing => {
                        // The keys' timeline: the entry's last change, the
                        // same on every node; in ms, and a second past it so
                        // it orders after the file-time timelines (ms) of
                        // keys made before.
                        let version = u64::try_from(src.updated_at.saturating_add(1))
                            .ok()
                            .map(|s| s.saturating_mul(1000));
                        Ok(VodSource {
                            path: src.path,
                            version,
                        })
                    }
                    _ => Err(VodLookupError::NotReady),
                },
                Ok(None) => Err(VodLookupError::NotFound),
                Err(e) => {
                    tracing::error!(entry, error = %e, "cannot look up a media entry");
                    Err(VodLookupError::NotReady)
                }
            }
        })
    }
}

/// The inspector as the control plane takes it.
pub fn inspector(options: IndexOptions) -> Arc<dyn ContentInspector> {
    Arc::new(VodInspector { options })
}
