//! Recorder tests: synthetic live streams recorded, finished and read back
//! with the VOD index's own table walk; recovery at every cut; mutations.

use std::sync::Arc;

use bytes::Bytes;
use vela_media::{AudioCodec, CodecConfig, Frame, MediaEvent, Track, VideoCodec};

use super::journal::{decode_header, Record, FLAG_DISCONTINUITY, RECORD_LEN};
use super::*;
use crate::moov::{parse_moov, EditShift};
use crate::scan::find_moov;
use crate::tables::{MemSource, Pos, SampleRef, Walker};
use crate::{IndexOptions, MediaIndex};

pub(crate) fn h264_track() -> Track {
    // avcC of an x264 640x360 High profile stream.
    let sps: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
    ];
    let pps: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    let mut rec = vec![1, 0x64, 0x00, 0x1e, 0xff, 0xe1];
    rec.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    rec.extend_from_slice(sps);
    rec.push(1);
    rec.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    rec.extend_from_slice(pps);
    rec.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0x00]);
    Track {
        id: 1,
        timescale: 90000,
        config: CodecConfig::Video {
            codec: VideoCodec::H264,
            width: 640,
            height: 360,
            frame_rate: Some(30.0),
            record: Bytes::from(rec),
        },
        bitrate: None,
    }
}

pub(crate) fn aac_track() -> Track {
    Track {
        id: 2,
        timescale: 48000,
        config: CodecConfig::Audio {
            codec: AudioCodec::Aac,
            sample_rate: 48000,
            channels: 2,
            specific_config: Bytes::from_static(&[0x11, 0x90]),
        },
        bitrate: Some(128_000),
    }
}

/// The two files of a piece, as a driver keeps them.
#[derive(Default, Clone)]
pub(crate) struct Files {
    pub media: Vec<u8>,
    pub journal: Vec<u8>,
}

impl Files {
    pub fn apply(&mut self, a: &Append) {
        self.media.extend_from_slice(&a.media);
        self.journal.extend_from_slice(&a.journal);
    }

    /// The finished MP4, following the [`Finish`] protocol.
    pub fn finished(&self, f: &Finish) -> Vec<u8> {
        let mut v = self.media[..f.body_end() as usize].to_vec();
        v.extend_from_slice(&f.moov);
        let at = f.mdat_size_at as usize;
        v[at..at + 8].copy_from_slice(&f.mdat_size);
        assert_eq!(v.len() as u64, f.media_len);
        v
    }
}

/// Video: 30 fps at 90 kHz, I P B B in decode order (2-frame composition
/// delay), a keyframe every 60 frames; each payload names its frame.
const T: i64 = 3000;
const CTS: [i32; 4] = [2 * T as i32, 4 * T as i32, T as i32, T as i32];

fn video_frame(i: i64, dts: i64) -> Frame {
    let len = 40 + (i * 37).rem_euclid(300) as usize;
    let mut data = vec![0xa0u8; len];
    data[..8].copy_from_slice(&i.to_be_bytes());
    Frame {
        track_id: 1,
        dts,
        cts_offset: CTS[i.rem_euclid(4) as usize],
        keyframe: i.rem_euclid(60) == 0,
        data: Bytes::from(data),
    }
}

fn audio_frame(j: i64, dts: i64) -> Frame {
    let len = 20 + (j * 13).rem_euclid(200) as usize;
    let mut data = vec![0x5au8; len];
    data[..8].copy_from_slice(&j.to_be_bytes());
    Frame {
        track_id: 2,
        dts,
        cts_offset: 0,
        keyframe: true,
        data: Bytes::from(data),
    }
}

/// Frames of both tracks merged in wall-clock (decode time) order, video
/// first at ties. `v0`/`a0` are the first decode times.
fn stream(v: std::ops::Range<i64>, v0: i64, a: std::ops::Range<i64>, a0: i64) -> Vec<Frame> {
    let mut out: Vec<(f64, u8, Frame)> = Vec::new();
    for i in v {
        let dts = v0 + i * T;
        out.push((dts as f64 / 90000.0, 0, video_frame(i, dts)));
    }
    for j in a {
        let dts = a0 + j * 1024;
        out.push((dts as f64 / 48000.0, 1, audio_frame(j, dts)));
    }
    out.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    out.into_iter().map(|x| x.2).collect()
}

