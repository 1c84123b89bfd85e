//! End-to-end test of the DVR spool: a real `vela serve` with a long DVR
//! window and a short memory horizon, a real ffmpeg publishing over RTMP,
//! and the old part of the window read back from the spool on disk.
//!
//! Nothing asserts a wall-clock duration: every wait is a bounded poll that
//! fails with the server's log. The server's resident memory is printed,
//! not asserted (it depends on the allocator and the machine).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(200);
const SECONDS: f64 = 40.0;

/// The server's resident set, kB (/proc/PID/status VmRSS).
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A metric's value from `/metrics` (an unlabelled series).
fn metric(server: &Server, name: &str) -> Option<f64> {
    let text = server.get_ok("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}

/// The media playlist URLs a master playlist names.
fn media_playlists(server: &Server, master_url: &str) -> Vec<String> {
    let text = server.get_ok(master_url).text();
    let mut out: Vec<String> = Vec::new();
    for l in text.lines() {
        let uri = if l.starts_with("#EXT-X-MEDIA:") {
            attrs(l.trim_start_matches("#EXT-X-MEDIA:"))
                .get("URI")
                .cloned()
        } else if !l.starts_with('#') && !l.trim().is_empty() {
            Some(l.trim().to_string())
        } else {
            None
        };
        if let Some(u) = uri {
            let u = resolve(master_url, &u);
            if !out.contains(&u) {
                out.push(u);
            }
        }
    }
    out
}

/// The segment URIs of a media playlist, oldest first (resolved).
fn segment_urls(playlist_url: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after_extinf = false;
    for l in text.lines() {
        if l.starts_with("#EXTINF:") {
            after_extinf = true;
        } else if after_extinf && !l.starts_with('#') && !l.trim().is_empty() {
            out.push(resolve(playlist_url, l.trim()));
            after_extinf = false;
        }
    }
    out
}

/// The spooled segment files under `DATA/dvr`, all streams and renditions.
fn spool_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "m4s") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn old_segments_are_served_from_the_spool() {
    let ffmpeg = require_tool("ffmpeg");
    require_tool("ffprobe");
    let server = Server::start_with_config("[live]\ndvr_window_s = 300\ndvr_memory_s = 8\n");
    let spool_root = server.data.join("dvr");
    assert!(spool_root.is_dir(), "the spool is made at start-up");
    let mut spec = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, SECONDS);
    // A smaller picture keeps the encoder light on a shared machine.
    spec.width = 640;
    spec.height = 360;
    let key = "dvrshow";
    let pid = server.pid();
    eprintln!("RSS before publishing: {:?} kB", rss_kb(pid));
    let mut publisher = Publisher::spawn(&ffmpeg, &server.rtmp_url(key), &spec, &server.dir.path);
    let master_url = server.url(&format!("/live/{key}/master.m3u8"));
    server.poll("the master playlist", 150, POLL, || {
        if !publisher.is_running() {
            server.fail(format!(
                "the publisher ended early:\n{}",
                publisher.log_text()
            ));
        }
        (server.get(&master_url).status == 200).then_some(())
    });
    let playlists = media_playlists(&server, &master_url);
    assert!(!playlists.is_empty(), "the master names media playlists");

    // Early: the first segment of each rendition, read from memory.
    let mut early = Vec::new();
    for url in &playlists {
        let first = server.poll(&format!("a segment in {url}"), 150, POLL, || {
            let r = server.get(url);
            (r.status == 200)
                .then(|| segment_urls(url, &r.text()).into_iter().next())
                .flatten()
        });
        let bytes = server.get_ok(&first).body;
        early.push((first, bytes));
    }
    eprintln!("RSS early: {:?} kB", rss_kb(pid));

    // Once 8 s of newer segments exist, the first ones move to the spool.
    for (url, bytes) in &early {
        let (rid, file) = {
            let mut it = url.rsplit('/');
            let file = it.next().unwrap().to_string();
            (it.next().unwrap().to_string(), file)
        };
        let on_disk = server.poll(&format!("{rid}/{file} in the spool"), 300, POLL, || {
            spool_files(&spool_root).into_iter().find(|p| {
                p.ends_with(Path::new(&rid).join(&file))
                    && p.parent()
                        .and_then(|d| d.parent())
                        .and_then(|d| d.file_name())
                        .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{key}-")))
            })
        });
        let disk = std::fs::read(&on_disk).unwrap();
        assert_eq!(
            &disk,
            bytes,
            "{}: the spool file is the segment",
            on_disk.display()
        );
        let again = server.get_ok(url).body;
        assert_eq!(&again, bytes, "{url}: read from the spool, byte for byte");
        eprintln!(
            "{url}: {} bytes, identical from memory and from the spool",
            bytes.len()
        );
    }
    let spooled = metric(&server, "vela_dvr_spooled_bytes_total").unwrap_or(0.0);
    assert!(spooled > 0.0, "/metrics shows spooled bytes");
    eprintln!(
        "RSS mid-publish: {:?} kB; spooled {spooled} B, in memory {:?} B",
        rss_kb(pid),
        metric(&server, "vela_dvr_memory_bytes")
    );

    // The publisher ends; the whole window (all of it within 300 s) decodes.
    let status = publisher
        .wait_exit(((SECONDS + 60.0) * 4.0) as usize)
        .unwrap_or_else(|| server.fail("the publisher did not finish"));
    assert!(status.success(), "publisher: {}", publisher.log_text());
    for url in &playlists {
        server.poll(&format!("EXT-X-ENDLIST in {url}"), 150, POLL, || {
            scan_media_playlist(&server.get_ok(url).text())
                .endlist
                .then_some(())
        });
    }
    let files = spool_files(&spool_root);
    eprintln!(
        "RSS at the end: {:?} kB; {} spool files; spooled {:?} B, in memory {:?} B, spool errors {:?}",
        rss_kb(pid),
        files.len(),
        metric(&server, "vela_dvr_spooled_bytes_total"),
        metric(&server, "vela_dvr_memory_bytes"),
        metric(&server, "vela_dvr_spool_errors_total"),
    );
    // 40 s of 2 s segments with the last 8 s in memory: about 15 spooled
    // per rendition.
    assert!(
        files.len() >= 10 * playlists.len(),
        "{} spool files: {files:?}",
        files.len()
    );
    assert_eq!(metric(&server, "vela_dvr_spool_errors_total"), Some(0.0));

    let (st, out, err) = run_bounded(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,nb_read_frames",
            "-of",
            "csv=p=0",
            &master_url,
        ]),
        Duration::from_secs(240),
    );
    if !st.success() {
        server.fail(format!("ffprobe {master_url} failed ({st}):\n{err}"));
    }
    let count = |ty: &str| -> u64 {
        out.lines()
            .filter(|l| l.starts_with(ty))
            .filter_map(|l| l.split(',').nth(1)?.trim().parse().ok())
            .max()
            .unwrap_or(0)
    };
    let (video, audio) = (count("video"), count("audio"));
    let published = spec.video_frames();
    eprintln!("decoded {video} video frames (published {published}), {audio} AAC frames");
    assert!(
        video + u64::from(spec.fps) >= published && video <= published + 1,
        "decoded {video} video frames of the window, published {published}"
    );
    let secs = audio as f64 * 1024.0 / 48000.0;
    assert!(
        (SECONDS - 1.1..=SECONDS + 0.2).contains(&secs),
        "decoded {secs:.3} s of audio, published {SECONDS} s"
    );
}
