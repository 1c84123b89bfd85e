//! Search and indexing benchmark over generated entries.
//!
//!   cargo bench -p vela-control-plane --bench search            (1,000,000 entries)
//!   VELA_BENCH_ENTRIES=100000 cargo bench -p vela-control-plane --bench search
//!
//! Phases: (1) bulk insert into SQLite (change log included); (2) bulk indexing into
//! tantivy from rows (one commit); (3) rebuild of the index from the database;
//! (4) `GET /api/v1/search` through the real router (token check, index catch-up,
//! BM25 query, rows fetched from SQLite) with one-, two- and three-word queries and a
//! filter; p50/p95/p99 latency.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tower::ServiceExt;
use vela_control_plane::db::{Db, Drm, EntryRow};
use vela_control_plane::search::SearchIndex;
use vela_control_plane::{ControlPlane, ControlPlaneConfig, PublishMode};

fn vocabulary(n: usize, rng: &mut StdRng) -> Vec<String> {
    const SYL: [&str; 24] = [
        "ka", "lo", "mi", "ne", "ro", "su", "ta", "vi", "ze", "qua", "bre", "dor", "fin", "gal",
        "hul", "jin", "kor", "lum", "mar", "nox", "pol", "ras", "sel", "tor",
    ];
    let mut v = std::collections::BTreeSet::new();
    while v.len() < n {
        let k = rng.random_range(2..=4);
        let w: String = (0..k)
            .map(|_| SYL[rng.random_range(0..SYL.len())])
            .collect();
        v.insert(w);
    }
    v.into_iter().collect()
}

/// Zipf-like pick: low indexes are much more frequent.
fn pick<'a>(vocab: &'a [String], rng: &mut StdRng) -> &'a str {
    let u: f64 = rng.random();
    let i = ((vocab.len() as f64).powf(u) as usize).saturating_sub(1);
    &vocab[i.min(vocab.len() - 1)]
}

fn sentence(vocab: &[String], rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| pick(vocab, rng))
        .collect::<Vec<_>>()
        .join(" ")
}

fn gen_entries(n: usize, vocab: &[String], rng: &mut StdRng) -> Vec<EntryRow> {
    let base = 1_700_000_000i64;
    (0..n)
        .map(|i| {
            let live = i % 10 == 0;
            let mut md = serde_json::Map::new();
            md.insert(
                "speaker".into(),
                serde_json::Value::String(sentence(vocab, rng, 2)),
            );
            md.insert("year".into(), serde_json::json!(1990 + (i % 35)));
            let name_len = rng.random_range(3..=6);
            let desc_len = rng.random_range(10..=25);
            EntryRow {
                id: format!("0_{i:08}"),
                partner_id: if i % 100 == 0 { 2 } else { 1 },
                kind: if live { "live" } else { "media" }.into(),
                name: sentence(vocab, rng, name_len),
                description: sentence(vocab, rng, desc_len),
                tags: (0..rng.random_range(1..=4))
                    .map(|_| pick(vocab, rng).to_string())
                    .collect(),
                categories: vec![format!("cat{}>sub{}", i % 20, i % 7)],
                metadata: md,
                status: if live { "offline" } else { "ready" }.into(),
                duration_s: Some((i % 3600) as f64),
                thumbnail_url: None,
                stream_key_hash: live.then(|| format!("h{i}")),
                stream_key_sealed: None,
                recording: false,
                dvr_window_s: 0,
                conversion_profile_id: None,
                drm: Drm::default(),
                created_at: base + i as i64,
                updated_at: base + i as i64,
                status_reason: None,
                media: None,
                content_name: None,
                source_entry_id: None,
                recorded_entry_id: None,
                expires_at: None,
                stored_bytes: None,
            }
        })
        .collect()
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run small.
    let n: usize = std::env::var("VELA_BENCH_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            1_000_000
        } else {
            2_000
        });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n));
}

