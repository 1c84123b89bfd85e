//! Stored media (video on demand), packaged on the fly as nginx-vod-module
//! does: the same HLS, DASH and Smooth writers as live, fed a static
//! [`Presentation`] built from the file's index ([`vela_vod::MediaIndex`]);
//! every fragment is built from the source's samples when it is asked for.
//!
//! | path | what |
//! |---|---|
//! | `/vod/E/master.m3u8`, `/vod/E/R/index.m3u8` | HLS (`EXT-X-PLAYLIST-TYPE:VOD`) |
//! | `/vod/E/manifest.mpd` | static DASH MPD |
//! | `/vod/E/Manifest`, `/vod/E/QualityLevels(B)/Fragments(video=T)` | Smooth |
//! | `/vod/E/R/init-0.mp4`, `/vod/E/R/seg-N.m4s` | CMAF init segment and fragments |
//!
//! Media files answer HTTP Range requests (206, 416) and carry a strong
//! ETag and `Last-Modified` of the stored file; everything is cacheable for
//! a day (a replaced upload changes the ETag). Playback tokens work as for
//! live (`?token=` on manifests, `/vod/E/t/TOKEN/…` below them).
//!
//! The catalog ([`VodCatalog`]) says which entry is playable from which
//! file; the index and recently built fragments are cached within byte
//! budgets; file reads and fragment building run on the blocking pool.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use vela_media::MediaKind;
use vela_packager::presentation::{rendition_id, Liveness, TimelineStart, Timing};
use vela_packager::{dash, hls, smooth, Presentation, Rendition, Segment};
use vela_vod::cache::FileKey;
use vela_vod::{FragmentCache, FragmentKey, IndexCache, IndexOptions, MediaIndex, VodError};

use crate::http::{
    authorize, encrypt_failed, not_modified, parse_file, request_origin, token_prefix, token_query,
    OriginError, OriginResult,
};
use crate::metrics;
use crate::protect::{DashMode, DrmPolicy, FileId, Protection};
use crate::source::MediaSource;
use vela_drm::KeyScope;

/// Manifests and media of stored entries: fresh for a day, then revalidated
/// by ETag (an entry's content can be replaced under the same URLs).
const VOD_CACHE: &str = "public, max-age=86400";

/// Where a playable entry's media is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VodSource {
    pub path: PathBuf,
    /// The content's version as every node of a cluster sees it (the
    /// catalog's, increasing with each change): its encryption keys'
    /// timeline, so all nodes derive the same keys. `None`: the file's
    /// modification time, which only this node knows.
    pub version: Option<u64>,
}

/// Why an entry cannot be played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VodLookupError {
    /// No such entry, or not a media entry.
    NotFound,
    /// The entry exists but its content is not ready.
    NotReady,
}

/// The future a catalog lookup returns.
pub type LookupFuture<'a> =
    Pin<Box<dyn Future<Output = Result<VodSource, VodLookupError>> + Send + 'a>>;

/// Which entries are playable, and from which file (the control plane).
pub trait VodCatalog: Send + Sync {
    fn lookup<'a>(&'a self, entry: &'a str) -> LookupFuture<'a>;
}

/// Shared state of the VOD routes.
#[derive(Clone)]
pub struct VodState {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Arc<dyn VodCatalog>,
    access: Option<crate::access::SharedGate>,
    protection: Option<Arc<Protection>>,
    indexes: IndexCache,
    fragments: Arc<FragmentCache>,
    /// Catalog answers, briefly: a player asks for many files of one entry.
    lookups: Mutex<HashMap<String, (Instant, VodSource)>>,
    /// Presentations by file (path, size, mtime), built once per index.
    presentations: Mutex<HashMap<FileKey, Arc<Presentation>>>,
}

/// How long a catalog answer is reused.
const LOOKUP_TTL: Duration = Duration::from_secs(2);
/// Presentations kept (each a few hundred bytes per segment).
const MAX_PRESENTATIONS: usize = 256;

