//! End-to-end tests of the live backbone: a real `vela serve`, a real ffmpeg
//! publishing over RTMP, and Vela's HLS/LL-HLS and DASH output read back with
//! independent strict parsers (m3u8-rs, mp4-atom `strict`, quick-xml) and with
//! ffprobe/ffmpeg's own demuxers and decoders.
//!
//! Each test starts its own server on free loopback ports, so they run in
//! parallel under nextest. Nothing asserts a wall-clock duration: every wait is
//! a bounded poll that fails with the server's log and the publisher's log.
//! ffmpeg/ffprobe are required: without them the tests fail and name
//! scripts/setup.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

const PUBLISH_SECONDS: f64 = 10.0;
const POLL: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

#[test]
fn h264_with_bframes_and_aac() {
    live_backbone("bframes", Some(VideoCodec::H264 { bframes: 2 }), true);
}

#[test]
fn h264_without_bframes_and_aac() {
    live_backbone("nobframes", Some(VideoCodec::H264 { bframes: 0 }), true);
}

#[test]
fn hevc_enhanced_rtmp_and_aac() {
    live_backbone("hevc", Some(VideoCodec::Hevc), true);
}

#[test]
fn audio_only() {
    live_backbone("audioonly", None, true);
}

#[test]
fn video_only() {
    live_backbone("videoonly", Some(VideoCodec::H264 { bframes: 0 }), false);
}

#[test]
fn unknown_stream_is_404() {
    let server = Server::start();
    for path in [
        "/live/no-such-stream/master.m3u8",
        "/live/no-such-stream/manifest.mpd",
        "/live/no-such-stream/Manifest",
    ] {
        let r = server.get(path);
        if r.status != 404 {
            server.fail(format!("GET {path}: expected 404, got {}", r.status));
        }
    }
}

/// A second publisher on a key that is live is refused at the protocol level;
/// the first publisher's stream keeps going.
#[test]
fn second_publisher_on_live_key_is_refused() {
    let ffmpeg = require_tool("ffmpeg");
    let server = Server::start();
    let key = "dup";
    let spec = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, 40.0);
    let mut first = Publisher::spawn(&ffmpeg, &server.rtmp_url(key), &spec, &server.dir.path);
    let master_url = server.url(&format!("/live/{key}/master.m3u8"));
    wait_for_200(&server, &master_url, &mut first);
    let media_url = first_media_playlist(&server, &master_url);
    let before = scan_media_playlist(&server.get_ok(&media_url).text());

    let spec2 = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, 6.0);
    let mut second = Publisher::spawn(&ffmpeg, &server.rtmp_url(key), &spec2, &server.dir.path);
    // ffmpeg gives up quickly when refused; if it is accepted it runs ~6 s.
    let status = second.wait_exit(160).unwrap_or_else(|| {
        server.fail(format!(
            "the second publisher on a live key was still running after 40 s; its log:\n{}",
            second.log_text()
        ))
    });
    if status.success() {
        server.fail(format!(
            "a second publisher on the live key `{key}` was accepted (ffmpeg exited 0); \
             it must be refused (NetStream.Publish.BadName or the connection closed). ffmpeg log:\n{}",
            second.log_text()
        ));
    }
    assert!(
        first.is_running(),
        "the first publisher died when the second was refused; its log:\n{}",
        first.log_text()
    );
    // The first stream is still advancing.
    let before_next = before.next_msn();
    server.poll(
        "the first publisher's playlist to advance after the refused second publisher",
        150,
        POLL,
        || {
            let s = scan_media_playlist(&server.get_ok(&media_url).text());
            (s.next_msn() > before_next).then_some(())
        },
    );
}

