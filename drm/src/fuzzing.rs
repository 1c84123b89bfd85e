//! Entry points for the cargo-fuzz target `drm_fragment` (in `fuzz/`), kept
//! in the crate so that a stable test drives the same code with seeded
//! inputs. Nothing here may panic, whatever the bytes.

use bytes::Bytes;
use vela_media::{AudioCodec, CodecConfig, VideoCodec};

use crate::crypt::CtrStream;
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

/// Differential target `aes_ctr`: bytes 0-15 are the key, 16-31 the IV
/// (near-wrap counters are as likely as any), byte 32 the size of the pieces
/// the rest is fed in; the stream [`CtrStream::new`] picks (AES-NI on
/// x86_64) must equal the `ctr` crate's. Unlike the other entry points this
/// one panics on purpose: a difference is the bug it looks for.
pub fn ctr_stream(data: &[u8]) {
    if data.len() < 33 {
        return;
    }
    let (key, rest) = data.split_at(16);
    let (iv, rest) = rest.split_at(16);
    let (key, iv): ([u8; 16], [u8; 16]) = match (key.try_into(), iv.try_into()) {
        (Ok(k), Ok(i)) => (k, i),
        _ => return,
    };
    let piece = usize::from(rest[0]).max(1);
    let mut want = rest[1..].to_vec();
    CtrStream::portable(&key, &iv).apply(&mut want);
    let mut got = rest[1..].to_vec();
    let mut s = CtrStream::new(&key, &iv);
    for p in got.chunks_mut(piece) {
        s.apply(p);
    }
    assert_eq!(got, want, "AES-CTR engines differ");
}

#[cfg(test)]
mod tests {
    /// A xorshift64 generator: seeded, repeatable inputs for the targets.
    fn xorshift(mut s: u64) -> impl FnMut() -> u64 {
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// The fuzz target's entry point over a few thousand seeded random
    /// inputs, some shaped like box sequences (plausible size fields).
    #[test]
    fn seeded_inputs_never_panic() {
        let mut next = xorshift(0x243f_6a88_85a3_08d3);
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

    /// The `aes_ctr` target over seeded inputs; every fourth IV sits a few
    /// blocks before the 64-bit carry.
    #[test]
    fn seeded_ctr_streams_agree() {
        let mut next = xorshift(0x1319_8a2e_0370_7344);
        for round in 0..2000 {
            let n = 33 + (next() % 700) as usize;
            let mut v: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            if round % 4 == 0 {
                v[24..32].copy_from_slice(&(u64::MAX - next() % 12).to_be_bytes());
            }
            super::ctr_stream(&v);
        }
    }
}
