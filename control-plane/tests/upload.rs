//! `PUT /api/v1/entries/ID/content`: real MP4s made by ffmpeg, streamed in small chunks,
//! checked by an ffprobe-based inspector; statuses, replacement, failures (interrupted
//! bodies, over the limit, rejected content, concurrent uploads, permissions), deletion.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use common::{app_media, assert_error_shape, App};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower::ServiceExt;
use vela_control_plane::{
    ContentInspector, EntryStatus, MediaConfig, MediaInfo, PublishMode, TrackInfo, TrackKind,
};

// ---------------------------------------------------------------------------------------
// Test media and a real inspector (ffprobe).

/// Two MP4s made by ffmpeg (3 s 320x240 and 2 s 160x120, H.264 + AAC), once per binary.
fn test_mp4s() -> &'static (Vec<u8>, Vec<u8>) {
    static FILES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let make = |size: &str, secs: &str, name: &str| {
            let out = dir.path().join(name);
            let st = std::process::Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
                .arg(format!("testsrc2=size={size}:rate=25"))
                .args(["-f", "lavfi", "-i", "sine", "-t", secs])
                .args(["-c:v", "libx264", "-c:a", "aac"])
                .arg(&out)
                .status()
                .expect("run ffmpeg");
            assert!(st.success(), "ffmpeg failed");
            std::fs::read(out).unwrap()
        };
        (make("320x240", "3", "a.mp4"), make("160x120", "2", "b.mp4"))
    })
}

/// Inspects content with ffprobe: what it reports, or its error for non-media.
struct Ffprobe;

impl ContentInspector for Ffprobe {
    fn inspect(&self, path: &Path) -> Result<MediaInfo, String> {
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_format",
                "-show_streams",
                "-of",
                "json",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run ffprobe: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err.lines().last().unwrap_or("unreadable").to_string();
            // ffprobe names the file; the reason must not show server paths.
            let line = line.replace(&path.display().to_string(), "content");
            return Err(format!("not a media file: {line}"));
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let num = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
        let tracks: Vec<TrackInfo> = v["streams"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|s| TrackInfo {
                kind: match s["codec_type"].as_str() {
                    Some("video") => TrackKind::Video,
                    Some("audio") => TrackKind::Audio,
                    Some("subtitle") => TrackKind::Subtitle,
                    _ => TrackKind::Other,
                },
                codec: s["codec_tag_string"].as_str().unwrap_or("").to_string(),
                width: s["width"].as_u64().map(|v| v as u32),
                height: s["height"].as_u64().map(|v| v as u32),
                frame_rate: s["r_frame_rate"].as_str().and_then(|r| {
                    let (a, b) = r.split_once('/')?;
                    let (a, b) = (a.parse::<f64>().ok()?, b.parse::<f64>().ok()?);
                    (b > 0.0 && s["codec_type"] == "video").then(|| a / b)
                }),
                sample_rate: num(&s["sample_rate"]).map(|v| v as u32),
                channels: s["channels"].as_u64().map(|v| v as u32),
                language: s["tags"]["language"].as_str().map(str::to_string),
                bitrate: num(&s["bit_rate"]).map(|v| v as u64),
            })
            .collect();
        if tracks.is_empty() {
            return Err("no audio or video tracks".into());
        }
        Ok(MediaInfo {
            duration_s: num(&v["format"]["duration"]).unwrap_or(0.0),
            container: v["format"]["format_name"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .find(|f| *f == "mp4")
                .unwrap_or("unknown")
                .to_string(),
            tracks,
        })
    }
}

async fn app_with_inspector(max: Option<u64>) -> App {
    let mut media = MediaConfig {
        inspector: Some(Arc::new(Ffprobe)),
        ..Default::default()
    };
    if let Some(m) = max {
        media.max_upload_bytes = m;
    }
    app_media(tempfile::tempdir().unwrap(), None, PublishMode::Auto, media).await
}

// ---------------------------------------------------------------------------------------
// Helpers.

async fn media_entry(a: &App, tok: &str) -> String {
    let (s, v) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(tok),
            Some(json!({"type":"media","name":"Upload me"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

fn put(id: &str, tok: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method("PUT")
        .uri(format!("/api/v1/entries/{id}/content"))
        .header("authorization", format!("Bearer {tok}"))
        .body(body)
        .unwrap()
}

/// A body in `chunk`-byte pieces, streamed (no Content-Length).
fn chunked(data: &'static [u8], chunk: usize) -> Body {
    let it = data
        .chunks(chunk)
        .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c)));
    Body::from_stream(futures_util::stream::iter(it))
}

type Chunk = Result<Bytes, std::io::Error>;

/// A body fed by the test through a channel of capacity 1: once the second `send`
/// returns, the server has taken the first chunk (the upload is running).
fn channel_body() -> (mpsc::Sender<Chunk>, Body) {
    let (tx, rx) = mpsc::channel::<Chunk>(1);
    let s =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    (tx, Body::from_stream(s))
}

async fn send_all(tx: &mpsc::Sender<Chunk>, data: &'static [u8], chunk: usize) {
    for c in data.chunks(chunk) {
        tx.send(Ok(Bytes::from_static(c))).await.unwrap();
    }
}

fn spawn_call(a: &App, req: Request<Body>) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let router = a.router.clone();
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        let resp = router.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    })
}