/// The publisher vanishes (SIGKILL) and a new one comes back on the same key:
/// the playlist goes on with EXT-X-DISCONTINUITY and ever-increasing media
/// sequence numbers.
#[test]
fn publisher_reconnect_continues_with_discontinuity() {
    let ffmpeg = require_tool("ffmpeg");
    let server = Server::start();
    let key = "reconnect";
    let spec = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, 60.0);
    let mut first = Publisher::spawn(&ffmpeg, &server.rtmp_url(key), &spec, &server.dir.path);
    let master_url = server.url(&format!("/live/{key}/master.m3u8"));
    wait_for_200(&server, &master_url, &mut first);
    let media_url = first_media_playlist(&server, &master_url);

    // Wait for at least 2 complete segments from the first publisher.
    let before = server.poll(
        "2 complete segments from the first publisher",
        150,
        POLL,
        || {
            let s = scan_media_playlist(&server.get_ok(&media_url).text());
            (s.segments.len() >= 2).then_some(s)
        },
    );
    let last_msn_before = before.segments.last().unwrap().msn;
    let last_uri_before = before.segments.last().unwrap().uri.clone();
    first.kill_hard();

    // Reconnect; the server may need a moment to notice the dead session, so a
    // refused attempt is retried (bounded).
    let mut second = None;
    for _attempt in 0..6 {
        let mut p = Publisher::spawn(&ffmpeg, &server.rtmp_url(key), &spec, &server.dir.path);
        // Give it a few seconds to either fail or keep running.
        if p.wait_exit(12).is_none() {
            second = Some(p);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut second = second.unwrap_or_else(|| {
        server.fail("no reconnecting publisher was accepted on the same key within 6 attempts")
    });

    let mut max_seen_msn = last_msn_before;
    let after = server.poll(
        "a segment after an EXT-X-DISCONTINUITY from the reconnected publisher",
        300,
        POLL,
        || {
            assert!(
                second.is_running(),
                "the reconnected publisher died; log:\n{}",
                second.log_text()
            );
            let r = server.get(&media_url);
            if r.status != 200 {
                return None; // the stream may briefly be gone between publishers
            }
            let text = r.text();
            m3u8_rs::parse_media_playlist_res(text.as_bytes())
                .unwrap_or_else(|e| server.fail(format!("m3u8-rs rejects {media_url}: {e:?}\n{text}")));
            let s = scan_media_playlist(&text);
            if let Some(last) = s.segments.last() {
                assert!(
                    last.msn >= max_seen_msn,
                    "media sequence went backwards: saw MSN {max_seen_msn}, now the last segment is {}\n{text}",
                    last.msn
                );
                max_seen_msn = last.msn;
            }
            let disc_at = s.segments.iter().position(|seg| seg.discontinuity)?;
            // a complete segment after the discontinuity
            (s.segments.len() > disc_at + 1 || s.segments[disc_at].msn > last_msn_before)
                .then_some((s, text))
        },
    );
    let (s, text) = after;
    let disc = s.segments.iter().find(|seg| seg.discontinuity).unwrap();
    assert!(
        disc.msn > last_msn_before,
        "the discontinuity is on MSN {} but the first publisher's last segment was MSN {last_msn_before}\n{text}",
        disc.msn
    );
    // The first publisher's segments that are still in the window kept their
    // numbers and URIs.
    if let Some(old) = s.segments.iter().find(|seg| seg.msn == last_msn_before) {
        assert_eq!(
            old.uri, last_uri_before,
            "MSN {last_msn_before} changed its URI after the reconnect\n{text}"
        );
    }
    // A DASH client sees the new period or keeps going: the MPD still parses.
    let mpd = server.get_ok(&server.url(&format!("/live/{key}/manifest.mpd")));
    parse_xml(&mpd.text()).unwrap_or_else(|e| server.fail(format!("MPD after reconnect: {e}")));
}

// ---------------------------------------------------------------------------
// The backbone scenario
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Expect {
    video: Option<&'static str>, // sample entry: avc1 / hvc1
    audio: bool,
}

impl Expect {
    fn sample_entries(&self) -> BTreeSet<String> {
        let mut s = BTreeSet::new();
        if let Some(v) = self.video {
            s.insert(v.to_string());
        }
        if self.audio {
            s.insert("mp4a".to_string());
        }
        s
    }
}

fn live_backbone(key: &str, video: Option<VideoCodec>, audio: bool) {
    let ffmpeg = match video {
        Some(VideoCodec::Hevc) => hevc_ffmpeg(),
        _ => require_tool("ffmpeg"),
    };
    require_tool("ffprobe");
    let expect = Expect {
        video: video.map(|v| match v {
            VideoCodec::H264 { .. } => "avc1",
            VideoCodec::Hevc => "hvc1",
        }),
        audio,
    };
    let server = Server::start();
    let spec = PublishSpec::new(video, audio, PUBLISH_SECONDS);
    let mut publisher = Publisher::spawn(&ffmpeg, &server.rtmp_url(key), &spec, &server.dir.path);
    let master_url = server.url(&format!("/live/{key}/master.m3u8"));
    let mpd_url = server.url(&format!("/live/{key}/manifest.mpd"));

    // --- While live: HLS -------------------------------------------------
    wait_for_200(&server, &master_url, &mut publisher);
    let media_urls = check_master(&server, &master_url, &expect);
    for url in &media_urls {
        server.poll(
            &format!("{url} to list a complete segment and parts while live"),
            150,
            POLL,
            || {
                let r = server.get(url);
                if r.status != 200 {
                    return None;
                }
                let s = scan_media_playlist(&r.text());
                (!s.segments.is_empty() && !s.parts.is_empty()).then_some(())
            },
        );
    }
    // The time-sensitive live checks first (the publisher runs only
    // PUBLISH_SECONDS): blocking reload, the dynamic MPD, then the details.
    check_blocking_reload(&server, &media_urls[0]);

    // --- While live: DASH ------------------------------------------------
    let live_mpd = check_mpd(&server, &mpd_url, &expect, true);
    assert_eq!(
        live_mpd.mpd_type, "dynamic",
        "the MPD of a live stream must be type=\"dynamic\""
    );

    let mut codecs_seen = BTreeSet::new();
    for url in &media_urls {
        codecs_seen.extend(check_live_media_playlist(&server, url));
    }
    assert_eq!(
        codecs_seen,
        expect.sample_entries(),
        "the init segments' sample entries differ from what was published"
    );

    // --- The publisher ends ---------------------------------------------
    let tries = ((PUBLISH_SECONDS + 60.0) * 4.0) as usize;
    let status = publisher.wait_exit(tries).unwrap_or_else(|| {
        server.fail(format!(
            "ffmpeg did not finish its {PUBLISH_SECONDS} s publish; log:\n{}",
            publisher.log_text()
        ))
    });
    if !status.success() {
        server.fail(format!(
            "the publisher failed ({status}); ffmpeg log:\n{}",
            publisher.log_text()
        ));
    }
    let mut total_durations = Vec::new();
    for url in &media_urls {
        let text = server.poll(
            &format!("EXT-X-ENDLIST in {url} after the publisher ended"),
            150,
            POLL,
            || {
                let t = server.get_ok(url).text();
                scan_media_playlist(&t).endlist.then_some(t)
            },
        );
        total_durations.push((
            url.clone(),
            check_finished_media_playlist(&server, url, &text),
        ));
    }
    for (url, d) in &total_durations {
        assert!(
            (d - PUBLISH_SECONDS).abs() <= 1.0,
            "{url}: the EXTINF durations add up to {d:.3} s, published {PUBLISH_SECONDS} s"
        );
    }
    let end_mpd = check_mpd(&server, &mpd_url, &expect, false);
    eprintln!(
        "{mpd_url}: type={} after the publisher ended ({} segments fetched); EXTINF sums: {total_durations:?}",
        end_mpd.mpd_type, end_mpd.segments_fetched
    );
    if end_mpd.mpd_type == "dynamic" {
        assert!(
            end_mpd.segments_fetched > 0,
            "the MPD stayed dynamic after the publisher ended but lists no segments"
        );
    }

    // --- Read back with ffmpeg's own demuxers and decoders --------------
    readback_hls(&server, &master_url, &spec, &expect);
    if end_mpd.mpd_type == "static" {
        readback_dash(&server, &mpd_url, &spec, &expect);
    }
}

fn wait_for_200(server: &Server, url: &str, publisher: &mut Publisher) {
    server.poll(
        &format!("GET {url} to answer 200 once ffmpeg publishes"),
        150,
        POLL,
        || {
            if !publisher.is_running() {
                let st = publisher.child.try_wait().ok().flatten();
                server.fail(format!(
                    "the publisher exited ({st:?}) before {url} answered 200; ffmpeg log:\n{}",
                    publisher.log_text()
                ));
            }
            (server.get(url).status == 200).then_some(())
        },
    );
}

fn first_media_playlist(server: &Server, master_url: &str) -> String {
    let text = server.get_ok(master_url).text();
    let master = m3u8_rs::parse_master_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| server.fail(format!("m3u8-rs rejects {master_url}: {e:?}\n{text}")));
    let v = master
        .variants
        .iter()
        .find(|v| !v.is_i_frame)
        .unwrap_or_else(|| server.fail(format!("no variant in {master_url}\n{text}")));
    resolve(master_url, &v.uri)
}

