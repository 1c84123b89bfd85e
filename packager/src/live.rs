//! The live packager: a sans-IO state machine from [`MediaEvent`]s to a
//! timeline of CMAF segments and parts per rendition.
//!
//! Events and the wall-clock time go in ([`LivePackager::push`]); the
//! timeline comes out as plain data ([`LivePackager::renditions`]) that the
//! manifest writers and the origin read. Nothing here reads a clock or a
//! socket, so the whole behaviour is testable on simulated time.
//!
//! ## Alignment
//! One track *leads* (the first video track, else the first audio track). It
//! decides every cut: a segment starts on a lead keyframe once the current
//! segment has reached about its target duration, and a part ends before the
//! lead sample that would make it longer than the part target. Each cut is
//! queued, as a time, to the other (*following*) tracks, which close their
//! own part or segment as soon as one of their samples reaches that time. So
//! every rendition has the same media sequence numbers over the same spans of
//! time, which is what LL-HLS rendition reports and DASH segment alignment
//! need.
//!
//! ## Timeline
//! The output timeline starts at 0 at the first lead keyframe. Each track's
//! input timestamps are shifted by one offset, so A/V sync is preserved. The
//! wall-clock time of output time 0 is the *anchor*; a segment's program date
//! time is anchor + its start. After a discontinuity (publisher reconnect) the
//! timeline resumes at the later of the previous end and the wall clock, so
//! program date times and DASH availability stay true.
//!
//! ## Memory and the spool
//! Only the recent part of the DVR window needs to be in memory: the
//! segments and parts low-latency players fetch near the edge. A complete
//! segment that ends more than the *memory horizon*
//! ([`PackagerConfig::memory_horizon`]) before the newest complete segment
//! is handed out by [`LivePackager::segments_to_spool`] to whoever stores it
//! (the origin writes it to a spool on disk); once stored, the driver calls
//! [`LivePackager::evict`] and the packager drops the bytes but keeps the
//! segment's timing, so manifests list it as before and
//! [`Rendition::is_spooled`] tells readers to look for it in the spool.
//! Spooled segments that later leave the window are reported by
//! [`LivePackager::take_spool_removals`] so the driver deletes their files.
//! Nothing here does I/O: a driver that never asks (or whose store fails)
//! simply leaves the bytes in memory, bounded by the window as before.

use std::collections::VecDeque;

use bytes::Bytes;
use vela_media::{AudioCodec, CodecConfig, Frame, MediaEvent, MediaKind, Track};

use crate::boxes::{self, Sample};
use crate::presentation::{self, Part, Segment};

/// Packaging settings of one live stream.
#[derive(Debug, Clone, PartialEq)]
pub struct PackagerConfig {
    /// Target segment duration, seconds. Segments start on keyframes, so a
    /// segment lasts at least about this long (longer when keyframes are rarer).
    pub segment_target: f64,
    /// Target part duration, seconds (LL-HLS parts, LL-DASH chunks).
    pub part_target: f64,
    /// How much media stays available behind the live edge, seconds.
    pub dvr_window: f64,
    /// How much of the window stays in memory, seconds (see
    /// [`PackagerConfig::memory_horizon`]); older segments may be spooled.
    pub dvr_memory: f64,
}

impl PackagerConfig {
    /// How far behind the newest complete segment a segment must end to be
    /// spooled, seconds: `dvr_memory`, but never less than four segment
    /// targets, which covers every segment and part a low-latency player
    /// asks for near the edge (the segment being built stays in memory too).
    pub fn memory_horizon(&self) -> f64 {
        self.dvr_memory.max(4.0 * self.segment_target)
    }
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            segment_target: 2.0,
            part_target: 1.0 / 3.0,
            dvr_window: 120.0,
            dvr_memory: 12.0,
        }
    }
}

/// A segment starts on the first keyframe after this share of the target.
const SEGMENT_CUT_RATIO: f64 = 0.9;
/// Slack on the part target (seconds): millisecond input timestamps jitter
/// frame durations by a tick or two, which must not push a part of exactly
/// the target length into a cut one frame early.
pub(crate) const PART_SLACK: f64 = 0.002;

/// One track's output: its init segment(s), its segments' timing (the
/// presentation model's [`presentation::Rendition`], read through `Deref`)
/// and, beside it, their bytes.
#[derive(Debug)]
pub struct Rendition {
    meta: presentation::Rendition,
    /// Init segments by version, oldest first, as (version, bytes).
    pub inits: Vec<(u32, Bytes)>,
    /// Where the bytes of each complete segment in `meta.segments` are, in
    /// the same order.
    media: VecDeque<Stored>,
    /// The parts' bytes of the segment being built.
    building_media: Vec<Bytes>,
    /// Bytes of all media written so far.
    pub bytes_total: u64,
    /// Media bytes held in memory now (complete and building segments).
    memory_bytes: u64,
    /// Spooled segments that have left the window since the driver last
    /// asked, so it deletes their files.
    spool_removed: Vec<u64>,

    pending: Vec<Sample>,
    pending_start: i64,
    last_dts: Option<i64>,
    last_duration: i64,
    /// Following tracks: cuts queued by the lead, as (time in this track's
    /// timescale, starts a segment with this msn).
    cuts: VecDeque<(i64, Option<u64>)>,
    /// Input-to-output timestamp offset, in this track's timescale.
    offset: i64,
    /// AAC: the decode time the next frame should have.
    expected_next: Option<i64>,
    next_segment_discontinuity: bool,
}

/// Where a complete segment's bytes are.
#[derive(Debug)]
enum Stored {
    /// In memory, the parts in order. `spooling`: handed out to be stored
    /// (not handed out again; stays here until evicted or out of the window,
    /// which is also what happens when storing it failed).
    Memory { parts: Vec<Bytes>, spooling: bool },
    /// Stored by the driver; only the timing model is kept here.
    Spooled,
}

/// A complete segment to store outside memory
/// ([`LivePackager::segments_to_spool`]).
#[derive(Debug, Clone)]
pub struct SpoolJob {
    pub rid: String,
    pub msn: u64,
    /// The init segment version the segment decodes with.
    pub init_version: u32,
    /// The segment's parts in order; back to back they are the segment.
    pub chunks: Vec<Bytes>,
}

impl std::ops::Deref for Rendition {
    type Target = presentation::Rendition;

