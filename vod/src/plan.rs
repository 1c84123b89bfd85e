//! Segmentation: one list of cut times shared by every track.
//!
//! The reference track is the first video track: a segment starts at the
//! first keyframe whose decode time is at least 0.9 x the target after the
//! current segment's start (the live packager's rule), and the keyframe's
//! presentation time is the cut. Without video, the first audio track is cut
//! every `target` seconds from its first sample. Every other track starts
//! segment `n` at its first sample (first sync sample, for video) whose
//! presentation time is at or after cut `n`, so all tracks have the same
//! number of segments covering the same times. A track that ends early has
//! empty trailing segments.
//!
//! Times are compared exactly across timescales (128-bit cross products).

use crate::moov::ParsedTrack;
use crate::tables::{MemSource, Pos, Walker};
use crate::VodError;

/// Share of the target after which a keyframe may start a segment.
const CUT_RATIO: f64 = 0.9;
/// Samples per track: a day of 120 fps video or of 96 kHz AAC is below a
/// quarter of it. A table of zero-sized samples can claim billions in a few
/// bytes; this bounds the walk.
pub const MAX_SAMPLES: u32 = 1 << 25;
/// Segments per asset: 23 days at 4 s. Bounds the index's allocation.
pub const MAX_SEGMENTS: usize = 1 << 19;
/// Decode and presentation times stay below this (about 2^62 ticks), so
/// sums of a time and an edit shift never overflow.
const MAX_TIME: u64 = 1 << 62;

/// A presentation time on a track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub ticks: i64,
    pub timescale: u32,
}

impl Time {
    /// `self >= other`, exactly.
    pub fn at_or_after(&self, other: &Time) -> bool {
        i128::from(self.ticks) * i128::from(other.timescale)
            >= i128::from(other.ticks) * i128::from(self.timescale)
    }
}

/// Where a segment starts in a track, and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegEntry {
    /// Table walk state before the segment's first sample.
    pub pos: Pos,
    /// Earliest presentation time of its samples (output timeline).
    pub pts: i64,
    /// Sample payload bytes.
    pub bytes: u64,
}

/// A track's segments and totals, from one walk over its tables.
#[derive(Debug, Clone)]
pub struct TrackPlan {
    pub segs: Vec<SegEntry>,
    pub samples: u32,
    /// Source decode time after the last sample.
    pub end_dts: u64,
    /// The walk state after the last sample.
    pub end: Pos,
    pub bytes: u64,
}

/// Checks the tables' counts against each other before walking.
fn check_counts(t: &ParsedTrack) -> Result<(), VodError> {
    let n = u64::from(t.tables.sizes.count());
    if n > u64::from(MAX_SAMPLES) {
        return Err(VodError::TooLarge {
            what: "sample count",
            size: n,
            limit: u64::from(MAX_SAMPLES),
        });
    }
    let stts: u64 = t.tables.stts.iter().map(|e| u64::from(e.0)).sum();
    if stts != n {
        return Err(VodError::table(
            t.id,
            "stts",
            format!("covers {stts} samples, stsz has {n}"),
        ));
    }
    if let Some(ctts) = &t.tables.ctts {
        let c: u64 = ctts.iter().map(|e| u64::from(e.0)).sum();
        if c < n {
            return Err(VodError::table(
                t.id,
                "ctts",
                format!("covers {c} samples, stsz has {n}"),
            ));
        }
    }
    if let Some(stss) = &t.tables.stss {
        let mut prev = 0u32;
        for &s in stss {
            if s <= prev || u64::from(s) > n {
                return Err(VodError::table(
                    t.id,
                    "stss",
                    format!("entry {s} out of order or past {n} samples"),
                ));
            }
            prev = s;
        }
    }
    let mut prev = 0u32;
    for (i, &(first, _)) in t.tables.stsc.iter().enumerate() {
        if (i == 0 && first != 1) || first <= prev {
            return Err(VodError::table(
                t.id,
                "stsc",
                "first chunks must start at 1 and increase",
            ));
        }
        prev = first;
    }
    Ok(())
}

