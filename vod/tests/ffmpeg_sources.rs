//! End-to-end with real peers: ffmpeg makes the sources (x264 with B-frames,
//! HEVC, two audio languages, moov at the end and faststart); vela-vod
//! indexes them and builds init + fragments; ffprobe reads the result,
//! `framemd5` proves the passthrough is bit-exact, and mp4-atom (strict)
//! decodes every fragment box.
//!
//! Edit-list rule checked here: our fragments carry every sample of the
//! source. ffmpeg's mov demuxer may drop the samples an edit list cuts (the
//! AAC priming frame before the edit, a frame past its end); so the source's
//! packet hashes must appear, in order and contiguously, in ours, with at
//! most one extra packet before and one after.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use mp4_atom::{Decode, Mdat, Moof};
use vela_vod::{IndexOptions, MediaIndex, VodError};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn has_encoder(ffmpeg: &str, name: &str) -> bool {
    Command::new(ffmpeg)
        .args(["-hide_banner", "-encoders"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {name} ")))
        .unwrap_or(false)
}

fn static_ffmpeg() -> Option<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Makes a source with `ffmpeg`: test video + one sine per audio track.
fn make(
    ffmpeg: &str,
    dir: &Path,
    name: &str,
    video_args: &[&str],
    audio_langs: &[&str],
    extra: &[&str],
) -> PathBuf {
    let path = dir.join(name);
    let mut c = Command::new(ffmpeg);
    c.args(["-hide_banner", "-loglevel", "error", "-y"]).args([
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
    ]);
    for (i, _) in audio_langs.iter().enumerate() {
        c.args([
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency={}:sample_rate=48000", 440 + 220 * i),
        ]);
    }
    c.args(["-t", "10", "-map", "0:v"]);
    for i in 0..audio_langs.len() {
        c.args(["-map", &format!("{}:a", i + 1)]);
    }
    c.args(video_args).args(["-pix_fmt", "yuv420p", "-g", "60"]);
    c.args(["-c:a", "aac", "-b:a", "96k"]);
    for (i, lang) in audio_langs.iter().enumerate() {
        c.arg(format!("-metadata:s:a:{i}"))
            .arg(format!("language={lang}"));
    }
    c.args(extra).arg(&path);
    run(&mut c);
    path
}

/// Writes init + every fragment of a track to one file; decodes each
/// fragment's boxes with mp4-atom (strict) on the way.
fn package(ix: &MediaIndex, src: &File, track: u32, out: &Path) {
    let t = ix.track(track).unwrap();
    let mut bytes = ix.init(track).unwrap().to_vec();
    let moov_at = bytes.windows(4).position(|w| w == b"moov").unwrap() - 4;
    mp4_atom::Moov::decode(&mut &bytes[moov_at..]).expect("init moov decodes");
    let mut next_dts = 0u64;
    for seg in ix.segments(track).unwrap() {
        let frag = ix.fragment(src, track, seg.number).unwrap();
        let mut buf = &frag[..];
        let moof = Moof::decode(&mut buf).expect("moof decodes (strict)");
        let mdat = Mdat::decode(&mut buf).expect("mdat decodes (strict)");
        assert!(buf.is_empty());
        assert_eq!(moof.mfhd.sequence_number, seg.number + 1);
        let tfdt = moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time;
        assert_eq!(tfdt, seg.start);
        if seg.number > 0 {
            assert_eq!(tfdt, next_dts, "fragments are contiguous");
        }
        next_dts = tfdt + seg.duration;
        assert_eq!(mdat.data.len() as u64, seg.bytes);
        if t.kind() == vela_media::MediaKind::Audio {
            // The priming edit, as negative composition offsets.
            for e in moof.traf[0].trun[0].samples.iter() {
                assert_eq!(e.cts.unwrap_or(0), -(t.edit.media_time as i64));
            }
        }
        bytes.extend_from_slice(&frag);
    }
    std::fs::write(out, bytes).unwrap();
    if let Ok(d) = std::env::var("VOD_KEEP") {
        std::fs::copy(out, Path::new(&d).join(out.file_name().unwrap())).unwrap();
    }
}

fn ffprobe(path: &Path) -> serde_json::Value {
    let out = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path));
    serde_json::from_str(&out).unwrap()
}

