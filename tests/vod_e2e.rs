//! Video on demand end to end: ffmpeg (Debian's 5.1) makes source files,
//! they are uploaded through the control plane (`PUT /api/v1/entries/ID/content`),
//! and ffmpeg/ffprobe read every VOD form back: HLS, DASH and the Smooth
//! fragments, with the packets' checksums equal to the source's (passthrough
//! is bit-exact). Manifests are checked with independent parsers (m3u8-rs,
//! quick-xml, mp4-atom `strict`); Range requests, ETags and bad uploads too.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Creates a media entry and uploads `file` as its content; returns the
/// entry id and the upload's status and body.
fn upload(server: &Server, token: &str, file: &Path) -> (String, u16, Value) {
    let (s, e) = api(
        server,
        "POST",
        "/api/v1/entries",
        Some(token),
        Some(json!({"type":"media","name":"vod test"})),
    );
    assert_eq!(s, 201, "{e}");
    assert_eq!(e["status"], "pending", "{e}");
    let id = e["id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| e["id"].to_string());
    let bytes = std::fs::read(file).unwrap();
    let auth = format!("Bearer {token}");
    let r = http_request_with_body(
        "PUT",
        &server.url(&format!("/api/v1/entries/{id}/content")),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(&bytes),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| server.fail(format!("upload: {e}")));
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (id, r.status, v)
}

fn ffmpeg_make(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let ffmpeg = require_tool("ffmpeg");
    let (st, _, err) = run_bounded(
        Command::new(ffmpeg)
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(args)
            .arg(&out),
        Duration::from_secs(120),
    );
    assert!(st.success(), "ffmpeg could not make {name}: {err}");
    out
}

/// The packets of one stream of `input` (a file or URL), as (size, md5)
/// from `-f framemd5` with `-c copy`: what a passthrough must keep.
fn packet_hashes(input: &str, map: &str) -> Vec<(u64, String)> {
    let ffmpeg = require_tool("ffmpeg");
    let (st, out, err) = run_bounded(
        Command::new(ffmpeg).args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            input,
            "-map",
            map,
            "-c",
            "copy",
            "-f",
            "framemd5",
            "-",
        ]),
        Duration::from_secs(120),
    );
    assert!(st.success(), "ffmpeg could not read {input} ({map}): {err}");
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            Some((f.get(4)?.parse().ok()?, f.get(5)?.to_string()))
        })
        .collect()
}

/// Asserts that the served packets are the source's, in order.
fn assert_same_packets(what: &str, source: &[(u64, String)], served: &[(u64, String)]) {
    assert!(!source.is_empty(), "{what}: the source has no packets");
    assert_eq!(
        source.len(),
        served.len(),
        "{what}: {} packets in the source, {} served",
        source.len(),
        served.len()
    );
    for (i, (a, b)) in source.iter().zip(served).enumerate() {
        assert_eq!(a, b, "{what}: packet {i} differs");
    }
}

fn xml_elements(xml: &str) -> Vec<(String, std::collections::BTreeMap<String, String>)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).to_string();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("well-formed attribute");
                        (
                            String::from_utf8_lossy(a.key.as_ref()).to_string(),
                            a.unescape_value().expect("attribute value").to_string(),
                        )
                    })
                    .collect();
                out.push((name, attrs));
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("malformed XML: {e}\n{xml}"),
        }
    }
    out
}

