//! Entry points for the cargo-fuzz target `drm_fragment` (in `fuzz/`), kept
//! in the crate so that a stable test drives the same code with seeded
//! inputs. Nothing here may panic, whatever the bytes.

use bytes::Bytes;
use vela_media::{AudioCodec, CodecConfig, VideoCodec};

use crate::{cenc, clearkey, ContentKey, Scheme, SystemId};

const KEY: ContentKey = ContentKey {
    period: 0,
    kid: [0x11; 16],
    key: [0x22; 16],
    iv: [0x33; 16],
};

/// Byte 0 picks the scheme (bit 0), the codec (bits 1-2: H.264, H.265,
/// AAC, AV1) and the NAL length size (bits 3-4, plus one); the rest goes
/// through the fragment rewriter, the init rewriter and the ClearKey parser.
pub fn fragment(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let scheme = if sel & 1 == 0 {
        Scheme::Cenc
    } else {
        Scheme::Cbcs
    };
    let length_bits = (sel >> 3) & 3;
    let video = |codec, record: Vec<u8>| CodecConfig::Video {
        codec,
        width: 320,
        height: 240,
        frame_rate: None,
        record: Bytes::from(record),
    };
    let cfg = match (sel >> 1) & 3 {
        0 => video(VideoCodec::H264, vec![1, 0x64, 0, 0x1e, 0xfc | length_bits]),
        1 => {
            let mut r = vec![0u8; 23];
            r[21] = length_bits;
            video(VideoCodec::H265, r)
        }
        2 => CodecConfig::Audio {
            codec: AudioCodec::Aac,
            sample_rate: 48000,
            channels: 2,
            specific_config: Bytes::from_static(&[0x11, 0x90]),
        },
        _ => video(VideoCodec::Av1, vec![0x81, 0, 0, 0]),
    };
    let _ = cenc::protect_fragment(rest, scheme, &KEY, &cfg, u64::from(sel));
    let _ = cenc::protect_init(rest, scheme, &KEY, &SystemId::ALL);
    let _ = clearkey::license_response(rest, |_| Some([0; 16]));
}

#[cfg(test)]
mod tests {
    /// The fuzz target's entry point over a few thousand seeded random
    /// inputs, some shaped like box sequences (plausible size fields).
    #[test]
    fn seeded_inputs_never_panic() {
        let mut s: u64 = 0x243f_6a88_85a3_08d3;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for round in 0..5000 {
            let n = (next() % 400) as usize;
            let mut v: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            if round % 2 == 0 && v.len() > 20 {
                // A moof-looking header with a size inside the input.
                let size = (next() as usize % v.len()) as u32;
                v[1..5].copy_from_slice(&size.to_be_bytes());
                v[5..9].copy_from_slice(if round % 4 == 0 { b"moof" } else { b"ftyp" });
            }
            super::fragment(&v);
        }
    }
}
