//! The DASH manifest (MPD) of a live stream: CMAF, `SegmentTemplate` with a
//! `SegmentTimeline` and `$Number$`, low-latency signalling.
//!
//! While the stream is live the MPD is dynamic: `availabilityStartTime` is
//! the wall-clock time of output time 0 (the packager's anchor), and every
//! segment's `t` is its start on that timeline. Low latency: a segment is
//! announced as soon as its first part exists; the origin serves a segment
//! that is still being built with chunked transfer as its parts arrive, so
//! `availabilityTimeOffset` lets players ask for it that early
//! (`availabilityTimeComplete="false"`). A `ServiceDescription` states the
//! latency target. When the publisher stops the MPD turns static.
//!
//! Segment and init URLs are the same files as HLS uses:
//! `RID/init-V.mp4` and `RID/seg-N.m4s`, relative to the MPD.

use std::fmt::Write as _;

use vela_media::{CodecConfig, MediaKind};

use crate::presentation::{Presentation, Rendition, Segment};
use crate::time_fmt::{iso_duration, rfc3339_ms};

/// How the MPD is written for one request.
#[derive(Debug, Clone, Default)]
pub struct MpdOptions {
    /// Absolute URL of an `http-xsdate` time source (e.g. `http://host/time`).
    pub utc_timing_url: Option<String>,
    /// Target live latency for players, milliseconds.
    pub target_latency_ms: u32,
    /// Common encryption of the media, if any.
    pub protection: Option<DashProtection>,
    /// A `BaseURL` for every segment and init URL (relative to the MPD,
    /// ending in `/`), e.g. the playback token's path.
    pub base_url: Option<String>,
}

/// Common encryption as the MPD describes it.
#[derive(Debug, Clone, Default)]
pub struct DashProtection {
    /// The encrypted variant's tag in file names: `seg-N.TAG.m4s`, `init-V.TAG.mp4`.
    pub tag: String,
    /// `ContentProtection` elements for the video adaptation set (indented XML).
    pub video: String,
    /// ... and for the audio adaptation set.
    pub audio: String,
    /// Key rotation, if keys change every few segments.
    pub rotation: Option<KeyRotation>,
}

/// Keys that change every `every` segments: a Period per key period (within
/// each continuous timeline), its init segments named by the key period
/// (`init-V.kK.TAG.mp4`, whose `tenc` holds that period's key id) and its
/// own `ContentProtection`. A key period whose first segment has left the
/// window is no longer listed, so that every Period's start stays put.
#[derive(Debug, Clone, Default)]
pub struct KeyRotation {
    pub every: u64,
    /// Per key period, the `ContentProtection` elements for video and audio.
    pub periods: std::collections::BTreeMap<u64, (String, String)>,
}

const PROTECTION_NAMESPACES: &str = " xmlns:cenc=\"urn:mpeg:cenc:2013\" xmlns:mspr=\"urn:microsoft:playready\" xmlns:dashif=\"https://dashif.org/CPS\"";