#[test]
fn h264_with_b_frames_and_aac_is_served_bit_exact_in_every_form() {
    let server = Server::start();
    let token = admin_token(&server);
    // The default mp4 muxer writes the moov after the media (not faststart).
    let src = ffmpeg_make(
        &server.dir.path,
        "bframes.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "12",
            "-c:v",
            "libx264",
            "-bf",
            "3",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
        ],
    );
    let (id, status, body) = upload(&server, &token, &src);
    assert!(
        status == 200 || status == 201 || status == 202,
        "upload: {status} {body}"
    );
    let entry = wait_ready(&server, &token, &id);

    // HLS: a static presentation, parsed by m3u8-rs.
    let master = server.get(&format!("/vod/{id}/master.m3u8"));
    assert_eq!(master.status, 200, "{}", master.text());
    let m = match m3u8_rs::parse_playlist_res(&master.body) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m,
        other => panic!("not a master playlist: {other:?}"),
    };
    assert_eq!(m.variants.len(), 1);
    let variant = &m.variants[0];
    assert!(variant.codecs.as_deref().unwrap_or("").starts_with("avc1."));
    assert_eq!(
        variant.resolution.map(|r| (r.width, r.height)),
        Some((640, 360))
    );
    let audio_uri = m.alternatives[0].uri.clone().expect("audio rendition");
    let media = server.get(&format!("/vod/{id}/{}", variant.uri));
    assert_eq!(media.status, 200);
    let pl = match m3u8_rs::parse_playlist_res(&media.body) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        other => panic!("not a media playlist: {other:?}"),
    };
    assert_eq!(pl.playlist_type, Some(m3u8_rs::MediaPlaylistType::Vod));
    assert!(pl.end_list);
    let total: f32 = pl.segments.iter().map(|s| s.duration).sum();
    assert!((total - 12.0).abs() < 0.2, "HLS lists {total} s of 12 s");
    assert!(pl.segments.len() >= 3, "{} segments", pl.segments.len());
    assert!(
        media
            .header("cache-control")
            .unwrap_or("")
            .contains("max-age"),
        "VOD manifests are cacheable"
    );

    let src_s = src.to_str().unwrap();
    let video = packet_hashes(src_s, "0:v:0");
    let audio = packet_hashes(src_s, "0:a:0");
    let master_url = server.url(&format!("/vod/{id}/master.m3u8"));
    assert_same_packets("HLS video", &video, &packet_hashes(&master_url, "0:v:0"));
    let audio_url = server.url(&format!("/vod/{id}/{audio_uri}"));
    assert_same_packets("HLS audio", &audio, &packet_hashes(&audio_url, "0:a:0"));

    // DASH: a static MPD, parsed as XML, read by ffmpeg's DASH demuxer.
    let mpd = server.get(&format!("/vod/{id}/manifest.mpd"));
    assert_eq!(mpd.status, 200);
    let els = xml_elements(&mpd.text());
    let root = &els.iter().find(|(n, _)| n == "MPD").expect("MPD").1;
    assert_eq!(root.get("type").map(String::as_str), Some("static"));
    assert!(root.contains_key("mediaPresentationDuration"));
    let mpd_url = server.url(&format!("/vod/{id}/manifest.mpd"));
    assert_same_packets("DASH video", &video, &packet_hashes(&mpd_url, "0:v:0"));
    assert_same_packets("DASH audio", &audio, &packet_hashes(&mpd_url, "0:a:0"));

    // Smooth: every listed video fragment exists and is well-formed.
    let ism = server.get(&format!("/vod/{id}/Manifest"));
    assert_eq!(ism.status, 200);
    let els = xml_elements(&ism.text());
    let root = &els
        .iter()
        .find(|(n, _)| n == "SmoothStreamingMedia")
        .expect("root")
        .1;
    assert!(!root.contains_key("IsLive"));
    let bitrate = els
        .iter()
        .find(|(n, a)| n == "QualityLevel" && a.get("FourCC").map(String::as_str) == Some("H264"))
        .map(|(_, a)| a["Bitrate"].clone())
        .expect("video quality level");
    let mut t = 0u64;
    let mut fragments = 0;
    let mut in_video = false;
    for (n, a) in &els {
        if n == "StreamIndex" {
            in_video = a.get("Type").map(String::as_str) == Some("video");
        }
        if n == "c" && in_video {
            if let Some(start) = a.get("t") {
                t = start.parse().unwrap();
            }
            let r = server.get(&format!(
                "/vod/{id}/QualityLevels({bitrate})/Fragments(video={t})"
            ));
            assert_eq!(r.status, 200, "fragment at {t}");
            // Smooth's uuid boxes (tfxd, tfrf) sit in the traf, which
            // mp4-atom's strict mode refuses: walk the top-level boxes.
            assert_eq!(
                top_level_boxes(&r.body),
                vec!["moof", "mdat"],
                "fragment at {t}"
            );
            // The tfxd box's uuid (the fragment's absolute time).
            assert!(r.body.windows(4).any(|w| w == [0x6d, 0x1d, 0x9b, 0x05]));
            t += a["d"].parse::<u64>().unwrap();
            fragments += 1;
        }
    }
    assert!(fragments >= 3);

    // Range requests, ETags.
    let seg_url = format!(
        "/vod/{id}/{}",
        resolve_rel(&variant.uri, &pl.segments[1].uri)
    );
    let whole = server.get(&seg_url);
    assert_eq!(whole.status, 200);
    decode_boxes("VOD segment", &whole.body).unwrap();
    let etag = whole.header("etag").expect("ETag").to_string();
    assert!(whole.header("last-modified").is_some());
    let part = http_request(
        "GET",
        &server.url(&seg_url),
        &[("Range", "bytes=10-109")],
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[10..110]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 10-109/{}", whole.body.len()).as_str())
    );
    let past = format!("bytes={}-", whole.body.len() + 10);
    let r = http_request(
        "GET",
        &server.url(&seg_url),
        &[("Range", &past)],
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(r.status, 416);
    let r = http_request(
        "GET",
        &server.url(&seg_url),
        &[("If-None-Match", &etag)],
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(r.status, 304);
    // A segment past the end is a 404, at once.
    let r = server.get(&format!("/vod/{id}/v1/seg-9999.m4s"));
    assert_eq!(r.status, 404);

    // Thumbnails: the picture at a time, scaled keeping the aspect ratio.
    let thumb = server.get(&format!("/thumb/{id}/5.5.jpg?width=160"));
    assert_eq!(thumb.status, 200, "{}", thumb.text_lossy(300));
    assert_eq!(thumb.header("content-type"), Some("image/jpeg"));
    assert_eq!(jpeg_size(&server, &thumb.body), (160, 90));
    assert_eq!(
        server.get(&format!("/thumb/{id}/12.5.jpg")).status,
        404,
        "past the end"
    );
    let full = server.get(&format!("/thumb/{id}/0.jpg"));
    assert_eq!(full.status, 200);
    assert_eq!(jpeg_size(&server, &full.body), (640, 360));

    // The media info the upload recorded.
    let info = &entry["media"];
    if !info.is_null() {
        let d = info["duration"]
            .as_f64()
            .or(info["duration_s"].as_f64())
            .unwrap_or(0.0);
        assert!((d - 12.0).abs() < 0.5, "media info: {info}");
    }
}

/// `uri` of a segment relative to its playlist at `playlist` (both relative).
fn resolve_rel(playlist: &str, uri: &str) -> String {
    match playlist.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{uri}"),
        None => uri.to_string(),
    }
}

