//! What a media entry's content is: the inspector that checks an upload
//! ([`ContentInspector`]), what it reports ([`MediaInfo`], shown as the entry's `media`),
//! the configuration of uploads ([`MediaConfig`]), entry statuses ([`EntryStatus`]),
//! what the VOD origin needs to serve an entry ([`MediaSource`]) and the file-type
//! sniffing that names the stored file (`source.EXT`).
//!
//! The inspector is injected: the control plane does not parse media itself. The binary
//! implements [`ContentInspector`] with the VOD crate's MP4 index reader; without one,
//! uploaded content is accepted as `ready` with no `media` information.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::storage::MediaStore;

/// Default maximum size of one upload: 50 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024 * 1024;

/// Checks uploaded content and reports what it holds. Runs on a blocking thread
/// (`spawn_blocking`), so it may read the whole file.
pub trait ContentInspector: Send + Sync + 'static {
    /// Inspects the complete, fsynced file at `path` (not yet the entry's content).
    /// `Err(reason)` rejects it: the upload fails with 422 and the reason is shown to the
    /// uploader (and stored as the entry's `status_reason`), so it should be short and
    /// say what is wrong with the content, without server paths.
    fn inspect(&self, path: &Path) -> Result<MediaInfo, String>;
}

/// Configuration of media content (part of [`crate::ControlPlaneConfig`]).
#[derive(Clone)]
pub struct MediaConfig {
    /// Largest accepted upload in bytes (a larger body is refused with 413).
    pub max_upload_bytes: u64,
    /// Checks each upload before it becomes the entry's content. `None`: every upload is
    /// accepted as `ready` with no `media` information.
    pub inspector: Option<Arc<dyn ContentInspector>>,
    /// Where content is kept. `None`: a [`crate::storage::LocalMediaStore`] in the data
    /// directory's `media/` folder.
    pub store: Option<Arc<dyn MediaStore>>,
    /// An upload whose body sends nothing for this long fails as interrupted.
    pub idle_timeout: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            inspector: None,
            store: None,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

impl std::fmt::Debug for MediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaConfig")
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("inspector", &self.inspector.is_some())
            .field("store", &self.store.is_some())
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// What an entry's content holds (the entry's `media`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct MediaInfo {
    /// Seconds.
    pub duration_s: f64,
    /// Container format, e.g. `mp4`.
    pub container: String,
    pub tracks: Vec<TrackInfo>,
}

/// One track of the content.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct TrackInfo {
    pub kind: TrackKind,
    /// RFC 6381 codec string, e.g. `avc1.64001e`, `mp4a.40.2`.
    pub codec: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Frames per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_rate: Option<f64>,
    /// Hz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u32>,
    /// ISO 639-2/T or BCP 47 language code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u64>,
}

/// `video`, `audio`, `subtitle` or `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    Video,
    Audio,
    Subtitle,
    #[default]
    #[serde(other)]
    Other,
}

const MAX_TRACKS: usize = 64;
const MAX_TEXT: usize = 64;

impl MediaInfo {
    /// The same information within the bounds the entry stores: finite, non-negative
    /// numbers (JSON has no NaN), at most 64 tracks and 64-character strings.
    pub fn sanitized(mut self) -> MediaInfo {
        fn text(s: &mut String) {
            if let Some((i, _)) = s.char_indices().nth(MAX_TEXT) {
                s.truncate(i);
            }
            s.retain(|c| c != '\0');
        }
        fn real(v: f64) -> Option<f64> {
            (v.is_finite() && v >= 0.0).then_some(v)
        }
        self.duration_s = real(self.duration_s).unwrap_or(0.0);
        text(&mut self.container);
        self.tracks.truncate(MAX_TRACKS);
        for t in &mut self.tracks {
            text(&mut t.codec);
            t.frame_rate = t.frame_rate.and_then(real);
            if let Some(l) = &mut t.language {
                text(l);
            }
        }
        self
    }
}

/// The status of an entry: media `pending` (no content), `processing` (an upload is
/// being received and checked), `ready`, `error` (see `status_reason`); live `offline`,
/// `live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryStatus {
    Pending,
    Processing,
    Ready,
    Error,
    Offline,
    Live,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Pending => "pending",
            EntryStatus::Processing => "processing",
            EntryStatus::Ready => "ready",
            EntryStatus::Error => "error",
            EntryStatus::Offline => "offline",
            EntryStatus::Live => "live",
        }
    }

    pub fn parse(s: &str) -> Option<EntryStatus> {
        Some(match s {
            "pending" => EntryStatus::Pending,
            "processing" => EntryStatus::Processing,
            "ready" => EntryStatus::Ready,
            "error" => EntryStatus::Error,
            "offline" => EntryStatus::Offline,
            "live" => EntryStatus::Live,
            _ => return None,
        })
    }
}

/// A media entry's content as the VOD origin serves it
/// ([`crate::ControlPlane::media_source`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSource {
    pub entry_id: String,
    pub partner_id: i64,
    /// `Ready`, or `Processing` while a replacement upload runs: the previous content
    /// stays playable until the new one is ready.
    pub status: EntryStatus,
    /// The content file (`DATA/media/ENTRY/source.EXT`), complete and inspected.
    pub path: PathBuf,
    /// What the inspector found (`None` without an inspector).
    pub media: Option<MediaInfo>,
    /// File size in bytes.
    pub size: u64,
    /// When the entry last changed (unix seconds, from the database, so the
    /// same on every node): the content's version as a cluster sees it.
    pub updated_at: i64,
    /// File modification time: with `size`, a key for caches of the file's index (a
    /// replacement renames a new file over the old one).
    pub modified: Option<SystemTime>,
}

