//! WHIP (RFC 9725) over HTTP: the resource URLs of INTERFACE.md.
//!
//! - `POST /whip/STREAM_KEY`, or `POST /whip` with `Authorization: Bearer
//!   STREAM_KEY`, `Content-Type: application/sdp`: the key is authorised
//!   exactly as an RTMP publish (open or key mode, the same
//!   [`PublishAuthorizer`] and refusal metrics), the stream is claimed in the
//!   hub, and the driver answers. `201 Created` with the SDP answer, a
//!   `Location` of the session resource, its `ETag` (the ICE session) and
//!   one `Link: <URL>; rel="ice-server"` per configured ICE server.
//! - `DELETE` on the session ends the publish cleanly.
//! - `PATCH` on the session with `application/trickle-ice-sdpfrag` adds the
//!   publisher's trickled candidates (`204`); `If-Match` must name the
//!   current ICE session (`412` otherwise). An ICE restart (`If-Match: *`
//!   with new credentials) is not supported and answers `422`, as the RFC
//!   asks of servers that do trickle ICE only.
//! - `OPTIONS` (CORS pre-flight) is answered for every path by the origin's
//!   CORS layer, which lets browsers send `Authorization`, `If-Match` and read
//!   `Location`, `ETag` and `Link`.
//!
//! Refusals cost only the request: nothing is allocated for a session until
//! the key is authorised and the offer parsed, the body is capped at
//! [`MAX_OFFER`], and the driver caps connecting sessions.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::Router;
use http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use str0m::change::SdpOffer;
use tracing::{info, warn};
use vela_media::hub::PublishError;

use crate::server::{Command, CreateError, PatchOutcome, WebRtcHandle};
use crate::{metrics, sdpfrag};

/// Largest SDP offer or fragment accepted (browsers send 5-10 KiB).
pub const MAX_OFFER: usize = 64 * 1024;
/// Longest wait for the publish authoriser (as for RTMP).
const AUTHORIZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state of the WHIP routes.
#[derive(Clone)]
pub struct WhipState {
    pub rtc: WebRtcHandle,
    /// `Link` header values, one per configured ICE server.
    pub ice_links: Arc<Vec<HeaderValue>>,
    /// A live stream's current tracks (a WHEP viewer joins after they were announced).
    pub tracks_of: TracksOf,
}

/// The current track set of a live stream, by name.
pub type TracksOf = Arc<dyn Fn(&str) -> Option<Vec<vela_media::Track>> + Send + Sync>;

/// The WHIP routes, to merge into the HTTP router.
pub fn router(state: WhipState) -> Router {
    Router::new()
        .route("/whip", post(publish_bearer))
        .route("/whip/{key}", post(publish_path))
        .route(
            "/whip/session/{id}",
            patch(patch_session).delete(delete_session),
        )
        .layer(DefaultBodyLimit::max(MAX_OFFER))
        .with_state(state)
}

/// The `Link` value of an ICE server URL (`stun:`/`turn:`/`turns:`).
pub fn ice_link(url: &str) -> Option<HeaderValue> {
    let ok = ["stun:", "turn:", "turns:"]
        .iter()
        .any(|p| url.starts_with(p))
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'>' && b != b'<');
    ok.then(|| HeaderValue::from_str(&format!("<{url}>; rel=\"ice-server\"")).ok())
        .flatten()
}

/// Errors of the WHIP resource, answered in the JSON error shape.
#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    #[error("the body must be an SDP offer (Content-Type: application/sdp)")]
    ContentType,
    #[error("a stream key is needed: POST /whip/KEY or Authorization: Bearer KEY")]
    NoKey,
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the SDP offer is malformed: {0}")]
    BadSdp(String),
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error("no such WebRTC session")]
    NoSession,
    #[error("no such live stream")]
    NoStream,
    #[error("If-Match does not name the current ICE session")]
    Precondition,
    #[error("ICE restarts are not supported; start a new session")]
    NoIceRestart,
    #[error("the body must be a trickle ICE fragment (Content-Type: application/trickle-ice-sdpfrag): {0}")]
    BadFragment(String),
    #[error("the publish could not be authorised in time")]
    Unavailable,
}

