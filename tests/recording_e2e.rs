//! Recording (live-to-VOD) end to end: ffmpeg (Debian's 5.1) publishes over RTMP,
//! the stream is recorded, and the recording plays as a media entry in HLS, DASH
//! and Smooth, read back by ffprobe (frame counts) and strict parsers. Also: a
//! `kill -9` in the middle of a recording, a publisher reconnect inside the grace
//! period, long streams in pieces, retention and storage use, and (with the
//! SeaweedFS server of `scripts/s3-test-server`) two nodes on one PostgreSQL
//! sharing a bucket, and a bucket that goes away for 20 s.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Video frames ffprobe decodes from `url` (HLS or DASH), counting every frame.
fn count_video_frames(server: &Server, url: &str) -> u64 {
    let ffprobe = require_tool("ffprobe");
    let (st, out, err) = run_bounded(
        Command::new(ffprobe).args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            url,
        ]),
        Duration::from_secs(300),
    );
    if !st.success() {
        server.fail(format!("ffprobe {url} failed: {err}"));
    }
    out.trim()
        .lines()
        .next()
        .and_then(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| server.fail(format!("ffprobe {url}: no frame count in {out:?}")))
}

/// Decodes `url` completely with ffmpeg: no error may be printed.
fn decodes_cleanly(server: &Server, url: &str) {
    let ffmpeg = require_tool("ffmpeg");
    let (st, _, err) = run_bounded(
        Command::new(ffmpeg).args(["-v", "error", "-nostdin", "-i", url, "-f", "null", "-"]),
        Duration::from_secs(300),
    );
    if !st.success() || !err.trim().is_empty() {
        server.fail(format!("ffmpeg could not decode {url} cleanly: {err}"));
    }
}

fn create_live(server: &Server, token: &str, body: Value) -> (String, String) {
    let (s, e) = api(server, "POST", "/api/v1/entries", Some(token), Some(body));
    assert_eq!(s, 201, "{e}");
    (
        e["id"].as_str().unwrap().to_string(),
        e["stream_key"].as_str().unwrap().to_string(),
    )
}

fn entry(server: &Server, token: &str, id: &str) -> Value {
    let (s, e) = api(
        server,
        "GET",
        &format!("/api/v1/entries/{id}"),
        Some(token),
        None,
    );
    assert_eq!(s, 200, "{e}");
    e
}

/// The live entry's latest recording, once it is linked.
fn recorded_entry(server: &Server, token: &str, live: &str) -> String {
    server.poll(
        "the live entry's recording",
        300,
        Duration::from_millis(100),
        || {
            entry(server, token, live)["recorded_entry_id"]
                .as_str()
                .map(str::to_string)
        },
    )
}

/// Media entries of the admin partner, oldest first.
fn media_entries(server: &Server, token: &str) -> Vec<Value> {
    let (s, l) = api(
        server,
        "GET",
        "/api/v1/entries?type=media&sort=created_at&page_size=100",
        Some(token),
        None,
    );
    assert_eq!(s, 200, "{l}");
    l["objects"].as_array().cloned().unwrap_or_default()
}

