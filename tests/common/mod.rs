//! Shared harness for Vela's end-to-end tests: a real `vela serve` process on
//! free loopback ports, a small blocking HTTP/1.1 client, ffmpeg publishers and
//! helpers around the independent parsers (m3u8-rs, mp4-atom `strict`,
//! quick-xml).
//!
//! Rules: nothing here asserts a wall-clock duration; everything that waits
//! polls with a bounded number of tries and fails with a message that says
//! what it waited for and shows the server's log.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Temp dirs and ports
// ---------------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under cargo's per-target temp dir. It is removed on drop
/// unless the test is failing (then its path is printed, to look at the logs).
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("e2e-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(kept test directory {})", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

/// A running `vela serve`, killed (with its process group) on drop.
pub struct Server {
    child: Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub dir: TempDir,
    pub data: PathBuf,
    stderr_path: PathBuf,
    /// Flags added to `vela serve` (kept across a restart).
    args: Vec<String>,
}

impl Server {
    /// Starts a server on a fresh data directory with embedded defaults.
    pub fn start() -> Server {
        Self::start_with(None)
    }

    /// Starts a server with a TOML configuration file.
    pub fn start_with_config(toml: &str) -> Server {
        Self::start_with(Some(toml))
    }

    /// Starts a server with an optional configuration file and flags made
    /// by `args` (called again on each retry, so it can pick fresh ports);
    /// `--h3 off` is passed unless they contain `--h3`.
    pub fn start_with_args(config: Option<&str>, args: impl Fn() -> Vec<String>) -> Server {
        Self::start_inner(config, &args)
    }

    fn start_with(config: Option<&str>) -> Server {
        Self::start_inner(config, &Vec::new)
    }

    fn start_inner(config: Option<&str>, args: &dyn Fn() -> Vec<String>) -> Server {
        let mut last_err = String::new();
        // A port found free may be taken by a parallel test before vela binds
        // it: vela then exits (code 2); try again with new ports.
        for _attempt in 0..3 {
            match Self::try_start(config, args()) {
                Ok(s) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("vela did not start:\n{last_err}");
    }

    fn try_start(config: Option<&str>, args: Vec<String>) -> Result<Server, String> {
        let dir = TempDir::new("vela");
        let data = dir.path.join("data");
        let rtmp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        if let Some(toml) = config {
            std::fs::write(dir.path.join("vela.toml"), toml).unwrap();
        }
        Self::spawn(dir, data, rtmp, http, config.is_some(), args)
    }

    /// `kill -9` of the server, then a new `vela serve` on the same data directory,
    /// ports and configuration (the previous log is kept as `vela.stderr.N.log`).
    pub fn kill9_and_restart(self) -> Server {
        let pid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let mut me = self;
        let _ = me.child.wait();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let _ = std::fs::rename(
            &me.stderr_path,
            me.dir.path.join(format!("vela.stderr.{n}.log")),
        );
        let dir = std::mem::replace(&mut me.dir, TempDir::new("vela-moved"));
        let (data, rtmp, http) = (me.data.clone(), me.rtmp, me.http);
        let args = std::mem::take(&mut me.args);
        let config = dir.path.join("vela.toml").exists();
        drop(me);
        // The ports were ours a moment ago; a restart normally gets them back.
        let mut last = String::new();
        let mut dir = Some(dir);
        for _ in 0..50 {
            match Self::spawn_keep(
                dir.take().unwrap(),
                data.clone(),
                rtmp,
                http,
                config,
                args.clone(),
            ) {
                Ok(s) => return s,
                Err((d, e)) => {
                    last = e;
                    dir = Some(d);
                    sleep(Duration::from_millis(200));
                }
            }
        }
        panic!("vela did not restart:\n{last}");
    }

    /// `kill -9` of the server, which stays down (its directory is kept
    /// until the returned value is dropped).
    pub fn kill9(mut self) -> TempDir {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let _ = std::fs::rename(
            &self.stderr_path,
            self.dir.path.join(format!("vela.stderr.{n}.log")),
        );
        std::mem::replace(&mut self.dir, TempDir::new("vela-moved"))
    }

    fn spawn(
        dir: TempDir,
        data: PathBuf,
        rtmp: SocketAddr,
        http: SocketAddr,
        config: bool,
        args: Vec<String>,
    ) -> Result<Server, String> {
        Self::spawn_keep(dir, data, rtmp, http, config, args).map_err(|(_, e)| e)
    }

    fn spawn_keep(
        dir: TempDir,
        data: PathBuf,
        rtmp: SocketAddr,
        http: SocketAddr,
        config: bool,
        args: Vec<String>,
    ) -> Result<Server, (TempDir, String)> {
        let stderr_path = dir.path.join("vela.stderr.log");
        let stderr = File::create(&stderr_path).unwrap();
        let stdout = File::create(dir.path.join("vela.stdout.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vela"));
        cmd.arg("serve")
            .arg("--data")
            .arg(&data)
            .arg("--rtmp")
            .arg(rtmp.to_string())
            .arg("--http")
            .arg(http.to_string())
            .args(&args);
        if !args.iter().any(|a| a == "--h3") {
            cmd.arg("--h3").arg("off");
        }
        // WebRTC on a loopback port of the system's choosing: parallel servers never collide.
        if !args.iter().any(|a| a == "--webrtc") {
            cmd.arg("--webrtc").arg("127.0.0.1:0");
        }
        if config {
            cmd.arg("--config").arg(dir.path.join("vela.toml"));
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", env!("CARGO_BIN_EXE_vela")));
        let mut server = Server {
            child,
            rtmp,
            http,
            dir,
            data,
            stderr_path,
            args,
        };

        // Wait for /healthz: up to 300 × 100 ms.
        for _ in 0..300 {
            if let Ok(Some(status)) = server.child.try_wait() {
                let msg = format!(
                    "vela exited with {status} before answering /healthz\n--- vela stderr ---\n{}",
                    server.stderr()
                );
                let dir = std::mem::replace(&mut server.dir, TempDir::new("vela-failed"));
                return Err((dir, msg));
            }
            if let Ok(r) = http_get(&server.url("/healthz")) {
                if r.status == 200 {
                    return Ok(server);
                }
            }
            sleep(Duration::from_millis(100));
        }
        let msg = format!(
            "vela did not answer 200 on GET /healthz after 300 tries (http {http})\n--- vela stderr ---\n{}",
            server.stderr()
        );
        let dir = std::mem::replace(&mut server.dir, TempDir::new("vela-failed"));
        Err((dir, msg))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.rtmp)
    }

    /// Publishes `spec` to stream `key` with ffmpeg and waits (bounded:
    /// 50 s) for the publisher to finish, failing with its log unless it
    /// exits successfully.
    pub fn publish_all(&self, ffmpeg: &Path, key: &str, spec: &PublishSpec) {
        let mut publisher = Publisher::spawn(ffmpeg, &self.rtmp_url(key), spec, &self.dir.path);
        if publisher.wait_exit(200).is_none_or(|st| !st.success()) {
            self.fail(format!(
                "publisher to {key} failed:\n{}",
                publisher.log_text()
            ));
        }
    }

    /// The server's log so far (the tail, if it is long).
    pub fn stderr(&self) -> String {
        let s = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        tail(&s, 12_000)
    }

    /// GET a path, panicking (with the log) on a transport error.
    pub fn get(&self, path: &str) -> Response {
        let url = if path.starts_with("http://") {
            path.to_string()
        } else {
            self.url(path)
        };
        http_get(&url).unwrap_or_else(|e| {
            panic!(
                "GET {url} failed: {e}\n--- vela stderr ---\n{}",
                self.stderr()
            )
        })
    }

    /// GET, and require 200.
    pub fn get_ok(&self, url: &str) -> Response {
        let r = self.get(url);
        if r.status != 200 {
            panic!(
                "GET {url}: expected 200, got {} (body: {})\n--- vela stderr ---\n{}",
                r.status,
                r.text_lossy(300),
                self.stderr()
            );
        }
        r
    }

    /// Panics with a message and the server's log.
    pub fn fail(&self, msg: impl std::fmt::Display) -> ! {
        panic!("{msg}\n--- vela stderr ---\n{}", self.stderr())
    }

    /// Polls `f` up to `tries` times, `every` apart, until it returns Some.
    pub fn poll<T>(
        &self,
        what: &str,
        tries: usize,
        every: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        for _ in 0..tries {
            if let Some(v) = f() {
                return v;
            }
            sleep(every);
        }
        self.fail(format!(
            "gave up waiting for {what} after {tries} tries {every:?} apart"
        ))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's process id (for /proc readings).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SIGTERM the process group, give it a moment, then SIGKILL.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- vela stderr (at drop) ---\n{}", self.stderr());
        }
    }
}

pub fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[…]{}", &s[start..])
}

// ---------------------------------------------------------------------------
// The control-plane API
// ---------------------------------------------------------------------------

/// A JSON API call: (status, body as JSON or `Null`).
pub fn api(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let body = body.map(|b| b.to_string());
    let r = http_request_with_body(
        method,
        &server.url(path),
        &headers,
        body.as_deref().map(str::as_bytes),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| server.fail(format!("{method} {path}: {e}")));
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

/// An admin session of the admin partner (its secret is in the data directory).
pub fn admin_token(server: &Server) -> String {
    let secret = std::fs::read_to_string(server.data.join("admin-secret")).expect("admin-secret");
    let (s, v) = api(
        server,
        "POST",
        "/api/v1/sessions",
        None,
        Some(json!({"partner_id":1,"secret":secret.trim(),"role":"admin","expiry_s":3600})),
    );
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// Polls a media entry until it is `ready` (bounded: 60 s), failing on `error`.
pub fn wait_ready(server: &Server, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, e) = api(
            server,
            "GET",
            &format!("/api/v1/entries/{id}"),
            Some(token),
            None,
        );
        match e["status"].as_str() {
            Some("ready") => return e,
            Some("error") => server.fail(format!("entry {id} failed: {e}")),
            _ => {}
        }
        if Instant::now() > deadline {
            server.fail(format!("entry {id} never became ready: {e}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// A small blocking HTTP/1.1 client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub url: String,
    pub status: u16,
    /// Header names lower-cased; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|s| s.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone())
            .unwrap_or_else(|e| panic!("{}: body is not UTF-8: {e}", self.url))
    }

    pub fn text_lossy(&self, max: usize) -> String {
        tail(&String::from_utf8_lossy(&self.body), max)
    }

    /// The media type without parameters, lower-cased.
    pub fn mime(&self) -> String {
        self.header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_ascii_lowercase()
    }
}

/// GET with a 20 s read timeout (a blocking playlist reload may hold the
/// request for a few target durations; a hang becomes an error, not a stuck
/// test).
pub fn http_get(url: &str) -> Result<Response, String> {
    http_request("GET", url, &[], Duration::from_secs(20))
}

pub fn http_request(
    method: &str,
    url: &str,
    extra_headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Response, String> {
    http_request_with_body(method, url, extra_headers, None, timeout)
}

/// A POST with a body (`Content-Type` given in `extra_headers`).
pub fn http_post(
    url: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    http_request_with_body(
        "POST",
        url,
        extra_headers,
        Some(body),
        Duration::from_secs(20),
    )
}

pub fn http_request_with_body(
    method: &str,
    url: &str,
    extra_headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|e| format!("{url}: host must be IP:PORT here ({e})"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: vela-e2e\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream
        .write_all(&bytes)
        .map_err(|e| format!("write request: {e}"))?;

    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("{url}: reading status line: {e}"))?;
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("{url}: bad status line {line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: bad status line {line:?}"))?;
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("{url}: reading headers: {e}"))?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| format!("{url}: bad header line {l:?}"))?;
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim().to_string();
        headers
            .entry(k)
            .and_modify(|old| {
                old.push_str(", ");
                old.push_str(&v)
            })
            .or_insert(v);
    }
    let mut body = Vec::new();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if method == "HEAD" || status == 204 || status == 304 {
        // no body
    } else if chunked {
        loop {
            line.clear();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("{url}: reading chunk size: {e}"))?;
            let size_str = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| format!("{url}: bad chunk size line {line:?}"))?;
            if size == 0 {
                // trailers until the empty line
                loop {
                    line.clear();
                    let n = reader.read_line(&mut line).unwrap_or(0);
                    if n == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader
                .read_exact(&mut body[start..])
                .map_err(|e| format!("{url}: reading chunk: {e}"))?;
            line.clear();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("{url}: reading chunk end: {e}"))?;
        }
    } else if let Some(len) = headers.get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("{url}: bad content-length {len:?}"))?;
        body.resize(len, 0);
        reader
            .read_exact(&mut body)
            .map_err(|e| format!("{url}: reading {len}-byte body: {e}"))?;
    } else {
        reader
            .read_to_end(&mut body)
            .map_err(|e| format!("{url}: reading body: {e}"))?;
    }
    Ok(Response {
        url: url.to_string(),
        status,
        headers,
        body,
    })
}

