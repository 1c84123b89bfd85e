//! The presentation model: what can be played, in no format's terms.
//!
//! A [`Presentation`] is what every source of playable media fills in — a
//! live stream's packager ([`crate::LivePackager::presentation`]), a stored
//! file packaged on the fly (the `vela-vod` crate), an encoded ladder — and
//! the only thing the HLS, DASH and Smooth writers read. It holds timing and
//! sizes, never media bytes: the origin asks the source for the bytes of a
//! file the manifest names.
//!
//! - Renditions: one per elementary stream. Video renditions share one
//!   segment timeline (an ABR ladder is more video renditions); audio
//!   renditions carry their language. Every rendition has the same segment
//!   numbers over the same spans of time (the sources cut them aligned).
//! - Segments and parts: times in the rendition's own timescale. Parts are
//!   the low-latency chunks of a live segment; a stored presentation has
//!   none.
//! - Liveness: a live presentation grows (a segment may be being built), an
//!   ended one is final but keeps its wall-clock anchor, a static one
//!   (video on demand) never had one.
//!
//! Live manifests render from a snapshot (an `Arc<Presentation>` the origin
//! replaces on every change), so no request holds a lock the packager waits
//! on while a manifest is written.

use vela_media::{MediaKind, Track};

pub use crate::live::{PackagerConfig as Timing, TimelineStart};

/// Whether the presentation is still growing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Media is being added; the newest segment may be incomplete.
    Live,
    /// A live presentation whose publisher stopped: every segment is final.
    Ended,
    /// Stored media, complete from the start (video on demand).
    Static,
}

/// Everything a manifest writer needs to describe one playable thing.
#[derive(Debug, Clone)]
pub struct Presentation {
    pub liveness: Liveness,
    /// Unix milliseconds of presentation time 0 (live and ended only).
    pub anchor_ms: Option<i64>,
    /// Segment and part targets and, while live, the DVR window.
    pub timing: Timing,
    pub renditions: Vec<Rendition>,
    /// Index into `renditions` of the rendition whose keyframes decide the
    /// cuts (the first video rendition, else the first audio one).
    pub lead: usize,
    /// Where each continuous timeline begins (DASH writes a Period each).
    pub timelines: Vec<TimelineStart>,
}

impl Presentation {
    pub fn renditions(&self) -> &[Rendition] {
        &self.renditions
    }

    pub fn rendition(&self, id: &str) -> Option<&Rendition> {
        self.renditions.iter().find(|r| r.id == id)
    }

    /// The rendition that decides the cuts.
    pub fn lead(&self) -> Option<&Rendition> {
        self.renditions.get(self.lead)
    }

    /// No more media will be added (an ended live stream, or stored media).
    pub fn is_ended(&self) -> bool {
        self.liveness != Liveness::Live
    }

    /// Stored media: no wall-clock anchor, no program date times.
    pub fn is_static(&self) -> bool {
        self.liveness == Liveness::Static
    }

    pub fn anchor_ms(&self) -> Option<i64> {
        self.anchor_ms
    }

    pub fn config(&self) -> &Timing {
        &self.timing
    }

    pub fn timelines(&self) -> &[TimelineStart] {
        &self.timelines
    }

    /// The presentation's length in seconds: the lead's last segment end.
    pub fn duration_secs(&self) -> f64 {
        self.lead().map_or(0.0, |r| {
            r.segments.back().map_or(0, |s| s.end()) as f64 / f64::from(r.timescale())
        })
    }

    /// The first rendition of a kind (Smooth carries one of each).
    pub fn first_of(&self, kind: MediaKind) -> Option<&Rendition> {
        self.renditions.iter().find(|r| r.track.kind() == kind)
    }
}

/// One elementary stream of a presentation.
#[derive(Debug, Clone)]
pub struct Rendition {
    /// URL-safe id: `v1`, `a2` (kind letter and track id).
    pub id: String,
    pub track: Track,
    /// ISO 639 language of an audio rendition (`eng`, `fra`), if known.
    pub language: Option<String>,
    /// Complete segments, oldest first (a live DVR window, or all of them).
    pub segments: std::collections::VecDeque<Segment>,
    /// The segment being built (live only), if it has begun.
    pub building: Option<Segment>,
    /// Discontinuities that have left the window (EXT-X-DISCONTINUITY-SEQUENCE).
    pub discontinuity_sequence: u64,
    /// Longest segment so far, in timescale ticks.
    pub max_segment_duration: i64,
    /// The init segment version that new segments use.
    pub current_init_version: u32,
}

