//! The HTTP/1 keep-alive parking of `serve_connection`, over an in-memory
//! duplex stream on paused time.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{serve_connection, HttpLimits};
use crate::limits::{AdmissionLimits, ConnectionLimiter};

fn app() -> Router {
    Router::new()
        .route("/x", get(|| async { "hello" }))
        .route(
            "/echo",
            post(|body: axum::body::Bytes| async move { format!("got {}", body.len()) }),
        )
        .route(
            "/close",
            get(|| async { ([(http::header::CONNECTION, "close")], "bye") }),
        )
}

struct Server {
    client: DuplexStream,
    done: tokio::task::JoinHandle<()>,
    _stop: watch::Sender<bool>,
}

fn start() -> Server {
    start_named("test")
}

fn start_named(name: &'static str) -> Server {
    let limiter = ConnectionLimiter::new(
        "test",
        AdmissionLimits {
            max_connections: 10,
            per_address: 10,
            pre_auth: 10,
        },
    );
    let guard = limiter
        .admit(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .expect("admitted");
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (stop_tx, stop) = watch::channel(false);
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        ..HttpLimits::default()
    };
    let done = tokio::spawn(serve_connection(
        server,
        guard,
        Instant::now(),
        app(),
        limits,
        stop,
        name,
    ));
    Server {
        client,
        done,
        _stop: stop_tx,
    }
}

fn parked() -> i64 {
    crate::metrics::PARKED
        .with_label_values(&["parktest"])
        .get()
}

/// Reads one response with a `content-length` body; returns (head, body).
async fn response(c: &mut DuplexStream) -> (String, String) {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        let n = c.read(&mut byte).await.expect("read");
        assert_eq!(n, 1, "connection closed inside a head: {data:?}");
        data.push(byte[0]);
    }
    let head = String::from_utf8(data).unwrap().to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("content-length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).await.unwrap();
    (head, String::from_utf8(body).unwrap())
}

async fn closed(c: &mut DuplexStream) -> bool {
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.is_ok() && rest.is_empty()
}

#[tokio::test(start_paused = true)]
async fn keep_alive_continues_across_parked_gaps() {
    let mut s = start_named("parktest");
    for _ in 0..3 {
        s.client
            .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let (head, body) = response(&mut s.client).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        assert_eq!(body, "hello");
        // A gap shorter than the idle limit: the connection is parked.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(parked(), 1, "the idle keep-alive holds no hyper connection");
    }
    // A request in two pieces, the second after a pause.
    s.client.write_all(b"GET /x HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.client.write_all(b"host: a\r\n\r\n").await.unwrap();
    assert_eq!(response(&mut s.client).await.1, "hello");
}

#[tokio::test(start_paused = true)]
async fn pipelined_requests_are_all_answered_in_order() {
    let mut s = start();
    s.client
        .write_all(
            b"GET /x HTTP/1.1\r\nhost: a\r\n\r\nPOST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nabcdeGET /x HTTP/1.1\r\nhost: a\r\n\r\n",
        )
        .await
        .unwrap();
    assert_eq!(response(&mut s.client).await.1, "hello");
    assert_eq!(response(&mut s.client).await.1, "got 5");
    assert_eq!(response(&mut s.client).await.1, "hello");
    // After a request with a body, the connection still serves the next.
    s.client
        .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut s.client).await.1, "hello");
}

#[tokio::test(start_paused = true)]
async fn idle_parked_connection_closes_at_the_idle_limit() {
    let mut s = start();
    s.client
        .write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    response(&mut s.client).await;
    let before = Instant::now();
    assert!(closed(&mut s.client).await);
    assert!(before.elapsed() >= Duration::from_secs(30));
    s.done.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn close_requests_and_http10_close_after_the_answer() {
    for req in [
        &b"GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"[..],
        b"GET /x HTTP/1.0\r\n\r\n",
        b"GET /close HTTP/1.1\r\nhost: a\r\n\r\n",
    ] {
        let mut s = start();
        s.client.write_all(req).await.unwrap();
        let (head, _) = response(&mut s.client).await;
        assert!(head.starts_with("http/1."), "{head}");
        let before = Instant::now();
        assert!(closed(&mut s.client).await);
        assert!(
            before.elapsed() < Duration::from_secs(1),
            "closed only by a limit"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn http2_preface_is_served_as_http2() {
    let mut s = start();
    s.client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // The server's first frame is its SETTINGS frame (type 4).
    let mut frame = [0u8; 9];
    s.client.read_exact(&mut frame).await.unwrap();
    assert_eq!(frame[3], 4);
}
