//! A Representation of one rendition within one Period: its codec, its
//! `SegmentTemplate` and the `SegmentTimeline` of the Period's segments.

use vela_media::CodecConfig;

use super::availability_time_offset;
use super::periods::listed;
use crate::presentation::{Presentation, Rendition, Segment};
use crate::xml::Element;

/// The Representation of `r` for the listed segments `[first, last]`, or
/// `None` when it has none of them. `tag`: the media files' variant tag
/// (`.cenc` or ""); `init_tag`: the init segment's (with the key period).
pub(super) fn representation(
    p: &Presentation,
    r: &Rendition,
    (first_msn, last_msn): (u64, u64),
    period_start_secs: f64,
    ended: bool,
    (tag, init_tag): (&str, &str),
) -> Option<Element> {
    let ts = r.timescale();
    let segs: Vec<&Segment> = listed(r, ended)
        .filter(|s| s.msn >= first_msn && s.msn <= last_msn)
        .collect();
    let first = segs.first()?;
    let init_version = first.init_version;
    let mut el = Element::new("Representation")
        .attr("id", &r.id)
        .attr("codecs", r.track.config.codec_string())
        .attr("bandwidth", r.bandwidth().max(1));
    match &r.track.config {
        CodecConfig::Video {
            width,
            height,
            frame_rate,
            ..
        } => {
            if *width > 0 && *height > 0 {
                el.set("width", width);
                el.set("height", height);
            }
            if let Some(f) = frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
                el.set("frameRate", frame_rate_attr(f));
            }
        }
        CodecConfig::Audio {
            sample_rate,
            channels,
            ..
        } => {
            el.set("audioSamplingRate", sample_rate);
            el.push(
                Element::new("AudioChannelConfiguration")
                    .attr(
                        "schemeIdUri",
                        "urn:mpeg:dash:23003:3:audio_channel_configuration:2011",
                    )
                    .attr("value", channels),
            );
        }
    }
    let pto = (period_start_secs * f64::from(ts)).round() as i64;
    let mut template = Element::new("SegmentTemplate")
        .attr("timescale", ts)
        .attr("presentationTimeOffset", pto)
        .attr("startNumber", first.msn)
        .attr(
            "initialization",
            format!("$RepresentationID$/init-{init_version}{init_tag}.mp4"),
        )
        .attr("media", format!("$RepresentationID$/seg-$Number${tag}.m4s"));
    if !ended {
        // A segment can be requested once its first part exists.
        let ato = availability_time_offset(p.config());
        template.set("availabilityTimeOffset", format!("{ato:.3}"));
        template.set("availabilityTimeComplete", "false");
    }
    let mut timeline = Element::new("SegmentTimeline");
    // Runs of equal, contiguous durations collapse into one S with @r.
    let mut i = 0;
    let mut expected_start: Option<i64> = None;
    while i < segs.len() {
        let s = segs[i];
        let building = r.building.as_ref().is_some_and(|b| b.msn == s.msn);
        let d = if building {
            estimated_duration(p, r, s)
        } else {
            s.duration
        };
        let mut repeat = 0;
        if !building {
            while let Some(n) = segs.get(i + 1 + repeat) {
                let n_building = r.building.as_ref().is_some_and(|b| b.msn == n.msn);
                if n_building || n.duration != d || n.start != s.start + d * (repeat as i64 + 1) {
                    break;
                }
                repeat += 1;
            }
        }
        timeline.push(
            Element::new("S")
                .attr_opt("t", (expected_start != Some(s.start)).then_some(s.start))
                .attr("d", d)
                .attr_opt("r", (repeat > 0).then_some(repeat)),
        );
        expected_start = Some(s.start + d * (repeat as i64 + 1));
        i += 1 + repeat;
    }
    Some(el.child(template.child(timeline)))
}

/// A segment still being built is announced with the duration it is
/// expected to reach: the previous segment's, else the target.
pub(super) fn estimated_duration(p: &Presentation, r: &Rendition, s: &Segment) -> i64 {
    let ts = f64::from(r.timescale());
    let target = r
        .segments
        .back()
        .map(|l| l.duration)
        .unwrap_or((p.config().segment_target * ts) as i64);
    target.max(s.duration).max(1)
}

pub(super) fn frame_rate_attr(f: f64) -> String {
    // 29.97 and friends as exact ratios.
    for (num, den) in [(30000, 1001), (24000, 1001), (60000, 1001)] {
        if (f - f64::from(num) / f64::from(den)).abs() < 0.005 {
            return format!("{num}/{den}");
        }
    }
    if (f - f.round()).abs() < 0.001 {
        format!("{}", f.round() as i64)
    } else {
        format!("{}/1000", (f * 1000.0).round() as i64)
    }
}
