//! Analytics benchmark: beacon ingest, acceptance-to-durability, ETL, and
//! reports over the rollups against the same question on the raw events.
//!
//!   cargo bench -p vela-control-plane --bench analytics               (SQLite, 1,000,000 events)
//!   VELA_BENCH_EVENTS=10000000 cargo bench -p vela-control-plane --bench analytics
//!   VELA_BENCH_PG_URL=postgres://… cargo bench -p vela-control-plane --bench analytics
//!
//! Phases:
//! 1. Ingest: 64 concurrent clients post beacons of 50 events through the
//!    real router (`oneshot`: parse, checks, entry lookup, group commit);
//!    every answer comes after the commit, so its latency is the time from
//!    acceptance to durability. Peer: the same batches, each committed in
//!    its own transaction by its request (no group commit).
//! 2. Bulk load of N events (sessions of 20 events over 100 entries and 24
//!    hours), then the ETL folds them: events/s.
//! 3. Reports: `GET /api/v1/analytics/summary` (rollups and view facts)
//!    against plays and unique viewers counted on the raw events table,
//!    p50/p95 of each, and the ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use vela_control_plane::analytics::reports::{self, Filter};
use vela_control_plane::analytics::store::{commit_rows, EventRow};
use vela_control_plane::analytics::{etl, now_ms, Analytics, AnalyticsConfig};
use vela_control_plane::db::{Drm, EntryRow};
use vela_control_plane::{ControlPlane, ControlPlaneConfig, PublishMode};

const ENTRIES: usize = 100;

