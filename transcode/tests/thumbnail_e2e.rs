//! Thumbnails against real peers: ffmpeg makes fragmented MP4 (testsrc2,
//! B-frames), the test cuts it into the init segment and fragments as the
//! packagers hand them over, and ffmpeg decodes both the thumbnail JPEG and
//! its own picture of the expected frame; the two are compared by PSNR.
//! testsrc2 changes every frame, so a neighbouring frame scores clearly
//! lower than the right one.
//!
//! Needs ffmpeg/ffprobe (Debian 12's 5.1) and, for HEVC, an ffmpeg with
//! libx265 (the static one scripts/setup installs through imageio-ffmpeg,
//! or VELA_FFMPEG_HEVC).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use vela_transcode::{
    last_frame_time, thumbnail, thumbnail_within, Stage, ThumbnailError, ThumbnailInput,
    ThumbnailRequest,
};

// --- fixtures ----------------------------------------------------------------

/// One encoded clip, cut into boxes, with ffprobe's view of its frames.
struct Clip {
    src: PathBuf,
    init: Bytes,
    /// Each `moof` + `mdat` (with any `styp`/`sidx` before it).
    fragments: Vec<Bytes>,
    timescale: u32,
    /// Presentation order: (pts, picture type).
    frames: Vec<(i64, char)>,
    /// The decoder configuration record (avcC / hvcC body).
    record: Bytes,
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Clips and decoded pictures, under the target directory (one folder per
/// test process: nextest runs each test in its own).
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("thumbnail_e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fn hevc_ffmpeg() -> PathBuf {
    if let Some(p) = std::env::var_os("VELA_FFMPEG_HEVC") {
        return PathBuf::from(p);
    }
    let out = run(Command::new("python3").args([
        "-c",
        "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
    ]));
    PathBuf::from(String::from_utf8(out).unwrap().trim())
}

/// testsrc2 encoded with `codec_args`, fragmented at each keyframe (every
/// 2 s at 25 fps).
fn make_clip(name: &str, ffmpeg: &Path, size: &str, seconds: u32, codec_args: &[&str]) -> Clip {
    make_clip_with(name, ffmpeg, size, seconds, &[], codec_args)
}

/// [`make_clip`] with more inputs (`-f lavfi -i sine`, ...) after the video.
fn make_clip_with(
    name: &str,
    ffmpeg: &Path,
    size: &str,
    seconds: u32,
    inputs: &[&str],
    codec_args: &[&str],
) -> Clip {
    let src = fixtures().join(format!("{name}.mp4"));
    let mut cmd = Command::new(ffmpeg);
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
    ])
    .arg(format!("testsrc2=size={size}:rate=25"))
    .args(inputs)
    .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p"])
    .args(codec_args)
    .args(["-g", "50", "-keyint_min", "50", "-sc_threshold", "0"])
    .args(["-movflags", "frag_keyframe+empty_moov+default_base_moof"])
    .arg(&src);
    run(&mut cmd);
    let data = std::fs::read(&src).unwrap();
    let (init, fragments) = split_boxes(&data);
    let record = find_record(&init);

    let tb = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=time_base", "-of", "csv=p=0"])
        .arg(&src));
    let tb = String::from_utf8(tb).unwrap();
    let timescale: u32 = tb.trim().strip_prefix("1/").unwrap().parse().unwrap();
    let frames = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "frame=pts,pict_type", "-of", "csv=p=0"])
        .arg(&src));
    let frames: Vec<(i64, char)> = String::from_utf8(frames)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (pts, kind) = l.trim().split_once(',').unwrap();
            (pts.parse().unwrap(), kind.chars().next().unwrap())
        })
        .collect();
    assert_eq!(frames.len() as u32, seconds * 25, "{name}: frame count");
    assert!(frames.windows(2).all(|w| w[0].0 < w[1].0));
    Clip {
        src,
        init,
        fragments,
        timescale,
        frames,
        record,
    }
}

