//! One rendition recipe and its validation (pure: no I/O).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most flavors in one profile.
pub const MAX_FLAVORS: usize = 16;

/// A rendition recipe. `source: true` is the input passed through (no other field
/// applies); otherwise H.264 + AAC at the given size and rates. Give `height` alone
/// (the width follows the source's aspect), `width` alone, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlavorRecipe {
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// Passthrough of the input.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source: bool,
    /// `h264` (the only one so far).
    #[serde(default = "h264")]
    #[schema(pattern = "^h264$")]
    pub video_codec: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 16, maximum = 7680)]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 16, maximum = 4320)]
    pub height: Option<u32>,
    /// Average video bitrate (required unless `source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 16, maximum = 200000)]
    pub video_bitrate_kbps: Option<u32>,
    /// VBV max rate (default: 1.2 x the bitrate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 16, maximum = 400000)]
    pub max_rate_kbps: Option<u32>,
    /// VBV buffer (default: 2 x the max rate, i.e. about 2 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 16, maximum = 800000)]
    pub buffer_kbits: Option<u32>,
    /// Output frame rate (default: the source's; never above it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1.0, maximum = 120.0)]
    pub frame_rate: Option<f64>,
    /// `baseline`, `main` or `high` (default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(baseline|main|high)$")]
    pub profile: Option<String>,
    /// H.264 level, e.g. `3.1` (default: chosen by the encoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[1-5](\\.[0-2])?$")]
    pub level: Option<String>,
    /// `aac`.
    #[serde(default = "aac")]
    #[schema(pattern = "^aac$")]
    pub audio_codec: String,
    /// Default 128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 8, maximum = 512)]
    pub audio_bitrate_kbps: Option<u32>,
    /// 1 or 2 (default: the source's, at most 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 2)]
    pub audio_channels: Option<u32>,
    /// Accepted for compatibility: keyframes always follow the source's, so that
    /// every rendition's segments align.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub gop_frames: Option<u32>,
}

fn h264() -> String {
    "h264".into()
}

fn aac() -> String {
    "aac".into()
}

/// Why a recipe or a ladder is refused (a 422 at the API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    #[error("flavor {flavor:?}: {what}")]
    Field { flavor: String, what: String },
    #[error("a profile has 1 to {MAX_FLAVORS} flavors, not {0}")]
    Count(usize),
    #[error("flavor params {0} appears twice in the profile")]
    Duplicate(i64),
}

const LEVELS: &[&str] = &[
    "1", "1.1", "1.2", "1.3", "2", "2.1", "2.2", "3", "3.1", "3.2", "4", "4.1", "4.2", "5", "5.1",
    "5.2",
];

impl FlavorRecipe {
    /// A passthrough recipe.
    pub fn source(name: &str) -> FlavorRecipe {
        FlavorRecipe {
            name: name.into(),
            source: true,
            video_codec: h264(),
            width: None,
            height: None,
            video_bitrate_kbps: None,
            max_rate_kbps: None,
            buffer_kbits: None,
            frame_rate: None,
            profile: None,
            level: None,
            audio_codec: aac(),
            audio_bitrate_kbps: None,
            audio_channels: None,
            gop_frames: None,
        }
    }

    /// Checks every field's range and their combination.
    pub fn validate(&self) -> Result<(), RecipeError> {
        let name: String = self.name.chars().take(64).collect();
        let bad = |what: String| RecipeError::Field {
            flavor: name.clone(),
            what,
        };
        let n = self.name.chars().count();
        if !(1..=64).contains(&n) || self.name.contains('\0') {
            return Err(bad("name must have 1 to 64 characters".into()));
        }
        if self.video_codec != "h264" {
            return Err(bad("video_codec must be h264".into()));
        }
        if self.audio_codec != "aac" {
            return Err(bad("audio_codec must be aac".into()));
        }
        if self.source {
            let encoded_fields = self.width.is_some()
                || self.height.is_some()
                || self.video_bitrate_kbps.is_some()
                || self.max_rate_kbps.is_some()
                || self.buffer_kbits.is_some()
                || self.frame_rate.is_some()
                || self.profile.is_some()
                || self.level.is_some()
                || self.audio_bitrate_kbps.is_some()
                || self.audio_channels.is_some();
            if encoded_fields {
                return Err(bad(
                    "a source (passthrough) flavor takes no size, rate or codec settings".into(),
                ));
            }
            return Ok(());
        }
        let range = |field: &str, v: Option<u32>, lo: u32, hi: u32| match v {
            Some(x) if !(lo..=hi).contains(&x) => {
                Err(bad(format!("{field} must be {lo} to {hi}, not {x}")))
            }
            _ => Ok(()),
        };
        if self.width.is_none() && self.height.is_none() {
            return Err(bad("give a width, a height or both".into()));
        }
        range("width", self.width, 16, 7680)?;
        range("height", self.height, 16, 4320)?;
        let Some(rate) = self.video_bitrate_kbps else {
            return Err(bad("video_bitrate_kbps is required".into()));
        };
        range("video_bitrate_kbps", Some(rate), 16, 200_000)?;
        range("max_rate_kbps", self.max_rate_kbps, rate, 400_000)?;
        range("buffer_kbits", self.buffer_kbits, 16, 800_000)?;
        if let Some(f) = self.frame_rate {
            if !f.is_finite() || !(1.0..=120.0).contains(&f) {
                return Err(bad("frame_rate must be 1 to 120".into()));
            }
        }
        if let Some(p) = &self.profile {
            if !matches!(p.as_str(), "baseline" | "main" | "high") {
                return Err(bad("profile must be baseline, main or high".into()));
            }
        }
        if let Some(l) = &self.level {
            if !LEVELS.contains(&l.as_str()) {
                return Err(bad("level must be an H.264 level such as 3.1".into()));
            }
        }
        range("audio_bitrate_kbps", self.audio_bitrate_kbps, 8, 512)?;
        range("audio_channels", self.audio_channels, 1, 2)?;
        range("gop_frames", self.gop_frames, 1, 1000)?;
        Ok(())
    }
}

