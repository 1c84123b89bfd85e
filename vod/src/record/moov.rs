//! The per-track sample log a piece keeps in memory, and the `moov` built
//! from it when the piece is finished.
//!
//! Layout follows what ffmpeg's MP4 muxer writes for a progressive file:
//! `mvhd`, then per track `tkhd`, an `edts` only when needed, and `mdia`
//! (`mdhd`, `hdlr`, `minf` with `vmhd`/`smhd`, `dinf`, `stbl`). The sample
//! tables are `stsd` (the packager's sample entry, so live, VOD and recorded
//! init segments agree), `stts`, `stss` (video, unless every sample is a
//! sync sample), `ctts` (when any composition offset is not 0; version 1
//! only when one is negative, as ffmpeg and mp4-atom do), `stsc`, `stsz` and
//! `co64`. A chunk is a run of consecutive samples of one track in the file.
//!
//! Time: every table starts at decode time 0, so a track whose first sample
//! is later on the piece's timeline (audio that started after the first
//! keyframe) gets an empty edit of that delay, and a lead video track whose
//! first sample has a composition delay (B-frames) gets a media edit starting
//! at that offset, so players present its first picture at 0, as ffmpeg does.
//! The movie timescale is the lead track's, so edits are exact on it.

use bytes::Bytes;
use vela_media::{CodecConfig, Track};
use vela_packager::boxes::{write_stsd, BoxWriter};

use super::RecordError;

/// One sample of a track log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Decode time on the piece's timeline (track timescale), >= 0.
    pub dts: i64,
    pub size: u32,
    pub cts: i32,
    pub keyframe: bool,
}

/// A track of the piece and what has been recorded of it.
#[derive(Debug, Clone)]
pub struct TrackLog {
    pub track: Track,
    pub samples: Vec<Entry>,
    /// (file offset, sample count) per chunk.
    pub chunks: Vec<(u64, u32)>,
}

impl TrackLog {
    pub fn new(track: Track) -> Self {
        TrackLog {
            track,
            samples: Vec::new(),
            chunks: Vec::new(),
        }
    }

    pub fn is_video(&self) -> bool {
        matches!(self.track.config, CodecConfig::Video { .. })
    }

    /// Appends a sample at `offset`; `new_chunk` when another track's sample
    /// (or nothing) precedes it in the file.
    pub fn push(&mut self, e: Entry, offset: u64, new_chunk: bool) {
        match self.chunks.last_mut() {
            Some((_, n)) if !new_chunk => *n += 1,
            _ => self.chunks.push((offset, 1)),
        }
        self.samples.push(e);
    }

    /// The duration given to the last sample: for AAC one frame (1024
    /// samples at the sample rate); for video the previous sample's, or one
    /// frame at the announced rate (30 fps when none).
    pub fn last_duration(&self) -> u32 {
        let ts = u64::from(self.track.timescale.max(1));
        match &self.track.config {
            CodecConfig::Audio { sample_rate, .. } if *sample_rate > 0 => {
                let d = (1024 * ts + u64::from(*sample_rate) / 2) / u64::from(*sample_rate);
                d.clamp(1, u64::from(u32::MAX)) as u32
            }
            config => {
                let n = self.samples.len();
                if n >= 2 {
                    let d = self.samples[n - 1].dts - self.samples[n - 2].dts;
                    if let Ok(d) = u32::try_from(d) {
                        if d > 0 {
                            return d;
                        }
                    }
                }
                let fps = match config {
                    CodecConfig::Video {
                        frame_rate: Some(f),
                        ..
                    } if f.is_finite() && *f >= 1.0 && *f <= 1000.0 => *f,
                    CodecConfig::Audio { .. } => ts as f64 / 1024.0,
                    _ => 30.0,
                };
                ((ts as f64 / fps).round() as u64).clamp(1, u64::from(u32::MAX)) as u32
            }
        }
    }

