//! [`RecordingWriter`]: turns media events into bytes for the media file and
//! the journal, keeps the sample log, and rebuilds it from a journal.
//!
//! # Timeline
//!
//! A piece's timeline starts at the lead track's first keyframe (the first
//! video track; the first track when there is no video): its decode time
//! becomes 0. Every track is shifted by the same wall-clock amount, so A/V
//! stay aligned: a non-lead track is shifted so that the lead's first
//! *presentation* time maps to 0 (the lead's B-frame delay is removed by its
//! edit list, see `moov.rs`). Frames of other tracks that land before 0 are
//! ignored, as is everything that arrives before the lead's first keyframe.
//!
//! After a [`MediaEvent::Discontinuity`] (a publisher reconnected, its
//! timestamps restart anywhere) the same anchoring happens again, with the
//! lead's next keyframe placed exactly where the lead's timeline ended (its
//! last decode time plus the last sample's duration) and the other tracks
//! shifted by the same wall-clock amount. A frame that would land before
//! its track's end (overlap) is ignored, so every track's decode times keep
//! increasing; a late-starting track leaves a gap in its own timeline (its
//! previous sample lasts longer) rather than breaking A/V sync. The same
//! rule ignores a frame whose decode time does not increase.

use bytes::{BufMut, Bytes, BytesMut};
use vela_media::{CodecConfig, MediaEvent, Track, VideoCodec};

use super::journal::{self, Header, Record, FLAG_DISCONTINUITY, FLAG_KEYFRAME, RECORD_LEN};
use super::moov::{build_moov, rescale, Entry, TrackLog};
use super::{
    Append, Finish, Push, RecordError, MAX_PIECE_SAMPLES, MAX_SAMPLE_SIZE, MAX_TIME, MAX_TRACKS,
};

/// One piece of a recording: a progressive MP4 being written (see the
/// module docs of [`crate::record`] for the file protocol).
#[derive(Debug, Clone)]
pub struct RecordingWriter {
    logs: Vec<TrackLog>,
    /// Index of the lead track in `logs`.
    lead: usize,
    /// Length of `ftyp` + the `mdat` header: where sample data starts.
    data_start: u64,
    /// Media file length so far.
    bytes: u64,
    samples: u64,
    /// The track of the last sample appended (chunks are runs of one track).
    last_track: Option<usize>,
    /// Input-to-file decode time shift per track; `None` until the lead's
    /// next keyframe anchors the timeline.
    shifts: Option<Vec<i64>>,
    /// Earliest file decode time each track accepts next.
    min_next: Vec<i64>,
    /// Tracks whose next sample is the first after a discontinuity.
    pending_discontinuity: Vec<bool>,
}

fn validate(tracks: &[Track]) -> Result<(), RecordError> {
    if tracks.is_empty() {
        return Err(RecordError::NoTracks);
    }
    if tracks.len() > MAX_TRACKS {
        return Err(RecordError::TooManyTracks {
            count: tracks.len(),
            limit: MAX_TRACKS,
        });
    }
    for (i, t) in tracks.iter().enumerate() {
        if t.id == 0 || tracks[..i].iter().any(|o| o.id == t.id) {
            return Err(RecordError::BadTrackId(t.id));
        }
        if t.timescale == 0 {
            return Err(RecordError::ZeroTimescale(t.id));
        }
    }
    Ok(())
}

/// `ftyp` and the `mdat` header with a 64-bit size still 0 ("not finished").
fn head(tracks: &[Track]) -> Bytes {
    let avc = tracks.iter().any(|t| {
        matches!(
            t.config,
            CodecConfig::Video {
                codec: VideoCodec::H264,
                ..
            }
        )
    });
    let mut brands: Vec<&[u8; 4]> = vec![b"isom", b"iso2"];
    if avc {
        brands.push(b"avc1");
    }
    brands.push(b"mp41");
    let ftyp_len = 16 + 4 * brands.len();
    let mut b = BytesMut::with_capacity(ftyp_len + 16);
    b.put_u32(ftyp_len as u32);
    b.put_slice(b"ftyp");
    b.put_slice(b"isom");
    b.put_u32(0x200);
    for brand in brands {
        b.put_slice(brand);
    }
    b.put_u32(1); // 64-bit size follows
    b.put_slice(b"mdat");
    b.put_u64(0); // patched by `Finish`
    b.freeze()
}

