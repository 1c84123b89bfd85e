//! Thumbnails: `/thumb/ENTRY/SECONDS.jpg` for stored media and
//! `/thumb/live/STREAM/latest.jpg` for live streams, with optional
//! `?width=` and `?height=` (one keeps the aspect ratio; both fit the
//! picture inside the box).
//!
//! Both come from the same place as the players' media: the init segment
//! and the fragment(s) of the lead video rendition that hold the asked time
//! (for live, the newest complete segment's first picture), decoded by
//! GStreamer ([`vela_transcode::thumbnail`]) on the blocking pool. With
//! B-frames the picture is the one shown at that time, not the keyframe's.
//! A time past the end is a 404. Results are cached within a byte budget.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use vela_media::MediaKind;
use vela_packager::Presentation;
use vela_transcode::{ThumbnailError, ThumbnailInput, ThumbnailRequest};

use crate::http::{not_modified, OriginError, OriginResult};
use crate::live::LiveRegistry;
use crate::source::MediaSource;
use crate::vod::VodState;

/// Bytes of JPEGs kept.
const CACHE_BYTES: usize = 32 << 20;

/// Shared state of the thumbnail routes.
#[derive(Clone)]
pub struct ThumbState {
    pub live: LiveRegistry,
    pub vod: VodState,
    cache: Arc<Mutex<JpegCache>>,
}

impl ThumbState {
    pub fn new(live: LiveRegistry, vod: VodState) -> Self {
        ThumbState {
            live,
            vod,
            cache: Arc::new(Mutex::new(JpegCache::default())),
        }
    }

    fn cached(&self, key: &str) -> Option<Bytes> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .get(key)
            .cloned()
    }

    fn remember(&self, key: String, jpeg: Bytes) {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.bytes += jpeg.len();
        if let Some(old) = c.map.insert(key.clone(), jpeg) {
            c.bytes -= old.len();
        } else {
            c.order.push_back(key);
        }
        while c.bytes > CACHE_BYTES {
            let Some(k) = c.order.pop_front() else { break };
            if let Some(old) = c.map.remove(&k) {
                c.bytes -= old.len();
            }
        }
    }
}

/// Oldest-first eviction of rendered thumbnails.
#[derive(Default)]
struct JpegCache {
    map: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: usize,
}

#[derive(Debug, Deserialize)]
struct Size {
    width: Option<u32>,
    height: Option<u32>,
}

/// The thumbnail routes (state applied).
pub fn router(state: ThumbState) -> Router {
    Router::new()
        .route("/thumb/live/{stream}/latest.jpg", get(live_thumb))
        .route("/thumb/{entry}/{file}", get(vod_thumb))
        .with_state(state)
}

fn jpeg_response(headers: &HeaderMap, etag: &str, cache: &'static str, jpeg: Bytes) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if not_modified(headers, etag) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    crate::metrics::HTTP_BYTES_OUT.inc_by(jpeg.len() as u64);
    (h, jpeg).into_response()
}

/// Renders on the blocking pool; maps the thumbnailer's errors.
async fn render(
    what: String,
    pieces: Vec<Bytes>,
    mut request: ThumbnailRequest,
    size: &Size,
) -> Result<Bytes, OriginError> {
    request.width = size.width;
    request.height = size.height;
    let result = tokio::task::spawn_blocking(move || {
        vela_transcode::thumbnail(ThumbnailInput::new(&pieces), &request)
    })
    .await
    .map_err(|_| OriginError::Internal)?;
    match result {
        Ok(jpeg) => Ok(Bytes::from(jpeg)),
        Err(ThumbnailError::PastEnd) => Err(OriginError::NotFound),
        Err(ThumbnailError::InvalidRequest(why)) => Err(OriginError::BadRequest(why)),
        Err(e) => {
            tracing::error!(thumbnail = what, error = %e, "cannot make a thumbnail");
            Err(OriginError::Internal)
        }
    }
}

fn validate(size: &Size) -> Result<(), OriginError> {
    let ok = |v: Option<u32>, max: u32| v.is_none_or(|v| v > 0 && v <= max);
    if ok(size.width, vela_transcode::MAX_WIDTH) && ok(size.height, vela_transcode::MAX_HEIGHT) {
        Ok(())
    } else {
        Err(OriginError::BadRequest(
            "width and height must be between 1 and 3840 x 2160",
        ))
    }
}