/// Memory budgets of the VOD caches.
#[derive(Debug, Clone, Copy)]
pub struct VodLimits {
    pub index_cache_bytes: usize,
    pub fragment_cache_bytes: usize,
    pub segment_target: Duration,
}

impl Default for VodLimits {
    fn default() -> Self {
        VodLimits {
            index_cache_bytes: 64 << 20,
            fragment_cache_bytes: 256 << 20,
            segment_target: Duration::from_secs(4),
        }
    }
}

impl VodState {
    pub fn new(
        catalog: Arc<dyn VodCatalog>,
        access: Option<crate::access::SharedGate>,
        protection: Option<Arc<Protection>>,
        limits: VodLimits,
    ) -> Self {
        VodState {
            inner: Arc::new(Inner {
                catalog,
                access,
                protection,
                indexes: IndexCache::new(
                    limits.index_cache_bytes,
                    IndexOptions {
                        segment_target: limits.segment_target,
                    },
                ),
                fragments: Arc::new(FragmentCache::new(limits.fragment_cache_bytes)),
                lookups: Mutex::new(HashMap::new()),
                presentations: Mutex::new(HashMap::new()),
            }),
        }
    }

    async fn source(&self, entry: &str) -> Result<VodSource, OriginError> {
        let cached = {
            let lookups = self.inner.lookups.lock().unwrap_or_else(|e| e.into_inner());
            lookups
                .get(entry)
                .filter(|(at, _)| at.elapsed() < LOOKUP_TTL)
                .map(|(_, s)| s.clone())
        };
        if let Some(s) = cached {
            return Ok(s);
        }
        let source = self
            .inner
            .catalog
            .lookup(entry)
            .await
            .map_err(|e| match e {
                VodLookupError::NotFound => OriginError::UnknownStream,
                VodLookupError::NotReady => OriginError::NotYet,
            })?;
        let mut lookups = self.inner.lookups.lock().unwrap_or_else(|e| e.into_inner());
        if lookups.len() > 4096 {
            lookups.retain(|_, (at, _)| at.elapsed() < LOOKUP_TTL);
        }
        lookups.insert(entry.to_string(), (Instant::now(), source.clone()));
        Ok(source)
    }

    /// The entry's asset: its index, open file and presentation (blocking
    /// work on the blocking pool).
    pub(crate) async fn asset(&self, entry: &str) -> Result<Arc<Asset>, OriginError> {
        let source = self.source(entry).await?;
        let state = self.clone();
        let entry = entry.to_string();
        tokio::task::spawn_blocking(move || state.open(&entry, &source.path, source.version))
            .await
            .map_err(|_| OriginError::Internal)?
    }

    fn open(
        &self,
        entry: &str,
        path: &std::path::Path,
        version: Option<u64>,
    ) -> Result<Arc<Asset>, OriginError> {
        let (index, file, key) = self.inner.indexes.open(path).map_err(|e| {
            vod_failed(entry, &e);
            OriginError::NotFound
        })?;
        let modified = key.modified.unwrap_or(SystemTime::UNIX_EPOCH);
        let presentation = {
            let cache = self
                .inner
                .presentations
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            cache.get(&key).cloned()
        };
        let presentation = match presentation {
            Some(p) => p,
            None => {
                let p = Arc::new(presentation_of(&index));
                let mut cache = self
                    .inner
                    .presentations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if cache.len() >= MAX_PRESENTATIONS {
                    cache.clear();
                }
                cache.insert(key.clone(), p.clone());
                p
            }
        };
        let since_epoch = modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Arc::new(Asset {
            version: version.unwrap_or(since_epoch.as_millis() as u64),
            etag_base: format!("{:x}-{:x}", index.file_len(), since_epoch.as_nanos() as u64),
            last_modified: httpdate(modified),
            index,
            file,
            key,
            presentation,
            fragments: self.inner.fragments.clone(),
        }))
    }
}