    /// Where the track's timeline ends: the last sample's decode time plus
    /// its duration; 0 when empty.
    pub fn end(&self) -> i64 {
        match self.samples.last() {
            Some(e) => e.dts.saturating_add(i64::from(self.last_duration())),
            None => 0,
        }
    }

    /// The end of the last presented sample: the largest `dts + cts +
    /// duration`; 0 when empty.
    pub fn presentation_end(&self) -> i64 {
        let last = i64::from(self.last_duration());
        let s = &self.samples;
        s.iter()
            .enumerate()
            .map(|(i, e)| {
                let next = s.get(i + 1).map_or(e.dts.saturating_add(last), |n| n.dts);
                next.saturating_add(i64::from(e.cts))
            })
            .max()
            .unwrap_or(0)
    }

    /// Sum of the sample durations.
    pub fn duration(&self) -> u64 {
        match self.samples.first() {
            Some(first) => (self.end() - first.dts).max(0) as u64,
            None => 0,
        }
    }
}

/// `v * to / from`, rounded to nearest; saturating.
pub fn rescale(v: i64, from: u32, to: u32) -> i64 {
    if from == to {
        return v;
    }
    let from = i128::from(from.max(1));
    let n = i128::from(v) * i128::from(to);
    let r = if n >= 0 {
        (n + from / 2) / from
    } else {
        (n - from / 2) / from
    };
    r.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn rescale_up(v: u64, from: u32, to: u32) -> u64 {
    let from = u128::from(from.max(1));
    let n = u128::from(v) * u128::from(to);
    n.div_ceil(from).min(u128::from(u64::MAX)) as u64
}

fn put_u32(w: &mut BoxWriter, v: u32) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(w: &mut BoxWriter, v: u64) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn write_matrix(w: &mut BoxWriter) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        put_u32(w, v);
    }
}

/// A full box whose times are 32-bit in version 0 and 64-bit in version 1.
fn times_version(values: &[u64]) -> u8 {
    u8::from(values.iter().any(|&v| v > u64::from(u32::MAX)))
}

/// Builds the `moov` for the tracks that have samples. `lead` is the track
/// whose timescale is the movie's and which may carry a B-frame edit.
pub fn build_moov(logs: &[TrackLog], lead: usize) -> Result<Bytes, RecordError> {
    let present: Vec<&TrackLog> = logs.iter().filter(|t| !t.samples.is_empty()).collect();
    if present.is_empty() {
        return Err(RecordError::NoSamples);
    }
    let movie_ts = logs
        .get(lead)
        .filter(|t| !t.samples.is_empty())
        .unwrap_or(present[0])
        .track
        .timescale;
    let samples: usize = present.iter().map(|t| t.samples.len()).sum();
    let chunks: usize = present.iter().map(|t| t.chunks.len()).sum();
    // Our own counts (bounded by the piece's sample cap), not a file's.
    let mut w = BoxWriter::with_capacity(1024 + 512 * present.len() + samples * 24 + chunks * 20);

    struct Plan<'a> {
        log: &'a TrackLog,
        /// Empty edit (movie timescale) and media time (track timescale).
        edit: Option<(u64, u64)>,
        media_duration: u64,
        /// Presentation span on the movie timescale.
        movie_duration: u64,
    }
    let plans: Vec<Plan> = present
        .iter()
        .map(|log| {
            let ts = log.track.timescale;
            let first = log.samples[0];
            let empty = rescale(first.dts, ts, movie_ts).max(0) as u64;
            let is_lead = logs.get(lead).is_some_and(|l| l.track.id == log.track.id);
            let media_time = if is_lead && log.is_video() {
                first.cts.max(0) as u64
            } else {
                0
            };
            let media_duration = log.duration();
            let edit = (empty > 0 || media_time > 0).then_some((empty, media_time));
            // The edit covers the track's presentation span from its start.
            let start = first.dts.saturating_add(media_time as i64);
            let span = log.presentation_end().saturating_sub(start).max(0) as u64;
            let movie_duration = empty.saturating_add(rescale_up(span, ts, movie_ts));
            Plan {
                log,
                edit,
                media_duration,
                movie_duration,
            }
        })
        .collect();
    let movie_duration = plans.iter().map(|p| p.movie_duration).max().unwrap_or(0);
    let next_id = present.iter().map(|t| t.track.id).max().unwrap_or(0);

    w.begin(b"moov");
    let v = times_version(&[movie_duration]);
    w.begin_full(b"mvhd", v, 0);
    if v == 1 {
        put_u64(&mut w, 0);
        put_u64(&mut w, 0);
        put_u32(&mut w, movie_ts);
        put_u64(&mut w, movie_duration);
    } else {
        put_u32(&mut w, 0);
        put_u32(&mut w, 0);
        put_u32(&mut w, movie_ts);
        put_u32(&mut w, movie_duration as u32);
    }
    put_u32(&mut w, 0x0001_0000); // rate 1.0
    w.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
    w.extend_from_slice(&[0; 10]);
    write_matrix(&mut w);
    w.extend_from_slice(&[0; 24]);
    put_u32(&mut w, next_id.saturating_add(1));
    w.end();
    for p in &plans {
        write_trak(&mut w, p.log, p.edit, p.media_duration, p.movie_duration);
    }
    w.end();
    Ok(w.finish().freeze())
}

