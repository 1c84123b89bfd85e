//! Entry points of the cargo-fuzz targets (`fuzz/fuzz_targets/webrtc_*.rs`),
//! also run on stable by the tests below with seeded random and mutated
//! inputs, so CI checks the no-panic property.

use std::time::{Duration, Instant};

use crate::assemble::VideoAssembler;

/// Byte 0 picks the cut sizes and the gap pattern; the rest is cut into
/// depacketised pictures that go through the WHIP video assembler.
pub fn h264_pictures(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut a = VideoAssembler::new(Duration::from_secs(2));
    let mut out = Vec::new();
    let cut = usize::from(mode % 64) + 1;
    let now = Instant::now();
    for (i, picture) in rest.chunks(cut * 8).enumerate() {
        let contiguous = (mode >> 6) == 0 || i % usize::from(mode >> 6) != 0;
        a.push((i as u64) * 3000, contiguous, picture, &mut out);
        let _ = a.keyframe_request(now + Duration::from_millis(i as u64 * 33));
        out.clear();
    }
}

/// A WHIP `PATCH` body (trickle ICE fragment).
pub fn trickle_fragment(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::sdpfrag::parse(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avc::tests::{annex_b, PPS, SPS};

    /// xorshift: deterministic inputs without a dependency.
    fn bytes(seed: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed as u8
            })
            .collect()
    }

    #[test]
    fn random_and_mutated_pictures_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let valid = annex_b(&[SPS, PPS, &[0x65, 0x88, 0x84, 0x00, 0x10]]);
        for i in 0..2000 {
            let mut input = vec![(i % 256) as u8];
            if i % 2 == 0 {
                let mut v = valid.clone();
                let flips = bytes(&mut seed, 4);
                for f in flips {
                    let at = usize::from(f) % v.len();
                    v[at] ^= f | 1;
                }
                input.extend(v.iter().cycle().take(v.len() * 3));
            } else {
                let n = usize::from(bytes(&mut seed, 1)[0]) * 4;
                input.extend(bytes(&mut seed, n));
            }
            h264_pictures(&input);
        }
    }

    #[test]
    fn random_fragments_never_panic() {
        let mut seed = 42u64;
        let lines = [
            "a=ice-ufrag:abcd\r\n",
            "a=candidate:1 1 udp 2122260223 127.0.0.1 9 typ host\r\n",
            "a=candidate:",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
            "a=end-of-candidates\r\n",
        ];
        for _ in 0..2000 {
            let mut text = Vec::new();
            for b in bytes(&mut seed, 6) {
                text.extend_from_slice(lines[usize::from(b) % lines.len()].as_bytes());
                if b % 7 == 0 {
                    text.push(b);
                }
            }
            trickle_fragment(&text);
        }
    }
}