fn h264() -> &'static Clip {
    static CLIP: OnceLock<Clip> = OnceLock::new();
    CLIP.get_or_init(|| {
        make_clip(
            "h264",
            Path::new("ffmpeg"),
            "640x360",
            6,
            &["-c:v", "libx264", "-preset", "veryfast", "-bf", "3"],
        )
    })
}

fn hevc() -> &'static Clip {
    static CLIP: OnceLock<Clip> = OnceLock::new();
    CLIP.get_or_init(|| {
        make_clip(
            "hevc",
            &hevc_ffmpeg(),
            "640x360",
            4,
            &[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-tag:v",
                "hvc1",
                "-x265-params",
                "bframes=3:keyint=50:min-keyint=50:scenecut=0:log-level=error",
            ],
        )
    })
}

/// Top-level boxes: `ftyp` + `moov` form the init segment, each `moof` +
/// `mdat` a fragment; `mfra` at the end is dropped.
fn split_boxes(data: &[u8]) -> (Bytes, Vec<Bytes>) {
    let mut at = 0;
    let mut init_end = 0;
    let mut fragments = Vec::new();
    let mut frag_start = None;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let kind = &data[at + 4..at + 8];
        assert!(size >= 8 && at + size <= data.len(), "box at {at}");
        match kind {
            b"ftyp" | b"moov" => init_end = at + size,
            b"styp" | b"sidx" | b"moof" => {
                frag_start.get_or_insert(at);
            }
            b"mdat" => {
                let start = frag_start.take().expect("mdat after moof");
                fragments.push(Bytes::copy_from_slice(&data[start..at + size]));
            }
            _ => {}
        }
        at += size;
    }
    (Bytes::copy_from_slice(&data[..init_end]), fragments)
}

/// The avcC / hvcC body inside the init segment.
fn find_record(init: &[u8]) -> Bytes {
    for kind in [b"avcC", b"hvcC"] {
        if let Some(i) = init.windows(4).position(|w| w == kind) {
            let size = u32::from_be_bytes(init[i - 4..i].try_into().unwrap()) as usize;
            return Bytes::copy_from_slice(&init[i + 4..i - 4 + size]);
        }
    }
    panic!("no avcC/hvcC in the init segment");
}

// --- pictures ------------------------------------------------------------------

/// A decoded picture: RGB24, or 8-bit luma only (`GRAY`).
struct Rgb {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

/// ffmpeg's own decode of frame `n` (presentation order) of `src`, scaled
/// to `w`×`h`.
fn reference(src: &Path, n: usize, w: u32, h: u32) -> Rgb {
    reference_as(src, n, w, h, RGB)
}

const RGB: &str = "rgb24";
const GRAY: &str = "gray";

fn bytes_per_pixel(pix_fmt: &str) -> u32 {
    if pix_fmt == GRAY {
        1
    } else {
        3
    }
}

fn reference_as(src: &Path, n: usize, w: u32, h: u32, pix_fmt: &str) -> Rgb {
    let px = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(src)
        .arg("-vf")
        .arg(format!("select=eq(n\\,{n}),scale={w}:{h}"))
        .args(["-fps_mode", "passthrough", "-frames:v", "1"])
        .args(["-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1"]));
    assert_eq!(
        px.len(),
        (w * h * bytes_per_pixel(pix_fmt)) as usize,
        "reference frame {n}"
    );
    Rgb { w, h, px }
}

/// The thumbnail decoded by ffmpeg.
fn decode_jpeg(jpeg: &[u8]) -> Rgb {
    decode_jpeg_as(jpeg, RGB)
}

