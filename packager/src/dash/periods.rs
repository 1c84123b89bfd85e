//! The MPD's Periods: the listed segments grouped by continuous timeline
//! and, with key rotation, by key period.

use crate::presentation::{Presentation, Rendition, Segment};

pub(super) fn span_secs(r: &Rendition) -> (f64, f64) {
    let ts = f64::from(r.timescale());
    let start = r.segments.front().map(|s| s.start).unwrap_or(0) as f64 / ts;
    let end = r.segments.back().map(|s| s.end()).unwrap_or(0) as f64 / ts;
    (start, end)
}

/// Segments listed for a rendition: the complete ones and, while live, the
/// one being built (announced early; served as it grows).
pub(super) fn listed(r: &Rendition, ended: bool) -> impl Iterator<Item = &Segment> {
    r.segments.iter().chain(
        r.building
            .iter()
            .filter(move |b| !ended && !b.parts.is_empty()),
    )
}

/// One Period: the listed segments `[first, last]` of one continuous
/// timeline, which began at segment `origin` at `start_secs` (with key
/// rotation: of one key period in it, from its first segment `origin`).
pub(super) struct PeriodSpan {
    pub origin: u64,
    pub start_secs: f64,
    pub first: u64,
    pub last: u64,
    pub key_period: Option<u64>,
}

/// The listed segments grouped by timeline. A Period per timeline keeps each
/// Period's SegmentTimeline free of holes (a reconnect's outage falls between
/// Periods, where players move on), and its id (the timeline's first segment
/// number) stays the same as the window slides.
pub(super) fn periods(p: &Presentation, rotate_every: Option<u64>) -> Vec<PeriodSpan> {
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