/// The lead video rendition, which thumbnails show.
fn video(p: &Presentation) -> Result<&vela_packager::Rendition, OriginError> {
    p.renditions()
        .iter()
        .find(|r| r.track.kind() == MediaKind::Video)
        .ok_or(OriginError::NotFound)
}

async fn vod_thumb(
    State(state): State<ThumbState>,
    Path((entry, file)): Path<(String, String)>,
    Query(size): Query<Size>,
    headers: HeaderMap,
) -> OriginResult {
    validate(&size)?;
    let secs: f64 = file
        .strip_suffix(".jpg")
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .ok_or(OriginError::NotFound)?;
    let asset = state.vod.asset(&entry).await?;
    let p = asset.presentation();
    let r = video(p)?;
    let ts = r.timescale();
    let ticks = (secs * f64::from(ts)).round() as i64;
    let last_end = r.segments.back().map_or(0, |s| s.end());
    if ticks >= last_end {
        return Err(OriginError::NotFound);
    }
    // The segment holding the time by decode time; with B-frames its last
    // pictures show a little later, so the next segment comes along.
    let first = r.segment_at(ticks).map_or(0, |s| s.msn);
    let msns: Vec<u64> = r
        .segments
        .iter()
        .filter(|s| s.msn >= first.saturating_sub(1) && s.msn <= first + 1)
        .map(|s| s.msn)
        .collect();
    let etag = format!(
        "\"{}-thumb-{ticks}-{}x{}\"",
        asset.etag_base(),
        size.width.unwrap_or(0),
        size.height.unwrap_or(0)
    );
    let key = format!("vod/{entry}/{etag}");
    if let Some(jpeg) = state.cached(&key) {
        return Ok(jpeg_response(
            &headers,
            &etag,
            "public, max-age=86400",
            jpeg,
        ));
    }
    let src = asset.clone();
    let rid = r.id.clone();
    let pieces = tokio::task::spawn_blocking(move || -> Option<Vec<Bytes>> {
        let mut pieces = vec![MediaSource::init(&*src, &rid, 0)?];
        for msn in msns {
            pieces.extend(MediaSource::segment(&*src, &rid, msn)?);
        }
        Some(pieces)
    })
    .await
    .map_err(|_| OriginError::Internal)?
    .ok_or(OriginError::NotFound)?;
    let jpeg = render(entry, pieces, ThumbnailRequest::at(ticks, ts), &size).await?;
    state.remember(key, jpeg.clone());
    Ok(jpeg_response(
        &headers,
        &etag,
        "public, max-age=86400",
        jpeg,
    ))
}

async fn live_thumb(
    State(state): State<ThumbState>,
    Path(stream): Path<String>,
    Query(size): Query<Size>,
    headers: HeaderMap,
) -> OriginResult {
    validate(&size)?;
    let s = state.live.get(&stream).ok_or(OriginError::UnknownStream)?;
    let p = s.presentation();
    let r = video(&p)?;
    let seg = r.segments.back().ok_or(OriginError::NotYet)?;
    let etag = format!(
        "\"{:x}-thumb-{}-{}x{}\"",
        s.instance,
        seg.msn,
        size.width.unwrap_or(0),
        size.height.unwrap_or(0)
    );
    let key = format!("live/{stream}/{etag}");
    const LIVE_CACHE: &str = "public, max-age=1";
    if let Some(jpeg) = state.cached(&key) {
        return Ok(jpeg_response(&headers, &etag, LIVE_CACHE, jpeg));
    }
    let init = MediaSource::init(&*s, &r.id, seg.init_version).ok_or(OriginError::NotFound)?;
    let parts = MediaSource::segment(&*s, &r.id, seg.msn).ok_or(OriginError::NotFound)?;
    let mut pieces = vec![init];
    pieces.extend(parts);
    let request = ThumbnailRequest::at(seg.start, r.timescale());
    let jpeg = render(stream, pieces, request, &size).await?;
    state.remember(key, jpeg.clone());
    Ok(jpeg_response(&headers, &etag, LIVE_CACHE, jpeg))
}
