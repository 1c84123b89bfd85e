//! The origin's HTTP surface for live streams (paths in `shared/INTERFACE.md`).
//!
//! | path | what |
//! |---|---|
//! | `/live/S/master.m3u8` | HLS master playlist |
//! | `/live/S/manifest.mpd` | DASH MPD |
//! | `/live/S/R/index.m3u8` | LL-HLS media playlist (`_HLS_msn`, `_HLS_part`, `_HLS_skip`) |
//! | `/live/S/R/init-V.mp4`, `seg-N.m4s`, `part-N.P.m4s` | CMAF init segment, segment, part |
//! | `/live/S/Manifest` | Smooth Streaming client manifest |
//! | `/live/S/QualityLevels(B)/Fragments(video=T)` | Smooth fragment (re-boxed segment) |
//! | `/healthz`, `/metrics`, `/time` | health, Prometheus, clock for DASH players |
//!
//! Caching: manifests are fresh for a second in shared caches (`s-maxage=1`,
//! so a CDN collapses viewers' polls; an LL-HLS blocking reload, whose URL
//! names a playlist version, for 30 s: docs/cdn.md) and not at all in a player's own cache
//! (`max-age=0`): players refresh an LL-DASH MPD every part (a third of a
//! second), and a browser-cached copy up to a second old hid new segments
//! and put Shaka a second further from the edge. Media files never
//! change once written, so they are `immutable` for a year and carry a strong
//! ETag. Errors are mapped once, in [`OriginError`]'s `IntoResponse`, to a
//! status and a short text with no internals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use vela_media::MediaKind;
use vela_packager::{dash, hls, smooth, time_fmt, LivePackager};

use crate::source::MediaSource;

use crate::access::{self, Denied, SharedGate};
use crate::live::{now_ms, LiveRegistry, LiveStream};
use crate::metrics;
use crate::protect::{DashMode, DrmPolicy, FileId, ProtectError, Protection};

const PLAYLIST_CACHE: &str = "public, max-age=0, s-maxage=1";
/// A blocking reload (`_HLS_msn`): its URL names a playlist version that
/// never goes back, so shared caches may keep the answer (and hold the
/// concurrent requests for it on one upstream request, `proxy_cache_lock`).
const BLOCKING_PLAYLIST_CACHE: &str = "public, max-age=0, s-maxage=30";
const ENDED_PLAYLIST_CACHE: &str = "public, max-age=60";
const MEDIA_CACHE: &str = "public, max-age=31536000, immutable";
const ERROR_CACHE: &str = "no-cache";

/// Shared state of the origin's handlers.
#[derive(Clone)]
pub struct OriginState {
    pub live: LiveRegistry,
    /// How long a manifest request waits for a just-started stream's first media.
    pub first_media_wait: Duration,
    /// Target latency players are told in the MPD, milliseconds.
    pub dash_target_latency_ms: u32,
    /// Keys and encryption policy; `None`: every stream is clear.
    pub protection: Option<Arc<Protection>>,
    /// Playback authorisation; `None`: every stream is open.
    pub access: Option<SharedGate>,
}

impl OriginState {
    pub fn new(live: LiveRegistry) -> Self {
        OriginState {
            live,
            first_media_wait: Duration::from_secs(8),
            dash_target_latency_ms: 1500,
            protection: None,
            access: None,
        }
    }
}

/// Everything an origin request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("no such stream")]
    UnknownStream,
    #[error("not found")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("not available yet")]
    NotYet,
    #[error("internal error")]
    Internal,
    #[error("range not satisfiable")]
    RangeNotSatisfiable,
    #[error("{0}")]
    Denied(#[from] Denied),
}

impl IntoResponse for OriginError {
    fn into_response(self) -> Response {
        let status = match self {
            OriginError::UnknownStream | OriginError::NotFound => StatusCode::NOT_FOUND,
            OriginError::BadRequest(_) => StatusCode::BAD_REQUEST,
            OriginError::NotYet => StatusCode::SERVICE_UNAVAILABLE,
            OriginError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            OriginError::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            OriginError::Denied(d) => return denied_response(d),
        };
        let mut res = (status, format!("{self}\n")).into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(ERROR_CACHE));
        res
    }
}

pub(crate) type OriginResult = Result<Response, OriginError>;

/// A refused playback: 401 without a token, 403 with a bad one; a JSON
/// error that says which, and nothing else.
fn denied_response(d: Denied) -> Response {
    let status = match d {
        Denied::Missing => StatusCode::UNAUTHORIZED,
        _ => StatusCode::FORBIDDEN,
    };
    json_error(status, d.code(), &d.to_string())
}

/// Playback authorisation of a request for `stream` (see [`access`]):
/// the token when the stream needs one and it opens it.
pub(crate) fn authorize<'t>(
    gate: Option<&SharedGate>,
    stream: &str,
    token: Option<&'t str>,
) -> Result<Option<&'t str>, OriginError> {
    access::check(gate, stream, token, now_ms() / 1000).map_err(|d| {
        tracing::info!(stream, reason = d.code(), "playback refused");
        OriginError::Denied(d)
    })
}

/// Where a manifest puts the URLs it writes: under the token's path.
pub(crate) fn token_prefix(token: Option<&str>) -> String {
    token.map(|t| format!("t/{t}/")).unwrap_or_default()
}

/// `?token=T` for absolute URLs (keys, licences).
pub(crate) fn token_query(token: Option<&str>) -> String {
    token.map(|t| format!("?token={t}")).unwrap_or_default()
}

/// The live origin's routes (state applied).
pub fn router(state: OriginState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .route("/time", get(time_now))
        .route("/live/{stream}/master.m3u8", get(master_playlist))
        .route("/live/{stream}/manifest.mpd", get(manifest_mpd))
        .route("/live/{stream}/Manifest", get(smooth_manifest))
        .route("/drm/keys/{kid}", get(key_file))
        .route(
            "/drm/clearkey/license",
            axum::routing::post(clearkey_license),
        )
        .route("/live/{stream}/{rendition}/index.m3u8", get(media_playlist))
        .route("/live/{stream}/{rendition}/{file}", get(media_file))
        .route(
            "/live/{stream}/t/{token}/{rendition}/index.m3u8",
            get(media_playlist_with_token),
        )
        .route(
            "/live/{stream}/t/{token}/{rendition}/{file}",
            get(media_file_with_token),
        )
        .with_state(state)
}

/// CORS for browser players and request metrics, for every route of the
/// server (apply with `axum::middleware::from_fn`).
pub async fn cors_and_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let mut res = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, if-match, if-none-match, range"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        r
    } else {
        next.run(req).await
    };
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("etag, content-length, date, location, link"),
    );
    metrics::HTTP_LATENCY
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    metrics::HTTP_REQUESTS
        .with_label_values(&[route.as_str(), res.status().as_str()])
        .inc();
    res
}

async fn metrics_text() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
        .into_response()
}

/// The server's clock for DASH `UTCTiming` (`http-xsdate`).
async fn time_now() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        time_fmt::rfc3339_ms(now_ms()),
    )
        .into_response()
}

