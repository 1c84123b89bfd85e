//! Media analytics end to end against a real `vela serve`, on SQLite and on
//! PostgreSQL (`scripts/pg-test-server`): the beacon's validation, partner
//! isolation (a client-sent partner id is ignored; reports are scoped),
//! idempotent resends, durability across `kill -9`, the ETL and the
//! reports' figures (reports are by server time: the events' own clock
//! only measures durations), CSV, the rate limit, and many concurrent clients whose
//! every accepted event is counted once.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T0: i64 = 1_764_000_000_000;

fn post_beacon(server: &Server, body: &[u8], ua: &str) -> (u16, Value) {
    let r = http_request_with_body(
        "POST",
        &server.url("/api/v1/analytics/events"),
        &[("Content-Type", "text/plain"), ("User-Agent", ua)],
        Some(body),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| server.fail(format!("beacon: {e}")));
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn ev(kind: &str, seq: i64, dt_ms: i64, pos: f64) -> Value {
    json!({"type": kind, "seq": seq, "t": T0 + dt_ms, "position": pos, "duration": 40.0, "bitrate_kbps": 1200})
}

fn batch(entry: &str, session: &str, viewer: &str, events: Vec<Value>) -> Vec<u8> {
    json!({"entry_id": entry, "session_id": session, "viewer_id": viewer, "player": "hls.js",
           "format": "hls", "events": events})
    .to_string()
    .into_bytes()
}

/// A partner other than the admin one, with an admin session.
fn second_partner(server: &Server, root: &str) -> String {
    let (s, p) = api(
        server,
        "POST",
        "/api/v1/partners",
        Some(root),
        Some(json!({"name": "other"})),
    );
    assert_eq!(s, 201, "{p}");
    let (s, t) = api(
        server,
        "POST",
        "/api/v1/sessions",
        None,
        Some(
            json!({"partner_id": p["id"], "secret": p["secret"], "role": "admin", "expiry_s": 600}),
        ),
    );
    assert_eq!(s, 200, "{t}");
    t["token"].as_str().unwrap().to_string()
}

fn entry(server: &Server, token: &str, name: &str) -> String {
    let (s, e) = api(
        server,
        "POST",
        "/api/v1/entries",
        Some(token),
        Some(json!({"type": "media", "name": name})),
    );
    assert_eq!(s, 201, "{e}");
    e["id"].as_str().unwrap().to_string()
}

fn etl(server: &Server, token: &str) -> Value {
    let (s, v) = api(server, "POST", "/api/v1/analytics/etl", Some(token), None);
    assert_eq!(s, 200, "{v}");
    v
}

fn summary(server: &Server, token: &str, q: &str) -> Value {
    let (s, v) = api(
        server,
        "GET",
        &format!("/api/v1/analytics/summary?format=json{q}"),
        Some(token),
        None,
    );
    assert_eq!(s, 200, "{v}");
    v
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap_or(f64::NAN) - b).abs() < 1e-6
}

/// The full session of viewer 1: 20 s playing, a 2 s stall, 18 s playing, the end.
fn full_session(entry: &str) -> Vec<u8> {
    batch(
        entry,
        "sess-a",
        "viewer-1",
        vec![
            ev("view_start", 0, 0, 0.0),
            json!({"type":"play","seq":1,"t":T0 + 500,"position":0.0,"value_ms":500,"duration":40.0,"bitrate_kbps":1200}),
            ev("heartbeat", 2, 10_500, 10.0),
            ev("buffer_start", 3, 20_500, 20.0),
            ev("buffer_end", 4, 22_500, 20.0),
            ev("heartbeat", 5, 30_500, 28.0),
            ev("end", 6, 40_500, 40.0),
        ],
    )
}