impl IntoResponse for WhipError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            WhipError::ContentType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            WhipError::NoKey | WhipError::Unauthorized(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            WhipError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            WhipError::BadSdp(_) | WhipError::Create(CreateError::Offer(_)) => {
                (StatusCode::BAD_REQUEST, "bad_sdp")
            }
            WhipError::Create(CreateError::NoCodec(_)) => {
                (StatusCode::NOT_ACCEPTABLE, "no_usable_codec")
            }
            WhipError::Create(CreateError::Busy) | WhipError::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            WhipError::Create(CreateError::Stopping) => {
                (StatusCode::SERVICE_UNAVAILABLE, "stopping")
            }
            WhipError::NoSession | WhipError::NoStream => (StatusCode::NOT_FOUND, "not_found"),
            WhipError::Create(CreateError::Unplayable(_)) => {
                (StatusCode::NOT_ACCEPTABLE, "unplayable")
            }
            WhipError::Precondition => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            WhipError::NoIceRestart => {
                (StatusCode::UNPROCESSABLE_ENTITY, "ice_restart_unsupported")
            }
            WhipError::BadFragment(_) => (StatusCode::BAD_REQUEST, "bad_fragment"),
        };
        let mut res = (
            status,
            [(CONTENT_TYPE, "application/json")],
            vela_net::json_errors::body(code, &self.to_string()),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        res
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

pub(crate) fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

async fn publish_bearer(
    State(st): State<WhipState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhipError> {
    let key = bearer(&headers).ok_or_else(|| {
        metrics::REQUESTS_REFUSED
            .with_label_values(&["no_key"])
            .inc();
        WhipError::NoKey
    })?;
    publish(st, key, headers, body).await
}

async fn publish_path(
    State(st): State<WhipState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhipError> {
    publish(st, key, headers, body).await
}

async fn publish(
    st: WhipState,
    key: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhipError> {
    if !content_type_is(&headers, "application/sdp") {
        metrics::REQUESTS_REFUSED
            .with_label_values(&["content_type"])
            .inc();
        return Err(WhipError::ContentType);
    }
    let sdp = std::str::from_utf8(&body).map_err(|_| {
        metrics::REQUESTS_REFUSED
            .with_label_values(&["bad_sdp"])
            .inc();
        WhipError::BadSdp("not UTF-8".into())
    })?;
    let rtc = &st.rtc;
    // Authorise first: an unauthorised offer is never parsed.
    let name = match tokio::time::timeout(AUTHORIZE_TIMEOUT, rtc.authorizer.authorize("live", &key))
        .await
    {
        Ok(Ok(name)) => name,
        Ok(Err(refusal)) => {
            vela_ingest::metrics::PUBLISH_REFUSED
                .with_label_values(&[refusal.reason])
                .inc();
            warn!(key = %vela_ingest::session::redact(&key), reason = refusal.reason, "WHIP publish refused: {}", refusal.message);
            return Err(match refusal.reason {
                "bad_key" | "unknown_key" | "no_key" => WhipError::Unauthorized(refusal.message),
                "unavailable" => WhipError::Unavailable,
                _ => WhipError::Forbidden(refusal.message),
            });
        }
        Err(_) => {
            vela_ingest::metrics::PUBLISH_REFUSED
                .with_label_values(&["authorizer_timeout"])
                .inc();
            return Err(WhipError::Unavailable);
        }
    };
    let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| {
        metrics::REQUESTS_REFUSED
            .with_label_values(&["bad_sdp"])
            .inc();
        WhipError::BadSdp(e.to_string())
    })?;
    let publisher = match rtc.hub.publish(&name) {
        Ok(p) => p,
        Err(PublishError::AlreadyPublishing(n)) => {
            vela_ingest::metrics::PUBLISH_REFUSED
                .with_label_values(&["already_publishing"])
                .inc();
            warn!(stream = %n, "WHIP publish refused: the stream already has a publisher");
            return Err(WhipError::Forbidden(format!(
                "stream {n:?} already has a publisher"
            )));
        }
    };
    vela_ingest::metrics::PUBLISHERS.inc();
    rtc.authorizer.publish_started(&name);
    let created = rtc
        .call(|reply| Command::Publish {
            offer,
            name: name.clone(),
            publisher,
            reply,
        })
        .await;
    let created = match created {
        Some(Ok(c)) => c,
        other => {
            // The driver finished (or dropped) the publisher.
            vela_ingest::metrics::PUBLISHERS.dec();
            rtc.authorizer.publish_stopped(&name);
            return Err(match other {
                Some(Err(e)) => e.into(),
                _ => CreateError::Stopping.into(),
            });
        }
    };
    info!(stream = %name, session = %created.id, "WHIP publish accepted");
    let mut res = (
        StatusCode::CREATED,
        [(CONTENT_TYPE, "application/sdp")],
        created.answer,
    )
        .into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/whip/session/{}", created.id)) {
        h.insert(LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", created.etag)) {
        h.insert(ETAG, v);
    }
    for link in st.ice_links.iter() {
        h.append(http::header::LINK, link.clone());
    }
    Ok(res)
}

pub(crate) async fn delete_session(
    State(st): State<WhipState>,
    Path(id): Path<String>,
) -> Result<Response, WhipError> {
    match st.rtc.call(|reply| Command::Delete { id, reply }).await {
        Some(true) => Ok(StatusCode::OK.into_response()),
        _ => Err(WhipError::NoSession),
    }
}

pub(crate) async fn patch_session(
    State(st): State<WhipState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhipError> {
    if !content_type_is(&headers, "application/trickle-ice-sdpfrag") {
        return Err(WhipError::BadFragment("wrong content type".into()));
    }
    let text =
        std::str::from_utf8(&body).map_err(|_| WhipError::BadFragment("not UTF-8".into()))?;
    let frag = sdpfrag::parse(text).map_err(|e| WhipError::BadFragment(e.to_string()))?;
    let if_match = headers
        .get(IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"').to_string());
    if if_match.as_deref() == Some("*") {
        return Err(WhipError::NoIceRestart);
    }
    let outcome = st
        .rtc
        .call(|reply| Command::Trickle {
            id,
            etag: if_match,
            candidates: frag.candidates,
            reply,
        })
        .await;
    match outcome {
        Some(PatchOutcome::Applied) => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(PatchOutcome::Mismatch) => Err(WhipError::Precondition),
        _ => Err(WhipError::NoSession),
    }
}
