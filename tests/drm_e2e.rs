//! End-to-end encryption: a real `vela serve` with `[drm] hls = "aes-128"`,
//! `dash = "cenc"`, a real ffmpeg publishing over RTMP, and ffmpeg as the
//! independent decryptor:
//! - HLS AES-128: ffmpeg's HLS demuxer fetches the key from the playlist's
//!   key URI on Vela and decodes every frame;
//! - DASH cenc: the init segment and every segment, decrypted by ffmpeg with
//!   `-decryption_key` (the key comes from Vela's ClearKey licence route),
//!   decode to the same frames as the HLS read-back.
//!
//! The multi-fragment cenc file needs an ffmpeg newer than Debian 12's 5.1,
//! which applies the last `moof`'s encryption data to earlier fragments of a
//! file; scripts/setup installs one (the same one the HEVC tests use).

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(200);

fn frame_count(ffmpeg: &std::path::Path, args: &[&str], server: &Server) -> usize {
    let out = Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(args)
        .args(["-map", "0:v:0", "-f", "framecrc", "-"])
        .output()
        .unwrap_or_else(|e| server.fail(format!("cannot run {}: {e}", ffmpeg.display())));
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        server.fail(format!(
            "ffmpeg {args:?} failed: {}",
            tail(&String::from_utf8_lossy(&out.stderr), 2000)
        ));
    }
    text.lines().filter(|l| l.starts_with("0,")).count()
}

/// The video frames' CRCs of an encrypted file decrypted with `key` (hex).
fn framecrcs_with_key(ffmpeg: &std::path::Path, key: &str, path: &std::path::Path) -> Vec<u8> {
    Command::new(ffmpeg)
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "quiet",
            "-decryption_key",
            key,
        ])
        .arg("-i")
        .arg(path)
        .args(["-map", "0:v:0", "-f", "framecrc", "-"])
        .output()
        .unwrap()
        .stdout
}