// ---------------------------------------------------------------------------
// HLS checks
// ---------------------------------------------------------------------------

fn check_cors(server: &Server, r: &Response) {
    if r.header("access-control-allow-origin") != Some("*") {
        server.fail(format!(
            "{}: Access-Control-Allow-Origin must be *, headers: {:?}",
            r.url, r.headers
        ));
    }
}

fn max_age(r: &Response) -> Option<u64> {
    let cc = r.header("cache-control")?.to_ascii_lowercase();
    cc.split(',').find_map(|d| {
        d.trim()
            .strip_prefix("max-age=")
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A live playlist or manifest: short-lived in caches.
fn check_live_cache(server: &Server, r: &Response) {
    let cc = r.header("cache-control").unwrap_or("").to_ascii_lowercase();
    let short =
        cc.contains("no-cache") || cc.contains("no-store") || max_age(r).is_some_and(|a| a <= 10);
    if !short {
        server.fail(format!(
            "{}: a live playlist needs a short Cache-Control (max-age <= 10 s or no-cache), got {cc:?}",
            r.url
        ));
    }
}

/// A media segment or part: cacheable for long, immutable, with an ETag.
fn check_segment_headers(server: &Server, r: &Response) {
    check_cors(server, r);
    let mime = r.mime();
    if ![
        "video/mp4",
        "audio/mp4",
        "video/iso.segment",
        "audio/iso.segment",
    ]
    .contains(&mime.as_str())
    {
        server.fail(format!(
            "{}: Content-Type {mime:?} is not video/mp4, audio/mp4 or video/iso.segment",
            r.url
        ));
    }
    let cc = r.header("cache-control").unwrap_or("").to_ascii_lowercase();
    if !(cc.contains("immutable") && max_age(r).is_some_and(|a| a >= 3600)) {
        server.fail(format!(
            "{}: a segment needs a long, immutable Cache-Control (max-age >= 3600, immutable), got {cc:?}",
            r.url
        ));
    }
    if r.header("etag").is_none_or(|e| e.is_empty()) {
        server.fail(format!(
            "{}: a segment needs an ETag; headers: {:?}",
            r.url, r.headers
        ));
    }
}

fn check_playlist_headers(server: &Server, r: &Response) {
    check_cors(server, r);
    if r.mime() != "application/vnd.apple.mpegurl" {
        server.fail(format!(
            "{}: Content-Type must be application/vnd.apple.mpegurl, got {:?}",
            r.url,
            r.header("content-type")
        ));
    }
}

/// Checks the master playlist; returns the media playlist URLs (variants,
/// then audio renditions with their own URI).
fn check_master(server: &Server, url: &str, expect: &Expect) -> Vec<String> {
    let r = server.get_ok(url);
    check_playlist_headers(server, &r);
    check_live_cache(server, &r);
    let text = r.text();
    if !text.starts_with("#EXTM3U") {
        server.fail(format!("{url} does not start with #EXTM3U:\n{text}"));
    }
    let master = m3u8_rs::parse_master_playlist_res(text.as_bytes()).unwrap_or_else(|e| {
        server.fail(format!(
            "m3u8-rs rejects the master playlist {url}: {e:?}\n{text}"
        ))
    });
    let variants: Vec<_> = master.variants.iter().filter(|v| !v.is_i_frame).collect();
    if variants.is_empty() {
        server.fail(format!("{url} has no EXT-X-STREAM-INF\n{text}"));
    }
    let mut urls = Vec::new();
    let mut saw_full_res = false;
    for v in &variants {
        let ctx = format!("{url}: variant {}", v.uri);
        assert!(v.bandwidth > 0, "{ctx}: BANDWIDTH must be > 0\n{text}");
        let codecs = v
            .codecs
            .clone()
            .unwrap_or_else(|| server.fail(format!("{ctx}: no CODECS attribute\n{text}")));
        let has = |p: &str| codecs.split(',').any(|c| c.trim().starts_with(p));
        match expect.video {
            Some("avc1") => assert!(
                has("avc1.") || has("avc3."),
                "{ctx}: CODECS {codecs:?} lacks avc1.*\n{text}"
            ),
            Some("hvc1") => assert!(
                has("hvc1.") || has("hev1."),
                "{ctx}: CODECS {codecs:?} lacks hvc1.*\n{text}"
            ),
            Some(other) => panic!("unexpected codec {other}"),
            None => assert!(
                !has("avc1") && !has("hvc1") && !has("hev1") && !has("avc3"),
                "{ctx}: an audio-only stream lists a video codec: {codecs:?}\n{text}"
            ),
        }
        if expect.audio {
            assert!(
                has("mp4a.40.2"),
                "{ctx}: CODECS {codecs:?} lacks the AAC-LC codec mp4a.40.2\n{text}"
            );
        } else {
            assert!(
                !has("mp4a"),
                "{ctx}: a video-only stream lists an audio codec: {codecs:?}\n{text}"
            );
            assert!(
                v.audio.is_none(),
                "{ctx}: a video-only stream names an AUDIO group\n{text}"
            );
        }
        if expect.video.is_some() {
            let res = v.resolution.unwrap_or_else(|| {
                server.fail(format!("{ctx}: a video variant needs RESOLUTION\n{text}"))
            });
            if res.width == 1280 && res.height == 720 {
                saw_full_res = true;
            }
        }
        if let Some(group) = &v.audio {
            let renditions: Vec<_> = master
                .alternatives
                .iter()
                .filter(|a| {
                    a.media_type == m3u8_rs::AlternativeMediaType::Audio && &a.group_id == group
                })
                .collect();
            assert!(
                !renditions.is_empty(),
                "{ctx}: AUDIO=\"{group}\" but no EXT-X-MEDIA TYPE=AUDIO in that group\n{text}"
            );
            for a in renditions {
                if let Some(u) = &a.uri {
                    let au = resolve(url, u);
                    if !urls.contains(&au) {
                        urls.push(au);
                    }
                }
            }
        }
        let vu = resolve(url, &v.uri);
        if !urls.contains(&vu) {
            urls.insert(0, vu);
        }
    }
    if expect.video.is_some() {
        assert!(
            saw_full_res,
            "{url}: no variant has the published RESOLUTION=1280x720\n{text}"
        );
    }
    urls
}

/// Checks a live media playlist, its init segment, segments, parts and
/// preload hint. Returns the sample entries of its init segment.
fn check_live_media_playlist(server: &Server, url: &str) -> BTreeSet<String> {
    let r = server.get_ok(url);
    check_playlist_headers(server, &r);
    check_live_cache(server, &r);
    let text = r.text();
    let pl = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap_or_else(|e| {
        server.fail(format!(
            "m3u8-rs rejects the media playlist {url}: {e:?}\n{text}"
        ))
    });
    let s = scan_media_playlist(&text);
    let ctx = |m: &str| format!("{url}: {m}\n{text}");

    // m3u8-rs view
    assert!(!pl.segments.is_empty(), "{}", ctx("no segments"));
    assert!(
        pl.target_duration > 0,
        "{}",
        ctx("EXT-X-TARGETDURATION missing or 0")
    );
    for seg in &pl.segments {
        assert!(
            (seg.duration.round() as u64) <= pl.target_duration,
            "{}",
            ctx(&format!(
                "segment {} lasts {} s, over EXT-X-TARGETDURATION {}",
                seg.uri, seg.duration, pl.target_duration
            ))
        );
    }
    assert!(
        pl.segments[0].map.is_some(),
        "{}",
        ctx("no EXT-X-MAP before the first segment")
    );
    assert!(
        pl.segments[0].program_date_time.is_some(),
        "{}",
        ctx("no EXT-X-PROGRAM-DATE-TIME on the first segment")
    );
    assert!(
        !pl.end_list,
        "{}",
        ctx("EXT-X-ENDLIST while the publisher is live")
    );

    // LL-HLS view
    let sc = s
        .server_control
        .clone()
        .unwrap_or_else(|| server.fail(ctx("no EXT-X-SERVER-CONTROL")));
    assert_eq!(
        sc.get("CAN-BLOCK-RELOAD").map(|s| s.as_str()),
        Some("YES"),
        "{}",
        ctx("CAN-BLOCK-RELOAD=YES missing")
    );
    let part_target = s
        .part_target()
        .unwrap_or_else(|| server.fail(ctx("no EXT-X-PART-INF:PART-TARGET")));
    assert!(part_target > 0.0, "{}", ctx("PART-TARGET must be > 0"));
    let phb: f64 = sc
        .get("PART-HOLD-BACK")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| server.fail(ctx("EXT-X-SERVER-CONTROL lacks PART-HOLD-BACK")));
    assert!(
        phb >= 2.0 * part_target,
        "{}",
        ctx("PART-HOLD-BACK must be at least 2 × PART-TARGET")
    );
    assert!(!s.parts.is_empty(), "{}", ctx("no EXT-X-PART"));
    for p in &s.parts {
        assert!(!p.uri.is_empty(), "{}", ctx("an EXT-X-PART without URI"));
        assert!(
            p.duration > 0.0 && p.duration <= part_target + 0.002,
            "{}",
            ctx(&format!(
                "part {} lasts {} s, PART-TARGET is {part_target}",
                p.uri, p.duration
            ))
        );
    }
    // The hint comes with the segment being built: none for the moment
    // between a segment's completion and the next one's first part.
    let hinted = s
        .preload_hints
        .iter()
        .any(|h| h.get("TYPE").map(|t| t.as_str()) == Some("PART"));
    assert_eq!(
        hinted,
        !s.trailing_parts().is_empty(),
        "{}",
        ctx("EXT-X-PRELOAD-HINT:TYPE=PART exactly while a segment is being built")
    );

    // Init segment
    // EXT-X-MAP applies to every segment after it (m3u8-rs attaches it only
    // to the next one): the last MAP in the playlist is the current init.
    let map_uri = s
        .map_uris
        .last()
        .unwrap_or_else(|| server.fail(ctx("no EXT-X-MAP")));
    let init_url = resolve(url, map_uri);
    let ir = server.get_ok(&init_url);
    check_cors(server, &ir);
    let init = check_init_segment(&init_url, &ir.body).unwrap_or_else(|e| server.fail(e));
    let timescales: BTreeMap<u32, u32> = init.tracks.iter().map(|t| (t.0, t.3)).collect();

    // Segments (the last few complete ones)
    let mut last_tfdt: BTreeMap<u32, u64> = BTreeMap::new();
    for seg in s
        .segments
        .iter()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let su = resolve(url, &seg.uri);
        let sr = server.get_ok(&su);
        check_segment_headers(server, &sr);
        let frag = check_media_segment(&su, &sr.body).unwrap_or_else(|e| server.fail(e));
        for (track, (tfdt, samples, dur)) in &frag {
            assert!(
                timescales.contains_key(track),
                "{su}: track {track} is not in the init segment {init_url}"
            );
            if let Some(prev) = last_tfdt.get(track) {
                assert!(
                    tfdt > prev,
                    "{su}: tfdt {tfdt} of track {track} does not increase (previous {prev})"
                );
            }
            last_tfdt.insert(*track, *tfdt);
            assert!(*samples > 0);
            let _ = dur;
        }
    }

    // Parts: every listed part of the last two segments (including the one
    // being built)
    let min_msn = s.next_msn().saturating_sub(1);
    let mut part_count = 0;
    for p in s.parts.iter().filter(|p| p.msn >= min_msn) {
        let pu = resolve(url, &p.uri);
        let pr = match &p.byterange {
            Some(br) => {
                let (len, off) = br.split_once('@').unwrap_or((br, "0"));
                let len: u64 = len.parse().unwrap();
                let off: u64 = off.parse().unwrap_or(0);
                let r = http_request(
                    "GET",
                    &pu,
                    &[("Range", &format!("bytes={}-{}", off, off + len - 1))],
                    Duration::from_secs(20),
                )
                .unwrap_or_else(|e| server.fail(e));
                assert_eq!(r.status, 206, "{pu} with Range: expected 206");
                r
            }
            None => server.get_ok(&pu),
        };
        check_cors(server, &pr);
        check_media_segment(&format!("{pu} (part {}.{})", p.msn, p.index), &pr.body)
            .unwrap_or_else(|e| server.fail(e));
        if p.index == 0 {
            assert!(
                p.independent,
                "{}",
                ctx(&format!(
                    "the first part of MSN {} is not INDEPENDENT=YES",
                    p.msn
                ))
            );
        }
        part_count += 1;
    }
    assert!(
        part_count > 0,
        "{}",
        ctx("no parts in the last two segments")
    );

    // The preload hint: a blocking GET that answers once the part exists.
    if let Some(h) = s
        .preload_hints
        .iter()
        .find(|h| h.get("TYPE").map(|t| t.as_str()) == Some("PART"))
    {
        let hu = resolve(
            url,
            h.get("URI")
                .unwrap_or_else(|| server.fail(ctx("PRELOAD-HINT without URI"))),
        );
        if h.get("BYTERANGE-START").is_none() {
            let hr = server.get_ok(&hu);
            check_media_segment(&format!("{hu} (preload hint)"), &hr.body)
                .unwrap_or_else(|e| server.fail(e));
        }
    }
    init.codecs().into_iter().collect()
}

/// Blocking playlist reload: ask for the part after the last one listed; the
/// answer must come once it exists, and must list it (or something later).
fn check_blocking_reload(server: &Server, url: &str) {
    let s = scan_media_playlist(&server.get_ok(url).text());
    let msn = s.next_msn();
    let next_part = s.trailing_parts().len() as u64;
    let sep = if url.contains('?') { '&' } else { '?' };
    let bu = format!("{url}{sep}_HLS_msn={msn}&_HLS_part={next_part}");
    let r = server.get(&bu);
    if r.status != 200 {
        server.fail(format!(
            "blocking reload {bu}: expected 200, got {}",
            r.status
        ));
    }
    check_playlist_headers(server, &r);
    let text = r.text();
    m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap_or_else(|e| {
        server.fail(format!(
            "m3u8-rs rejects the blocking reload answer {bu}: {e:?}\n{text}"
        ))
    });
    let s2 = scan_media_playlist(&text);
    let has_part = s2
        .parts
        .iter()
        .any(|p| p.msn == msn && p.index == next_part);
    let later = s2.parts.iter().any(|p| p.msn > msn) || s2.next_msn() > msn + 1 || s2.endlist;
    assert!(
        has_part || later,
        "blocking reload {bu} answered before part {msn}.{next_part} existed:\n{text}"
    );
    // A second reload that asks for the next segment (not just a part).
    let bu2 = format!("{url}{sep}_HLS_msn={}", s2.next_msn());
    let r2 = server.get(&bu2);
    assert_eq!(r2.status, 200, "blocking reload {bu2}: expected 200");
    let s3 = scan_media_playlist(&r2.text());
    assert!(
        s3.segments.iter().any(|seg| seg.msn == s2.next_msn()) || s3.endlist,
        "blocking reload {bu2} answered before MSN {} was complete:\n{}",
        s2.next_msn(),
        r2.text()
    );
}

/// After EXT-X-ENDLIST: the playlist parses, every segment is there with
/// increasing tfdt; returns the summed EXTINF durations.
fn check_finished_media_playlist(server: &Server, url: &str, text: &str) -> f64 {
    let pl = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap_or_else(|e| {
        server.fail(format!(
            "m3u8-rs rejects the finished playlist {url}: {e:?}\n{text}"
        ))
    });
    assert!(pl.end_list, "{url}: no EXT-X-ENDLIST\n{text}");
    let s = scan_media_playlist(text);
    assert!(
        s.preload_hints.is_empty(),
        "{url}: EXT-X-PRELOAD-HINT after EXT-X-ENDLIST\n{text}"
    );
    let mut last_tfdt: BTreeMap<u32, u64> = BTreeMap::new();
    for seg in &s.segments {
        let su = resolve(url, &seg.uri);
        let sr = server.get_ok(&su);
        let frag = check_media_segment(&su, &sr.body).unwrap_or_else(|e| server.fail(e));
        for (track, (tfdt, _, _)) in frag {
            if let Some(prev) = last_tfdt.get(&track) {
                assert!(
                    tfdt > *prev,
                    "{su}: tfdt {tfdt} of track {track} does not increase (previous {prev})"
                );
            }
            last_tfdt.insert(track, tfdt);
        }
    }
    pl.segments.iter().map(|s| s.duration as f64).sum()
}

// ---------------------------------------------------------------------------
// DASH checks
// ---------------------------------------------------------------------------

struct MpdInfo {
    mpd_type: String,
    segments_fetched: usize,
}

fn check_mpd(server: &Server, url: &str, expect: &Expect, live: bool) -> MpdInfo {
    let r = server.get_ok(url);
    check_cors(server, &r);
    if r.mime() != "application/dash+xml" {
        server.fail(format!(
            "{url}: Content-Type must be application/dash+xml, got {:?}",
            r.header("content-type")
        ));
    }
    let text = r.text();
    let mpd = parse_xml(&text)
        .unwrap_or_else(|e| server.fail(format!("{url}: not well-formed XML: {e}\n{text}")));
    let ctx = |m: &str| format!("{url}: {m}\n{text}");
    assert_eq!(mpd.name, "MPD", "{}", ctx("the root element is not MPD"));
    let mpd_type = mpd.attr("type").unwrap_or("static").to_string();
    if live {
        check_live_cache(server, &r);
        assert_eq!(
            mpd_type,
            "dynamic",
            "{}",
            ctx("a live MPD must be type=dynamic")
        );
    }
    if mpd_type == "dynamic" {
        for a in ["availabilityStartTime", "publishTime"] {
            assert!(
                mpd.attr(a).is_some(),
                "{}",
                ctx(&format!("a dynamic MPD needs @{a}"))
            );
        }
        for a in ["minimumUpdatePeriod", "timeShiftBufferDepth"] {
            let v = mpd
                .attr(a)
                .unwrap_or_else(|| server.fail(ctx(&format!("a dynamic MPD needs @{a}"))));
            assert!(
                iso_duration(v).is_some(),
                "{}",
                ctx(&format!("@{a}={v:?} is not an ISO 8601 duration"))
            );
        }
        let utc = mpd
            .child("UTCTiming")
            .unwrap_or_else(|| server.fail(ctx("a dynamic MPD needs UTCTiming")));
        assert!(
            utc.attr("schemeIdUri")
                .is_some_and(|s| s.starts_with("urn:mpeg:dash:utc:")),
            "{}",
            ctx("UTCTiming@schemeIdUri")
        );
        assert!(utc.attr("value").is_some(), "{}", ctx("UTCTiming@value"));
    }
    assert!(
        mpd.attr("profiles").is_some_and(
            |p| p.contains("urn:mpeg:dash:profile:isoff-live:2011") || p.contains("cmaf")
        ),
        "{}",
        ctx("@profiles should name the ISO live profile or CMAF")
    );
    let periods: Vec<_> = mpd.children_named("Period").collect();
    assert!(!periods.is_empty(), "{}", ctx("no Period"));
    let period = *periods.last().unwrap();
    let mut base = url.to_string();
    for b in [mpd.child("BaseURL"), period.child("BaseURL")]
        .into_iter()
        .flatten()
    {
        base = resolve(&base, &b.text);
    }
    let mut codecs_seen = BTreeSet::new();
    let mut fetched = 0;
    let sets: Vec<_> = period.children_named("AdaptationSet").collect();
    assert!(
        !sets.is_empty(),
        "{}",
        ctx("no AdaptationSet in the last Period")
    );
    for set in sets {
        let reps: Vec<_> = set.children_named("Representation").collect();
        assert!(
            !reps.is_empty(),
            "{}",
            ctx("an AdaptationSet without Representation")
        );
        for rep in reps {
            let id = rep
                .attr("id")
                .unwrap_or_else(|| server.fail(ctx("Representation without @id")));
            let bw = rep
                .attr("bandwidth")
                .unwrap_or_else(|| server.fail(ctx("Representation without @bandwidth")));
            let codecs = rep
                .attr("codecs")
                .or(set.attr("codecs"))
                .unwrap_or_else(|| server.fail(ctx("no @codecs")));
            let mime = rep
                .attr("mimeType")
                .or(set.attr("mimeType"))
                .unwrap_or_else(|| server.fail(ctx("no @mimeType")));
            assert!(
                mime == "video/mp4" || mime == "audio/mp4",
                "{}",
                ctx(&format!("@mimeType {mime}"))
            );
            let c4 = codecs.split('.').next().unwrap_or("").to_string();
            codecs_seen.insert(match c4.as_str() {
                "avc3" => "avc1".to_string(),
                "hev1" => "hvc1".to_string(),
                _ => c4,
            });
            if mime == "video/mp4" {
                assert!(
                    rep.attr("width").or(set.attr("width")).is_some()
                        && rep.attr("height").or(set.attr("height")).is_some(),
                    "{}",
                    ctx("a video Representation needs @width and @height")
                );
            }
            let tmpl = rep
                .child("SegmentTemplate")
                .or(set.child("SegmentTemplate"))
                .unwrap_or_else(|| server.fail(ctx("no SegmentTemplate")));
            let init_t = tmpl
                .attr("initialization")
                .unwrap_or_else(|| server.fail(ctx("SegmentTemplate@initialization")));
            let media_t = tmpl
                .attr("media")
                .unwrap_or_else(|| server.fail(ctx("SegmentTemplate@media")));
            let start_number: u64 = tmpl
                .attr("startNumber")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let mut rep_base = base.clone();
            for b in [set.child("BaseURL"), rep.child("BaseURL")]
                .into_iter()
                .flatten()
            {
                rep_base = resolve(&rep_base, &b.text);
            }
            let init_url = resolve(&rep_base, &expand_template(init_t, id, bw, 0, 0));
            let ir = server.get_ok(&init_url);
            check_cors(server, &ir);
            check_init_segment(&init_url, &ir.body).unwrap_or_else(|e| server.fail(e));

            // (number, time) of the listed segments
            let mut list: Vec<(u64, u64)> = Vec::new();
            if let Some(tl) = tmpl.child("SegmentTimeline") {
                let mut t = 0u64;
                let mut n = start_number;
                for s in tl.children_named("S") {
                    if let Some(st) = s.attr("t") {
                        t = st.parse().unwrap_or_else(|_| server.fail(ctx("bad S@t")));
                    }
                    let d: u64 = s
                        .attr("d")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| server.fail(ctx("S without @d")));
                    let r: i64 = s.attr("r").and_then(|v| v.parse().ok()).unwrap_or(0);
                    assert!(r >= 0, "{}", ctx("S@r=-1 is not supported by this test"));
                    for _ in 0..=r {
                        list.push((n, t));
                        n += 1;
                        t += d;
                    }
                }
            } else {
                assert!(
                    tmpl.attr("duration").is_some(),
                    "{}",
                    ctx("SegmentTemplate has neither SegmentTimeline nor @duration")
                );
                assert!(
                    !media_t.contains("$Time$"),
                    "{}",
                    ctx("$Time$ without SegmentTimeline")
                );
                list.push((start_number, 0));
            }
            assert!(!list.is_empty(), "{}", ctx("no segments listed"));
            // The last few listed segments (the newest one may still be
            // written: DASH lists only complete segments, so all must exist).
            for (n, t) in list.iter().rev().take(3) {
                let su = resolve(&rep_base, &expand_template(media_t, id, bw, *n, *t));
                let sr = server.get_ok(&su);
                check_segment_headers(server, &sr);
                let frag = check_media_segment(&su, &sr.body).unwrap_or_else(|e| server.fail(e));
                if media_t.contains("$Time$") {
                    let tfdt = frag.values().next().unwrap().0;
                    assert_eq!(tfdt, *t, "{su}: tfdt differs from the SegmentTimeline time");
                }
                fetched += 1;
            }
        }
    }
    assert_eq!(
        codecs_seen,
        expect.sample_entries(),
        "{}",
        ctx("the MPD's @codecs differ from what was published")
    );
    MpdInfo {
        mpd_type,
        segments_fetched: fetched,
    }
}