/// One stored file, ready to serve: its presentation, and its files built
/// on request ([`MediaSource`]; blocking: call it on the blocking pool).
pub(crate) struct Asset {
    index: Arc<MediaIndex>,
    file: std::fs::File,
    key: FileKey,
    presentation: Arc<Presentation>,
    fragments: Arc<FragmentCache>,
    /// The content's version ([`VodSource::version`], else the stored
    /// file's modification time, ms): its encryption keys' timeline, so
    /// replaced content never reuses a key.
    version: u64,
    /// Size and mtime: every ETag of the asset's files starts with it.
    etag_base: String,
    last_modified: String,
}

impl Asset {
    pub(crate) fn presentation(&self) -> &Presentation {
        &self.presentation
    }

    pub(crate) fn etag_base(&self) -> &str {
        &self.etag_base
    }

    fn track_id(&self, rid: &str) -> Option<u32> {
        self.presentation.rendition(rid).map(|r| r.track.id)
    }

    /// Segment `n`'s fragment of a track, from the cache or built now.
    fn fragment(&self, track_id: u32, n: u32) -> Result<Bytes, VodError> {
        self.fragments.get_or_build(
            FragmentKey {
                file: self.key.clone(),
                track_id,
                segment: n,
            },
            || self.index.fragment(&self.file, track_id, n),
        )
    }
}

impl MediaSource for Asset {
    fn init(&self, rid: &str, version: u32) -> Option<Bytes> {
        if version != 0 {
            return None;
        }
        self.index.init(self.track_id(rid)?).ok()
    }

    fn segment(&self, rid: &str, msn: u64) -> Option<Vec<Bytes>> {
        let n = u32::try_from(msn).ok()?;
        match self.fragment(self.track_id(rid)?, n) {
            Ok(b) => Some(vec![b]),
            Err(e) => {
                if !matches!(e, VodError::UnknownSegment { .. }) {
                    tracing::warn!(rendition = rid, segment = msn, error = %e, "cannot build a fragment");
                }
                None
            }
        }
    }

    /// Stored presentations have no low-latency parts.
    fn part(&self, _rid: &str, _msn: u64, _idx: usize) -> Option<Bytes> {
        None
    }
}

fn vod_failed(entry: &str, e: &VodError) {
    tracing::warn!(entry, error = %e, "stored media cannot be packaged");
}

/// The static presentation of an index: one rendition per track, the
/// index's segments (one fragment each, no parts).
pub fn presentation_of(index: &MediaIndex) -> Presentation {
    let target = index.segment_target().as_secs_f64();
    let renditions: Vec<Rendition> = index
        .tracks()
        .map(|t| {
            let segments: std::collections::VecDeque<Segment> = index
                .segments(t.id())
                .unwrap_or_default()
                .into_iter()
                .map(|s| Segment {
                    msn: u64::from(s.number),
                    start: s.start as i64,
                    duration: s.duration as i64,
                    parts: Vec::new(),
                    discontinuity: false,
                    init_version: 0,
                    program_date_time_ms: None,
                    // The moof adds about 16 bytes a sample.
                    size: s.bytes + 64 + u64::from(s.sample_count) * 16,
                })
                .collect();
            let language = (t.kind() == MediaKind::Audio)
                .then(|| {
                    t.extended_language
                        .clone()
                        .or_else(|| Some(t.language.clone()).filter(|l| l != "und"))
                })
                .flatten();
            Rendition {
                id: rendition_id(&t.track),
                track: t.track.clone(),
                language,
                max_segment_duration: segments.iter().map(|s| s.duration).max().unwrap_or(0),
                segments,
                building: None,
                discontinuity_sequence: 0,
                current_init_version: 0,
            }
        })
        .collect();
    Presentation {
        liveness: Liveness::Static,
        anchor_ms: None,
        timing: Timing {
            segment_target: target,
            part_target: 1.0,
            dvr_window: index.duration_secs(),
            // Stored media has no live window to spool.
            ..Timing::default()
        },
        lead: 0,
        renditions,
        timelines: vec![TimelineStart {
            msn: 0,
            start_secs: 0.0,
        }],
    }
}

