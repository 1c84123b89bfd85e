//! `vela serve` configuration: defaults, then the TOML file, then flags.
//!
//! Unknown keys are errors, so a typo in a config file is reported instead
//! of silently ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The TOML file's shape. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    #[serde(default)]
    pub listen: ListenConfig,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub live: LiveConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub drm: Option<DrmConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Base URLs written into API responses (publish and playback URLs).
    #[serde(default)]
    pub public: PublicConfig,
    #[serde(default)]
    pub playback: PlaybackConfig,
    #[serde(default)]
    pub vod: VodConfig,
    #[serde(default)]
    pub storage: crate::recording::StorageConfig,
    #[serde(default)]
    pub recording: crate::recording::RecordingSettings,
    /// Origin cluster membership (docs/cluster.md); absent: a single node.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterSettings>,
    /// Batch job workers (docs/jobs.md).
    #[serde(default)]
    pub jobs: crate::worker::JobsSettings,
    /// Requests a user can aim (imports).
    #[serde(default)]
    pub outbound: crate::worker::OutboundSettings,
    /// Media analytics (docs/analytics.md).
    #[serde(default)]
    pub analytics: crate::analytics::AnalyticsSettings,
    /// WHIP sessions (docs/webrtc.md).
    #[serde(default)]
    pub webrtc: crate::webrtc::WebRtcSettings,
}

/// Stored media (uploads and on-the-fly packaging).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VodConfig {
    /// Target segment duration of stored media, seconds (cut on keyframes).
    #[serde(default = "default_vod_segment")]
    pub segment_target_s: f64,
    /// Largest accepted upload, bytes.
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: u64,
    /// Memory for parsed file indexes, MiB.
    #[serde(default = "default_index_cache")]
    pub index_cache_mb: usize,
    /// Memory for recently built fragments, MiB.
    #[serde(default = "default_fragment_cache")]
    pub fragment_cache_mb: usize,
}

impl Default for VodConfig {
    fn default() -> Self {
        VodConfig {
            segment_target_s: default_vod_segment(),
            max_upload_bytes: default_max_upload(),
            index_cache_mb: default_index_cache(),
            fragment_cache_mb: default_fragment_cache(),
        }
    }
}

impl VodConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1.0..=30.0).contains(&self.segment_target_s) {
            return Err(ConfigError::Invalid(
                "vod.segment_target_s must be between 1 and 30".into(),
            ));
        }
        Ok(())
    }
}

fn default_vod_segment() -> f64 {
    4.0
}

fn default_max_upload() -> u64 {
    50 << 30
}

fn default_index_cache() -> usize {
    64
}

fn default_fragment_cache() -> usize {
    256
}

/// Playback authorisation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybackConfig {
    /// Every stream needs a signed, expiring token (`POST
    /// /api/v1/playback-tokens`); `[live.streams.NAME] require_token`
    /// decides for one stream.
    #[serde(default)]
    pub require_token: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    pub rtmp: Option<String>,
    pub http: Option<String>,
    /// HTTPS listener, or "off"; on by default only with `[tls]`.
    pub https: Option<String>,
    pub h3: Option<String>,
    /// RTMPS listener; needs `[tls]`.
    pub rtmps: Option<String>,
    /// WebRTC (WHIP) UDP port shared by every session, or "off".
    pub webrtc: Option<String>,
    /// The IP address put in WebRTC host candidates (what peers reach).
    pub webrtc_public: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    #[serde(default = "default_segment")]
    pub segment_target_s: f64,
    #[serde(default = "default_part")]
    pub part_target_s: f64,
    #[serde(default = "default_dvr")]
    pub dvr_window_s: f64,
    /// How much of each DVR window stays in memory, seconds (at least four
    /// segment targets); older segments are spooled to `DATA/dvr`.
    #[serde(default = "default_dvr_memory")]
    pub dvr_memory_s: f64,
    /// MiB of recently read spooled segments kept in memory, shared by all
    /// streams (0: every request reads the file).
    #[serde(default = "default_dvr_cache")]
    pub dvr_cache_mib: u32,
    /// How long a vanished publisher's stream waits for it to reconnect.
    #[serde(default = "default_grace")]
    pub reconnect_grace_s: f64,
    /// Target latency announced to DASH players, milliseconds.
    #[serde(default = "default_dash_latency")]
    pub dash_target_latency_ms: u32,
    /// Per-stream overrides, by stream name.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamOverride>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            segment_target_s: default_segment(),
            part_target_s: default_part(),
            dvr_window_s: default_dvr(),
            dvr_memory_s: default_dvr_memory(),
            dvr_cache_mib: default_dvr_cache(),
            reconnect_grace_s: default_grace(),
            dash_target_latency_ms: default_dash_latency(),
            streams: BTreeMap::new(),
        }
    }
}