/// Every packet of one stream as ffmpeg demuxes it: [dts, pts, duration,
/// size, hash, then side data if any (the source's skip-samples for AAC
/// priming)].
fn packets(path: &Path, map: &str) -> Vec<Vec<String>> {
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-map", map, "-c", "copy", "-f", "framemd5", "-"]));
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(',').skip(1).map(|c| c.trim().to_string()).collect())
        .collect()
}

/// Video: ffmpeg reads the same packets with the same timestamps from the
/// source and from ours (the edit shift went into the composition offsets).
fn assert_video_passthrough(src: &Path, map: &str, out: &Path) {
    let want = packets(src, map);
    let got = packets(out, "0:0");
    assert!(!want.is_empty());
    assert_eq!(want, got, "{map}: packets differ");
}

/// Audio: the source's packets (size, hash) appear contiguously in ours,
/// with at most one extra packet at each end (see the module doc). Times are
/// not compared: ffmpeg ignores an audio trun's negative composition offsets
/// (the AAC priming shift), which MSE and AVFoundation honour.
fn assert_audio_passthrough(src: &Path, map: &str, out: &Path) {
    let tail = |v: Vec<Vec<String>>| -> Vec<Vec<String>> {
        v.into_iter().map(|p| p[3..5].to_vec()).collect()
    };
    let want = tail(packets(src, map));
    let got = tail(packets(out, "0:0"));
    assert!(!want.is_empty());
    let at = (0..=1usize)
        .find(|&k| got.len() >= k + want.len() && got[k..k + want.len()] == want[..])
        .unwrap_or_else(|| {
            panic!(
                "{map}: source packets ({}) not found in ours ({})",
                want.len(),
                got.len()
            )
        });
    assert!(
        got.len() - want.len() - at <= 1,
        "{map}: {} extra packets",
        got.len() - want.len()
    );
}

fn stream_duration(v: &serde_json::Value) -> f64 {
    v["format"]["duration"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("format duration")
}

struct Expect {
    codec: &'static str,
    languages: &'static [&'static str],
}

fn check_source(src: &Path, work: &Path, exp: &Expect) {
    let file = File::open(src).unwrap();
    let ix = MediaIndex::open(&file, &IndexOptions::default()).unwrap();
    let probe_src = ffprobe(src);
    assert_eq!(ix.tracks().count(), 1 + exp.languages.len());
    assert!(ix.segment_count() >= 3, "10 s at 4 s targets");
    let mut audio_n = 0;
    for t in ix.tracks() {
        let out = work.join(format!(
            "{}-track{}.mp4",
            src.file_stem().unwrap().to_string_lossy(),
            t.id()
        ));
        package(&ix, &file, t.id(), &out);
        let probe = ffprobe(&out);
        let s = &probe["streams"][0];
        let dur = stream_duration(&probe);
        assert!(
            (dur - 10.0).abs() < 0.15,
            "{}: duration {dur}",
            out.display()
        );
        match t.kind() {
            vela_media::MediaKind::Video => {
                assert_eq!(s["codec_name"], exp.codec);
                assert_eq!(s["width"], 320);
                assert_eq!(s["height"], 240);
                assert_video_passthrough(src, "0:v:0", &out);
            }
            vela_media::MediaKind::Audio => {
                assert_eq!(s["codec_name"], "aac");
                assert_eq!(s["sample_rate"], "48000");
                let lang = exp.languages[audio_n];
                assert_eq!(t.language, lang);
                assert_eq!(s["tags"]["language"], lang, "{}", out.display());
                assert_audio_passthrough(src, &format!("0:a:{audio_n}"), &out);
                audio_n += 1;
            }
        }
    }
    // Same stream count as the source, by kind.
    assert_eq!(
        probe_src["streams"].as_array().unwrap().len(),
        ix.tracks().count()
    );
}

