//! Encryption on the way out: per-stream policy, encrypted variants of the
//! packager's files, and the key and ClearKey licence routes.
//!
//! The packager keeps one clear copy of every segment and part. A protected
//! format names its own variant of each file (`seg-N.cenc.m4s`,
//! `part-N.P.aes.m4s`, `init-V.cbcs.mp4`); the first request for a variant
//! encrypts it and caches the result with the stream, so each byte is
//! encrypted once per output format, not once per request, and the cache
//! empties as segments leave the DVR window.
//!
//! Variants: `aes` (HLS `METHOD=AES-128`: whole files in AES-128-CBC, the
//! init segment stays clear), `cbcs` (HLS `SAMPLE-AES` and DASH `cbcs`: one
//! set of files serves both), `cenc` (DASH `cenc`). HLS AES-128 uses one key
//! per key period for all renditions; `cenc`/`cbcs` one per key period and
//! track kind. When the key store rotates (every N segments), a protected
//! init segment names its key period (`init-V.kK.cenc.mp4`: its `tenc`
//! carries that period's key id), HLS writes a new `EXT-X-KEY` (and, for
//! SAMPLE-AES, `EXT-X-MAP`) and the MPD a new Period at each key period.
//!
//! Smooth Streaming (`mss = "cenc"`): each fragment re-boxed from a segment
//! is encrypted in 'cenc' with the sample encryption entries both in `senc`
//! and in PIFF's `uuid` box, and the manifest carries a PlayReady
//! `ProtectionHeader` with the video and audio key ids (of key period 0:
//! Smooth has one header for the whole presentation).
//!
//! When every format of a stream is protected, its clear files are not
//! served at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::source::MediaSource;
use bytes::Bytes;
use vela_drm::{cenc, hls as drm_hls, pssh, ContentKey, KeyScope, KeyStore, Scheme, SystemId};
use vela_media::{CodecConfig, MediaKind};
use vela_packager::protection::{
    CencScheme, CommonEncryption, ContentProtection, KeyPeriod, KeyRotation,
};
use vela_packager::smooth::ProtectionHeader;

/// HLS protection of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HlsMode {
    #[default]
    None,
    Aes128,
    SampleAes,
}

/// DASH protection of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DashMode {
    #[default]
    None,
    Cenc,
    Cbcs,
}

/// A stream's encryption policy (INTERFACE.md: `[drm]` / an entry's `drm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrmPolicy {
    pub hls: HlsMode,
    pub dash: DashMode,
    /// Smooth Streaming protected (`mss = "cenc"`): PIFF/CENC fragments and
    /// a PlayReady `ProtectionHeader` in the manifest.
    pub mss_protected: bool,
}

impl DrmPolicy {
    /// Parses the INTERFACE.md values (`hls = none|aes-128|sample-aes`,
    /// `dash = none|cenc|cbcs`, `mss = none|cenc`).
    pub fn parse(hls: &str, dash: &str, mss: &str) -> Option<DrmPolicy> {
        Some(DrmPolicy {
            hls: match hls {
                "none" => HlsMode::None,
                "aes-128" => HlsMode::Aes128,
                "sample-aes" => HlsMode::SampleAes,
                _ => return None,
            },
            dash: match dash {
                "none" => DashMode::None,
                "cenc" => DashMode::Cenc,
                "cbcs" => DashMode::Cbcs,
                _ => return None,
            },
            mss_protected: match mss {
                "none" => false,
                "cenc" => true,
                _ => return None,
            },
        })
    }

    /// Whether Smooth Streaming (clear) may be served for this stream.
    /// Whether the stream has Smooth output: encrypted, or clear while some
    /// other format is clear too (a protected format is never undercut by
    /// clear Smooth fragments).
    pub fn serves_smooth(&self) -> bool {
        self.mss_protected || self.serves_clear()
    }

    pub fn is_clear(&self) -> bool {
        self.hls == HlsMode::None && self.dash == DashMode::None
    }