struct Read {
    id: u32,
    edit: EditShift,
    samples: Vec<SampleRef>,
}

/// Every sample of every track, through the VOD index's own table walk;
/// also checks that the index and mp4-atom (strict) accept the file.
fn read_back(file: &[u8]) -> Vec<Read> {
    let moov = find_moov(file).expect("moov");
    let at = moov.body_offset as usize - 8;
    mp4_atom::Moov::decode(&mut &file[at..]).expect("moov decodes strictly");
    MediaIndex::open(file, &IndexOptions::default()).expect("MediaIndex opens it");
    let parsed = parse_moov(&moov).unwrap();
    parsed
        .tracks
        .iter()
        .map(|t| {
            let src = MemSource {
                track: t.id,
                tables: &t.tables,
            };
            let mut w = Walker::new(src, Pos::start(), moov.file_len);
            let mut samples = Vec::new();
            while let Some(s) = w.next_sample().unwrap() {
                samples.push(s);
            }
            Read {
                id: t.id,
                edit: t.edit,
                samples,
            }
        })
        .collect()
}

use mp4_atom::Decode;

fn record(events: &[MediaEvent]) -> (RecordingWriter, Files, Vec<Push>) {
    let tracks = vec![h264_track(), aac_track()];
    let (mut w, head) = RecordingWriter::start(&tracks).unwrap();
    let mut files = Files::default();
    files.apply(&head);
    let mut pushes = Vec::new();
    for e in events {
        let p = w.push(e).unwrap();
        if let Push::Appended(a) = &p {
            files.apply(a);
        }
        assert_eq!(w.bytes(), files.media.len() as u64);
        pushes.push(p);
    }
    (w, files, pushes)
}

fn frames(v: Vec<Frame>) -> Vec<MediaEvent> {
    v.into_iter().map(MediaEvent::Frame).collect()
}

#[test]
fn video_and_audio_round_trip() {
    // Live timestamps far from 0; three frames before the first keyframe.
    let v0 = 900_000;
    let a0 = 480_000;
    let mut events = frames(vec![
        video_frame(57, v0 - 3 * T),
        video_frame(58, v0 - 2 * T),
        audio_frame(-2, a0 - 2048),
        video_frame(59, v0 - T),
    ]);
    events.extend(frames(stream(0..150, v0, 0..240, a0)));
    events.push(MediaEvent::End);
    let (w, files, pushes) = record(&events);
    assert!(pushes[..4].iter().all(|p| *p == Push::Ignored));
    assert_eq!(*pushes.last().unwrap(), Push::Ignored);
    // The keyframe presents at wall 10 s + 2 frames = 483200 audio ticks:
    // audio frames 0..=3 are before it, frame 4 (484096) is the first kept.
    assert_eq!(w.samples(), 150 + 236);
    assert!((w.duration_secs() - 5.0).abs() < 1e-9);
    let fin = w.finish().unwrap();
    let file = files.finished(&fin);
    assert!(is_finished_mp4(&file, file.len() as u64));
    assert!(!is_finished_mp4(&files.media, files.media.len() as u64));
    assert!(!is_finished_mp4(&file[..20], file.len() as u64));
    assert!(!is_finished_mp4(&file, fin.body_end()));

    let tracks = read_back(&file);
    assert_eq!(tracks.len(), 2);
    let v = &tracks[0];
    assert_eq!(v.id, 1);
    assert_eq!(
        v.edit,
        EditShift {
            empty: 0,
            media_time: 2 * T as u64
        }
    );
    assert_eq!(v.samples.len(), 150);
    for (i, s) in v.samples.iter().enumerate() {
        let f = video_frame(i as i64, 0);
        assert_eq!(s.dts, i as u64 * T as u64, "video {i}");
        assert_eq!(s.duration, T as u32);
        assert_eq!(s.cts, f.cts_offset);
        assert_eq!(s.sync, f.keyframe, "video {i}");
        assert_eq!(s.size as usize, f.data.len());
        assert_eq!(&file[s.offset as usize..][..f.data.len()], &f.data[..]);
    }
    let a = &tracks[1];
    assert_eq!(a.id, 2);
    // Audio starts 896 ticks (18.7 ms) after the first picture: an empty edit.
    assert_eq!(
        a.edit,
        EditShift {
            empty: 896,
            media_time: 0
        }
    );
    assert_eq!(a.samples.len(), 236);
    for (m, s) in a.samples.iter().enumerate() {
        let f = audio_frame(m as i64 + 4, 0);
        assert_eq!(s.dts, m as u64 * 1024);
        assert_eq!((s.duration, s.cts, s.sync), (1024, 0, true));
        assert_eq!(&file[s.offset as usize..][..f.data.len()], &f.data[..]);
    }
    let ix = MediaIndex::open(&file[..], &IndexOptions::default()).unwrap();
    assert!((ix.duration_secs() - 5.0).abs() < 0.05);
    assert_eq!(ix.track(1).unwrap().sample_count, 150);
    assert_eq!(ix.track(2).unwrap().sample_count, 236);
    crate::fuzzing::mp4_index(&file);
}

