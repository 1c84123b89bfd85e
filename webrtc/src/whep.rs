//! WHEP (the WebRTC-HTTP egress protocol draft) over HTTP:
//! `POST /whep/STREAM` with an SDP offer plays any live stream (RTMP or WHIP
//! sourced) as WebRTC: `201 Created` with the answer, `Location`
//! (`/whep/session/ID`), `ETag`, ICE server `Link`s; `DELETE` and trickle
//! `PATCH` on the session work as for WHIP. An unknown or ended stream
//! answers 404; an offer without H.264 video 406.
//!
//! The video is forwarded without re-encoding ([`crate::play`]); each viewer
//! has its own subscription to the hub and its own send state, so a slow
//! viewer skips to the next keyframe without slowing the others.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::Router;
use http::header::{CONTENT_TYPE, ETAG, LOCATION};
use http::{HeaderMap, HeaderValue, StatusCode};
use str0m::change::SdpOffer;
use tracing::info;

use crate::metrics;
use crate::server::{Command, CreateError};
use crate::whip::{
    content_type_is, delete_session, patch_session, WhipError, WhipState, MAX_OFFER,
};

/// The WHEP routes, to merge into the HTTP router.
pub fn router(state: WhipState) -> Router {
    Router::new()
        .route("/whep/{stream}", post(play))
        .route(
            "/whep/session/{id}",
            patch(patch_session).delete(delete_session),
        )
        .layer(DefaultBodyLimit::max(MAX_OFFER))
        .with_state(state)
}

async fn play(
    State(st): State<WhipState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhipError> {
    if !content_type_is(&headers, "application/sdp") {
        metrics::REQUESTS_REFUSED
            .with_label_values(&["content_type"])
            .inc();
        return Err(WhipError::ContentType);
    }
    let rtc = &st.rtc;
    // Subscribed before the offer is parsed: a viewer of nothing costs nothing more.
    let Some(events) = rtc
        .hub
        .subscribe(&stream)
        .filter(|_| rtc.hub.is_publishing(&stream))
    else {
        metrics::REQUESTS_REFUSED
            .with_label_values(&["no_stream"])
            .inc();
        return Err(WhipError::NoStream);
    };
    let sdp = std::str::from_utf8(&body).map_err(|_| WhipError::BadSdp("not UTF-8".into()))?;
    let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| {
        metrics::REQUESTS_REFUSED
            .with_label_values(&["bad_sdp"])
            .inc();
        WhipError::BadSdp(e.to_string())
    })?;
    let tracks = (st.tracks_of)(&stream);
    let created = rtc
        .call(|reply| Command::Play {
            offer,
            stream: stream.clone(),
            tracks,
            events,
            reply,
        })
        .await
        .unwrap_or(Err(CreateError::Stopping))?;
    info!(stream = %stream, session = %created.id, "WHEP viewer accepted");
    let mut res = (
        StatusCode::CREATED,
        [(CONTENT_TYPE, "application/sdp")],
        created.answer,
    )
        .into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/whep/session/{}", created.id)) {
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
