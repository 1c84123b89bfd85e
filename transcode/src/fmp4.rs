//! A small, lenient index of the fragmented MP4 input: the video track's
//! timescale and sample entry (codec) from the init segment, and every
//! sample's decode and presentation time from the fragments' `tfdt` and
//! `trun` boxes.
//!
//! GStreamer does the demuxing and decoding; this index exists so that the
//! thumbnailer knows, before it starts a pipeline, which frame is shown at
//! the asked time, whether that time lies past the end, and which decoder it
//! needs. Timestamps are on the fragments' own timeline (`tfdt` plus the
//! composition offsets), edit lists are ignored on purpose.
//!
//! The input arrives as a list of `Bytes` pieces cut anywhere (not on box
//! boundaries), so the top-level walk reads headers across pieces and copies
//! only `moov` and `moof` bodies (small, capped); `mdat` is skipped. Every
//! size field is checked against its parent, sample counts are bounded by
//! the bytes that carry them (or by [`MAX_SAMPLES`]), and a malformed box is
//! an error, never a panic.

use bytes::Bytes;

/// At most this many samples in one input (a 2 s segment at 60 fps has 120).
pub const MAX_SAMPLES: usize = 1 << 20;
/// Largest `moov` or `moof` this reader copies out of the pieces.
const MAX_HEADER_BOX: u64 = 16 << 20;

/// Why the input is not a usable fragmented MP4 of one video track.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("malformed {what} at byte {offset}: {why}")]
    Malformed {
        what: &'static str,
        offset: u64,
        why: &'static str,
    },
    #[error("a {0} box comes before the init segment's moov")]
    NoInit(&'static str),
    #[error("the input has no moov (init segment)")]
    NoMoov,
    #[error("the input has more than one moov")]
    SecondMoov,
    #[error("the init segment has no video track")]
    NoVideoTrack,
    #[error("the init segment has {0} video tracks; one is expected")]
    ManyVideoTracks(usize),
    #[error("the video track has timescale 0")]
    ZeroTimescale,
    #[error("the fragments hold no sample of the video track")]
    NoSamples,
    #[error("a {what} box of {size} bytes is larger than the {limit} bytes allowed")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("the fragments hold more than {MAX_SAMPLES} samples")]
    TooManySamples,
    #[error("sample timestamps overflow")]
    TimeOverflow,
}

/// One sample's times, in the track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleTime {
    pub dts: i64,
    pub pts: i64,
    pub duration: u32,
}

/// What the thumbnailer needs to know about the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackIndex {
    pub track_id: u32,
    pub timescale: u32,
    /// The sample entry's four-character code (`avc1`, `hvc1`, ...).
    pub sample_entry: [u8; 4],
    /// In decode order, as the fragments list them.
    pub samples: Vec<SampleTime>,
}

/// Reads the index of `pieces`, which concatenated form an init segment
/// followed by media fragments.
pub fn index(pieces: &[Bytes]) -> Result<TrackIndex, InputError> {
    let input = Pieces::new(pieces);
    let mut track: Option<TrackIndex> = None;
    let mut defaults = TrackDefaults::default();
    let mut next_dts: i64 = 0;
    let mut at = 0u64;
    while at < input.total {
        let mut head = [0u8; 16];
        let avail = (input.total - at).min(16) as usize;
        input.copy(at, &mut head[..avail]);
        let (size, header) =
            box_size(&head[..avail], input.total - at).ok_or(InputError::Malformed {
                what: "top-level box",
                offset: at,
                why: "bad size",
            })?;
        let kind = [head[4], head[5], head[6], head[7]];
        let body_len = size - header;
        match &kind {
            b"moov" => {
                if track.is_some() {
                    return Err(InputError::SecondMoov);
                }
                let body = input.read_box_body(at + header, body_len, "moov")?;
                let (t, d) = parse_moov(&body, at)?;
                track = Some(t);
                defaults = d;
            }
            b"moof" => {
                let Some(t) = track.as_mut() else {
                    return Err(InputError::NoInit("moof"));
                };
                let body = input.read_box_body(at + header, body_len, "moof")?;
                parse_moof(&body, at, t, &defaults, &mut next_dts)?;
            }
            b"mdat" if track.is_none() => return Err(InputError::NoInit("mdat")),
            // ftyp, styp, sidx, prft, emsg, free, mdat...: nothing to index.
            _ => {}
        }
        at += size;
    }
    let track = track.ok_or(InputError::NoMoov)?;
    if track.samples.is_empty() {
        return Err(InputError::NoSamples);
    }
    Ok(track)
}