/// The MPD, or `None` before the stream has media.
pub fn mpd(p: &Presentation, now_ms: i64, opts: &MpdOptions) -> Option<String> {
    let lead = p.lead()?;
    if lead.segments.is_empty() && lead.building.as_ref().is_none_or(|b| b.parts.is_empty()) {
        return None;
    }
    let ended = p.is_ended();
    let cfg = p.config();
    let longest = crate::hls::target_duration(p) as f64;

    let mut out = String::with_capacity(4096);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
         profiles=\"urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019\"",
    );
    if opts.protection.is_some() {
        out.push_str(PROTECTION_NAMESPACES);
    }
    let tag = opts
        .protection
        .as_ref()
        .map(|p| format!(".{}", p.tag))
        .unwrap_or_default();
    if ended {
        // Periods keep their places on the stream's timeline.
        let (_, end) = span_secs(lead);
        let _ = write!(
            out,
            " type=\"static\" mediaPresentationDuration=\"{}\"",
            iso_duration(end)
        );
    } else {
        let anchor = p.anchor_ms()?;
        // suggestedPresentationDelay gives the ServiceDescription's target:
        // players that ignore the latter (Shaka in low-latency mode) otherwise
        // start at the very edge (availabilityTimeOffset included) and stall.
        // minimumUpdatePeriod is one part: with a SegmentTimeline a player
        // learns of the next segment only from a fresh MPD, and a refresh
        // every segment duration let dash.js and Shaka reach the end of the
        // listed segments before the next one was known (a stall at every
        // segment boundary, up to a whole segment long).
        let _ = write!(
            out,
            " type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"{}\" timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\"",
            rfc3339_ms(anchor),
            rfc3339_ms(now_ms),
            iso_duration(cfg.part_target),
            iso_duration(cfg.dvr_window),
            // Measured from the edge that availabilityTimeOffset moves
            // forward, as Shaka does: the target plus that offset, plus how
            // far the announced end of the segment being built lies ahead of
            // now (Shaka's drift correction takes the newest listed segment
            // end for "now" and keeps that for the whole session, which put
            // it up to a segment closer to the edge than the target, where
            // it stalled).
            iso_duration(
                f64::from(opts.target_latency_ms.max(500)) / 1000.0
                    + availability_time_offset(cfg)
                    + announced_lead_secs(p, anchor, now_ms, longest)
            )
        );
    }
    let _ = writeln!(
        out,
        " maxSegmentDuration=\"{}\" minBufferTime=\"{}\">",
        iso_duration(longest),
        iso_duration(cfg.part_target * 3.0)
    );
    if let Some(base) = &opts.base_url {
        let _ = writeln!(out, "  <BaseURL>{}</BaseURL>", xml_escape(base));
    }
    if !ended {
        let target = opts.target_latency_ms.max(500);
        let _ = writeln!(
            out,
            "  <ServiceDescription id=\"0\">\n    <Latency referenceId=\"0\" target=\"{target}\" min=\"{}\" max=\"{}\"/>\n    <PlaybackRate min=\"0.96\" max=\"1.04\"/>\n  </ServiceDescription>",
            target / 2,
            target * 2
        );
    }

    // A period per run of segments that share init segments (and keys).
    let rotation = opts.protection.as_ref().and_then(|p| p.rotation.as_ref());
    let periods = periods(p, rotation.map(|r| r.every));
    for period in &periods {
        let (first_msn, last_msn, start_secs) = (&period.first, &period.last, period.start_secs);
        let id = match period.key_period {
            Some(k) => format!("p{}k{k}", period.origin),
            None => format!("p{}", period.origin),
        };
        let _ = writeln!(
            out,
            "  <Period id=\"{id}\" start=\"{}\">",
            iso_duration(start_secs)
        );
        let init_tag = match period.key_period {
            Some(k) => format!(".k{k}{tag}"),
            None => tag.clone(),
        };
        // One adaptation set for the video renditions, one per audio language.
        let mut sets: Vec<(MediaKind, Option<&str>, Vec<&Rendition>)> = Vec::new();
        for r in p.renditions() {
            let kind = r.track.kind();
            let lang = r.language.as_deref().filter(|_| kind == MediaKind::Audio);
            match sets.iter_mut().find(|(k, l, _)| *k == kind && *l == lang) {
                Some((_, _, reps)) => reps.push(r),
                None => sets.push((kind, lang, vec![r])),
            }
        }
        sets.sort_by_key(|(k, _, _)| *k);
        for (i, (kind, lang, reps)) in sets.into_iter().enumerate() {
            let set_id = i + 1;
            let (content, mime) = match kind {
                MediaKind::Video => ("video", "video/mp4"),
                MediaKind::Audio => ("audio", "audio/mp4"),
            };
            let _ = writeln!(
                out,
                "    <AdaptationSet id=\"{set_id}\" contentType=\"{content}\" mimeType=\"{mime}\"{} segmentAlignment=\"true\" startWithSAP=\"1\">",
                lang.map(|l| format!(" lang=\"{}\"", xml_escape(l)))
                    .unwrap_or_default()
            );
            if let Some(protection) = &opts.protection {
                // This key period's elements, else the stream's.
                let (video, audio) = period
                    .key_period
                    .and_then(|k| rotation?.periods.get(&k))
                    .map_or((&protection.video, &protection.audio), |(v, a)| (v, a));
                out.push_str(match kind {
                    MediaKind::Video => video,
                    MediaKind::Audio => audio,
                });
            }
            for r in reps {
                write_representation(
                    &mut out,
                    p,
                    r,
                    (*first_msn, *last_msn),
                    start_secs,
                    ended,
                    (&tag, &init_tag),
                );
            }
            out.push_str("    </AdaptationSet>\n");
        }
        out.push_str("  </Period>\n");
    }
    if !ended {
        // The time source first: players use the first scheme they support,
        // and the direct value is as old as the MPD in hand (up to its
        // max-age in a browser's cache), which made dash.js's clock up to a
        // second slow and its latency figure that much too low.
        if let Some(url) = &opts.utc_timing_url {
            let _ = writeln!(
                out,
                "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-xsdate:2014\" value=\"{}\"/>",
                xml_escape(url)
            );
        }
        let _ = writeln!(
            out,
            "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"{}\"/>",
            rfc3339_ms(now_ms)
        );
    }
    out.push_str("</MPD>\n");
    Some(out)
}

