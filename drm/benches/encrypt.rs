//! AES throughput of the code paths Vela encrypts with, over 1 MiB buffers:
//! CTR ('cenc', one keystream), CBC (HLS AES-128 and 'cbcs' audio: whole
//! blocks, in place), the 'cbcs' 1:9 video pattern, and a whole 'cenc'
//! fragment rewrite. `benches/drm/run` compares the first two with
//! `openssl speed -evp`.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use vela_drm::{cenc, crypt, ContentKey, Scheme};
use vela_media::{CodecConfig, VideoCodec};
use vela_packager::boxes::{fragment, Sample};

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

/// A whole fragment rewrite: 30 H.264-shaped samples (~1 MiB) through
/// parse, subsample map, encryption and the new moof.
fn fragments(c: &mut Criterion) {
    let key = ContentKey {
        period: 0,
        kid: [1; 16],
        key: KEY,
        iv: IV,
    };
    let cfg = CodecConfig::Video {
        codec: VideoCodec::H264,
        width: 1280,
        height: 720,
        frame_rate: None,
        record: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff]),
    };
    let samples: Vec<Sample> = (0..30)
        .map(|i| {
            let len = 34_000usize + i * 100;
            let mut d = Vec::with_capacity(len + 30);
            d.extend_from_slice(&10u32.to_be_bytes());
            d.extend_from_slice(&[6; 10]); // SEI
            d.extend_from_slice(&(len as u32).to_be_bytes());
            d.push(if i == 0 { 0x65 } else { 0x41 });
            d.resize(d.len() + len - 1, 0x5a);
            Sample {
                duration: 3000,
                cts_offset: 0,
                keyframe: i == 0,
                data: Bytes::from(d),
            }
        })
        .collect();
    let frag = fragment(1, 1, 0, &samples);
    let mut g = c.benchmark_group("fragment");
    g.throughput(Throughput::Bytes(frag.len() as u64));
    for scheme in [Scheme::Cenc, Scheme::Cbcs] {
        g.bench_function(format!("{}_1MiB_h264", scheme.as_str()), |b| {
            b.iter(|| cenc::protect_fragment(black_box(&frag), scheme, &key, &cfg, 7).unwrap())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = aes, fragments
}
criterion_main!(benches);
