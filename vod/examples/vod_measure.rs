//! Measures a stored asset as the origin would serve it, for
//! `benches/vod/run`: the time to index it ([`MediaIndex::open`]), the
//! index's memory ([`MediaIndex::heap_size`]) and the time to build every
//! fragment once ([`MediaIndex::fragment`]: the reads of the sample tables'
//! slices and of the samples from the file, and the `moof`+`mdat`). Each
//! segment is built once per round, so no fragment cache is involved; the
//! file's pages are in the OS page cache after the first round (as for any
//! asset being watched), which is why the first round is reported apart.
//!
//! ```sh
//! cargo run --release -p vela-vod --example vod_measure -- FILE [--target SECS] [--rounds N]
//! ```
//!
//! Prints one JSON object on stdout.

use std::fs::File;
use std::time::{Duration, Instant};

use vela_media::MediaKind;
use vela_vod::{IndexOptions, MediaIndex};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut target = 4.0f64;
    let mut rounds = 5u32;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--target" => target = parse(args.next(), "--target"),
            "--rounds" => rounds = parse(args.next(), "--rounds"),
            _ => path = Some(a),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: vod_measure FILE [--target SECS] [--rounds N]");
        std::process::exit(2);
    };
    let file = File::open(&path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    let opts = IndexOptions {
        segment_target: Duration::from_secs_f64(target),
    };
    let t0 = Instant::now();
    let index = MediaIndex::open(&file, &opts).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    let open_ms = ms(t0.elapsed());

    let tracks: Vec<(u32, MediaKind, u32)> = index
        .tracks()
        .map(|t| (t.id(), t.kind(), t.sample_count))
        .collect();
    let video = tracks.iter().find(|t| t.1 == MediaKind::Video).map(|t| t.0);
    let n = index.segment_count();

    // Per segment: the video fragment alone, and all tracks' fragments.
    let mut first_video = Vec::new();
    let mut first_all = Vec::new();
    let mut warm_video = Vec::new();
    let mut warm_all = Vec::new();
    let mut video_bytes = 0u64;
    for round in 0..rounds.max(1) {
        for seg in 0..n {
            let mut all = Duration::ZERO;
            for &(id, _, _) in &tracks {
                let t = Instant::now();
                let frag = index
                    .fragment(&file, id, seg)
                    .unwrap_or_else(|e| fail(&format!("segment {seg} track {id}: {e}")));
                let d = t.elapsed();
                std::hint::black_box(&frag);
                all += d;
                if Some(id) == video {
                    if round == 0 {
                        first_video.push(ms(d));
                        video_bytes += frag.len() as u64;
                    } else {
                        warm_video.push(ms(d));
                    }
                }
            }
            if round == 0 {
                first_all.push(ms(all));
            } else {
                warm_all.push(ms(all));
            }
        }
    }

    let track_json: Vec<String> = tracks
        .iter()
        .map(|(id, kind, samples)| {
            format!(r#"{{"id":{id},"kind":"{kind:?}","samples":{samples}}}"#)
        })
        .collect();
    println!(
        concat!(
            r#"{{"file":{:?},"file_bytes":{},"duration_s":{:.3},"segment_target_s":{},"#,
            r#""segments":{},"tracks":[{}],"open_ms":{:.3},"heap_size":{},"#,
            r#""video_fragment_bytes_avg":{},"rounds":{},"#,
            r#""first_round":{{"video":{},"all_tracks":{}}},"#,
            r#""later_rounds":{{"video":{},"all_tracks":{}}}}}"#
        ),
        path,
        index.file_len(),
        index.duration_secs(),
        target,
        n,
        track_json.join(","),
        open_ms,
        index.heap_size(),
        video_bytes / u64::from(n.max(1)),
        rounds.max(1),
        stats(first_video),
        stats(first_all),
        stats(warm_video),
        stats(warm_all),
    );
}

/// `{"n":…,"median_ms":…,"p95_ms":…,"max_ms":…}` (nearest-rank p95).
fn stats(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "null".into();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
    format!(
        r#"{{"n":{},"median_ms":{:.3},"p95_ms":{:.3},"max_ms":{:.3}}}"#,
        v.len(),
        at(0.5),
        at(0.95),
        v[v.len() - 1]
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn parse<T: std::str::FromStr>(v: Option<String>, flag: &str) -> T {
    v.and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(&format!("{flag} needs a number")))
}

fn fail(msg: &str) -> ! {
    eprintln!("vod_measure: {msg}");
    std::process::exit(1);
}