    /// Whether some format plays the clear files.
    pub fn serves_clear(&self) -> bool {
        self.hls == HlsMode::None || self.dash == DashMode::None
    }

    /// The file variant HLS playlists name, if encrypted.
    pub fn hls_tag(&self) -> Option<&'static str> {
        match self.hls {
            HlsMode::None => None,
            HlsMode::Aes128 => Some("aes"),
            HlsMode::SampleAes => Some("cbcs"),
        }
    }

    pub fn dash_tag(&self) -> Option<&'static str> {
        match self.dash {
            DashMode::None => None,
            DashMode::Cenc => Some("cenc"),
            DashMode::Cbcs => Some("cbcs"),
        }
    }

    /// Whether a request for an init segment may have the variant `tag`:
    /// as for media, and the clear init of HLS AES-128, which names it (an
    /// init segment holds no media).
    pub fn allows_init(&self, tag: Option<&str>) -> bool {
        self.allows(tag) || (tag.is_none() && self.hls == HlsMode::Aes128)
    }

    /// Whether a request may have the variant `tag` (`None`: clear).
    pub fn allows(&self, tag: Option<&str>) -> bool {
        match tag {
            None => self.serves_clear(),
            Some(t) => self.hls_tag() == Some(t) || self.dash_tag() == Some(t),
        }
    }
}

/// Why an encrypted variant could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    #[error("key store: {0}")]
    Keys(vela_drm::DrmError),
    #[error("encryption: {0}")]
    Encrypt(vela_drm::DrmError),
}

impl ProtectError {
    /// The key belongs to a replaced instance or a period that left the
    /// window: the media is gone, not broken.
    pub fn is_retired(&self) -> bool {
        matches!(
            self,
            ProtectError::Keys(vela_drm::DrmError::KeyRetired { .. })
        )
    }
}

/// Keys, policy and the cache of encrypted variants.
pub struct Protection {
    pub keys: KeyStore,
    policy: Arc<dyn Fn(&str) -> DrmPolicy + Send + Sync>,
    /// (stream instance, rendition, tag, msn, part or `None` for the whole
    /// segment or for the init segment with msn = version) -> bytes.
    cache: Mutex<HashMap<CacheKey, Bytes>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    stream: String,
    instance: u64,
    rendition: String,
    tag: &'static str,
    file: FileId,
}

/// Which file of a rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileId {
    /// Init segment version and key period (0 without rotation).
    Init(u32, u64),
    Segment(u64),
    Part(u64, usize),
}

impl FileId {
    fn msn(&self) -> Option<u64> {
        match self {
            FileId::Init(..) => None,
            FileId::Segment(m) | FileId::Part(m, _) => Some(*m),
        }
    }
}

fn scheme_of(tag: &str) -> Option<Scheme> {
    match tag {
        "cenc" => Some(Scheme::Cenc),
        "cbcs" => Some(Scheme::Cbcs),
        _ => None,
    }
}

/// Canonical form of a variant tag from a URL.
pub fn known_tag(tag: &str) -> Option<&'static str> {
    ["aes", "cenc", "cbcs"].into_iter().find(|t| *t == tag)
}

