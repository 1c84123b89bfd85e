//! The recorder against real peers: ffmpeg makes a short H.264 (B-frames) +
//! AAC file; its samples, read with the VOD index, are pushed through
//! `RecordingWriter` as a live stream that reconnects in the middle (a
//! `Discontinuity`, then timestamps restarting at 0); the finished file must
//! decode cleanly with ffmpeg, have every input picture (ffprobe
//! `-count_frames`, and the same packet bytes in order), and play on one
//! continuous timeline. Recovery from the journal gives the same file.
//! Skipped when ffmpeg is not installed.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use vela_media::{Frame, MediaEvent, MediaKind, Track};
use vela_vod::record::{is_finished_mp4, Push, RecordingWriter};
use vela_vod::{IndexOptions, MediaIndex};

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-version").output().is_ok()
}

fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A source's samples on its own decode timeline (the edit-list shift the
/// index applies to fragments is undone).
fn samples(ix: &MediaIndex, file: &File, id: u32) -> Vec<Frame> {
    let t = ix.track(id).unwrap();
    let mut out = Vec::new();
    for seg in ix.segments(id).unwrap() {
        let frag = ix.fragment(file, id, seg.number).unwrap();
        let rf = vela_packager::boxes::read_fragment(&frag).unwrap();
        let mut dts = rf.base_decode_time as i64 - t.edit.dts_add() as i64;
        for s in rf.samples {
            out.push(Frame {
                track_id: id,
                dts,
                cts_offset: s.cts_offset - t.edit.cts_add() as i32,
                keyframe: s.keyframe,
                data: s.data,
            });
            dts += i64::from(s.duration);
        }
    }
    out
}

fn count_frames(path: &Path, stream: &str) -> u64 {
    let (out, _) = run(Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", stream])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path));
    out.trim().parse().expect("a frame count")
}

/// Packet hashes of one stream ([size, hash] per packet).
fn packet_hashes(path: &Path, map: &str) -> Vec<String> {
    let (out, _) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-map", map, "-c", "copy", "-f", "framemd5", "-"]));
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_string())
        .collect()
}

/// Presentation times (seconds) of the decoded video frames.
fn frame_times(path: &Path) -> Vec<f64> {
    let (out, _) = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0"])
        .arg(path));
    // A frame with side data prints an extra (empty) field or line.
    out.lines()
        .filter_map(|l| l.split(',').next()?.trim().parse().ok())
        .collect()
}

#[derive(Default)]
struct Files {
    media: Vec<u8>,
    journal: Vec<u8>,
}

