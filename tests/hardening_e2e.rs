//! End-to-end tests of the listeners' resource control (issue 16): a real
//! `vela serve` with short limits from `[limits]`, hostile clients on
//! loopback, and a real ffmpeg publisher where a live stream matters.
//!
//! Nothing asserts a wall-clock duration: the tests wait (bounded) for
//! connections to be closed, and assert on what was closed, what was
//! answered and the server's counters.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(200);

fn raise_fd_limit() {
    vela_net::fdlimit::raise_nofile_limit().expect("raise the test's descriptor limit");
}

/// A small live stream: 320x180 H.264 + AAC for `seconds`.
fn small_spec(seconds: f64) -> PublishSpec {
    PublishSpec {
        width: 320,
        height: 180,
        fps: 15,
        ..PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), true, seconds)
    }
}

fn wait_live(server: &Server, stream: &str) {
    server.poll(&format!("{stream} to be live"), 150, POLL, || {
        let r = server.get(&format!("/live/{stream}/master.m3u8"));
        (r.status == 200).then_some(())
    });
}

/// The value of one Prometheus series (`name{labels}`), 0 when absent.
fn metric(server: &Server, series: &str) -> f64 {
    let text = server.get_ok(&server.url("/metrics")).text();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// A held client socket and everything it has received.
struct Held {
    stream: TcpStream,
    got: Vec<u8>,
    closed: bool,
}

impl Held {
    fn open(addr: SocketAddr, send: &[u8]) -> Held {
        let mut stream = TcpStream::connect(addr).expect("connect");
        if !send.is_empty() {
            stream.write_all(send).expect("send");
        }
        stream.set_nonblocking(true).unwrap();
        Held {
            stream,
            got: Vec::new(),
            closed: false,
        }
    }

    /// Reads what is there; notes a close (EOF or reset).
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while !self.closed {
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.closed = true,
            }
        }
    }
}

/// Waits (bounded) until the server has closed every socket in `held`.
fn wait_all_closed(server: &Server, what: &str, held: &mut [Held]) {
    server.poll(what, 300, POLL, || {
        held.iter_mut().for_each(Held::drain);
        let open = held.iter().filter(|h| !h.closed).count();
        (open == 0).then_some(())
    });
}