/// Resolves a URI found in a playlist or manifest against the document's URL.
pub fn resolve(base: &str, uri: &str) -> String {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return uri.to_string();
    }
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    if uri.starts_with('/') {
        let host_end = base[after_scheme..]
            .find('/')
            .map(|i| i + after_scheme)
            .unwrap_or(base.len());
        return format!("{}{}", &base[..host_end], uri);
    }
    let base_no_query = base.split(['?', '#']).next().unwrap();
    let dir_end = base_no_query.rfind('/').map(|i| i + 1).unwrap_or(0);
    let mut dir = base_no_query[..dir_end].to_string();
    let mut rest = uri;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            rest = r;
            let trimmed = dir.trim_end_matches('/');
            if let Some(i) = trimmed.rfind('/') {
                if i + 1 > after_scheme {
                    dir.truncate(i + 1);
                }
            }
        } else {
            break;
        }
    }
    format!("{dir}{rest}")
}

// ---------------------------------------------------------------------------
// External tools: ffmpeg, ffprobe
// ---------------------------------------------------------------------------

pub fn require_tool(name: &str) -> PathBuf {
    require_tool_with(name, "-version")
}

/// Like [`require_tool`], for a tool whose version flag is `version_arg`
/// (`-V`, `--version`).
pub fn require_tool_with(name: &str, version_arg: &str) -> PathBuf {
    let ok = Command::new(name)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        panic!("`{name}` is not installed or does not run: run scripts/setup (it installs it)");
    }
    PathBuf::from(name)
}

