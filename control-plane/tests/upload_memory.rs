//! A 200 MB upload streams to disk: the body is produced lazily, and while it is being
//! produced the staged file on disk keeps up with it (the server holds at most a few
//! chunks), and the process's peak memory stays far below the upload's size. Alone in
//! its test binary so that the peak-memory figure is this test's.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use common::app_media;
use serde_json::json;
use vela_control_plane::{MediaConfig, PublishMode};

const TOTAL: u64 = 200 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn pattern(offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        let p = offset + i as u64;
        *b = (p ^ (p >> 13) ^ (p >> 23)) as u8;
    }
}

/// Peak resident memory of this process (kB), from /proc.
fn peak_rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Size of the staged upload in `dir` (0 before it exists).
fn staged_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|f| f.file_name().to_string_lossy().ends_with(".part"))
                .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_is_streamed_not_buffered() {
    let a = app_media(
        tempfile::tempdir().unwrap(),
        None,
        PublishMode::Auto,
        MediaConfig::default(),
    )
    .await;
    let tok = a.admin_token().await;
    let (s, v) = a
        .call(
            "POST",
            "/api/v1/entries",
            Some(&tok),
            Some(json!({"type":"media","name":"big"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = v["id"].as_str().unwrap().to_string();
    let dir = a.dir.path().join("media").join(&id);

    let rss_before = peak_rss_kb();
    // (bytes produced so far, bytes of the staged file then), every 16 MiB.
    let seen: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let (seen2, dir2) = (seen.clone(), dir.clone());
    let body = futures_util::stream::unfold(0u64, move |offset| {
        let (seen, dir) = (seen2.clone(), dir2.clone());
        async move {
            if offset >= TOTAL {
                return None;
            }
            if offset > 0 && offset % (16 * 1024 * 1024) == 0 {
                seen.lock().unwrap().push((offset, staged_size(&dir)));
            }
            let mut buf = vec![0u8; CHUNK];
            pattern(offset, &mut buf);
            Some((
                Ok::<_, std::io::Error>(Bytes::from(buf)),
                offset + CHUNK as u64,
            ))
        }
    });
    let req = Request::builder()
        .method("PUT")
        .uri(format!("/api/v1/entries/{id}/content"))
        .header("authorization", format!("Bearer {tok}"))
        .body(Body::from_stream(body))
        .unwrap();
    let (s, v) = a.call_raw(req).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ready");

    // While the body was produced, the file on disk was at most a few chunks behind.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 12, "{seen:?}");
    for (produced, on_disk) in &seen {
        assert!(
            on_disk + 8 * CHUNK as u64 >= *produced,
            "staged {on_disk} of {produced} produced: the body is being buffered"
        );
    }
    let grown_mb = (peak_rss_kb().saturating_sub(rss_before)) / 1024;
    assert!(grown_mb < 64, "peak memory grew by {grown_mb} MB");

    // The stored file is the body, byte for byte.
    let path = a.cp.media_source(&id).await.unwrap().unwrap().path;
    assert_eq!(std::fs::metadata(&path).unwrap().len(), TOTAL);
    use std::io::Read;
    let mut f = std::fs::File::open(&path).unwrap();
    let (mut got, mut want) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    while offset < TOTAL {
        f.read_exact(&mut got).unwrap();
        pattern(offset, &mut want);
        assert!(got == want, "content differs in the MiB at {offset}");
        offset += got.len() as u64;
    }
}