async fn entry(a: &App, tok: &str, id: &str) -> Value {
    let (s, v) = a
        .call("GET", &format!("/api/v1/entries/{id}"), Some(tok), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn media_dir(a: &App, id: &str) -> PathBuf {
    a.dir.path().join("media").join(id)
}

/// The files in an entry's media folder (none if it does not exist).
fn files(a: &App, id: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(media_dir(a, id))
        .map(|d| {
            d.map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn leak(v: &[u8]) -> &'static [u8] {
    Box::leak(v.to_vec().into_boxed_slice())
}

// ---------------------------------------------------------------------------------------
// Tests.

async fn upload_flow_on(a: App) {
    let (mp4_a, mp4_b) = test_mp4s();
    let (mp4_a, mp4_b) = (leak(mp4_a), leak(mp4_b));
    let tok = a.admin_token().await;
    let id = media_entry(&a, &tok).await;
    let e = entry(&a, &tok, &id).await;
    assert_eq!(e["status"], "pending");
    assert!(e.get("media").is_none() && e.get("playback").is_none());
    assert!(a.cp.media_source(&id).await.unwrap().is_none());

    // Streamed in 4 KiB pieces; `processing` while it runs.
    let (tx, body) = channel_body();
    let call = spawn_call(&a, put(&id, &tok, body));
    let half = mp4_a.len() / 2;
    send_all(&tx, &mp4_a[..half], 4096).await;
    assert_eq!(entry(&a, &tok, &id).await["status"], "processing");
    send_all(&tx, &mp4_a[half..], 4096).await;
    drop(tx);
    let (s, v) = call.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ready");
    assert!(v.get("status_reason").is_none());
    let m = &v["media"];
    assert_eq!(m["container"], "mp4");
    assert!((m["duration_s"].as_f64().unwrap() - 3.0).abs() < 0.2, "{m}");
    assert!((v["duration_s"].as_f64().unwrap() - 3.0).abs() < 0.2, "{v}");
    let video = m["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "video")
        .expect("a video track");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(video["codec"], "avc1");
    assert_eq!(video["frame_rate"], 25.0);
    let audio = m["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "audio")
        .expect("an audio track");
    assert_eq!(audio["codec"], "mp4a");
    assert!(audio["sample_rate"].as_u64().unwrap() > 0);
    assert_eq!(
        v["playback"]["hls"],
        format!("http://media.test:8080/vod/{id}/master.m3u8")
    );
    assert_eq!(entry(&a, &tok, &id).await["media"], *m);

    // Stored byte for byte as `source.mp4`, nothing else left in the folder.
    assert_eq!(files(&a, &id), vec!["source.mp4".to_string()]);
    let stored = media_dir(&a, &id).join("source.mp4");
    assert_eq!(std::fs::read(&stored).unwrap(), mp4_a);
    let src =
        a.cp.media_source(&id)
            .await
            .unwrap()
            .expect("a media source");
    assert_eq!(src.path, stored);
    assert_eq!(src.status, EntryStatus::Ready);
    assert_eq!(src.size, mp4_a.len() as u64);
    assert_eq!(src.partner_id, 1);
    assert_eq!(src.media.as_ref().unwrap().tracks.len(), 2);

    // A replacement: the old content stays served until the new one is ready.
    let (tx, body) = channel_body();
    let call = spawn_call(&a, put(&id, &tok, body));
    let half = mp4_b.len() / 2;
    send_all(&tx, &mp4_b[..half], 4096).await;
    let during = a.cp.media_source(&id).await.unwrap().expect("still served");
    assert_eq!(during.status, EntryStatus::Processing);
    assert_eq!(std::fs::read(&during.path).unwrap(), mp4_a);
    assert_eq!(entry(&a, &tok, &id).await["status"], "processing");
    send_all(&tx, &mp4_b[half..], 4096).await;
    drop(tx);
    let (s, v) = call.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ready");
    assert!((v["media"]["duration_s"].as_f64().unwrap() - 2.0).abs() < 0.2);
    assert_eq!(std::fs::read(&stored).unwrap(), mp4_b);
    assert_eq!(files(&a, &id), vec!["source.mp4".to_string()]);

    // A rejected replacement leaves the entry ready with its content.
    let (s, v) = a
        .call_raw(put(&id, &tok, chunked(b"definitely not a video file", 5)))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "content_rejected");
    let e = entry(&a, &tok, &id).await;
    assert_eq!(e["status"], "ready");
    assert!(e.get("status_reason").is_none());
    assert_eq!(std::fs::read(&stored).unwrap(), mp4_b);

    // An interrupted replacement too.
    let (tx, body) = channel_body();
    let call = spawn_call(&a, put(&id, &tok, body));
    send_all(&tx, &mp4_a[..8192], 1024).await;
    tx.send(Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "client went away",
    )))
    .await
    .unwrap();
    let (s, v) = call.await.unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(entry(&a, &tok, &id).await["status"], "ready");
    assert_eq!(std::fs::read(&stored).unwrap(), mp4_b);
    assert_eq!(files(&a, &id), vec!["source.mp4".to_string()]);

    // Listed and searchable by status.
    let (_, l) = a
        .call("GET", "/api/v1/entries?status=ready", Some(&tok), None)
        .await;
    assert_eq!(l["total_count"], 1);

    // Deleting the entry removes its folder.
    let (s, _) = a
        .call("DELETE", &format!("/api/v1/entries/{id}"), Some(&tok), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(!media_dir(&a, &id).exists());
    assert!(a.cp.media_source(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn upload_flow_sqlite() {
    upload_flow_on(app_with_inspector(None).await).await;
}

#[tokio::test]
async fn upload_flow_postgres() {
    let url = common::fresh_pg_database().await;
    let media = MediaConfig {
        inspector: Some(Arc::new(Ffprobe)),
        ..Default::default()
    };
    let a = app_media(
        tempfile::tempdir().unwrap(),
        Some(url),
        PublishMode::Auto,
        media,
    )
    .await;
    upload_flow_on(a).await;
}

#[tokio::test]
async fn interrupted_first_upload_is_an_error_with_no_content() {
    let a = app_with_inspector(None).await;
    let tok = a.admin_token().await;
    let id = media_entry(&a, &tok).await;
    let mp4 = leak(&test_mp4s().0);
    let (tx, body) = channel_body();
    let call = spawn_call(&a, put(&id, &tok, body));
    send_all(&tx, &mp4[..20_000], 4096).await;
    tx.send(Err(std::io::Error::other("connection reset")))
        .await
        .unwrap();
    let (s, v) = call.await.unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_error_shape(s, &v);
    let e = entry(&a, &tok, &id).await;
    assert_eq!(e["status"], "error");
    assert_eq!(e["status_reason"], "upload interrupted");
    assert!(e.get("media").is_none() && e.get("playback").is_none());
    assert!(files(&a, &id).is_empty(), "{:?}", files(&a, &id));
    assert!(a.cp.media_source(&id).await.unwrap().is_none());

    // A new upload recovers the entry.
    let (s, v) = a.call_raw(put(&id, &tok, chunked(mp4, 65536))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ready");
    assert!(v.get("status_reason").is_none());
}

/// A real client over TCP that declares a length, sends part of it and disconnects.
#[tokio::test]
async fn client_disconnecting_over_tcp_leaves_no_content() {
    use tokio::io::AsyncWriteExt;
    let a = app_with_inspector(None).await;
    let tok = a.admin_token().await;
    let id = media_entry(&a, &tok).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = a.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /api/v1/entries/{id}/content HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {tok}\r\n\
         Content-Type: video/mp4\r\nContent-Length: 10000000\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&test_mp4s().0[..50_000]).await.unwrap();
    sock.flush().await.unwrap();
    // Wait until the server is receiving, then go away.
    let mut seen_processing = false;
    for _ in 0..500 {
        if entry(&a, &tok, &id).await["status"] == "processing" {
            seen_processing = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(seen_processing, "the upload started");
    drop(sock);
    let mut e = Value::Null;
    for _ in 0..1000 {
        e = entry(&a, &tok, &id).await;
        if e["status"] != "processing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(e["status"], "error", "{e}");
    assert_eq!(e["status_reason"], "upload interrupted");
    // The slot is free again and nothing was kept.
    assert!(files(&a, &id).is_empty(), "{:?}", files(&a, &id));
    let (s, v) = a
        .call_raw(put(&id, &tok, chunked(leak(&test_mp4s().0), 65536)))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn over_the_limit_is_413() {
    let mp4 = leak(&test_mp4s().0);
    let max = (mp4.len() / 2) as u64;
    let a = app_with_inspector(Some(max)).await;
    let tok = a.admin_token().await;

    // Declared too large: refused before anything changes.
    let id = media_entry(&a, &tok).await;
    let req = Request::builder()
        .method("PUT")
        .uri(format!("/api/v1/entries/{id}/content"))
        .header("authorization", format!("Bearer {tok}"))
        .header("content-length", mp4.len().to_string())
        .body(Body::from(mp4))
        .unwrap();
    let (s, v) = a.call_raw(req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_error_shape(s, &v);
    assert_eq!(entry(&a, &tok, &id).await["status"], "pending");

    // Streamed without a length: cut off at the maximum.
    let (s, v) = a.call_raw(put(&id, &tok, chunked(mp4, 4096))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&max.to_string()));
    let e = entry(&a, &tok, &id).await;
    assert_eq!(e["status"], "error");
    assert_eq!(
        e["status_reason"],
        format!("content larger than the maximum of {max} bytes")
    );
    assert!(files(&a, &id).is_empty());

    // Exactly the maximum is accepted (the inspector then judges it: a cut MP4).
    let (s, v) = a
        .call_raw(put(&id, &tok, chunked(&mp4[..max as usize], 4096)))
        .await;
    assert_ne!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
}

#[tokio::test]
async fn rejected_content_is_422_with_the_reason() {
    let a = app_with_inspector(None).await;
    let tok = a.admin_token().await;
    let id = media_entry(&a, &tok).await;
    let junk: &'static [u8] = leak(&vec![0x5a; 300_000]);
    let (s, v) = a.call_raw(put(&id, &tok, chunked(junk, 8192))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "content_rejected");
    let e = entry(&a, &tok, &id).await;
    assert_eq!(e["status"], "error");
    let reason = e["status_reason"].as_str().unwrap();
    assert!(reason.starts_with("not a media file"), "{reason}");
    assert!(!reason.contains(a.dir.path().to_str().unwrap()), "{reason}");
    assert!(v["error"]["message"].as_str().unwrap().contains(reason));
    assert!(files(&a, &id).is_empty(), "{:?}", files(&a, &id));
    assert!(a.cp.media_source(&id).await.unwrap().is_none());

    // A truncated MP4 is rejected too; an empty body as well.
    let cut = leak(&test_mp4s().0[..4000]);
    let (s, _) = a.call_raw(put(&id, &tok, chunked(cut, 1000))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, v) = a.call_raw(put(&id, &tok, Body::empty())).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(
        entry(&a, &tok, &id).await["status_reason"],
        "the content is empty"
    );
    assert!(files(&a, &id).is_empty());
}

#[tokio::test]
async fn concurrent_upload_is_409() {
    let a = app_with_inspector(None).await;
    let tok = a.admin_token().await;
    let id = media_entry(&a, &tok).await;
    let mp4 = leak(&test_mp4s().0);
    let (tx, body) = channel_body();
    let first = spawn_call(&a, put(&id, &tok, body));
    send_all(&tx, &mp4[..16_384], 4096).await;
    let (s, v) = a.call_raw(put(&id, &tok, chunked(mp4, 65536))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_error_shape(s, &v);
    assert_eq!(entry(&a, &tok, &id).await["status"], "processing");
    send_all(&tx, &mp4[16_384..], 4096).await;
    drop(tx);
    let (s, v) = first.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        std::fs::read(media_dir(&a, &id).join("source.mp4")).unwrap(),
        mp4
    );
    // Free again once the first finished.
    let (s, _) = a.call_raw(put(&id, &tok, chunked(mp4, 65536))).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn permissions_kinds_and_unknown_entries() {
    let a = app_with_inspector(None).await;
    let root = a.admin_token().await;
    let id = media_entry(&a, &root).await;
    let mp4 = leak(&test_mp4s().0);

    // Another partner does not see the entry.
    let (_, other, _) = a.partner(&root, "other").await;
    let (s, v) = a.call_raw(put(&id, &other, chunked(mp4, 65536))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // A user session of the same partner without edit privilege.
    let secret = a.admin_secret();
    let viewer = a
        .session(1, &secret, "user", json!([format!("view:{id}")]))
        .await;
    let (s, v) = a.call_raw(put(&id, &viewer, chunked(mp4, 65536))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_error_shape(s, &v);
    // No session.
    let req = Request::builder()
        .method("PUT")
        .uri(format!("/api/v1/entries/{id}/content"))
        .body(Body::from(mp4))
        .unwrap();
    assert_eq!(a.call_raw(req).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(entry(&a, &root, &id).await["status"], "pending");
    assert!(files(&a, &id).is_empty());

    // Unknown and malformed ids.
    for bad in ["0_zzzzzzzz", "nope", "..%2F..%2Fetc"] {
        let (s, v) = a.call_raw(put(bad, &root, chunked(mp4, 65536))).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{bad}: {v}");
    }

    // A live entry takes no content.
    let (_, live) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&root),
            Some(json!({"type":"live","name":"Live"})),
        )
        .await;
    let live_id = live["id"].as_str().unwrap();
    let (s, v) = a.call_raw(put(live_id, &root, chunked(mp4, 65536))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(!media_dir(&a, live_id).exists());

    // An edit privilege on the entry is enough.
    let editor = a
        .session(1, &secret, "user", json!([format!("edit:{id}")]))
        .await;
    let (s, v) = a.call_raw(put(&id, &editor, chunked(mp4, 65536))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn without_an_inspector_content_is_ready_without_media() {
    let a = app_media(
        tempfile::tempdir().unwrap(),
        None,
        PublishMode::Auto,
        MediaConfig::default(),
    )
    .await;
    let tok = a.admin_token().await;
    let id = media_entry(&a, &tok).await;
    // Larger than the JSON API's 256 KiB body limit.
    let data: &'static [u8] = leak(&(0..700_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let req = Request::builder()
        .method("PUT")
        .uri(format!("/api/v1/entries/{id}/content"))
        .header("authorization", format!("Bearer {tok}"))
        .header("content-type", "video/x-matroska")
        .body(chunked(data, 10_000))
        .unwrap();
    let (s, v) = a.call_raw(req).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ready");
    assert!(v.get("media").is_none());
    // Not sniffable: named after the Content-Type.
    assert_eq!(files(&a, &id), vec!["source.mkv".to_string()]);
    assert_eq!(
        std::fs::read(media_dir(&a, &id).join("source.mkv")).unwrap(),
        data
    );

    // A replacement with another type replaces the file.
    let mp4 = leak(&test_mp4s().1);
    let (s, _) = a.call_raw(put(&id, &tok, chunked(mp4, 65536))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(files(&a, &id), vec!["source.mp4".to_string()]);
    let src = a.cp.media_source(&id).await.unwrap().unwrap();
    assert_eq!(std::fs::read(src.path).unwrap(), mp4);
}

#[tokio::test]
async fn a_stopped_server_leaves_no_processing_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let a = common::app_in(dir, None, PublishMode::Auto).await;
    let tok = a.admin_token().await;
    let fresh = media_entry(&a, &tok).await;
    let replaced = media_entry(&a, &tok).await;
    let (s, _) = a
        .call_raw(put(&replaced, &tok, chunked(leak(&test_mp4s().0), 65536)))
        .await;
    assert_eq!(s, StatusCode::OK);
    // What a process killed during two uploads leaves: `processing` in the database and
    // staged files.
    let db = a.cp.db().clone();
    for id in [&fresh, &replaced] {
        assert!(db
            .set_media_status(1, id, "processing", None, 1)
            .await
            .unwrap());
        let dir = path.join("media").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".upload-00aa.part"), b"half").unwrap();
    }
    let common::App { cp, router, dir } = a;
    drop((cp, router, db));
    let a = common::app_in(dir, None, PublishMode::Auto).await;
    let tok = a.admin_token().await;
    let e = entry(&a, &tok, &fresh).await;
    assert_eq!(e["status"], "error", "{e}");
    assert_eq!(
        e["status_reason"],
        "upload interrupted (the server stopped)"
    );
    assert!(files(&a, &fresh).is_empty());
    let e = entry(&a, &tok, &replaced).await;
    assert_eq!(e["status"], "ready", "{e}");
    assert_eq!(files(&a, &replaced), vec!["source.mp4".to_string()]);
}

#[tokio::test]
async fn openapi_describes_the_upload() {
    let a = app_with_inspector(None).await;
    let (s, doc) = a.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let op = &doc["paths"]["/api/v1/entries/{id}/content"]["put"];
    for code in [
        "200", "400", "401", "403", "404", "409", "413", "422", "507",
    ] {
        assert!(op["responses"][code].is_object(), "{code}: {op}");
    }
    assert!(op["requestBody"]["content"]["application/octet-stream"].is_object());
    let entry = &doc["components"]["schemas"]["Entry"]["properties"];
    assert!(
        entry["status_reason"].is_object() && entry["media"].is_object(),
        "{entry}"
    );
    assert!(doc["components"]["schemas"]["MediaInfo"]["properties"]["tracks"].is_object());
}