impl Protection {
    pub fn new(keys: KeyStore, policy: Arc<dyn Fn(&str) -> DrmPolicy + Send + Sync>) -> Self {
        Protection {
            keys,
            policy,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn policy(&self, stream: &str) -> DrmPolicy {
        (self.policy)(stream)
    }

    /// The key of a variant's media: AES-128 has one key for all tracks;
    /// the common-encryption schemes one per track kind. All follow the
    /// rotation, and each live instance (`scope.timeline`) has its own.
    pub fn key_for(
        &self,
        scope: KeyScope<'_>,
        tag: &str,
        kind: MediaKind,
        msn: u64,
    ) -> Result<ContentKey, ProtectError> {
        let kind = (tag != "aes").then_some(kind);
        self.keys.key(scope, kind, msn).map_err(ProtectError::Keys)
    }

    /// Segments per key period, when keys rotate.
    pub fn rotation(&self) -> Option<u64> {
        self.keys.rotation()
    }

    /// The key period of segment `msn`.
    pub fn key_period(&self, msn: u64) -> u64 {
        self.keys.period_of(msn)
    }

    /// The `EXT-X-KEY` attributes of a stream's HLS playlists at `msn`.
    pub fn hls_key_attributes(
        &self,
        scope: KeyScope<'_>,
        mode: HlsMode,
        kind: MediaKind,
        msn: u64,
        key_query: &str,
    ) -> Option<String> {
        match mode {
            HlsMode::None => None,
            HlsMode::Aes128 => {
                let key = self.key_for(scope, "aes", kind, msn).ok()?;
                Some(format!(
                    "METHOD=AES-128,URI=\"/drm/keys/{}{key_query}\"",
                    hex(&key.kid)
                ))
            }
            HlsMode::SampleAes => {
                let key = self.key_for(scope, "cbcs", kind, msn).ok()?;
                Some(format!(
                    "METHOD=SAMPLE-AES,URI=\"/drm/keys/{}{key_query}\",KEYFORMAT=\"identity\",KEYFORMATVERSIONS=\"1\",IV=0x{}",
                    hex(&key.kid),
                    hex(&key.iv)
                ))
            }
        }
    }

    /// The MPD's protection description for a stream, or `None` when clear.
    /// `window`: the first and last segment the MPD may list (with key
    /// rotation, the signalling of each key period they span).
    pub fn dash_protection(
        &self,
        scope: KeyScope<'_>,
        mode: DashMode,
        license_url: &str,
        window: (u64, u64),
    ) -> Option<CommonEncryption> {
        let (scheme, cenc_scheme) = match mode {
            DashMode::None => return None,
            DashMode::Cenc => (Scheme::Cenc, CencScheme::Cenc),
            DashMode::Cbcs => (Scheme::Cbcs, CencScheme::Cbcs),
        };
        let tag = cenc_scheme.as_str();
        let signalling = |kind: MediaKind, msn: u64| -> Option<Vec<ContentProtection>> {
            let key = self.key_for(scope, tag, kind, msn).ok()?;
            let kids = [key.kid];
            Some(vec![
                ContentProtection::Mp4Protection {
                    scheme: cenc_scheme,
                    default_kid: key.kid,
                },
                ContentProtection::ClearKey {
                    laurl: license_url.to_string(),
                    pssh: pssh::pssh_box(SystemId::ClearKey, scheme, &kids),
                },
                ContentProtection::Widevine {
                    pssh: pssh::pssh_box(SystemId::Widevine, scheme, &kids),
                },
                ContentProtection::PlayReady {
                    pssh: pssh::pssh_box(SystemId::PlayReady, scheme, &kids),
                    pro: pssh::playready_object(scheme, &kids, None),
                },
            ])
        };
        let key_period = |msn: u64| -> Option<KeyPeriod> {
            Some(KeyPeriod {
                video: signalling(MediaKind::Video, msn)?,
                audio: signalling(MediaKind::Audio, msn)?,
            })
        };
        let rotation = match self.rotation() {
            Some(every) => {
                let mut periods = std::collections::BTreeMap::new();
                for k in self.key_period(window.0)..=self.key_period(window.1) {
                    periods.insert(k, key_period(self.keys.first_msn(k))?);
                }
                Some(KeyRotation { every, periods })
            }
            None => None,
        };
        Some(CommonEncryption {
            scheme: cenc_scheme,
            keys: key_period(window.0)?,
            rotation,
        })
    }

    /// Smooth's `ProtectionHeader` (PlayReady, with the video and audio key
    /// ids). Smooth has one header for the whole presentation, so its keys
    /// do not rotate: they are those of key period 0. MSS is 'cenc' only.
    pub fn smooth_protection_header(&self, scope: KeyScope<'_>) -> Option<ProtectionHeader> {
        let kids = [MediaKind::Video, MediaKind::Audio]
            .map(|kind| self.key_for(scope, "cenc", kind, 0).ok().map(|k| k.kid));
        let kids: Vec<[u8; 16]> = kids.into_iter().collect::<Option<_>>()?;
        Some(ProtectionHeader {
            system_id: SystemId::PlayReady.uuid(),
            header: pssh::playready_object(Scheme::Cenc, &kids, None),
        })
    }

    /// A Smooth fragment encrypted ('cenc', with PIFF's sample encryption
    /// box), cached like the other variants.
    pub fn smooth_fragment(
        &self,
        stream: &str,
        instance: u64,
        r: &vela_packager::Rendition,
        msn: u64,
        clear: &[u8],
    ) -> Result<Bytes, ProtectError> {
        let kind = r.track.kind();
        let key = CacheKey {
            stream: stream.to_string(),
            instance,
            rendition: format!("mss-{}", r.id),
            tag: "cenc",
            file: FileId::Segment(msn),
        };
        if let Some(b) = self.cached(&key) {
            return Ok(b);
        }
        let scope = KeyScope {
            stream,
            timeline: instance,
            oldest_msn: r.first_msn(),
        };
        let k = self.key_for(scope, "cenc", kind, 0)?;
        // IVs apart from the DASH variant's under the same key: track ids
        // below 0x80 there, with 0x80 set here.
        let seed = cenc::iv_seed(r.track.id | 0x80, msn, 0);
        let out = cenc::protect_fragment_piff(clear, &k, &r.track.config, seed)
            .map_err(ProtectError::Encrypt)?;
        self.remember(key, out.clone(), r.first_msn());
        Ok(out)
    }

    /// Whether key period `period` covers a segment of `r`'s window (or the
    /// one being built).
    fn period_in_window(&self, r: &vela_packager::Rendition, period: u64) -> bool {
        (self.key_period(r.first_msn())..=self.key_period(r.next_part().0)).contains(&period)
    }

    /// The `tag` variant of one file, from the cache or encrypted now.
    /// `None` when the clear file does not exist.
    pub fn variant(
        &self,
        stream: &str,
        instance: u64,
        r: &vela_packager::Rendition,
        src: &dyn MediaSource,
        tag: &'static str,
        file: FileId,
    ) -> Result<Option<Bytes>, ProtectError> {
        let rid = r.id.as_str();
        let key = CacheKey {
            stream: stream.to_string(),
            instance,
            rendition: rid.to_string(),
            tag,
            file,
        };
        if let Some(b) = self.cached(&key) {
            return Ok(Some(b));
        }
        let scope = KeyScope {
            stream,
            timeline: instance,
            oldest_msn: r.first_msn(),
        };
        let kind = r.track.kind();
        let config: &CodecConfig = &r.track.config;
        let out = match (tag, file) {
            // AES-128 keeps the init segment clear (the playlist's EXT-X-MAP
            // precedes its EXT-X-KEY).
            ("aes", FileId::Init(v, 0)) => src.init(rid, v),
            ("aes", FileId::Init(..)) => None,
            ("aes", FileId::Segment(msn)) => match src.segment(rid, msn) {
                Some(chunks) => {
                    let clear: Vec<u8> = chunks.concat();
                    let k = self.key_for(scope, tag, kind, msn)?;
                    Some(drm_hls::encrypt_segment(&k, msn, &clear))
                }
                None => None,
            },
            ("aes", FileId::Part(msn, i)) => match src.part(rid, msn, i) {
                Some(part) => {
                    let k = self.key_for(scope, tag, kind, msn)?;
                    Some(drm_hls::encrypt_segment(&k, msn, &part))
                }
                None => None,
            },
            (_, FileId::Init(v, period)) => match (src.init(rid, v), scheme_of(tag)) {
                // Only key periods the window reaches: a key is made and
                // persisted on first use, so a made-up period must not
                // make one.
                (Some(init), Some(scheme)) if self.period_in_window(r, period) => {
                    let k = self.key_for(scope, tag, kind, self.keys.first_msn(period))?;
                    Some(
                        cenc::protect_init(&init, scheme, &k, &SystemId::ALL)
                            .map_err(ProtectError::Encrypt)?,
                    )
                }
                _ => None,
            },
            (_, FileId::Part(msn, i)) => match (src.part(rid, msn, i), scheme_of(tag)) {
                (Some(part), Some(scheme)) => {
                    let k = self.key_for(scope, tag, kind, msn)?;
                    let seed = cenc::iv_seed(r.track.id, msn, i as u32);
                    Some(
                        cenc::protect_fragment(&part, scheme, &k, config, seed)
                            .map_err(ProtectError::Encrypt)?,
                    )
                }
                _ => None,
            },
            (_, FileId::Segment(msn)) => {
                // The segment is its encrypted parts back to back, so a part
                // and its segment agree byte for byte.
                let Some(seg) = r.segments.iter().find(|s| s.msn == msn) else {
                    return Ok(None);
                };
                if seg.parts.is_empty() {
                    // Stored media: a segment is one fragment, protected
                    // as a live segment's part 0 would be.
                    let (Some(chunks), Some(scheme)) = (src.segment(rid, msn), scheme_of(tag))
                    else {
                        return Ok(None);
                    };
                    let k = self.key_for(scope, tag, kind, msn)?;
                    let seed = cenc::iv_seed(r.track.id, msn, 0);
                    let out = cenc::protect_fragment(&chunks.concat(), scheme, &k, config, seed)
                        .map_err(ProtectError::Encrypt)?;
                    self.remember(key, out.clone(), r.first_msn().max(src.cache_floor(rid)));
                    return Ok(Some(out));
                }
                let mut whole = Vec::with_capacity(seg.size as usize + seg.parts.len() * 256);
                for i in 0..seg.parts.len() {
                    match self.variant(stream, instance, r, src, tag, FileId::Part(msn, i))? {
                        Some(b) => whole.extend_from_slice(&b),
                        None => return Ok(None),
                    }
                }
                Some(Bytes::from(whole))
            }
        };
        if let Some(b) = &out {
            self.remember(key, b.clone(), r.first_msn().max(src.cache_floor(rid)));
        }
        Ok(out)
    }

    fn cached(&self, key: &CacheKey) -> Option<Bytes> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).cloned()
    }