    fn deref(&self) -> &presentation::Rendition {
        &self.meta
    }
}

impl Rendition {
    fn new(track: Track) -> Self {
        let init = boxes::init_segment(&track);
        Rendition {
            meta: presentation::Rendition {
                id: presentation::rendition_id(&track),
                track,
                language: None,
                segments: VecDeque::new(),
                building: None,
                discontinuity_sequence: 0,
                max_segment_duration: 0,
                current_init_version: 0,
            },
            inits: vec![(0, init)],
            media: VecDeque::new(),
            building_media: Vec::new(),
            bytes_total: 0,
            memory_bytes: 0,
            spool_removed: Vec::new(),
            pending: Vec::new(),
            pending_start: 0,
            last_dts: None,
            last_duration: 0,
            cuts: VecDeque::new(),
            offset: 0,
            expected_next: None,
            next_segment_discontinuity: false,
        }
    }

    /// The timing model of this rendition.
    pub fn meta(&self) -> &presentation::Rendition {
        &self.meta
    }

    pub fn init(&self, version: u32) -> Option<&Bytes> {
        self.inits
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, b)| b)
    }

    /// The bytes of segment `msn`'s parts, in order (complete or being built).
    pub fn segment_data(&self, msn: u64) -> Option<&[Bytes]> {
        if self.meta.building.as_ref().is_some_and(|b| b.msn == msn) {
            return Some(&self.building_media);
        }
        let first = self.meta.segments.front()?.msn;
        let idx = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.meta.segments.get(idx).filter(|s| s.msn == msn)?;
        match self.media.get(idx)? {
            Stored::Memory { parts, .. } => Some(parts),
            Stored::Spooled => None,
        }
    }

    /// Whether complete segment `msn` is in the window with its bytes in the
    /// spool rather than in memory.
    pub fn is_spooled(&self, msn: u64) -> bool {
        self.media_index(msn)
            .is_some_and(|i| matches!(self.media.get(i), Some(Stored::Spooled)))
    }

    /// Media bytes this rendition holds in memory.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// The index of complete segment `msn` in `segments` and `media`.
    fn media_index(&self, msn: u64) -> Option<usize> {
        let first = self.meta.segments.front()?.msn;
        let idx = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.meta.segments.get(idx).filter(|s| s.msn == msn)?;
        Some(idx)
    }

    /// The bytes of part `idx` of segment `msn`.
    pub fn part_data(&self, msn: u64, idx: usize) -> Option<&Bytes> {
        self.segment_data(msn)?.get(idx)
    }

    fn aac_frame_duration(&self) -> Option<i64> {
        match &self.track.config {
            CodecConfig::Audio {
                codec: AudioCodec::Aac,
                ..
            } => Some(1024),
            _ => None,
        }
    }

    /// The end of everything written, in seconds.
    fn end_secs(&self) -> Option<f64> {
        let end = match (&self.building, self.segments.back()) {
            (Some(b), _) if !b.parts.is_empty() => Some(b.end()),
            (_, Some(s)) => Some(s.end()),
            _ => None,
        };
        end.map(|e| e as f64 / f64::from(self.track.timescale))
    }

    /// Turns the pending samples into a part of the building segment.
    fn close_part(&mut self, frag_seq: &mut u32) {
        if self.pending.is_empty() {
            return;
        }
        let samples = std::mem::take(&mut self.pending);
        let duration: i64 = samples.iter().map(|s| i64::from(s.duration)).sum();
        *frag_seq = frag_seq.wrapping_add(1);
        let data = boxes::fragment(
            *frag_seq,
            self.track.id,
            self.pending_start.max(0) as u64,
            &samples,
        );
        self.bytes_total += data.len() as u64;
        let part = Part {
            start: self.pending_start,
            duration,
            independent: samples[0].keyframe,
            size: data.len() as u64,
        };
        if let Some(b) = self.meta.building.as_mut() {
            b.duration = part.start + part.duration - b.start;
            b.size += part.size;
            b.parts.push(part);
            self.memory_bytes += data.len() as u64;
            self.building_media.push(data);
        }
    }

    fn close_segment(&mut self, window_ticks: i64) {
        let Some(seg) = self.meta.building.take() else {
            return;
        };
        let data = std::mem::take(&mut self.building_media);
        if seg.parts.is_empty() {
            self.memory_bytes = self.memory_bytes.saturating_sub(chunks_len(&data));
            return;
        }
        let meta = &mut self.meta;
        meta.max_segment_duration = meta.max_segment_duration.max(seg.duration);
        let end = seg.end();
        meta.segments.push_back(seg);
        self.media.push_back(Stored::Memory {
            parts: data,
            spooling: false,
        });
        while meta
            .segments
            .front()
            .is_some_and(|s| s.end() < end - window_ticks)
        {
            let stored = self.media.pop_front();
            let old = meta.segments.pop_front();
            match (stored, &old) {
                (Some(Stored::Memory { parts, .. }), _) => {
                    self.memory_bytes = self.memory_bytes.saturating_sub(chunks_len(&parts));
                }
                (Some(Stored::Spooled), Some(old)) => self.spool_removed.push(old.msn),
                _ => {}
            }
            if let Some(old) = old {
                if old.discontinuity {
                    meta.discontinuity_sequence += 1;
                }
            }
        }
    }

    fn open_segment(&mut self, msn: u64, start: i64, anchor_ms: i64) {
        let pdt =
            anchor_ms + (start as f64 * 1000.0 / f64::from(self.track.timescale)).round() as i64;
        self.memory_bytes = self
            .memory_bytes
            .saturating_sub(chunks_len(&self.building_media));
        self.building_media.clear();
        self.meta.building = Some(Segment {
            msn,
            start,
            duration: 0,
            parts: Vec::new(),
            discontinuity: std::mem::take(&mut self.next_segment_discontinuity),
            init_version: self.meta.current_init_version,
            program_date_time_ms: Some(pdt),
            size: 0,
        });
    }

    fn push_sample(&mut self, dts: i64, frame: &Frame) {
        if self.pending.is_empty() {
            self.pending_start = dts;
        }
        self.pending.push(Sample {
            duration: 0,
            cts_offset: frame.cts_offset,
            keyframe: frame.keyframe || self.track.kind() == MediaKind::Audio,
            data: frame.data.clone(),
        });
        self.last_dts = Some(dts);
    }

    /// Sets the last pending sample's duration now that the next one's decode
    /// time (or an estimate at the end) is known.
    fn settle_last(&mut self, next_dts: i64) {
        let fixed = self.aac_frame_duration();
        if let (Some(last), Some(last_dts)) = (self.pending.last_mut(), self.last_dts) {
            // An AAC frame lasts 1024 samples whatever follows it: a gap in
            // the audio stays a gap instead of stretching one frame.
            let d = fixed.unwrap_or((next_dts - last_dts).max(1));
            last.duration = u32::try_from(d).unwrap_or(u32::MAX);
            self.last_duration = d;
        }
    }

    fn settle_last_estimated(&mut self) {
        let est = self
            .aac_frame_duration()
            .unwrap_or(self.last_duration.max(1));
        if let Some(last_dts) = self.last_dts {
            self.settle_last(last_dts + est);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No tracks yet.
    Idle,
    /// Tracks known; waiting for the lead's first keyframe.
    WaitingForKeyframe,
    Running,
    Ended,
}

/// Where one continuous timeline of the output begins: the stream's start,
/// and each restart after a discontinuity (reconnect, clock jump, new codec
/// configuration). DASH writes a Period per timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelineStart {
    /// The first segment of the timeline.
    pub msn: u64,
    /// Its start on the output timeline, seconds.
    pub start_secs: f64,
}

