//! Glue between the control plane and the media side: publish authorisation
//! for the RTMP ingest, live/offline status, and per-entry packaging settings.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use vela_control_plane::auth::TokenError;
use vela_control_plane::ControlPlane;
use vela_ingest::{is_valid_open_key, PublishAuthorizer, Refusal};
use vela_origin::access::{Denied, PlaybackGate};
use vela_origin::protect::DrmPolicy;

/// Per-stream settings learnt at publish time from a live entry (DVR
/// window, DRM policy), read synchronously by the media side.
#[derive(Clone, Default)]
pub struct EntrySettings(Arc<RwLock<HashMap<String, EntryMedia>>>);

#[derive(Clone, Copy, Default)]
struct EntryMedia {
    dvr_window_s: Option<f64>,
    drm: Option<DrmPolicy>,
}

impl EntrySettings {
    pub fn dvr_window(&self, stream: &str) -> Option<f64> {
        self.get(stream).and_then(|m| m.dvr_window_s)
    }

    pub fn drm(&self, stream: &str) -> Option<DrmPolicy> {
        self.get(stream).and_then(|m| m.drm)
    }

    fn get(&self, stream: &str) -> Option<EntryMedia> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
            .copied()
    }

    fn set(&self, stream: &str, media: EntryMedia) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream.to_string(), media);
    }
}

/// The ingest's authoriser, answered by the control plane: open mode while
/// no live entries exist (or as configured), key mode otherwise.
pub struct ControlPlaneAuthorizer {
    pub cp: ControlPlane,
    pub settings: EntrySettings,
}

impl PublishAuthorizer for ControlPlaneAuthorizer {
    fn authorize(
        &self,
        app: &str,
        stream_key: &str,
    ) -> Pin<Box<dyn Future<Output = Result<String, Refusal>> + Send + '_>> {
        let app = app.to_string();
        let key = stream_key.to_string();
        Box::pin(async move {
            let grant = self
                .cp
                .authorize_publish(&app, &key)
                .await
                .map_err(|r| Refusal::new(r.reason(), r.to_string()))?;
            match &grant.entry_id {
                Some(id) => {
                    let entry = self.cp.entry(id).await.map_err(|e| {
                        tracing::error!(error = %e, "cannot read the live entry");
                        Refusal::new("unavailable", "control plane unavailable")
                    })?;
                    if let Some(entry) = entry {
                        let w = entry.dvr_window_s as f64;
                        // An entry's DRM policy must be applied, never
                        // dropped: a value we cannot apply refuses the publish.
                        let drm = DrmPolicy::parse(&entry.drm.hls, &entry.drm.dash, &entry.drm.mss)
                            .ok_or_else(|| {
                                Refusal::new("drm", "the entry's DRM policy is not supported")
                            })?;
                        self.settings.set(
                            &grant.stream_name,
                            EntryMedia {
                                dvr_window_s: (4.0..=86_400.0).contains(&w).then_some(w),
                                drm: Some(drm),
                            },
                        );
                    }
                }
                None => {
                    // Open mode: the key becomes a URL path segment.
                    if app != "live" {
                        return Err(Refusal::new(
                            "app",
                            format!("application {app:?} is not served"),
                        ));
                    }
                    if !is_valid_open_key(&key) {
                        return Err(Refusal::new(
                            "bad_key",
                            "stream keys are 1-128 characters of A-Z a-z 0-9 _ . -",
                        ));
                    }
                }
            }
            Ok(grant.stream_name)
        })
    }

    fn publish_started(&self, name: &str) {
        let cp = self.cp.clone();
        let name = name.to_string();
        tokio::spawn(async move { cp.publish_started(&name).await });
    }

    fn publish_stopped(&self, name: &str) {
        let cp = self.cp.clone();
        let name = name.to_string();
        tokio::spawn(async move { cp.publish_stopped(&name).await });
    }
}

/// Playback authorisation from the configuration (which streams need a
/// token) and the control plane's key (whether a token is good).
pub struct TokenGate {
    pub cp: ControlPlane,
    /// `[playback] require_token`.
    pub default: bool,
    /// `[live.streams.NAME] require_token`.
    pub streams: HashMap<String, bool>,
}

impl PlaybackGate for TokenGate {
    fn requires_token(&self, stream: &str) -> bool {
        self.streams.get(stream).copied().unwrap_or(self.default)
    }

    fn verify(&self, stream: &str, token: &str, now_s: i64) -> Result<(), Denied> {
        match self.cp.verify_playback_token(token, stream, now_s) {
            Ok(_) => Ok(()),
            Err(TokenError::Expired) => Err(Denied::Expired),
            Err(TokenError::Malformed) => Err(Denied::Malformed),
            Err(TokenError::BadSignature) => Err(Denied::Invalid),
        }
    }
}