#[test]
fn discontinuity_keeps_the_timeline_continuous() {
    let mut events = frames(stream(0..90, 900_000, 0..142, 480_000));
    events.push(MediaEvent::Discontinuity);
    // The new publisher: timestamps restart near 0; a stray non-key frame
    // and audio before its first keyframe.
    events.extend(frames(vec![video_frame(61, 0), audio_frame(0, 0)]));
    let second = stream(0..60, 2 * T, 0..94, 4096);
    events.extend(frames(second));
    let (w, files, _) = record(&events);
    let file = files.finished(&w.finish().unwrap());
    let tracks = read_back(&file);
    let v = &tracks[0];
    assert_eq!(v.samples.len(), 150);
    for (i, s) in v.samples.iter().enumerate() {
        assert_eq!(s.dts, i as u64 * T as u64, "no gap, no overlap at {i}");
        assert_eq!(s.duration, T as u32);
        assert_eq!(s.sync, [0, 60, 90].contains(&i), "{i}");
    }
    // Audio: continuous up to the cut, then shifted by the video's amount:
    // its new frames present where the video's do (same wall clock).
    let a = &tracks[1];
    let first_after = a
        .samples
        .windows(2)
        .position(|p| p[1].dts - p[0].dts != 1024)
        .map(|k| k + 1);
    let pts_secs = |s: &SampleRef, ts: f64, e: &EditShift| {
        (s.dts as i64 + i64::from(s.cts) + e.shift()) as f64 / ts
    };
    // The first new video frame presents at 3 s (90 frames) + 0 and the new
    // audio started 2 frames (6000/90000 s) before its keyframe's pts... so
    // each kept new audio frame presents at its wall time relative to it.
    let v_new = &v.samples[90];
    let v_pts = pts_secs(v_new, 90000.0, &v.edit);
    assert!((v_pts - 3.0).abs() < 1e-9);
    let k = first_after.unwrap_or(0);
    assert!(k > 0, "audio has a seam");
    let a_new = &a.samples[k];
    assert!(a_new.dts >= a.samples[k - 1].dts + 1024, "no overlap");
    // New audio frame j (its payload names it) has wall time 4096 + j*1024
    // ticks; the new keyframe presents at 4T = 12000 ticks at 90 kHz, 6400
    // at 48 kHz, and at 3 s in the file.
    let at = a_new.offset as usize;
    let j = i64::from_be_bytes(file[at..at + 8].try_into().unwrap());
    assert_eq!(j, 1, "frame 0 overlapped the audio's end");
    let a_pts = pts_secs(a_new, 48000.0, &a.edit);
    let want = 3.0 + ((4096 + j * 1024) - 6400) as f64 / 48000.0;
    assert!(
        (a_pts - want).abs() < 1.0 / 48000.0,
        "audio at {a_pts}, want {want}"
    );
    assert_eq!(a.samples.len(), 138 + 93);
    // The journal marks the first sample after the discontinuity.
    let (_, at) = decode_header(&files.journal).unwrap();
    let recs: Vec<Record> = files.journal[at..]
        .chunks(RECORD_LEN)
        .map(|c| Record::decode(c.try_into().unwrap()).unwrap())
        .collect();
    let marked: Vec<u8> = recs
        .iter()
        .filter(|r| r.flags & FLAG_DISCONTINUITY != 0)
        .map(|r| r.track)
        .collect();
    assert_eq!(marked, [0, 1]);
}