/// A media segment, as timing and size.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number (HLS) / segment number (DASH).
    pub msn: u64,
    /// Decode time of the first sample, in the rendition's timescale.
    pub start: i64,
    pub duration: i64,
    /// Low-latency parts (live only; empty for stored media).
    pub parts: Vec<Part>,
    /// The first segment after a discontinuity.
    pub discontinuity: bool,
    /// Which init segment this segment needs.
    pub init_version: u32,
    /// Wall-clock time of the segment's start, unix milliseconds (live only).
    pub program_date_time_ms: Option<i64>,
    /// Bytes of the segment's media file.
    pub size: u64,
}

impl Segment {
    pub fn end(&self) -> i64 {
        self.start + self.duration
    }
}

/// One partial segment (a CMAF chunk).
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub start: i64,
    pub duration: i64,
    /// Starts with a keyframe.
    pub independent: bool,
    pub size: u64,
}

impl Rendition {
    pub fn timescale(&self) -> u32 {
        self.track.timescale
    }

    /// A complete or in-progress segment by number.
    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        if let Some(b) = self.building.as_ref().filter(|b| b.msn == msn) {
            return Some(b);
        }
        let first = self.segments.front()?.msn;
        let idx = msn.checked_sub(first)?;
        self.segments
            .get(usize::try_from(idx).ok()?)
            .filter(|s| s.msn == msn)
    }

    /// The newest segment number and the index of its newest part:
    /// (LAST-MSN, LAST-PART) of a rendition report.
    pub fn last_part(&self) -> Option<(u64, usize)> {
        match &self.building {
            Some(b) if !b.parts.is_empty() => Some((b.msn, b.parts.len() - 1)),
            _ => self
                .segments
                .back()
                .map(|s| (s.msn, s.parts.len().saturating_sub(1))),
        }
    }

    /// The oldest segment number this rendition lists: its first complete
    /// segment, or the one being built when none is complete yet.
    pub fn first_msn(&self) -> u64 {
        self.segments
            .front()
            .map_or_else(|| self.next_part().0, |s| s.msn)
    }

    /// The number of the next part to be written: (msn, part index).
    pub fn next_part(&self) -> (u64, usize) {
        match (&self.building, self.segments.back()) {
            (Some(b), _) => (b.msn, b.parts.len()),
            (None, Some(s)) => (s.msn + 1, 0),
            (None, None) => (0, 0),
        }
    }

    /// Whether part `part` of segment `msn` (or, without a part, the whole
    /// segment) exists. A part index past the end of a complete segment means
    /// the first part of the next one (how LL-HLS clients ask for "the next part").
    pub fn has(&self, msn: u64, part: Option<usize>) -> bool {
        let complete = self.segments.back().is_some_and(|s| s.msn >= msn);
        match part {
            None => complete,
            Some(p) => {
                if complete {
                    match self.segment(msn) {
                        Some(s) if p < s.parts.len() => true,
                        Some(_) => self.has(msn + 1, Some(0)),
                        None => true, // left the window: long available
                    }
                } else {
                    self.building
                        .as_ref()
                        .is_some_and(|b| b.msn == msn && b.parts.len() > p)
                }
            }
        }
    }

    /// Estimated bits per second over the listed segments.
    pub fn bandwidth(&self) -> u64 {
        let dur: i64 = self.segments.iter().map(|s| s.duration).sum();
        let bytes: u64 = self.segments.iter().map(|s| s.size).sum();
        if dur > 0 {
            bytes * 8 * u64::from(self.track.timescale) / dur as u64
        } else {
            u64::from(self.track.bitrate.unwrap_or(match self.track.kind() {
                MediaKind::Video => 2_500_000,
                MediaKind::Audio => 128_000,
            }))
        }
    }

    /// The highest bitrate of a listed segment (HLS `BANDWIDTH` is a peak).
    pub fn peak_bandwidth(&self) -> u64 {
        let ts = u64::from(self.timescale());
        self.segments
            .iter()
            .filter(|s| s.duration > 0)
            .map(|s| s.size * 8 * ts / s.duration as u64)
            .max()
            .unwrap_or_else(|| self.bandwidth())
    }

    /// The listed segment that contains presentation time `ticks`.
    pub fn segment_at(&self, ticks: i64) -> Option<&Segment> {
        let idx = self.segments.partition_point(|s| s.end() <= ticks);
        self.segments.get(idx).filter(|s| s.start <= ticks)
    }
}

/// The id a rendition of `track` has in every URL: `v1`, `a2`.
pub fn rendition_id(track: &Track) -> String {
    let letter = match track.kind() {
        MediaKind::Video => 'v',
        MediaKind::Audio => 'a',
    };
    format!("{letter}{}", track.id)
}