fn default_segment() -> f64 {
    2.0
}
fn default_part() -> f64 {
    1.0 / 3.0
}
fn default_dvr() -> f64 {
    120.0
}
fn default_dvr_memory() -> f64 {
    12.0
}
fn default_dvr_cache() -> u32 {
    64
}
fn default_grace() -> f64 {
    10.0
}
fn default_dash_latency() -> u32 {
    1500
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOverride {
    pub dvr_window_s: Option<f64>,
    pub segment_target_s: Option<f64>,
    pub part_target_s: Option<f64>,
    /// Overrides `[playback] require_token` for this stream.
    pub require_token: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// Any key publishes while the control plane holds no live entries.
    #[default]
    Auto,
    Open,
    Keys,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub publish: PublishMode,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicConfig {
    pub http_base: Option<String>,
    pub rtmp_base: Option<String>,
}

/// `[drm]`: the open-mode encryption policy (see the DRM issue).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrmConfig {
    pub hls: Option<String>,
    pub dash: Option<String>,
    pub mss: Option<String>,
    /// HLS AES-128 key rotation: a new key every this many segments.
    pub rotate_every: Option<u64>,
}

/// `[limits]`: connection limits and time limits of the listeners. The
/// defaults suit a public server; see README.md's Configuration section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// RTMP and RTMPS connections in total.
    pub max_rtmp_connections: usize,
    /// RTMP connections from one client address (IPv6: one /64).
    pub rtmp_per_address: usize,
    /// RTMP connections that have not published (yet).
    pub rtmp_pre_publish: usize,
    /// From accept (and TLS) to a completed RTMP handshake.
    pub rtmp_handshake_timeout_s: f64,
    /// Longest silence from an RTMP peer.
    pub rtmp_idle_timeout_s: f64,
    /// From accept (or the end of a publish) to an accepted publish.
    pub rtmp_publish_timeout_s: f64,
    /// A publisher that sends no audio or video for this long is closed.
    pub rtmp_media_timeout_s: f64,
    /// HTTP connections in total.
    pub max_http_connections: usize,
    /// HTTP connections from one client address (IPv6: one /64).
    pub http_per_address: usize,
    /// HTTP connections that have not sent a complete first request yet.
    pub http_pre_request: usize,
    /// From accept (or the first byte of a request) to a complete request head.
    pub http_header_timeout_s: f64,
    /// Longest time without progress on an HTTP connection (idle keep-alive,
    /// a peer that does not read, a stalled request).
    pub http_idle_timeout_s: f64,
    /// `Retry-After` seconds of the 503 that refused HTTP connections get.
    pub retry_after_s: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_rtmp_connections: 10_000,
            rtmp_per_address: 64,
            rtmp_pre_publish: 1_000,
            rtmp_handshake_timeout_s: 10.0,
            rtmp_idle_timeout_s: 30.0,
            rtmp_publish_timeout_s: 30.0,
            rtmp_media_timeout_s: 10.0,
            max_http_connections: 20_000,
            http_per_address: 256,
            http_pre_request: 4_096,
            http_header_timeout_s: 10.0,
            http_idle_timeout_s: 30.0,
            retry_after_s: 5,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let secs = [
            ("rtmp_handshake_timeout_s", self.rtmp_handshake_timeout_s),
            ("rtmp_idle_timeout_s", self.rtmp_idle_timeout_s),
            ("rtmp_publish_timeout_s", self.rtmp_publish_timeout_s),
            ("rtmp_media_timeout_s", self.rtmp_media_timeout_s),
            ("http_header_timeout_s", self.http_header_timeout_s),
            ("http_idle_timeout_s", self.http_idle_timeout_s),
        ];
        for (name, v) in secs {
            if !(v.is_finite() && (0.1..=86_400.0).contains(&v)) {
                return Err(ConfigError::Invalid(format!(
                    "limits.{name} = {v} is outside 0.1..=86400"
                )));
            }
        }
        let counts = [
            ("max_rtmp_connections", self.max_rtmp_connections),
            ("rtmp_per_address", self.rtmp_per_address),
            ("rtmp_pre_publish", self.rtmp_pre_publish),
            ("max_http_connections", self.max_http_connections),
            ("http_per_address", self.http_per_address),
            ("http_pre_request", self.http_pre_request),
        ];
        for (name, v) in counts {
            if !(1..=10_000_000).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "limits.{name} = {v} is outside 1..=10000000"
                )));
            }
        }
        Ok(())
    }

    pub fn secs(v: f64) -> std::time::Duration {
        std::time::Duration::from_secs_f64(v)
    }
}