fn decode_jpeg_as(jpeg: &[u8], pix_fmt: &str) -> Rgb {
    assert!(jpeg.starts_with(&[0xFF, 0xD8]), "not a JPEG");
    let path = fixtures().join(format!("thumb-{:?}.jpg", std::thread::current().id()));
    std::fs::write(&path, jpeg).unwrap();
    let dims = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&path));
    let dims = String::from_utf8(dims).unwrap();
    let (w, h) = dims.trim().split_once(',').unwrap();
    let (w, h): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
    let px = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&path)
        .args(["-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1"]));
    assert_eq!(px.len(), (w * h * bytes_per_pixel(pix_fmt)) as usize);
    Rgb { w, h, px }
}

fn psnr(a: &Rgb, b: &Rgb) -> f64 {
    assert_eq!((a.w, a.h), (b.w, b.h));
    let se: f64 =
        a.px.iter()
            .zip(&b.px)
            .map(|(&x, &y)| {
                let d = f64::from(x) - f64::from(y);
                d * d
            })
            .sum();
    let mse = se / a.px.len() as f64;
    if mse == 0.0 {
        return 99.0;
    }
    10.0 * (255.0 * 255.0 / mse).log10()
}

/// The thumbnail at `t` must be frame `n` of the clip: PSNR above 30 dB
/// against ffmpeg's frame `n`, and at least 5 dB lower against each
/// neighbour.
fn assert_frame(clip: &Clip, jpeg: &[u8], n: usize, what: &str) {
    let got = decode_jpeg(jpeg);
    let right = psnr(&got, &reference(&clip.src, n, got.w, got.h));
    let mut line = format!("{what}: frame {n}: {right:.1} dB");
    assert!(right > 30.0, "{line}: below 30 dB");
    for m in [n.wrapping_sub(1), n + 1] {
        if m < clip.frames.len() {
            let wrong = psnr(&got, &reference(&clip.src, m, got.w, got.h));
            line += &format!(", frame {m}: {wrong:.1} dB");
            assert!(wrong < right - 5.0, "{line}: a neighbour scores as well");
        }
    }
    eprintln!("{line}");
}

fn pieces(clip: &Clip, fragments: &[usize]) -> Vec<Bytes> {
    let mut v = vec![clip.init.clone()];
    v.extend(fragments.iter().map(|&i| clip.fragments[i].clone()));
    v
}

fn at(clip: &Clip, t: i64) -> ThumbnailRequest {
    ThumbnailRequest::at(t, clip.timescale)
}

// --- tests ---------------------------------------------------------------------

#[test]
fn h264_picks_the_frame_shown_at_the_time_including_b_frames() {
    let clip = h264();
    assert_eq!(clip.fragments.len(), 3);
    let input = pieces(clip, &[1]); // the 2..4 s segment
    let tick = clip.frames[1].0 - clip.frames[0].0;
    // The segment's frames: 50..100 in presentation order.
    let first = clip.frames[50].0;
    assert_eq!(clip.frames[50].1, 'I');
    let b = (51..100).find(|&n| clip.frames[n].1 == 'B').unwrap();
    let cases = [
        ("keyframe", first, 50),
        ("B-frame, mid-interval", clip.frames[b].0 + tick / 2, b),
        ("P-frame exact", clip.frames[b + 3].0, b + 3),
        ("just before the next frame", clip.frames[b + 1].0 - 1, b),
        ("last frame", clip.frames[99].0 + tick - 1, 99),
        ("before the segment", 0, 50),
    ];
    for (what, t, n) in cases {
        let jpeg = thumbnail(ThumbnailInput::new(&input), &at(clip, t)).unwrap();
        assert_frame(clip, &jpeg, n, &format!("h264 {what} (t={t})"));
    }
}

#[test]
fn latest_picture_of_a_live_segment() {
    let clip = h264();
    let input = pieces(clip, &[0, 1]);
    let (t, timescale) = last_frame_time(ThumbnailInput::new(&input)).unwrap();
    assert_eq!((t, timescale), (clip.frames[99].0, clip.timescale));
    let jpeg = thumbnail(
        ThumbnailInput::new(&input),
        &ThumbnailRequest::at(t, timescale),
    )
    .unwrap();
    assert_frame(clip, &jpeg, 99, "latest picture");
}