#[test]
fn h264_bframes_aac_moov_at_end_and_faststart() {
    let dir = tempfile::tempdir().unwrap();
    let x264 = ["-c:v", "libx264", "-bf", "3", "-preset", "veryfast"];
    let end = make("ffmpeg", dir.path(), "h264.mp4", &x264, &["eng"], &[]);
    let fast = make(
        "ffmpeg",
        dir.path(),
        "h264-fast.mp4",
        &x264,
        &["eng"],
        &["-movflags", "+faststart"],
    );
    // The default muxer puts the moov at the end; faststart at the front.
    let head = |p: &Path| std::fs::read(p).unwrap()[..64].to_vec();
    assert!(!head(&end).windows(4).any(|w| w == b"moov"));
    assert!(head(&fast).windows(4).any(|w| w == b"moov"));
    let exp = Expect {
        codec: "h264",
        languages: &["eng"],
    };
    check_source(&end, dir.path(), &exp);
    check_source(&fast, dir.path(), &exp);

    // B-frames with ffmpeg's edit list: negative composition offsets appear.
    let ix = MediaIndex::open(&File::open(&end).unwrap(), &IndexOptions::default()).unwrap();
    let v = ix.tracks().next().unwrap();
    assert!(
        v.edit.media_time > 0,
        "ffmpeg writes an edit for the B-frame delay"
    );
    let seg = ix.segment(v.id(), 1).unwrap();
    assert_eq!(
        seg.presentation_start, seg.start as i64,
        "keyframe presents at its decode time"
    );
}