/// The tracks' sample entries are the same (what a new `Tracks` event may
/// repeat without starting a new piece): frame rate and bitrate may differ.
fn same_entry(a: &Track, b: &Track) -> bool {
    if a.id != b.id || a.timescale != b.timescale {
        return false;
    }
    match (&a.config, &b.config) {
        (
            CodecConfig::Video {
                codec: c1,
                width: w1,
                height: h1,
                record: r1,
                ..
            },
            CodecConfig::Video {
                codec: c2,
                width: w2,
                height: h2,
                record: r2,
                ..
            },
        ) => c1 == c2 && w1 == w2 && h1 == h2 && r1 == r2,
        (
            CodecConfig::Audio {
                codec: c1,
                sample_rate: s1,
                channels: n1,
                specific_config: a1,
            },
            CodecConfig::Audio {
                codec: c2,
                sample_rate: s2,
                channels: n2,
                specific_config: a2,
            },
        ) => c1 == c2 && s1 == s2 && n1 == n2 && a1 == a2,
        _ => false,
    }
}

impl RecordingWriter {
    fn new(tracks: &[Track]) -> Result<(RecordingWriter, Bytes), RecordError> {
        validate(tracks)?;
        let head = head(tracks);
        let lead = tracks
            .iter()
            .position(|t| matches!(t.config, CodecConfig::Video { .. }))
            .unwrap_or(0);
        let n = tracks.len();
        let w = RecordingWriter {
            logs: tracks.iter().cloned().map(TrackLog::new).collect(),
            lead,
            data_start: head.len() as u64,
            bytes: head.len() as u64,
            samples: 0,
            last_track: None,
            shifts: None,
            min_next: vec![0; n],
            pending_discontinuity: vec![false; n],
        };
        Ok((w, head))
    }

    /// Starts a piece: the returned [`Append`] holds `ftyp` + the `mdat`
    /// header for the media file and the header record for the journal.
    pub fn start(tracks: &[Track]) -> Result<(RecordingWriter, Append), RecordError> {
        let (w, head) = Self::new(tracks)?;
        let header = journal::encode_header(&Header {
            data_start: w.data_start,
            tracks: tracks.to_vec(),
        })?;
        Ok((
            w,
            Append {
                media: head,
                journal: header,
            },
        ))
    }

    /// `ftyp` and the unfinished `mdat` header: the media file's first bytes.
    pub fn media_head(&self) -> Bytes {
        let tracks: Vec<Track> = self.tracks().cloned().collect();
        head(&tracks)
    }

    /// The tracks of the piece, as it started.
    pub fn tracks(&self) -> impl Iterator<Item = &Track> {
        self.logs.iter().map(|l| &l.track)
    }

    /// Takes one event. An error leaves the writer unchanged.
    pub fn push(&mut self, event: &MediaEvent) -> Result<Push, RecordError> {
        match event {
            MediaEvent::Frame(f) => self.push_frame(f),
            MediaEvent::Discontinuity => {
                self.shifts = None;
                self.pending_discontinuity.fill(true);
                Ok(Push::Ignored)
            }
            MediaEvent::Tracks(set) => {
                let same = set.len() == self.logs.len()
                    && set.iter().all(|t| {
                        self.logs
                            .iter()
                            .any(|l| l.track.id == t.id && same_entry(&l.track, t))
                    })
                    && self
                        .logs
                        .iter()
                        .all(|l| set.iter().any(|t| t.id == l.track.id));
                Ok(if same {
                    Push::Ignored
                } else {
                    Push::NeedsNewPiece
                })
            }
            MediaEvent::End => Ok(Push::Ignored),
        }
    }

