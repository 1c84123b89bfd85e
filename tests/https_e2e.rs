//! End-to-end tests of HTTPS (HTTP/1.1 and HTTP/2 by ALPN) and HTTP/3 with
//! real peers: a real `vela serve` with a certificate made by the `openssl`
//! CLI, ffmpeg publishing over RTMP, curl fetching over HTTP/2 and
//! HTTP/1.1 over TLS, and aioquic (tests/h3_fetch.py) over HTTP/3; the bytes
//! must equal what plain HTTP/1.1 serves. SIGHUP reloads the certificate
//! (a bad one is refused and the old one kept). Without `[tls]`, the
//! self-signed certificate of the data directory is used and kept.
//!
//! Needs ffmpeg, curl, openssl and python3 with aioquic (scripts/setup).

mod common;

use common::*;
use std::cell::Cell;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(200);

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .expect("bind udp 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1.
fn openssl_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let (st, out, err) = run_bounded(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=vela test {name}"),
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        Duration::from_secs(30),
    );
    assert!(st.success(), "openssl req failed: {out}\n{err}");
    (cert, key)
}

/// Base64 SHA-256 of a certificate's SubjectPublicKeyInfo, by openssl.
fn openssl_spki_sha256(cert: &Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        cert.display()
    );
    let (st, out, err) = run_bounded(
        Command::new("sh").args(["-c", &script]),
        Duration::from_secs(30),
    );
    assert!(st.success(), "openssl spki: {err}");
    out.trim().to_string()
}

struct Fetched {
    ok: bool,
    version: String,
    status: u16,
    body: Vec<u8>,
    headers: String,
    err: String,
}

/// GET over TLS with curl (`proto`: `--http2` or `--http1.1`), trusting `ca`.
fn curl(dir: &Path, ca: &Path, proto: &str, port: u16, path: &str) -> Fetched {
    let out = dir.join(format!(
        "curl-{}.body",
        COUNT.with(|c| c.replace(c.get() + 1))
    ));
    let hdr = out.with_extension("headers");
    let (st, stdout, err) = run_bounded(
        Command::new("curl")
            .args(["-sS", proto, "--max-time", "20", "--cacert"])
            .arg(ca)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .arg("-D")
            .arg(&hdr)
            .arg("-o")
            .arg(&out)
            .args(["-w", "%{http_version} %{http_code}"])
            .arg(format!("https://localhost:{port}{path}")),
        Duration::from_secs(30),
    );
    let mut w = stdout.split_whitespace();
    Fetched {
        ok: st.success(),
        version: w.next().unwrap_or_default().to_string(),
        status: w.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        body: std::fs::read(&out).unwrap_or_default(),
        headers: std::fs::read_to_string(&hdr).unwrap_or_default(),
        err,
    }
}

thread_local! {
    static COUNT: Cell<u32> = const { Cell::new(0) };
}

/// GETs `paths` over HTTP/3 with aioquic; the bodies, in order.
fn h3_fetch(
    server: &Server,
    ca: &Path,
    port: u16,
    paths: &[String],
) -> Result<Vec<Vec<u8>>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/h3_fetch.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .args(["--connect", &format!("127.0.0.1:{port}"), "--cafile"])
        .arg(ca);
    let mut outs = Vec::new();
    for p in paths {
        let n = COUNT.with(|c| c.replace(c.get() + 1));
        let out = server.dir.path.join(format!("h3-{n}.body"));
        cmd.arg(format!("https://localhost:{port}{p}")).arg(&out);
        outs.push(out);
    }
    let (st, out, err) = run_bounded(&mut cmd, Duration::from_secs(60));
    if !st.success() {
        return Err(format!("h3_fetch failed ({st}): {out}\n{err}"));
    }
    for line in out.lines() {
        assert!(line.contains("\"alpn\": \"h3\""), "not h3: {line}");
    }
    Ok(outs
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_default())
        .collect())
}

fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest[rest.find('/').unwrap_or(rest.len())..].to_string()
}

/// Starts a server with `[tls]` and HTTPS and HTTP/3 on fresh ports; returns
/// it with (https port, h3 port).
fn start_tls_server(config: &str) -> (Server, u16, u16) {
    let ports = Cell::new((0u16, 0u16));
    let server = Server::start_with_args(Some(config), || {
        let (https, h3) = (free_port(), free_udp_port());
        ports.set((https, h3));
        vec![
            "--https".into(),
            format!("127.0.0.1:{https}"),
            "--h3".into(),
            format!("127.0.0.1:{h3}"),
        ]
    });
    let (https, h3) = ports.get();
    (server, https, h3)
}

