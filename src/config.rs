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
    pub h3: Option<String>,
    /// RTMPS listener; needs `[tls]`.
    pub rtmps: Option<String>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "default_rtmp_connections")]
    pub max_rtmp_connections: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_rtmp_connections: default_rtmp_connections(),
        }
    }
}

fn default_rtmp_connections() -> usize {
    10_000
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
        c.live.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("[live]\ndvr_windw_s = 3").is_err());
    }

    #[test]
    fn out_of_range_values_are_errors() {
        let c: FileConfig = toml::from_str("[live]\npart_target_s = 0.01").unwrap();
        assert!(c.live.validate().is_err());
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