#[test]
fn hevc_aac() {
    let ffmpeg = match static_ffmpeg().filter(|f| has_encoder(f, "libx265")) {
        Some(f) => f,
        None if has_encoder("ffmpeg", "libx265") => "ffmpeg".to_string(),
        None => {
            println!("skipped: no ffmpeg with libx265");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let src = make(
        &ffmpeg,
        dir.path(),
        "hevc.mp4",
        &[
            "-c:v",
            "libx265",
            "-tag:v",
            "hvc1",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
        ],
        &["eng"],
        &[],
    );
    check_source(
        &src,
        dir.path(),
        &Expect {
            codec: "hevc",
            languages: &["eng"],
        },
    );
}

#[test]
fn two_audio_languages() {
    let dir = tempfile::tempdir().unwrap();
    let src = make(
        "ffmpeg",
        dir.path(),
        "multi.mp4",
        &["-c:v", "libx264", "-bf", "3", "-preset", "veryfast"],
        &["eng", "fra"],
        &["-movflags", "+faststart"],
    );
    check_source(
        &src,
        dir.path(),
        &Expect {
            codec: "h264",
            languages: &["eng", "fra"],
        },
    );
    // Every track has the same segment count over the same times.
    let ix = MediaIndex::open(&File::open(&src).unwrap(), &IndexOptions::default()).unwrap();
    let starts: Vec<Vec<f64>> = ix
        .tracks()
        .map(|t| {
            ix.segments(t.id())
                .unwrap()
                .iter()
                .map(|s| s.presentation_start as f64 / f64::from(t.timescale()))
                .collect()
        })
        .collect();
    for s in &starts[1..] {
        assert_eq!(s.len(), starts[0].len());
        for (a, b) in s.iter().zip(&starts[0]).skip(1) {
            assert!((a - b).abs() < 0.025, "audio segment at {a}, video at {b}");
        }
    }
}

#[test]
fn corrupt_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let x264 = ["-c:v", "libx264", "-bf", "3", "-preset", "veryfast"];
    let end = make("ffmpeg", dir.path(), "end.mp4", &x264, &["eng"], &[]);
    let fast = make(
        "ffmpeg",
        dir.path(),
        "fast.mp4",
        &x264,
        &["eng"],
        &["-movflags", "+faststart"],
    );
    let open = |b: &[u8]| MediaIndex::open(b, &IndexOptions::default());
    let end = std::fs::read(end).unwrap();
    let fast = std::fs::read(fast).unwrap();

    // An upload cut short: the moov (at the end) is missing or truncated.
    let e = open(&end[..end.len() * 9 / 10]).unwrap_err();
    assert!(
        matches!(e, VodError::NoMoov | VodError::MoovPastEof { .. }),
        "{e}"
    );
    let e = open(&end[..end.len() - 100]).unwrap_err();
    assert!(matches!(e, VodError::MoovPastEof { .. }), "{e}");
    // Faststart cut short: the moov is whole but its chunks point past EOF.
    let e = open(&fast[..fast.len() / 2]).unwrap_err();
    assert!(e.to_string().contains("past the end of the file"), "{e}");
    // Zero timescale in the first mdhd.
    let mut f = fast.clone();
    let at = f.windows(4).position(|w| w == b"mdhd").unwrap() + 4 + 12;
    f[at..at + 4].copy_from_slice(&[0; 4]);
    assert!(matches!(open(&f), Err(VodError::ZeroTimescale { .. })));
}

#[test]
fn fuzz_entry_on_mutations_of_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.mp4");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10"])
        .args(["-f", "lavfi", "-i", "sine=sample_rate=8000"])
        .args(["-t", "2", "-c:v", "libx264", "-bf", "2", "-g", "5"])
        .args(["-c:a", "aac", "-b:a", "16k", "-movflags", "+faststart"])
        .arg(&path));
    let seed = std::fs::read(&path).unwrap();
    vela_vod::fuzzing::mp4_index(&seed);
    assert!(MediaIndex::open(&seed[..], &IndexOptions::default()).is_ok());
    let mut rng = vela_vod::fuzzing::Rng::new(0xf00d);
    for _ in 0..4000 {
        let m = vela_vod::fuzzing::mutate(&seed, &mut rng);
        vela_vod::fuzzing::mp4_index(&m);
    }
}

#[test]
fn quicktime_mov() {
    let dir = tempfile::tempdir().unwrap();
    let src = make(
        "ffmpeg",
        dir.path(),
        "clip.mov",
        &["-c:v", "libx264", "-bf", "3", "-preset", "veryfast"],
        &["eng"],
        &[],
    );
    check_source(
        &src,
        dir.path(),
        &Expect {
            codec: "h264",
            languages: &["eng"],
        },
    );
}

/// A real 2-hour file (tiny picture, same sample counts as 1080p30 + 48 kHz
/// AAC: 216k video and 337.5k audio samples). Ignored by default: encoding
/// it takes a minute or two of CPU. `cargo test --release -p vela-vod --test
/// ffmpeg_sources -- --ignored --nocapture`.
#[test]
#[ignore]
fn two_hour_real_file_index_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("2h.mp4");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=64x36:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=sample_rate=48000"])
        .args([
            "-t",
            "7200",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "3",
        ])
        .args(["-g", "60", "-c:a", "aac", "-b:a", "32k"])
        .arg(&path));
    let file = File::open(&path).unwrap();
    let ix = MediaIndex::open(&file, &IndexOptions::default()).unwrap();
    let counts: Vec<u32> = ix.tracks().map(|t| t.sample_count).collect();
    println!(
        "real 2-hour file: samples {counts:?}, {} segments, index heap size {} bytes",
        ix.segment_count(),
        ix.heap_size()
    );
    assert_eq!(counts[0], 216_000);
    assert!(ix.heap_size() <= 1 << 20);
    let last = ix.segment_count() - 1;
    for t in ix.tracks() {
        ix.fragment(&file, t.id(), last).unwrap();
    }
}