/// An init segment that also describes an audio track (and fragments that
/// carry it): the audio goes nowhere, the picture is still right.
#[test]
fn an_audio_track_beside_the_video_is_ignored() {
    let clip = make_clip_with(
        "h264-aac",
        Path::new("ffmpeg"),
        "320x180",
        4,
        &["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"],
        &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-bf",
            "3",
            "-c:a",
            "aac",
            "-shortest",
        ],
    );
    assert!(clip.init.windows(4).any(|w| w == b"soun"));
    let input = pieces(&clip, &[1]);
    let b = (51..100).find(|&n| clip.frames[n].1 == 'B').unwrap();
    let jpeg = thumbnail(ThumbnailInput::new(&input), &at(&clip, clip.frames[b].0)).unwrap();
    assert_frame(&clip, &jpeg, b, "h264 with an audio track, B-frame");
}

#[test]
fn h264_pieces_cut_anywhere_and_several_fragments() {
    let clip = h264();
    let mut all = Vec::new();
    for p in pieces(clip, &[0, 1, 2]) {
        all.extend_from_slice(&p);
    }
    // Cut at 1000 bytes, like a live packager's parts that ignore boxes.
    let cut: Vec<Bytes> = all.chunks(1000).map(Bytes::copy_from_slice).collect();
    let n = 137;
    let jpeg = thumbnail(ThumbnailInput::new(&cut), &at(clip, clip.frames[n].0)).unwrap();
    assert_frame(clip, &jpeg, n, "h264 3 fragments in 1000-byte pieces");
}

#[test]
fn hevc_b_frame() {
    let clip = hevc();
    let input = pieces(clip, &[1]);
    assert_eq!(clip.frames[50].1, 'I');
    let b = (51..100).find(|&n| clip.frames[n].1 == 'B').unwrap();
    for (what, n) in [("keyframe", 50), ("B-frame", b), ("later B-frame", b + 4)] {
        let jpeg = thumbnail(ThumbnailInput::new(&input), &at(clip, clip.frames[n].0)).unwrap();
        assert_frame(clip, &jpeg, n, &format!("hevc {what}"));
    }
}

/// The live packager's own boxes (vela-packager): the same samples
/// re-boxed with a decode time ten hours in, as a long-running stream has.
#[test]
fn vela_packager_fragments_far_into_a_stream() {
    use vela_media::{CodecConfig, Track, VideoCodec};
    use vela_packager::boxes;

    let clip = h264();
    let shift: u64 = 10 * 3600 * u64::from(clip.timescale);
    let track = Track {
        id: 1,
        timescale: clip.timescale,
        config: CodecConfig::Video {
            codec: VideoCodec::H264,
            width: 640,
            height: 360,
            frame_rate: Some(25.0),
            record: clip.record.clone(),
        },
        bitrate: None,
    };
    let mut input = vec![boxes::init_segment(&track)];
    for (i, frag) in clip.fragments.iter().enumerate().take(2) {
        let read = boxes::read_fragment(frag).unwrap();
        input.push(boxes::fragment(
            i as u32 + 1,
            1,
            read.base_decode_time + shift,
            &read.samples,
        ));
    }
    let b = (51..100).find(|&n| clip.frames[n].1 == 'B').unwrap();
    for n in [3, b] {
        let t = clip.frames[n].0 + shift as i64;
        let jpeg = thumbnail(ThumbnailInput::new(&input), &at(clip, t)).unwrap();
        assert_frame(clip, &jpeg, n, "vela-packager boxes, +10 h");
    }
    // The caller may also ask in milliseconds.
    let n = 75;
    let ms = (clip.frames[n].0 + shift as i64) * 1000 / i64::from(clip.timescale) + 1;
    let jpeg = thumbnail(ThumbnailInput::new(&input), &ThumbnailRequest::at(ms, 1000)).unwrap();
    assert_frame(clip, &jpeg, n, "vela-packager boxes, time in ms");
}