/// Walks a track; `starts` says how many segments begin at a sample (0, 1,
/// or more when a sparse track skips over several cuts).
fn walk(
    t: &ParsedTrack,
    file_len: u64,
    mut starts: impl FnMut(bool, i64, u64) -> usize,
) -> Result<TrackPlan, VodError> {
    check_counts(t)?;
    let src = MemSource {
        track: t.id,
        tables: &t.tables,
    };
    let mut w = Walker::new(src, Pos::start(), file_len);
    let dts_add = t.edit.dts_add();
    let cts_add = t.edit.cts_add();
    let mut segs = vec![SegEntry {
        pos: Pos::start(),
        pts: i64::MAX,
        bytes: 0,
    }];
    let mut bytes = 0u64;
    loop {
        let before = w.pos;
        let Some(s) = w.next_sample()? else { break };
        if s.dts >= MAX_TIME {
            return Err(VodError::table(t.id, "stts", "decode time out of range"));
        }
        // Edit shifts are below 2^40 (moov::edit_shift).
        let dts = s.dts + dts_add;
        // |cts + cts_add| < 2^42: no overflow next to MAX_TIME.
        let pts = dts as i64 + i64::from(s.cts) + cts_add;
        // At sample 0 a count above zero means the track starts after some
        // cuts: the segments before it are empty.
        for _ in 0..starts(s.sync, pts, dts) {
            if segs.len() >= MAX_SEGMENTS {
                return Err(VodError::TooLarge {
                    what: "segment count",
                    size: segs.len() as u64 + 1,
                    limit: MAX_SEGMENTS as u64,
                });
            }
            segs.push(SegEntry {
                pos: before,
                pts: i64::MAX,
                bytes: 0,
            });
        }
        let last = segs.last_mut().expect("one segment");
        last.pts = last.pts.min(pts);
        last.bytes += u64::from(s.size);
        bytes += u64::from(s.size);
    }
    let end = w.pos;
    if end.dts >= MAX_TIME {
        return Err(VodError::table(t.id, "stts", "duration out of range"));
    }
    // An empty segment presents from where the next one starts.
    let mut next_pts = (end.dts + dts_add) as i64;
    for seg in segs.iter_mut().rev() {
        if seg.pts == i64::MAX {
            seg.pts = next_pts;
        }
        next_pts = seg.pts;
    }
    Ok(TrackPlan {
        segs,
        samples: end.sample,
        end_dts: end.dts,
        end,
        bytes,
    })
}

/// Plans the reference track, returning its plan and the cut times
/// (presentation times where segments 1.. start).
pub fn plan_reference(
    t: &ParsedTrack,
    file_len: u64,
    target_secs: f64,
) -> Result<(TrackPlan, Vec<Time>), VodError> {
    let ts = t.timescale;
    let mut cuts = Vec::new();
    let plan = if t.kind() == vela_media::MediaKind::Video {
        let threshold = (target_secs * CUT_RATIO * f64::from(ts)).round().max(1.0) as u64;
        let mut seg_start: Option<u64> = None;
        walk(t, file_len, |sync, pts, dts| {
            let start = *seg_start.get_or_insert(dts);
            if sync && dts.saturating_sub(start) >= threshold {
                seg_start = Some(dts);
                cuts.push(Time {
                    ticks: pts,
                    timescale: ts,
                });
                1
            } else {
                0
            }
        })?
    } else {
        let step = (target_secs * f64::from(ts)).round().max(1.0) as i64;
        let mut origin: Option<i64> = None;
        let mut next = 1i64;
        walk(t, file_len, |_, pts, _| {
            let o = *origin.get_or_insert(pts);
            if pts >= o.saturating_add(step.saturating_mul(next)) {
                // One cut per sample: a gap in the audio makes a longer segment.
                while pts >= o.saturating_add(step.saturating_mul(next)) {
                    next += 1;
                }
                cuts.push(Time {
                    ticks: pts,
                    timescale: ts,
                });
                1
            } else {
                0
            }
        })?
    };
    Ok((plan, cuts))
}

/// Plans a non-reference track on the shared cut times.
pub fn plan_follower(t: &ParsedTrack, file_len: u64, cuts: &[Time]) -> Result<TrackPlan, VodError> {
    let ts = t.timescale;
    let is_video = t.kind() == vela_media::MediaKind::Video;
    let mut next = 0usize;
    let mut plan = walk(t, file_len, |sync, pts, _| {
        if is_video && !sync {
            return 0;
        }
        let here = Time {
            ticks: pts,
            timescale: ts,
        };
        let from = next;
        while next < cuts.len() && here.at_or_after(&cuts[next]) {
            next += 1;
        }
        next - from
    })?;
    // Cuts after this track's last sample: empty segments at its end.
    pad(&mut plan, cuts.len() + 1, t);
    Ok(plan)
}

/// Appends empty segments so the plan has `count`.
fn pad(plan: &mut TrackPlan, count: usize, t: &ParsedTrack) {
    if plan.segs.len() >= count {
        return;
    }
    let end = plan.end;
    let pts = (plan.end_dts + t.edit.dts_add()) as i64;
    while plan.segs.len() < count {
        plan.segs.push(SegEntry {
            pos: end,
            pts,
            bytes: 0,
        });
    }
}