// ---------------------------------------------------------------------------
// Read-back with ffprobe / ffmpeg
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Probe {
    /// codec_type → (codec_name, frames read)
    streams: Vec<(String, String, u64)>,
}

fn ffprobe_count(server: &Server, url: &str) -> Probe {
    let (st, out, err) = run_bounded(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,codec_name,nb_read_frames",
            "-of",
            "json",
            url,
        ]),
        Duration::from_secs(180),
    );
    if !st.success() {
        server.fail(format!("ffprobe -count_frames {url} failed ({st}):\n{err}"));
    }
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ffprobe JSON: {e}\n{out}"));
    let mut p = Probe::default();
    for s in v["streams"].as_array().cloned().unwrap_or_default() {
        let ty = s["codec_type"].as_str().unwrap_or("").to_string();
        let name = s["codec_name"].as_str().unwrap_or("").to_string();
        let n: u64 = s["nb_read_frames"]
            .as_str()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        p.streams.push((ty, name, n));
    }
    p
}

fn check_counts(server: &Server, url: &str, p: &Probe, spec: &PublishSpec, expect: &Expect) {
    let max_of = |ty: &str| {
        p.streams
            .iter()
            .filter(|s| s.0 == ty)
            .map(|s| (s.1.clone(), s.2))
            .max_by_key(|s| s.1)
    };
    if let Some(vc) = expect.video {
        let (name, frames) = max_of("video")
            .unwrap_or_else(|| server.fail(format!("{url}: ffprobe finds no video stream: {p:?}")));
        let want = if vc == "avc1" { "h264" } else { "hevc" };
        assert_eq!(name, want, "{url}: decoded video codec");
        let published = spec.video_frames();
        eprintln!("{url}: decoded {frames} {name} frames, published {published}");
        // The first GOP may be lost to the server's start-up; nothing may be
        // invented.
        assert!(
            frames + spec.fps as u64 >= published && frames <= published + 1,
            "{url}: decoded {frames} video frames, published {published} (tolerance: one GOP fewer)"
        );
    } else {
        assert!(
            max_of("video").is_none(),
            "{url}: an audio-only stream has video: {p:?}"
        );
    }
    if expect.audio {
        let (name, frames) = max_of("audio")
            .unwrap_or_else(|| server.fail(format!("{url}: ffprobe finds no audio stream: {p:?}")));
        assert_eq!(name, "aac", "{url}: decoded audio codec");
        let secs = frames as f64 * 1024.0 / 48000.0;
        eprintln!("{url}: decoded {frames} {name} frames = {secs:.3} s");
        assert!(
            secs >= spec.seconds - 1.1 && secs <= spec.seconds + 0.2,
            "{url}: decoded {frames} AAC frames = {secs:.3} s, published {} s",
            spec.seconds
        );
    } else {
        assert!(
            max_of("audio").is_none(),
            "{url}: a video-only stream has audio: {p:?}"
        );
    }
}