/// The first `cenc:default_KID` of an MPD, as 32 hex digits.
fn default_kid(server: &Server, mpd: &str) -> String {
    mpd.split("cenc:default_KID=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| server.fail(format!("no default_KID:\n{mpd}")))
        .replace('-', "")
}

/// The content key behind a key id, fetched from the key route, as hex.
fn key_hex(server: &Server, kid: &str) -> String {
    let key = server.get_ok(&server.url(&format!("/drm/keys/{kid}")));
    key.body.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn aes128_hls_and_cenc_dash_decrypt_with_ffmpeg() {
    let ffmpeg = require_tool("ffmpeg");
    let server = Server::start_with_config("[drm]\nhls = \"aes-128\"\ndash = \"cenc\"\n");
    let spec = PublishSpec {
        width: 640,
        height: 360,
        ..PublishSpec::new(Some(VideoCodec::H264 { bframes: 2 }), true, 6.0)
    };
    server.publish_all(&ffmpeg, "secret", &spec);
    let video = server.url("/live/secret/v1/index.m3u8");
    server.poll("EXT-X-ENDLIST", 50, POLL, || {
        let r = server.get(&video);
        (r.status == 200 && r.text().contains("#EXT-X-ENDLIST")).then_some(())
    });
    let playlist = server.get_ok(&video).text();

    // Every format is protected: the clear files are not served.
    assert_eq!(server.get("/live/secret/v1/seg-0.m4s").status, 404);
    assert_eq!(server.get("/live/secret/a2/part-0.0.m4s").status, 404);
    assert!(playlist.contains("seg-0.aes.m4s"), "{playlist}");
    let key_line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-KEY:METHOD=AES-128,URI=\"/drm/keys/"))
        .unwrap_or_else(|| server.fail(format!("no AES-128 key tag:\n{playlist}")));
    let key_uri = key_line.split('"').nth(1).unwrap();
    let key = server.get_ok(&server.url(key_uri));
    assert_eq!(key.body.len(), 16);
    assert_eq!(key.header("cache-control"), Some("private, no-store"));
    // The key never shows up in the server's log.
    let hex: String = key.body.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!server.stderr().contains(&hex), "the key was logged");

    // HLS AES-128 through ffmpeg's own key fetch.
    let master = server.url("/live/secret/master.m3u8");
    let hls_frames = frame_count(&ffmpeg, &["-i", &master], &server);
    let expected = spec.video_frames() as usize;
    assert!(
        hls_frames + 3 >= expected && hls_frames <= expected + 1,
        "HLS AES-128: decoded {hls_frames} frames, published {expected}"
    );

    // DASH cenc: key id from the MPD, key from the licence route's store.
    let mpd = server
        .get_ok(&server.url("/live/secret/manifest.mpd"))
        .text();
    assert!(mpd.contains("seg-$Number$.cenc.m4s"), "{mpd}");
    assert!(
        mpd.contains("urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"),
        "Widevine signalling"
    );
    assert!(
        mpd.contains("urn:uuid:9a04f079-9840-4286-ab92-e65be0885f95"),
        "PlayReady signalling"
    );
    let kid = default_kid(&server, &mpd);
    let dash_key_hex = key_hex(&server, &kid);

    let mut file = server
        .get_ok(&server.url("/live/secret/v1/init-0.cenc.mp4"))
        .body;
    assert!(
        file.windows(4).any(|w| w == b"encv"),
        "protected sample entry"
    );
    let mut n = 0;
    loop {
        let r = server.get(&format!("/live/secret/v1/seg-{n}.cenc.m4s"));
        if r.status != 200 {
            break;
        }
        assert!(
            r.body.windows(4).any(|w| w == b"senc"),
            "segment {n} has sample encryption data"
        );
        file.extend_from_slice(&r.body);
        n += 1;
    }
    assert!(n >= 2, "only {n} cenc segments");
    let path = server.dir.path.join("cenc.mp4");
    std::fs::write(&path, &file).unwrap();
    let recent = hevc_ffmpeg();
    let dash_frames = frame_count(
        &recent,
        &[
            "-decryption_key",
            &dash_key_hex,
            "-i",
            path.to_str().unwrap(),
        ],
        &server,
    );
    assert_eq!(
        dash_frames, hls_frames,
        "DASH cenc and HLS AES-128 decode to the same frame count"
    );

    // A wrong key does not decode to the same pictures.
    assert_ne!(
        framecrcs_with_key(&recent, "55555555555555555555555555555555", &path),
        framecrcs_with_key(&recent, &dash_key_hex, &path),
        "a wrong key must not give the right frames"
    );
}

/// The AES-128 key id in an HLS media playlist.
fn hls_kid(playlist: &str) -> Option<String> {
    playlist
        .split("URI=\"/drm/keys/")
        .nth(1)
        .and_then(|r| r.split(['"', '?']).next())
        .map(str::to_string)
}

/// A stream published again after it ended starts a new instance whose
/// segment numbers start again: it must get new keys, since under the same
/// key the same segment numbers give the same 'cenc' IVs (and AES-128 IVs),
/// and the XOR of two ciphertexts would be the XOR of their pictures. The
/// old instance's keys leave the store; the new ones decrypt the new media.
#[test]
fn a_republished_stream_gets_new_keys() {
    let ffmpeg = require_tool("ffmpeg");
    let server = Server::start_with_config(
        "[live]\nreconnect_grace_s = 0\n\n[drm]\nhls = \"aes-128\"\ndash = \"cenc\"\n",
    );
    let spec = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), false, 3.0);
    let video = server.url("/live/again/v1/index.m3u8");
    let mut seen: Vec<(String, String)> = Vec::new();
    for _ in 0..2 {
        server.publish_all(&ffmpeg, "again", &spec);
        // This round's ended playlist: one whose key is not an earlier round's.
        let hls = server.poll("the new instance's ended playlist", 50, POLL, || {
            let r = server.get(&video);
            let text = r.text();
            let kid = hls_kid(&text)?;
            (r.status == 200
                && text.contains("#EXT-X-ENDLIST")
                && seen.iter().all(|(h, _)| *h != kid))
            .then_some(kid)
        });
        let mpd = server
            .get_ok(&server.url("/live/again/manifest.mpd"))
            .text();
        seen.push((hls, default_kid(&server, &mpd)));
    }
    let (old, new) = (&seen[0], &seen[1]);
    assert_ne!(old.1, new.1, "the DASH key id was reused");
    for gone in [&old.0, &old.1] {
        assert_eq!(
            server.get(&format!("/drm/keys/{gone}")).status,
            404,
            "the old instance's key {gone} is still served"
        );
    }
    let new_key = key_hex(&server, &new.1);
    let mut file = server
        .get_ok(&server.url("/live/again/v1/init-0.cenc.mp4"))
        .body;
    file.extend_from_slice(
        &server
            .get_ok(&server.url("/live/again/v1/seg-0.cenc.m4s"))
            .body,
    );
    let path = server.dir.path.join("again.mp4");
    std::fs::write(&path, &file).unwrap();
    let frames = frame_count(
        &hevc_ffmpeg(),
        &["-decryption_key", &new_key, "-i", path.to_str().unwrap()],
        &server,
    );
    assert!(
        frames >= 10,
        "the new key decoded {frames} frames of segment 0"
    );
}