/// The input as one logical byte string over its pieces.
struct Pieces<'a> {
    pieces: &'a [Bytes],
    /// Offset of each piece's first byte.
    starts: Vec<u64>,
    total: u64,
}

impl<'a> Pieces<'a> {
    fn new(pieces: &'a [Bytes]) -> Self {
        let mut starts = Vec::with_capacity(pieces.len());
        let mut total = 0u64;
        for p in pieces {
            starts.push(total);
            total += p.len() as u64;
        }
        Pieces {
            pieces,
            starts,
            total,
        }
    }

    /// Copies `out.len()` bytes from `at`; the caller keeps the range inside
    /// `total`.
    fn copy(&self, at: u64, out: &mut [u8]) {
        // The last piece starting at or before `at` (empty pieces skipped by
        // the loop below).
        let mut i = self.starts.partition_point(|&s| s <= at).saturating_sub(1);
        let mut pos = at;
        let mut done = 0;
        while done < out.len() && i < self.pieces.len() {
            let piece = &self.pieces[i];
            let off = (pos - self.starts[i]) as usize;
            if off < piece.len() {
                let n = (piece.len() - off).min(out.len() - done);
                out[done..done + n].copy_from_slice(&piece[off..off + n]);
                done += n;
                pos += n as u64;
            }
            i += 1;
        }
    }

    fn read_box_body(&self, at: u64, len: u64, what: &'static str) -> Result<Vec<u8>, InputError> {
        if len > MAX_HEADER_BOX {
            return Err(InputError::TooLarge {
                what,
                size: len,
                limit: MAX_HEADER_BOX,
            });
        }
        let mut body = vec![0u8; len as usize];
        self.copy(at, &mut body);
        Ok(body)
    }
}

/// `(size, header length)` of the box whose header starts `head`, which has
/// `room` bytes up to the end of its parent; `None` when the header is
/// truncated or the size does not fit.
fn box_size(head: &[u8], room: u64) -> Option<(u64, u64)> {
    let size32 = u32::from_be_bytes(head.get(0..4)?.try_into().ok()?);
    head.get(4..8)?;
    let (size, header) = match size32 {
        0 => (room, 8),
        1 => (u64::from_be_bytes(head.get(8..16)?.try_into().ok()?), 16),
        s => (u64::from(s), 8),
    };
    (size >= header && size <= room).then_some((size, header))
}

/// The child boxes of a body held in memory: `(kind, body, offset of the
/// box within the input)`.
struct Children<'a> {
    buf: &'a [u8],
    at: usize,
    base: u64,
    what: &'static str,
}