/// The VOD routes (state applied).
pub fn router(state: VodState) -> Router {
    Router::new()
        .route("/vod/{entry}/master.m3u8", get(master_playlist))
        .route("/vod/{entry}/manifest.mpd", get(manifest_mpd))
        .route("/vod/{entry}/Manifest", get(smooth_manifest))
        .route("/vod/{entry}/{rendition}/index.m3u8", get(media_playlist))
        .route("/vod/{entry}/{rendition}/{file}", get(media_file))
        .route(
            "/vod/{entry}/t/{token}/{rendition}/index.m3u8",
            get(media_playlist_with_token),
        )
        .route(
            "/vod/{entry}/t/{token}/{rendition}/{file}",
            get(media_file_with_token),
        )
        .with_state(state)
}

fn check(state: &VodState, entry: &str, token: Option<&str>) -> Result<(), OriginError> {
    authorize(state.inner.access.as_ref(), entry, token).map(|_| ())
}

fn manifest(
    headers: &HeaderMap,
    asset: &Asset,
    kind: &str,
    ct: &'static str,
    body: String,
) -> Response {
    let etag = format!(
        "\"{}-{kind}-{:016x}\"",
        asset.etag_base,
        crate::http::fnv1a(body.as_bytes())
    );
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(VOD_CACHE));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&asset.last_modified) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if not_modified(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    metrics::HTTP_BYTES_OUT.inc_by(body.len() as u64);
    (h, body).into_response()
}