/// The admin session and a playback token for `stream` from the control
/// plane API.
fn playback_token(server: &Server, stream: &str, expiry_s: i64) -> String {
    let secret = std::fs::read_to_string(server.data.join("admin-secret")).expect("admin-secret");
    let json = [("Content-Type", "application/json")];
    let session = http_post(
        &server.url("/api/v1/sessions"),
        &json,
        serde_json::json!({"partner_id": 1, "secret": secret.trim(), "role": "admin"})
            .to_string()
            .as_bytes(),
    )
    .unwrap_or_else(|e| server.fail(e));
    assert_eq!(session.status, 200, "{}", session.text());
    let v: serde_json::Value = serde_json::from_slice(&session.body).unwrap();
    let bearer = format!("Bearer {}", v["token"].as_str().unwrap());
    let r = http_post(
        &server.url("/api/v1/playback-tokens"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer),
        ],
        serde_json::json!({"stream": stream, "expiry_s": expiry_s})
            .to_string()
            .as_bytes(),
    )
    .unwrap_or_else(|e| server.fail(e));
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    assert!(
        v["playback"]["hls"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/live/{stream}/master.m3u8?token={token}")),
        "{v}"
    );
    token
}

/// The status and JSON error code of a refused request.
fn refusal(server: &Server, r: &Response) -> (u16, String) {
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| server.fail(format!("{}: not a JSON error: {}", r.url, r.text())));
    (
        r.status,
        v["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

/// Playback authorisation end to end: `[playback] require_token = true`,
/// tokens from the control plane API, ffmpeg playing AES-128 HLS through the
/// URLs the token opens (its key fetch included), and refusals (401 without a
/// token, 403 for another stream's or an expired one, as JSON) on manifests,
/// media, keys and the ClearKey licence.
#[test]
fn playback_tokens_guard_manifests_media_keys_and_licences() {
    use base64::Engine as _;
    let ffmpeg = require_tool("ffmpeg");
    let server = Server::start_with_config(
        "[playback]\nrequire_token = true\n[drm]\nhls = \"aes-128\"\ndash = \"cenc\"\n",
    );
    let good = playback_token(&server, "paid", 600);
    let other = playback_token(&server, "other", 600);
    let short = playback_token(&server, "paid", 1);
    let spec = PublishSpec {
        width: 640,
        height: 360,
        ..PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, 6.0)
    };
    server.publish_all(&ffmpeg, "paid", &spec);
    let video = server.url(&format!("/live/paid/t/{good}/v1/index.m3u8"));
    server.poll("EXT-X-ENDLIST", 50, POLL, || {
        let r = server.get(&video);
        (r.status == 200 && r.text().contains("#EXT-X-ENDLIST")).then_some(())
    });

    // Refusals: no token, another stream's, an expired one (1 s, minted
    // before the 6 s publish), a forged one (a signature character changed).
    let mut forged = good.clone().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for (path, want) in [
        (
            "/live/paid/master.m3u8".to_string(),
            (401, "token_required"),
        ),
        (
            "/live/paid/manifest.mpd".to_string(),
            (401, "token_required"),
        ),
        ("/live/paid/Manifest".to_string(), (401, "token_required")),
        (
            "/live/paid/v1/index.m3u8".to_string(),
            (401, "token_required"),
        ),
        (
            "/live/paid/v1/seg-0.aes.m4s".to_string(),
            (401, "token_required"),
        ),
        (
            format!("/live/paid/master.m3u8?token={other}"),
            (403, "token_invalid"),
        ),
        (
            format!("/live/paid/t/{other}/v1/seg-0.aes.m4s"),
            (403, "token_invalid"),
        ),
        (
            format!("/live/paid/master.m3u8?token={short}"),
            (403, "token_expired"),
        ),
        (
            format!("/live/paid/master.m3u8?token={forged}"),
            (403, "token_invalid"),
        ),
    ] {
        let r = server.get(&path);
        assert_eq!(refusal(&server, &r), (want.0, want.1.to_string()), "{path}");
    }

    // With the token: the URLs the master playlist writes carry it, and so
    // does the key URI.
    let master = server.url(&format!("/live/paid/master.m3u8?token={good}"));
    let text = server.get_ok(&master).text();
    assert!(text.contains(&format!("t/{good}/v1/index.m3u8")), "{text}");
    let playlist = server.get_ok(&video).text();
    let key_uri = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-KEY:METHOD=AES-128,URI=\""))
        .and_then(|l| l.split('"').next())
        .unwrap_or_else(|| server.fail(format!("no AES-128 key tag:\n{playlist}")));
    assert!(key_uri.ends_with(&format!("?token={good}")), "{key_uri}");
    let bare_key = key_uri.split('?').next().unwrap();
    assert_eq!(
        refusal(&server, &server.get(bare_key)),
        (401, "token_required".into())
    );
    assert_eq!(
        refusal(&server, &server.get(&format!("{bare_key}?token={other}"))),
        (403, "token_invalid".into())
    );
    assert_eq!(server.get_ok(&server.url(key_uri)).body.len(), 16);

    // ffmpeg plays it all: playlists, segments and the key through the token.
    let frames = frame_count(&ffmpeg, &["-i", &master], &server);
    let expected = spec.video_frames() as usize;
    assert!(
        frames + 3 >= expected && frames <= expected + 1,
        "HLS AES-128 with a token: decoded {frames} frames, published {expected}"
    );

    // The ClearKey licence: the MPD names the licence URL with the token.
    let mpd = server
        .get_ok(&server.url(&format!("/live/paid/manifest.mpd?token={good}")))
        .text();
    assert!(
        mpd.contains(&format!("<BaseURL>t/{good}/</BaseURL>")),
        "{mpd}"
    );
    assert!(
        mpd.contains(&format!("/drm/clearkey/license?token={good}")),
        "{mpd}"
    );
    let kid_hex = default_kid(&server, &mpd);
    let kid: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&kid_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let request = serde_json::json!({
        "kids": [base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&kid)],
        "type": "temporary"
    })
    .to_string();
    let license = |query: &str| {
        http_post(
            &server.url(&format!("/drm/clearkey/license{query}")),
            &[("Content-Type", "application/json")],
            request.as_bytes(),
        )
        .unwrap_or_else(|e| server.fail(e))
    };
    assert_eq!(
        refusal(&server, &license("")),
        (401, "token_required".into())
    );
    assert_eq!(
        refusal(&server, &license(&format!("?token={other}"))),
        (403, "token_invalid".into())
    );
    let ok = license(&format!("?token={good}"));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let v: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(1), "{v}");

    // Nothing about the tokens' secret or the keys in the log.
    assert!(!server.stderr().contains(&good), "a token was logged");
}