/// (major, minor) of an ffmpeg binary.
pub fn ffmpeg_version(ffmpeg: &Path) -> Option<(u32, u32)> {
    let out = Command::new(ffmpeg).arg("-version").output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let v = s.split_whitespace().nth(2)?; // "ffmpeg version 5.1.9-0+deb12u1" / "n9.0.2-17-g…"
    let v = v.trim_start_matches('n');
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// An ffmpeg whose FLV muxer writes HEVC as enhanced RTMP (ffmpeg >= 6.1):
/// `VELA_FFMPEG_HEVC`, else the system ffmpeg if new enough, else the static
/// build that scripts/setup installs with the imageio-ffmpeg PyPI package.
pub fn hevc_ffmpeg() -> PathBuf {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("VELA_FFMPEG_HEVC") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from("ffmpeg"));
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
        ])
        .output()
    {
        if out.status.success() {
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !p.is_empty() {
                candidates.push(PathBuf::from(p));
            }
        }
    }
    for c in candidates {
        match ffmpeg_version(&c) {
            Some(v) if v >= (6, 1) => {
                let enc = Command::new(&c)
                    .args(["-hide_banner", "-encoders"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("libx265"))
                    .unwrap_or(false);
                if enc {
                    return c;
                }
                tried.push(format!("{} ({}.{}, no libx265)", c.display(), v.0, v.1));
            }
            Some(v) => tried.push(format!("{} ({}.{})", c.display(), v.0, v.1)),
            None => tried.push(format!("{} (does not run)", c.display())),
        }
    }
    panic!(
        "publishing HEVC over RTMP needs an ffmpeg >= 6.1 with libx265 (its FLV muxer writes \
         enhanced-RTMP 'hvc1'); ffmpeg 5.1 cannot mux HEVC into FLV at all. Tried: {}. \
         Run scripts/setup (it installs one through the imageio-ffmpeg PyPI package) or set \
         VELA_FFMPEG_HEVC=/path/to/ffmpeg.",
        tried.join(", ")
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264 { bframes: u32 },
    Hevc,
}

/// What a test publisher sends: lavfi testsrc2 720p30 and/or a 440 Hz sine at
/// 48 kHz, encoded live (`-re`) for `seconds`, to `rtmp://…/live/KEY`.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    pub video: Option<VideoCodec>,
    pub audio: bool,
    pub seconds: f64,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl PublishSpec {
    pub fn new(video: Option<VideoCodec>, audio: bool, seconds: f64) -> Self {
        PublishSpec {
            video,
            audio,
            seconds,
            width: 1280,
            height: 720,
            fps: 30,
        }
    }

    pub fn video_frames(&self) -> u64 {
        (self.seconds * self.fps as f64).round() as u64
    }
}

/// A running ffmpeg publisher; killed on drop.
pub struct Publisher {
    pub child: Child,
    pub log: PathBuf,
    pub url: String,
}

impl Publisher {
    pub fn spawn(ffmpeg: &Path, url: &str, spec: &PublishSpec, log_dir: &Path) -> Publisher {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let log = log_dir.join(format!("ffmpeg-publisher-{n}.log"));
        let mut args: Vec<String> = vec![
            "-hide_banner".into(),
            "-nostdin".into(),
            "-loglevel".into(),
            "warning".into(),
        ];
        if spec.video.is_some() {
            args.extend(
                [
                    "-re",
                    "-f",
                    "lavfi",
                    "-i",
                    &format!(
                        "testsrc2=size={}x{}:rate={}",
                        spec.width, spec.height, spec.fps
                    ),
                ]
                .map(String::from),
            );
        }
        if spec.audio {
            args.extend(
                [
                    "-re",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=48000",
                ]
                .map(String::from),
            );
        }
        args.extend(["-t".to_string(), format!("{}", spec.seconds)]);
        let mut input = 0;
        if let Some(v) = spec.video {
            args.extend(["-map".to_string(), format!("{input}:v")]);
            input += 1;
            let gop = spec.fps.to_string();
            match v {
                VideoCodec::H264 { bframes } => {
                    args.extend(["-c:v", "libx264", "-preset", "veryfast"].map(String::from));
                    if bframes == 0 {
                        args.extend(["-tune", "zerolatency"].map(String::from));
                    }
                    args.extend([
                        "-bf".to_string(),
                        bframes.to_string(),
                        "-g".into(),
                        gop.clone(),
                        "-keyint_min".into(),
                        gop,
                        "-sc_threshold".into(),
                        "0".into(),
                    ]);
                }
                VideoCodec::Hevc => {
                    args.extend(
                        [
                            "-c:v",
                            "libx265",
                            "-preset",
                            "ultrafast",
                            "-x265-params",
                            &format!(
                                "keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:log-level=error"
                            ),
                        ]
                        .map(String::from),
                    );
                }
            }
            args.extend(
                [
                    "-pix_fmt", "yuv420p", "-b:v", "2500k", "-maxrate", "2500k", "-bufsize",
                    "5000k",
                ]
                .map(String::from),
            );
        }
        if spec.audio {
            args.extend(["-map".to_string(), format!("{input}:a")]);
            args.extend(
                ["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"].map(String::from),
            );
        }
        args.extend(["-flvflags", "no_duration_filesize", "-f", "flv", url].map(String::from));
        let logf = File::create(&log).unwrap();
        std::fs::write(
            log_dir.join(format!("ffmpeg-publisher-{n}.cmd")),
            format!("{} {}", ffmpeg.display(), args.join(" ")),
        )
        .unwrap();
        let child = Command::new(ffmpeg)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (run scripts/setup to install ffmpeg)",
                    ffmpeg.display()
                )
            });
        Publisher {
            child,
            log,
            url: url.to_string(),
        }
    }

    pub fn log_text(&self) -> String {
        tail(
            &std::fs::read_to_string(&self.log).unwrap_or_default(),
            4000,
        )
    }

    /// Waits (bounded: `tries` × 250 ms) for ffmpeg to exit.
    pub fn wait_exit(&mut self, tries: usize) -> Option<ExitStatus> {
        for _ in 0..tries {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            sleep(Duration::from_millis(250));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: the publisher vanishes without closing its RTMP session.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion (bounded by `timeout`), returning stdout, or
/// panicking with its stderr.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> (ExitStatus, String, String) {
    let dir = TempDir::new("cmd");
    let out_p = dir.path.join("out");
    let err_p = dir.path.join("err");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_p).unwrap())
        .stderr(File::create(&err_p).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run scripts/setup)"));
    let tries = (timeout.as_millis() / 100).max(1) as usize;
    let mut status = None;
    for _ in 0..tries {
        if let Ok(Some(st)) = child.try_wait() {
            status = Some(st);
            break;
        }
        sleep(Duration::from_millis(100));
    }
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within its bound of {timeout:?}; stderr:\n{}",
                tail(&std::fs::read_to_string(&err_p).unwrap_or_default(), 4000)
            );
        }
    };
    (
        status,
        std::fs::read_to_string(&out_p).unwrap_or_default(),
        std::fs::read_to_string(&err_p).unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------
// HLS helpers (m3u8-rs validates; a line scan reads the LL-HLS tags that
// m3u8-rs 6 keeps only as unknown tags or drops after the last segment)
// ---------------------------------------------------------------------------

/// Splits an attribute list (`A=1,B="x,y",C=z`) into (name, value) pairs,
/// quotes removed.
pub fn attrs(list: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut key = String::new();
    let mut val = String::new();
    let mut in_key = true;
    let mut quoted = false;
    for c in list.chars() {
        match c {
            '"' if !in_key => quoted = !quoted,
            '=' if in_key => in_key = false,
            ',' if !quoted => {
                if !key.trim().is_empty() {
                    out.insert(key.trim().to_string(), val.clone());
                }
                key.clear();
                val.clear();
                in_key = true;
            }
            _ if in_key => key.push(c),
            _ => val.push(c),
        }
    }
    if !key.trim().is_empty() {
        out.insert(key.trim().to_string(), val);
    }
    out
}

#[derive(Debug, Clone)]
pub struct LlPart {
    pub msn: u64,
    pub index: u64,
    pub duration: f64,
    pub uri: String,
    pub independent: bool,
    pub byterange: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LlSegment {
    pub msn: u64,
    pub duration: f64,
    pub uri: String,
    pub discontinuity: bool,
    pub pdt: Option<String>,
}

/// What a line scan of a media playlist finds.
#[derive(Debug, Clone, Default)]
pub struct LlScan {
    pub media_sequence: u64,
    pub segments: Vec<LlSegment>,
    pub parts: Vec<LlPart>,
    pub server_control: Option<BTreeMap<String, String>>,
    pub part_inf: Option<BTreeMap<String, String>>,
    pub preload_hints: Vec<BTreeMap<String, String>>,
    pub rendition_reports: Vec<BTreeMap<String, String>>,
    pub endlist: bool,
    pub map_uris: Vec<String>,
}

impl LlScan {
    /// MSN of the segment being built (the one the trailing parts belong to).
    pub fn next_msn(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }

    /// Parts of the segment still being built.
    pub fn trailing_parts(&self) -> Vec<&LlPart> {
        let n = self.next_msn();
        self.parts.iter().filter(|p| p.msn == n).collect()
    }

    pub fn part_target(&self) -> Option<f64> {
        self.part_inf
            .as_ref()
            .and_then(|a| a.get("PART-TARGET"))
            .and_then(|v| v.parse().ok())
    }
}

pub fn scan_media_playlist(text: &str) -> LlScan {
    let mut s = LlScan::default();
    let mut msn_set = false;
    let mut part_idx = 0u64;
    let mut cur_dur = 0f64;
    let mut disc = false;
    let mut pdt = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let msn = s.media_sequence + s.segments.len() as u64;
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            s.media_sequence = v.trim().parse().unwrap_or(0);
            msn_set = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            s.server_control = Some(attrs(v));
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            s.part_inf = Some(attrs(v));
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let a = attrs(v);
            s.parts.push(LlPart {
                msn,
                index: part_idx,
                duration: a
                    .get("DURATION")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(-1.0),
                uri: a.get("URI").cloned().unwrap_or_default(),
                independent: a.get("INDEPENDENT").is_some_and(|v| v == "YES"),
                byterange: a.get("BYTERANGE").cloned(),
            });
            part_idx += 1;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            s.preload_hints.push(attrs(v));
        } else if let Some(v) = line.strip_prefix("#EXT-X-RENDITION-REPORT:") {
            s.rendition_reports.push(attrs(v));
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            if let Some(u) = attrs(v).get("URI") {
                s.map_uris.push(u.clone());
            }
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            cur_dur = v
                .split(',')
                .next()
                .unwrap_or("0")
                .trim()
                .parse()
                .unwrap_or(-1.0);
        } else if line == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = Some(v.trim().to_string());
        } else if line == "#EXT-X-ENDLIST" {
            s.endlist = true;
        } else if !line.starts_with('#') {
            s.segments.push(LlSegment {
                msn,
                duration: cur_dur,
                uri: line.to_string(),
                discontinuity: disc,
                pdt: pdt.take(),
            });
            disc = false;
            part_idx = 0;
        }
    }
    let _ = msn_set;
    s
}