fn stream(state: &OriginState, name: &str) -> Result<Arc<LiveStream>, OriginError> {
    state.live.get(name).ok_or(OriginError::UnknownStream)
}

/// How much media a manifest needs before it is worth answering.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FirstMedia {
    /// A part (DASH, where the segment being built is announced).
    Part,
    /// A complete segment: HLS players (Shaka, hls.js) fail or error on a
    /// media playlist that has parts but no segment yet.
    Segment,
    /// Complete segments for a player's start: three (the hold-back of
    /// RFC 8216bis), or as many as the window holds. Shaka probes media
    /// playlists at a quarter and three quarters of their length, and with
    /// one or two complete segments that lands on the segment being built,
    /// which has no URI of its own (a fatal error in Shaka 5.2).
    Start,
}

/// Complete segments that [`FirstMedia::Start`] waits for.
fn start_segments(cfg: &vela_packager::PackagerConfig) -> usize {
    let fit = (cfg.dvr_window / cfg.segment_target.max(0.001)).floor() as usize;
    fit.clamp(1, 3)
}

/// Waits (bounded) until the stream has its first media, so that a player
/// that arrives with the publisher gets manifests with media in them.
async fn wait_for_media(
    state: &OriginState,
    s: &LiveStream,
    need: FirstMedia,
) -> Result<(), OriginError> {
    let (want, wait) = {
        let p = s.presentation();
        let cfg = p.config();
        match need {
            FirstMedia::Start => {
                let n = start_segments(cfg);
                let extra = Duration::from_secs_f64(cfg.segment_target * n as f64);
                (n, state.first_media_wait + extra)
            }
            _ => (1, state.first_media_wait),
        }
    };
    let has_media = |p: &LivePackager| {
        p.is_ended()
            || p.renditions().iter().all(|r| {
                r.segments.len() >= want
                    || (need == FirstMedia::Part
                        && r.building.as_ref().is_some_and(|b| !b.parts.is_empty()))
            }) && p.lead().is_some()
    };
    if s.wait_until(wait, has_media).await {
        Ok(())
    } else {
        Err(OriginError::NotYet)
    }
}

/// FNV-1a, for ETags of generated manifests.
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn manifest_response(
    headers: &HeaderMap,
    content_type: &'static str,
    body: String,
    ended: bool,
) -> Response {
    manifest_response_with(headers, content_type, body, ended, false)
}

fn manifest_response_with(
    headers: &HeaderMap,
    content_type: &'static str,
    body: String,
    ended: bool,
    blocking: bool,
) -> Response {
    let etag = format!("\"{:016x}\"", fnv1a(body.as_bytes()));
    let cache = if ended {
        ENDED_PLAYLIST_CACHE
    } else if blocking {
        BLOCKING_PLAYLIST_CACHE
    } else {
        PLAYLIST_CACHE
    };
    if not_modified(headers, &etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, cache.to_string()),
            ],
        )
            .into_response();
    }
    metrics::HTTP_BYTES_OUT.inc_by(body.len() as u64);
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CACHE_CONTROL, cache.to_string()),
            (header::ETAG, etag),
        ],
        body,
    )
        .into_response()
}

async fn master_playlist(
    State(state): State<OriginState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> OriginResult {
    let token = authorize(
        state.access.as_ref(),
        &name,
        access::query_token(query.as_deref()),
    )?;
    let s = stream(&state, &name)?;
    wait_for_media(&state, &s, FirstMedia::Start).await?;
    let p = s.presentation();
    let body = hls::master_playlist_at(&p, &token_prefix(token)).ok_or(OriginError::NotYet)?;
    Ok(manifest_response(
        &headers,
        "application/vnd.apple.mpegurl",
        body,
        p.is_ended(),
    ))
}

async fn manifest_mpd(
    State(state): State<OriginState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> OriginResult {
    let token = authorize(
        state.access.as_ref(),
        &name,
        access::query_token(query.as_deref()),
    )?;
    let s = stream(&state, &name)?;
    wait_for_media(&state, &s, FirstMedia::Part).await?;
    let origin = request_origin(&headers);
    let policy = policy_of(&state, &name);
    // One snapshot for the protection and the listing: with key rotation,
    // a segment begun in between could open a key period the protection
    // does not describe.
    let p = s.presentation();
    let protection = match (&state.protection, policy.dash) {
        (Some(prot), mode) if mode != DashMode::None => {
            let license = format!(
                "{}/drm/clearkey/license{}",
                origin.as_deref().unwrap_or("http://localhost"),
                token_query(token)
            );
            // The segments the MPD may list: the window and the one being built.
            let window = p.lead().map(|r| (r.first_msn(), r.next_part().0));
            let window = window.unwrap_or((0, 0));
            let scope = s.key_scope(window.0);
            Some(
                prot.dash_protection(scope, mode, &license, window)
                    .ok_or(OriginError::Internal)?,
            )
        }
        _ => None,
    };
    let opts = dash::MpdOptions {
        utc_timing_url: origin.as_ref().map(|o| format!("{o}/time")),
        target_latency_ms: state.dash_target_latency_ms,
        protection,
        base_url: token.map(|t| token_prefix(Some(t))),
    };
    let body = dash::mpd(&p, now_ms(), &opts).ok_or(OriginError::NotYet)?;
    Ok(manifest_response(
        &headers,
        "application/dash+xml",
        body,
        p.is_ended(),
    ))
}

async fn smooth_manifest(
    State(state): State<OriginState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> OriginResult {
    let token = authorize(
        state.access.as_ref(),
        &name,
        access::query_token(query.as_deref()),
    )?;
    let s = stream(&state, &name)?;
    let policy = policy_of(&state, &name);
    if !policy.serves_smooth() {
        // Clear Smooth output would undercut the protected formats.
        return Err(OriginError::NotFound);
    }
    wait_for_media(&state, &s, FirstMedia::Part).await?;
    // The manifest lists fragments once LookAheadFragmentCount more exist.
    let ready =
        |p: &LivePackager| p.is_ended() || smooth::client_manifest(&p.presentation()).is_some();
    if !s.wait_until(state.first_media_wait * 2, ready).await {
        return Err(OriginError::NotYet);
    }
    let header = match (&state.protection, policy.mss_protected) {
        (Some(prot), true) => Some(
            prot.smooth_protection_header(s.key_scope(0))
                .ok_or(OriginError::Internal)?,
        ),
        _ => None,
    };
    let p = s.presentation();
    let body = smooth::client_manifest_with(&p, header.as_ref(), &token_prefix(token))
        .ok_or(OriginError::NotYet)?;
    Ok(manifest_response(
        &headers,
        "text/xml; charset=utf-8",
        body,
        p.is_ended(),
    ))
}

/// A Smooth fragment: `QualityLevels(B)/Fragments(video=T)`, encrypted
/// when the stream's Smooth output is (`protection`).
async fn smooth_fragment(
    s: &LiveStream,
    file: &str,
    headers: &HeaderMap,
    protection: Option<&Protection>,
) -> OriginResult {
    let (kind, t) = smooth::parse_fragment_name(file).ok_or(OriginError::NotFound)?;
    let etag = format!(
        "\"{:x}-mss-{}-{t}{}\"",
        s.instance,
        kind.as_str(),
        if protection.is_some() { "-cenc" } else { "" }
    );
    if not_modified(headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, media_headers(kind, &etag, None)).into_response());
    }
    let p = s.presentation();
    let (r, seg) = smooth::fragment_source(&p, kind, t).ok_or(OriginError::NotFound)?;
    let parts = match crate::dvr::spooled(s, &r.id, seg.msn).await {
        Some(spooled) => MediaSource::segment(&spooled, &r.id, seg.msn),
        None => MediaSource::segment(s, &r.id, seg.msn),
    }
    .ok_or(OriginError::NotFound)?;
    let samples = smooth::samples_of_parts(&parts).map_err(|err| {
        tracing::error!(stream = s.name, error = %err, "stored segment could not be re-boxed for Smooth");
        OriginError::NotFound
    })?;
    let data = smooth::fragment(r, seg, samples);
    let data = match protection {
        Some(prot) => prot
            .smooth_fragment(&s.name, s.instance, r, seg.msn, &data)
            .map_err(|e| encrypt_failed(&s.name, &r.id, &e))?,
        None => data,
    };
    Ok(send_bytes(kind, &etag, data))
}

fn policy_of(state: &OriginState, stream: &str) -> DrmPolicy {
    state
        .protection
        .as_ref()
        .map(|p| p.policy(stream))
        .unwrap_or_default()
}

/// A JSON error for the DRM routes (INTERFACE.md's API error shape).
fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `GET /drm/keys/{kid}`: the 16-byte content key of an HLS `EXT-X-KEY` URI.
async fn key_file(
    State(state): State<OriginState>,
    Path(kid): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(prot) = &state.protection else {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no such key");
    };
    let Some(kid) = crate::protect::parse_kid(&kid) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_kid",
            "a key id is 32 hex digits",
        );
    };
    match prot.keys.find_with_stream(&kid) {
        Some((stream, k)) => {
            if let Err(e) = authorize(
                state.access.as_ref(),
                &stream,
                access::query_token(query.as_deref()),
            ) {
                return e.into_response();
            }
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::CACHE_CONTROL, "private, no-store"),
                ],
                Bytes::copy_from_slice(&k.key),
            )
                .into_response()
        }
        None => json_error(StatusCode::NOT_FOUND, "not_found", "no such key"),
    }
}

