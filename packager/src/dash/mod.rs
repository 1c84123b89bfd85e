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

//!
//! The document is built as an [`Element`] tree and rendered by
//! [`crate::xml`]; protection arrives typed ([`CommonEncryption`]) and is
//! rendered here ([`content_protection`]).

mod content_protection;
mod periods;
mod representation;
#[cfg(test)]
mod tests;

use vela_media::MediaKind;

use crate::presentation::{Presentation, Rendition};
use crate::protection::CommonEncryption;
use crate::time_fmt::{iso_duration, rfc3339_ms};
use crate::xml::Element;

use periods::{periods, span_secs};
use representation::{estimated_duration, representation};

/// How the MPD is written for one request.
#[derive(Debug, Clone, Default)]
pub struct MpdOptions {
    /// Absolute URL of an `http-xsdate` time source (e.g. `http://host/time`).
    pub utc_timing_url: Option<String>,
    /// Target live latency for players, milliseconds.
    pub target_latency_ms: u32,
    /// Common encryption of the media, if any. With key rotation a Period
    /// per key period (within each continuous timeline), its init segments
    /// named by the key period (`init-V.kK.TAG.mp4`, whose `tenc` holds that
    /// period's key id) and its own `ContentProtection`. A key period whose
    /// first segment has left the window is no longer listed, so that every
    /// Period's start stays put.
    pub protection: Option<CommonEncryption>,
    /// A `BaseURL` for every segment and init URL (relative to the MPD,
    /// ending in `/`), e.g. the playback token's path.
    pub base_url: Option<String>,
}

const PROFILES: &str = "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019";

/// The MPD, or `None` before the stream has media.
pub fn mpd(p: &Presentation, now_ms: i64, opts: &MpdOptions) -> Option<String> {
    let lead = p.lead()?;
    if lead.segments.is_empty() && lead.building.as_ref().is_none_or(|b| b.parts.is_empty()) {
        return None;
    }
    let ended = p.is_ended();
    let cfg = p.config();
    let longest = crate::hls::target_duration(p) as f64;

    let mut root = Element::new("MPD")
        .attr("xmlns", "urn:mpeg:dash:schema:mpd:2011")
        .attr("profiles", PROFILES);
    if opts.protection.is_some() {
        for (name, uri) in content_protection::NAMESPACES {
            root.set(*name, uri);
        }
    }
    if ended {
        // Periods keep their places on the stream's timeline.
        let (_, end) = span_secs(lead);
        root.set("type", "static");
        root.set("mediaPresentationDuration", iso_duration(end));
    } else {
        let anchor = p.anchor_ms()?;
        root.set("type", "dynamic");
        root.set("availabilityStartTime", rfc3339_ms(anchor));
        root.set("publishTime", rfc3339_ms(now_ms));
        // minimumUpdatePeriod is one part: with a SegmentTimeline a player
        // learns of the next segment only from a fresh MPD, and a refresh
        // every segment duration let dash.js and Shaka reach the end of the
        // listed segments before the next one was known (a stall at every
        // segment boundary, up to a whole segment long).
        root.set("minimumUpdatePeriod", iso_duration(cfg.part_target));
        root.set("timeShiftBufferDepth", iso_duration(cfg.dvr_window));
        // suggestedPresentationDelay gives the ServiceDescription's target:
        // players that ignore the latter (Shaka in low-latency mode) otherwise
        // start at the very edge (availabilityTimeOffset included) and stall.
        // Measured from the edge that availabilityTimeOffset moves forward,
        // as Shaka does: the target plus that offset, plus how far the
        // announced end of the segment being built lies ahead of now
        // (Shaka's drift correction takes the newest listed segment end for
        // "now" and keeps that for the whole session, which put it up to a
        // segment closer to the edge than the target, where it stalled).
        root.set(
            "suggestedPresentationDelay",
            iso_duration(
                f64::from(opts.target_latency_ms.max(500)) / 1000.0
                    + availability_time_offset(cfg)
                    + announced_lead_secs(p, anchor, now_ms, longest),
            ),
        );
    }
    root.set("maxSegmentDuration", iso_duration(longest));
    root.set("minBufferTime", iso_duration(cfg.part_target * 3.0));
    // The schema's order: BaseURL before ServiceDescription and Periods.
    if let Some(base) = &opts.base_url {
        root.push(Element::new("BaseURL").text(base));
    }
    if !ended {
        let target = opts.target_latency_ms.max(500);
        root.push(
            Element::new("ServiceDescription")
                .attr("id", 0)
                .child(
                    Element::new("Latency")
                        .attr("referenceId", 0)
                        .attr("target", target)
                        .attr("min", target / 2)
                        .attr("max", target * 2),
                )
                .child(
                    Element::new("PlaybackRate")
                        .attr("min", "0.96")
                        .attr("max", "1.04"),
                ),
        );
    }

    // A period per run of segments that share init segments (and keys).
    let rotation = opts.protection.as_ref().and_then(|p| p.rotation.as_ref());
    let tag = opts
        .protection
        .as_ref()
        .map(|p| format!(".{}", p.scheme.as_str()))
        .unwrap_or_default();
    for period in periods(p, rotation.map(|r| r.every)) {
        let id = match period.key_period {
            Some(k) => format!("p{}k{k}", period.origin),
            None => format!("p{}", period.origin),
        };
        let mut el = Element::new("Period")
            .attr("id", id)
            .attr("start", iso_duration(period.start_secs));
        let init_tag = match period.key_period {
            Some(k) => format!(".k{k}{tag}"),
            None => tag.clone(),
        };
        // This key period's signalling, else the stream's.
        let keys = opts.protection.as_ref().map(|prot| {
            period
                .key_period
                .and_then(|k| rotation?.periods.get(&k))
                .unwrap_or(&prot.keys)
        });
        for (i, (kind, lang, reps)) in adaptation_sets(p).into_iter().enumerate() {
            let (content, mime) = match kind {
                MediaKind::Video => ("video", "video/mp4"),
                MediaKind::Audio => ("audio", "audio/mp4"),
            };
            let mut set = Element::new("AdaptationSet")
                .attr("id", i + 1)
                .attr("contentType", content)
                .attr("mimeType", mime)
                .attr_opt("lang", lang)
                .attr("segmentAlignment", "true")
                .attr("startWithSAP", 1);
            if let Some(keys) = keys {
                for cp in keys.of(kind) {
                    content_protection::render(cp, &mut set);
                }
            }
            set = set.children(reps.into_iter().filter_map(|r| {
                representation(
                    p,
                    r,
                    (period.first, period.last),
                    period.start_secs,
                    ended,
                    (&tag, &init_tag),
                )
            }));
            el.push(set);
        }
        root.push(el);
    }
    if !ended {
        // The time source first: players use the first scheme they support,
        // and the direct value is as old as the MPD in hand (up to its
        // max-age in a browser's cache), which made dash.js's clock up to a
        // second slow and its latency figure that much too low.
        if let Some(url) = &opts.utc_timing_url {
            root.push(
                Element::new("UTCTiming")
                    .attr("schemeIdUri", "urn:mpeg:dash:utc:http-xsdate:2014")
                    .attr("value", url),
            );
        }
        root.push(
            Element::new("UTCTiming")
                .attr("schemeIdUri", "urn:mpeg:dash:utc:direct:2014")
                .attr("value", rfc3339_ms(now_ms)),
        );
    }
    Some(root.to_document())
}

/// One adaptation set for the video renditions, one per audio language;
/// video first.
fn adaptation_sets(p: &Presentation) -> Vec<(MediaKind, Option<&str>, Vec<&Rendition>)> {
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
    sets
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
