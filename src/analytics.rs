//! `[analytics]` settings: the ETL's period, retention, the beacon's rate
//! per client and the header that carries the viewer's country.

use std::time::Duration;

use serde::Deserialize;
use vela_control_plane::analytics::AnalyticsConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsSettings {
    /// Seconds between ETL passes (1..=3600).
    #[serde(default = "default_etl")]
    pub etl_interval_s: u64,
    /// Days raw events are kept (1..=3650).
    #[serde(default = "default_raw")]
    pub raw_retention_days: u64,
    /// Days view facts and rollups are kept (1..=36500).
    #[serde(default = "default_rollup")]
    pub rollup_retention_days: u64,
    /// Beacons per second per client (its address), and the burst.
    #[serde(default = "default_rate")]
    pub beacon_rate_per_s: f64,
    #[serde(default = "default_burst")]
    pub beacon_burst: f64,
    /// A request header set by a CDN or proxy to the viewer's ISO country
    /// code (e.g. `CF-IPCountry`); absent: country `unknown`.
    #[serde(default)]
    pub country_header: Option<String>,
}

fn default_etl() -> u64 {
    10
}
fn default_raw() -> u64 {
    30
}
fn default_rollup() -> u64 {
    400
}
fn default_rate() -> f64 {
    20.0
}
fn default_burst() -> f64 {
    60.0
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        AnalyticsSettings {
            etl_interval_s: default_etl(),
            raw_retention_days: default_raw(),
            rollup_retention_days: default_rollup(),
            beacon_rate_per_s: default_rate(),
            beacon_burst: default_burst(),
            country_header: None,
        }
    }
}

impl AnalyticsSettings {
    /// The checked configuration, or what is wrong with it.
    pub fn config(&self) -> Result<AnalyticsConfig, String> {
        if !(1..=3600).contains(&self.etl_interval_s) {
            return Err("[analytics] etl_interval_s must be 1 to 3600".into());
        }
        if !(1..=3650).contains(&self.raw_retention_days)
            || !(1..=36500).contains(&self.rollup_retention_days)
        {
            return Err("[analytics] retention days out of range".into());
        }
        let ok = |v: f64| v.is_finite() && (0.1..=1e6).contains(&v);
        if !ok(self.beacon_rate_per_s) || !ok(self.beacon_burst) {
            return Err(
                "[analytics] beacon_rate_per_s and beacon_burst must be 0.1 to 1000000".into(),
            );
        }
        let country_header =
            match &self.country_header {
                None => None,
                Some(h) => Some(http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    format!("[analytics] country_header {h:?} is not a header name")
                })?),
            };
        Ok(AnalyticsConfig {
            etl_interval: Duration::from_secs(self.etl_interval_s),
            raw_retention: Duration::from_secs(self.raw_retention_days * 86_400),
            rollup_retention: Duration::from_secs(self.rollup_retention_days * 86_400),
            rate_per_s: self.beacon_rate_per_s,
            burst: self.beacon_burst,
            country_header,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert!(AnalyticsSettings::default().config().is_ok());
        let bad = AnalyticsSettings {
            etl_interval_s: 0,
            ..Default::default()
        };
        assert!(bad.config().is_err());
        let bad = AnalyticsSettings {
            country_header: Some("bad header".into()),
            ..Default::default()
        };
        assert!(bad.config().is_err());
    }
}
