//! Entry points for the cargo-fuzz targets in `fuzz/` (and the seeded tests):
//! arbitrary bytes, decoded into packager input, must never panic.

use std::sync::Arc;

use bytes::Bytes;
use vela_media::{AudioCodec, CodecConfig, Frame, MediaEvent, Track, VideoCodec};

use crate::{boxes, dash, hls, smooth, LivePackager, PackagerConfig};

/// Decodes `data` into a run of media events (tracks, frames with arbitrary
/// timestamps, flags and sizes, discontinuities, the end), feeds them to a
/// live packager, and renders every manifest and fragment form after each
/// change.
pub fn packager_events(data: &[u8]) {
    let mut p = LivePackager::new(PackagerConfig {
        dvr_window: 20.0,
        dvr_memory: 2.0,
        ..Default::default()
    });
    let tracks = Arc::new(vec![
        Track {
            id: 1,
            timescale: 90000,
            config: CodecConfig::Video {
                codec: VideoCodec::H264,
                width: 64,
                height: 64,
                frame_rate: None,
                record: Bytes::from_static(&[
                    1, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 0x42, 1, 0, 1, 0x68,
                ]),
            },
            bitrate: None,
        },
        Track {
            id: 2,
            timescale: 44100,
            config: CodecConfig::Audio {
                codec: AudioCodec::Aac,
                sample_rate: 44100,
                channels: 2,
                specific_config: Bytes::from_static(&[0x12, 0x10]),
            },
            bitrate: None,
        },
    ]);
    p.push(MediaEvent::Tracks(tracks.clone()), 0);
    let mut now = 0i64;
    for chunk in data.chunks(8) {
        let b = |i: usize| chunk.get(i).copied().unwrap_or(0);
        now += i64::from(b(7));
        let event = match b(0) % 16 {
            0 => MediaEvent::Discontinuity,
            1 => MediaEvent::Tracks(tracks.clone()),
            2 if b(1) == 0xff => MediaEvent::End,
            _ => MediaEvent::Frame(Frame {
                track_id: u32::from(b(1) % 3),
                dts: i64::from(i32::from_be_bytes([b(2), b(3), b(4), b(5)])),
                cts_offset: i32::from(i8::from_ne_bytes([b(6)])) * 100,
                keyframe: b(1) & 0x80 != 0,
                data: Bytes::copy_from_slice(chunk),
            }),
        };
        if p.push(event, now).any() {
            // The DVR spool's protocol: store some segments (evict them),
            // lose others (never evicted), forget what left the window.
            for job in p.segments_to_spool() {
                if job.msn % 3 != 0 {
                    p.evict(&job.rid, job.msn);
                }
            }
            let _ = p.take_spool_removals();
            let pres = p.presentation();
            let _ = hls::master_playlist(&pres);
            for r in pres.renditions() {
                let _ = hls::media_playlist(&pres, &r.id, hls::Skip(b(6) & 1 == 1));
            }
            let _ = dash::mpd(&pres, now, &dash::MpdOptions::default());
            let _ = smooth::client_manifest(&pres);
            if let Some(s) = pres.lead().and_then(|l| l.segments.back()) {
                let t = (s.start.max(0) as u64) * smooth::TIMESCALE / 90000;
                if let Some((r, seg)) =
                    smooth::fragment_source(&pres, vela_media::MediaKind::Video, t)
                {
                    let parts = p.rendition(&r.id).and_then(|l| l.segment_data(seg.msn));
                    if let Ok(samples) = smooth::samples_of_parts(parts.into_iter().flatten()) {
                        let _ = smooth::fragment(r, seg, samples);
                    }
                }
            }
        }
    }
}

/// Reads arbitrary bytes back as a CMAF fragment (the Smooth re-boxing path).
pub fn read_fragment(data: &[u8]) {
    let _ = boxes::read_fragment(&Bytes::copy_from_slice(data));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::tests::Rng;

    #[test]
    fn seeded_random_inputs_never_panic() {
        let iterations: usize = std::env::var("VELA_FUZZ_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for _ in 0..iterations {
            let len = (rng.next() % 4096) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            packager_events(&data);
            read_fragment(&data);
        }
    }

    #[test]
    fn mutated_real_fragments_never_panic() {
        let real = boxes::fragment(
            3,
            1,
            90_000,
            &[boxes::Sample {
                duration: 3000,
                cts_offset: 3000,
                keyframe: true,
                data: Bytes::from_static(b"0123456789"),
            }],
        );
        let mut rng = Rng(77);
        for _ in 0..5000 {
            let mut m = real.to_vec();
            for _ in 0..(1 + rng.next() % 4) {
                let i = (rng.next() as usize) % m.len();
                m[i] = rng.next() as u8;
            }
            read_fragment(&m);
        }
    }
}