/// Timeline starts remembered (far more than a DVR window holds).
const MAX_TIMELINES: usize = 1024;

/// What changed with one [`LivePackager::push`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub parts: usize,
    pub segments: usize,
    pub tracks: bool,
    pub ended: bool,
}

impl Changes {
    pub fn any(&self) -> bool {
        self.parts > 0 || self.segments > 0 || self.tracks || self.ended
    }
}

/// The live packager of one stream. See the module docs.
#[derive(Debug)]
pub struct LivePackager {
    config: PackagerConfig,
    renditions: Vec<Rendition>,
    lead: usize,
    state: State,
    /// Unix milliseconds of output time 0.
    anchor_ms: Option<i64>,
    /// Where the output timeline resumes after a discontinuity, seconds.
    resume_at: f64,
    next_msn: u64,
    frag_seq: u32,
    discontinuity_pending: bool,
    dropped_frames: u64,
    timelines: Vec<TimelineStart>,
}

impl LivePackager {
    pub fn new(config: PackagerConfig) -> Self {
        LivePackager {
            config,
            renditions: Vec::new(),
            lead: 0,
            state: State::Idle,
            anchor_ms: None,
            resume_at: 0.0,
            next_msn: 0,
            frag_seq: 0,
            discontinuity_pending: false,
            dropped_frames: 0,
            timelines: Vec::new(),
        }
    }

    /// The starts of the output's continuous timelines, oldest first.
    pub fn timelines(&self) -> &[TimelineStart] {
        &self.timelines
    }

    pub fn config(&self) -> &PackagerConfig {
        &self.config
    }

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

    /// The publisher stopped and every segment is final (EXT-X-ENDLIST).
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Unix milliseconds of output time 0 (DASH availabilityStartTime).
    pub fn anchor_ms(&self) -> Option<i64> {
        self.anchor_ms
    }

    /// The stream as the presentation model: a snapshot of every
    /// rendition's timing (no media bytes) for the manifest writers.
    pub fn presentation(&self) -> presentation::Presentation {
        presentation::Presentation {
            liveness: if self.is_ended() {
                presentation::Liveness::Ended
            } else {
                presentation::Liveness::Live
            },
            anchor_ms: self.anchor_ms,
            timing: self.config.clone(),
            renditions: self.renditions.iter().map(|r| r.meta.clone()).collect(),
            lead: self.lead,
            timelines: self.timelines.clone(),
        }
    }

    /// Complete segments that end more than the memory horizon before their
    /// rendition's newest complete segment and are still only in memory,
    /// oldest first. Each is handed out once: it stays in memory (and
    /// readable) until [`LivePackager::evict`] says it is stored, or until
    /// it leaves the window if it never is.
    pub fn segments_to_spool(&mut self) -> Vec<SpoolJob> {
        let horizon = self.config.memory_horizon();
        let mut jobs = Vec::new();
        for r in &mut self.renditions {
            let Some(newest_end) = r.meta.segments.back().map(|s| s.end()) else {
                continue;
            };
            let limit = newest_end - (horizon * f64::from(r.meta.track.timescale)) as i64;
            for (seg, stored) in r.meta.segments.iter().zip(r.media.iter_mut()) {
                if seg.end() > limit {
                    break;
                }
                if let Stored::Memory {
                    parts,
                    spooling: spooling @ false,
                } = stored
                {
                    *spooling = true;
                    jobs.push(SpoolJob {
                        rid: r.meta.id.clone(),
                        msn: seg.msn,
                        init_version: seg.init_version,
                        chunks: parts.clone(),
                    });
                }
            }
        }
        jobs
    }

    /// Drops the bytes of complete segment `msn` of rendition `rid`, now
    /// stored elsewhere; its timing stays, so manifests still list it.
    /// Returns false when the segment is no longer in the window (its stored
    /// copy is then the caller's to delete).
    pub fn evict(&mut self, rid: &str, msn: u64) -> bool {
        let Some(r) = self.renditions.iter_mut().find(|r| r.meta.id == rid) else {
            return false;
        };
        let Some(idx) = r.media_index(msn) else {
            return false;
        };
        let Some(stored) = r.media.get_mut(idx) else {
            return false;
        };
        if let Stored::Memory { parts, .. } = std::mem::replace(stored, Stored::Spooled) {
            r.memory_bytes = r.memory_bytes.saturating_sub(chunks_len(&parts));
        }
        true
    }

    /// Spooled segments that left the window since the last call, as
    /// (rendition id, msn): their stored copies can be deleted.
    pub fn take_spool_removals(&mut self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for r in &mut self.renditions {
            for msn in r.spool_removed.drain(..) {
                out.push((r.meta.id.clone(), msn));
            }
        }
        out
    }

    /// Media bytes held in memory, all renditions.
    pub fn memory_bytes(&self) -> u64 {
        self.renditions.iter().map(|r| r.memory_bytes).sum()
    }

