//! `[webrtc]` settings and the WebRTC (WHIP) listener's start-up.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use vela_webrtc::{WebRtcConfig, WebRtcLimits};

use crate::config::ConfigError;

/// `[webrtc]`: ICE servers advertised to WHIP clients, and session limits.
/// The UDP address is `[listen] webrtc`, the advertised IP `[listen] webrtc_public`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcSettings {
    /// STUN/TURN URLs sent as `Link: <URL>; rel="ice-server"` in WHIP answers.
    pub ice_servers: Vec<String>,
    /// Open sessions in total.
    pub max_sessions: usize,
    /// Sessions still doing ICE/DTLS (the unauthenticated budget).
    pub max_connecting: usize,
    /// From the SDP answer to a connected DTLS session.
    pub ice_timeout_s: f64,
    /// A connected publisher that sends no media for this long is dropped.
    pub media_timeout_s: f64,
}

impl Default for WebRtcSettings {
    fn default() -> Self {
        let l = WebRtcLimits::default();
        WebRtcSettings {
            ice_servers: Vec::new(),
            max_sessions: l.max_sessions,
            max_connecting: l.max_connecting,
            ice_timeout_s: l.ice_timeout.as_secs_f64(),
            media_timeout_s: l.media_timeout.as_secs_f64(),
        }
    }
}

impl WebRtcSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("ice_timeout_s", self.ice_timeout_s),
            ("media_timeout_s", self.media_timeout_s),
        ] {
            if !(v.is_finite() && (1.0..=3600.0).contains(&v)) {
                return Err(ConfigError::Invalid(format!(
                    "webrtc.{name} = {v} is outside 1..=3600"
                )));
            }
        }
        for (name, v) in [
            ("max_sessions", self.max_sessions),
            ("max_connecting", self.max_connecting),
        ] {
            if !(1..=1_000_000).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "webrtc.{name} = {v} is outside 1..=1000000"
                )));
            }
        }
        for url in &self.ice_servers {
            if vela_webrtc::whip::ice_link(url).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "webrtc.ice_servers: {url:?} is not a stun:, turn: or turns: URL"
                )));
            }
        }
        Ok(())
    }

    /// The listener's configuration.
    pub fn config(
        &self,
        bind: SocketAddr,
        public_ip: Option<IpAddr>,
        segment_target: vela_webrtc::server::SegmentTarget,
    ) -> WebRtcConfig {
        WebRtcConfig {
            bind,
            public_ip,
            segment_target,
            limits: WebRtcLimits {
                max_sessions: self.max_sessions,
                max_connecting: self.max_connecting,
                ice_timeout: Duration::from_secs_f64(self.ice_timeout_s),
                media_timeout: Duration::from_secs_f64(self.media_timeout_s),
            },
        }
    }

    /// The `Link` header values of the ICE servers.
    pub fn ice_links(&self) -> Arc<Vec<axum::http::HeaderValue>> {
        Arc::new(
            self.ice_servers
                .iter()
                .filter_map(|u| vela_webrtc::whip::ice_link(u))
                .collect(),
        )
    }
}

/// `[listen] webrtc_public`: an IP address.
pub fn parse_public_ip(value: &str) -> Result<IpAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::Invalid(format!(
            "listen.webrtc_public: {value:?} is not an IP address"
        ))
    })
}