fn entry_row(i: usize) -> EntryRow {
    EntryRow {
        id: format!("0_b{i:07}"),
        partner_id: 1,
        kind: "media".into(),
        name: format!("bench {i}"),
        description: String::new(),
        tags: vec![],
        categories: vec![],
        metadata: Default::default(),
        status: "ready".into(),
        duration_s: Some(600.0),
        thumbnail_url: None,
        stream_key_hash: None,
        stream_key_sealed: None,
        recording: false,
        dvr_window_s: 0,
        conversion_profile_id: None,
        drm: Drm::default(),
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
        status_reason: None,
        media: None,
        content_name: None,
        source_entry_id: None,
        recorded_entry_id: None,
        expires_at: None,
        stored_bytes: None,
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn beacon(entry: usize, session: &str, first_seq: i64, n: i64) -> String {
    let t0 = 1_764_000_000_000i64;
    let evs: Vec<String> = (first_seq..first_seq + n)
        .map(|s| {
            let kind = if s == 0 { "play" } else { "heartbeat" };
            format!(
                r#"{{"type":"{kind}","seq":{s},"t":{},"position":{s},"duration":600,"bitrate_kbps":1500}}"#,
                t0 + s * 1000
            )
        })
        .collect();
    format!(
        r#"{{"entry_id":"0_b{entry:07}","session_id":"{session}","viewer_id":"v{entry}","player":"hls.js","format":"hls","events":[{}]}}"#,
        evs.join(",")
    )
}

fn row(partner: i64, entry: usize, session: &str, seq: i64, server_ms: i64) -> EventRow {
    EventRow {
        partner_id: partner,
        entry_id: format!("0_b{entry:07}"),
        session_id: session.to_string(),
        seq,
        kind: if seq == 0 { "play" } else { "heartbeat" },
        client_ms: 1_764_000_000_000 + seq * 1000,
        server_ms,
        position_s: Some(seq as f64),
        duration_s: Some(600.0),
        bitrate_kbps: Some(1500),
        value_ms: None,
        detail: None,
        viewer_id: format!("v{entry}"),
        player: "hls.js".into(),
        format: "hls".into(),
        live: false,
        device: "desktop",
        os: "Linux",
        browser: "Chrome",
        country: "unknown".into(),
    }
}

async fn ingest(
    router: axum::Router,
    clients: usize,
    per_client: usize,
    tag: &str,
) -> (f64, Vec<f64>) {
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let router = router.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for b in 0..per_client {
                let body = beacon(c % ENTRIES, &format!("{tag}-{c}-{b}"), 0, 50);
                let req = Request::post("/api/v1/analytics/events")
                    .header("content-type", "text/plain")
                    .body(Body::from(body))
                    .unwrap();
                let t = Instant::now();
                let res = router.clone().oneshot(req).await.unwrap();
                assert_eq!(res.status(), 202);
                let _ = res.into_body().collect().await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let events = (clients * per_client * 50) as f64;
    (events / t.elapsed().as_secs_f64(), lat)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("VELA_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 20_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n, full));
}

async fn run(n: usize, full: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pg = std::env::var("VELA_BENCH_PG_URL").ok();
    let cp = ControlPlane::open(ControlPlaneConfig {
        data_dir: dir.path().to_path_buf(),
        database_url: pg.clone(),
        publish_mode: PublishMode::Auto,
        public_http_base: "http://127.0.0.1:8080".into(),
        public_rtmp_base: "rtmp://127.0.0.1:1935/live".into(),
        media: Default::default(),
    })
    .await
    .unwrap();
    let db = cp.db().clone();
    let rows: Vec<EntryRow> = (0..ENTRIES).map(entry_row).collect();
    db.insert_entries(&rows).await.unwrap();
    println!(
        "backend: {}",
        if pg.is_some() { "PostgreSQL" } else { "SQLite" }
    );

    // (1) Ingest through the router, group commit vs a commit per request.
    let an = Analytics::start(
        cp.clone(),
        AnalyticsConfig {
            rate_per_s: 1e9,
            burst: 1e9,
            etl_interval: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    let router = an.router();
    let per_client = if full { 60 } else { 4 };
    let (eps, mut lat) = ingest(router.clone(), 64, per_client, "g").await;
    println!(
        "ingest, group commit: {eps:.0} events/s; acceptance-to-durability p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99),
        percentile(&mut lat, 1.0)
    );
    // Peer: each request commits its own batch.
    let t = Instant::now();
    let db2 = Arc::new(db.clone());
    let mut tasks = Vec::new();
    for c in 0..64 {
        let db = db2.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for b in 0..per_client {
                let rows: Vec<EventRow> = (0..50)
                    .map(|s| row(1, c % ENTRIES, &format!("p-{c}-{b}"), s, now_ms()))
                    .collect();
                let t = Instant::now();
                commit_rows(&db, rows).await.unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut plat = Vec::new();
    for t in tasks {
        plat.extend(t.await.unwrap());
    }
    let peps = (64 * per_client * 50) as f64 / t.elapsed().as_secs_f64();
    println!(
        "ingest, a commit per request (peer): {peps:.0} events/s; p50 {:.1} ms, p99 {:.1} ms; group commit / peer = {:.2}",
        percentile(&mut plat, 0.5),
        percentile(&mut plat, 0.99),
        eps / peps
    );

    // (2) Bulk load, then the ETL.
    let now = now_ms();
    let t = Instant::now();
    let sessions = n / 20;
    let mut batch = Vec::with_capacity(20_000);
    for s in 0..sessions {
        let entry = (s * 7919) % ENTRIES;
        let start = now - 86_400_000 + (s as i64 * 86_400_000 / sessions.max(1) as i64);
        let sid = format!("bulk-{s}");
        for seq in 0..20 {
            batch.push(row(1, entry, &sid, seq, start + seq * 1000));
        }
        if batch.len() >= 20_000 {
            commit_rows(&db, std::mem::take(&mut batch)).await.unwrap();
        }
    }
    if !batch.is_empty() {
        commit_rows(&db, batch).await.unwrap();
    }
    println!(
        "bulk load: {n} events in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let r = etl::run_until_caught_up(&db).await.unwrap();
    let dt = t.elapsed().as_secs_f64();
    println!(
        "ETL: {} events into {} view updates in {dt:.1} s = {:.0} events/s",
        r.events,
        r.views,
        r.events as f64 / dt
    );

    // (3) Reports: rollups (through the router) against the raw events.
    let secret = std::fs::read_to_string(dir.path().join("admin-secret")).unwrap();
    let api = cp.router();
    let req = Request::post("/api/v1/sessions")
        .header("content-type", "application/json")
        .body(Body::from(format!(
            r#"{{"partner_id":1,"secret":"{}","role":"admin","expiry_s":3600}}"#,
            secret.trim()
        )))
        .unwrap();
    let res = api.clone().oneshot(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let token = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut rl = Vec::new();
    let mut plays = 0;
    for i in 0..if full { 200 } else { 20 } {
        let q = if i % 2 == 0 {
            String::new()
        } else {
            format!("?entry_id=0_b{:07}", i % ENTRIES)
        };
        let req = Request::get(format!("/api/v1/analytics/summary{q}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let t = Instant::now();
        let res = router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        rl.push(t.elapsed().as_secs_f64() * 1000.0);
        if i == 0 {
            plays = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["plays"]
                .as_i64()
                .unwrap();
        }
    }
    let f = Filter {
        partner_id: 1,
        from_ms: now - 86_400_000 - 3_600_000,
        to_ms: now + 1000,
        entry_id: None,
        only: None,
    };
    let mut raw = Vec::new();
    let mut raw_plays = 0;
    for _ in 0..if full { 10 } else { 3 } {
        let t = Instant::now();
        raw_plays = reports::plays_from_raw(&db, &f).await.unwrap().0;
        raw.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (p50, p95) = (percentile(&mut rl, 0.5), percentile(&mut rl, 0.95));
    let (r50, r95) = (percentile(&mut raw, 0.5), percentile(&mut raw, 0.95));
    println!(
        "reports over {n} events: summary (rollups) p50 {p50:.1} ms, p95 {p95:.1} ms ({plays} plays); \
         plays+viewers on raw events p50 {r50:.1} ms, p95 {r95:.1} ms ({raw_plays} plays); raw / rollup p95 = {:.1}",
        r95 / p95.max(1e-6)
    );
}