fn write_trak(
    w: &mut BoxWriter,
    log: &TrackLog,
    edit: Option<(u64, u64)>,
    media_duration: u64,
    movie_duration: u64,
) {
    let t = &log.track;
    let (is_video, width, height) = match &t.config {
        CodecConfig::Video { width, height, .. } => (true, *width, *height),
        CodecConfig::Audio { .. } => (false, 0, 0),
    };
    w.begin(b"trak");
    let v = times_version(&[movie_duration]);
    w.begin_full(b"tkhd", v, 0x3); // enabled, in movie
    if v == 1 {
        put_u64(w, 0);
        put_u64(w, 0);
        put_u32(w, t.id);
        put_u32(w, 0);
        put_u64(w, movie_duration);
    } else {
        put_u32(w, 0);
        put_u32(w, 0);
        put_u32(w, t.id);
        put_u32(w, 0);
        put_u32(w, movie_duration as u32);
    }
    w.extend_from_slice(&[0; 8]);
    w.extend_from_slice(&0u16.to_be_bytes()); // layer
    w.extend_from_slice(&u16::from(!is_video).to_be_bytes()); // alternate group
    w.extend_from_slice(&(if is_video { 0u16 } else { 0x0100 }).to_be_bytes());
    w.extend_from_slice(&[0; 2]);
    write_matrix(w);
    put_u32(w, u32::from(width) << 16);
    put_u32(w, u32::from(height) << 16);
    w.end();

    if let Some((empty, media_time)) = edit {
        let media_span = movie_duration - empty;
        let v = times_version(&[empty, media_span, media_time]);
        w.begin(b"edts");
        w.begin_full(b"elst", v, 0);
        put_u32(w, if empty > 0 { 2 } else { 1 });
        let entry = |w: &mut BoxWriter, duration: u64, time: i64| {
            if v == 1 {
                put_u64(w, duration);
                w.extend_from_slice(&time.to_be_bytes());
            } else {
                put_u32(w, duration as u32);
                w.extend_from_slice(&(time as i32).to_be_bytes());
            }
            put_u32(w, 0x0001_0000); // rate 1.0
        };
        if empty > 0 {
            entry(w, empty, -1);
        }
        entry(w, media_span, media_time as i64);
        w.end();
        w.end();
    }

    w.begin(b"mdia");
    let v = times_version(&[media_duration]);
    w.begin_full(b"mdhd", v, 0);
    if v == 1 {
        put_u64(w, 0);
        put_u64(w, 0);
        put_u32(w, t.timescale);
        put_u64(w, media_duration);
    } else {
        put_u32(w, 0);
        put_u32(w, 0);
        put_u32(w, t.timescale);
        put_u32(w, media_duration as u32);
    }
    w.extend_from_slice(&0x55c4u16.to_be_bytes()); // "und"
    w.extend_from_slice(&[0; 2]);
    w.end();
    w.begin_full(b"hdlr", 0, 0);
    put_u32(w, 0);
    w.extend_from_slice(if is_video { b"vide" } else { b"soun" });
    w.extend_from_slice(&[0; 12]);
    w.extend_from_slice(if is_video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    w.end();
    w.begin(b"minf");
    if is_video {
        w.begin_full(b"vmhd", 0, 1);
        w.extend_from_slice(&[0; 8]);
    } else {
        w.begin_full(b"smhd", 0, 0);
        put_u32(w, 0);
    }
    w.end();
    w.begin(b"dinf");
    w.begin_full(b"dref", 0, 0);
    put_u32(w, 1);
    w.begin_full(b"url ", 0, 1); // media is in this file
    w.end();
    w.end();
    w.end();
    write_stbl(w, log, is_video);
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak
}

/// Run-length encodes `values` into (count, value) pairs.
fn runs<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Vec<(u32, T)> {
    let mut out: Vec<(u32, T)> = Vec::new();
    for v in values {
        match out.last_mut() {
            Some((n, last)) if *last == v && *n < u32::MAX => *n += 1,
            _ => out.push((1, v)),
        }
    }
    out
}

fn write_stbl(w: &mut BoxWriter, log: &TrackLog, is_video: bool) {
    let s = &log.samples;
    w.begin(b"stbl");
    write_stsd(w, &log.track);

    let last = log.last_duration();
    let deltas = s.windows(2).map(|p| {
        // Checked when the samples were taken: 1..=u32::MAX.
        u32::try_from(p[1].dts - p[0].dts).unwrap_or(u32::MAX)
    });
    let stts = runs(deltas.chain(std::iter::once(last)));
    w.begin_full(b"stts", 0, 0);
    put_u32(w, stts.len() as u32);
    for (n, d) in stts {
        put_u32(w, n);
        put_u32(w, d);
    }
    w.end();

    if is_video && s.iter().any(|e| !e.keyframe) {
        let syncs = s.iter().filter(|e| e.keyframe).count();
        w.begin_full(b"stss", 0, 0);
        put_u32(w, syncs as u32);
        for (i, _) in s.iter().enumerate().filter(|(_, e)| e.keyframe) {
            put_u32(w, i as u32 + 1);
        }
        w.end();
    }

    if s.iter().any(|e| e.cts != 0) {
        let negative = s.iter().any(|e| e.cts < 0);
        let ctts = runs(s.iter().map(|e| e.cts));
        w.begin_full(b"ctts", u8::from(negative), 0);
        put_u32(w, ctts.len() as u32);
        for (n, c) in ctts {
            put_u32(w, n);
            w.extend_from_slice(&c.to_be_bytes());
        }
        w.end();
    }

    let stsc = runs(log.chunks.iter().map(|c| c.1));
    w.begin_full(b"stsc", 0, 0);
    put_u32(w, stsc.len() as u32);
    let mut first_chunk = 1u32;
    for (n, per_chunk) in stsc {
        put_u32(w, first_chunk);
        put_u32(w, per_chunk);
        put_u32(w, 1); // sample description index
        first_chunk = first_chunk.saturating_add(n);
    }
    w.end();

    w.begin_full(b"stsz", 0, 0);
    let size0 = s[0].size;
    if s.iter().all(|e| e.size == size0) {
        put_u32(w, size0);
        put_u32(w, s.len() as u32);
    } else {
        put_u32(w, 0);
        put_u32(w, s.len() as u32);
        for e in s {
            put_u32(w, e.size);
        }
    }
    w.end();

    w.begin_full(b"co64", 0, 0);
    put_u32(w, log.chunks.len() as u32);
    for (offset, _) in &log.chunks {
        put_u64(w, *offset);
    }
    w.end();
    w.end(); // stbl
}
