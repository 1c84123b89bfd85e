//! Batch jobs end to end: imports from a real HTTP server made in the test (serving an
//! ffmpeg-made MP4, redirects, HTML, a huge declared length, a stall, a 500 once), the
//! media information compared with ffprobe's, playback through /vod, the outbound guard,
//! and on PostgreSQL one `vela serve` and two `vela worker` processes, one of which is
//! killed with `kill -9` in the middle of its jobs.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A small HTTP/1.1 file server on loopback; every request on its own thread.
struct Origin {
    addr: SocketAddr,
    hits: Arc<HashMap<&'static str, AtomicUsize>>,
}

const PATHS: [&str; 8] = [
    "/media.mp4",
    "/redirect",
    "/loop",
    "/page",
    "/huge",
    "/stall",
    "/flaky",
    "/missing",
];

impl Origin {
    fn start(media: PathBuf) -> Origin {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let hits: Arc<HashMap<&'static str, AtomicUsize>> =
            Arc::new(PATHS.iter().map(|p| (*p, AtomicUsize::new(0))).collect());
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let media = media.clone();
                let h = h.clone();
                std::thread::spawn(move || {
                    let _ = serve_one(s, &media, &h);
                });
            }
        });
        Origin { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits[path].load(Ordering::SeqCst)
    }
}

fn serve_one(
    mut s: TcpStream,
    media: &Path,
    hits: &HashMap<&'static str, AtomicUsize>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let n = hits
        .get(path.as_str())
        .map(|c| c.fetch_add(1, Ordering::SeqCst))
        .unwrap_or(0);
    let head = |s: &mut TcpStream, status: &str, extra: &str| {
        write!(s, "HTTP/1.1 {status}\r\nConnection: close\r\n{extra}\r\n")
    };
    match path.as_str() {
        "/media.mp4" => {
            let body = std::fs::read(media)?;
            head(
                &mut s,
                "200 OK",
                &format!(
                    "Content-Type: video/mp4\r\nContent-Length: {}\r\n",
                    body.len()
                ),
            )?;
            s.write_all(&body)?;
        }
        "/redirect" => head(
            &mut s,
            "302 Found",
            "Location: /media.mp4\r\nContent-Length: 0\r\n",
        )?,
        "/loop" => head(
            &mut s,
            "302 Found",
            "Location: /loop\r\nContent-Length: 0\r\n",
        )?,
        "/page" => {
            let body = b"<!DOCTYPE html><html><body>sign in</body></html>";
            head(
                &mut s,
                "200 OK",
                &format!(
                    "Content-Type: text/html\r\nContent-Length: {}\r\n",
                    body.len()
                ),
            )?;
            s.write_all(body)?;
        }
        "/huge" => {
            head(
                &mut s,
                "200 OK",
                "Content-Type: video/mp4\r\nContent-Length: 10737418240\r\n",
            )?;
            s.write_all(&[0u8; 4096])?;
        }
        "/stall" => {
            head(
                &mut s,
                "200 OK",
                "Content-Type: video/mp4\r\nContent-Length: 1000000\r\n",
            )?;
            s.write_all(&[0u8; 1000])?;
            s.flush()?;
            // Sends nothing more; the importer's idle timeout ends it.
            std::thread::sleep(Duration::from_secs(30));
        }
        "/flaky" if n == 0 => head(&mut s, "500 Internal Server Error", "Content-Length: 0\r\n")?,
        "/flaky" => head(
            &mut s,
            "302 Found",
            "Location: /media.mp4\r\nContent-Length: 0\r\n",
        )?,
        _ => head(&mut s, "404 Not Found", "Content-Length: 0\r\n")?,
    }
    s.flush()
}