// ---------------------------------------------------------------------------
// MP4 helpers (mp4-atom with `strict`: an unexpected box is an error)
// ---------------------------------------------------------------------------

/// Decodes every top-level box of a buffer; fails on trailing garbage.
pub fn decode_boxes(what: &str, data: &[u8]) -> Result<Vec<mp4_atom::Any>, String> {
    use mp4_atom::Decode;
    let mut buf: &[u8] = data;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let before = buf.len();
        let atom = mp4_atom::Any::decode(&mut buf).map_err(|e| {
            format!(
                "{what}: mp4-atom (strict) cannot decode the box at byte {}: {e} (boxes so far: {:?})",
                data.len() - before,
                out.iter().map(|a: &mp4_atom::Any| a.kind().to_string()).collect::<Vec<_>>()
            )
        })?;
        out.push(atom);
    }
    Ok(out)
}

/// Codec four-character codes and handler types found in an init segment.
#[derive(Debug, Clone, Default)]
pub struct InitInfo {
    /// (track id, handler, sample entry fourcc, timescale)
    pub tracks: Vec<(u32, String, String, u32)>,
}

impl InitInfo {
    pub fn codecs(&self) -> Vec<String> {
        self.tracks.iter().map(|t| t.2.clone()).collect()
    }
}

pub fn check_init_segment(what: &str, data: &[u8]) -> Result<InitInfo, String> {
    let boxes = decode_boxes(what, data)?;
    let kinds: Vec<String> = boxes.iter().map(|b| b.kind().to_string()).collect();
    if !matches!(boxes.first(), Some(mp4_atom::Any::Ftyp(_))) {
        return Err(format!(
            "{what}: init segment must start with ftyp, has {kinds:?}"
        ));
    }
    let moov = boxes
        .iter()
        .find_map(|b| match b {
            mp4_atom::Any::Moov(m) => Some(m),
            _ => None,
        })
        .ok_or_else(|| format!("{what}: init segment has no moov: {kinds:?}"))?;
    if boxes
        .iter()
        .any(|b| matches!(b, mp4_atom::Any::Mdat(_) | mp4_atom::Any::Moof(_)))
    {
        return Err(format!("{what}: init segment carries media: {kinds:?}"));
    }
    if moov.mvex.is_none() {
        return Err(format!(
            "{what}: moov has no mvex (not a fragmented MP4 init)"
        ));
    }
    if moov.trak.is_empty() {
        return Err(format!("{what}: moov has no trak"));
    }
    let mut info = InitInfo::default();
    for trak in &moov.trak {
        let stsd = &trak.mdia.minf.stbl.stsd;
        if stsd.codecs.len() != 1 {
            return Err(format!(
                "{what}: track {} has {} sample entries",
                trak.tkhd.track_id,
                stsd.codecs.len()
            ));
        }
        let fourcc = match &stsd.codecs[0] {
            mp4_atom::Codec::Avc1(_) => "avc1",
            mp4_atom::Codec::Avc3(_) => "avc3",
            mp4_atom::Codec::Hvc1(_) => "hvc1",
            mp4_atom::Codec::Hev1(_) => "hev1",
            mp4_atom::Codec::Mp4a(_) => "mp4a",
            mp4_atom::Codec::Opus(_) => "Opus",
            other => return Err(format!("{what}: unexpected sample entry {other:?}")),
        };
        if trak.mdia.mdhd.timescale == 0 {
            return Err(format!(
                "{what}: track {} has timescale 0",
                trak.tkhd.track_id
            ));
        }
        info.tracks.push((
            trak.tkhd.track_id,
            trak.mdia.hdlr.handler.to_string(),
            fourcc.to_string(),
            trak.mdia.mdhd.timescale,
        ));
    }
    Ok(info)
}