/// Checks a ladder's length and that no flavor params id repeats.
pub fn check_ladder_ids(ids: &[i64]) -> Result<(), RecipeError> {
    if ids.is_empty() || ids.len() > MAX_FLAVORS {
        return Err(RecipeError::Count(ids.len()));
    }
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return Err(RecipeError::Duplicate(*id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(h: u32, kbps: u32) -> FlavorRecipe {
        FlavorRecipe {
            source: false,
            height: Some(h),
            video_bitrate_kbps: Some(kbps),
            ..FlavorRecipe::source("r")
        }
    }

    #[test]
    fn accepts_a_ladder() {
        assert_eq!(FlavorRecipe::source("source").validate(), Ok(()));
        assert_eq!(rung(720, 2500).validate(), Ok(()));
        let full = FlavorRecipe {
            width: Some(1280),
            max_rate_kbps: Some(3000),
            buffer_kbits: Some(6000),
            frame_rate: Some(29.97),
            profile: Some("high".into()),
            level: Some("3.1".into()),
            audio_bitrate_kbps: Some(96),
            audio_channels: Some(2),
            ..rung(720, 2500)
        };
        assert_eq!(full.validate(), Ok(()));
    }

    #[test]
    fn refuses_absurd_values() {
        let cases = [
            FlavorRecipe {
                height: Some(0),
                ..rung(1, 1000)
            },
            FlavorRecipe {
                width: Some(100_000),
                ..rung(720, 1000)
            },
            FlavorRecipe {
                height: None,
                ..rung(720, 1000)
            },
            FlavorRecipe {
                video_bitrate_kbps: None,
                ..rung(720, 1000)
            },
            FlavorRecipe {
                max_rate_kbps: Some(500),
                ..rung(720, 1000)
            },
            FlavorRecipe {
                frame_rate: Some(f64::NAN),
                ..rung(720, 1000)
            },
            FlavorRecipe {
                profile: Some("extreme".into()),
                ..rung(720, 1000)
            },
            FlavorRecipe {
                level: Some("9".into()),
                ..rung(720, 1000)
            },
            FlavorRecipe {
                audio_channels: Some(6),
                ..rung(720, 1000)
            },
            FlavorRecipe {
                video_codec: "mpeg1".into(),
                ..rung(720, 1000)
            },
            FlavorRecipe {
                height: Some(720),
                ..FlavorRecipe::source("s")
            },
            FlavorRecipe {
                name: String::new(),
                ..rung(720, 1000)
            },
        ];
        for c in cases {
            assert!(c.validate().is_err(), "{c:?} accepted");
        }
    }

    #[test]
    fn negative_values_do_not_parse() {
        let r: Result<FlavorRecipe, _> =
            serde_json::from_str(r#"{"name":"x","height":360,"video_bitrate_kbps":-5}"#);
        assert!(r.is_err());
    }

    #[test]
    fn ladder_ids() {
        assert_eq!(check_ladder_ids(&[1, 2, 3]), Ok(()));
        assert_eq!(check_ladder_ids(&[]), Err(RecipeError::Count(0)));
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(check_ladder_ids(&hundred), Err(RecipeError::Count(100)));
        assert_eq!(check_ladder_ids(&[1, 2, 1]), Err(RecipeError::Duplicate(1)));
    }
}
