//! End to end with the real ffmpeg: clear fragmented MP4 made by ffmpeg
//! (lavfi testsrc2 + libx264, lavfi sine + aac) is split into its init
//! segment and fragments, protected by this crate, and decoded back by
//! ffmpeg (`-decryption_key` for cenc/cbcs, an AES-128 HLS playlist for
//! whole-segment encryption). Every decoded frame must match the clear
//! file's (framecrc checksums). Skipped, loudly, where ffmpeg is absent.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use vela_drm::{cenc, hls, ContentKey, Scheme, SystemId};
use vela_media::{AudioCodec, CodecConfig, VideoCodec};

const KEY: ContentKey = ContentKey {
    period: 0,
    kid: *b"vela-e2e-kid-001",
    key: [
        0x76, 0x65, 0x6c, 0x61, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x30,
        0x31,
    ],
    iv: [
        0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1,
        0xf0,
    ],
};

fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: ffmpeg not found on PATH");
    }
    ok
}

fn run(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// (size, checksum) of each frame in ffmpeg's framecrc output.
fn frame_sums(framecrc: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(framecrc)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            (f[f.len() - 2].to_string(), f[f.len() - 1].to_string())
        })
        .collect()
}

fn boxes(buf: &[u8]) -> Vec<(&[u8], [u8; 4])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= buf.len() {
        let n = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = buf[at + 4..at + 8].try_into().unwrap();
        out.push((&buf[at..at + n], kind));
        at += n;
    }
    out
}

/// Splits a fragmented MP4 into (init = ftyp+moov, [moof+mdat]).
fn split(mp4: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut init = Vec::new();
    let mut frags: Vec<Vec<u8>> = Vec::new();
    for (b, kind) in boxes(mp4) {
        match &kind {
            b"ftyp" | b"moov" => init.extend_from_slice(b),
            b"moof" => frags.push(b.to_vec()),
            b"mdat" => frags
                .last_mut()
                .expect("mdat after moof")
                .extend_from_slice(b),
            _ => {}
        }
    }
    (init, frags)
}

/// The body of the first box of type `kind` anywhere in `buf` (a byte
/// search is enough for the one config box of a one-track file).
fn find_box<'a>(buf: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
    let i = buf.windows(4).position(|w| w == kind).expect("box present");
    let n = u32::from_be_bytes(buf[i - 4..i].try_into().unwrap()) as usize;
    &buf[i + 4..i - 4 + n]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn make_clear(dir: &Path, video: bool) -> std::path::PathBuf {
    let path = dir.join(if video { "clear-v.mp4" } else { "clear-a.mp4" });
    let p = path.to_str().unwrap();
    if video {
        run(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-g",
            "15",
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
            "-f",
            "mp4",
            p,
        ]);
    } else {
        run(&[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "2",
            "-c:a",
            "aac",
            "-frag_duration",
            "500000",
            "-movflags",
            "+empty_moov+default_base_moof",
            "-f",
            "mp4",
            p,
        ]);
    }
    path
}

fn codec_of(init: &[u8], video: bool) -> CodecConfig {
    if video {
        CodecConfig::Video {
            codec: VideoCodec::H264,
            width: 320,
            height: 240,
            frame_rate: None,
            record: Bytes::copy_from_slice(find_box(init, b"avcC")),
        }
    } else {
        CodecConfig::Audio {
            codec: AudioCodec::Aac,
            sample_rate: 48000,
            channels: 1,
            specific_config: Bytes::new(),
        }
    }
}