/// Per-track (track id → (first tfdt, sample count, summed sample duration)) of
/// a media segment or part.
pub type FragInfo = BTreeMap<u32, (u64, u64, u64)>;

/// Checks a CMAF media segment or part: optional styp/sidx/prft/emsg, then one
/// or more moof+mdat pairs; every traf has a tfdt and a trun with samples, and
/// the trun sizes fit in the mdat.
pub fn check_media_segment(what: &str, data: &[u8]) -> Result<FragInfo, String> {
    let boxes = decode_boxes(what, data)?;
    let kinds: Vec<String> = boxes.iter().map(|b| b.kind().to_string()).collect();
    let mut info = FragInfo::new();
    let mut pending_moof: Option<&mp4_atom::Moof> = None;
    let mut pairs = 0;
    for b in &boxes {
        match b {
            mp4_atom::Any::Styp(_)
            | mp4_atom::Any::Sidx(_)
            | mp4_atom::Any::Prft(_)
            | mp4_atom::Any::Emsg(_)
            | mp4_atom::Any::Free(_) => {
                if pending_moof.is_some() {
                    return Err(format!(
                        "{what}: {} between moof and mdat ({kinds:?})",
                        b.kind()
                    ));
                }
            }
            mp4_atom::Any::Moof(m) => {
                if pending_moof.is_some() {
                    return Err(format!("{what}: moof without mdat ({kinds:?})"));
                }
                pending_moof = Some(m);
            }
            mp4_atom::Any::Mdat(mdat) => {
                let moof = pending_moof
                    .take()
                    .ok_or_else(|| format!("{what}: mdat without moof ({kinds:?})"))?;
                if moof.traf.is_empty() {
                    return Err(format!("{what}: moof without traf"));
                }
                let mut total_size: u64 = 0;
                for traf in &moof.traf {
                    let id = traf.tfhd.track_id;
                    let tfdt = traf
                        .tfdt
                        .as_ref()
                        .ok_or_else(|| format!("{what}: traf of track {id} has no tfdt"))?;
                    if traf.trun.is_empty() {
                        return Err(format!("{what}: traf of track {id} has no trun"));
                    }
                    let mut samples = 0u64;
                    let mut dur = 0u64;
                    for trun in &traf.trun {
                        for e in trun.samples.iter() {
                            samples += 1;
                            dur += e
                                .duration
                                .or(traf.tfhd.default_sample_duration)
                                .unwrap_or(0) as u64;
                            total_size +=
                                e.size.or(traf.tfhd.default_sample_size).unwrap_or(0) as u64;
                        }
                    }
                    if samples == 0 {
                        return Err(format!("{what}: track {id} has an empty trun"));
                    }
                    let entry = info
                        .entry(id)
                        .or_insert((tfdt.base_media_decode_time, 0, 0));
                    entry.1 += samples;
                    entry.2 += dur;
                }
                if total_size > mdat.data.len() as u64 {
                    return Err(format!(
                        "{what}: trun sample sizes add up to {total_size} bytes but mdat holds {}",
                        mdat.data.len()
                    ));
                }
                pairs += 1;
            }
            other => {
                return Err(format!(
                    "{what}: unexpected top-level box {} in a media segment ({kinds:?})",
                    other.kind()
                ))
            }
        }
    }
    if pending_moof.is_some() {
        return Err(format!("{what}: trailing moof without mdat ({kinds:?})"));
    }
    if pairs == 0 {
        return Err(format!("{what}: no moof+mdat ({kinds:?})"));
    }
    Ok(info)
}