/// The file extension of content from its first bytes, if recognised.
pub fn sniff_extension(head: &[u8]) -> Option<&'static str> {
    let at = |i: usize, magic: &[u8]| head.get(i..i + magic.len()) == Some(magic);
    if at(4, b"ftyp") {
        // ISO BMFF: the major brand tells QuickTime and audio-only MP4 apart.
        return Some(match head.get(8..12) {
            Some(b"qt  ") => "mov",
            Some(b"M4A ") => "m4a",
            _ => "mp4",
        });
    }
    if at(4, b"moov") || at(4, b"mdat") || at(4, b"free") || at(4, b"wide") {
        return Some("mov");
    }
    if at(0, &[0x1a, 0x45, 0xdf, 0xa3]) {
        // EBML: the DocType, when it is in the head, separates WebM from Matroska.
        let webm = head.windows(4).any(|w| w == b"webm");
        return Some(if webm { "webm" } else { "mkv" });
    }
    if at(0, b"FLV") {
        return Some("flv");
    }
    if head.first() == Some(&0x47) && head.get(188) == Some(&0x47) {
        return Some("ts");
    }
    if at(0, b"RIFF") && at(8, b"WAVE") {
        return Some("wav");
    }
    if at(0, b"RIFF") && at(8, b"AVI ") {
        return Some("avi");
    }
    if at(0, b"OggS") {
        return Some("ogg");
    }
    if at(0, b"ID3")
        || (head.first() == Some(&0xff)
            && head
                .get(1)
                .is_some_and(|b| b & 0xe0 == 0xe0 && b & 0x06 != 0))
    {
        return Some("mp3");
    }
    None
}

/// How many leading bytes [`sniff_extension`] looks at.
pub const SNIFF_LEN: usize = 256;

/// The file extension of a `Content-Type`, for content that sniffing does not recognise.
pub fn extension_for_content_type(ct: &str) -> Option<&'static str> {
    let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
    Some(match mime.as_str() {
        "video/mp4" | "application/mp4" => "mp4",
        "audio/mp4" | "audio/x-m4a" => "m4a",
        "video/quicktime" => "mov",
        "video/x-matroska" | "audio/x-matroska" => "mkv",
        "video/webm" | "audio/webm" => "webm",
        "video/mp2t" => "ts",
        "video/x-flv" => "flv",
        "audio/mpeg" => "mp3",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "video/x-msvideo" => "avi",
        "audio/ogg" | "video/ogg" => "ogg",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_common_containers() {
        let mut mp4 = vec![0, 0, 0, 0x20];
        mp4.extend_from_slice(b"ftypisom\0\0\x02\0");
        assert_eq!(sniff_extension(&mp4), Some("mp4"));
        let mut mov = vec![0, 0, 0, 0x14];
        mov.extend_from_slice(b"ftypqt  ");
        assert_eq!(sniff_extension(&mov), Some("mov"));
        let mut mkv = vec![0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x82, 0x84];
        assert_eq!(sniff_extension(&mkv), Some("mkv"));
        mkv.extend_from_slice(b"webm");
        assert_eq!(sniff_extension(&mkv), Some("webm"));
        let mut ts = vec![0u8; 376];
        ts[0] = 0x47;
        ts[188] = 0x47;
        assert_eq!(sniff_extension(&ts), Some("ts"));
        assert_eq!(sniff_extension(b"FLV\x01\x05"), Some("flv"));
        assert_eq!(sniff_extension(b"ID3\x04"), Some("mp3"));
        assert_eq!(sniff_extension(b"RIFF\0\0\0\0WAVEfmt "), Some("wav"));
        assert_eq!(sniff_extension(b"hello world, not media"), None);
        assert_eq!(sniff_extension(b""), None);
        assert_eq!(sniff_extension(b"\0\0\0"), None);
    }

    #[test]
    fn sniffing_random_and_truncated_heads_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let seeds: [&[u8]; 4] = [
            b"\0\0\0\x20ftypisom",
            b"\x1a\x45\xdf\xa3",
            b"RIFF\0\0\0\0WAVE",
            b"\xff\xfb",
        ];
        for i in 0..20_000 {
            let len = rng.random_range(0..SNIFF_LEN + 8);
            let mut head: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let seed = seeds[i % seeds.len()];
            for (d, s) in head.iter_mut().zip(seed) {
                *d = *s;
            }
            let _ = sniff_extension(&head);
            let _ = sniff_extension(&head[..head.len() / 2]);
        }
    }

    #[test]
    fn content_types_map_to_extensions() {
        assert_eq!(extension_for_content_type("video/mp4"), Some("mp4"));
        assert_eq!(
            extension_for_content_type("Video/MP4; codecs=\"avc1\""),
            Some("mp4")
        );
        assert_eq!(extension_for_content_type("application/octet-stream"), None);
        assert_eq!(extension_for_content_type(""), None);
    }

    #[test]
    fn sanitized_media_info_is_storable_json() {
        let m = MediaInfo {
            duration_s: f64::NAN,
            container: "x".repeat(500),
            tracks: vec![
                TrackInfo {
                    kind: TrackKind::Video,
                    codec: "avc1\0.64001e".into(),
                    frame_rate: Some(f64::INFINITY),
                    ..Default::default()
                };
                100
            ],
        }
        .sanitized();
        assert_eq!(m.duration_s, 0.0);
        assert_eq!(m.container.len(), MAX_TEXT);
        assert_eq!(m.tracks.len(), MAX_TRACKS);
        assert_eq!(m.tracks[0].codec, "avc1.64001e");
        assert_eq!(m.tracks[0].frame_rate, None);
        let back: MediaInfo = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["pending", "processing", "ready", "error", "offline", "live"] {
            assert_eq!(EntryStatus::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(EntryStatus::parse("nope"), None);
    }
}