fn children<'a>(buf: &'a [u8], base: u64, what: &'static str) -> Children<'a> {
    Children {
        buf,
        at: 0,
        base,
        what,
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<([u8; 4], &'a [u8]), InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.at..];
        let Some((size, header)) = box_size(rest, rest.len() as u64) else {
            let err = InputError::Malformed {
                what: self.what,
                offset: self.base + self.at as u64,
                why: "child box truncated or larger than its parent",
            };
            self.at = self.buf.len();
            return Some(Err(err));
        };
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let body = &rest[header as usize..size as usize];
        self.at += size as usize;
        Some(Ok((kind, body)))
    }
}

fn child<'a>(
    buf: &'a [u8],
    base: u64,
    what: &'static str,
    kind: &[u8; 4],
) -> Result<Option<&'a [u8]>, InputError> {
    for c in children(buf, base, what) {
        let (k, body) = c?;
        if &k == kind {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

/// A bounds-checked big-endian reader over a box body.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    what: &'static str,
    base: u64,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str, base: u64) -> Self {
        Reader {
            buf,
            at: 0,
            what,
            base,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], InputError> {
        if self.remaining() < n {
            return Err(InputError::Malformed {
                what: self.what,
                offset: self.base + self.at as u64,
                why: "body truncated",
            });
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, InputError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, InputError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A full box's version and flags.
    fn version_flags(&mut self) -> Result<(u8, u32), InputError> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }
}

/// Defaults from the video track's `trex`.
#[derive(Debug, Default, Clone, Copy)]
struct TrackDefaults {
    duration: u32,
}

fn parse_moov(body: &[u8], base: u64) -> Result<(TrackIndex, TrackDefaults), InputError> {
    let mut videos = Vec::new();
    let mut mvex = None;
    for c in children(body, base, "moov") {
        match c? {
            (k, trak) if &k == b"trak" => {
                if let Some(t) = parse_trak(trak, base)? {
                    videos.push(t);
                }
            }
            (k, m) if &k == b"mvex" => mvex = Some(m),
            _ => {}
        }
    }
    let track = match videos.len() {
        0 => return Err(InputError::NoVideoTrack),
        1 => videos.pop().expect("one element"),
        n => return Err(InputError::ManyVideoTracks(n)),
    };
    let mut defaults = TrackDefaults::default();
    if let Some(mvex) = mvex {
        for c in children(mvex, base, "mvex") {
            let (k, trex) = c?;
            if &k != b"trex" {
                continue;
            }
            let mut r = Reader::new(trex, "trex", base);
            r.version_flags()?;
            if r.u32()? == track.track_id {
                r.u32()?; // default_sample_description_index
                defaults.duration = r.u32()?;
            }
        }
    }
    Ok((track, defaults))
}

/// The track, when it is a video track (`hdlr` `vide`).
fn parse_trak(trak: &[u8], base: u64) -> Result<Option<TrackIndex>, InputError> {
    let missing = |why| InputError::Malformed {
        what: "trak",
        offset: base,
        why,
    };
    let tkhd = child(trak, base, "trak", b"tkhd")?.ok_or_else(|| missing("no tkhd"))?;
    let mut r = Reader::new(tkhd, "tkhd", base);
    let (version, _) = r.version_flags()?;
    r.take(if version == 1 { 16 } else { 8 })?; // creation + modification time
    let track_id = r.u32()?;

    let mdia = child(trak, base, "trak", b"mdia")?.ok_or_else(|| missing("no mdia"))?;
    let hdlr = child(mdia, base, "mdia", b"hdlr")?.ok_or_else(|| missing("no hdlr"))?;
    let mut r = Reader::new(hdlr, "hdlr", base);
    r.version_flags()?;
    r.u32()?; // pre_defined
    if r.take(4)? != b"vide" {
        return Ok(None);
    }

    let mdhd = child(mdia, base, "mdia", b"mdhd")?.ok_or_else(|| missing("no mdhd"))?;
    let mut r = Reader::new(mdhd, "mdhd", base);
    let (version, _) = r.version_flags()?;
    r.take(if version == 1 { 16 } else { 8 })?;
    let timescale = r.u32()?;
    if timescale == 0 {
        return Err(InputError::ZeroTimescale);
    }

    let minf = child(mdia, base, "mdia", b"minf")?.ok_or_else(|| missing("no minf"))?;
    let stbl = child(minf, base, "minf", b"stbl")?.ok_or_else(|| missing("no stbl"))?;
    let stsd = child(stbl, base, "stbl", b"stsd")?.ok_or_else(|| missing("no stsd"))?;
    let mut r = Reader::new(stsd, "stsd", base);
    r.version_flags()?;
    r.u32()?; // entry_count; the first entry is the one that matters
    let first = children(&stsd[r.at..], base, "stsd")
        .next()
        .ok_or_else(|| missing("empty stsd"))??;
    Ok(Some(TrackIndex {
        track_id,
        timescale,
        sample_entry: first.0,
        samples: Vec::new(),
    }))
}

const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x02;
const TFHD_DEFAULT_DURATION: u32 = 0x08;

const TRUN_DATA_OFFSET: u32 = 0x01;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x04;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTO: u32 = 0x800;

fn parse_moof(
    body: &[u8],
    base: u64,
    track: &mut TrackIndex,
    defaults: &TrackDefaults,
    next_dts: &mut i64,
) -> Result<(), InputError> {
    for c in children(body, base, "moof") {
        let (k, traf) = c?;
        if &k != b"traf" {
            continue;
        }
        let tfhd = child(traf, base, "traf", b"tfhd")?.ok_or(InputError::Malformed {
            what: "traf",
            offset: base,
            why: "no tfhd",
        })?;
        let mut r = Reader::new(tfhd, "tfhd", base);
        let (_, flags) = r.version_flags()?;
        if r.u32()? != track.track_id {
            continue;
        }
        if flags & TFHD_BASE_DATA_OFFSET != 0 {
            r.u64()?;
        }
        if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
            r.u32()?;
        }
        let default_duration = if flags & TFHD_DEFAULT_DURATION != 0 {
            r.u32()?
        } else {
            defaults.duration
        };

        for c in children(traf, base, "traf") {
            match c? {
                (k, tfdt) if &k == b"tfdt" => {
                    let mut r = Reader::new(tfdt, "tfdt", base);
                    let (version, _) = r.version_flags()?;
                    let t = if version == 1 {
                        r.u64()?
                    } else {
                        u64::from(r.u32()?)
                    };
                    *next_dts = i64::try_from(t).map_err(|_| InputError::TimeOverflow)?;
                }
                (k, trun) if &k == b"trun" => {
                    parse_trun(trun, base, default_duration, next_dts, &mut track.samples)?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn parse_trun(
    trun: &[u8],
    base: u64,
    default_duration: u32,
    next_dts: &mut i64,
    out: &mut Vec<SampleTime>,
) -> Result<(), InputError> {
    let mut r = Reader::new(trun, "trun", base);
    let (_version, flags) = r.version_flags()?;
    let count = r.u32()? as usize;
    if flags & TRUN_DATA_OFFSET != 0 {
        r.u32()?;
    }
    if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
        r.u32()?;
    }
    let per_sample = 4 * [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO]
        .iter()
        .filter(|&&f| flags & f != 0)
        .count();
    // The count is bounded by the bytes that carry the entries, and in any
    // case by MAX_SAMPLES, before anything is allocated for it.
    if per_sample > 0 && count > r.remaining() / per_sample {
        return Err(InputError::Malformed {
            what: "trun",
            offset: base,
            why: "sample count larger than the box",
        });
    }
    if out.len().saturating_add(count) > MAX_SAMPLES {
        return Err(InputError::TooManySamples);
    }
    out.reserve(count);
    for _ in 0..count {
        let duration = if flags & TRUN_DURATION != 0 {
            r.u32()?
        } else {
            default_duration
        };
        if flags & TRUN_SIZE != 0 {
            r.u32()?;
        }
        if flags & TRUN_FLAGS != 0 {
            r.u32()?;
        }
        // Signed whatever the version, as GStreamer's qtdemux reads it.
        let cto = if flags & TRUN_CTO != 0 {
            i64::from(r.u32()? as i32)
        } else {
            0
        };
        let dts = *next_dts;
        let pts = dts.checked_add(cto).ok_or(InputError::TimeOverflow)?;
        out.push(SampleTime { dts, pts, duration });
        *next_dts = dts
            .checked_add(i64::from(duration))
            .ok_or(InputError::TimeOverflow)?;
    }
    Ok(())
}

/// Which frame is shown at a time, by the samples' presentation times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// The sample with this presentation time (the largest one at or before
    /// the time, or the first frame for a time before it).
    Frame { pts: i64 },
    /// The time is at or after the end of the last frame.
    PastEnd,
}

impl TrackIndex {
    /// The frame shown at `t` (in the track's timescale).
    pub fn shown_at(&self, t: i64) -> Shown {
        let mut best: Option<i64> = None;
        let mut first: Option<i64> = None;
        let mut end: Option<i64> = None;
        for s in &self.samples {
            first = Some(first.map_or(s.pts, |f| f.min(s.pts)));
            if s.pts <= t {
                best = Some(best.map_or(s.pts, |b| b.max(s.pts)));
            }
            // A frame covers [pts, pts + duration); one without a duration
            // still covers its own instant.
            let e = s.pts.saturating_add(i64::from(s.duration.max(1)));
            end = Some(end.map_or(e, |x| x.max(e)));
        }
        match (best, first, end) {
            (_, _, Some(end)) if t >= end => Shown::PastEnd,
            (Some(pts), _, _) => Shown::Frame { pts },
            (None, Some(pts), _) => Shown::Frame { pts },
            (None, None, _) => Shown::PastEnd,
        }
    }

    /// Half the smallest gap between two distinct presentation times (the
    /// tolerance when matching decoded frames to samples), at least 1 tick.
    pub fn half_min_gap(&self) -> i64 {
        let mut pts: Vec<i64> = self.samples.iter().map(|s| s.pts).collect();
        pts.sort_unstable();
        pts.dedup();
        let gap = pts
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .min()
            .unwrap_or(2);
        (gap / 2).max(1)
    }
}

#[cfg(test)]
pub(crate) mod tests;