// ---------------------------------------------------------------------------
// A tiny DOM over quick-xml, for the MPD
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct Element {
    pub name: String,
    pub attrs: BTreeMap<String, String>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(|s| s.as_str())
    }
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// Parses an XML document strictly (well-formedness, matching end tags) into
/// a tree; element names lose their namespace prefix.
pub fn parse_xml(text: &str) -> Result<Element, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = vec![Element::default()];
    fn start(e: &quick_xml::events::BytesStart) -> Result<Element, String> {
        let name = String::from_utf8_lossy(e.local_name().as_ref()).to_string();
        let mut el = Element {
            name,
            ..Default::default()
        };
        for a in e.attributes() {
            let a = a.map_err(|e| format!("bad attribute: {e}"))?;
            let k = String::from_utf8_lossy(a.key.as_ref()).to_string();
            let v = a
                .unescape_value()
                .map_err(|e| format!("bad attribute value: {e}"))?
                .to_string();
            el.attrs.insert(k, v);
        }
        Ok(el)
    }
    loop {
        match reader.read_event() {
            Err(e) => {
                return Err(format!(
                    "XML error at byte {}: {e}",
                    reader.buffer_position()
                ))
            }
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => stack.push(start(&e)?),
            Ok(Event::Empty(e)) => {
                let el = start(&e)?;
                stack.last_mut().unwrap().children.push(el);
            }
            Ok(Event::End(_)) => {
                let el = stack.pop().unwrap();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Err("unbalanced end tag".into()),
                }
            }
            Ok(Event::Text(t)) => {
                let s = String::from_utf8_lossy(t.as_ref()).to_string();
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(s.trim());
                }
            }
            Ok(_) => {}
        }
    }
    if stack.len() != 1 {
        return Err(format!("{} unclosed element(s)", stack.len() - 1));
    }
    let mut root = stack.pop().unwrap();
    if root.children.len() != 1 {
        return Err(format!(
            "expected one root element, found {}",
            root.children.len()
        ));
    }
    Ok(root.children.pop().unwrap())
}