fn readback_hls(server: &Server, master_url: &str, spec: &PublishSpec, expect: &Expect) {
    let probe = ffprobe_count(server, master_url);
    check_counts(server, master_url, &probe, spec, expect);

    // Decode everything with ffmpeg: no decode errors allowed.
    let (st, _out, err) = run_bounded(
        Command::new("ffmpeg").args([
            "-v", "error", "-nostdin", "-i", master_url, "-map", "0", "-f", "null", "-",
        ]),
        Duration::from_secs(180),
    );
    if !st.success() || !err.trim().is_empty() {
        server.fail(format!(
            "ffmpeg -i {master_url} -f null - ({st}) reported:\n{}",
            tail(&err, 4000)
        ));
    }

    // A/V sync: the first audio and video timestamps are within 100 ms.
    if expect.video.is_some() && expect.audio {
        let (st, out, err) = run_bounded(
            Command::new("ffprobe").args([
                "-v",
                "error",
                "-read_intervals",
                "%+2",
                "-show_entries",
                "packet=pts_time,stream_index:stream=index,codec_type",
                "-of",
                "json",
                master_url,
            ]),
            Duration::from_secs(120),
        );
        if !st.success() {
            server.fail(format!("ffprobe packets of {master_url} failed:\n{err}"));
        }
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut types = BTreeMap::new();
        for s in v["streams"].as_array().cloned().unwrap_or_default() {
            types.insert(
                s["index"].as_i64().unwrap_or(-1),
                s["codec_type"].as_str().unwrap_or("").to_string(),
            );
        }
        let mut first: BTreeMap<String, f64> = BTreeMap::new();
        for p in v["packets"].as_array().cloned().unwrap_or_default() {
            let idx = p["stream_index"].as_i64().unwrap_or(-1);
            let Some(pts) = p["pts_time"].as_str().and_then(|x| x.parse::<f64>().ok()) else {
                continue;
            };
            if let Some(ty) = types.get(&idx) {
                let e = first.entry(ty.clone()).or_insert(pts);
                if pts < *e {
                    *e = pts;
                }
            }
        }
        let (a, vv) = match (first.get("audio"), first.get("video")) {
            (Some(a), Some(v)) => (*a, *v),
            _ => server.fail(format!(
                "{master_url}: ffprobe found no first audio/video packet: {first:?}"
            )),
        };
        eprintln!("{master_url}: first audio pts {a:.3} s, first video pts {vv:.3} s");
        assert!(
            (a - vv).abs() < 0.1,
            "{master_url}: A/V out of sync: first audio pts {a:.3} s, first video pts {vv:.3} s"
        );
    }
}