#[test]
fn track_set_changes() {
    let tracks = vec![h264_track(), aac_track()];
    let (mut w, _) = RecordingWriter::start(&tracks).unwrap();
    let same = MediaEvent::Tracks(Arc::new(tracks.clone()));
    assert_eq!(w.push(&same).unwrap(), Push::Ignored);
    let mut t = tracks.clone();
    if let CodecConfig::Video { frame_rate, .. } = &mut t[0].config {
        *frame_rate = Some(25.0);
    }
    t[1].bitrate = None;
    t.reverse();
    assert_eq!(
        w.push(&MediaEvent::Tracks(Arc::new(t))).unwrap(),
        Push::Ignored,
        "frame rate, bitrate and order do not change sample entries"
    );
    let mut t = tracks.clone();
    if let CodecConfig::Video { record, .. } = &mut t[0].config {
        let mut r = record.to_vec();
        r[3] = 0x28;
        *record = Bytes::from(r);
    }
    assert_eq!(
        w.push(&MediaEvent::Tracks(Arc::new(t))).unwrap(),
        Push::NeedsNewPiece
    );
    let twice = MediaEvent::Tracks(Arc::new(vec![h264_track(), h264_track()]));
    assert_eq!(w.push(&twice).unwrap(), Push::NeedsNewPiece);
    let audio_only = MediaEvent::Tracks(Arc::new(vec![aac_track()]));
    assert_eq!(w.push(&audio_only).unwrap(), Push::NeedsNewPiece);
    assert_eq!(w.push(&MediaEvent::End).unwrap(), Push::Ignored);
    assert_eq!(w.finish().unwrap_err(), RecordError::NoSamples);
}

#[test]
fn audio_only_piece() {
    let (mut w, head) = RecordingWriter::start(&[aac_track()]).unwrap();
    let mut files = Files::default();
    files.apply(&head);
    for j in 0..50 {
        if let Push::Appended(a) = w
            .push(&MediaEvent::Frame(audio_frame(j, 77 + j * 1024)))
            .unwrap()
        {
            files.apply(&a);
        }
    }
    let file = files.finished(&w.finish().unwrap());
    let t = read_back(&file);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].samples.len(), 50);
    assert_eq!(t[0].edit, EditShift::default());
    assert_eq!(t[0].samples[49].dts, 49 * 1024);
}

#[test]
fn limits_are_errors() {
    let mut many = Vec::new();
    for id in 1..=17 {
        many.push(Track { id, ..aac_track() });
    }
    assert!(matches!(
        RecordingWriter::start(&many),
        Err(RecordError::TooManyTracks { .. })
    ));
    assert_eq!(
        RecordingWriter::start(&[]).unwrap_err(),
        RecordError::NoTracks
    );
    let dup = [aac_track(), aac_track()];
    assert_eq!(
        RecordingWriter::start(&dup).unwrap_err(),
        RecordError::BadTrackId(2)
    );
    let zero = Track {
        timescale: 0,
        ..aac_track()
    };
    assert_eq!(
        RecordingWriter::start(&[zero]).unwrap_err(),
        RecordError::ZeroTimescale(2)
    );
    let mut big = h264_track();
    if let CodecConfig::Video { record, .. } = &mut big.config {
        *record = Bytes::from(vec![1u8; (1 << 20) + 1]);
    }
    assert!(matches!(
        RecordingWriter::start(&[big]),
        Err(RecordError::HeaderTooLarge { .. })
    ));

    let (mut w, _) = RecordingWriter::start(&[h264_track(), aac_track()]).unwrap();
    let huge = Frame {
        data: Bytes::from(vec![0u8; MAX_SAMPLE_SIZE + 1]),
        ..video_frame(0, 0)
    };
    assert!(matches!(
        w.push(&MediaEvent::Frame(huge)),
        Err(RecordError::SampleTooLarge { .. })
    ));
    let stranger = Frame {
        track_id: 9,
        ..video_frame(0, 0)
    };
    assert_eq!(
        w.push(&MediaEvent::Frame(stranger)).unwrap_err(),
        RecordError::UnknownTrack(9)
    );
    // Errors leave the writer unchanged; overflowing times are refused.
    assert_eq!(w.samples(), 0);
    assert!(matches!(
        w.push(&MediaEvent::Frame(video_frame(0, i64::MIN))),
        Err(RecordError::TimeOverflow { .. })
    ));
    assert!(matches!(
        w.push(&MediaEvent::Frame(video_frame(0, 0))),
        Ok(Push::Appended(_))
    ));
    // A jump beyond 32 bits of ticks between two samples.
    assert_eq!(
        w.push(&MediaEvent::Frame(video_frame(1, 1 << 40))).unwrap(),
        Push::NeedsNewPiece
    );
    // A decode time that does not increase is ignored.
    assert_eq!(
        w.push(&MediaEvent::Frame(video_frame(1, 0))).unwrap(),
        Push::Ignored
    );
    assert_eq!(w.samples(), 1);

    // A journal header claiming more than 1 MiB.
    let (_, head) = RecordingWriter::start(&[aac_track()]).unwrap();
    let mut j = head.journal.to_vec();
    j[10..14].copy_from_slice(&(2u32 << 20).to_be_bytes());
    assert!(matches!(
        RecordingWriter::recover(&j, 1 << 30),
        Err(RecordError::HeaderTooLarge { .. })
    ));
    assert!(matches!(
        RecordingWriter::recover(&head.journal, 10),
        Err(RecordError::MediaTooShort { .. })
    ));
}