fn make_mp4(dir: &Path) -> PathBuf {
    let out = dir.join("source.mp4");
    let (st, _, err) = run_bounded(
        Command::new(require_tool("ffmpeg"))
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=480x270:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-t", "6", "-c:v", "libx264", "-g", "50", "-pix_fmt", "yuv420p",
            ])
            .args([
                "-c:a",
                "aac",
                "-b:a",
                "96k",
                "-metadata:s:a:0",
                "language=fra",
            ])
            .arg(&out),
        Duration::from_secs(120),
    );
    assert!(st.success(), "ffmpeg: {err}");
    out
}

fn create_media(server: &Server, token: &str, name: &str) -> String {
    let (s, e) = api(
        server,
        "POST",
        "/api/v1/entries",
        Some(token),
        Some(json!({"type":"media","name":name})),
    );
    assert_eq!(s, 201, "{e}");
    e["id"].as_str().unwrap().to_string()
}

fn import(server: &Server, token: &str, id: &str, url: &str) -> (u16, Value) {
    api(
        server,
        "POST",
        &format!("/api/v1/entries/{id}/import"),
        Some(token),
        Some(json!({ "url": url })),
    )
}

/// Polls a job until it has ended (bounded: 90 s).
fn wait_job(server: &Server, token: &str, job: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (s, j) = api(
            server,
            "GET",
            &format!("/api/v1/jobs/{job}"),
            Some(token),
            None,
        );
        assert_eq!(s, 200, "{j}");
        if matches!(j["status"].as_str(), Some("done" | "failed" | "cancelled")) {
            return j;
        }
        if Instant::now() > deadline {
            server.fail(format!("job {job} did not end: {j}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn entry(server: &Server, token: &str, id: &str) -> Value {
    api(
        server,
        "GET",
        &format!("/api/v1/entries/{id}"),
        Some(token),
        None,
    )
    .1
}

const CONFIG: &str = r#"
[vod]
max_upload_bytes = 100000000
[outbound]
allow_private = true
[jobs]
backoff_s = 0.2
max_attempts = 2
import_idle_timeout_s = 1
"#;

#[test]
fn import_over_http_matches_ffprobe_and_plays_through_vod() {
    let server = Server::start_with_config(CONFIG);
    let token = admin_token(&server);
    let src = make_mp4(&server.dir.path);
    let origin = Origin::start(src.clone());
    let id = create_media(&server, &token, "imported");

    // Through a redirect.
    let (s, job) = import(&server, &token, &id, &origin.url("/redirect"));
    assert_eq!(s, 202, "{job}");
    assert_eq!(job["type"], "import");
    assert_eq!(job["entry_id"], id.as_str());
    let job = wait_job(&server, &token, job["id"].as_i64().unwrap());
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["progress"], 1.0);
    let size = std::fs::metadata(&src).unwrap().len();
    assert_eq!(job["result"]["bytes"].as_u64(), Some(size), "{job}");
    let e = wait_ready(&server, &token, &id);

    // The media information, against ffprobe's reading of the same file.
    let (st, out, err) = run_bounded(
        Command::new(require_tool("ffprobe"))
            .args([
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_format",
                "-show_streams",
            ])
            .arg(&src),
        Duration::from_secs(30),
    );
    assert!(st.success(), "ffprobe: {err}");
    let probe: Value = serde_json::from_str(&out).unwrap();
    let media = &e["media"];
    assert_eq!(media["container"], "mp4", "{e}");
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (media["duration_s"].as_f64().unwrap() - duration).abs() < 0.1,
        "duration {} vs ffprobe {duration}",
        media["duration_s"]
    );
    let tracks = media["tracks"].as_array().unwrap();
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(tracks.len(), streams.len(), "{media}");
    for s in streams {
        let kind = s["codec_type"].as_str().unwrap();
        let t = tracks
            .iter()
            .find(|t| t["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} track in {media}"));
        let tag = s["codec_tag_string"].as_str().unwrap();
        assert!(
            t["codec"].as_str().unwrap().starts_with(tag),
            "{t} vs {tag}"
        );
        if kind == "video" {
            assert_eq!(t["width"], s["width"]);
            assert_eq!(t["height"], s["height"]);
            let (n, d) = s["avg_frame_rate"]
                .as_str()
                .unwrap()
                .split_once('/')
                .unwrap();
            let fps = n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap();
            assert!(
                (t["frame_rate"].as_f64().unwrap_or(0.0) - fps).abs() < 0.01,
                "{t}"
            );
        } else {
            assert_eq!(
                t["sample_rate"].as_u64(),
                s["sample_rate"].as_str().unwrap().parse().ok()
            );
            assert_eq!(t["channels"], s["channels"]);
            assert_eq!(t["language"], s["tags"]["language"]);
        }
        let br = s["bit_rate"].as_str().and_then(|b| b.parse::<f64>().ok());
        if let (Some(ours), Some(br)) = (t["bitrate"].as_f64(), br) {
            assert!(
                (ours - br).abs() / br < 0.1,
                "{kind} bitrate {ours} vs ffprobe {br}"
            );
        }
    }

    // Plays through the VOD origin: ffmpeg reads the whole HLS presentation.
    let (st, _, err) = run_bounded(
        Command::new(require_tool("ffmpeg"))
            .args(["-hide_banner", "-loglevel", "error", "-i"])
            .arg(server.url(&format!("/vod/{id}/master.m3u8")))
            .args(["-map", "0", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(st.success(), "ffmpeg could not play the import: {err}");

    // Listed under its entry; the API document has the jobs paths.
    let (s, list) = api(
        &server,
        "GET",
        &format!("/api/v1/jobs?entry_id={id}&type=import&status=done"),
        Some(&token),
        None,
    );
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["total_count"], 1, "{list}");
    let (_, doc) = api(&server, "GET", "/api/v1/openapi.json", None, None);
    for p in [
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/cancel",
        "/api/v1/jobs/{id}/retry",
        "/api/v1/entries/{id}/import",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} not in the OpenAPI document"
        );
    }

    // A 500 is retried (after the backoff), then the import succeeds.
    let id2 = create_media(&server, &token, "flaky");
    let (_, job) = import(&server, &token, &id2, &origin.url("/flaky"));
    let job = wait_job(&server, &token, job["id"].as_i64().unwrap());
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(origin.hits("/flaky"), 2);
    wait_ready(&server, &token, &id2);

    let metrics = server.get("/metrics").text();
    let sample = |name: &str, labels: &[&str]| -> Option<f64> {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .find(|l| labels.iter().all(|x| l.contains(x)))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let all = metrics
        .lines()
        .filter(|l| l.contains("vela_job"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        sample(
            "vela_job_attempts_total",
            &["outcome=\"done\"", "type=\"import\""]
        ),
        Some(2.0),
        "{all}"
    );
    assert_eq!(
        sample(
            "vela_job_attempts_total",
            &["outcome=\"retried\"", "type=\"import\""]
        ),
        Some(1.0),
        "{all}"
    );
    assert_eq!(
        sample("vela_job_duration_seconds_count", &["type=\"import\""]),
        Some(3.0),
        "{all}"
    );
    assert_eq!(
        sample("vela_job_start_delay_seconds_count", &["type=\"import\""]),
        Some(2.0),
        "{all}"
    );
}

#[test]
fn bad_imports_fail_with_a_clear_error_and_nothing_runs_forever() {
    let server = Server::start_with_config(CONFIG);
    let token = admin_token(&server);
    let origin = Origin::start(server.dir.path.join("none.mp4"));
    let cases = [
        ("/page", "HTML"),
        ("/loop", "too many redirects"),
        ("/huge", "larger than the maximum"),
        ("/missing", "404"),
        ("/stall", "interrupted"),
    ];
    let mut jobs = Vec::new();
    for (path, _) in cases {
        let id = create_media(&server, &token, path);
        let (s, job) = import(&server, &token, &id, &origin.url(path));
        assert_eq!(s, 202, "{job}");
        jobs.push((id, job["id"].as_i64().unwrap()));
    }
    for ((path, says), (id, job)) in cases.iter().zip(&jobs) {
        let j = wait_job(&server, &token, *job);
        assert_eq!(j["status"], "failed", "{path}: {j}");
        let error = j["error"].as_str().unwrap();
        assert!(
            error.contains(says),
            "{path}: {error:?} should say {says:?}"
        );
        // Only transient faults are tried again.
        let attempts = if *path == "/stall" { 2 } else { 1 };
        assert_eq!(j["attempts"], attempts, "{path}: {j}");
        let e = entry(&server, &token, id);
        assert_eq!(e["status"], "error", "{path}: {e}");
        assert!(e["status_reason"].as_str().unwrap().contains(says), "{e}");
    }
    assert_eq!(
        origin.hits("/loop"),
        6,
        "one request per hop, five redirects"
    );

    // A second import of a failed entry, then cancel and retry.
    let (id, _) = &jobs[4];
    let (s, job) = import(&server, &token, id, &origin.url("/stall"));
    assert_eq!(s, 202);
    let jid = job["id"].as_i64().unwrap();
    let (s, again) = import(&server, &token, id, &origin.url("/stall"));
    assert_eq!(s, 409, "one import of an entry at a time: {again}");
    let (s, c) = api(
        &server,
        "POST",
        &format!("/api/v1/jobs/{jid}/cancel"),
        Some(&token),
        None,
    );
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["status"], "cancelled");
    let (s, _) = api(
        &server,
        "POST",
        &format!("/api/v1/jobs/{jid}/cancel"),
        Some(&token),
        None,
    );
    assert_eq!(s, 409);
    let (s, r) = api(
        &server,
        "POST",
        &format!("/api/v1/jobs/{jid}/retry"),
        Some(&token),
        None,
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "pending");
    assert_eq!(wait_job(&server, &token, jid)["status"], "failed");

    // Other partners see none of it.
    let (s, list) = api(
        &server,
        "GET",
        "/api/v1/jobs?status=failed",
        Some(&token),
        None,
    );
    assert_eq!(s, 200);
    assert!(list["total_count"].as_i64().unwrap() >= 5, "{list}");
    let (s, p) = api(
        &server,
        "POST",
        "/api/v1/partners",
        Some(&token),
        Some(json!({"name":"other"})),
    );
    assert_eq!(s, 201, "{p}");
    let (_, t) = api(
        &server,
        "POST",
        "/api/v1/sessions",
        None,
        Some(json!({"partner_id":p["id"],"secret":p["secret"],"role":"admin","expiry_s":600})),
    );
    let other = t["token"].as_str().unwrap();
    let (_, list) = api(&server, "GET", "/api/v1/jobs", Some(other), None);
    assert_eq!(list["total_count"], 0, "{list}");
    let (s, _) = api(
        &server,
        "GET",
        &format!("/api/v1/jobs/{jid}"),
        Some(other),
        None,
    );
    assert_eq!(s, 404);
}

#[test]
fn imports_of_private_addresses_are_refused_by_default() {
    let server = Server::start();
    let token = admin_token(&server);
    let origin = Origin::start(server.dir.path.join("none.mp4"));
    let id = create_media(&server, &token, "ssrf");
    // An IP literal is refused at once.
    let (s, e) = import(&server, &token, &id, &origin.url("/media.mp4"));
    assert_eq!(s, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{e}"
    );
    // A name is resolved by the job, and its loopback address refused there.
    let url = format!("http://localhost:{}/media.mp4", origin.addr.port());
    let (s, job) = import(&server, &token, &id, &url);
    assert_eq!(s, 202, "{job}");
    let j = wait_job(&server, &token, job["id"].as_i64().unwrap());
    assert_eq!(j["status"], "failed", "{j}");
    assert!(j["error"].as_str().unwrap().contains("refused"), "{j}");
    assert_eq!(
        origin.hits("/media.mp4"),
        0,
        "no request reached the private server"
    );
    for bad in ["file:///etc/passwd", "ftp://example.com/a.mp4", "not a url"] {
        let (s, e) = import(&server, &token, &id, bad);
        assert_eq!(s, 422, "{bad}: {e}");
    }
}

/// `vela worker` against a PostgreSQL database; killed on drop.
struct Worker {
    child: Child,
    _dir: TempDir,
}

impl Worker {
    fn start(db: &str, config: &str) -> Worker {
        let dir = TempDir::new("vela-worker");
        std::fs::write(dir.path.join("vela.toml"), config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vela"))
            .arg("worker")
            .arg("--data")
            .arg(dir.path.join("data"))
            .arg("--database")
            .arg(db)
            .arg("--config")
            .arg(dir.path.join("vela.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path.join("worker.stderr.log")).unwrap())
            .spawn()
            .expect("vela worker");
        Worker { child, _dir: dir }
    }

    fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[test]
fn postgres_workers_survive_a_kill9_and_every_job_ends_done_once() {
    let db = pg_database("jobs");
    let config = "[jobs]\nlease_s = 2\nconcurrency = { noop = 2 }\n";
    let server = Server::start_with_args(Some(config), || vec!["--database".into(), db.clone()]);
    let token = admin_token(&server);
    let mut a = Worker::start(&db, config);
    let _b = Worker::start(&db, config);
    let a_pid = a.child.id();
    let mut ids = Vec::new();
    for _ in 0..40 {
        let (s, j) = api(
            &server,
            "POST",
            "/api/v1/jobs",
            Some(&token),
            Some(json!({"type":"noop","payload":{"sleep_ms":400}})),
        );
        assert_eq!(s, 202, "{j}");
        ids.push(j["id"].as_i64().unwrap());
    }
    // Wait until worker A is in the middle of jobs, then kill it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed: Vec<i64> = loop {
        let (_, list) = api(
            &server,
            "GET",
            "/api/v1/jobs?status=running&page_size=100",
            Some(&token),
            None,
        );
        let mine: Vec<i64> = list["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| {
                j["worker"]
                    .as_str()
                    .is_some_and(|w| w.contains(&format!("-{a_pid}-")))
            })
            .map(|j| j["id"].as_i64().unwrap())
            .collect();
        if !mine.is_empty() {
            a.kill9();
            break mine;
        }
        assert!(
            Instant::now() < deadline,
            "worker A never ran a job: {list}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, list) = api(
            &server,
            "GET",
            "/api/v1/jobs?type=noop&status=done&page_size=100",
            Some(&token),
            None,
        );
        if list["total_count"] == 40 {
            break;
        }
        assert!(Instant::now() < deadline, "not all jobs done: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut redone = 0;
    for id in ids {
        let (_, j) = api(
            &server,
            "GET",
            &format!("/api/v1/jobs/{id}"),
            Some(&token),
            None,
        );
        assert_eq!(j["status"], "done", "{j}");
        // The recorded result is the final attempt's: earlier ones could not complete.
        assert_eq!(j["result"]["attempt"], j["attempts"], "{j}");
        if killed.contains(&id) && j["attempts"].as_i64().unwrap() >= 2 {
            redone += 1;
            assert!(
                !j["worker"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("-{a_pid}-")),
                "{j}"
            );
        }
    }
    // (A job of A's could still end in the instant between the listing and the kill.)
    assert!(
        redone >= 1,
        "no job of the killed worker was run again: {killed:?}"
    );
}

/// What a receiver got: each POST's headers (lower-case names) and body.
type Received = Vec<(HashMap<String, String>, String)>;

/// A webhook receiver: records (headers, body) of each POST; answers 500 to the
/// first one, 200 to the rest.
struct Receiver {
    addr: SocketAddr,
    got: Arc<std::sync::Mutex<Received>>,
}

impl Receiver {
    fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let got: Arc<std::sync::Mutex<Received>> = Default::default();
        let g = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let g = g.clone();
                std::thread::spawn(move || {
                    let _ = receive(s, &g);
                });
            }
        });
        Receiver { addr, got }
    }

    fn bodies(&self) -> Received {
        self.got.lock().unwrap().clone()
    }
}

fn receive(mut s: TcpStream, got: &std::sync::Mutex<Received>) -> std::io::Result<()> {
    use std::io::Read;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let n: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    let first = {
        let mut g = got.lock().unwrap();
        g.push((headers, String::from_utf8_lossy(&body).into_owned()));
        g.len() == 1
    };
    let status = if first {
        "500 Internal Server Error"
    } else {
        "204 No Content"
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    s.flush()
}

#[test]
fn webhooks_are_signed_delivered_once_and_again_after_a_500() {
    use hmac::{Hmac, Mac};
    let server = Server::start_with_config(CONFIG);
    let token = admin_token(&server);
    let src = make_mp4(&server.dir.path);
    let origin = Origin::start(src);
    let rx = Receiver::start();
    let (s, hook) = api(
        &server,
        "POST",
        "/api/v1/webhooks",
        Some(&token),
        Some(
            json!({"url": format!("http://{}/hook", rx.addr), "events": ["entry.created", "entry.ready", "entry.deleted"]}),
        ),
    );
    assert_eq!(s, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    let hook_id = hook["id"].as_i64().unwrap();
    let (s, bad) = api(
        &server,
        "POST",
        "/api/v1/webhooks",
        Some(&token),
        Some(json!({"url": "http://x/", "events": ["nope"]})),
    );
    assert_eq!(s, 422, "{bad}");

    let id = create_media(&server, &token, "notified");
    let (s, job) = import(&server, &token, &id, &origin.url("/media.mp4"));
    assert_eq!(s, 202, "{job}");
    wait_ready(&server, &token, &id);
    let (s, _) = api(
        &server,
        "DELETE",
        &format!("/api/v1/entries/{id}"),
        Some(&token),
        None,
    );
    assert_eq!(s, 204);

    // created (500, then again), ready, deleted: four deliveries.
    let deadline = Instant::now() + Duration::from_secs(60);
    while rx.bodies().len() < 4 {
        assert!(Instant::now() < deadline, "deliveries: {:?}", rx.bodies());
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = rx.bodies();
    let mut events: Vec<(String, String)> = Vec::new();
    for (h, body) in &got {
        let ts = &h["x-vela-timestamp"];
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        m.update(format!("{ts}.{body}").as_bytes());
        let want: String = m
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            h["x-vela-signature"],
            format!("v1={want}"),
            "signature of {body}"
        );
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["entry_id"], id.as_str());
        assert_eq!(h["x-vela-event"], v["event"].as_str().unwrap());
        events.push((
            v["event"].as_str().unwrap().to_string(),
            v["id"].as_str().unwrap().to_string(),
        ));
    }
    // The 500 answer was the first delivery; its retry carries the same event id.
    let created: Vec<_> = events.iter().filter(|e| e.0 == "entry.created").collect();
    assert_eq!(created.len(), 2, "{events:?}");
    assert_eq!(created[0].1, created[1].1);
    assert_eq!(
        events.iter().filter(|e| e.0 == "entry.ready").count(),
        1,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| e.0 == "entry.deleted").count(),
        1,
        "{events:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.bodies().len(), 4, "nothing delivered twice after a 2xx");

    let (s, log) = api(
        &server,
        "GET",
        &format!("/api/v1/webhooks/{hook_id}/deliveries"),
        Some(&token),
        None,
    );
    assert_eq!(s, 200, "{log}");
    let log = log["objects"].as_array().unwrap();
    assert_eq!(log.len(), 4, "{log:?}");
    assert_eq!(log.iter().filter(|d| d["status_code"] == 500).count(), 1);
    assert_eq!(log.iter().filter(|d| d["status_code"] == 204).count(), 3);
    let (_, list) = api(&server, "GET", "/api/v1/webhooks", Some(&token), None);
    assert!(
        list["objects"][0].get("secret").is_none(),
        "the secret is shown once: {list}"
    );
}