    /// Anchors the timeline on the lead's keyframe `dts`/`cts` (see the
    /// module docs); `None` when the shift does not fit.
    fn anchor(&self, dts: i64, cts: i32) -> Option<(Vec<i64>, Vec<i64>)> {
        let lead = &self.logs[self.lead];
        let lead_end = lead.end();
        let lead_shift = lead_end.checked_sub(dts)?;
        // The lead's composition delay that its edit list removes.
        let delay = if lead.is_video() {
            i64::from(lead.samples.first().map_or(cts, |e| e.cts).max(0))
        } else {
            0
        };
        let wall = lead_shift.checked_sub(delay)?;
        let ts = lead.track.timescale;
        let shifts = self
            .logs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i == self.lead {
                    lead_shift
                } else {
                    rescale(wall, ts, l.track.timescale)
                }
            })
            .collect();
        let min_next = self.logs.iter().map(TrackLog::end).collect();
        Some((shifts, min_next))
    }

    fn push_frame(&mut self, f: &vela_media::Frame) -> Result<Push, RecordError> {
        let Some(k) = self.logs.iter().position(|l| l.track.id == f.track_id) else {
            return Err(RecordError::UnknownTrack(f.track_id));
        };
        if f.data.len() > MAX_SAMPLE_SIZE {
            return Err(RecordError::SampleTooLarge {
                track: f.track_id,
                size: f.data.len(),
                limit: MAX_SAMPLE_SIZE,
            });
        }
        if self.samples >= MAX_PIECE_SAMPLES {
            return Ok(Push::NeedsNewPiece);
        }
        let is_video = self.logs[k].is_video();
        // The shift and floor for this frame; a new anchoring is committed
        // only if the frame is taken.
        let (shift, floor, anchored) = match &self.shifts {
            Some(s) => (s[k], self.min_next[k], None),
            None => {
                if k != self.lead || (is_video && !f.keyframe) {
                    return Ok(Push::Ignored);
                }
                let Some((s, m)) = self.anchor(f.dts, f.cts_offset) else {
                    return Err(RecordError::TimeOverflow {
                        track: f.track_id,
                        dts: f.dts,
                        shift: self.logs[self.lead].end(),
                    });
                };
                (s[k], m[k], Some((s, m)))
            }
        };
        let dts = f.dts.checked_add(shift).filter(|d| *d < MAX_TIME).ok_or(
            RecordError::TimeOverflow {
                track: f.track_id,
                dts: f.dts,
                shift,
            },
        )?;
        if dts < floor {
            // Before the piece's start, an overlap after a discontinuity, or
            // a decode time that does not increase.
            return Ok(Push::Ignored);
        }
        if let Some(last) = self.logs[k].samples.last() {
            // A gap that a 32-bit `stts` delta cannot hold (13 h at 90 kHz):
            // this piece ends here, the next one starts its own timeline.
            if dts.abs_diff(last.dts) > u64::from(u32::MAX) {
                return Ok(Push::NeedsNewPiece);
            }
        }
        // Accepted: commit the anchoring, then the sample.
        if let Some((s, m)) = anchored {
            self.shifts = Some(s);
            self.min_next = m;
        }
        let mut flags = 0;
        if f.keyframe || !is_video {
            flags |= FLAG_KEYFRAME;
        }
        if std::mem::take(&mut self.pending_discontinuity[k]) {
            flags |= FLAG_DISCONTINUITY;
        }
        let record = Record {
            track: k as u8,
            flags,
            size: f.data.len() as u32,
            dts,
            cts_offset: f.cts_offset,
        };
        self.append(k, &record);
        Ok(Push::Appended(Append {
            media: f.data.clone(),
            journal: Bytes::copy_from_slice(&record.encode()),
        }))
    }

    /// Adds a checked sample to the log.
    fn append(&mut self, k: usize, r: &Record) {
        let new_chunk = self.last_track != Some(k);
        self.logs[k].push(
            Entry {
                dts: r.dts,
                size: r.size,
                cts: r.cts_offset,
                keyframe: r.flags & FLAG_KEYFRAME != 0,
            },
            self.bytes,
            new_chunk,
        );
        self.min_next[k] = r.dts + 1;
        self.last_track = Some(k);
        self.bytes += u64::from(r.size);
        self.samples += 1;
    }

    /// Samples written.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Duration of the lead track so far, in seconds.
    pub fn duration_secs(&self) -> f64 {
        let lead = &self.logs[self.lead];
        lead.duration() as f64 / f64::from(lead.track.timescale)
    }

    /// Media file length so far (`ftyp`, `mdat` header and sample data).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// What turns the media file into a finished MP4 (see [`Finish`]).
    pub fn finish(&self) -> Result<Finish, RecordError> {
        if self.samples == 0 {
            return Err(RecordError::NoSamples);
        }
        let moov = build_moov(&self.logs, self.lead)?;
        let mdat_at = self.data_start - 16;
        Ok(Finish {
            mdat_size_at: mdat_at + 8,
            mdat_size: (self.bytes - mdat_at).to_be_bytes(),
            media_len: self.bytes + moov.len() as u64,
            moov,
        })
    }

    /// Rebuilds a piece from its journal and the media file's length (after
    /// a crash). Keeps every sample whose record is whole, valid (CRC, track,
    /// size, increasing decode time) and whose data lies within `media_len`;
    /// the journal ends at the first record that is not. A recovered writer
    /// is meant for [`RecordingWriter::finish`]; frames pushed into it are
    /// anchored as after a discontinuity.
    pub fn recover(journal: &[u8], media_len: u64) -> Result<RecordingWriter, RecordError> {
        let (header, mut at) = journal::decode_header(journal)?;
        let (mut w, _) = Self::new(&header.tracks)?;
        if header.data_start != w.data_start {
            return Err(RecordError::journal(
                14,
                format!(
                    "data starts at {} but this layout puts it at {}",
                    header.data_start, w.data_start
                ),
            ));
        }
        if media_len < w.data_start {
            return Err(RecordError::MediaTooShort {
                media_len,
                data_start: w.data_start,
            });
        }
        w.pending_discontinuity.fill(true);
        while let Some(bytes) = journal.get(at..at + RECORD_LEN) {
            let bytes: &[u8; RECORD_LEN] = bytes.try_into().expect("record length");
            match w.check_recovered(bytes, media_len) {
                Ok(r) => w.append(usize::from(r.track), &r),
                Err(reason) => {
                    tracing::warn!(at, reason, "recording journal ends at a bad record");
                    break;
                }
            }
            at += RECORD_LEN;
        }
        w.pending_discontinuity.fill(true);
        Ok(w)
    }

    /// A journal record as [`RecordingWriter::push_frame`] would have written
    /// it, or why not.
    fn check_recovered(
        &self,
        bytes: &[u8; RECORD_LEN],
        media_len: u64,
    ) -> Result<Record, &'static str> {
        let r = Record::decode(bytes).ok_or("CRC mismatch (torn or damaged)")?;
        let log = self.logs.get(usize::from(r.track)).ok_or("unknown track")?;
        if self.samples >= MAX_PIECE_SAMPLES {
            return Err("more samples than a piece holds");
        }
        if r.size as usize > MAX_SAMPLE_SIZE {
            return Err("sample too large");
        }
        if self.bytes + u64::from(r.size) > media_len {
            return Err("sample data past the end of the media file");
        }
        if r.dts < 0 || r.dts >= MAX_TIME {
            return Err("decode time out of range");
        }
        if let Some(last) = log.samples.last() {
            if r.dts <= last.dts || (r.dts - last.dts) as u64 > u64::from(u32::MAX) {
                return Err("decode time does not increase by 1..2^32 ticks");
            }
        }
        Ok(r)
    }
}