#[test]
fn two_audio_languages_from_a_faststart_file() {
    let server = Server::start();
    let token = admin_token(&server);
    let src = ffmpeg_make(
        &server.dir.path,
        "langs.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:sample_rate=44100",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=600:sample_rate=44100",
            "-t",
            "8",
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-map",
            "2:a",
            "-c:v",
            "libx264",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-metadata:s:a:0",
            "language=eng",
            "-metadata:s:a:1",
            "language=fra",
            "-movflags",
            "+faststart",
        ],
    );
    let (id, status, body) = upload(&server, &token, &src);
    assert!(status < 300, "upload: {status} {body}");
    wait_ready(&server, &token, &id);

    let master = server.get(&format!("/vod/{id}/master.m3u8"));
    let m = match m3u8_rs::parse_playlist_res(&master.body) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m,
        other => panic!("not a master playlist: {other:?}"),
    };
    let langs: Vec<Option<String>> = m.alternatives.iter().map(|a| a.language.clone()).collect();
    assert_eq!(
        langs,
        vec![Some("eng".into()), Some("fra".into())],
        "{}",
        master.text()
    );
    let els = xml_elements(&server.get(&format!("/vod/{id}/manifest.mpd")).text());
    let sets: Vec<String> = els
        .iter()
        .filter(|(n, a)| {
            n == "AdaptationSet" && a.get("contentType").map(String::as_str) == Some("audio")
        })
        .filter_map(|(_, a)| a.get("lang").cloned())
        .collect();
    assert_eq!(sets, vec!["eng".to_string(), "fra".to_string()]);

    let src_s = src.to_str().unwrap();
    for (i, alt) in m.alternatives.iter().enumerate() {
        let url = server.url(&format!("/vod/{id}/{}", alt.uri.as_deref().unwrap()));
        assert_same_packets(
            &format!("audio {i}"),
            &packet_hashes(src_s, &format!("0:a:{i}")),
            &packet_hashes(&url, "0:a:0"),
        );
    }
}