/// Decodes `init + fragment` with ffmpeg and returns its frames' sums.
fn decode_one(
    dir: &Path,
    name: &str,
    init: &[u8],
    frag: &[u8],
    key: Option<&[u8; 16]>,
) -> Vec<(String, String)> {
    let path = dir.join(name);
    std::fs::write(&path, [init, frag].concat()).unwrap();
    let mut args: Vec<String> = Vec::new();
    if let Some(k) = key {
        args.extend(["-decryption_key".to_string(), hex(k)]);
    }
    args.extend([
        "-i".into(),
        path.to_str().unwrap().into(),
        "-f".into(),
        "framecrc".into(),
        "-".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    frame_sums(&run(&args))
}

// Each fragment is decoded from its own file (init + that fragment): ffmpeg
// 5.1 applies the encryption info of the last `moof` it has read to the
// samples of earlier ones when a file holds several fragments (its fragment
// index moves ahead of the demuxer), which would fail any multi-fragment
// file, however it was encrypted.
fn check_cenc(scheme: Scheme, video: bool) {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clear_path = make_clear(dir.path(), video);
    let clear = std::fs::read(&clear_path).unwrap();
    let (init, frags) = split(&clear);
    assert!(frags.len() >= 3, "ffmpeg made {} fragments", frags.len());
    let cfg = codec_of(&init, video);
    let enc_init = cenc::protect_init(&init, scheme, &KEY, &SystemId::ALL).unwrap();
    let mut frames = 0;
    for (i, f) in frags.iter().enumerate() {
        let seed = cenc::iv_seed(1, i as u64, 0);
        let p = cenc::protect_fragment(f, scheme, &KEY, &cfg, seed).unwrap();
        assert_ne!(&p[..], &f[..]);
        let want = decode_one(dir.path(), "clear.mp4", &init, f, None);
        let got = decode_one(dir.path(), "enc.mp4", &enc_init, &p, Some(&KEY.key));
        assert!(!want.is_empty());
        assert_eq!(
            got, want,
            "{scheme:?} fragment {i}: decode differs from the clear decode"
        );
        frames += want.len();
        if i == 0 {
            // With a wrong key the frames do not come out right (or at all).
            let wrong = Command::new("ffmpeg")
                .args([
                    "-hide_banner",
                    "-loglevel",
                    "quiet",
                    "-nostdin",
                    "-decryption_key",
                ])
                .arg(hex(&[0x55; 16]))
                .args([
                    "-i",
                    dir.path().join("enc.mp4").to_str().unwrap(),
                    "-f",
                    "framecrc",
                    "-",
                ])
                .output()
                .unwrap();
            assert_ne!(frame_sums(&wrong.stdout), want);
        }
    }
    assert!(frames >= if video { 60 } else { 90 }, "{frames} frames");
}

#[test]
fn ffmpeg_decrypts_cenc_h264() {
    check_cenc(Scheme::Cenc, true);
}

#[test]
fn ffmpeg_decrypts_cbcs_h264() {
    check_cenc(Scheme::Cbcs, true);
}

#[test]
fn ffmpeg_decrypts_cenc_aac() {
    check_cenc(Scheme::Cenc, false);
}

#[test]
fn ffmpeg_decrypts_cbcs_aac() {
    check_cenc(Scheme::Cbcs, false);
}

#[test]
fn ffmpeg_plays_aes128_hls() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clear_path = make_clear(dir.path(), true);
    let clear = std::fs::read(&clear_path).unwrap();
    let (init, frags) = split(&clear);
    std::fs::write(dir.path().join("init.mp4"), &init).unwrap();
    std::fs::write(dir.path().join("key.bin"), KEY.key).unwrap();
    let first_msn = 5u64;
    let mut m3u8 = String::from(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-PLAYLIST-TYPE:VOD\n",
    );
    m3u8.push_str(&format!("#EXT-X-MEDIA-SEQUENCE:{first_msn}\n"));
    m3u8.push_str("#EXT-X-MAP:URI=\"init.mp4\"\n");
    m3u8.push_str(&hls::ext_x_key("key.bin"));
    m3u8.push('\n');
    for (i, f) in frags.iter().enumerate() {
        let msn = first_msn + i as u64;
        let enc = hls::encrypt_segment(&KEY, msn, f);
        assert_eq!(hls::decrypt_segment(&KEY, msn, &enc).unwrap(), &f[..]);
        let name = format!("seg{msn}.m4s");
        std::fs::write(dir.path().join(&name), &enc).unwrap();
        m3u8.push_str(&format!("#EXTINF:0.5,\n{name}\n"));
    }
    m3u8.push_str("#EXT-X-ENDLIST\n");
    let playlist = dir.path().join("index.m3u8");
    std::fs::write(&playlist, m3u8).unwrap();
    let want = frame_sums(&run(&[
        "-i",
        clear_path.to_str().unwrap(),
        "-f",
        "framecrc",
        "-",
    ]));
    let got = frame_sums(&run(&[
        "-allowed_extensions",
        "ALL",
        "-protocol_whitelist",
        "file,crypto,data",
        "-i",
        playlist.to_str().unwrap(),
        "-f",
        "framecrc",
        "-",
    ]));
    assert_eq!(want.len(), 60);
    assert_eq!(
        got, want,
        "AES-128 HLS decode differs from the clear decode"
    );
}