#[test]
fn scaling_keeps_the_aspect_ratio() {
    let clip = h264();
    let input = pieces(clip, &[0]);
    let n = 20;
    let sized = |w, h| ThumbnailRequest {
        width: w,
        height: h,
        ..at(clip, clip.frames[n].0)
    };
    for (w, h, want) in [
        (Some(320), None, (320, 180)),
        (None, Some(90), (160, 90)),
        (Some(200), Some(200), (200, 113)),
        (Some(1280), Some(100), (178, 100)),
    ] {
        let jpeg = thumbnail(ThumbnailInput::new(&input), &sized(w, h)).unwrap();
        // Luma only: at these sizes JPEG's halved chroma resolution on
        // testsrc2's saturated bars would dominate an RGB comparison.
        let got = decode_jpeg_as(&jpeg, GRAY);
        assert_eq!((got.w, got.h), want, "asked {w:?}x{h:?}");
        let right = psnr(&got, &reference_as(&clip.src, n, got.w, got.h, GRAY));
        let wrong = psnr(&got, &reference_as(&clip.src, n + 1, got.w, got.h, GRAY));
        eprintln!(
            "scaled {}x{}: luma {right:.1} dB against ffmpeg's scale of frame {n}, {wrong:.1} dB of the next",
            got.w, got.h
        );
        assert!(right > 30.0 && wrong < right - 3.0, "scaled {want:?}");
    }
    // Quality changes the size of the JPEG.
    let small = ThumbnailRequest {
        quality: 10,
        ..sized(None, None)
    };
    let big = ThumbnailRequest {
        quality: 95,
        ..sized(None, None)
    };
    let small = thumbnail(ThumbnailInput::new(&input), &small).unwrap();
    let big = thumbnail(ThumbnailInput::new(&input), &big).unwrap();
    assert!(
        small.len() * 2 < big.len(),
        "{} vs {}",
        small.len(),
        big.len()
    );
    // Absurd sizes are refused.
    for (w, h) in [(Some(0), None), (Some(100_000), None), (None, Some(5000))] {
        assert!(matches!(
            thumbnail(ThumbnailInput::new(&input), &sized(w, h)),
            Err(ThumbnailError::InvalidRequest(_))
        ));
    }
}