/// A recorded session and, per sample, the file lengths after it.
fn session() -> (RecordingWriter, Files, Vec<(u64, usize)>) {
    let events = frames(stream(0..40, 0, 0..60, 0));
    let tracks = vec![h264_track(), aac_track()];
    let (mut w, head) = RecordingWriter::start(&tracks).unwrap();
    let mut files = Files::default();
    files.apply(&head);
    let mut ends = Vec::new();
    for e in &events {
        if let Push::Appended(a) = w.push(e).unwrap() {
            files.apply(&a);
            ends.push((files.media.len() as u64, files.journal.len()));
        }
    }
    (w, files, ends)
}

fn check_recovered(files: &Files, journal_len: usize, media_len: u64, want: usize) {
    let w = RecordingWriter::recover(&files.journal[..journal_len], media_len)
        .unwrap_or_else(|e| panic!("journal {journal_len}, media {media_len}: {e}"));
    assert_eq!(
        w.samples() as usize,
        want,
        "journal {journal_len}, media {media_len}"
    );
    if want == 0 {
        assert_eq!(w.finish().unwrap_err(), RecordError::NoSamples);
        return;
    }
    let fin = w.finish().unwrap();
    assert!(fin.body_end() <= media_len);
    let mut media = files.media.clone();
    media.truncate(media_len as usize);
    media.extend_from_slice(b"trailing garbage of an unjournaled sample");
    let file = Files {
        media,
        journal: Vec::new(),
    }
    .finished(&fin);
    let n: usize = read_back(&file).iter().map(|t| t.samples.len()).sum();
    assert_eq!(n, want);
}

#[test]
fn recovery_keeps_exactly_the_complete_samples() {
    let (w, files, ends) = session();
    let total = ends.len();
    // Audio frames 0..=3 precede the first picture.
    assert_eq!(total, 96);
    // Nothing lost: the recovered piece finishes byte-identically.
    let full = RecordingWriter::recover(&files.journal, files.media.len() as u64).unwrap();
    assert_eq!(full.finish().unwrap(), w.finish().unwrap());
    assert_eq!(full.bytes(), w.bytes());
    // The journal cut at every byte (whole media file).
    let header_end = decode_header(&files.journal).unwrap().1;
    for cut in header_end..=files.journal.len() {
        let want = (cut - header_end) / RECORD_LEN;
        check_recovered(&files, cut, files.media.len() as u64, want);
    }
    // The media file cut at every byte of the last three samples' data
    // (whole journal): a sample counts once its last byte is there.
    let from = ends[total - 4].0;
    for cut in from..=files.media.len() as u64 {
        let want = ends.iter().filter(|e| e.0 <= cut).count();
        check_recovered(&files, files.journal.len(), cut, want);
    }
    // Both cut, as a crash between the two writes leaves them.
    for (k, &(media_end, journal_end)) in ends.iter().enumerate().step_by(7) {
        check_recovered(&files, journal_end, media_end, k + 1);
        check_recovered(&files, journal_end - 1, media_end, k);
    }
    // A header cut short is an error, not a panic.
    for cut in 0..header_end {
        assert!(RecordingWriter::recover(&files.journal[..cut], 1 << 20).is_err());
    }
}