    /// Frames dropped as unusable (before the first keyframe, out of order).
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// Feeds one event; `now_ms` is the wall clock, unix milliseconds.
    pub fn push(&mut self, event: MediaEvent, now_ms: i64) -> Changes {
        let mut changes = Changes::default();
        match event {
            MediaEvent::Tracks(tracks) => self.on_tracks(&tracks, &mut changes),
            MediaEvent::Frame(frame) => self.on_frame(&frame, now_ms, &mut changes),
            MediaEvent::Discontinuity => {
                self.flush(&mut changes);
                if self.state != State::Idle {
                    self.state = State::WaitingForKeyframe;
                }
                self.discontinuity_pending = true;
            }
            MediaEvent::End => {
                self.flush(&mut changes);
                self.state = State::Ended;
                changes.ended = true;
            }
        }
        changes
    }

    fn on_tracks(&mut self, tracks: &[Track], changes: &mut Changes) {
        changes.tracks = true;
        if self.renditions.is_empty() {
            self.renditions = tracks.iter().cloned().map(Rendition::new).collect();
            self.lead = self
                .renditions
                .iter()
                .position(|r| r.track.kind() == MediaKind::Video)
                .unwrap_or(0);
            if !self.renditions.is_empty() {
                self.state = State::WaitingForKeyframe;
            }
            return;
        }
        // A new configuration mid-stream: finish what was built with the old
        // one, and start over at the next keyframe with a new init segment.
        let changed: Vec<usize> = self
            .renditions
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let t = tracks
                    .iter()
                    .find(|t| t.id == r.track.id && t.kind() == r.track.kind())?;
                (t.config != r.track.config || t.timescale != r.track.timescale).then_some(i)
            })
            .collect();
        for t in tracks {
            if !self.renditions.iter().any(|r| r.track.id == t.id) {
                tracing::warn!(
                    track = t.id,
                    "a track added mid-stream is ignored until the stream restarts"
                );
            }
        }
        if changed.is_empty() {
            return;
        }
        self.flush(changes);
        for i in changed {
            let t = tracks
                .iter()
                .find(|t| t.id == self.renditions[i].track.id)
                .cloned();
            if let Some(t) = t {
                let r = &mut self.renditions[i];
                r.meta.current_init_version += 1;
                r.meta.track = t;
                r.inits.push((
                    r.meta.current_init_version,
                    boxes::init_segment(&r.meta.track),
                ));
                // Old init segments are kept while segments refer to them.
                let oldest = r
                    .segments
                    .front()
                    .map(|s| s.init_version)
                    .unwrap_or(r.meta.current_init_version);
                r.inits.retain(|(v, _)| *v >= oldest);
            }
        }
        if self.state == State::Running {
            self.state = State::WaitingForKeyframe;
        }
        self.discontinuity_pending = true;
    }

    /// Closes every open part and segment (before a discontinuity or the end).
    fn flush(&mut self, changes: &mut Changes) {
        let window = self.config.dvr_window;
        let mut resume: f64 = self.resume_at;
        for r in &mut self.renditions {
            // A following track closes at its queued cuts, then at the end.
            r.settle_last_estimated();
            r.close_part(&mut self.frag_seq);
            if r.building.as_ref().is_some_and(|b| !b.parts.is_empty()) {
                changes.segments += 1;
            }
            let w = (window * f64::from(r.timescale())) as i64;
            r.close_segment(w);
            r.cuts.clear();
            r.last_dts = None;
            r.expected_next = None;
            if let Some(e) = r.end_secs() {
                resume = resume.max(e);
            }
        }
        changes.parts += self.renditions.len();
        self.resume_at = resume;
        self.next_msn = self
            .renditions
            .iter()
            .filter_map(|r| r.segments.back().map(|s| s.msn + 1))
            .max()
            .unwrap_or(self.next_msn);
    }

    fn on_frame(&mut self, frame: &Frame, now_ms: i64, changes: &mut Changes) {
        let Some(idx) = self
            .renditions
            .iter()
            .position(|r| r.track.id == frame.track_id)
        else {
            self.dropped_frames += 1;
            return;
        };
        match self.state {
            State::Idle | State::Ended => {
                self.dropped_frames += 1;
                return;
            }
            State::WaitingForKeyframe => {
                let lead_kind = self.renditions[self.lead].track.kind();
                if idx != self.lead || (lead_kind == MediaKind::Video && !frame.keyframe) {
                    self.dropped_frames += 1;
                    return;
                }
                self.start(frame, now_ms);
            }
            State::Running => {}
        }
        if idx == self.lead && self.is_timestamp_jump(frame) {
            // The source's clock jumped (an encoder restart without a
            // reconnect, a corrupt timestamp): a segment must not stretch
            // over the jump, nor the stream freeze behind it. Restart the
            // timeline here, as after a reconnect.
            tracing::warn!(
                track = frame.track_id,
                dts = frame.dts,
                "timestamp jump; starting a new timeline"
            );
            self.flush(changes);
            self.discontinuity_pending = true;
            self.state = State::WaitingForKeyframe;
            let lead_kind = self.renditions[self.lead].track.kind();
            if lead_kind == MediaKind::Video && !frame.keyframe {
                self.dropped_frames += 1;
                return;
            }
            self.start(frame, now_ms);
        }
        if idx == self.lead {
            self.on_lead_frame(frame, changes);
        } else {
            self.on_following_frame(idx, frame, changes);
        }
    }

    /// Whether a lead frame is more than a second behind the previous one or
    /// further ahead than five segment targets (and at least ten seconds).
    fn is_timestamp_jump(&self, frame: &Frame) -> bool {
        let r = &self.renditions[self.lead];
        let Some(last) = r.last_dts else { return false };
        let ts = f64::from(r.timescale());
        let delta = frame.dts + r.offset - last;
        let ahead = (5.0 * self.config.segment_target).max(10.0) * ts;
        (delta as f64) < -ts || (delta as f64) > ahead
    }

    /// Starts (or resumes) the output timeline at this lead keyframe.
    fn start(&mut self, frame: &Frame, now_ms: i64) {
        let anchor = *self.anchor_ms.get_or_insert(now_ms);
        // Resume no earlier than the wall clock, so that program date times
        // and DASH availability keep telling the truth after a gap.
        let start_secs = self.resume_at.max((now_ms - anchor) as f64 / 1000.0);
        let lead_ts = f64::from(self.renditions[self.lead].timescale());
        let input_origin_secs = frame.dts as f64 / lead_ts;
        let discontinuity = std::mem::take(&mut self.discontinuity_pending);
        let msn = self.next_msn;
        if self.timelines.len() == MAX_TIMELINES {
            self.timelines.remove(0);
        }
        self.timelines.push(TimelineStart { msn, start_secs });
        for r in &mut self.renditions {
            let ts = f64::from(r.timescale());
            r.offset = (start_secs * ts).round() as i64 - (input_origin_secs * ts).round() as i64;
            r.next_segment_discontinuity = discontinuity;
            r.cuts.clear();
            let start = (start_secs * ts).round() as i64;
            r.open_segment(msn, start, anchor);
            r.pending_start = start;
        }
        self.state = State::Running;
    }

    fn on_lead_frame(&mut self, frame: &Frame, changes: &mut Changes) {
        let cfg = &self.config;
        let anchor = self.anchor_ms.unwrap_or(0);
        let window = cfg.dvr_window;
        let r = &mut self.renditions[self.lead];
        let ts = f64::from(r.timescale());
        let Some(dts) = normalise_dts(r, frame) else {
            self.dropped_frames += 1;
            return;
        };
        if !r.pending.is_empty() {
            r.settle_last(dts);
        }
        let Some(seg_start) = r.building.as_ref().map(|b| b.start) else {
            return;
        };
        let seg_len = dts - seg_start;
        let est = r.last_duration.max(1);
        let is_key = frame.keyframe || r.track.kind() == MediaKind::Audio;
        let mut cut: Option<Option<u64>> = None;
        if is_key
            && !r.pending.is_empty()
            && seg_len as f64 >= cfg.segment_target * SEGMENT_CUT_RATIO * ts
        {
            r.close_part(&mut self.frag_seq);
            r.close_segment((window * ts) as i64);
            self.next_msn += 1;
            r.open_segment(self.next_msn, dts, anchor);
            changes.parts += 1;
            changes.segments += 1;
            cut = Some(Some(self.next_msn));
        } else if !r.pending.is_empty()
            && (dts + est - r.pending_start) as f64 > (cfg.part_target + PART_SLACK) * ts
        {
            r.close_part(&mut self.frag_seq);
            changes.parts += 1;
            cut = Some(None);
        }
        r.push_sample(dts, frame);

        if let Some(kind) = cut {
            let secs = dts as f64 / ts;
            let lead = self.lead;
            // A following track that stalls must not hold its segments open
            // for ever: cuts older than this are applied without waiting.
            let stale_before = secs - (3.0 * cfg.segment_target).max(3.0);
            for (i, f) in self.renditions.iter_mut().enumerate() {
                if i == lead {
                    continue;
                }
                let fts = f64::from(f.timescale());
                f.cuts.push_back(((secs * fts).round() as i64, kind));
                while f
                    .cuts
                    .front()
                    .is_some_and(|(t, _)| (*t as f64 / fts) < stale_before)
                {
                    let (t, kind) = f.cuts.pop_front().unwrap_or((0, None));
                    apply_cut(f, t, kind, &mut self.frag_seq, anchor, window, changes);
                }
            }
        }
    }

    fn on_following_frame(&mut self, idx: usize, frame: &Frame, changes: &mut Changes) {
        let anchor = self.anchor_ms.unwrap_or(0);
        let window = self.config.dvr_window;
        let r = &mut self.renditions[idx];
        let Some(dts) = normalise_dts(r, frame) else {
            self.dropped_frames += 1;
            return;
        };
        // Before the start of the timeline (e.g. audio ahead of the first
        // video keyframe): nothing to play it with.
        if r.building
            .as_ref()
            .is_some_and(|b| b.parts.is_empty() && r.pending.is_empty() && dts < b.start)
        {
            r.last_dts = None;
            r.expected_next = None;
            self.dropped_frames += 1;
            return;
        }
        if !r.pending.is_empty() {
            r.settle_last(dts);
        }
        while let Some(&(t, kind)) = r.cuts.front() {
            if dts < t {
                break;
            }
            r.cuts.pop_front();
            apply_cut(r, dts, kind, &mut self.frag_seq, anchor, window, changes);
        }
        if r.building.as_ref().is_some_and(|b| b.parts.is_empty()) && r.pending.is_empty() {
            if let Some(b) = r.meta.building.as_mut() {
                b.start = dts;
            }
        }
        r.push_sample(dts, frame);
    }
}