/// `POST /drm/clearkey/license`: the W3C ClearKey licence exchange.
async fn clearkey_license(
    State(state): State<OriginState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Some(prot) = &state.protection else {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no keys on this server");
    };
    let token = access::query_token(query.as_deref());
    // A key is licensed only if the token opens its stream; the first
    // refusal is the answer when no key is left.
    let refused = std::cell::Cell::new(None);
    let result = vela_drm::clearkey::license_response(&body, |kid| {
        let (stream, k) = prot.keys.find_with_stream(kid)?;
        match authorize(state.access.as_ref(), &stream, token) {
            Ok(_) => Some(k.key),
            Err(OriginError::Denied(d)) => {
                refused.set(refused.get().or(Some(d)));
                None
            }
            Err(_) => None,
        }
    });
    if let (Err(vela_drm::clearkey::LicenseError::UnknownKids), Some(d)) = (&result, refused.get())
    {
        return denied_response(d);
    }
    match result {
        Ok(json) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            json,
        )
            .into_response(),
        Err(e) => {
            tracing::info!(error = %e, "ClearKey licence request refused");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (
                status,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                e.to_json(),
            )
                .into_response()
        }
    }
}

/// The header that carries the scheme a client used: set by Vela's own TLS
/// listeners (HTTPS, HTTP/3) over whatever the client sent, and by a
/// TLS-terminating proxy or CDN in front of the plain HTTP listener.
pub const FORWARDED_PROTO: header::HeaderName =
    header::HeaderName::from_static("x-forwarded-proto");

/// Marks a request that came over TLS (HTTPS, HTTP/3), so that absolute URLs
/// written for it (the DASH licence and `UTCTiming` URLs) are `https://`: a
/// page served over HTTPS may not fetch `http://` ones (mixed content). Also
/// gives HTTP/2 requests the `Host` header that their `:authority` implies
/// (without it an MPD over HTTP/2 had no `UTCTiming` URL and a licence URL
/// of `http://localhost`).
pub async fn mark_tls(mut req: Request) -> Request {
    // HTTP/2 and HTTP/3 clients name the host in `:authority` (the URI), not
    // in `Host`, which is where the handlers read it.
    if !req.headers().contains_key(header::HOST) {
        let host = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        if let Some(h) = host {
            req.headers_mut().insert(header::HOST, h);
        }
    }
    req.headers_mut()
        .insert(FORWARDED_PROTO, HeaderValue::from_static("https"));
    req
}

/// `scheme://host` of the request, for absolute URLs written into an MPD.
pub(crate) fn request_origin(headers: &HeaderMap) -> Option<String> {
    let https = headers
        .get(FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let scheme = if https { "https" } else { "http" };
    request_host(headers).map(|h| format!("{scheme}://{h}"))
}

/// The request's `Host`, when it is a plain host name fit to be written
/// into a URL.
pub(crate) fn request_host(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_plain_host(h))
}

fn is_plain_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() < 256
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// The LL-HLS delivery directives of a media playlist request.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Directives {
    pub(crate) msn: Option<u64>,
    pub(crate) part: Option<usize>,
    pub(crate) skip: bool,
}

pub(crate) fn directives(query: Option<&str>) -> Result<Directives, OriginError> {
    let mut d = Directives::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "_HLS_msn" => {
                d.msn = Some(
                    v.parse()
                        .map_err(|_| OriginError::BadRequest("_HLS_msn is not a number"))?,
                )
            }
            "_HLS_part" => {
                d.part = Some(
                    v.parse()
                        .map_err(|_| OriginError::BadRequest("_HLS_part is not a number"))?,
                )
            }
            "_HLS_skip" => d.skip = v == "YES" || v == "v2",
            _ => {} // other parameters (tokens, cache busters) are not ours
        }
    }
    if d.part.is_some() && d.msn.is_none() {
        return Err(OriginError::BadRequest("_HLS_part without _HLS_msn"));
    }
    Ok(d)
}