/// Parses an ISO 8601 duration like `PT1M30.5S` into seconds.
pub fn iso_duration(s: &str) -> Option<f64> {
    let s = s.strip_prefix('P')?;
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, t),
        None => (s, ""),
    };
    let mut total = 0.0;
    let mut num = String::new();
    for c in date.chars() {
        match c {
            'D' => {
                total += num.parse::<f64>().ok()? * 86400.0;
                num.clear()
            }
            'Y' | 'M' | 'W' => return None,
            _ => num.push(c),
        }
    }
    if !num.is_empty() {
        return None;
    }
    for c in time.chars() {
        let mult = match c {
            'H' => 3600.0,
            'M' => 60.0,
            'S' => 1.0,
            _ => {
                num.push(c);
                continue;
            }
        };
        total += num.parse::<f64>().ok()? * mult;
        num.clear();
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

/// Expands a DASH SegmentTemplate string ($RepresentationID$, $Bandwidth$,
/// $Number$, $Time$, with optional %0Nd widths, and $$).
pub fn expand_template(t: &str, rep_id: &str, bandwidth: &str, number: u64, time: u64) -> String {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = match after.find('$') {
            Some(j) => j,
            None => {
                out.push_str(&rest[i..]);
                return out;
            }
        };
        let ident = &after[..j];
        rest = &after[j + 1..];
        if ident.is_empty() {
            out.push('$');
            continue;
        }
        let (name, fmt) = match ident.split_once('%') {
            Some((n, f)) => (n, Some(f)),
            None => (ident, None),
        };
        let val = match name {
            "RepresentationID" => rep_id.to_string(),
            "Bandwidth" => bandwidth.to_string(),
            "Number" => number.to_string(),
            "Time" => time.to_string(),
            _ => format!("${ident}$"),
        };
        let width: usize = fmt
            .and_then(|f| f.trim_start_matches('0').trim_end_matches('d').parse().ok())
            .unwrap_or(0);
        if val.len() < width {
            out.push_str(&"0".repeat(width - val.len()));
        }
        out.push_str(&val);
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// PostgreSQL and S3-compatible storage for multi-node tests
// ---------------------------------------------------------------------------

/// A fresh database on the test PostgreSQL server (`VELA_TEST_PG_URL`, or the
/// one `scripts/pg-test-server` starts for this test process); returns its URL.
pub fn pg_database(label: &str) -> String {
    let server = match std::env::var("VELA_TEST_PG_URL") {
        Ok(u) => u,
        Err(_) => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-test-server");
            let out = Command::new("bash")
                .arg(script)
                .arg("start")
                .arg("--owner-pid")
                .arg(std::process::id().to_string())
                .output()
                .expect("scripts/pg-test-server");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .last()
                .unwrap()
                .trim()
                .to_string()
        }
    };
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let name = format!("vela_{label}_{}_{n}", std::process::id());
    let psql = Command::new("psql")
        .arg(&server)
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("psql");
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    format!("{}/{name}", server.rsplit_once('/').unwrap().0)
}

/// A SeaweedFS S3 server from `scripts/s3-test-server` (installed by
/// `scripts/setup`), removed with its data on drop.
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub dir: String,
}

