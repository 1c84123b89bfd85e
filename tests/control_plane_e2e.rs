//! End-to-end tests of the control plane in a real `vela serve`:
//! - key mode: ffmpeg publishes with a live entry's stream key, a wrong key is refused,
//!   and the entry shows `live` while the publisher is there and `offline` after;
//! - two `vela` processes on one PostgreSQL: what one creates, the other finds.
//!
//! Self-contained (a tiny blocking HTTP/1.1 client; free loopback ports; bounded polls).
//! PostgreSQL comes from `scripts/pg-test-server` (or `VELA_TEST_PG_URL`).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Vela {
    child: Child,
    http: u16,
    rtmp: u16,
    data: tempdir::Dir,
    log: PathBuf,
}

mod tempdir {
    use std::path::{Path, PathBuf};
    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "vela-cp-e2e-{tag}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Vela {
    fn start(tag: &str, database: Option<&str>) -> Vela {
        let data = tempdir::Dir::new(tag);
        let http = free_port();
        let rtmp = free_port();
        let log = data.path().join("vela.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vela"));
        cmd.arg("serve")
            .arg("--data")
            .arg(data.path().join("state"))
            .arg("--rtmp")
            .arg(format!("127.0.0.1:{rtmp}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--h3")
            .arg("off");
        if let Some(db) = database {
            cmd.arg("--database").arg(db);
        }
        let child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start vela");
        let v = Vela {
            child,
            http,
            rtmp,
            data,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = v.try_request("GET", "/api/v1/openapi.json", None, None) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "vela did not come up:\n{}",
                v.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        v
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn state(&self) -> PathBuf {
        self.data.path().join("state")
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Value)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        let v = serde_json::from_str(&body).unwrap_or(Value::Null);
        Ok((status, v))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.try_request(method, path, token, body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    fn admin_token(&self, secret_dir: &Path) -> String {
        let secret =
            std::fs::read_to_string(secret_dir.join("admin-secret")).expect("admin-secret");
        let (s, v) = self.request(
            "POST",
            "/api/v1/sessions",
            None,
            Some(json!({"partner_id":1,"secret":secret.trim(),"role":"admin","expiry_s":3600})),
        );
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    fn wait_status(&self, token: &str, id: &str, want: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (_, e) = self.request("GET", &format!("/api/v1/entries/{id}"), Some(token), None);
            if e["status"] == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "entry {id} never became {want} (is {}):\n{}",
                e["status"],
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Vela {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn ffmpeg_publish(url: &str, seconds: u32, log: &Path) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "warning", "-nostdin", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc=size=320x240:rate=25:duration={seconds}"),
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=440:duration={seconds}"),
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "25",
        ])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("ffmpeg is required (apt-get install ffmpeg)")
}

#[test]
fn key_mode_publish_with_live_entry_key() {
    let v = Vela::start("keys", None);
    let tok = v.admin_token(&v.state());
    let (s, e) = v.request(
        "POST",
        "/api/v1/entries",
        Some(&tok),
        Some(json!({"type":"live","name":"e2e channel"})),
    );
    assert_eq!(s, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    let key = e["stream_key"].as_str().unwrap().to_string();
    assert_eq!(e["status"], "offline");
    assert!(e["playback"]["hls"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/live/{id}/master.m3u8")));

    // A wrong key is refused (now that a live entry exists, key mode is on).
    let wrong_log = v.data.path().join("ffmpeg-wrong.log");
    let mut wrong = ffmpeg_publish(
        &format!("rtmp://127.0.0.1:{}/live/not-a-key", v.rtmp),
        5,
        &wrong_log,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = wrong.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = wrong.kill();
            panic!("ffmpeg with a wrong key was not refused:\n{}", v.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "a wrong key must not publish");
    let (_, e) = v.request("GET", &format!("/api/v1/entries/{id}"), Some(&tok), None);
    assert_eq!(e["status"], "offline");

    // The right key publishes: live while publishing, offline after.
    let log = v.data.path().join("ffmpeg.log");
    let mut ff = ffmpeg_publish(&format!("rtmp://127.0.0.1:{}/live/{key}", v.rtmp), 8, &log);
    v.wait_status(&tok, &id, "live", Duration::from_secs(15));
    // Searchable by status too.
    let (_, r) = v.request("GET", "/api/v1/search?status=live", Some(&tok), None);
    assert_eq!(r["total_count"], 1, "{r}");
    let _ = ff.wait();
    v.wait_status(&tok, &id, "offline", Duration::from_secs(15));
    let _ = ff.kill();
}

#[test]
fn two_nodes_on_one_postgres() {
    let url = common::pg_database("e2e");

    let a = Vela::start("node-a", Some(&url));
    let b = Vela::start("node-b", Some(&url));
    // The admin partner was created by whichever node migrated first.
    let secret_dir = if a.state().join("admin-secret").exists() {
        a.state()
    } else {
        b.state()
    };
    let tok = a.admin_token(&secret_dir);
    let (s, e) = a.request(
        "POST",
        "/api/v1/entries",
        Some(&tok),
        Some(json!({"type":"media","name":"Aurora over the fjord","tags":["northern-lights"]})),
    );
    assert_eq!(s, 201, "{e}");
    let id = e["id"].as_str().unwrap();
    // Node B: the entry and the search hit, right away.
    let (s, got) = b.request("GET", &format!("/api/v1/entries/{id}"), Some(&tok), None);
    assert_eq!(
        (s, got["name"].as_str()),
        (200, Some("Aurora over the fjord"))
    );
    let (s, r) = b.request("GET", "/api/v1/search?q=fjord", Some(&tok), None);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["objects"][0]["entry"]["id"], id, "{r}");
    // And back: B edits, A searches.
    let (s, _) = b.request(
        "PATCH",
        &format!("/api/v1/entries/{id}"),
        Some(&tok),
        Some(json!({"description":"glacier"})),
    );
    assert_eq!(s, 200);
    let (_, r) = a.request("GET", "/api/v1/search?q=glacier", Some(&tok), None);
    assert_eq!(r["total_count"], 1, "{r}");
}
