//! AES throughput over 1 MiB buffers, measured two ways that a busy machine
//! does not distort: `cpu` divides the bytes processed by the thread's own
//! CPU time (user+system, /proc/thread-self/stat), the way `openssl speed`
//! measures by default; `best` is the fastest of N wall-clock runs.
//!
//! `cargo run --release -p vela-drm --example aes_speed [seconds]`
//! prints `name method GB/s` lines.

use std::time::Instant;

use vela_drm::crypt;

/// This thread's CPU time in seconds (Linux; clock ticks are 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|s| s.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// Bytes per CPU second over at least `secs` of CPU time, in GB/s.
fn per_cpu_second(secs: f64, buf: &mut [u8], f: &impl Fn(&mut [u8])) -> f64 {
    let start = cpu_seconds();
    let mut bytes = 0usize;
    loop {
        for _ in 0..64 {
            f(buf);
            bytes += buf.len();
        }
        let used = cpu_seconds() - start;
        if used >= secs {
            return bytes as f64 / used / 1e9;
        }
    }
}

fn best_of(runs: usize, buf: &mut [u8], f: &impl Fn(&mut [u8])) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f(buf);
        best = best.min(t.elapsed().as_secs_f64());
    }
    buf.len() as f64 / best / 1e9
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let key = [0x2b; 16];
    let iv = [0xf0; 16];
    let mut buf = vec![0x5au8; 1 << 20];
    println!("backend {}", crypt::aes_backend());
    let ctr = |b: &mut [u8]| crypt::aes128_ctr(&key, &iv, b);
    let cbc = |b: &mut [u8]| {
        crypt::aes128_cbc_blocks(&key, &iv, b);
    };
    println!("ctr cpu {:.3}", per_cpu_second(secs, &mut buf, &ctr));
    println!("ctr best {:.3}", best_of(2000, &mut buf, &ctr));
    println!("cbc cpu {:.3}", per_cpu_second(secs, &mut buf, &cbc));
    println!("cbc best {:.3}", best_of(500, &mut buf, &cbc));
}