#[test]
fn idle_and_slow_http_connections_are_closed_while_live_and_healthz_stay_up() {
    raise_fd_limit();
    let ffmpeg = require_tool("ffmpeg");
    let server = Server::start_with_config(
        "[limits]\nhttp_header_timeout_s = 1\nhttp_idle_timeout_s = 2\nhttp_per_address = 100000\nhttp_pre_request = 100000\nmax_http_connections = 15000\n",
    );
    let mut canary = Publisher::spawn(
        &ffmpeg,
        &server.rtmp_url("canary"),
        &small_spec(90.0),
        &server.dir.path,
    );
    wait_live(&server, "canary");

    const EACH: usize = 1000;
    let mut silent: Vec<Held> = (0..EACH).map(|_| Held::open(server.http, b"")).collect();
    let mut slow: Vec<Held> = (0..EACH)
        .map(|_| Held::open(server.http, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "))
        .collect();
    let mut idle: Vec<Held> = (0..EACH)
        .map(|_| Held::open(server.http, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
        .collect();

    // While all of them are held: health, playlists and segments answer.
    for _ in 0..3 {
        server.get_ok(&server.url("/healthz"));
        let master = server
            .get_ok(&server.url("/live/canary/master.m3u8"))
            .text();
        let media = master
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty())
            .expect("a media playlist in the master playlist");
        let url = resolve(&server.url("/live/canary/master.m3u8"), media);
        server.get_ok(&url);
    }

    wait_all_closed(&server, "silent connections to be closed", &mut silent);
    wait_all_closed(&server, "slow request heads to be closed", &mut slow);
    wait_all_closed(&server, "idle keep-alives to be closed", &mut idle);

    for h in &slow {
        let text = String::from_utf8_lossy(&h.got);
        assert!(
            text.starts_with("HTTP/1.1 408 ") && text.contains("\"request_timeout\""),
            "a slow head got {text:?}"
        );
    }
    for h in &idle {
        let text = String::from_utf8_lossy(&h.got);
        assert!(
            text.starts_with("HTTP/1.1 200 "),
            "an idle keep-alive got {text:?}"
        );
    }
    assert!(
        canary.is_running(),
        "the canary publisher stopped: {}",
        canary.log_text()
    );
    server.get_ok(&server.url("/healthz"));
    server.get_ok(&server.url("/live/canary/master.m3u8"));
    let header = metric(
        &server,
        "vela_connections_timed_out_total{listener=\"http\",phase=\"header\"}",
    );
    let idle_closed = metric(
        &server,
        "vela_connections_timed_out_total{listener=\"http\",phase=\"idle\"}",
    );
    assert!(
        header >= (2 * EACH) as f64,
        "header timeouts counted: {header}"
    );
    assert!(
        idle_closed >= EACH as f64,
        "idle timeouts counted: {idle_closed}"
    );
}

// ---------------------------------------------------------------------------
// A hand-rolled RTMP client: handshake, connect, createStream, publish.
// ---------------------------------------------------------------------------

fn amf_string(out: &mut Vec<u8>, s: &str) {
    out.push(2);
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn amf_number(out: &mut Vec<u8>, n: f64) {
    out.push(0);
    out.extend_from_slice(&n.to_be_bytes());
}

/// One message as a single type-0 chunk (bodies here are under 128 bytes).
fn chunk(csid: u8, type_id: u8, stream_id: u32, body: &[u8]) -> Vec<u8> {
    assert!(body.len() <= 128);
    let mut c = vec![csid, 0, 0, 0];
    c.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    c.push(type_id);
    c.extend_from_slice(&stream_id.to_le_bytes());
    c.extend_from_slice(body);
    c
}

fn connect_command() -> Vec<u8> {
    let mut b = Vec::new();
    amf_string(&mut b, "connect");
    amf_number(&mut b, 1.0);
    b.push(3);
    b.extend_from_slice(&3u16.to_be_bytes());
    b.extend_from_slice(b"app");
    amf_string(&mut b, "live");
    b.extend_from_slice(&[0, 0, 9]);
    chunk(3, 20, 0, &b)
}

fn create_stream_command() -> Vec<u8> {
    let mut b = Vec::new();
    amf_string(&mut b, "createStream");
    amf_number(&mut b, 2.0);
    b.push(5);
    chunk(3, 20, 0, &b)
}

fn publish_command(name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    amf_string(&mut b, "publish");
    amf_number(&mut b, 3.0);
    b.push(5);
    amf_string(&mut b, name);
    amf_string(&mut b, "live");
    chunk(4, 20, 1, &b)
}

/// Does the RTMP handshake; `None` if the server closed the connection.
fn rtmp_handshake(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(7u8, 1536));
    s.write_all(&c0c1).ok()?;
    let mut s0s1s2 = vec![0u8; 1 + 1536 + 1536];
    s.read_exact(&mut s0s1s2).ok()?;
    s.write_all(&s0s1s2[1..1537]).ok()?;
    Some(s)
}

/// Reads until `needle` has been received (bounded by the read timeout).
fn read_until(s: &mut TcpStream, needle: &[u8]) -> bool {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if got.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_flood_of_unauthenticated_rtmp_sessions_stays_within_its_budget() {
    raise_fd_limit();
    let ffmpeg = require_tool("ffmpeg");
    const BUDGET: usize = 100;
    let server = Server::start_with_config(&format!(
        "[limits]\nrtmp_pre_publish = {BUDGET}\nrtmp_per_address = 100000\nrtmp_publish_timeout_s = 60\nrtmp_handshake_timeout_s = 60\n"
    ));
    // Handshake + connect, nothing more, from 500 sockets.
    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..500 {
        match rtmp_handshake(server.rtmp) {
            Some(mut s) => {
                s.write_all(&connect_command()).unwrap();
                if read_until(&mut s, b"NetConnection.Connect.Success") {
                    admitted.push(s);
                } else {
                    refused += 1;
                }
            }
            None => refused += 1,
        }
    }
    assert_eq!(
        admitted.len(),
        BUDGET,
        "sessions admitted beyond the budget"
    );
    assert_eq!(refused, 500 - BUDGET);
    let pre = metric(&server, "vela_connections_pre_auth{listener=\"rtmp\"}");
    assert_eq!(pre, BUDGET as f64);
    let counted = metric(
        &server,
        "vela_connections_refused_total{listener=\"rtmp\",reason=\"pre_auth\"}",
    );
    assert_eq!(counted, (500 - BUDGET) as f64);
    // Refusals are logged per incident, not per connection.
    let lines = server.stderr().matches("refusing connections").count();
    assert!((1..=3).contains(&lines), "{lines} refusal log lines");
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", server.pid())) {
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap_or("");
        eprintln!("server with {BUDGET} pre-publish sessions held: {rss}");
    }
    // The flood goes away: the budget is back and a real publisher gets in.
    drop(admitted);
    server.poll("the pre-publish budget to be free", 100, POLL, || {
        (metric(&server, "vela_connections_pre_auth{listener=\"rtmp\"}") == 0.0).then_some(())
    });
    let mut p = Publisher::spawn(
        &ffmpeg,
        &server.rtmp_url("after"),
        &small_spec(20.0),
        &server.dir.path,
    );
    wait_live(&server, "after");
    assert!(p.is_running());
}

#[test]
fn an_acknowledgement_only_squatter_is_closed_and_ffmpeg_then_publishes() {
    let ffmpeg = require_tool("ffmpeg");
    let server = Server::start_with_config("[limits]\nrtmp_media_timeout_s = 2\n");
    let mut s = rtmp_handshake(server.rtmp).expect("handshake");
    s.write_all(&connect_command()).unwrap();
    assert!(read_until(&mut s, b"NetConnection.Connect.Success"));
    s.write_all(&create_stream_command()).unwrap();
    assert!(read_until(&mut s, b"_result"));
    s.write_all(&publish_command("squat")).unwrap();
    assert!(
        read_until(&mut s, b"NetStream.Publish.Start"),
        "the squatter did not get the name\n{}",
        server.stderr()
    );
    // Only Acknowledgements (type 3) from now on, until the server hangs up.
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut seq: u32 = 0;
    let closed = (0..120).any(|_| {
        seq += 4096;
        if s.write_all(&chunk(2, 3, 0, &seq.to_be_bytes())).is_err() {
            return true;
        }
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    });
    assert!(closed, "the squatter was never closed\n{}", server.stderr());
    assert!(
        server.stderr().contains("no audio or video"),
        "{}",
        server.stderr()
    );
    let timed_out = metric(
        &server,
        "vela_connections_timed_out_total{listener=\"rtmp\",phase=\"media\"}",
    );
    assert_eq!(timed_out, 1.0);
    // The name is free: a real publisher takes it.
    let mut p = Publisher::spawn(
        &ffmpeg,
        &server.rtmp_url("squat"),
        &small_spec(20.0),
        &server.dir.path,
    );
    wait_live(&server, "squat");
    assert!(p.is_running(), "{}", p.log_text());
}

// ---------------------------------------------------------------------------
// Every error answer is JSON.
// ---------------------------------------------------------------------------

struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Sends raw bytes and reads the answer until the server closes.
fn raw(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (and close) before it has read everything: write
    // from another thread and read here at the same time, so the answer is
    // read before the close of an unread body resets the connection.
    let mut writer = s.try_clone().unwrap();
    let request = request.to_vec();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = sender.join();
    let text = String::from_utf8_lossy(&got).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn assert_json_error(what: &str, a: &Answer, status: u16) {
    assert_eq!(
        a.status, status,
        "{what}: head {:?} body {:?}",
        a.head, a.body
    );
    assert!(
        a.head.contains("content-type: application/json"),
        "{what}: head {:?}",
        a.head
    );
    let v: serde_json::Value = serde_json::from_str(&a.body)
        .unwrap_or_else(|e| panic!("{what}: body {:?} is not JSON: {e}", a.body));
    assert!(
        v["error"]["code"].is_string() && v["error"]["message"].is_string(),
        "{what}: {v}"
    );
}

#[test]
fn every_error_status_of_every_router_answers_json() {
    let server =
        Server::start_with_config("[limits]\nhttp_header_timeout_s = 1\nhttp_per_address = 3\n");
    let a = server.http;
    let get = |path: &str| {
        raw(
            a,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let cases: Vec<(&str, Answer, u16)> = vec![
        ("unknown path", get("/nowhere"), 404),
        ("unknown stream", get("/live/nope/master.m3u8"), 404),
        ("unknown key", get("/drm/keys/00000000000000000000000000000000"), 404),
        ("GET of the licence endpoint", get("/drm/clearkey/license"), 405),
        ("DELETE /healthz", raw(a, b"DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 405),
        ("API without a token", get("/api/v1/entries"), 401),
        (
            "API with a broken body",
            raw(a, b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{oops"),
            400,
        ),
        (
            "a licence request over the body limit",
            raw(a, &{
                let mut r = b"POST /drm/clearkey/license HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\nConnection: close\r\n\r\n".to_vec();
                r.extend(std::iter::repeat_n(b'a', 3_000_000));
                r
            }),
            413,
        ),
        ("a 100 KB search query", get(&format!("/api/v1/search?q={}", "a".repeat(100_000))), 414),
        (
            "200 header fields",
            raw(a, &{
                let mut r = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
                for i in 0..200 {
                    r.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
                }
                r.extend_from_slice(b"\r\n");
                r
            }),
            431,
        ),
        ("a garbage request line", raw(a, b"NOT HTTP AT ALL\r\n\r\n"), 400),
        ("a head that never ends", raw(a, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"), 408),
    ];
    for (what, answer, status) in &cases {
        assert_json_error(what, answer, *status);
    }
    // The per-address limit (3 here): a fourth connection from the same
    // address gets a 503 with Retry-After, in JSON.
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(a).unwrap()).collect();
    let refused = raw(a, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_json_error("over the per-address limit", &refused, 503);
    assert!(refused.head.contains("retry-after: "), "{:?}", refused.head);
    drop(held);
    // The server notices the closes a moment later.
    server.poll("the held connections to be released", 150, POLL, || {
        (server.get("/healthz").status == 200).then_some(())
    });
    let counted = metric(
        &server,
        "vela_connections_refused_total{listener=\"http\",reason=\"per_address\"}",
    );
    assert!(counted >= 1.0);
}