async fn master_playlist(
    State(state): State<VodState>,
    Path(entry): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> OriginResult {
    let token = crate::access::query_token(query.as_deref());
    check(&state, &entry, token)?;
    let asset = state.asset(&entry).await?;
    let body = hls::master_playlist_at(&asset.presentation, &token_prefix(token))
        .ok_or(OriginError::NotFound)?;
    Ok(manifest(
        &headers,
        &asset,
        "m3u8",
        "application/vnd.apple.mpegurl",
        body,
    ))
}

async fn media_playlist(
    State(state): State<VodState>,
    Path((entry, rid)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> OriginResult {
    let token = crate::access::query_token(query.as_deref());
    serve_media_playlist(state, entry, rid, token.map(str::to_string), headers).await
}

async fn media_playlist_with_token(
    State(state): State<VodState>,
    Path((entry, token, rid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> OriginResult {
    serve_media_playlist(state, entry, rid, Some(token), headers).await
}

async fn serve_media_playlist(
    state: VodState,
    entry: String,
    rid: String,
    token: Option<String>,
    headers: HeaderMap,
) -> OriginResult {
    check(&state, &entry, token.as_deref())?;
    let asset = state.asset(&entry).await?;
    let enc = Encryption::of(&state, &entry, &asset);
    let tag = enc.as_ref().and_then(|e| e.policy.hls_tag());
    let body = match (enc, tag) {
        (Some(enc), Some(tag)) => {
            // Keys are made (and written) on first use: the blocking pool.
            let asset = asset.clone();
            let rid = rid.clone();
            tokio::task::spawn_blocking(move || {
                let p = asset.presentation();
                let r = p.rendition(&rid)?;
                let kind = r.track.kind();
                let key_query = token_query(token.as_deref());
                let key_attributes = |msn: u64| {
                    enc.prot
                        .hls_key_attributes(enc.scope(), enc.policy.hls, kind, msn, &key_query)
                        .unwrap_or_default()
                };
                let init_key_period = |msn: u64| enc.prot.key_period(msn);
                let keying = hls::HlsKeying {
                    tag,
                    protected_init: tag != "aes",
                    key_attributes: &key_attributes,
                    init_key_period: enc
                        .prot
                        .rotation()
                        .map(|_| &init_key_period as &dyn Fn(u64) -> u64),
                };
                hls::media_playlist_with(p, &rid, hls::Skip(false), Some(&keying))
            })
            .await
            .map_err(|_| OriginError::Internal)?
        }
        _ => hls::media_playlist(&asset.presentation, &rid, hls::Skip(false)),
    }
    .ok_or(OriginError::NotFound)?;
    Ok(manifest(
        &headers,
        &asset,
        &rid,
        "application/vnd.apple.mpegurl",
        body,
    ))
}

async fn manifest_mpd(
    State(state): State<VodState>,
    Path(entry): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> OriginResult {
    let token = crate::access::query_token(query.as_deref());
    check(&state, &entry, token)?;
    let asset = state.asset(&entry).await?;
    let origin = request_origin(&headers).unwrap_or_else(|| "http://localhost".to_string());
    let protection = match Encryption::of(&state, &entry, &asset) {
        Some(enc) if enc.policy.dash != DashMode::None => {
            let license = format!("{origin}/drm/clearkey/license{}", token_query(token));
            let last = asset
                .presentation()
                .lead()
                .and_then(|r| r.segments.back())
                .map_or(0, |s| s.msn);
            let p = tokio::task::spawn_blocking(move || {
                enc.prot
                    .dash_protection(enc.scope(), enc.policy.dash, &license, (0, last))
            })
            .await
            .map_err(|_| OriginError::Internal)?;
            Some(p.ok_or(OriginError::Internal)?)
        }
        _ => None,
    };
    let opts = dash::MpdOptions {
        base_url: token.map(|t| token_prefix(Some(t))),
        protection,
        ..Default::default()
    };
    let body = dash::mpd(&asset.presentation, 0, &opts).ok_or(OriginError::NotFound)?;
    Ok(manifest(
        &headers,
        &asset,
        "mpd",
        "application/dash+xml",
        body,
    ))
}

async fn smooth_manifest(
    State(state): State<VodState>,
    Path(entry): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> OriginResult {
    let token = crate::access::query_token(query.as_deref());
    check(&state, &entry, token)?;
    let asset = state.asset(&entry).await?;
    let header = match Encryption::of(&state, &entry, &asset) {
        Some(enc) if !enc.policy.serves_smooth() => return Err(OriginError::NotFound),
        Some(enc) if enc.policy.mss_protected => Some(
            tokio::task::spawn_blocking(move || enc.prot.smooth_protection_header(enc.scope()))
                .await
                .map_err(|_| OriginError::Internal)?
                .ok_or(OriginError::Internal)?,
        ),
        _ => None,
    };
    let body =
        smooth::client_manifest_with(&asset.presentation, header.as_ref(), &token_prefix(token))
            .ok_or(OriginError::NotFound)?;
    Ok(manifest(
        &headers,
        &asset,
        "ism",
        "text/xml; charset=utf-8",
        body,
    ))
}

/// How one stored asset is encrypted: its entry's policy, keys of its own
/// (stream `vod-ENTRY`, the file's version as the timeline).
#[derive(Clone)]
struct Encryption {
    prot: Arc<Protection>,
    policy: DrmPolicy,
    stream: String,
    timeline: u64,
}

impl Encryption {
    /// `None` when the server has no key store.
    fn of(state: &VodState, entry: &str, asset: &Asset) -> Option<Encryption> {
        let prot = state.inner.protection.clone()?;
        Some(Encryption {
            policy: prot.policy(entry),
            prot,
            stream: format!("vod-{entry}"),
            timeline: asset.version,
        })
    }

    fn scope(&self) -> KeyScope<'_> {
        KeyScope {
            stream: &self.stream,
            timeline: self.timeline,
            oldest_msn: 0,
        }
    }
}

async fn media_file(
    State(state): State<VodState>,
    Path((entry, rid, file)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> OriginResult {
    check(&state, &entry, crate::access::query_token(query.as_deref()))?;
    serve_media_file(state, entry, rid, file, headers).await
}

async fn media_file_with_token(
    State(state): State<VodState>,
    Path((entry, token, rid, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> OriginResult {
    check(&state, &entry, Some(&token))?;
    serve_media_file(state, entry, rid, file, headers).await
}

/// A file of a stored presentation, by the names the manifests write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VodFile {
    /// An init segment, segment or part (`parse_file`'s names), with the
    /// encrypted variant's tag if any.
    Cmaf(FileId, Option<&'static str>),
    /// A Smooth fragment: the segment of `kind` starting at `t` (10 MHz).
    Smooth(MediaKind, u64),
}

pub(crate) fn parse_vod_file(rid: &str, file: &str) -> Option<VodFile> {
    if rid.starts_with("QualityLevels(") {
        let (kind, t) = smooth::parse_fragment_name(file)?;
        return Some(VodFile::Smooth(kind, t));
    }
    let (id, tag) = parse_file(file)?;
    Some(VodFile::Cmaf(id, tag))
}

async fn serve_media_file(
    state: VodState,
    entry: String,
    rid: String,
    file: String,
    headers: HeaderMap,
) -> OriginResult {
    let parsed = parse_vod_file(&rid, &file).ok_or(OriginError::NotFound)?;
    let asset = state.asset(&entry).await?;
    let enc = Encryption::of(&state, &entry, &asset);
    let policy = enc.as_ref().map(|e| e.policy).unwrap_or_default();
    let p = &asset.presentation;
    let (r, file_id) = match parsed {
        VodFile::Smooth(kind, t) => {
            if !policy.serves_smooth() {
                return Err(OriginError::NotFound);
            }
            let (r, seg) = smooth::fragment_source(p, kind, t).ok_or(OriginError::NotFound)?;
            (r, VodFile::Smooth(kind, seg.msn))
        }
        VodFile::Cmaf(id, tag) => {
            let allowed = match id {
                FileId::Init(..) => policy.allows_init(tag),
                _ => policy.allows(tag),
            };
            if !allowed || (tag.is_some() && enc.is_none()) {
                return Err(OriginError::NotFound);
            }
            (p.rendition(&rid).ok_or(OriginError::NotFound)?, parsed)
        }
    };
    let kind = r.track.kind();
    // The requested name is URL-safe and names the variant.
    let etag = format!("\"{}-{}-{file}\"", asset.etag_base, r.id);
    if not_modified(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, media_headers(kind, &etag, &asset)).into_response());
    }
    let rid = r.id.clone();
    let built_asset = asset.clone();
    let data =
        tokio::task::spawn_blocking(move || build(&built_asset, &rid, file_id, enc.as_ref()))
            .await
            .map_err(|_| OriginError::Internal)??;
    Ok(ranged(&headers, kind, &etag, &asset, data))
}

/// Builds (or finds in the cache) one file of the asset, encrypted as its
/// name says. Blocking: file reads and encryption.
fn build(
    asset: &Asset,
    rid: &str,
    file: VodFile,
    enc: Option<&Encryption>,
) -> Result<Bytes, OriginError> {
    let p = &asset.presentation;
    let r = p.rendition(rid).ok_or(OriginError::NotFound)?;
    match file {
        VodFile::Cmaf(id, Some(tag)) => {
            let enc = enc.ok_or(OriginError::NotFound)?;
            enc.prot
                .variant(&enc.stream, enc.timeline, r, asset, tag, id)
                .map_err(|e| encrypt_failed(&enc.stream, rid, &e))?
                .ok_or(OriginError::NotFound)
        }
        VodFile::Cmaf(FileId::Init(0, 0), None) => {
            MediaSource::init(asset, rid, 0).ok_or(OriginError::NotFound)
        }
        VodFile::Cmaf(FileId::Segment(msn), None) => MediaSource::segment(asset, rid, msn)
            .and_then(|mut v| v.pop())
            .ok_or(OriginError::NotFound),
        VodFile::Cmaf(..) => Err(OriginError::NotFound),
        VodFile::Smooth(_, msn) => {
            let seg = r.segment(msn).ok_or(OriginError::NotFound)?;
            let cmaf = MediaSource::segment(asset, rid, msn).ok_or(OriginError::NotFound)?;
            let samples = smooth::samples_of_parts(&cmaf).map_err(|e| {
                tracing::error!(rendition = rid, segment = msn, error = %e, "built fragment unreadable");
                OriginError::Internal
            })?;
            let clear = smooth::fragment(r, seg, samples);
            match enc.filter(|e| e.policy.mss_protected) {
                Some(enc) => enc
                    .prot
                    .smooth_fragment(&enc.stream, enc.timeline, r, msn, &clear)
                    .map_err(|e| encrypt_failed(&enc.stream, rid, &e)),
                None => Ok(clear),
            }
        }
    }
}

fn media_headers(kind: MediaKind, etag: &str, asset: &Asset) -> HeaderMap {
    let mut h = HeaderMap::new();
    let ct = match kind {
        MediaKind::Video => "video/mp4",
        MediaKind::Audio => "audio/mp4",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(VOD_CACHE));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&asset.last_modified) {
        h.insert(header::LAST_MODIFIED, v);
    }
    h
}

/// The whole file, or the byte range the request asks for (RFC 9110 14.2:
/// one range; a range that starts past the end is 416).
fn ranged(
    headers: &HeaderMap,
    kind: MediaKind,
    etag: &str,
    asset: &Asset,
    data: Bytes,
) -> Response {
    let mut h = media_headers(kind, etag, asset);
    let len = data.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        // If-Range with another validator: the whole file.
        .filter(|_| {
            headers
                .get(header::IF_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v == etag)
        });
    let Some(range) = range else {
        metrics::HTTP_BYTES_OUT.inc_by(len);
        return (h, data).into_response();
    };
    match parse_range(range, len) {
        RangeAnswer::Whole => {
            metrics::HTTP_BYTES_OUT.inc_by(len);
            (h, data).into_response()
        }
        RangeAnswer::Part(start, end) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            let body = data.slice(start as usize..=end as usize);
            metrics::HTTP_BYTES_OUT.inc_by(body.len() as u64);
            (StatusCode::PARTIAL_CONTENT, h, body).into_response()
        }
        RangeAnswer::Unsatisfiable => {
            let mut res = OriginError::RangeNotSatisfiable.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            res
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// No usable range (another unit, several ranges, malformed): send all.
    Whole,
    /// Inclusive byte positions.
    Part(u64, u64),
    Unsatisfiable,
}

pub(crate) fn parse_range(value: &str, len: u64) -> RangeAnswer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(n) if len > 0 => RangeAnswer::Part(len.saturating_sub(n), len - 1),
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Whole,
        },
        (start, "") => match num(start) {
            Some(s) if s < len => RangeAnswer::Part(s, len - 1),
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Whole,
        },
        (start, end) => match (num(start), num(end)) {
            (Some(s), Some(e)) if s <= e && s < len => RangeAnswer::Part(s, e.min(len - 1)),
            (Some(s), Some(e)) if s <= e => RangeAnswer::Unsatisfiable,
            _ => RangeAnswer::Whole,
        },
    }
}

/// An HTTP date (RFC 9110 5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn httpdate(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    dt.format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAnswer::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeAnswer::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeAnswer::Part(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), RangeAnswer::Part(0, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), RangeAnswer::Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeAnswer::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=200-300", 100),
            RangeAnswer::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=-0", 100), RangeAnswer::Unsatisfiable);
        assert_eq!(parse_range("bytes=9-0", 100), RangeAnswer::Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAnswer::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeAnswer::Whole);
        assert_eq!(parse_range("bytes=x-1", 100), RangeAnswer::Whole);
    }

    #[test]
    fn file_names() {
        assert_eq!(
            parse_vod_file("v1", "init-0.mp4"),
            Some(VodFile::Cmaf(FileId::Init(0, 0), None))
        );
        assert_eq!(
            parse_vod_file("v1", "seg-12.cenc.m4s"),
            Some(VodFile::Cmaf(FileId::Segment(12), Some("cenc")))
        );
        assert_eq!(parse_vod_file("v1", "seg-.m4s"), None);
        assert_eq!(parse_vod_file("v1", "seg-1.bogus.m4s"), None);
        assert_eq!(
            parse_vod_file("QualityLevels(1000)", "Fragments(video=0)"),
            Some(VodFile::Smooth(MediaKind::Video, 0))
        );
    }

    #[test]
    fn http_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(httpdate(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