    /// Caches an encrypted file, first forgetting what has left its
    /// rendition's window or memory (segments before `first_msn`) and
    /// earlier streams of the same name. A file before `first_msn` (an old
    /// segment read back from the DVR spool) is not cached: it is encrypted
    /// again if asked again, so the cache stays bounded by the memory
    /// horizon rather than the window.
    fn remember(&self, key: CacheKey, value: Bytes, first_msn: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|k, _| {
            if k.stream != key.stream {
                return true;
            }
            k.instance == key.instance
                && !(k.rendition == key.rendition && k.file.msn().is_some_and(|m| m < first_msn))
        });
        if key.file.msn().is_none_or(|m| m >= first_msn) {
            cache.insert(key, value);
        }
    }

    /// Bytes held by the cache of encrypted variants.
    pub fn cached_bytes(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|b| b.len())
            .sum()
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn parse_kid(s: &str) -> Option<[u8; 16]> {
    let s = s.replace('-', "");
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use vela_drm::SystemId;
    use vela_packager::protection::system;

    /// The packager renders DRM systems by id; they must be the ones the
    /// `pssh` boxes are made for.
    #[test]
    fn packager_system_ids_are_the_drm_crates() {
        assert_eq!(system::CLEAR_KEY, SystemId::ClearKey.uuid());
        assert_eq!(system::WIDEVINE, SystemId::Widevine.uuid());
        assert_eq!(system::PLAYREADY, SystemId::PlayReady.uuid());
    }
}