async fn run(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(42);
    let vocab = vocabulary(20_000, &mut rng);
    let t = Instant::now();
    let entries = gen_entries(n, &vocab, &mut rng);
    println!(
        "generated {n} entries in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // (1) Database bulk insert.
    let db = Db::open(dir.path(), None).await.unwrap();
    let t = Instant::now();
    for chunk in entries.chunks(10_000) {
        db.insert_entries(chunk).await.unwrap();
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "sqlite bulk insert: {n} entries in {dt:.1} s = {:.0} entries/s",
        n as f64 / dt
    );
    let max_seq = db.max_change_seq().await.unwrap();

    // (2) Bulk indexing from rows.
    let (idx, _) = SearchIndex::open_dir(&dir.path().join("search"), 512_000_000).unwrap();
    let t = Instant::now();
    for chunk in entries.chunks(50_000) {
        idx.add_new(chunk).unwrap();
    }
    idx.commit(max_seq).unwrap();
    let dt = t.elapsed().as_secs_f64();
    println!(
        "tantivy bulk indexing: {n} entries in {dt:.1} s = {:.0} entries/s (one commit)",
        n as f64 / dt
    );
    assert_eq!(idx.num_docs() as usize, n);
    drop(idx);
    drop(entries);

    // (3) Rebuild from the database (what a missing or stale index costs at start).
    let rebuild_dir = tempfile::tempdir().unwrap();
    let (ridx, _) = SearchIndex::open_dir(rebuild_dir.path(), 256_000_000).unwrap();
    let t = Instant::now();
    ridx.rebuild(&db).await.unwrap();
    let dt = t.elapsed().as_secs_f64();
    println!(
        "rebuild from SQLite: {n} entries in {dt:.1} s = {:.0} entries/s",
        n as f64 / dt
    );
    drop(ridx);
    drop(db);

    // (4) Searches through the router.
    let cp = ControlPlane::open(ControlPlaneConfig {
        data_dir: dir.path().to_path_buf(),
        database_url: None,
        publish_mode: PublishMode::Auto,
        public_http_base: "http://127.0.0.1:8080".into(),
        public_rtmp_base: "rtmp://127.0.0.1:1935/live".into(),
        media: Default::default(),
    })
    .await
    .unwrap();
    assert_eq!(
        cp.search_index().num_docs() as usize,
        n,
        "index reused, not rebuilt"
    );
    let router = cp.router();
    let secret = std::fs::read_to_string(dir.path().join("admin-secret")).unwrap();
    let body = serde_json::json!({"partner_id":1,"secret":secret.trim()}).to_string();
    let resp = router
        .clone()
        .oneshot(
            Request::post("/api/v1/sessions")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let token = v["token"].as_str().unwrap().to_string();

    let mut qrng = StdRng::seed_from_u64(7);
    let queries: Vec<String> = (0..2000)
        .map(|i| {
            let words = 1 + i % 3;
            let mut q = (0..words)
                .map(|_| pick(&vocab, &mut qrng).to_string())
                .collect::<Vec<_>>()
                .join("%20");
            if i % 5 == 0 {
                q.push_str("&type=media");
            }
            q
        })
        .collect();
    // Warm-up.
    for q in queries.iter().take(100) {
        let _ = search(&router, &token, q).await;
    }
    let mut lat = Vec::with_capacity(queries.len());
    let mut hits = 0u64;
    let t = Instant::now();
    for q in &queries {
        let t0 = Instant::now();
        hits += search(&router, &token, q).await;
        lat.push(t0.elapsed());
    }
    let total = t.elapsed().as_secs_f64();
    println!(
        "search over {n} entries via GET /api/v1/search ({} queries, page_size 20, avg {:.0} hits): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.0} queries/s sequential",
        queries.len(),
        hits as f64 / queries.len() as f64,
        pct(&mut lat, 0.50),
        pct(&mut lat, 0.95),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0),
        queries.len() as f64 / total
    );
}

async fn search(router: &axum::Router, token: &str, q: &str) -> u64 {
    let resp = router
        .clone()
        .oneshot(
            Request::get(format!("/api/v1/search?q={q}&page_size=20"))
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    v["total_count"].as_u64().unwrap_or(0)
}