#[test]
fn a_damaged_record_ends_the_journal() {
    let (_, files, _) = session();
    let header_end = decode_header(&files.journal).unwrap().1;
    let mut j = files.journal.clone();
    j[header_end + 10 * RECORD_LEN + 5] ^= 1;
    let w = RecordingWriter::recover(&j, files.media.len() as u64).unwrap();
    assert_eq!(w.samples(), 10);
}

#[test]
fn journal_mutations_do_not_panic() {
    let (_, files, _) = session();
    let mut rng = crate::fuzzing::Rng::new(0x5eed_00ec);
    let media_len = files.media.len() as u64;
    // VELA_REC_FUZZ_ITERS runs a longer campaign by hand.
    let iters = std::env::var("VELA_REC_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000u64);
    for i in 0..iters {
        let m = crate::fuzzing::mutate(&files.journal, &mut rng);
        let len = match i % 3 {
            0 => media_len,
            1 => rng.below(media_len as usize + 100) as u64,
            _ => u64::MAX - rng.below(4) as u64,
        };
        let mut input = len.to_be_bytes().to_vec();
        input.extend_from_slice(&m);
        crate::fuzzing::recording_journal(&input);
    }
    let mut input = media_len.to_be_bytes().to_vec();
    input.extend_from_slice(&files.journal);
    crate::fuzzing::recording_journal(&input);
}

#[test]
fn records_with_valid_crcs_but_bad_fields_end_the_journal() {
    let (_, files, _) = session();
    let header_end = decode_header(&files.journal).unwrap().1;
    let first = Record::decode(
        files.journal[header_end..][..RECORD_LEN]
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let good = |dts: i64| Record {
        dts,
        size: 10,
        ..first
    };
    let bad = [
        Record {
            track: 9,
            ..good(1)
        },
        Record {
            size: MAX_SAMPLE_SIZE as u32 + 1,
            ..good(1)
        },
        good(-1),
        good(0),          // does not increase
        good(1i64 << 40), // jump past 32 bits
        good(i64::MAX),   // out of range
        Record {
            size: u32::MAX,
            ..good(1)
        }, // past the media file
    ];
    for b in bad {
        let mut j = files.journal[..header_end].to_vec();
        j.extend_from_slice(&good(0).encode());
        j.extend_from_slice(&b.encode());
        j.extend_from_slice(&good(3000).encode());
        let w = RecordingWriter::recover(&j, 1 << 20).unwrap();
        assert_eq!(w.samples(), 1, "{b:?}");
        let fin = w.finish().unwrap();
        assert_eq!(fin.body_end(), w.media_head().len() as u64 + 10);
    }
}

#[test]
fn random_valid_records_always_give_an_indexable_file() {
    let (_, files, _) = session();
    let header_end = decode_header(&files.journal).unwrap().1;
    let mut rng = crate::fuzzing::Rng::new(0x0dd_ba11);
    let mut finished = 0;
    for _ in 0..400 {
        let mut j = files.journal[..header_end].to_vec();
        let mut dts = [0i64; 2];
        for _ in 0..rng.below(60) {
            let track = rng.below(3) as u8; // 2: an unknown track
            let t = usize::from(track.min(1));
            // Mostly increasing, sometimes not.
            dts[t] += rng.below(5000) as i64 - 500;
            let r = Record {
                track,
                flags: rng.below(4) as u8,
                size: rng.below(300) as u32,
                dts: dts[t],
                cts_offset: rng.below(20000) as i32 - 5000,
            };
            j.extend_from_slice(&r.encode());
        }
        let media_len = rng.below(8000) as u64;
        let mut input = media_len.to_be_bytes().to_vec();
        input.extend_from_slice(&j);
        crate::fuzzing::recording_journal(&input);
        let Ok(w) = RecordingWriter::recover(&j, media_len) else {
            continue;
        };
        let Ok(fin) = w.finish() else { continue };
        let media = Files {
            media: vec![0; fin.body_end() as usize],
            journal: Vec::new(),
        };
        let mut file = media.finished(&fin);
        file[..w.media_head().len()].copy_from_slice(&w.media_head());
        let file = Files {
            media: file[..fin.body_end() as usize].to_vec(),
            journal: Vec::new(),
        }
        .finished(&fin);
        let n: usize = read_back(&file).iter().map(|t| t.samples.len()).sum();
        assert_eq!(n as u64, w.samples());
        finished += 1;
    }
    assert!(finished > 200, "{finished} of 400 journals gave a file");
}