async fn media_playlist(
    State(state): State<OriginState>,
    Path((name, rid)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> OriginResult {
    let token = access::query_token(query.as_deref()).map(str::to_string);
    serve_media_playlist(state, name, rid, token, query, headers).await
}

/// A media playlist under the playback token's path (`/live/S/t/T/R/index.m3u8`).
async fn media_playlist_with_token(
    State(state): State<OriginState>,
    Path((name, token, rid)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> OriginResult {
    serve_media_playlist(state, name, rid, Some(token), query, headers).await
}

async fn serve_media_playlist(
    state: OriginState,
    name: String,
    rid: String,
    token: Option<String>,
    query: Option<String>,
    headers: HeaderMap,
) -> OriginResult {
    let token = authorize(state.access.as_ref(), &name, token.as_deref())?;
    let s = stream(&state, &name)?;
    let d = directives(query.as_deref())?;
    if s.presentation().rendition(&rid).is_none() {
        // Tracks may still be on their way for a stream that just started.
        wait_for_media(&state, &s, FirstMedia::Segment).await?;
        if s.presentation().rendition(&rid).is_none() {
            return Err(OriginError::NotFound);
        }
    }
    wait_for_media(&state, &s, FirstMedia::Segment).await?;
    if let Some(msn) = d.msn {
        let (next_msn, target) = {
            let p = s.presentation();
            let r = p.rendition(&rid).ok_or(OriginError::NotFound)?;
            (r.next_part().0, hls::target_duration(&p))
        };
        // RFC 8216bis 6.2.5.2: more than two segments ahead is a bad request.
        if msn > next_msn + 2 {
            return Err(OriginError::BadRequest(
                "_HLS_msn is too far ahead of the live edge",
            ));
        }
        let part = d.part;
        let timeout = Duration::from_secs(3 * target.max(1));
        let ready = s
            .wait_until(timeout, |p| {
                p.is_ended() || p.rendition(&rid).is_some_and(|r| r.has(msn, part))
            })
            .await;
        if !ready {
            return Err(OriginError::NotYet);
        }
    }
    let p = s.presentation();
    let policy = policy_of(&state, &name);
    let body = match (&state.protection, policy.hls_tag()) {
        (Some(prot), Some(tag)) => {
            let r = p.rendition(&rid).ok_or(OriginError::NotFound)?;
            let kind = r.track.kind();
            let scope = s.key_scope(r.first_msn());
            let key_query = token_query(token);
            let key_attributes = |msn: u64| {
                prot.hls_key_attributes(scope, policy.hls, kind, msn, &key_query)
                    .unwrap_or_default()
            };
            let init_key_period = |msn: u64| prot.key_period(msn);
            let keying = hls::HlsKeying {
                tag,
                protected_init: tag != "aes",
                key_attributes: &key_attributes,
                init_key_period: prot
                    .rotation()
                    .map(|_| &init_key_period as &dyn Fn(u64) -> u64),
            };
            hls::media_playlist_with(&p, &rid, hls::Skip(d.skip), Some(&keying))
        }
        _ => hls::media_playlist(&p, &rid, hls::Skip(d.skip)),
    }
    .ok_or(OriginError::NotFound)?;
    Ok(manifest_response_with(
        &headers,
        "application/vnd.apple.mpegurl",
        body,
        p.is_ended(),
        d.msn.is_some(),
    ))
}

/// Parses a media file name — `init-V.mp4` (`init-V.kK.TAG.mp4`:
/// protected for key period K), `seg-N.m4s`, `part-N.P.m4s` — with the
/// encrypted variant's tag if any (`seg-N.cenc.m4s`); `None` for anything
/// else. The writers in vela-packager make these names.
pub(crate) fn parse_file(name: &str) -> Option<(FileId, Option<&'static str>)> {
    // A trailing `.TAG` before the extension names an encrypted variant.
    let split_tag = |rest: &str| -> Option<(String, Option<&'static str>)> {
        match rest.rsplit_once('.') {
            Some((head, t)) if t.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Some((head.to_string(), Some(crate::protect::known_tag(t)?)))
            }
            _ => Some((rest.to_string(), None)),
        }
    };
    if let Some(r) = name
        .strip_prefix("init-")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        let (v, tag) = split_tag(r)?;
        let (v, period) = match v.split_once(".k") {
            // A key period only names a protected init.
            Some((v, k)) if tag.is_some() && k.bytes().all(|b| b.is_ascii_digit()) => {
                (v.to_string(), k.parse().ok()?)
            }
            Some(_) => return None,
            None => (v, 0),
        };
        return Some((FileId::Init(v.parse().ok()?, period), tag));
    }
    if let Some(r) = name
        .strip_prefix("seg-")
        .and_then(|r| r.strip_suffix(".m4s"))
    {
        let (n, tag) = split_tag(r)?;
        return Some((FileId::Segment(n.parse().ok()?), tag));
    }
    let (rest, tag) = split_tag(name.strip_prefix("part-")?.strip_suffix(".m4s")?)?;
    let (n, p) = rest.split_once('.')?;
    Some((FileId::Part(n.parse().ok()?, p.parse().ok()?), tag))
}

/// An encrypted variant to serve instead of the clear file.
#[derive(Clone)]
struct Variant {
    protection: Arc<Protection>,
    tag: &'static str,
}

impl Variant {
    /// Encrypts from the stream's latest snapshot and the clear bytes of
    /// `src` (the stream, or a segment read from its spool); no lock is
    /// held while encrypting.
    fn apply(
        &self,
        s: &LiveStream,
        src: &dyn MediaSource,
        rid: &str,
        file: FileId,
    ) -> Result<Option<Bytes>, OriginError> {
        let p = s.presentation();
        let Some(r) = p.rendition(rid) else {
            return Ok(None);
        };
        self.protection
            .variant(&s.name, s.instance, r, src, self.tag, file)
            .map_err(|e| encrypt_failed(&s.name, rid, &e))
    }
}

/// A request for media whose key was retired (a replaced instance, a key
/// period gone from the window) is a 404 like any media out of the window;
/// any other encryption failure is ours.
pub(crate) fn encrypt_failed(stream: &str, rendition: &str, e: &ProtectError) -> OriginError {
    if e.is_retired() {
        tracing::info!(stream, rendition, error = %e, "media of a retired key");
        OriginError::NotFound
    } else {
        tracing::error!(stream, rendition, error = %e, "cannot encrypt");
        OriginError::Internal
    }
}

fn media_headers(kind: MediaKind, etag: &str, len: Option<usize>) -> HeaderMap {
    let mut h = HeaderMap::new();
    let ct = match kind {
        MediaKind::Video => "video/mp4",
        MediaKind::Audio => "audio/mp4",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(MEDIA_CACHE));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    h
}

async fn media_file(
    State(state): State<OriginState>,
    Path((name, rid, file)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> OriginResult {
    authorize(
        state.access.as_ref(),
        &name,
        access::query_token(query.as_deref()),
    )?;
    serve_media_file(state, name, rid, file, headers).await
}

/// A media file under the playback token's path (`/live/S/t/T/R/FILE`).
async fn media_file_with_token(
    State(state): State<OriginState>,
    Path((name, token, rid, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> OriginResult {
    authorize(state.access.as_ref(), &name, Some(&token))?;
    serve_media_file(state, name, rid, file, headers).await
}

async fn serve_media_file(
    state: OriginState,
    name: String,
    rid: String,
    file: String,
    headers: HeaderMap,
) -> OriginResult {
    let s = stream(&state, &name)?;
    if rid.starts_with("QualityLevels(") {
        let policy = policy_of(&state, &name);
        if !policy.serves_smooth() {
            return Err(OriginError::NotFound);
        }
        let protection = state.protection.as_deref().filter(|_| policy.mss_protected);
        return smooth_fragment(&s, &file, &headers, protection).await;
    }
    let (file, tag) = parse_file(&file).ok_or(OriginError::NotFound)?;
    let policy = state
        .protection
        .as_ref()
        .map(|p| p.policy(&name))
        .unwrap_or_default();
    let allowed = match file {
        FileId::Init(..) => policy.allows_init(tag),
        _ => policy.allows(tag),
    };
    if !allowed {
        return Err(OriginError::NotFound);
    }
    let variant = match (tag, &state.protection) {
        (Some(tag), Some(protection)) => Some(Variant {
            protection: protection.clone(),
            tag,
        }),
        (Some(_), None) => return Err(OriginError::NotFound),
        (None, _) => None,
    };
    let kind = s
        .presentation()
        .rendition(&rid)
        .map(|r| r.track.kind())
        .ok_or(OriginError::NotFound)?;
    let etag = format!(
        "\"{:x}-{rid}-{file:?}-{}\"",
        s.instance,
        tag.unwrap_or("clear")
    )
    .replace(['(', ')', ' ', ','], "");
    if not_modified(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, media_headers(kind, &etag, None)).into_response());
    }
    if let FileId::Segment(msn) | FileId::Part(msn, _) = file {
        if let Some(data) = spooled_file(&s, &rid, file, msn, variant.as_ref()).await? {
            return Ok(send_bytes(kind, &etag, data));
        }
    }
    match file {
        FileId::Init(v, period) => {
            let data = match &variant {
                Some(var) => var.apply(&s, &*s, &rid, FileId::Init(v, period))?,
                None => MediaSource::init(&*s, &rid, v),
            };
            Ok(send_bytes(kind, &etag, data.ok_or(OriginError::NotFound)?))
        }
        FileId::Part(msn, idx) => {
            let find = |p: &LivePackager| p.rendition(&rid)?.part_data(msn, idx).cloned();
            let encrypt = |data: Bytes| -> Result<Bytes, OriginError> {
                match &variant {
                    Some(var) => var
                        .apply(&s, &*s, &rid, FileId::Part(msn, idx))?
                        .ok_or(OriginError::NotFound),
                    None => Ok(data),
                }
            };
            let found_now = find(&s.read());
            if let Some(data) = found_now {
                return Ok(send_bytes(kind, &etag, encrypt(data)?));
            }
            // A part that is about to be written (the preload hint, or one
            // just past it): hold the request until it exists.
            let (soon, wait) = {
                let p = s.read();
                let r = p.rendition(&rid).ok_or(OriginError::NotFound)?;
                let (next_msn, next_idx) = r.next_part();
                let soon = !p.is_ended()
                    && ((msn == next_msn && idx <= next_idx + 1)
                        || (msn == next_msn + 1 && idx <= 1));
                (
                    soon,
                    Duration::from_secs_f64((p.config().part_target * 6.0).max(2.0)),
                )
            };
            if !soon {
                return Err(OriginError::NotFound);
            }
            let mut found = None;
            s.wait_until(wait, |p| {
                found = find(p);
                found.is_some() || p.is_ended()
            })
            .await;
            let data = found.ok_or(OriginError::NotFound)?;
            Ok(send_bytes(kind, &etag, encrypt(data)?))
        }
        FileId::Segment(msn) => segment_response(&s, &rid, kind, &etag, msn, variant).await,
    }
}

/// A segment or part of a segment whose bytes are in the DVR spool, clear
/// or as `variant`: `Ok(None)` when the segment is not spooled (in memory,
/// or out of the window), so the caller serves it as usual.
async fn spooled_file(
    s: &LiveStream,
    rid: &str,
    file: FileId,
    msn: u64,
    variant: Option<&Variant>,
) -> Result<Option<Bytes>, OriginError> {
    let Some(spooled) = crate::dvr::spooled(s, rid, msn).await else {
        return Ok(None);
    };
    let data = match (variant, file) {
        (Some(var), f) => var.apply(s, &spooled, rid, f)?,
        (None, FileId::Part(_, idx)) => spooled.part(idx),
        (None, _) => Some(spooled.whole()),
    };
    data.map(Some).ok_or(OriginError::NotFound)
}

fn send_bytes(kind: MediaKind, etag: &str, data: Bytes) -> Response {
    metrics::HTTP_BYTES_OUT.inc_by(data.len() as u64);
    (
        media_headers(kind, etag, Some(data.len())),
        Body::from(data),
    )
        .into_response()
}

/// A complete segment is sent whole; the segment being built (or the next
/// one, about to start) is sent with chunked transfer, part by part as the
/// packager writes them: low-latency DASH.
async fn segment_response(
    s: &Arc<LiveStream>,
    rid: &str,
    kind: MediaKind,
    etag: &str,
    msn: u64,
    variant: Option<Variant>,
) -> OriginResult {
    if let Some(var) = &variant {
        // A complete segment's variant is made (and cached) in one piece.
        let complete = s
            .presentation()
            .rendition(rid)
            .is_some_and(|r| r.segments.iter().any(|seg| seg.msn == msn));
        if complete {
            let data = match var.apply(s, &**s, rid, FileId::Segment(msn))? {
                Some(d) => d,
                // Spooled since the caller looked.
                None => spooled_file(s, rid, FileId::Segment(msn), msn, Some(var))
                    .await?
                    .ok_or(OriginError::NotFound)?,
            };
            return Ok(send_bytes(kind, etag, data));
        }
        if var.tag == "aes" {
            // Whole-segment CBC cannot be streamed before the segment ends;
            // HLS players ask for complete segments only.
            return Err(OriginError::NotFound);
        }
    }
    let (complete, upcoming, wait) = {
        let p = s.read();
        let r = p.rendition(rid).ok_or(OriginError::NotFound)?;
        let complete = r
            .segments
            .iter()
            .any(|seg| seg.msn == msn)
            .then(|| r.segment_data(msn).map(<[Bytes]>::to_vec))
            .flatten();
        let next_msn = r.next_part().0;
        let upcoming = !p.is_ended() && (msn == next_msn || msn == next_msn + 1);
        (
            complete,
            upcoming,
            Duration::from_secs_f64((p.config().segment_target * 3.0).max(3.0)),
        )
    };
    if complete.is_none() {
        // Spooled since the caller looked.
        if let Some(data) = spooled_file(s, rid, FileId::Segment(msn), msn, None).await? {
            return Ok(send_bytes(kind, etag, data));
        }
    }
    if let Some(chunks) = complete {
        let len: usize = chunks.iter().map(|c| c.len()).sum();
        metrics::HTTP_BYTES_OUT.inc_by(len as u64);
        let body = Body::from_stream(futures_util::stream::iter(
            chunks.into_iter().map(Ok::<_, std::io::Error>),
        ));
        return Ok((media_headers(kind, etag, Some(len)), body).into_response());
    }
    if !upcoming {
        return Err(OriginError::NotFound);
    }
    // Wait for the segment's first part, then stream the rest as it comes.
    let rid_owned = rid.to_string();
    let started = s
        .wait_until(wait, |p| {
            p.rendition(&rid_owned)
                .and_then(|r| r.segment(msn))
                .is_some_and(|seg| !seg.parts.is_empty())
        })
        .await;
    if !started {
        return Err(OriginError::NotYet);
    }
    let state = ChunkState {
        stream: s.clone(),
        rid: rid_owned,
        msn,
        next: 0,
        wait,
        variant,
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            let (chunk, done, changed) = {
                let p = st.stream.read();
                let seg = p.rendition(&st.rid).and_then(|r| {
                    r.segment(st.msn).map(|_| {
                        (
                            r.part_data(st.msn, st.next).cloned(),
                            r.building.as_ref().is_none_or(|b| b.msn != st.msn),
                        )
                    })
                });
                match seg {
                    Some((Some(chunk), _)) => (Some(chunk), false, None),
                    Some((None, complete)) => (None, complete, Some(st.stream.changed(st.wait))),
                    None => (None, true, None), // left the window
                }
            };
            if let Some(chunk) = chunk {
                let chunk = match &st.variant {
                    // Each part of a common-encryption segment is encrypted
                    // on its own, so the parts back to back are the segment.
                    Some(var) => {
                        let (s, f) = (&st.stream, FileId::Part(st.msn, st.next));
                        match var.apply(s, &**s, &st.rid, f) {
                            Ok(Some(c)) => c,
                            _ => return None,
                        }
                    }
                    None => chunk,
                };
                st.next += 1;
                metrics::HTTP_BYTES_OUT.inc_by(chunk.len() as u64);
                return Some((Ok::<_, std::io::Error>(chunk), st));
            }
            if done {
                return None;
            }
            let before = Instant::now();
            if let Some(changed) = changed {
                changed.await;
            }
            if before.elapsed() >= st.wait {
                // The publisher stalled mid-segment: end the response rather
                // than hold the connection for ever.
                return None;
            }
        }
    });
    Ok((media_headers(kind, etag, None), Body::from_stream(body)).into_response())
}

struct ChunkState {
    variant: Option<Variant>,
    stream: Arc<LiveStream>,
    rid: String,
    msn: u64,
    next: usize,
    wait: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request as HttpRequest;
    use http_body_util::BodyExt;
    use std::sync::Arc as StdArc;
    use tower::ServiceExt;
    use vela_media::hub::StreamHub;
    use vela_media::{CodecConfig, Frame, MediaEvent, Track, VideoCodec};
    use vela_packager::PackagerConfig;

    fn tracks() -> MediaEvent {
        MediaEvent::Tracks(StdArc::new(vec![Track {
            id: 1,
            timescale: 90000,
            config: CodecConfig::Video {
                codec: VideoCodec::H264,
                width: 320,
                height: 240,
                frame_rate: Some(30.0),
                record: Bytes::from_static(&[1, 0x42, 0, 0x1e, 0xff, 0xe0, 0]),
            },
            bitrate: None,
        }]))
    }

    fn frame(i: i64) -> MediaEvent {
        MediaEvent::Frame(Frame {
            track_id: 1,
            dts: i * 3000,
            cts_offset: 0,
            keyframe: i % 30 == 0,
            data: nal_frame(i % 30 == 0),
        })
    }

    /// One 4-byte length-prefixed H.264 slice NAL unit (IDR or not) with a
    /// payload long enough for subsample encryption.
    fn nal_frame(idr: bool) -> Bytes {
        let mut v = vec![0, 0, 0, 96, if idr { 0x65 } else { 0x41 }];
        v.extend((0..95u8).map(|i| i.wrapping_mul(7)));
        Bytes::from(v)
    }

    fn setup() -> (StreamHub, Router) {
        let hub = StreamHub::new(4096, Duration::from_secs(1));
        let live = LiveRegistry::attach(&hub, StdArc::new(|_: &str| PackagerConfig::default()));
        let mut state = OriginState::new(live);
        state.first_media_wait = Duration::from_secs(2);
        let app = router(state).layer(axum::middleware::from_fn(cors_and_metrics));
        (hub, app)
    }

    async fn get(app: &Router, uri: &str) -> (StatusCode, HeaderMap, Bytes) {
        let res = app
            .clone()
            .oneshot(HttpRequest::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body)
    }

    /// Lets the packager task drain the channel.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn unknown_stream_is_404_at_once() {
        let (_hub, app) = setup();
        let (status, headers, _) = get(&app, "/live/nope/master.m3u8").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(
            get(&app, "/live/nope/v1/seg-1.m4s").await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn serves_playlists_and_media_with_caching_headers() {
        let (hub, app) = setup();
        let publisher = hub.publish("show").unwrap();
        publisher.send(tracks());
        for i in 0..200 {
            publisher.send(frame(i));
        }
        settle().await;
        let (status, headers, body) = get(&app, "/live/show/master.m3u8").await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(headers[header::CACHE_CONTROL], PLAYLIST_CACHE);
        let (status, _, body) = get(&app, "/live/show/v1/index.m3u8").await;
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("seg-0.m4s"), "{text}");

        let (status, headers, seg) = get(&app, "/live/show/v1/seg-0.m4s").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], MEDIA_CACHE);
        assert_eq!(
            headers[header::CONTENT_LENGTH].to_str().unwrap(),
            seg.len().to_string()
        );
        let etag = headers[header::ETAG].to_str().unwrap().to_string();
        // the segment is its parts, back to back
        let (_, _, p0) = get(&app, "/live/show/v1/part-0.0.m4s").await;
        assert_eq!(&seg[..p0.len()], &p0[..]);
        // conditional request
        let req = HttpRequest::get("/live/show/v1/seg-0.m4s")
            .header(header::IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(req).await.unwrap().status(),
            StatusCode::NOT_MODIFIED
        );

        let (status, headers, init) = get(&app, "/live/show/v1/init-0.mp4").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "video/mp4");
        assert_eq!(&init[4..8], b"ftyp");

        let (status, headers, body) = get(&app, "/live/show/Manifest").await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/xml"));
        let xml = String::from_utf8(body.to_vec()).unwrap();
        assert!(xml.contains("<c t=\"0\" d=\"20000000\"/>"), "{xml}");
        let (status, _, frag) =
            get(&app, "/live/show/QualityLevels(1000)/Fragments(video=0)").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&frag[4..8], b"moof");
        assert_eq!(
            get(&app, "/live/show/QualityLevels(1000)/Fragments(video=1)")
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        let (status, headers, _) = get(&app, "/live/show/manifest.mpd").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/dash+xml");
        assert_eq!(
            get(&app, "/live/show/v1/seg-999.m4s").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&app, "/live/show/x9/index.m3u8").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&app, "/live/show/v1/index.m3u8?_HLS_part=1").await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            get(&app, "/live/show/v1/index.m3u8?_HLS_msn=999").await.0,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn blocking_reload_returns_when_the_part_appears() {
        let (hub, app) = setup();
        let publisher = hub.publish("show").unwrap();
        publisher.send(tracks());
        // Segment 1 has its first part (frames 60..70), so a hint is listed.
        for i in 0..72 {
            publisher.send(frame(i));
        }
        settle().await;
        let (_, _, body) = get(&app, "/live/show/v1/index.m3u8").await;
        let text = String::from_utf8(body.to_vec()).unwrap();
        let hint = text
            .lines()
            .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
            .unwrap();
        let (msn, part) = hint
            .split("part-")
            .nth(1)
            .unwrap()
            .trim_end_matches(".m4s\"")
            .split_once('.')
            .unwrap();
        let uri = format!("/live/show/v1/index.m3u8?_HLS_msn={msn}&_HLS_part={part}");
        let app2 = app.clone();
        let waiting = tokio::spawn(async move { get(&app2, &uri).await });
        let part_req = {
            let app3 = app.clone();
            let uri = format!("/live/show/v1/part-{msn}.{part}.m4s");
            tokio::spawn(async move { get(&app3, &uri).await })
        };
        settle().await;
        assert!(!waiting.is_finished(), "must block until the part exists");
        for i in 72..90 {
            publisher.send(frame(i));
        }
        let (status, _, body) = waiting.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains(&format!("part-{msn}.{part}.m4s")), "{text}");
        let (status, _, data) = part_req.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&data[4..8], b"moof");
    }

    /// A player's start: the master playlist answers once three segments
    /// are complete, so that a player's probes of the media playlists find
    /// complete segments.
    #[tokio::test]
    async fn master_playlist_waits_for_three_segments() {
        let (hub, app) = setup();
        let publisher = hub.publish("show").unwrap();
        publisher.send(tracks());
        for i in 0..70 {
            publisher.send(frame(i)); // segment 0 complete, segment 1 begun
        }
        settle().await;
        let app2 = app.clone();
        let waiting = tokio::spawn(async move { get(&app2, "/live/show/master.m3u8").await });
        settle().await;
        assert!(!waiting.is_finished(), "answered with one complete segment");
        for i in 70..190 {
            publisher.send(frame(i)); // segment 2 complete at frame 180
        }
        let (status, _, body) = waiting.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("#EXT-X-STREAM-INF"));
        let (_, _, media) = get(&app, "/live/show/v1/index.m3u8").await;
        let media = String::from_utf8_lossy(&media).into_owned();
        assert_eq!(media.matches("#EXTINF").count(), 3, "{media}");
    }

    /// Stream "paid" needs the token "1.paid-ok"; "1.paid-old" has expired.
    struct TestGate;

    impl access::PlaybackGate for TestGate {
        fn requires_token(&self, stream: &str) -> bool {
            stream == "paid"
        }
        fn verify(&self, stream: &str, token: &str, _now_s: i64) -> Result<(), Denied> {
            match token
                .strip_prefix("1.")
                .and_then(|t| t.strip_prefix(stream))
            {
                Some("-ok") => Ok(()),
                Some("-old") => Err(Denied::Expired),
                _ => Err(Denied::Invalid),
            }
        }
    }

    async fn json_code(app: &Router, uri: &str) -> (StatusCode, String) {
        let (status, headers, body) = get(app, uri).await;
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, v["error"]["code"].as_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn a_stream_that_requires_a_token_is_played_only_with_one() {
        let hub = StreamHub::new(4096, Duration::from_secs(1));
        let live = LiveRegistry::attach(&hub, StdArc::new(|_: &str| PackagerConfig::default()));
        let mut state = OriginState::new(live);
        state.first_media_wait = Duration::from_secs(2);
        state.access = Some(StdArc::new(TestGate));
        let app = router(state);
        let mut publishers = Vec::new();
        for key in ["paid", "free"] {
            let publisher = hub.publish(key).unwrap();
            publisher.send(tracks());
            for i in 0..200 {
                publisher.send(frame(i));
            }
            publishers.push(publisher);
        }
        settle().await;

        // Without a token, with a bad one, an expired one, another stream's.
        for (uri, status, code) in [
            (
                "/live/paid/master.m3u8",
                StatusCode::UNAUTHORIZED,
                "token_required",
            ),
            (
                "/live/paid/manifest.mpd",
                StatusCode::UNAUTHORIZED,
                "token_required",
            ),
            (
                "/live/paid/v1/index.m3u8",
                StatusCode::UNAUTHORIZED,
                "token_required",
            ),
            (
                "/live/paid/v1/seg-0.m4s",
                StatusCode::UNAUTHORIZED,
                "token_required",
            ),
            (
                "/live/paid/master.m3u8?token=1.paid-old",
                StatusCode::FORBIDDEN,
                "token_expired",
            ),
            (
                "/live/paid/master.m3u8?token=1.free-ok",
                StatusCode::FORBIDDEN,
                "token_invalid",
            ),
            (
                "/live/paid/t/1.free-ok/v1/seg-0.m4s",
                StatusCode::FORBIDDEN,
                "token_invalid",
            ),
            (
                "/live/paid/t/a%20b/v1/seg-0.m4s",
                StatusCode::FORBIDDEN,
                "token_malformed",
            ),
        ] {
            assert_eq!(
                json_code(&app, uri).await,
                (status, code.to_string()),
                "{uri}"
            );
        }

        // With the token: every URL the manifests write carries it.
        let (status, _, body) = get(&app, "/live/paid/master.m3u8?token=1.paid-ok").await;
        assert_eq!(status, StatusCode::OK);
        let master = String::from_utf8_lossy(&body).into_owned();
        assert!(master.contains("\nt/1.paid-ok/v1/index.m3u8"), "{master}");
        let (status, _, body) = get(&app, "/live/paid/t/1.paid-ok/v1/index.m3u8").await;
        assert_eq!(status, StatusCode::OK);
        let media = String::from_utf8_lossy(&body).into_owned();
        assert!(media.contains("\nseg-0.m4s"), "{media}");
        let (status, _, body) = get(&app, "/live/paid/t/1.paid-ok/v1/seg-0.m4s").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[4..8], b"moof");
        let (status, _, body) = get(&app, "/live/paid/manifest.mpd?token=1.paid-ok").await;
        assert_eq!(status, StatusCode::OK);
        let mpd = String::from_utf8_lossy(&body).into_owned();
        assert!(mpd.contains("<BaseURL>t/1.paid-ok/</BaseURL>"), "{mpd}");
        let (status, _, body) = get(&app, "/live/paid/Manifest?token=1.paid-ok").await;
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("Url=\"t/1.paid-ok/QualityLevels("));

        // An open stream needs nothing, and its manifests carry no token.
        let (status, _, body) = get(&app, "/live/free/master.m3u8").await;
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("\nv1/index.m3u8"));
    }

    #[tokio::test]
    async fn segment_in_progress_streams_until_complete() {
        let (hub, app) = setup();
        let publisher = hub.publish("show").unwrap();
        publisher.send(tracks());
        for i in 0..70 {
            publisher.send(frame(i)); // segment 0 complete at frame 60; segment 1 in progress
        }
        settle().await;
        let app2 = app.clone();
        let req = tokio::spawn(async move { get(&app2, "/live/show/v1/seg-1.m4s").await });
        settle().await;
        for i in 70..130 {
            publisher.send(frame(i));
        }
        let (status, headers, body) = req.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(headers.get(header::CONTENT_LENGTH).is_none(), "chunked");
        let (_, _, whole) = get(&app, "/live/show/v1/seg-1.m4s").await;
        assert_eq!(body, whole, "the streamed segment equals the finished one");
    }

    #[tokio::test]
    async fn ended_stream_lists_endlist() {
        let (hub, app) = setup();
        let publisher = hub.publish("show").unwrap();
        publisher.send(tracks());
        for i in 0..100 {
            publisher.send(frame(i));
        }
        publisher.finish();
        settle().await;
        let (_, headers, body) = get(&app, "/live/show/v1/index.m3u8").await;
        assert!(String::from_utf8(body.to_vec())
            .unwrap()
            .ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(headers[header::CACHE_CONTROL], ENDED_PLAYLIST_CACHE);
    }

    #[tokio::test]
    async fn protected_stream_serves_only_encrypted_variants() {
        use crate::protect::{DashMode, DrmPolicy, HlsMode, Protection};
        let dir = std::env::temp_dir().join(format!("vela-origin-keys-{}", std::process::id()));
        let keys = vela_drm::KeyStore::open(&dir, None).unwrap();
        let policy = DrmPolicy {
            hls: HlsMode::Aes128,
            dash: DashMode::Cenc,
            mss_protected: false,
        };
        let hub = StreamHub::new(4096, Duration::from_secs(1));
        let live = LiveRegistry::attach(&hub, StdArc::new(|_: &str| PackagerConfig::default()));
        let mut state = OriginState::new(live);
        state.protection = Some(StdArc::new(Protection::new(
            keys,
            StdArc::new(move |_: &str| policy),
        )));
        let app = router(state);
        let publisher = hub.publish("show").unwrap();
        publisher.send(tracks());
        for i in 0..200 {
            publisher.send(frame(i));
        }
        settle().await;

        // Every format is protected: no clear media at all.
        assert_eq!(
            get(&app, "/live/show/v1/seg-0.m4s").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&app, "/live/show/v1/part-0.0.m4s").await.0,
            StatusCode::NOT_FOUND
        );
        // ... but the clear init that the AES-128 playlist names (no media in it).
        assert_eq!(
            get(&app, "/live/show/v1/init-0.mp4").await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(&app, "/live/show/Manifest").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&app, "/live/show/v1/seg-0.cbcs.m4s").await.0,
            StatusCode::NOT_FOUND,
            "not this stream's scheme"
        );

        // HLS AES-128.
        let (_, _, body) = get(&app, "/live/show/v1/index.m3u8").await;
        let text = String::from_utf8(body.to_vec()).unwrap();
        let key_line = text
            .lines()
            .find(|l| l.starts_with("#EXT-X-KEY:METHOD=AES-128,URI="))
            .expect(&text);
        assert!(text.contains("seg-0.aes.m4s"));
        let uri = key_line.split('"').nth(1).unwrap();
        let (status, headers, key) = get(&app, uri).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(key.len(), 16);
        assert_eq!(headers[header::CACHE_CONTROL], "private, no-store");
        let (status, _, enc) = get(&app, "/live/show/v1/seg-0.aes.m4s").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(enc.len() % 16, 0);
        // Decrypt independently (AES-128-CBC, IV = the sequence number 0, PKCS#7).
        let key: [u8; 16] = key[..].try_into().unwrap();
        let clear =
            vela_drm::crypt::aes128_cbc_pkcs7_decrypt(&key, &[0u8; 16], &enc).expect("decrypts");
        assert_eq!(&clear[4..8], b"moof");

        // DASH cenc.
        let (_, _, body) = get(&app, "/live/show/manifest.mpd").await;
        let mpd = String::from_utf8(body.to_vec()).unwrap();
        assert!(mpd.contains("cenc:default_KID=\""), "{mpd}");
        assert!(mpd.contains("seg-$Number$.cenc.m4s"));
        let (status, _, init) = get(&app, "/live/show/v1/init-0.cenc.mp4").await;
        assert_eq!(status, StatusCode::OK);
        assert!(init.windows(4).any(|w| w == b"encv") && init.windows(4).any(|w| w == b"pssh"));
        let (_, _, seg) = get(&app, "/live/show/v1/seg-0.cenc.m4s").await;
        let (_, _, p0) = get(&app, "/live/show/v1/part-0.0.cenc.m4s").await;
        assert!(
            seg.starts_with(&p0),
            "an encrypted segment is its encrypted parts"
        );
        assert!(p0.windows(4).any(|w| w == b"senc"));

        // ClearKey licence for the video key id.
        let kid_uuid = mpd
            .split("cenc:default_KID=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let kid = crate::protect::parse_kid(kid_uuid).unwrap();
        let b64 = vela_drm::clearkey::b64url(&kid);
        let req = HttpRequest::post("/drm/clearkey/license")
            .body(Body::from(format!(
                "{{\"kids\":[\"{b64}\"],\"type\":\"temporary\"}}"
            )))
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let json = res.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&json).contains(&b64));
        let bad = HttpRequest::post("/drm/clearkey/license")
            .body(Body::from("{nope"))
            .unwrap();
        let res = app.clone().oneshot(bad).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn parses_file_names_and_directives() {
        assert_eq!(parse_file("seg-12.m4s"), Some((FileId::Segment(12), None)));
        assert_eq!(
            parse_file("part-12.3.m4s"),
            Some((FileId::Part(12, 3), None))
        );
        assert_eq!(parse_file("init-0.mp4"), Some((FileId::Init(0, 0), None)));
        assert_eq!(
            parse_file("init-2.k17.cenc.mp4"),
            Some((FileId::Init(2, 17), Some("cenc")))
        );
        // A key period names only a protected init.
        assert_eq!(parse_file("init-2.k17.mp4"), None);
        assert_eq!(parse_file("init-2.kx.cenc.mp4"), None);
        assert_eq!(
            parse_file("seg-12.cenc.m4s"),
            Some((FileId::Segment(12), Some("cenc")))
        );
        assert_eq!(
            parse_file("part-12.3.aes.m4s"),
            Some((FileId::Part(12, 3), Some("aes")))
        );
        assert_eq!(
            parse_file("init-1.cbcs.mp4"),
            Some((FileId::Init(1, 0), Some("cbcs")))
        );
        assert_eq!(parse_file("seg-12.xyz.m4s"), None);
        assert_eq!(parse_file("seg-x.m4s"), None);
        assert_eq!(parse_file("../../etc/passwd"), None);
        assert_eq!(
            directives(Some("_HLS_msn=5&_HLS_part=2&_HLS_skip=YES&token=abc")).unwrap(),
            Directives {
                msn: Some(5),
                part: Some(2),
                skip: true
            }
        );
        assert!(directives(Some("_HLS_msn=-1")).is_err());
    }
}