#[test]
fn ffmpeg_source_recorded_with_a_reconnect() {
    if !have("ffmpeg") || !have("ffprobe") {
        println!("skipped: no ffmpeg/ffprobe");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "4", "-c:v", "libx264", "-bf", "3", "-g", "30"])
        .args(["-preset", "veryfast", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "96k"])
        .arg(&src));
    let file = File::open(&src).unwrap();
    let ix = MediaIndex::open(&file, &IndexOptions::default()).unwrap();
    let tracks: Vec<Track> = ix.tracks().map(|t| t.track.clone()).collect();
    assert_eq!(tracks.len(), 2);
    assert_eq!(tracks[0].kind(), MediaKind::Video);
    let (v, a) = (tracks[0].clone(), tracks[1].clone());
    let video = samples(&ix, &file, v.id);
    let audio = samples(&ix, &file, a.id);
    assert!(video[0].cts_offset > 0, "x264 B-frames: composition delay");

    // The publisher reconnects at the keyframe nearest the middle; the new
    // one's timestamps restart at 0 on every track (same wall instant).
    let k = video
        .iter()
        .enumerate()
        .filter(|(_, f)| f.keyframe)
        .min_by_key(|(i, _)| i.abs_diff(video.len() / 2))
        .unwrap()
        .0;
    assert!(k > 0);
    let cut_secs = video[k].dts as f64 / f64::from(v.timescale);
    let audio_cut = (cut_secs * f64::from(a.timescale)).round() as i64;
    let secs = |f: &Frame| {
        let ts = if f.track_id == v.id {
            v.timescale
        } else {
            a.timescale
        };
        f.dts as f64 / f64::from(ts)
    };
    let mut first: Vec<Frame> = video[..k].to_vec();
    first.extend(audio.iter().filter(|f| f.dts < audio_cut).cloned());
    let mut second: Vec<Frame> = video[k..]
        .iter()
        .map(|f| Frame {
            dts: f.dts - video[k].dts,
            ..f.clone()
        })
        .collect();
    second.extend(audio.iter().filter(|f| f.dts >= audio_cut).map(|f| Frame {
        dts: f.dts - audio_cut,
        ..f.clone()
    }));
    for half in [&mut first, &mut second] {
        half.sort_by(|x, y| secs(x).total_cmp(&secs(y)));
    }
    let mut events = vec![MediaEvent::Tracks(Arc::new(tracks.clone()))];
    events.extend(first.into_iter().map(MediaEvent::Frame));
    events.push(MediaEvent::Discontinuity);
    events.extend(second.into_iter().map(MediaEvent::Frame));
    events.push(MediaEvent::End);

    let (mut w, head) = RecordingWriter::start(&tracks).unwrap();
    let mut files = Files::default();
    let apply = |files: &mut Files, media: &Bytes, journal: &Bytes| {
        files.media.extend_from_slice(media);
        files.journal.extend_from_slice(journal);
    };
    apply(&mut files, &head.media, &head.journal);
    let (mut kept_video, mut kept_audio) = (0u64, 0u64);
    for e in &events {
        match w.push(e).unwrap() {
            Push::Appended(app) => {
                if let MediaEvent::Frame(f) = e {
                    if f.track_id == v.id {
                        kept_video += 1;
                    } else {
                        kept_audio += 1;
                    }
                }
                apply(&mut files, &app.media, &app.journal);
            }
            Push::Ignored => {}
            Push::NeedsNewPiece => panic!("same tracks: no new piece"),
        }
    }
    assert_eq!(kept_video, video.len() as u64, "every picture is kept");
    // Audio before the first picture's presentation time is not recorded.
    assert!(kept_audio + 5 >= audio.len() as u64, "{kept_audio}");

    let fin = w.finish().unwrap();
    let mut out = files.media[..fin.body_end() as usize].to_vec();
    out.extend_from_slice(&fin.moov);
    let at = fin.mdat_size_at as usize;
    out[at..at + 8].copy_from_slice(&fin.mdat_size);
    assert!(is_finished_mp4(&out, out.len() as u64));
    let out_path = dir.path().join("recording.mp4");
    std::fs::write(&out_path, &out).unwrap();
    if let Ok(d) = std::env::var("VOD_KEEP") {
        std::fs::copy(&out_path, Path::new(&d).join("recording.mp4")).unwrap();
    }

    // Recovery from the journal gives the same moov.
    let again = RecordingWriter::recover(&files.journal, files.media.len() as u64).unwrap();
    assert_eq!(again.finish().unwrap(), fin);

    // A crash mid-record (journal cut inside a record, media file with
    // unjournaled data after it): the recovered piece decodes cleanly too.
    let cut_journal = &files.journal[..files.journal.len() * 3 / 5];
    let crashed = RecordingWriter::recover(cut_journal, files.media.len() as u64).unwrap();
    assert!(crashed.samples() > 0 && crashed.samples() < w.samples());
    let cfin = crashed.finish().unwrap();
    let mut part = files.media[..cfin.body_end() as usize].to_vec();
    part.extend_from_slice(&cfin.moov);
    let at = cfin.mdat_size_at as usize;
    part[at..at + 8].copy_from_slice(&cfin.mdat_size);
    let part_path = dir.path().join("recovered.mp4");
    std::fs::write(&part_path, &part).unwrap();
    let (_, stderr) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(&part_path)
        .args(["-f", "null", "-"]));
    assert!(
        stderr.trim().is_empty(),
        "ffmpeg on the recovered piece: {stderr}"
    );
    let recovered = count_frames(&part_path, "v:0") + count_frames(&part_path, "a:0");
    assert_eq!(recovered, crashed.samples());

    // ffmpeg decodes it without a word.
    let (_, stderr) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(&out_path)
        .args(["-f", "null", "-"]));
    assert!(stderr.trim().is_empty(), "ffmpeg complained: {stderr}");
    // Every picture, the same packets in the same order.
    assert_eq!(count_frames(&out_path, "v:0"), count_frames(&src, "v:0"));
    assert_eq!(count_frames(&out_path, "v:0"), video.len() as u64);
    assert_eq!(count_frames(&out_path, "a:0"), kept_audio);
    assert_eq!(
        packet_hashes(&out_path, "0:v:0"),
        packet_hashes(&src, "0:v:0")
    );
    // One continuous timeline: pictures at 0, 1/30, 2/30, ... across the seam.
    let times = frame_times(&out_path);
    assert_eq!(times.len(), video.len());
    for (i, t) in times.iter().enumerate() {
        assert!((t - i as f64 / 30.0).abs() < 1e-3, "frame {i} at {t}");
    }
    // And the VOD path indexes it.
    let rec = MediaIndex::open(&File::open(&out_path).unwrap(), &IndexOptions::default()).unwrap();
    assert_eq!(rec.track(v.id).unwrap().sample_count as usize, video.len());
    assert_eq!(rec.track(a.id).unwrap().sample_count as u64, kept_audio);
    assert!((rec.duration_secs() - 4.0).abs() < 0.1);
}
