//! DRM keys shared by the nodes of a cluster: two Vela nodes on one
//! PostgreSQL database (`scripts/pg-test-server`) sharing a SeaweedFS bucket
//! (`scripts/s3-test-server`) encrypt one VOD entry under the same keys, so a
//! player that takes the key from node A and the segments from node B decodes
//! every frame (ffmpeg, Debian's 5.1), and both nodes answer the key and
//! ClearKey licence requests for it with the same key.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// `reference` resolved against the URL `base` (absolute, host-absolute,
/// or relative with `../`).
fn resolve(base: &str, reference: &str) -> String {
    if reference.starts_with("http://") || reference.starts_with("https://") {
        return reference.to_string();
    }
    let scheme_end = base.find("://").unwrap() + 3;
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    if reference.starts_with('/') {
        return format!("{}{reference}", &base[..host_end]);
    }
    let path = &base[host_end..base.rfind('/').unwrap() + 1];
    let mut parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut rest = reference;
    loop {
        if let Some(r) = rest.strip_prefix("../") {
            parts.pop();
            rest = r;
        } else if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else {
            break;
        }
    }
    let mut out = base[..host_end].to_string();
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    out.push('/');
    out.push_str(rest);
    out
}

/// The value of `attr="..."` in an HLS tag line.
fn attr<'a>(line: &'a str, attr: &str) -> Option<&'a str> {
    let at = line.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = line[at..].find('"')? + at;
    Some(&line[at..end])
}

