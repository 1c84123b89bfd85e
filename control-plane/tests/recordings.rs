//! Recording entries on the control plane: begin (live entries with `recording`, open
//! streams only when asked), complete (the file becomes content, inspected, `ready`,
//! linked both ways, stored bytes counted), fail, retention and `GET /api/v1/usage`;
//! on SQLite and on a real PostgreSQL.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::{app_media, fresh_pg_database, App};
use serde_json::json;
use vela_control_plane::{ContentInspector, MediaConfig, MediaInfo, PublishMode};

/// Accepts files that start with an `ftyp` box, as a 12 s recording.
struct FtypOnly;

impl ContentInspector for FtypOnly {
    fn inspect(&self, path: &Path) -> Result<MediaInfo, String> {
        let head = std::fs::read(path).map_err(|e| e.to_string())?;
        if head.get(4..8) != Some(b"ftyp") {
            return Err("not an MP4".into());
        }
        Ok(MediaInfo {
            duration_s: 12.0,
            container: "mp4".into(),
            tracks: Vec::new(),
        })
    }
}

async fn app(database: Option<String>) -> App {
    app_media(
        tempfile::tempdir().unwrap(),
        database,
        PublishMode::Keys,
        MediaConfig {
            inspector: Some(Arc::new(FtypOnly)),
            ..Default::default()
        },
    )
    .await
}

fn mp4_file(dir: &Path, name: &str, len: usize) -> std::path::PathBuf {
    let mut b = vec![0u8, 0, 0, 16];
    b.extend_from_slice(b"ftypisom\0\0\0\0");
    b.resize(len, 7);
    let p = dir.join(name);
    std::fs::write(&p, b).unwrap();
    p
}

async fn lifecycle(app: App) {
    let tok = app.admin_token().await;
    let (s, live) = app
        .call(
            "POST",
            "/api/v1/entries",
            Some(&tok),
            Some(
                json!({"type":"live","name":"Cup","tags":["final"],"recording":true,
                "drm":{"hls":"aes-128","dash":"cenc","mss":"none"}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{live}");
    let live_id = live["id"].as_str().unwrap();
    let (_, quiet) = app
        .call(
            "POST",
            "/api/v1/entries",
            Some(&tok),
            Some(json!({"type":"live","name":"No recording"})),
        )
        .await;

    // Only a recording live entry records; open streams only with a partner.
    let cp = &app.cp;
    assert_eq!(
        cp.begin_recording(quiet["id"].as_str().unwrap(), 1, None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        cp.begin_recording("openstream", 1, None).await.unwrap(),
        None
    );
    let id = cp.begin_recording(live_id, 1, None).await.unwrap().unwrap();

    let (_, e) = app
        .call("GET", &format!("/api/v1/entries/{id}"), Some(&tok), None)
        .await;
    assert_eq!(e["status"], "pending", "{e}");
    assert_eq!(e["status_reason"], "recording", "{e}");
    assert_eq!(e["source_entry_id"], live_id, "{e}");
    assert_eq!(e["tags"], json!(["final"]), "{e}");
    assert_eq!(e["drm"]["dash"], "cenc", "the live entry's DRM policy: {e}");
    let (_, l) = app
        .call(
            "GET",
            &format!("/api/v1/entries/{live_id}"),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(l["recorded_entry_id"], id.as_str(), "{l}");

    // Complete: the file becomes the content, with a retention.
    let work = tempfile::tempdir().unwrap();
    let file = mp4_file(work.path(), "ready.mp4", 5000);
    cp.complete_recording(&id, &file, Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(!file.exists(), "the file was moved into the store");
    let (_, e) = app
        .call("GET", &format!("/api/v1/entries/{id}"), Some(&tok), None)
        .await;
    assert_eq!(e["status"], "ready", "{e}");
    assert_eq!(e["stored_bytes"], 5000, "{e}");
    assert_eq!(e["duration_s"], 12.0, "{e}");
    let expires = e["expires_at"].as_i64().unwrap();
    assert!(expires > 0, "{e}");
    let source = cp.media_source(&id).await.unwrap().unwrap();
    assert_eq!(std::fs::metadata(&source.path).unwrap().len(), 5000);

    // A second piece that holds nothing playable fails, with its reason.
    let id2 = cp.begin_recording(live_id, 2, None).await.unwrap().unwrap();
    let (_, e2) = app
        .call("GET", &format!("/api/v1/entries/{id2}"), Some(&tok), None)
        .await;
    assert!(e2["name"].as_str().unwrap().contains(", part 2"), "{e2}");
    let junk = work.path().join("junk.mp4");
    std::fs::write(&junk, b"not an mp4 at all").unwrap();
    assert!(cp.complete_recording(&id2, &junk, None).await.is_err());
    let (_, e2) = app
        .call("GET", &format!("/api/v1/entries/{id2}"), Some(&tok), None)
        .await;
    assert_eq!(e2["status"], "error", "{e2}");

    // Open-mode streams for a configured partner.
    let open = cp
        .begin_recording("openstream", 1, Some(1))
        .await
        .unwrap()
        .unwrap();
    let (_, o) = app
        .call("GET", &format!("/api/v1/entries/{open}"), Some(&tok), None)
        .await;
    assert_eq!(o["metadata"]["stream"], "openstream", "{o}");

    // Usage counts stored content.
    let (s, u) = app.call("GET", "/api/v1/usage", Some(&tok), None).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u[0]["partner_id"], 1, "{u}");
    assert_eq!(u[0]["stored_bytes"], 5000, "{u}");
    assert_eq!(u[0]["entries"], 1, "{u}");

    // Retention: nothing expired yet; then an expiry in the past deletes the entry
    // and its content.
    assert_eq!(cp.expire_once().await.unwrap(), 0);
    let (s, _) = app
        .call(
            "PATCH",
            &format!("/api/v1/entries/{id}"),
            Some(&tok),
            Some(json!({"expires_at": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, bad) = app
        .call(
            "PATCH",
            &format!("/api/v1/entries/{id}"),
            Some(&tok),
            Some(json!({"expires_at": -5})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert_eq!(cp.expire_once().await.unwrap(), 1);
    let (s, _) = app
        .call("GET", &format!("/api/v1/entries/{id}"), Some(&tok), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(!source.path.exists(), "expired content is deleted");
    let (_, u) = app.call("GET", "/api/v1/usage", Some(&tok), None).await;
    assert_eq!(u.as_array().map_or(0, Vec::len), 0, "{u}");

    // A recording whose entry was deleted meanwhile: the file goes too.
    let id3 = cp.begin_recording(live_id, 3, None).await.unwrap().unwrap();
    let (s, _) = app
        .call(
            "DELETE",
            &format!("/api/v1/entries/{id3}"),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let f3 = mp4_file(work.path(), "three.mp4", 100);
    assert!(cp.complete_recording(&id3, &f3, None).await.is_err());
    assert!(!f3.exists());
}

#[tokio::test]
async fn recording_lifecycle_on_sqlite() {
    lifecycle(app(None).await).await;
}

#[tokio::test]
async fn recording_lifecycle_on_postgres() {
    lifecycle(app(Some(fresh_pg_database().await)).await).await;
}
