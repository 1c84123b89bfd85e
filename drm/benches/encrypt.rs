//! AES throughput of the code paths Vela encrypts with, over 1 MiB buffers:
//! CTR ('cenc', one keystream), CBC (HLS AES-128 and 'cbcs' audio: whole
//! blocks, in place), the 'cbcs' 1:9 video pattern, and a whole 'cenc'
//! fragment rewrite. `benches/drm/run` compares the first two with
//! `openssl speed -evp`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use vela_drm::crypt;

const MB: usize = 1 << 20;
const KEY: [u8; 16] = [0x2b; 16];
const IV: [u8; 16] = [0xf0; 16];

fn aes(c: &mut Criterion) {
    let mut buf = vec![0x5au8; MB];
    let mut g = c.benchmark_group("aes128");
    g.throughput(Throughput::Bytes(MB as u64));
    g.bench_function("ctr_1MiB", |b| {
        b.iter(|| crypt::aes128_ctr(black_box(&KEY), black_box(&IV), black_box(&mut buf)))
    });
    g.bench_function("cbc_1MiB", |b| {
        b.iter(|| crypt::aes128_cbc_blocks(black_box(&KEY), black_box(&IV), black_box(&mut buf)))
    });
    g.bench_function("cbcs_pattern_1MiB", |b| {
        b.iter(|| {
            crypt::aes128_cbcs_pattern(black_box(&KEY), black_box(&IV), 1, 9, black_box(&mut buf))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = aes
}
criterion_main!(benches);
