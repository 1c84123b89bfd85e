//! Which renditions to encode from a source, and with which x264 settings
//! (pure: no GStreamer, no I/O).
//!
//! Sizes: a rung with only a height (or only a width) keeps the source's
//! display aspect; one with both gets the largest picture inside that box that
//! keeps the aspect (no borders, no distortion). Both sides are rounded down to
//! even numbers (4:2:0 chroma). A rung that would be larger than the source on
//! either side is skipped, as Kaltura does: upscaling costs bits and shows
//! nothing new.

/// One encoded rung as asked for (the control plane's flavor params map to it).
#[derive(Debug, Clone, PartialEq)]
pub struct RungSpec {
    pub name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub video_bitrate_kbps: u32,
    /// VBV max rate (default 1.2 x the bitrate).
    pub max_rate_kbps: Option<u32>,
    /// VBV buffer (default 2 x the max rate).
    pub buffer_kbits: Option<u32>,
    /// `baseline`, `main` or `high`.
    pub profile: Option<String>,
    /// e.g. `3.1`.
    pub level: Option<String>,
}

/// A rung planned against a source: exact output size and rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Rung {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
    pub max_rate_kbps: u32,
    pub buffer_kbits: u32,
    pub profile: String,
    pub level: Option<String>,
}

impl Rung {
    /// x264's options beyond the element's properties: no scene-cut keyframes
    /// (they would differ between rungs and break segment alignment: every
    /// keyframe is forced at the source's keyframe times instead), no automatic
    /// keyframe interval, VBV max rate and buffer.
    pub fn x264_options(&self) -> String {
        format!(
            "scenecut=0:keyint=infinite:vbv-maxrate={}:vbv-bufsize={}",
            self.max_rate_kbps, self.buffer_kbits
        )
    }

    /// The VBV buffer in milliseconds (x264enc's `vbv-buf-capacity`).
    pub fn vbv_buffer_ms(&self) -> u32 {
        let ms = u64::from(self.buffer_kbits) * 1000 / u64::from(self.max_rate_kbps.max(1));
        ms.clamp(1, 10_000) as u32
    }
}

fn even(v: u32) -> u32 {
    (v & !1).max(16)
}

/// The output size of `spec` for a `sw` x `sh` source, or `None` when it would
/// upscale (or the source's size is unknown).
pub fn output_size(spec: &RungSpec, sw: u32, sh: u32) -> Option<(u32, u32)> {
    if sw < 16 || sh < 16 {
        return None;
    }
    let scale = |num: u32, a: u32, b: u32| -> u32 {
        // num * a / b, rounded to the nearest.
        ((u64::from(num) * u64::from(a) + u64::from(b) / 2) / u64::from(b)) as u32
    };
    let (w, h) = match (spec.width, spec.height) {
        (None, None) => return None,
        (None, Some(h)) => (scale(h, sw, sh), h),
        (Some(w), None) => (w, scale(w, sh, sw)),
        (Some(w), Some(h)) => {
            // The largest box of the source's aspect inside w x h.
            if u64::from(w) * u64::from(sh) <= u64::from(h) * u64::from(sw) {
                (w, scale(w, sh, sw))
            } else {
                (scale(h, sw, sh), h)
            }
        }
    };
    if w > sw || h > sh {
        return None;
    }
    Some((even(w), even(h)))
}

/// The rungs to encode for a `sw` x `sh` source, in ladder order; upscaling
/// rungs are left out.
pub fn plan(specs: &[RungSpec], sw: u32, sh: u32) -> Vec<Rung> {
    specs
        .iter()
        .filter_map(|s| {
            let (width, height) = output_size(s, sw, sh)?;
            let bitrate_kbps = s.video_bitrate_kbps.max(16);
            let max_rate_kbps = s
                .max_rate_kbps
                .unwrap_or(bitrate_kbps.saturating_mul(6) / 5)
                .max(bitrate_kbps);
            Some(Rung {
                name: s.name.clone(),
                width,
                height,
                bitrate_kbps,
                max_rate_kbps,
                buffer_kbits: s.buffer_kbits.unwrap_or(max_rate_kbps.saturating_mul(2)),
                profile: s.profile.clone().unwrap_or_else(|| "main".into()),
                level: s.level.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(w: Option<u32>, h: Option<u32>) -> RungSpec {
        RungSpec {
            name: "r".into(),
            width: w,
            height: h,
            video_bitrate_kbps: 1000,
            max_rate_kbps: None,
            buffer_kbits: None,
            profile: None,
            level: None,
        }
    }

    #[test]
    fn sizes_keep_aspect_and_are_even() {
        assert_eq!(
            output_size(&spec(None, Some(360)), 1280, 720),
            Some((640, 360))
        );
        assert_eq!(
            output_size(&spec(Some(640), None), 1920, 1080),
            Some((640, 360))
        );
        // 4:3 source into a 16:9 box: height decides.
        assert_eq!(
            output_size(&spec(Some(1280), Some(720)), 1440, 1080),
            Some((960, 720))
        );
        // Odd results round down to even.
        assert_eq!(
            output_size(&spec(None, Some(241)), 1280, 720),
            Some((428, 240))
        );
        assert_eq!(
            output_size(&spec(None, Some(360)), 639, 479),
            Some((480, 360))
        );
    }

    #[test]
    fn upscaling_rungs_are_skipped() {
        let specs = [
            spec(None, Some(1080)),
            spec(None, Some(720)),
            spec(None, Some(360)),
        ];
        let rungs = plan(&specs, 1280, 720);
        let heights: Vec<u32> = rungs.iter().map(|r| r.height).collect();
        assert_eq!(heights, [720, 360]);
        assert!(plan(&specs, 0, 0).is_empty());
    }

    #[test]
    fn rates_default_from_the_bitrate() {
        let r = &plan(&[spec(None, Some(360))], 640, 360)[0];
        assert_eq!(
            (r.bitrate_kbps, r.max_rate_kbps, r.buffer_kbits),
            (1000, 1200, 2400)
        );
        assert_eq!(r.vbv_buffer_ms(), 2000);
        assert_eq!(r.profile, "main");
        assert!(r.x264_options().contains("scenecut=0"));
    }
}