/// Smooth Streaming with `mss = "cenc"`: the manifest carries a PlayReady
/// `ProtectionHeader`, every fragment carries PIFF's sample encryption box
/// and `senc`, and ffmpeg, given the key, decrypts the video fragments (put
/// behind the DASH cenc init segment, which has the same track and key id)
/// and decodes every published frame.
#[test]
fn smooth_cenc_fragments_decrypt_with_ffmpeg() {
    let ffmpeg = require_tool("ffmpeg");
    let server =
        Server::start_with_config("[drm]\nhls = \"aes-128\"\ndash = \"cenc\"\nmss = \"cenc\"\n");
    let spec = PublishSpec {
        width: 640,
        height: 360,
        ..PublishSpec::new(Some(VideoCodec::H264 { bframes: 2 }), true, 6.0)
    };
    server.publish_all(&ffmpeg, "mss", &spec);
    server.poll("the MPD turned static", 50, POLL, || {
        let r = server.get("/live/mss/manifest.mpd");
        (r.status == 200 && r.text().contains("type=\"static\"")).then_some(())
    });
    let manifest = server.get_ok(&server.url("/live/mss/Manifest")).text();
    let doc = parse_xml(&manifest).unwrap_or_else(|e| server.fail(e));
    let header = doc
        .child("Protection")
        .and_then(|p| p.child("ProtectionHeader"))
        .unwrap_or_else(|| server.fail(format!("no ProtectionHeader:\n{manifest}")));
    assert_eq!(
        header.attr("SystemID"),
        Some("9A04F079-9840-4286-AB92-E65BE0885F95"),
        "PlayReady"
    );
    use base64::Engine as _;
    let pro = base64::engine::general_purpose::STANDARD
        .decode(header.text.trim())
        .unwrap_or_else(|e| server.fail(format!("ProtectionHeader is not base64: {e}")));
    let pro_text: String = char::decode_utf16(
        pro[10..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]])),
    )
    .map(|c| c.unwrap_or('?'))
    .collect();
    assert!(
        pro_text.contains("<WRMHEADER"),
        "a PlayReady header object: {pro_text}"
    );

    let video = doc
        .children_named("StreamIndex")
        .find(|s| s.attr("Type") == Some("video"))
        .unwrap_or_else(|| server.fail(format!("no video StreamIndex:\n{manifest}")));
    let bitrate = video
        .child("QualityLevel")
        .and_then(|q| q.attr("Bitrate"))
        .unwrap()
        .to_string();
    let template = video.attr("Url").unwrap().replace("{bitrate}", &bitrate);
    let mut t: u64 = 0;
    let mut file = server
        .get_ok(&server.url("/live/mss/v1/init-0.cenc.mp4"))
        .body;
    let mut fragments = 0;
    for c in video.children_named("c") {
        if let Some(start) = c.attr("t") {
            t = start.parse().unwrap();
        }
        let url = server.url(&format!(
            "/live/mss/{}",
            template.replace("{start time}", &t.to_string())
        ));
        let frag = server.get_ok(&url).body;
        let piff = [
            0xa2, 0x39, 0x4f, 0x52, 0x5a, 0x9b, 0x4f, 0x14, 0xa2, 0x44, 0x6c, 0x42, 0x7c, 0x64,
            0x8d, 0xf4,
        ];
        assert!(
            frag.windows(16).any(|w| w == piff),
            "{url}: no PIFF sample encryption box"
        );
        assert!(frag.windows(4).any(|w| w == b"senc"), "{url}: no senc");
        file.extend_from_slice(&frag);
        fragments += 1;
        t += c.attr("d").unwrap().parse::<u64>().unwrap();
    }
    assert!(
        fragments >= 2,
        "only {fragments} Smooth fragments:\n{manifest}"
    );
    let mpd = server.get_ok(&server.url("/live/mss/manifest.mpd")).text();
    let key_hex = key_hex(&server, &default_kid(&server, &mpd));
    let path = server.dir.path.join("smooth-cenc.mp4");
    std::fs::write(&path, &file).unwrap();
    let frames = frame_count(
        &hevc_ffmpeg(),
        &["-decryption_key", &key_hex, "-i", path.to_str().unwrap()],
        &server,
    );
    let expected = spec.video_frames() as usize;
    assert!(
        frames + 3 >= expected && frames <= expected + 1,
        "Smooth cenc: decoded {frames} frames, published {expected}"
    );
    // The fragments really are encrypted: a wrong key gives other pictures.
    assert_ne!(
        framecrcs_with_key(&hevc_ffmpeg(), "55555555555555555555555555555555", &path),
        framecrcs_with_key(&hevc_ffmpeg(), &key_hex, &path),
        "a wrong key must not give the right frames"
    );
}
