//! WHIP ingest from a non-browser WebRTC peer: aiortc (tests/whip_publish.py)
//! publishes H.264 to a real `vela serve` through `POST /whip/KEY` and the
//! bearer form; the stream is served as LL-HLS (ffprobe reads H.264 at the
//! published size) and ends with `EXT-X-ENDLIST` after the publisher's
//! `DELETE`; the session counts in the metrics. A key-mode server refuses an
//! unknown key with 401. (The browser publisher is tests/players/whip.test.mjs.)
//!
//! Needs ffprobe and python3 with aiortc (scripts/setup).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(200);

fn require_aiortc() {
    let ok = Command::new("python3")
        .args(["-c", "import aiortc, numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "python3 with aiortc is needed: run scripts/setup");
}

/// Starts the aiortc publisher; it exits after `seconds` of connected time and a DELETE.
fn spawn_publisher(
    server: &Server,
    url: &str,
    seconds: u32,
    bearer: Option<&str>,
) -> std::process::Child {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/whip_publish.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(url).arg(seconds.to_string());
    if let Some(k) = bearer {
        cmd.args(["--bearer", k]);
    }
    let log = std::fs::File::create(server.dir.path.join(format!("aiortc-{seconds}.log"))).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("python3 runs")
}

fn metric(server: &Server, name: &str) -> f64 {
    let text = server.get("/metrics").text();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn probe_video(server: &Server, url: &str) -> (String, u64, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(url)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let parts: Vec<&str> = text.split(',').collect();
    if parts.len() != 3 {
        server.fail(format!(
            "ffprobe {url}: {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    (
        parts[0].to_string(),
        parts[1].parse().unwrap_or(0),
        parts[2].parse().unwrap_or(0),
    )
}

#[test]
#[ignore = "not yet verified on the build machine: cargo nextest run --run-ignored all --test whip_e2e"]
fn aiortc_publishes_over_whip_and_the_stream_is_served() {
    require_tool("ffprobe");
    require_aiortc();
    let server = Server::start();
    for (key, bearer) in [
        ("aiortc-path", None),
        ("aiortc-bearer", Some("aiortc-bearer")),
    ] {
        let url = match bearer {
            None => server.url(&format!("/whip/{key}")),
            Some(_) => server.url("/whip"),
        };
        let mut publisher = spawn_publisher(&server, &url, 8, bearer);
        let master = server.url(&format!("/live/{key}/master.m3u8"));
        server.poll("the WHIP stream's master playlist", 300, POLL, || {
            if let Ok(Some(st)) = publisher.try_wait() {
                server.fail(format!("the aiortc publisher exited early ({st})"));
            }
            (server.get(&format!("/live/{key}/master.m3u8")).status == 200).then_some(())
        });
        let (codec, w, h) = probe_video(&server, &master);
        assert_eq!((codec.as_str(), w, h), ("h264", 640, 360));
        let media = format!("/live/{key}/v1/index.m3u8");
        server.poll("two segments", 150, POLL, || {
            (server.get(&media).text().matches("#EXTINF").count() >= 2).then_some(())
        });
        // The publisher ends with DELETE: the stream ends cleanly.
        let out = {
            let mut s = String::new();
            use std::io::Read;
            publisher
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            s
        };
        let status = publisher.wait().unwrap();
        assert!(
            status.success(),
            "aiortc publisher failed: {out}\n{}",
            server.stderr()
        );
        assert!(out.contains("\"delete\": 200"), "{out}");
        server.poll("EXT-X-ENDLIST after DELETE", 100, POLL, || {
            server
                .get(&media)
                .text()
                .contains("#EXT-X-ENDLIST")
                .then_some(())
        });
    }
    assert!(
        metric(
            &server,
            "vela_webrtc_sessions_ended_total{cause=\"delete\"}"
        ) >= 2.0
    );
    assert!(metric(&server, "vela_webrtc_keyframe_requests_total") >= 1.0);
    assert_eq!(
        metric(&server, "vela_webrtc_sessions{state=\"connected\"}"),
        0.0
    );
}

#[test]
fn key_mode_refuses_unknown_keys_with_401() {
    let server = Server::start_with_config("[auth]\npublish = \"keys\"\n");
    let r = http_post(
        &server.url("/whip/nobody"),
        &[("Content-Type", "application/sdp")],
        b"v=0\r\n",
    )
    .unwrap_or_else(|e| server.fail(e));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("\"unauthorized\""), "{}", r.text());
    assert!(
        server
            .get("/metrics")
            .text()
            .contains("vela_publish_refused_total{reason="),
        "the refusal is counted"
    );
}
