//! The embed player: `/embed/ENTRY` is a page that plays a live entry while
//! it is live and its recording (`recorded_entry_id`) once that is ready, or
//! a media entry; `/embed/ENTRY/state.json` tells the page what to play now
//! (it polls it to switch from live to the recording). hls.js plays by
//! default; Shaka (DASH with ClearKey) when the entry's DRM needs it. The
//! analytics plugin reports the playback.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::html_escape;
use crate::api::{Entry, EntryType};
use crate::{ApiError, ControlPlane};

/// What the embed page should play now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EmbedState {
    /// `live`, `vod`, `offline` (nothing to play yet) or `error`.
    pub mode: &'static str,
    /// The entry played (the recording's id once live has ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub play_entry: Option<String>,
    /// HLS URL (hls.js) or DASH URL (Shaka).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// `hls.js` or `shaka`.
    pub player: &'static str,
    pub name: String,
}

fn playable(e: &Entry, live: bool) -> EmbedState {
    // Shaka for what hls.js cannot decrypt: SAMPLE-AES, or DASH-only DRM.
    let shaka = e.drm.hls == "sample-aes" || (e.drm.hls == "none" && e.drm.dash != "none");
    let base = if live { "live" } else { "vod" };
    let src = if shaka {
        format!("/{base}/{}/manifest.mpd", e.id)
    } else {
        format!("/{base}/{}/master.m3u8", e.id)
    };
    EmbedState {
        mode: if live { "live" } else { "vod" },
        play_entry: Some(e.id.clone()),
        src: Some(src),
        player: if shaka { "shaka" } else { "hls.js" },
        name: e.name.clone(),
    }
}

fn idle(e: &Entry, mode: &'static str) -> EmbedState {
    EmbedState {
        mode,
        play_entry: None,
        src: None,
        player: "hls.js",
        name: e.name.clone(),
    }
}

/// Decides what to play for `entry` (sans I/O: the recording is passed in).
pub fn decide(entry: &Entry, recording: Option<&Entry>) -> EmbedState {
    match entry.kind {
        EntryType::Live if entry.status == "live" => playable(entry, true),
        EntryType::Live => match recording {
            Some(r) if r.status == "ready" => {
                let mut s = playable(r, false);
                s.name = entry.name.clone();
                s
            }
            _ => idle(entry, "offline"),
        },
        EntryType::Media => match entry.status.as_str() {
            "ready" => playable(entry, false),
            "error" => idle(entry, "error"),
            _ => idle(entry, "offline"),
        },
    }
}

async fn state_of(cp: &ControlPlane, id: &str) -> Result<EmbedState, ApiError> {
    let e = cp.entry(id).await?.ok_or(ApiError::NotFound("entry"))?;
    let rec = match (&e.kind, &e.recorded_entry_id) {
        (EntryType::Live, Some(r)) if e.status != "live" => cp.entry(r).await?,
        _ => None,
    };
    Ok(decide(&e, rec.as_ref()))
}

async fn state_json(State(cp): State<ControlPlane>, Path(id): Path<String>) -> Response {
    match state_of(&cp, &id).await {
        Ok(s) => ([(header::CACHE_CONTROL, "no-store")], Json(s)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Framable anywhere (that is the point of an embed); scripts from here only.
const EMBED_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; \
    base-uri 'none'; form-action 'none'";

async fn page(State(cp): State<ControlPlane>, Path(id): Path<String>) -> Response {
    let e = match cp.entry(&id).await {
        Ok(Some(e)) => e,
        Ok(None) => return ApiError::NotFound("entry").into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    // The id is checked (`0_` and lowercase alphanumerics); the name escaped.
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{name}</title><link rel=\"stylesheet\" href=\"/assets/embed.css\">\
         <script src=\"/assets/hls.min.js\"></script>\
         <script src=\"/sdk/vela-analytics.js\"></script>\
         <script src=\"/assets/embed.js\" defer></script></head>\
         <body><video id=\"player\" controls playsinline data-entry=\"{id}\"></video>\
         <div id=\"message\" hidden></div></body></html>\n",
        name = html_escape(&e.name),
        id = html_escape(&e.id),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, EMBED_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

pub fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/embed/{id}", get(page))
        .route("/embed/{id}/state.json", get(state_json))
        .with_state(cp)
}