#[test]
fn past_the_end_and_bad_input_are_errors() {
    let clip = h264();
    let input = pieces(clip, &[1]);
    let tick = clip.frames[1].0 - clip.frames[0].0;
    let end = clip.frames[99].0 + tick;
    assert_eq!(
        thumbnail(ThumbnailInput::new(&input), &at(clip, end)),
        Err(ThumbnailError::PastEnd)
    );
    assert_eq!(
        thumbnail(ThumbnailInput::new(&input), &at(clip, i64::MAX)),
        Err(ThumbnailError::PastEnd)
    );

    // Garbage bytes: refused before any pipeline.
    let garbage: Vec<Bytes> = vec![Bytes::from(
        (0..5000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )];
    assert!(matches!(
        thumbnail(ThumbnailInput::new(&garbage), &at(clip, 0)),
        Err(ThumbnailError::Input(_))
    ));
    // A fragment without its init segment.
    assert!(matches!(
        thumbnail(ThumbnailInput::new(&input[1..]), &at(clip, 0)),
        Err(ThumbnailError::Input(_))
    ));

    // Well-formed boxes, garbage codec configuration: the decoder cannot
    // start, and the error names the stage.
    let mut init = clip.init.to_vec();
    let i = init.windows(4).position(|w| w == b"avcC").unwrap();
    for b in &mut init[i + 4..i + 4 + clip.record.len()] {
        *b = 0xEE;
    }
    let bad = vec![Bytes::from(init), clip.fragments[1].clone()];
    let t = clip.frames[60].0;
    let started = Instant::now();
    let err = thumbnail(ThumbnailInput::new(&bad), &at(clip, t)).unwrap_err();
    eprintln!("garbage avcC: {err} (after {:?})", started.elapsed());
    assert!(
        matches!(
            err,
            ThumbnailError::Failed {
                stage: Stage::Decode,
                ..
            }
        ),
        "{err:?}"
    );

    // Garbage media data: whatever the decoder makes of it, an answer (a
    // picture or an error) comes back within the time limit.
    let mut frag = clip.fragments[1].to_vec();
    let mdat = frag.windows(4).position(|w| w == b"mdat").unwrap();
    for (k, b) in frag[mdat + 4..].iter_mut().enumerate() {
        *b = (k * 31 % 256) as u8;
    }
    let bad = vec![clip.init.clone(), Bytes::from(frag)];
    let started = Instant::now();
    let result = thumbnail(ThumbnailInput::new(&bad), &at(clip, t));
    eprintln!(
        "garbage mdat: {:?} (after {:?})",
        result.as_ref().map(|j| j.len()),
        started.elapsed()
    );
    assert!(started.elapsed() < vela_transcode::TIME_LIMIT + std::time::Duration::from_secs(2));
}

#[test]
fn the_time_limit_ends_the_job_and_names_the_stage() {
    let clip = h264();
    let input = pieces(clip, &[1]);
    // A limit already spent when the pipeline starts: the first wait ends it
    // (a limit of a few milliseconds would race the decoder).
    let limit = std::time::Duration::ZERO;
    assert_eq!(
        thumbnail_within(
            ThumbnailInput::new(&input),
            &at(clip, clip.frames[60].0),
            limit
        ),
        Err(ThumbnailError::Timeout {
            stage: Stage::Decode,
            after: limit
        })
    );
    // The same input within the default limit is fine.
    assert!(thumbnail(ThumbnailInput::new(&input), &at(clip, clip.frames[60].0)).is_ok());
}

/// CPU time of this process so far (all threads: GStreamer's included),
/// from /proc/self/stat at the kernel's clock-tick resolution (10 ms). On a
/// busy machine it says more than the wall time.
fn process_cpu() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    std::time::Duration::from_millis(ticks * 10)
}

/// The cost of one thumbnail from a 1080p 2 s segment (50 frames, B-frames):
/// printed, not asserted. Run with `--nocapture` to see it.
#[test]
fn timing_1080p_two_second_segment() {
    let clip = make_clip(
        "h264-1080p",
        Path::new("ffmpeg"),
        "1920x1080",
        2,
        // Tagged: untagged HD is BT.709 to GStreamer but BT.601 to ffmpeg.
        &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-bf",
            "3",
            "-colorspace",
            "bt709",
            "-color_primaries",
            "bt709",
            "-color_trc",
            "bt709",
        ],
    );
    let input = pieces(&clip, &[0]);
    let mut report = Vec::new();
    for (what, n, width) in [
        (
            "first call in the process (loads the plugins), first frame",
            0,
            None,
        ),
        ("first frame, full size", 0, None),
        ("middle frame, full size", 25, None),
        ("last frame, full size", 49, None),
        ("last frame, 320 wide", 49, Some(320)),
    ] {
        let req = ThumbnailRequest {
            width,
            ..at(&clip, clip.frames[n].0)
        };
        let started = Instant::now();
        let cpu_before = process_cpu();
        let jpeg = thumbnail(ThumbnailInput::new(&input), &req).unwrap();
        let took = started.elapsed();
        let cpu = process_cpu() - cpu_before;
        report.push(format!(
            "{what}: {took:.0?} wall, {cpu:.0?} CPU ({} bytes)",
            jpeg.len()
        ));
        if n == 49 && width.is_none() {
            assert_frame(&clip, &jpeg, n, "1080p last frame");
        }
    }
    eprintln!(
        "1080p 2 s segment thumbnail timings:\n  {}",
        report.join("\n  ")
    );
}