fn metric(server: &Server, name: &str) -> f64 {
    let text = server.get_ok(&server.url("/metrics")).text();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// 60 s published to a recording live entry: a ready media entry whose HLS, DASH
/// and Smooth have every published frame; thumbnails; retention; usage; deletion.
#[test]
fn a_recording_live_entry_becomes_a_playable_media_entry() {
    let ffmpeg = require_tool("ffmpeg");
    let server = Server::start_with_config("[auth]\npublish = \"keys\"\n");
    let token = admin_token(&server);
    let (live, key) = create_live(
        &server,
        &token,
        json!({"type":"live","name":"Match day","tags":["football"],"recording":true}),
    );
    let spec = PublishSpec::new(Some(VideoCodec::H264 { bframes: 2 }), true, 60.0);
    let mut publisher = Publisher::spawn(&ffmpeg, &server.rtmp_url(&key), &spec, &server.dir.path);
    if publisher.wait_exit(400).is_none_or(|st| !st.success()) {
        server.fail(format!("publisher failed:\n{}", publisher.log_text()));
    }

    let id = recorded_entry(&server, &token, &live);
    let e = wait_ready(&server, &token, &id);
    assert_eq!(e["source_entry_id"], live.as_str(), "{e}");
    assert_eq!(e["tags"], json!(["football"]), "{e}");
    assert!(
        e["name"]
            .as_str()
            .unwrap()
            .starts_with("Match day (recording "),
        "{e}"
    );
    let duration = e["duration_s"].as_f64().unwrap();
    assert!(
        (59.0..=61.0).contains(&duration),
        "duration {duration}: {e}"
    );
    let stored = e["stored_bytes"].as_i64().unwrap();
    assert!(stored > 1_000_000, "{e}");

    // Every published frame, in HLS and in DASH.
    let frames = spec.video_frames();
    let hls = server.url(&format!("/vod/{id}/master.m3u8"));
    assert_eq!(count_video_frames(&server, &hls), frames, "HLS frames");
    let dash = server.url(&format!("/vod/{id}/manifest.mpd"));
    assert_eq!(count_video_frames(&server, &dash), frames, "DASH frames");
    decodes_cleanly(&server, &hls);

    // Smooth: the manifest lists the whole recording and every fragment is served.
    let manifest = server.get_ok(&format!("/vod/{id}/Manifest")).text();
    let root = parse_xml(&manifest).unwrap_or_else(|e| server.fail(format!("Smooth: {e}")));
    let video = root
        .children_named("StreamIndex")
        .find(|s| s.attr("Type") == Some("video"))
        .unwrap_or_else(|| server.fail("no video StreamIndex"));
    let bitrate = video
        .child("QualityLevel")
        .and_then(|q| q.attr("Bitrate"))
        .unwrap()
        .to_string();
    let mut t: u64 = 0;
    let mut total: u64 = 0;
    let mut fragments = 0;
    for c in video.children_named("c") {
        if let Some(start) = c.attr("t") {
            t = start.parse().unwrap();
        }
        let d: u64 = c.attr("d").unwrap().parse().unwrap();
        let r = server.get(&format!(
            "/vod/{id}/QualityLevels({bitrate})/Fragments(video={t})"
        ));
        assert_eq!(r.status, 200, "Smooth fragment at {t}");
        t += d;
        total += d;
        fragments += 1;
    }
    let secs = total as f64 / 10_000_000.0;
    assert!(
        (59.0..=61.0).contains(&secs),
        "Smooth lists {secs} s in {fragments} fragments"
    );

    // Thumbnails of the recording.
    let thumb = server.get(&format!("/thumb/{id}/30.jpg?width=160"));
    assert_eq!(thumb.status, 200, "thumbnail");
    assert_eq!(thumb.mime(), "image/jpeg");

    // Usage per partner, in the API and in /metrics-free terms.
    let (s, u) = api(&server, "GET", "/api/v1/usage", Some(&token), None);
    assert_eq!(s, 200, "{u}");
    let mine = u
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["partner_id"] == 1)
        .cloned()
        .unwrap_or_else(|| server.fail(format!("no usage for partner 1: {u}")));
    assert_eq!(mine["stored_bytes"].as_i64(), Some(stored), "{u}");
    assert!(metric(&server, "vela_recordings_completed_total") >= 1.0);

    // Retention: an expiry in the past deletes the entry and its files.
    let content_dir = server.data.join("media").join(&id);
    assert!(content_dir.is_dir());
    let (s, p) = api(
        &server,
        "PATCH",
        &format!("/api/v1/entries/{id}"),
        Some(&token),
        Some(json!({"expires_at": 1})),
    );
    assert_eq!(s, 200, "{p}");
    server.poll(
        "the expired entry to go",
        600,
        Duration::from_millis(100),
        || {
            let (s, _) = api(
                &server,
                "GET",
                &format!("/api/v1/entries/{id}"),
                Some(&token),
                None,
            );
            (s == 404).then_some(())
        },
    );
    server.poll(
        "the expired content to go",
        300,
        Duration::from_millis(100),
        || (!content_dir.exists()).then_some(()),
    );
    assert_eq!(server.get(&format!("/vod/{id}/master.m3u8")).status, 404);
    let (_, u) = api(&server, "GET", "/api/v1/usage", Some(&token), None);
    let left = u
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["partner_id"] == 1)
        .map_or(0, |x| x["stored_bytes"].as_i64().unwrap());
    assert_eq!(left, 0, "{u}");
}