/// A configuration problem, reported in one line and exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{what}: {value:?} is not a socket address (HOST:PORT)")]
    Address { what: &'static str, value: String },
    #[error("{0}")]
    Invalid(String),
}

pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        // toml's message spans lines; keep the error to one.
        message: e.message().replace('\n', " "),
    })
}

pub fn parse_addr(what: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Address {
        what,
        value: value.to_string(),
    })
}

impl LiveConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |name: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!(
                    "live.{name} = {v} is outside {lo}..={hi}"
                )))
            }
        };
        check("segment_target_s", self.segment_target_s, 0.5, 30.0)?;
        check("part_target_s", self.part_target_s, 0.1, 5.0)?;
        check("dvr_window_s", self.dvr_window_s, 4.0, 86_400.0)?;
        check("dvr_memory_s", self.dvr_memory_s, 2.0, 3600.0)?;
        check(
            "dvr_cache_mib",
            f64::from(self.dvr_cache_mib),
            0.0,
            65_536.0,
        )?;
        check("reconnect_grace_s", self.reconnect_grace_s, 0.0, 600.0)?;
        if self.part_target_s > self.segment_target_s {
            return Err(ConfigError::Invalid(
                "live.part_target_s must not exceed live.segment_target_s".into(),
            ));
        }
        for (name, o) in &self.streams {
            if let Some(v) = o.dvr_window_s {
                check(&format!("streams.{name}.dvr_window_s"), v, 4.0, 86_400.0)?;
            }
            if let Some(v) = o.segment_target_s {
                check(&format!("streams.{name}.segment_target_s"), v, 0.5, 30.0)?;
            }
            if let Some(v) = o.part_target_s {
                check(&format!("streams.{name}.part_target_s"), v, 0.1, 5.0)?;
            }
        }
        Ok(())
    }

    /// The packager settings of one stream.
    pub fn for_stream(&self, name: &str) -> vela_packager::PackagerConfig {
        let o = self.streams.get(name).cloned().unwrap_or_default();
        vela_packager::PackagerConfig {
            segment_target: o.segment_target_s.unwrap_or(self.segment_target_s),
            part_target: o.part_target_s.unwrap_or(self.part_target_s),
            dvr_window: o.dvr_window_s.unwrap_or(self.dvr_window_s),
            dvr_memory: self.dvr_memory_s,
        }
    }
}