fn readback_dash(server: &Server, mpd_url: &str, spec: &PublishSpec, expect: &Expect) {
    let probe = ffprobe_count(server, mpd_url);
    check_counts(server, mpd_url, &probe, spec, expect);
}

// ---------------------------------------------------------------------------
// The harness checks itself: its parsers must accept ffmpeg's own CMAF output
// (so a failure above is about Vela, not the harness) and its HTTP client
// must read chunked and fixed-length bodies.
// ---------------------------------------------------------------------------

#[test]
fn harness_accepts_reference_cmaf_from_ffmpeg() {
    let ffmpeg = require_tool("ffmpeg");
    let dir = TempDir::new("refcmaf");
    let (st, _, err) = run_bounded(
        Command::new(&ffmpeg).current_dir(&dir.path).args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "4",
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:v",
            "libx264",
            "-g",
            "30",
            "-bf",
            "2",
            "-c:a",
            "aac",
            "-f",
            "dash",
            "-seg_duration",
            "1",
            "-use_template",
            "1",
            "-use_timeline",
            "1",
            "-hls_playlist",
            "1",
            "manifest.mpd",
        ]),
        Duration::from_secs(120),
    );
    assert!(
        st.success(),
        "ffmpeg could not write the reference DASH/HLS: {err}"
    );
    let read =
        |name: &str| std::fs::read(dir.path.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));

    // MPD: XML tree, template expansion, every segment decodes.
    let mpd = parse_xml(&String::from_utf8(read("manifest.mpd")).unwrap()).unwrap();
    assert_eq!(mpd.name, "MPD");
    let period = mpd.child("Period").unwrap();
    let mut codecs = BTreeSet::new();
    for set in period.children_named("AdaptationSet") {
        for rep in set.children_named("Representation") {
            let id = rep.attr("id").unwrap();
            let bw = rep.attr("bandwidth").unwrap();
            let t = rep.child("SegmentTemplate").unwrap();
            let init = expand_template(t.attr("initialization").unwrap(), id, bw, 0, 0);
            let info = check_init_segment(&init, &read(&init)).unwrap();
            codecs.extend(info.codecs());
            let start: u64 = t.attr("startNumber").unwrap().parse().unwrap();
            let s = t.child("SegmentTimeline").unwrap().child("S").unwrap();
            let r: u64 = s.attr("r").unwrap_or("0").parse().unwrap();
            for n in start..=start + r {
                let name = expand_template(t.attr("media").unwrap(), id, bw, n, 0);
                let frag = check_media_segment(&name, &read(&name)).unwrap();
                assert_eq!(frag.len(), 1, "{name}: one track per segment");
            }
        }
    }
    assert_eq!(
        codecs,
        ["avc1", "mp4a"].map(String::from).into_iter().collect()
    );
    assert!(check_media_segment("init as media", &read("init-stream0.m4s")).is_err());
    assert!(check_init_segment("media as init", &read("chunk-stream0-00001.m4s")).is_err());
    let init0 = read("init-stream0.m4s");
    assert!(decode_boxes("truncated", &init0[..init0.len() - 3]).is_err());

    // HLS: m3u8-rs and the LL-HLS line scan agree.
    let master = read("master.m3u8");
    let m = m3u8_rs::parse_master_playlist_res(&master).unwrap();
    assert_eq!(m.variants.len(), 1);
    let media = String::from_utf8(read("media_0.m3u8")).unwrap();
    let pl = m3u8_rs::parse_media_playlist_res(media.as_bytes()).unwrap();
    let scan = scan_media_playlist(&media);
    assert_eq!(pl.segments.len(), scan.segments.len());
    assert_eq!(scan.media_sequence, pl.media_sequence);
    assert!(scan.endlist && pl.end_list);

    // The LL-HLS scan on a hand-written playlist.
    let ll = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0\n\
        #EXT-X-PART-INF:PART-TARGET=0.333\n#EXT-X-MEDIA-SEQUENCE:7\n\
        #EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n\
        #EXT-X-PART:DURATION=0.333,URI=\"p7.0.m4s\",INDEPENDENT=YES\n\
        #EXTINF:2.0,\ns7.m4s\n\
        #EXT-X-PART:DURATION=0.333,URI=\"p8.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.333,URI=\"p8.1.m4s\"\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p8.2.m4s\"\n";
    m3u8_rs::parse_media_playlist_res(ll.as_bytes()).unwrap();
    let s = scan_media_playlist(ll);
    assert_eq!(s.next_msn(), 8);
    assert_eq!(s.trailing_parts().len(), 2);
    assert_eq!(s.part_target(), Some(0.333));
    assert_eq!(
        s.segments[0].pdt.as_deref(),
        Some("2026-01-01T00:00:00.000Z")
    );
    assert_eq!(s.preload_hints[0].get("URI").unwrap(), "p8.2.m4s");
    assert_eq!(
        attrs("A=1,B=\"x,y\",C=z").get("B").map(|s| s.as_str()),
        Some("x,y")
    );
    assert_eq!(iso_duration("PT1M30.5S"), Some(90.5));
    assert_eq!(iso_duration("P1DT1S"), Some(86401.0));
    assert_eq!(
        expand_template(
            "a/$RepresentationID$/$Number%05d$-$Time$$$.m4s",
            "v0",
            "1",
            42,
            9
        ),
        "a/v0/00042-9$.m4s"
    );
    assert_eq!(
        resolve("http://h:1/live/k/master.m3u8", "v/0.m3u8"),
        "http://h:1/live/k/v/0.m3u8"
    );
    assert_eq!(
        resolve("http://h:1/live/k/a.m3u8?x=1", "/seg/1.m4s"),
        "http://h:1/seg/1.m4s"
    );
    assert_eq!(
        resolve("http://h:1/live/k/v/a.m3u8", "../init.mp4"),
        "http://h:1/live/k/init.mp4"
    );

    // The HTTP client: chunked and fixed-length bodies.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        use std::io::{Read, Write};
        for resp in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nnop",
        ] {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf).unwrap();
            c.write_all(resp.as_bytes()).unwrap();
        }
    });
    let a = http_get(&format!("http://{addr}/x")).unwrap();
    assert_eq!(
        (a.status, a.body.as_slice(), a.header("x-a")),
        (200, &b"hello world"[..], Some("1"))
    );
    let b = http_get(&format!("http://{addr}/y")).unwrap();
    assert_eq!(
        (b.status, b.text().as_str(), b.mime().as_str()),
        (404, "nop", "text/plain")
    );
    t.join().unwrap();
}