/// How long before its end a segment may be requested: once its first part
/// exists (the origin streams the rest as it is written).
fn availability_time_offset(cfg: &crate::presentation::Timing) -> f64 {
    (cfg.segment_target - cfg.part_target).max(0.0)
}

/// How far ahead of the wall clock's media time (`now - anchor`) the
/// listed timeline ends: the building segment is announced with the
/// duration it is expected to reach. At most one segment (`longest`).
fn announced_lead_secs(p: &Presentation, anchor: i64, now_ms: i64, longest: f64) -> f64 {
    let now_secs = (now_ms - anchor) as f64 / 1000.0;
    let listed_end = p
        .renditions()
        .iter()
        .filter_map(|r| {
            let b = r.building.as_ref().filter(|b| !b.parts.is_empty())?;
            let end = b.start + estimated_duration(p, r, b);
            Some(end as f64 / f64::from(r.timescale()))
        })
        .fold(f64::NEG_INFINITY, f64::max);
    if listed_end.is_finite() {
        (listed_end - now_secs).clamp(0.0, longest.max(0.0))
    } else {
        0.0
    }
}

fn span_secs(r: &Rendition) -> (f64, f64) {
    let ts = f64::from(r.timescale());
    let start = r.segments.front().map(|s| s.start).unwrap_or(0) as f64 / ts;
    let end = r.segments.back().map(|s| s.end()).unwrap_or(0) as f64 / ts;
    (start, end)
}

/// Segments listed for a rendition: the complete ones and, while live, the
/// one being built (announced early; served as it grows).
fn listed(r: &Rendition, ended: bool) -> impl Iterator<Item = &Segment> {
    r.segments.iter().chain(
        r.building
            .iter()
            .filter(move |b| !ended && !b.parts.is_empty()),
    )
}

/// One Period: the listed segments `[first, last]` of one continuous
/// timeline, which began at segment `origin` at `start_secs` (with key
/// rotation: of one key period in it, from its first segment `origin`).
struct PeriodSpan {
    origin: u64,
    start_secs: f64,
    first: u64,
    last: u64,
    key_period: Option<u64>,
}

/// The listed segments grouped by timeline. A Period per timeline keeps each
/// Period's SegmentTimeline free of holes (a reconnect's outage falls between
/// Periods, where players move on), and its id (the timeline's first segment
/// number) stays the same as the window slides.
fn periods(p: &Presentation, rotate_every: Option<u64>) -> Vec<PeriodSpan> {
    let ended = p.is_ended();
    let Some(lead) = p.lead() else {
        return Vec::new();
    };
    let ts = f64::from(lead.timescale());
    let timelines = p.timelines();
    let mut out: Vec<PeriodSpan> = Vec::new();
    for s in listed(lead, ended) {
        let tl = timelines.iter().rev().find(|t| t.msn <= s.msn);
        let (mut origin, mut start_secs) = match tl {
            Some(t) => (t.msn, t.start_secs),
            None => (0, 0.0),
        };
        let key_period = rotate_every.filter(|&n| n > 0).map(|n| s.msn / n);
        if let (Some(k), Some(n)) = (key_period, rotate_every) {
            let first_of_period = k.saturating_mul(n);
            if first_of_period > origin {
                origin = first_of_period;
                start_secs = match lead.segment(origin) {
                    Some(first) => first.start as f64 / ts,
                    // Its first segment has left the window: its start is
                    // no longer known, so the period is no longer listed.
                    None => continue,
                };
            }
        }
        match out.last_mut() {
            Some(last) if last.origin == origin && last.key_period == key_period => {
                last.last = s.msn
            }
            _ => out.push(PeriodSpan {
                origin,
                start_secs,
                first: s.msn,
                last: s.msn,
                key_period,
            }),
        }
    }
    out
}