/// `playlist` (fetched from `key_base`) rewritten so that its keys come from
/// `key_base` and its init segment and media segments from `media_base`.
fn split_playlist(playlist: &str, key_base: &str, media_base: &str) -> (String, Vec<String>) {
    let mut keys = Vec::new();
    let mut out = String::new();
    for line in playlist.lines() {
        if line.starts_with("#EXT-X-KEY:") {
            let uri = attr(line, "URI").expect("a key URI");
            let abs = resolve(key_base, uri);
            keys.push(abs.clone());
            out.push_str(&line.replace(uri, &abs));
        } else if line.starts_with("#EXT-X-MAP:") {
            let uri = attr(line, "URI").expect("a map URI");
            out.push_str(&line.replace(uri, &resolve(media_base, uri)));
        } else if !line.is_empty() && !line.starts_with('#') {
            out.push_str(&resolve(media_base, line));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    (out, keys)
}

fn make_source(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("drm.mp4");
    let (st, _, err) = run_bounded(
        Command::new(require_tool("ffmpeg"))
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=500:sample_rate=48000"])
            .args([
                "-t", "8", "-c:v", "libx264", "-g", "50", "-pix_fmt", "yuv420p",
            ])
            .args(["-c:a", "aac"])
            .arg(&out),
        Duration::from_secs(120),
    );
    assert!(st.success(), "ffmpeg could not make the source: {err}");
    out
}

fn upload(server: &Server, token: &str, file: &Path) -> String {
    let (s, e) = api(
        server,
        "POST",
        "/api/v1/entries",
        Some(token),
        Some(json!({"type":"media","name":"encrypted on two nodes"})),
    );
    assert_eq!(s, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    let auth = format!("Bearer {token}");
    let r = http_request_with_body(
        "PUT",
        &server.url(&format!("/api/v1/entries/{id}/content")),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(&std::fs::read(file).unwrap()),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| server.fail(format!("upload: {e}")));
    assert!(r.status < 300, "upload: {}", r.text_lossy(300));
    id
}

/// The `cenc:default_KID` values of an MPD.
fn default_kids(mpd: &str) -> Vec<String> {
    mpd.match_indices("cenc:default_KID=\"")
        .map(|(i, m)| {
            let from = i + m.len();
            mpd[from..from + 36].to_string()
        })
        .collect()
}

#[test]
fn two_nodes_encrypt_one_vod_entry_under_the_same_keys() {
    let ffmpeg = require_tool("ffmpeg");
    let ffprobe = require_tool("ffprobe");
    let s3 = S3Server::start();
    let db = pg_database("drmkeys");
    let config = format!(
        "[drm]\nhls = \"aes-128\"\ndash = \"cenc\"\nmss = \"cenc\"\nrotate_every = 1\n\
         [database]\nurl = \"{db}\"\n{}",
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
    let src = make_source(&a.dir.path);
    let id = upload(&a, &token, &src);
    wait_ready(&a, &token, &id);
    b.poll(
        "the entry on node B",
        600,
        Duration::from_millis(200),
        || (b.get(&format!("/vod/{id}/v1/index.m3u8")).status == 200).then_some(()),
    );

    // The player reads A's playlist, takes the keys from A and every
    // segment from B (which B encrypts itself).
    let a_list = a.url(&format!("/vod/{id}/v1/index.m3u8"));
    let b_list = b.url(&format!("/vod/{id}/v1/index.m3u8"));
    let playlist = a.get(&format!("/vod/{id}/v1/index.m3u8")).text();
    assert!(playlist.contains("#EXT-X-KEY:METHOD=AES-128"), "{playlist}");
    let (split, keys) = split_playlist(&playlist, &a_list, &b_list);
    assert!(keys.len() >= 2, "rotation every segment: {split}");
    assert!(keys.iter().all(|k| k.starts_with(&a.url("/"))), "{keys:?}");
    assert!(split.contains(&b.url(&format!("/vod/{id}/v1/seg-0.aes.m4s"))));
    let file = a.dir.path.join("split.m3u8");
    std::fs::write(&file, &split).unwrap();
    let file = file.to_str().unwrap().to_string();
    let whitelist = ["-protocol_whitelist", "file,http,tcp,crypto"];
    let (st, out, err) = run_bounded(
        Command::new(&ffprobe)
            .args(["-v", "error", "-allowed_extensions", "ALL"])
            .args(whitelist)
            .args(["-select_streams", "v:0", "-count_frames"])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(&file),
        Duration::from_secs(300),
    );
    assert!(st.success(), "ffprobe: {err}");
    // ffprobe prints the stream once per HLS program it lists.
    assert_eq!(
        out.trim()
            .lines()
            .next()
            .map(|l| l.trim().trim_end_matches(',')),
        Some("200"),
        "every frame of 8 s at 25 fps decoded: {err}"
    );
    let (st, _, err) = run_bounded(
        Command::new(&ffmpeg)
            .args(["-v", "error", "-nostdin", "-allowed_extensions", "ALL"])
            .args(whitelist)
            .args(["-i", &file, "-f", "null", "-"]),
        Duration::from_secs(300),
    );
    assert!(st.success() && err.trim().is_empty(), "ffmpeg: {err}");

    // B, asked for the same keys, answers the same bytes.
    for k in &keys {
        let path = &k[a.url("/").len() - 1..];
        let (ka, kb) = (a.get(path), b.get(path));
        assert_eq!((ka.status, kb.status), (200, 200), "{path}");
        assert_eq!(ka.body.len(), 16);
        assert_eq!(ka.body, kb.body, "{path}");
    }

    // DASH: both MPDs name the same key ids, and each node's ClearKey
    // licence for them holds the same keys.
    let (mpd_a, mpd_b) = (
        a.get(&format!("/vod/{id}/manifest.mpd")).text(),
        b.get(&format!("/vod/{id}/manifest.mpd")).text(),
    );
    let kids = default_kids(&mpd_a);
    assert!(!kids.is_empty(), "{mpd_a}");
    assert_eq!(kids, default_kids(&mpd_b));
    let b64 = |hex: &str| -> String {
        use base64::Engine;
        let bytes: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&hex.replace('-', "")[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let request =
        json!({"kids": kids.iter().map(|k| b64(k)).collect::<Vec<_>>(), "type": "temporary"});
    let licence = |server: &Server| -> Value {
        let r = http_request_with_body(
            "POST",
            &server.url("/drm/clearkey/license"),
            &[("Content-Type", "application/json")],
            Some(request.to_string().as_bytes()),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text_lossy(300));
        serde_json::from_slice(&r.body).unwrap()
    };
    let (la, lb) = (licence(&a), licence(&b));
    assert_eq!(la["keys"].as_array().map(Vec::len), Some(kids.len()));
    assert_eq!(la["keys"], lb["keys"]);
}