impl DrmConfig {
    /// The open-mode policy these values describe.
    pub fn policy(&self) -> Result<vela_origin::protect::DrmPolicy, ConfigError> {
        let v = |o: &Option<String>| o.clone().unwrap_or_else(|| "none".to_string());
        let (hls, dash, mss) = (v(&self.hls), v(&self.dash), v(&self.mss));
        let policy = vela_origin::protect::DrmPolicy::parse(&hls, &dash, &mss).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "drm: hls = {hls:?}, dash = {dash:?}, mss = {mss:?}: expected hls none|aes-128|sample-aes, dash none|cenc|cbcs, mss none|cenc"
            ))
        })?;
        if self.rotate_every == Some(0) {
            return Err(ConfigError::Invalid(
                "drm.rotate_every must be at least 1".into(),
            ));
        }
        Ok(policy)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.policy().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let c: FileConfig = toml::from_str(
            r#"
            data = "/tmp/x"
            [listen]
            rtmp = "127.0.0.1:1935"
            h3 = "off"
            [live]
            dvr_window_s = 300
            dvr_memory_s = 20
            dvr_cache_mib = 8
            [live.streams.show]
            dvr_window_s = 30
            [auth]
            publish = "keys"
            "#,
        )
        .unwrap();
        assert_eq!(c.auth.publish, PublishMode::Keys);
        assert_eq!(c.live.for_stream("show").dvr_window, 30.0);
        assert_eq!(c.live.for_stream("other").dvr_window, 300.0);
        assert_eq!(c.live.for_stream("show").dvr_memory, 20.0);
        assert_eq!(c.live.dvr_cache_mib, 8);
        assert_eq!(LiveConfig::default().dvr_cache_mib, 64);
        c.live.validate().unwrap();
    }

    #[test]
    fn limits_defaults_overrides_and_ranges() {
        let c: FileConfig = toml::from_str("").unwrap();
        assert_eq!(c.limits.max_http_connections, 20_000);
        assert_eq!(c.limits.rtmp_media_timeout_s, 10.0);
        c.limits.validate().unwrap();
        let c: FileConfig =
            toml::from_str("[limits]\nhttp_idle_timeout_s = 2\nmax_rtmp_connections = 5").unwrap();
        assert_eq!(c.limits.http_idle_timeout_s, 2.0);
        assert_eq!(c.limits.max_rtmp_connections, 5);
        assert_eq!(c.limits.http_per_address, 256);
        assert!(toml::from_str::<FileConfig>("[limits]\nhttp_idle_timeot_s = 2").is_err());
        let c: FileConfig = toml::from_str("[limits]\nhttp_per_address = 0").unwrap();
        assert!(c.limits.validate().is_err());
        let c: FileConfig = toml::from_str("[limits]\nrtmp_media_timeout_s = 0").unwrap();
        assert!(c.limits.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("[live]\ndvr_windw_s = 3").is_err());
    }

    #[test]
    fn out_of_range_values_are_errors() {
        let c: FileConfig = toml::from_str("[live]\npart_target_s = 0.01").unwrap();
        assert!(c.live.validate().is_err());
        for bad in ["1", "3601", "nan"] {
            let c: FileConfig = toml::from_str(&format!("[live]\ndvr_memory_s = {bad}")).unwrap();
            assert!(c.live.validate().is_err(), "dvr_memory_s = {bad}");
        }
        let c: FileConfig = toml::from_str("").unwrap();
        assert_eq!(c.live.dvr_memory_s, 12.0);
    }

    #[test]
    fn drm_policy_values() {
        use vela_origin::protect::{DashMode, HlsMode};
        let c: FileConfig = toml::from_str("[drm]\nhls = \"aes-128\"\ndash = \"cenc\"").unwrap();
        let p = c.drm.unwrap().policy().unwrap();
        assert_eq!((p.hls, p.dash), (HlsMode::Aes128, DashMode::Cenc));
        let c: FileConfig = toml::from_str("[drm]\nhls = \"aes-256\"").unwrap();
        assert!(c.drm.unwrap().validate().is_err());
        let c: FileConfig = toml::from_str("[drm]\nrotate_every = 0").unwrap();
        assert!(c.drm.unwrap().validate().is_err());
    }
}