fn write_representation(
    out: &mut String,
    p: &Presentation,
    r: &Rendition,
    (first_msn, last_msn): (u64, u64),
    period_start_secs: f64,
    ended: bool,
    (tag, init_tag): (&str, &str),
) {
    let ts = r.timescale();
    let segs: Vec<&Segment> = listed(r, ended)
        .filter(|s| s.msn >= first_msn && s.msn <= last_msn)
        .collect();
    let Some(first) = segs.first() else { return };
    let init_version = first.init_version;
    let _ = write!(
        out,
        "      <Representation id=\"{}\" codecs=\"{}\" bandwidth=\"{}\"",
        r.id,
        xml_escape(&r.track.config.codec_string()),
        r.bandwidth().max(1)
    );
    match &r.track.config {
        CodecConfig::Video {
            width,
            height,
            frame_rate,
            ..
        } => {
            if *width > 0 && *height > 0 {
                let _ = write!(out, " width=\"{width}\" height=\"{height}\"");
            }
            if let Some(f) = frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
                let _ = write!(out, " frameRate=\"{}\"", frame_rate_attr(f));
            }
            out.push_str(">\n");
        }
        CodecConfig::Audio {
            sample_rate,
            channels,
            ..
        } => {
            let _ = write!(
                out,
                " audioSamplingRate=\"{sample_rate}\">\n        <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{channels}\"/>\n"
            );
        }
    }
    let pto = (period_start_secs * f64::from(ts)).round() as i64;
    let _ = write!(
        out,
        "        <SegmentTemplate timescale=\"{ts}\" presentationTimeOffset=\"{pto}\" startNumber=\"{}\" initialization=\"$RepresentationID$/init-{init_version}{init_tag}.mp4\" media=\"$RepresentationID$/seg-$Number${tag}.m4s\"",
        first.msn
    );
    if !ended {
        // A segment can be requested once its first part exists.
        let ato = availability_time_offset(p.config());
        let _ = write!(
            out,
            " availabilityTimeOffset=\"{ato:.3}\" availabilityTimeComplete=\"false\""
        );
    }
    out.push_str(">\n          <SegmentTimeline>\n");
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
        out.push_str("            <S");
        if expected_start != Some(s.start) {
            let _ = write!(out, " t=\"{}\"", s.start);
        }
        let _ = write!(out, " d=\"{d}\"");
        if repeat > 0 {
            let _ = write!(out, " r=\"{repeat}\"");
        }
        out.push_str("/>\n");
        expected_start = Some(s.start + d * (repeat as i64 + 1));
        i += 1 + repeat;
    }
    out.push_str(
        "          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n",
    );
}

/// A segment still being built is announced with the duration it is
/// expected to reach: the previous segment's, else the target.
fn estimated_duration(p: &Presentation, r: &Rendition, s: &Segment) -> i64 {
    let ts = f64::from(r.timescale());
    let target = r
        .segments
        .back()
        .map(|l| l.duration)
        .unwrap_or((p.config().segment_target * ts) as i64);
    target.max(s.duration).max(1)
}