/// Closes a following track's part (and segment) at a cut from the lead.
fn apply_cut(
    r: &mut Rendition,
    next_start: i64,
    kind: Option<u64>,
    frag_seq: &mut u32,
    anchor: i64,
    window: f64,
    changes: &mut Changes,
) {
    if r.pending.last().is_some_and(|s| s.duration == 0) {
        r.settle_last_estimated();
    }
    r.close_part(frag_seq);
    changes.parts += 1;
    if let Some(msn) = kind {
        let w = (window * f64::from(r.timescale())) as i64;
        r.close_segment(w);
        r.open_segment(msn, next_start, anchor);
        changes.segments += 1;
    }
}

fn chunks_len(chunks: &[Bytes]) -> u64 {
    chunks.iter().map(|b| b.len() as u64).sum()
}

/// Maps a frame's decode time onto the output timeline; `None` to drop it.
fn normalise_dts(r: &mut Rendition, frame: &Frame) -> Option<i64> {
    let mut dts = frame.dts + r.offset;
    if let Some(frame_dur) = r.aac_frame_duration() {
        // Millisecond input timestamps jitter AAC frames by up to a
        // millisecond; snap to the exact 1024-sample cadence while within a
        // frame of it, and resynchronise on a real gap.
        if let Some(expected) = r.expected_next {
            if (dts - expected).abs() < frame_dur {
                dts = expected;
            } else if dts < expected {
                return None; // overlap: already covered
            }
        }
        r.expected_next = Some(dts + frame_dur);
    }
    if r.last_dts.is_some_and(|last| dts <= last) {
        tracing::debug!(track = r.track.id, dts, "frame out of decode order dropped");
        return None;
    }
    Some(dts)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use vela_media::VideoCodec;

    pub(crate) fn video_track() -> Track {
        Track {
            id: 1,
            timescale: 90000,
            config: CodecConfig::Video {
                codec: VideoCodec::H264,
                width: 640,
                height: 360,
                frame_rate: Some(30.0),
                record: Bytes::from_static(&[1, 0x64, 0, 0x1e, 0xff, 0xe0, 0]),
            },
            bitrate: None,
        }
    }

    pub(crate) fn audio_track(id: u32) -> Track {
        Track {
            id,
            timescale: 48000,
            config: CodecConfig::Audio {
                codec: AudioCodec::Aac,
                sample_rate: 48000,
                channels: 2,
                specific_config: Bytes::from_static(&[0x11, 0x90]),
            },
            bitrate: None,
        }
    }

    /// Feeds `secs` of 30 fps video (GOP `gop` frames) and 48 kHz AAC, with
    /// millisecond-rounded timestamps as RTMP delivers them, interleaved in
    /// arrival order. Returns the packager.
    pub(crate) fn feed(p: &mut LivePackager, start_ms: i64, secs: f64, gop: u32, wall0: i64) {
        let mut v = 0u32;
        let mut a = 0u32;
        let vframes = (secs * 30.0) as u32;
        let aframes = (secs * 48000.0 / 1024.0) as u32;
        while v < vframes || a < aframes {
            let vt = start_ms + (f64::from(v) * 1000.0 / 30.0).round() as i64;
            let at = start_ms + (f64::from(a) * 1024.0 * 1000.0 / 48000.0).round() as i64;
            if v < vframes && (vt <= at || a >= aframes) {
                let f = Frame {
                    track_id: 1,
                    dts: vt * 90,
                    cts_offset: if v.is_multiple_of(gop) { 0 } else { 3000 },
                    keyframe: v.is_multiple_of(gop),
                    data: Bytes::from(vec![0u8; 100]),
                };
                p.push(MediaEvent::Frame(f), wall0 + vt - start_ms);
                v += 1;
            } else {
                let f = Frame {
                    track_id: 2,
                    dts: at * 48,
                    cts_offset: 0,
                    keyframe: true,
                    data: Bytes::from_static(b"aac"),
                };
                p.push(MediaEvent::Frame(f), wall0 + at - start_ms);
                a += 1;
            }
        }
    }

    fn av_packager() -> LivePackager {
        let mut p = LivePackager::new(PackagerConfig::default());
        p.push(
            MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            0,
        );
        p
    }

    #[test]
    fn segments_cut_on_keyframes_and_align_across_renditions() {
        let mut p = av_packager();
        feed(&mut p, 5_000, 10.0, 30, 1_000_000);
        let v = p.rendition("v1").unwrap();
        let a = p.rendition("a2").unwrap();
        assert!(v.segments.len() >= 4, "{} segments", v.segments.len());
        for s in &v.segments {
            assert!(
                s.parts[0].independent,
                "segment {} starts with a keyframe",
                s.msn
            );
            let secs = s.duration as f64 / 90000.0;
            assert!(
                (1.9..=2.1).contains(&secs),
                "segment {} lasts {secs}",
                s.msn
            );
            // parts stay within the advertised target
            for part in &s.parts {
                assert!(part.duration as f64 / 90000.0 <= 1.0 / 3.0 + PART_SLACK + 1e-9);
            }
        }
        for (sv, sa) in v.segments.iter().zip(a.segments.iter()) {
            assert_eq!(sv.msn, sa.msn);
            let dv = sv.start as f64 / 90000.0;
            let da = sa.start as f64 / 48000.0;
            assert!(
                (dv - da).abs() < 0.03,
                "msn {}: video at {dv}, audio at {da}",
                sv.msn
            );
        }
        assert_eq!(v.segments[0].start, 0, "output timeline starts at zero");
        assert_eq!(v.segments[0].program_date_time_ms, Some(1_000_000));
    }

    #[test]
    fn audio_samples_snap_to_the_aac_cadence() {
        let mut p = av_packager();
        feed(&mut p, 0, 4.0, 30, 0);
        let a = p.rendition("a2").unwrap();
        for s in &a.segments {
            for part in &s.parts {
                assert_eq!(part.duration % 1024, 0, "AAC parts are whole frames");
            }
        }
    }

    #[test]
    fn timeline_is_contiguous_per_rendition() {
        let mut p = av_packager();
        feed(&mut p, 0, 8.0, 30, 0);
        for r in p.renditions() {
            let mut parts = r.segments.iter().flat_map(|s| s.parts.iter());
            let mut prev = parts.next().unwrap();
            for part in parts {
                assert_eq!(
                    prev.start + prev.duration,
                    part.start,
                    "{}: gap or overlap",
                    r.id
                );
                prev = part;
            }
        }
    }

    #[test]
    fn end_closes_everything() {
        let mut p = av_packager();
        feed(&mut p, 0, 3.0, 30, 0);
        let changes = p.push(MediaEvent::End, 3_000);
        assert!(changes.ended && p.is_ended());
        for r in p.renditions() {
            assert!(r.building.is_none());
            let total: i64 = r.segments.iter().map(|s| s.duration).sum();
            let secs = total as f64 / f64::from(r.timescale());
            assert!((2.9..3.1).contains(&secs), "{} has {secs} s", r.id);
        }
    }

    #[test]
    fn discontinuity_resumes_later_with_continuing_numbers() {
        let mut p = av_packager();
        feed(&mut p, 0, 4.0, 30, 0);
        p.push(MediaEvent::Discontinuity, 4_000);
        let before = p.rendition("v1").unwrap().segments.back().unwrap().msn;
        // The new publisher starts its clock at 0 again, 3 s of wall time later.
        feed(&mut p, 0, 4.0, 30, 7_000);
        let v = p.rendition("v1").unwrap();
        let first_after = v.segments.iter().find(|s| s.msn == before + 1).unwrap();
        assert!(first_after.discontinuity);
        let start = first_after.start as f64 / 90000.0;
        assert!(
            (start - 7.0).abs() < 0.05,
            "resumes at wall-clock time, got {start}"
        );
        assert_eq!(first_after.program_date_time_ms, Some(7_000));
        let a = p.rendition("a2").unwrap();
        assert!(a
            .segments
            .iter()
            .any(|s| s.msn == before + 1 && s.discontinuity));
    }

    #[test]
    fn a_clock_jump_starts_a_new_timeline_instead_of_a_giant_segment() {
        let mut p = av_packager();
        feed(&mut p, 0, 4.0, 30, 0);
        // The encoder's clock leaps an hour ahead without a reconnect.
        feed(&mut p, 3_600_000, 4.0, 30, 4_000);
        let v = p.rendition("v1").unwrap();
        assert!(
            v.max_segment_duration as f64 / 90000.0 < 2.2,
            "no segment spans the jump"
        );
        assert_eq!(v.segments.iter().filter(|s| s.discontinuity).count(), 1);
        // ... and back to zero: the stream goes on rather than freezing.
        let before = v.segments.len();
        feed(&mut p, 0, 4.0, 30, 8_000);
        assert!(p.rendition("v1").unwrap().segments.len() > before);
        assert!(crate::hls::target_duration(&p.presentation()) <= 3);
    }

    #[test]
    fn frames_before_first_keyframe_are_dropped() {
        let mut p = av_packager();
        let f = Frame {
            track_id: 1,
            dts: 0,
            cts_offset: 0,
            keyframe: false,
            data: Bytes::new(),
        };
        p.push(MediaEvent::Frame(f), 0);
        assert_eq!(p.dropped_frames(), 1);
        assert!(p.rendition("v1").unwrap().building.is_none());
    }

    #[test]
    fn dvr_window_evicts_old_segments() {
        let mut p = LivePackager::new(PackagerConfig {
            dvr_window: 6.0,
            ..Default::default()
        });
        p.push(
            MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            0,
        );
        feed(&mut p, 0, 20.0, 30, 0);
        let v = p.rendition("v1").unwrap();
        let span: i64 = v.segments.iter().map(|s| s.duration).sum();
        assert!(span as f64 / 90000.0 <= 8.1, "window holds {span}");
        assert!(v.segment(0).is_none(), "segment 0 has left the window");
        assert!(v.segments.front().unwrap().msn > 0);
    }

    fn spool_packager(window: f64, memory: f64) -> LivePackager {
        let mut p = LivePackager::new(PackagerConfig {
            dvr_window: window,
            dvr_memory: memory,
            ..Default::default()
        });
        p.push(
            MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            0,
        );
        p
    }

    #[test]
    fn memory_horizon_is_at_least_four_segment_targets() {
        let c = PackagerConfig {
            dvr_memory: 2.0,
            ..Default::default()
        };
        assert_eq!(c.memory_horizon(), 8.0);
        assert_eq!(PackagerConfig::default().memory_horizon(), 12.0);
    }

    #[test]
    fn segments_become_spoolable_after_the_horizon() {
        let mut p = spool_packager(60.0, 8.0);
        feed(&mut p, 0, 6.0, 30, 0);
        assert!(
            p.segments_to_spool().is_empty(),
            "all within 8 s of the edge"
        );
        feed(&mut p, 6_000, 14.0, 30, 6_000);
        let before: Vec<(String, u64, Vec<u8>)> = p
            .renditions()
            .iter()
            .flat_map(|r| {
                r.segments
                    .iter()
                    .map(|s| (r.id.clone(), s.msn, r.segment_data(s.msn).unwrap().concat()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let jobs = p.segments_to_spool();
        assert!(!jobs.is_empty());
        for r in p.renditions() {
            let newest = r.segments.back().unwrap().end();
            let horizon = (8.0 * f64::from(r.timescale())) as i64;
            let mine: Vec<&SpoolJob> = jobs.iter().filter(|j| j.rid == r.id).collect();
            assert!(!mine.is_empty(), "{} has spoolable segments", r.id);
            for j in &mine {
                let seg = r.segment(j.msn).unwrap();
                assert!(
                    seg.end() <= newest - horizon,
                    "{} {} is too recent",
                    r.id,
                    j.msn
                );
                assert_eq!(j.init_version, seg.init_version);
                let (_, _, data) = before
                    .iter()
                    .find(|(rid, msn, _)| *rid == r.id && *msn == j.msn)
                    .unwrap();
                assert_eq!(
                    &j.chunks.concat(),
                    data,
                    "the job carries the segment's bytes"
                );
            }
            // The rest of the window, at least four segment targets, stays.
            let kept: i64 = r
                .segments
                .iter()
                .filter(|s| !mine.iter().any(|j| j.msn == s.msn))
                .map(|s| s.duration)
                .sum();
            assert!(kept as f64 / f64::from(r.timescale()) >= 7.9);
        }
        assert!(
            p.segments_to_spool().is_empty(),
            "each segment is handed out once"
        );
    }

    #[test]
    fn evict_keeps_the_timing_model_and_the_manifests() {
        let mut p = spool_packager(60.0, 8.0);
        feed(&mut p, 0, 20.0, 30, 0);
        let hls_before =
            crate::hls::media_playlist(&p.presentation(), "v1", crate::hls::Skip(false));
        let mpd_opts = crate::dash::MpdOptions::default();
        let mpd_before = crate::dash::mpd(&p.presentation(), 20_000, &mpd_opts);
        let mem_before = p.memory_bytes();
        let jobs = p.segments_to_spool();
        // Handed out but not yet stored: still readable from memory.
        let first = &jobs[0];
        assert!(p
            .rendition(&first.rid)
            .unwrap()
            .segment_data(first.msn)
            .is_some());
        let freed: u64 = jobs
            .iter()
            .map(|j| j.chunks.iter().map(|c| c.len() as u64).sum::<u64>())
            .sum();
        for j in &jobs {
            assert!(p.evict(&j.rid, j.msn));
        }
        assert_eq!(p.memory_bytes(), mem_before - freed);
        let r = p.rendition(&first.rid).unwrap();
        assert!(r.segment_data(first.msn).is_none());
        assert!(r.part_data(first.msn, 0).is_none());
        assert!(r.is_spooled(first.msn));
        assert!(r.segment(first.msn).is_some(), "the timing stays");
        let newest = r.segments.back().unwrap().msn;
        assert!(!r.is_spooled(newest) && r.segment_data(newest).is_some());
        assert_eq!(
            crate::hls::media_playlist(&p.presentation(), "v1", crate::hls::Skip(false)),
            hls_before
        );
        assert_eq!(
            crate::dash::mpd(&p.presentation(), 20_000, &mpd_opts),
            mpd_before
        );
        assert!(!p.evict("v1", 999), "not in the window");
        assert!(!p.evict("nope", first.msn));
    }

    #[test]
    fn spooled_segments_leaving_the_window_are_reported_once() {
        let mut p = spool_packager(12.0, 4.0);
        feed(&mut p, 0, 20.0, 30, 0);
        let mut stored = Vec::new();
        for j in p.segments_to_spool() {
            assert!(p.evict(&j.rid, j.msn));
            stored.push((j.rid, j.msn));
        }
        assert!(
            p.take_spool_removals().is_empty(),
            "all still in the window"
        );
        // A segment handed out but not stored before it leaves the window.
        feed(&mut p, 20_000, 2.0, 30, 20_000);
        let late = p.segments_to_spool();
        assert!(!late.is_empty());
        feed(&mut p, 22_000, 30.0, 30, 22_000);
        let removed = p.take_spool_removals();
        assert_eq!(removed.len(), stored.len(), "{removed:?} vs {stored:?}");
        for k in &stored {
            assert!(removed.contains(k));
        }
        assert!(p.take_spool_removals().is_empty());
        for j in &late {
            assert!(!p.evict(&j.rid, j.msn), "gone: the caller deletes its copy");
        }
    }

    #[test]
    fn memory_stays_bounded_by_the_horizon_when_spooled() {
        let mut p = spool_packager(3600.0, 8.0);
        let mut peak_late = 0;
        for i in 0..60i64 {
            feed(&mut p, i * 10_000, 10.0, 30, i * 10_000);
            for j in p.segments_to_spool() {
                p.evict(&j.rid, j.msn);
            }
            if i >= 5 {
                peak_late = peak_late.max(p.memory_bytes());
            }
        }
        let v = p.rendition("v1").unwrap();
        assert!(v.segments.len() > 250, "the window keeps growing");
        let in_memory = v
            .segments
            .iter()
            .filter(|s| v.segment_data(s.msn).is_some())
            .count();
        assert!(
            (4..=6).contains(&in_memory),
            "{in_memory} segments in memory"
        );
        // 10 minutes of media, a few segments' worth in memory.
        let total: u64 = p.renditions().iter().map(|r| r.bytes_total).sum();
        assert!(peak_late * 20 < total, "{peak_late} of {total}");
    }

    #[test]
    fn has_part_semantics_follow_ll_hls() {
        let mut p = av_packager();
        feed(&mut p, 0, 4.5, 30, 0);
        let v = p.rendition("v1").unwrap();
        let (msn, part) = v.last_part().unwrap();
        assert!(v.has(msn, Some(part)));
        assert!(!v.has(msn, Some(part + 1)));
        let first = v.segments.front().unwrap();
        // asking past the end of a complete segment means the next segment's first part
        assert!(v.has(first.msn, Some(first.parts.len())));
        assert!(!v.has(msn + 1, None));
    }

    #[test]
    fn audio_only_stream_leads_with_audio() {
        let mut p = LivePackager::new(PackagerConfig::default());
        p.push(MediaEvent::Tracks(Arc::new(vec![audio_track(1)])), 0);
        for i in 0..300i64 {
            let dts = (i * 1024 * 1000 / 48000) * 48;
            let f = Frame {
                track_id: 1,
                dts,
                cts_offset: 0,
                keyframe: true,
                data: Bytes::from_static(b"a"),
            };
            p.push(MediaEvent::Frame(f), i * 21);
        }
        let a = p.rendition("a1").unwrap();
        assert!(a.segments.len() >= 2);
        assert!(a.segments[0].parts.len() >= 5);
    }
    /// xorshift64*: deterministic pseudo-random input without a dependency.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Drives the packager with one pseudo-random event.
    pub(crate) fn random_event(rng: &mut Rng, dts: &mut [i64; 3]) -> MediaEvent {
        match rng.next() % 100 {
            0 => MediaEvent::Discontinuity,
            1 => MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            2 => {
                let mut v = video_track();
                if let CodecConfig::Video { width, .. } = &mut v.config {
                    *width = 1280;
                }
                MediaEvent::Tracks(Arc::new(vec![v, audio_track(2)]))
            }
            3 => MediaEvent::End,
            n => {
                let track = 1 + (rng.next() % 3) as u32; // track 3 does not exist
                let slot = (track - 1) as usize;
                let step = match n % 10 {
                    0 => -((rng.next() % 1_000_000) as i64), // back
                    1 => (rng.next() % 100_000_000) as i64,  // far forward
                    2 => i64::from(u32::MAX) * if track == 1 { 90 } else { 48 }, // a wrap's worth
                    _ => 1 + (rng.next() % 4000) as i64,
                };
                dts[slot] = dts[slot].saturating_add(step);
                MediaEvent::Frame(Frame {
                    track_id: track,
                    dts: dts[slot],
                    cts_offset: (rng.next() % 9000) as i32 - 1000,
                    keyframe: rng.next().is_multiple_of(20),
                    data: Bytes::from(vec![0u8; (rng.next() % 64) as usize]),
                })
            }
        }
    }

    #[test]
    fn hostile_timestamps_and_events_keep_the_timeline_sane() {
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut p = LivePackager::new(PackagerConfig {
                dvr_window: 30.0,
                ..Default::default()
            });
            p.push(
                MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
                0,
            );
            let mut dts = [0i64; 3];
            let mut now = 0i64;
            for _ in 0..3000 {
                now += (rng.next() % 40) as i64;
                let ev = random_event(&mut rng, &mut dts);
                let ended = matches!(ev, MediaEvent::End);
                p.push(ev, now);
                if ended {
                    // A stream that ended stays ended; start a fresh one.
                    p = LivePackager::new(PackagerConfig {
                        dvr_window: 30.0,
                        ..Default::default()
                    });
                    p.push(
                        MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
                        now,
                    );
                }
            }
            for r in p.renditions() {
                let mut last_msn = None;
                let mut last_end = i64::MIN;
                for s in r.segments.iter().chain(r.building.iter()) {
                    if let Some(m) = last_msn {
                        assert!(s.msn > m, "seed {seed} {}: msn {} after {m}", r.id, s.msn);
                    }
                    last_msn = Some(s.msn);
                    for part in &s.parts {
                        assert!(
                            part.start >= last_end,
                            "seed {seed} {}: part at {} before {last_end}",
                            r.id,
                            part.start
                        );
                        assert!(part.duration > 0);
                        last_end = part.start + part.duration;
                    }
                }
            }
        }
    }
}