/// `kill -9` in the middle of a recording: after the restart the recording is a
/// ready media entry with what was written before the kill, and it decodes.
#[test]
fn a_recording_survives_kill_9() {
    let ffmpeg = require_tool("ffmpeg");
    let server =
        Server::start_with_config("[auth]\npublish = \"open\"\n[recording]\nopen_streams = true\n");
    let token = admin_token(&server);
    let spec = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, 60.0);
    let mut publisher = Publisher::spawn(&ffmpeg, &server.rtmp_url("cam"), &spec, &server.dir.path);
    // About 20 s of media: ten 2 s segments of each of the two renditions.
    server.poll(
        "20 s of recording",
        1200,
        Duration::from_millis(100),
        || (metric(&server, "vela_segments_total") >= 20.0).then_some(()),
    );
    let server = server.kill9_and_restart();
    publisher.kill_hard();

    let media = server.poll(
        "the recovered recording",
        600,
        Duration::from_millis(100),
        || {
            media_entries(&server, &token)
                .into_iter()
                .find(|e| e["status"] == "ready")
        },
    );
    assert_eq!(media["metadata"]["stream"], "cam", "{media}");
    let id = media["id"].as_str().unwrap();
    let duration = media["duration_s"].as_f64().unwrap();
    // Everything written before the kill (20 s or a little more), minus at most the
    // moment in flight.
    assert!(
        (18.0..50.0).contains(&duration),
        "recovered {duration} s of the 20 s or so written before the kill: {media}"
    );
    let hls = server.url(&format!("/vod/{id}/master.m3u8"));
    let frames = count_video_frames(&server, &hls);
    assert!(
        (frames as f64 - duration * 30.0).abs() <= 2.0,
        "{frames} frames in {duration} s"
    );
    decodes_cleanly(&server, &hls);
    assert!(
        files_under(&server.data.join("recordings")).is_empty(),
        "the recovered piece's working files are gone"
    );
}

/// A publisher that vanishes and comes back inside the grace period continues one
/// recording; a long stream is cut into pieces; every frame is in some piece.
#[test]
fn reconnects_stay_one_recording_and_long_streams_come_in_pieces() {
    let ffmpeg = require_tool("ffmpeg");
    let server = Server::start_with_config(
        "[auth]\npublish = \"open\"\n[live]\nreconnect_grace_s = 8\n\
         [recording]\nopen_streams = true\npiece_s = 12\n",
    );
    let token = admin_token(&server);
    let first = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, 8.0);
    let mut p = Publisher::spawn(&ffmpeg, &server.rtmp_url("show"), &first, &server.dir.path);
    assert!(
        p.wait_exit(200).is_some_and(|s| s.success()),
        "{}",
        p.log_text()
    );
    // The first publish ended cleanly: that ends the stream (and its recording).
    let one = server.poll(
        "the first recording",
        600,
        Duration::from_millis(100),
        || {
            let m = media_entries(&server, &token);
            (m.len() == 1 && m[0]["status"] == "ready").then(|| m[0].clone())
        },
    );
    let id = one["id"].as_str().unwrap();
    let frames = count_video_frames(&server, &server.url(&format!("/vod/{id}/master.m3u8")));
    assert_eq!(frames, first.video_frames(), "{one}");

    // 30 s in one publish, vanishing after 14 s and coming back: one stream, cut in
    // pieces of 12 s.
    let a = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, 30.0);
    let before = metric(&server, "vela_segments_total");
    let mut p = Publisher::spawn(&ffmpeg, &server.rtmp_url("show"), &a, &server.dir.path);
    server.poll("14 s published", 600, Duration::from_millis(100), || {
        (metric(&server, "vela_segments_total") >= before + 14.0).then_some(())
    });
    p.kill_hard();
    let b = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, 16.0);
    let mut p = Publisher::spawn(&ffmpeg, &server.rtmp_url("show"), &b, &server.dir.path);
    assert!(
        p.wait_exit(200).is_some_and(|s| s.success()),
        "{}",
        p.log_text()
    );
    let pieces = server.poll("the pieces", 600, Duration::from_millis(100), || {
        let m: Vec<Value> = media_entries(&server, &token)
            .into_iter()
            .filter(|e| e["id"] != id)
            .collect();
        let done = m.len() >= 3 && m.iter().all(|e| e["status"] == "ready");
        done.then_some(m)
    });
    let mut total_s = 0.0;
    let parts = pieces
        .iter()
        .filter(|e| e["name"].as_str().unwrap().contains(", part "))
        .count();
    assert_eq!(
        parts,
        pieces.len() - 1,
        "one first piece, then parts: {pieces:?}"
    );
    for (i, e) in pieces.iter().enumerate() {
        let d = e["duration_s"].as_f64().unwrap();
        assert!(d <= 14.5, "piece {i} lasts {d} s: {e}");
        let _ = i;
        total_s += d;
    }
    // 14 s + 16 s, less what was in flight at the kill (a second or two).
    assert!(
        (26.0..=31.0).contains(&total_s),
        "{total_s} s in {} pieces",
        pieces.len()
    );
}