#[test]
fn bad_uploads_are_errors_and_nothing_is_served() {
    let server = Server::start();
    let token = admin_token(&server);
    // Not a media file at all.
    let junk = server.dir.path.join("junk.mp4");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&junk, &bytes).unwrap();
    let (id, status, body) = upload(&server, &token, &junk);
    assert!((400..500).contains(&status), "junk upload: {status} {body}");
    assert!(body["error"]["code"].is_string(), "JSON error: {body}");
    let (_, e) = api(
        &server,
        "GET",
        &format!("/api/v1/entries/{id}"),
        Some(&token),
        None,
    );
    assert_eq!(e["status"], "error", "{e}");
    let r = server.get(&format!("/vod/{id}/master.m3u8"));
    assert!(
        r.status == 404 || r.status == 503,
        "{} {}",
        r.status,
        r.text()
    );

    // A real file cut in half: its moov (at the end) is gone.
    let src = ffmpeg_make(
        &server.dir.path,
        "whole.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    let half = server.dir.path.join("half.mp4");
    let all = std::fs::read(&src).unwrap();
    std::fs::write(&half, &all[..all.len() / 2]).unwrap();
    let (id, status, body) = upload(&server, &token, &half);
    assert!(
        (400..500).contains(&status),
        "truncated upload: {status} {body}"
    );
    let (_, e) = api(
        &server,
        "GET",
        &format!("/api/v1/entries/{id}"),
        Some(&token),
        None,
    );
    assert_eq!(e["status"], "error", "{e}");
    let r = server.get(&format!("/vod/{id}/master.m3u8"));
    assert!(r.status == 404 || r.status == 503);
    // An unknown entry.
    assert_eq!(server.get("/vod/nope/master.m3u8").status, 404);
}