fn media_playlist_url(server: &Server, master_url: &str) -> String {
    let text = server.get_ok(master_url).text();
    let uri = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap_or_else(|| server.fail(format!("no variant in the master:\n{text}")));
    resolve(master_url, uri.trim())
}

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

#[test]
fn https_http2_http3_and_certificate_reload() {
    let ffmpeg = require_tool("ffmpeg");
    require_tool_with("curl", "--version");
    require_tool_with("openssl", "version");
    let certs = TempDir::new("vela-certs");
    let (cert_a, key_a) = openssl_cert(&certs.path, "a");
    let (cert_b, key_b) = openssl_cert(&certs.path, "b");
    let (cert, key) = (certs.path.join("live.crt"), certs.path.join("live.key"));
    std::fs::copy(&cert_a, &cert).unwrap();
    std::fs::copy(&key_a, &key).unwrap();
    let config = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let (server, https, h3) = start_tls_server(&config);
    let dir = server.dir.path.clone();

    let mut spec = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, 14.0);
    spec.width = 640;
    spec.height = 360;
    let key_name = "tlsshow";
    let mut publisher =
        Publisher::spawn(&ffmpeg, &server.rtmp_url(key_name), &spec, &server.dir.path);
    let master_url = server.url(&format!("/live/{key_name}/master.m3u8"));
    server.poll("the master playlist", 150, POLL, || {
        if !publisher.is_running() {
            server.fail(format!(
                "the publisher ended early:\n{}",
                publisher.log_text()
            ));
        }
        (server.get(&master_url).status == 200).then_some(())
    });
    let media_url = media_playlist_url(&server, &master_url);
    let (segment, text) = server.poll("a segment", 150, POLL, || {
        let r = server.get(&media_url);
        let text = r.text();
        (r.status == 200)
            .then(|| segment_urls(&media_url, &text).into_iter().next())
            .flatten()
            .map(|s| (s, text))
    });
    let plain = server.get_ok(&segment);
    let seg_path = path_of(&segment);

    // Alt-Svc on TCP answers announces HTTP/3.
    let alt = plain.header("alt-svc").unwrap_or_default().to_string();
    assert_eq!(alt, format!("h3=\":{h3}\"; ma=86400"), "Alt-Svc");

    // HTTPS: HTTP/2 by ALPN, and HTTP/1.1; the same bytes as plain HTTP.
    for (proto, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let f = curl(&dir, &cert_a, proto, https, &seg_path);
        assert!(f.ok, "curl {proto}: {}\n{}", f.err, server.stderr());
        assert_eq!((f.version.as_str(), f.status), (version, 200), "{proto}");
        assert!(f.body == plain.body, "{proto}: segment bytes differ");
        assert!(f.headers.to_ascii_lowercase().contains("alt-svc: h3="));
    }
    let f = curl(&dir, &cert_a, "--http2", https, &path_of(&media_url));
    assert_eq!((f.version.as_str(), f.status), ("2", 200), "{}", f.err);
    assert!(String::from_utf8_lossy(&f.body).starts_with("#EXTM3U"));

    // The MPD's absolute URLs (UTCTiming here) take the scheme the client
    // used: a page served over HTTPS may not fetch http:// ones.
    let mpd_path = format!("/live/{key_name}/manifest.mpd");
    let utc_timing = |mpd: &[u8]| -> String {
        // The MPD has a `direct` UTCTiming (a date) and an `http-xsdate` one
        // (the URL): the value with a scheme.
        let text = String::from_utf8_lossy(mpd).to_string();
        text.split("<UTCTiming")
            .skip(1)
            .filter_map(|e| {
                let v = &e[e.find("value=\"")? + 7..];
                Some(v[..v.find('"')?].to_string())
            })
            .find(|v| v.contains("://"))
            .unwrap_or_else(|| server.fail(format!("no UTCTiming URL:\n{text}")))
    };
    let plain_mpd = server.get_ok(&server.url(&mpd_path));
    assert!(
        utc_timing(&plain_mpd.body).starts_with("http://"),
        "plain HTTP MPD"
    );
    let f = curl(&dir, &cert_a, "--http2", https, &mpd_path);
    assert_eq!(
        utc_timing(&f.body),
        format!("https://localhost:{https}/time"),
        "HTTPS MPD"
    );

    // HTTP/3 (aioquic): the segment, a blocking LL-HLS reload for the next
    // media sequence number, and the MPD.
    let scan = scan_media_playlist(&text);
    let next = scan.next_msn();
    let blocking = format!("{}?_HLS_msn={next}&_HLS_part=0", path_of(&media_url));
    let bodies = h3_fetch(
        &server,
        &cert_a,
        h3,
        &[seg_path.clone(), blocking, mpd_path.clone()],
    )
    .unwrap_or_else(|e| server.fail(e));
    assert_eq!(
        utc_timing(&bodies[2]),
        format!("https://localhost:{h3}/time"),
        "HTTP/3 MPD"
    );
    assert!(bodies[0] == plain.body, "HTTP/3 segment bytes differ");
    let reloaded = String::from_utf8_lossy(&bodies[1]).to_string();
    let after = scan_media_playlist(&reloaded);
    assert!(
        after.next_msn() >= next,
        "the blocking reload over HTTP/3 returned an older playlist:\n{reloaded}"
    );

    // After the stream ends, the playlist is stable: the same bytes over
    // HTTP/3, HTTP/2 and HTTP/1.1.
    if publisher.wait_exit(200).is_none_or(|st| !st.success()) {
        server.fail(format!("publisher failed:\n{}", publisher.log_text()));
    }
    let ended = server.poll("EXT-X-ENDLIST", 150, POLL, || {
        let t = server.get_ok(&media_url).text();
        t.contains("#EXT-X-ENDLIST").then_some(t)
    });
    let bodies =
        h3_fetch(&server, &cert_a, h3, &[path_of(&media_url)]).unwrap_or_else(|e| server.fail(e));
    assert_eq!(
        String::from_utf8_lossy(&bodies[0]),
        ended,
        "HTTP/3 playlist"
    );
    let f = curl(&dir, &cert_a, "--http2", https, &path_of(&media_url));
    assert_eq!(String::from_utf8_lossy(&f.body), ended, "HTTP/2 playlist");

    // SIGHUP: certificate B replaces A on HTTPS and HTTP/3.
    std::fs::copy(&cert_b, &cert).unwrap();
    std::fs::copy(&key_b, &key).unwrap();
    let hup = |n: usize, what: &str| {
        let st = Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        server.poll(what, 100, POLL, || {
            (server.stderr().matches(what).count() >= n).then_some(())
        });
    };
    hup(1, "SIGHUP: TLS certificate reloaded");
    let f = curl(&dir, &cert_b, "--http2", https, "/healthz");
    assert!(f.ok && f.status == 200, "new certificate: {}", f.err);
    let f = curl(&dir, &cert_a, "--http2", https, "/healthz");
    assert!(!f.ok, "the old certificate is still served");
    h3_fetch(&server, &cert_b, h3, &["/healthz".to_string()])
        .unwrap_or_else(|e| server.fail(format!("HTTP/3 after reload: {e}")));

    // A bad certificate is refused with one error line; B stays.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    hup(1, "SIGHUP: the new TLS certificate does not load");
    let f = curl(&dir, &cert_b, "--http2", https, "/healthz");
    assert!(f.ok && f.status == 200, "after a bad reload: {}", f.err);
}

#[test]
fn self_signed_certificate_without_tls_is_kept_and_its_spki_logged() {
    require_tool_with("curl", "--version");
    require_tool_with("openssl", "version");
    let (server, https, h3) = start_tls_server("");
    let cert = server.data.join("tls/self-signed.crt");
    assert!(cert.exists(), "{} missing", cert.display());
    let spki = openssl_spki_sha256(&cert);
    assert!(
        server.stderr().contains("spki_sha256") && server.stderr().contains(&spki),
        "the log names the SPKI hash {spki}:\n{}",
        server.stderr()
    );
    let f = curl(&server.dir.path, &cert, "--http2", https, "/healthz");
    assert_eq!((f.version.as_str(), f.status), ("2", 200), "{}", f.err);
    h3_fetch(&server, &cert, h3, &["/healthz".to_string()]).unwrap_or_else(|e| server.fail(e));
    // A restart on the same data directory keeps the certificate.
    let server = server.kill9_and_restart();
    assert_eq!(openssl_spki_sha256(&cert), spki);
    assert!(server.stderr().contains("kept in the data directory"));
    let f = curl(&server.dir.path, &cert, "--http2", https, "/healthz");
    assert_eq!(f.status, 200, "{}", f.err);
}