impl S3Server {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-test-server")
    }

    fn run(args: &[&str]) -> String {
        let (st, out, err) = run_bounded(
            Command::new("bash").arg(Self::script()).args(args),
            Duration::from_secs(120),
        );
        assert!(st.success(), "s3-test-server {args:?}: {err}\n{out}");
        out
    }

    pub fn start() -> S3Server {
        let owner = std::process::id().to_string();
        let out = Self::run(&["start", "--owner-pid", &owner]);
        let line = out.lines().last().unwrap_or_default();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 5, "s3-test-server printed {out:?}");
        S3Server {
            endpoint: f[0].into(),
            bucket: f[1].into(),
            access_key: f[2].into(),
            secret_key: f[3].into(),
            dir: f[4].into(),
        }
    }

    /// Stops the server, keeping its data (a bucket that went away).
    pub fn stop(&self) {
        Self::run(&["stop", &self.dir]);
    }

    /// Starts it again on the same ports with the same data.
    pub fn restart(&self) {
        let owner = std::process::id().to_string();
        Self::run(&["start", "--dir", &self.dir, "--owner-pid", &owner]);
    }

    /// The `[storage]` table of a Vela configuration using this server.
    pub fn storage_toml(&self) -> String {
        format!(
            "[storage]\nbackend = \"s3\"\nendpoint = \"{}\"\nbucket = \"{}\"\n\
             access_key_id = \"{}\"\nsecret_access_key = \"{}\"\nmax_retries = 2\n\
             request_timeout_s = 5\n",
            self.endpoint, self.bucket, self.access_key, self.secret_key
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .args(["remove", &self.dir])
            .status();
    }
}