fn frame_rate_attr(f: f64) -> String {
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

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::tests::{audio_track, feed, video_track};
    use crate::LivePackager;
    use crate::PackagerConfig;
    use quick_xml::events::Event;
    use std::collections::HashMap;
    use std::sync::Arc;
    use vela_media::MediaEvent;

    /// Parses the MPD with a real XML parser into (element name, attributes) in document order.
    fn elements(xml: &str) -> Vec<(String, HashMap<String, String>)> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut out = Vec::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) | Event::Empty(e) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                    let attrs = e
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap();
                            (
                                String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                                a.unescape_value().unwrap().to_string(),
                            )
                        })
                        .collect();
                    out.push((name, attrs));
                }
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    fn running() -> LivePackager {
        let mut p = LivePackager::new(PackagerConfig::default());
        p.push(
            MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            0,
        );
        feed(&mut p, 0, 10.2, 30, 1_795_000_000_000);
        p
    }

    #[test]
    fn dynamic_mpd_is_well_formed_and_complete() {
        let p = running();
        let xml = mpd(
            &p.presentation(),
            1_795_000_010_300,
            &MpdOptions {
                utc_timing_url: Some("http://h/time".into()),
                target_latency_ms: 1500,
                protection: None,
                base_url: Some("t/1.x-y/".into()),
            },
        )
        .unwrap();
        let els = elements(&xml);
        let mpd = &els[0].1;
        // The schema's order: BaseURL before ServiceDescription and Periods.
        assert!(
            xml.contains("  <BaseURL>t/1.x-y/</BaseURL>\n  <ServiceDescription"),
            "{xml}"
        );
        assert_eq!(mpd["type"], "dynamic");
        assert_eq!(mpd["availabilityStartTime"], "2026-11-18T11:06:40.000Z");
        assert_eq!(mpd["timeShiftBufferDepth"], "PT120S");
        assert_eq!(
            mpd["suggestedPresentationDelay"], "PT3.167S",
            "target + availabilityTimeOffset"
        );
        assert_eq!(
            mpd["minimumUpdatePeriod"],
            crate::time_fmt::iso_duration(p.config().part_target)
        );
        assert!(mpd.contains_key("minimumUpdatePeriod"));
        let reps: Vec<_> = els.iter().filter(|(n, _)| n == "Representation").collect();
        assert_eq!(reps.len(), 2);
        assert_eq!(reps[0].1["codecs"], "avc1.64001e");
        assert_eq!(reps[1].1["codecs"], "mp4a.40.2");
        let templates: Vec<_> = els.iter().filter(|(n, _)| n == "SegmentTemplate").collect();
        assert_eq!(
            templates[0].1["media"],
            "$RepresentationID$/seg-$Number$.m4s"
        );
        assert_eq!(templates[0].1["availabilityTimeComplete"], "false");
        assert!(els
            .iter()
            .any(|(n, a)| n == "UTCTiming" && a["value"] == "http://h/time"));
        // The time source comes before the (possibly stale) direct value.
        let first_timing = els.iter().find(|(n, _)| n == "UTCTiming").unwrap();
        assert_eq!(
            first_timing.1["schemeIdUri"],
            "urn:mpeg:dash:utc:http-xsdate:2014"
        );
        assert!(els
            .iter()
            .any(|(n, a)| n == "Latency" && a["target"] == "1500"));
        // The timeline covers the listed segments: count S entries with repeats.
        let v = p.rendition("v1").unwrap();
        let mut count = 0;
        let mut in_video = false;
        for (n, a) in &els {
            match n.as_str() {
                "Representation" => in_video = a["id"] == "v1",
                "S" if in_video => {
                    count += 1 + a.get("r").map(|r| r.parse::<usize>().unwrap()).unwrap_or(0)
                }
                _ => {}
            }
        }
        let expected = v.segments.len()
            + usize::from(v.building.as_ref().is_some_and(|b| !b.parts.is_empty()));
        assert_eq!(count, expected);
        assert_eq!(templates[0].1["startNumber"], v.segments[0].msn.to_string());
    }

    /// Shaka's drift correction takes the end of the newest listed segment
    /// for "now"; the delay it is given makes up for how far that end lies
    /// ahead of the wall clock, so it still starts at the target latency.
    #[test]
    fn presentation_delay_covers_the_announced_building_segment() {
        let wall0 = 1_795_000_000_000;
        let mut p = LivePackager::new(PackagerConfig::default());
        p.push(
            MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            0,
        );
        // 2 s segments of 1 s GOPs; at 10.6 s the segment begun at 10 s has
        // its first part and is announced as ending at 12 s.
        feed(&mut p, 0, 10.6, 30, wall0);
        let opts = MpdOptions {
            target_latency_ms: 1500,
            ..MpdOptions::default()
        };
        let delay = |now_ms| {
            let xml = mpd(&p.presentation(), now_ms, &opts).unwrap();
            let d = &elements(&xml)[0].1["suggestedPresentationDelay"];
            d.trim_start_matches("PT")
                .trim_end_matches('S')
                .parse::<f64>()
                .unwrap()
        };
        // target 1.5 + availabilityTimeOffset 1.667 + (12 - 10.6); the audio
        // track's segment ends a few milliseconds later than the video's.
        let close = |a: f64, b: f64| (a - b).abs() < 0.02;
        assert!(
            close(delay(wall0 + 10_600), 4.567),
            "{}",
            delay(wall0 + 10_600)
        );
        // Later in the same segment, less of it lies ahead.
        assert!(
            close(delay(wall0 + 11_500), 3.667),
            "{}",
            delay(wall0 + 11_500)
        );
        // Never below target + offset, even with a late clock.
        assert_eq!(delay(wall0 + 13_000), 3.167);
    }

    #[test]
    fn protected_mpd_names_encrypted_files_and_carries_content_protection() {
        let p = running();
        let protection = DashProtection {
            tag: "cenc".into(),
            video: "      <ContentProtection schemeIdUri=\"urn:mpeg:dash:mp4protection:2011\" value=\"cenc\" cenc:default_KID=\"00000000-0000-0000-0000-000000000001\"/>\n".into(),
            audio: "      <ContentProtection schemeIdUri=\"urn:mpeg:dash:mp4protection:2011\" value=\"cenc\" cenc:default_KID=\"00000000-0000-0000-0000-000000000002\"/>\n".into(),
            rotation: None,
        };
        let opts = MpdOptions {
            protection: Some(protection),
            ..Default::default()
        };
        let xml = mpd(&p.presentation(), 0, &opts).unwrap();
        let els = elements(&xml);
        assert_eq!(els[0].1["xmlns:cenc"], "urn:mpeg:cenc:2013");
        let cps: Vec<_> = els
            .iter()
            .filter(|(n, _)| n == "ContentProtection")
            .collect();
        assert_eq!(cps.len(), 2);
        assert_eq!(
            cps[1].1["cenc:default_KID"],
            "00000000-0000-0000-0000-000000000002"
        );
        let t: Vec<_> = els.iter().filter(|(n, _)| n == "SegmentTemplate").collect();
        assert_eq!(t[0].1["media"], "$RepresentationID$/seg-$Number$.cenc.m4s");
        assert_eq!(
            t[0].1["initialization"],
            "$RepresentationID$/init-0.cenc.mp4"
        );
    }

    /// Keys rotating every 3 segments: a Period per key period, each with
    /// its own key ids and init segments named by the key period; a key
    /// period whose first segment has left the window is no longer listed.
    #[test]
    fn key_rotation_makes_a_period_per_key_period() {
        let cfg = PackagerConfig {
            dvr_window: 9.0,
            ..PackagerConfig::default()
        };
        let mut p = LivePackager::new(cfg);
        p.push(
            MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            0,
        );
        feed(&mut p, 0, 24.5, 30, 1_795_000_000_000);
        let cp = |k: u64, kind: &str| {
            format!("      <ContentProtection schemeIdUri=\"urn:mpeg:dash:mp4protection:2011\" value=\"cenc\" cenc:default_KID=\"{kind}-{k}\"/>\n")
        };
        let periods = (0..=5).map(|k| (k, (cp(k, "v"), cp(k, "a")))).collect();
        let opts = MpdOptions {
            protection: Some(DashProtection {
                tag: "cenc".into(),
                video: cp(99, "v"),
                audio: cp(99, "a"),
                rotation: Some(KeyRotation { every: 3, periods }),
            }),
            ..Default::default()
        };
        let xml = mpd(&p.presentation(), 1_795_000_024_500, &opts).unwrap();
        let els = elements(&xml);
        let listed: Vec<u64> = p.lead().unwrap().segments.iter().map(|s| s.msn).collect();
        assert!(
            !listed[0].is_multiple_of(3),
            "the window must begin inside a key period: {listed:?}"
        );
        let mut period_ids = Vec::new();
        let mut current = String::new();
        for (name, a) in &els {
            match name.as_str() {
                "Period" => {
                    current = a["id"].clone();
                    period_ids.push(current.clone());
                }
                "SegmentTemplate" => {
                    let k: u64 = current.rsplit('k').next().unwrap().parse().unwrap();
                    let start: u64 = a["startNumber"].parse().unwrap();
                    assert_eq!(
                        start,
                        3 * k,
                        "{current} starts at its key period's first segment"
                    );
                    assert!(
                        a["initialization"].ends_with(&format!("init-0.k{k}.cenc.mp4")),
                        "{a:?}"
                    );
                }
                "ContentProtection" => {
                    let k = current.rsplit('k').next().unwrap();
                    assert!(
                        a["cenc:default_KID"].ends_with(&format!("-{k}")),
                        "{current}: {a:?}"
                    );
                }
                _ => {}
            }
        }
        let first_full = listed[0].div_ceil(3);
        let last = p.lead().unwrap().next_part().0 / 3;
        let want: Vec<String> = (first_full..=last)
            .map(|k| format!("p{}k{k}", 3 * k))
            .collect();
        assert_eq!(period_ids, want, "{xml}");
    }

    #[test]
    fn ended_stream_turns_static() {
        let mut p = running();
        p.push(MediaEvent::End, 0);
        let xml = mpd(&p.presentation(), 0, &MpdOptions::default()).unwrap();
        let els = elements(&xml);
        assert_eq!(els[0].1["type"], "static");
        assert!(els[0].1["mediaPresentationDuration"].starts_with("PT10."));
        assert!(!xml.contains("availabilityTimeOffset"));
    }

    #[test]
    fn a_reconnect_starts_a_new_period_with_a_stable_id() {
        let mut p = LivePackager::new(PackagerConfig {
            dvr_window: 12.0,
            ..Default::default()
        });
        p.push(
            MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            0,
        );
        feed(&mut p, 0, 6.0, 30, 0);
        p.push(MediaEvent::Discontinuity, 6_000);
        feed(&mut p, 0, 6.0, 30, 8_000); // a 2 s outage
        let periods_of = |p: &Presentation| -> Vec<(String, String)> {
            let xml = mpd(p, 14_000, &MpdOptions::default()).unwrap();
            elements(&xml)
                .into_iter()
                .filter(|(n, _)| n == "Period")
                .map(|(_, a)| (a["id"].clone(), a["start"].clone()))
                .collect()
        };
        let before = periods_of(&p.presentation());
        assert_eq!(before.len(), 2, "{before:?}");
        assert_eq!(before[0], ("p0".to_string(), "PT0S".to_string()));
        assert_eq!(
            before[1].1, "PT8S",
            "the second timeline starts at the wall-clock time of the reconnect"
        );
        // No holes inside a period: each S after the first carries no t.
        let xml = mpd(&p.presentation(), 14_000, &MpdOptions::default()).unwrap();
        let mut in_timeline = 0;
        for (n, a) in elements(&xml) {
            match n.as_str() {
                "SegmentTimeline" => in_timeline = 0,
                "S" => {
                    assert!(
                        in_timeline == 0 || !a.contains_key("t"),
                        "a hole inside a period: {xml}"
                    );
                    in_timeline += 1;
                }
                _ => {}
            }
        }
        // The window slides past the first timeline's start; ids stay.
        feed(&mut p, 6_000, 10.0, 30, 14_000);
        let after = periods_of(&p.presentation());
        assert_eq!(after.last().unwrap().0, before[1].0);
    }

    #[test]
    fn no_mpd_before_media() {
        let mut p = LivePackager::new(PackagerConfig::default());
        p.push(MediaEvent::Tracks(Arc::new(vec![video_track()])), 0);
        assert!(mpd(&p.presentation(), 0, &MpdOptions::default()).is_none());
    }

    #[test]
    fn frame_rates_are_exact() {
        assert_eq!(frame_rate_attr(30.0), "30");
        assert_eq!(frame_rate_attr(29.97), "30000/1001");
    }
}
