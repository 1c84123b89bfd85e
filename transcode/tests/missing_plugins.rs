//! With no GStreamer plugins at all (an empty plugin path and a private
//! registry, set before GStreamer starts in this test process), a thumbnail
//! is an error that names the missing element and its Debian package, not a
//! panic or a hang. One test in this file: the environment is per process.

use std::process::Command;

use bytes::Bytes;
use vela_transcode::{thumbnail, Stage, ThumbnailError, ThumbnailInput, ThumbnailRequest};

#[test]
fn a_missing_plugin_is_named_with_its_package() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-plugins");
    std::fs::create_dir(&empty).unwrap();
    for var in ["GST_PLUGIN_SYSTEM_PATH_1_0", "GST_PLUGIN_PATH_1_0"] {
        std::env::set_var(var, &empty);
    }
    std::env::set_var("GST_REGISTRY_1_0", dir.path().join("registry.bin"));

    // A real one-second clip, so that the input itself is fine.
    let src = dir.path().join("clip.mp4");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=160x90:rate=25", "-t", "1"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .args(["-movflags", "frag_keyframe+empty_moov+default_base_moof"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let input = vec![Bytes::from(std::fs::read(&src).unwrap())];

    let err = thumbnail(
        ThumbnailInput::new(&input),
        &ThumbnailRequest::at(0, 12_800),
    )
    .unwrap_err();
    assert_eq!(
        err,
        ThumbnailError::MissingElement {
            stage: Stage::Demux,
            factory: "qtdemux",
            package: "gstreamer1.0-plugins-good",
        }
    );
    eprintln!("{err}");
}