/// Two nodes on one PostgreSQL sharing a SeaweedFS bucket: a recording made through
/// node A plays from node B, an upload through B plays from A; the bucket goes away
/// for 20 s (around the recording's end) without costing the live stream or the
/// recording anything, and the outage is logged once.
#[test]
fn two_nodes_share_recordings_and_uploads_through_s3() {
    let ffmpeg = require_tool("ffmpeg");
    let s3 = S3Server::start();
    let db = pg_database("rec");
    let config = format!(
        "[auth]\npublish = \"keys\"\n[database]\nurl = \"{db}\"\n{}",
        s3.storage_toml()
    );
    let a = Server::start_with_config(&config);
    let b = Server::start_with_config(&config);
    let secret_from = if a.data.join("admin-secret").exists() {
        &a
    } else {
        &b
    };
    let token = admin_token(secret_from);
    let (live, key) = create_live(
        &a,
        &token,
        json!({"type":"live","name":"Shared","recording":true}),
    );

    let spec = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, 30.0);
    let mut publisher = Publisher::spawn(&ffmpeg, &a.rtmp_url(&key), &spec, &a.dir.path);
    // 10 s in, the bucket goes away for the rest of the stream and 20 s in all.
    a.poll(
        "10 s of the stream",
        600,
        Duration::from_millis(100),
        || (metric(&a, "vela_segments_total") >= 10.0).then_some(()),
    );
    let during = metric(&a, "vela_segments_total");
    s3.stop();
    assert!(
        publisher.wait_exit(200).is_some_and(|s| s.success()),
        "{}",
        publisher.log_text()
    );
    // The live stream went on during the outage.
    assert!(
        metric(&a, "vela_segments_total") >= during + 16.0,
        "segments stalled"
    );
    let id = recorded_entry(&a, &token, &live);
    // Ready on node A while the bucket is still away: the content is local first.
    wait_ready(&a, &token, &id);
    a.poll(
        "the outage to be noticed",
        600,
        Duration::from_millis(100),
        || {
            a.stderr()
                .contains("cannot copy content to shared storage")
                .then_some(())
        },
    );
    // The bucket has been away for the last 20 s of the stream: it comes back.
    s3.restart();

    // Node B plays A's recording once the copy reached the bucket.
    let frames = spec.video_frames();
    let hls_b = b.url(&format!("/vod/{id}/master.m3u8"));
    b.poll(
        "the recording on node B",
        600,
        Duration::from_millis(200),
        || (b.get(&format!("/vod/{id}/master.m3u8")).status == 200).then_some(()),
    );
    assert_eq!(
        count_video_frames(&b, &hls_b),
        frames,
        "frames played from node B"
    );
    let outages = a
        .stderr()
        .matches("cannot copy content to shared storage")
        .count();
    assert_eq!(outages, 1, "one log line per incident");

    // An upload through B plays from A.
    let src = a.dir.path.join("clip.mp4");
    let (st, _, err) = run_bounded(
        Command::new(&ffmpeg)
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=25",
                "-t",
                "6",
                "-c:v",
                "libx264",
                "-g",
                "25",
                "-pix_fmt",
                "yuv420p",
            ])
            .arg(&src),
        Duration::from_secs(120),
    );
    assert!(st.success(), "{err}");
    let (s, m) = api(
        &b,
        "POST",
        "/api/v1/entries",
        Some(&token),
        Some(json!({"type":"media","name":"clip"})),
    );
    assert_eq!(s, 201, "{m}");
    let clip = m["id"].as_str().unwrap().to_string();
    let auth = format!("Bearer {token}");
    let r = http_request_with_body(
        "PUT",
        &b.url(&format!("/api/v1/entries/{clip}/content")),
        &[("Authorization", &auth), ("Content-Type", "video/mp4")],
        Some(&std::fs::read(&src).unwrap()),
        Duration::from_secs(120),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text_lossy(300));
    a.poll(
        "the upload on node A",
        600,
        Duration::from_millis(200),
        || (a.get(&format!("/vod/{clip}/master.m3u8")).status == 200).then_some(()),
    );
    assert_eq!(
        count_video_frames(&a, &a.url(&format!("/vod/{clip}/master.m3u8"))),
        150
    );

    // Deleting through A removes it everywhere (B's cached copy is not served).
    let (s, _) = api(
        &a,
        "DELETE",
        &format!("/api/v1/entries/{clip}"),
        Some(&token),
        None,
    );
    assert_eq!(s, 204);
    assert_eq!(b.get(&format!("/vod/{clip}/master.m3u8")).status, 404);
}