fn scenario(server: Server) {
    let root = admin_token(&server);
    let other = second_partner(&server, &root);
    let e1 = entry(&server, &root, "<script>alert(1)</script> show");
    let e2 = entry(&server, &other, "theirs");

    // Bad input.
    assert_eq!(post_beacon(&server, b"{", CHROME).0, 400);
    let bad_kind = batch(
        &e1,
        "s",
        "v",
        vec![json!({"type":"teleport","seq":0,"t":T0})],
    );
    assert_eq!(post_beacon(&server, &bad_kind, CHROME).0, 422);
    let (s, v) = post_beacon(
        &server,
        &batch("0_zzzzzzzz", "s", "v", vec![ev("play", 0, 0, 0.0)]),
        CHROME,
    );
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["code"], "not_found");
    let big = vec![b' '; 70 * 1024];
    assert_eq!(post_beacon(&server, &big, CHROME).0, 413);

    // A forged partner id is ignored: the entry's partner counts the view.
    let mut forged: Value = serde_json::from_slice(&full_session(&e1)).unwrap();
    forged["partner_id"] = json!(2);
    forged["unknown_field"] = json!({"nested": true});
    let forged = forged.to_string().into_bytes();
    let (s, v) = post_beacon(&server, &forged, CHROME);
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["accepted"], 7);
    // Resent as a whole (a retry): stored once.
    assert_eq!(post_beacon(&server, &forged, CHROME).0, 202);
    // Viewer 2: 5 s, no end.
    let b = batch(
        &e1,
        "sess-b",
        "viewer-2",
        vec![
            ev("view_start", 0, 1_000, 0.0),
            ev("play", 1, 1_200, 0.0),
            ev("heartbeat", 2, 6_200, 5.0),
        ],
    );
    assert_eq!(post_beacon(&server, &b, "curl/8").0, 202);
    // The other partner's entry.
    let b = batch(
        &e2,
        "sess-c",
        "viewer-3",
        vec![ev("play", 0, 0, 0.0), ev("heartbeat", 1, 3_000, 3.0)],
    );
    assert_eq!(post_beacon(&server, &b, CHROME).0, 202);

    // Accepted means durable: kill -9 right after the answer, restart.
    let late = batch(
        &e1,
        "sess-d",
        "viewer-2",
        vec![ev("play", 0, 2_000, 0.0), ev("heartbeat", 1, 4_000, 2.0)],
    );
    assert_eq!(post_beacon(&server, &late, CHROME).0, 202);
    let server = server.kill9_and_restart();
    let root = admin_token(&server);

    // (The periodic ETL may have folded them already: this runs what is left.)
    etl(&server, &root);
    // Reports need a session.
    let (s, _) = api(&server, "GET", "/api/v1/analytics/summary", None, None);
    assert_eq!(s, 401);

    let s1 = summary(&server, &root, "");
    assert_eq!(s1["plays"], 3, "{s1}");
    assert_eq!(s1["views"], 3, "{s1}");
    assert_eq!(s1["unique_viewers"], 2, "{s1}");
    // 38 s + 5 s + 2 s.
    assert!(close(&s1["minutes_viewed"], 45.0 / 60.0), "{s1}");
    assert!(close(&s1["avg_view_time_s"], 15.0), "{s1}");
    assert!(close(&s1["qoe"]["rebuffer_s"], 2.0), "{s1}");
    assert!(close(&s1["qoe"]["rebuffer_ratio"], 2.0 / 47.0), "{s1}");
    assert!(close(&s1["qoe"]["avg_bitrate_kbps"], 1200.0), "{s1}");
    // One of three VOD plays reached the end; viewer 2's first reached 5/40.
    assert!(close(&s1["drop_off"]["p100"], 1.0 / 3.0), "{s1}");
    assert!(close(&s1["drop_off"]["p25"], 1.0 / 3.0), "{s1}");
    assert!(s1["peak_concurrent"].as_i64().unwrap() >= 1, "{s1}");

    // The other partner sees its own view only, and nothing of entry 1.
    // (Sessions survive the restart: the token key is in the database.)
    let s2 = summary(&server, &other, "");
    assert_eq!(s2["plays"], 1, "{s2}");
    let s2e1 = summary(&server, &other, &format!("&entry_id={e1}"));
    assert_eq!(s2e1["plays"], 0, "{s2e1}");
    let s1e2 = summary(&server, &root, &format!("&entry_id={e2}"));
    assert_eq!(s1e2["plays"], 0, "{s1e2}");

    // A dimension: the player.
    let (s, b) = api(
        &server,
        "GET",
        "/api/v1/analytics/breakdown?dimension=player",
        Some(&root),
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"][0]["key"], "hls.js", "{b}");
    assert_eq!(b["rows"][0]["plays"], 3, "{b}");

    // Top entries with names, as JSON and CSV.
    // The default range: the last 24 hours (server time).
    let range = "limit=10";
    let (s, t) = api(
        &server,
        "GET",
        &format!("/api/v1/analytics/top-entries?{range}"),
        Some(&root),
        None,
    );
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["rows"].as_array().unwrap().len(), 1, "{t}");
    assert_eq!(t["rows"][0]["key"], e1.as_str());
    assert_eq!(t["rows"][0]["name"], "<script>alert(1)</script> show");
    let csv = http_request_with_body(
        "GET",
        &server.url(&format!("/api/v1/analytics/top-entries?{range}&format=csv")),
        &[("Authorization", &format!("Bearer {root}"))],
        None,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(csv.status, 200);
    assert!(csv.mime().starts_with("text/csv"), "{}", csv.mime());
    let text = csv.text();
    assert!(text.starts_with("key,name,views,plays"), "{text}");
    assert!(
        text.contains(&format!("\"{e1}\",\"<script>alert(1)</script> show\",3,3")),
        "{text}"
    );

    // Time series: one hour bucket.
    let (s, ts) = api(
        &server,
        "GET",
        &format!("/api/v1/analytics/timeseries?{range}"),
        Some(&root),
        None,
    );
    assert_eq!(s, 200, "{ts}");
    // One hour bucket (two if the test ran across an hour's end).
    let rows = ts["rows"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.len() <= 2, "{ts}");
    let plays: i64 = rows.iter().map(|r| r["plays"].as_i64().unwrap()).sum();
    assert_eq!(plays, 3, "{ts}");

    // A second ETL run changes nothing.
    let r = etl(&server, &root);
    assert_eq!(r["events"], 0, "{r}");
    assert_eq!(summary(&server, &root, "")["plays"], 3);

    // The OpenAPI document describes the analytics API.
    let (s, doc) = api(&server, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(s, 200);
    for p in [
        "/api/v1/analytics/events",
        "/api/v1/analytics/summary",
        "/api/v1/entries",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
    // The plugin is served.
    let js = server.get("/sdk/vela-analytics.js");
    assert_eq!(js.status, 200);
    assert!(js.text().contains("VelaAnalytics"));
}

#[test]
fn beacons_and_reports_on_sqlite() {
    scenario(Server::start());
}

#[test]
fn beacons_and_reports_on_postgres() {
    let db = pg_database("analytics");
    scenario(Server::start_with_config(&format!(
        "[database]\nurl = \"{db}\"\n"
    )));
}

#[test]
fn beacons_are_rate_limited_per_client() {
    let server =
        Server::start_with_config("[analytics]\nbeacon_rate_per_s = 0.5\nbeacon_burst = 2\n");
    let root = admin_token(&server);
    let e = entry(&server, &root, "rated");
    let mut codes = Vec::new();
    for i in 0..4 {
        let b = batch(&e, &format!("r{i}"), "v", vec![ev("play", 0, 0, 0.0)]);
        codes.push(post_beacon(&server, &b, CHROME).0);
    }
    assert_eq!(&codes[..2], &[202, 202], "{codes:?}");
    assert_eq!(codes[3], 429, "{codes:?}");
}

/// Many clients at once, each batch sent twice (a retry): every accepted
/// session is counted once and its viewing time exactly once.
#[test]
fn concurrent_beacons_are_counted_once() {
    let server = Server::start_with_config(
        "[analytics]\nbeacon_rate_per_s = 100000\nbeacon_burst = 100000\n",
    );
    let root = admin_token(&server);
    let e = entry(&server, &root, "load");
    let server = Arc::new(server);
    let accepted = Arc::new(AtomicUsize::new(0));
    const CLIENTS: usize = 24;
    const BATCHES: usize = 15;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (server, accepted, e) = (server.clone(), accepted.clone(), e.clone());
            std::thread::spawn(move || {
                for b in 0..BATCHES {
                    // A session: play, 20 heartbeats 1 s apart (20 s viewed).
                    let mut evs = vec![ev("play", 0, 0, 0.0)];
                    for k in 1..=20 {
                        evs.push(ev("heartbeat", k, k * 1000, k as f64));
                    }
                    let body = batch(&e, &format!("c{c}-b{b}"), &format!("v{c}"), evs);
                    let mut ok = false;
                    for _ in 0..2 {
                        let (s, _) = post_beacon(&server, &body, CHROME);
                        assert!(s == 202 || s == 503, "status {s}");
                        ok |= s == 202;
                    }
                    if ok {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = accepted.load(Ordering::SeqCst) as i64;
    assert!(n > 0);
    etl(&server, &root);
    let s = summary(&server, &root, "");
    assert_eq!(s["plays"].as_i64().unwrap(), n, "{s}");
    assert_eq!(s["unique_viewers"].as_i64().unwrap(), CLIENTS as i64, "{s}");
    assert!(close(&s["minutes_viewed"], n as f64 * 20.0 / 60.0), "{s}");
}