#[test]
fn encrypted_vod_plays_through_the_key_and_never_clear() {
    let server =
        Server::start_with_config("[drm]\nhls = \"aes-128\"\ndash = \"cenc\"\nmss = \"cenc\"\n");
    let token = admin_token(&server);
    let src = ffmpeg_make(
        &server.dir.path,
        "drm.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=500:sample_rate=48000",
            "-t",
            "8",
            "-c:v",
            "libx264",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
    );
    let (id, status, body) = upload(&server, &token, &src);
    assert!(status < 300, "upload: {status} {body}");
    wait_ready(&server, &token, &id);

    let media = server.get(&format!("/vod/{id}/v1/index.m3u8"));
    assert_eq!(media.status, 200, "{}", media.text());
    let text = media.text();
    assert!(text.contains("#EXT-X-KEY:METHOD=AES-128"), "{text}");
    assert!(text.contains("seg-0.aes.m4s"), "{text}");
    // The clear files are not served when every format is encrypted.
    assert_eq!(server.get(&format!("/vod/{id}/v1/seg-0.m4s")).status, 404);
    let enc = server.get(&format!("/vod/{id}/v1/seg-0.aes.m4s"));
    assert_eq!(enc.status, 200);
    assert!(
        decode_boxes("encrypted segment", &enc.body).is_err(),
        "AES-128 hides the boxes"
    );

    // ffmpeg fetches the key from the playlist's URI and gets the source's packets.
    let src_s = src.to_str().unwrap();
    let master = server.url(&format!("/vod/{id}/master.m3u8"));
    assert_same_packets(
        "AES-128 HLS video",
        &packet_hashes(src_s, "0:v:0"),
        &packet_hashes(&master, "0:v:0"),
    );

    // DASH: ClearKey/Widevine/PlayReady signalling, cenc fragments.
    let mpd = server.get(&format!("/vod/{id}/manifest.mpd")).text();
    let els = xml_elements(&mpd);
    assert!(
        els.iter()
            .any(|(n, a)| n == "ContentProtection" && a.contains_key("cenc:default_KID")),
        "{mpd}"
    );
    assert!(mpd.contains("seg-$Number$.cenc.m4s"), "{mpd}");
    let seg = server.get(&format!("/vod/{id}/v1/seg-0.cenc.m4s"));
    assert_eq!(seg.status, 200);
    let boxes = decode_boxes("cenc segment", &seg.body).unwrap();
    assert!(!boxes.is_empty());
    // Smooth: a PlayReady ProtectionHeader.
    let ism = server.get(&format!("/vod/{id}/Manifest")).text();
    assert!(ism.contains("<ProtectionHeader"), "{ism}");
}

/// Width and height of a JPEG, as ffprobe reads it.
fn jpeg_size(server: &Server, jpeg: &[u8]) -> (u32, u32) {
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "a JPEG");
    let path = server.dir.path.join(format!("t{}.jpg", jpeg.len()));
    std::fs::write(&path, jpeg).unwrap();
    let (st, out, err) = run_bounded(
        Command::new(require_tool("ffprobe"))
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height",
                "-of",
                "csv=p=0",
            ])
            .arg(&path),
        Duration::from_secs(30),
    );
    assert!(st.success(), "ffprobe: {err}");
    let mut it = out.trim().split(',').map(|v| v.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn a_live_stream_has_a_latest_thumbnail() {
    let server = Server::start();
    assert_eq!(server.get("/thumb/live/nothing/latest.jpg").status, 404);
    let ffmpeg = require_tool("ffmpeg");
    let mut spec = PublishSpec::new(Some(VideoCodec::H264 { bframes: 2 }), true, 30.0);
    spec.width = 320;
    spec.height = 180;
    let _publisher = Publisher::spawn(&ffmpeg, &server.rtmp_url("cam"), &spec, &server.dir.path);
    let jpeg = server.poll("a live thumbnail", 300, Duration::from_millis(100), || {
        let r = server.get("/thumb/live/cam/latest.jpg");
        (r.status == 200).then_some(r.body)
    });
    assert_eq!(jpeg_size(&server, &jpeg), (320, 180));
    let small = server.get("/thumb/live/cam/latest.jpg?height=90");
    assert_eq!(small.status, 200);
    assert_eq!(jpeg_size(&server, &small.body), (160, 90));
    assert_eq!(server.get("/thumb/live/cam/latest.jpg?width=0").status, 400);
}

/// The four-character types of the top-level boxes, which must tile the data.
fn top_level_boxes(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        assert!(at + 8 <= data.len(), "a truncated box header at {at}");
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        assert!(
            size >= 8 && at + size <= data.len(),
            "box size {size} at {at}"
        );
        out.push(String::from_utf8_lossy(&data[at + 4..at + 8]).to_string());
        at += size;
    }
    out
}
