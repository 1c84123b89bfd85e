//! Entry point for the cargo-fuzz target `thumbnail_index` (in `fuzz/`),
//! kept in the crate so that a stable test drives the same code with seeded
//! inputs. Nothing here may panic, whatever the bytes.

use bytes::Bytes;

use crate::fmp4;

/// Byte 0 picks where the rest is cut into pieces (every `1 + byte 0`
/// bytes, 0 for one piece); the pieces go through the fMP4 index, and a
/// successful index answers a few "which frame is shown" questions.
pub fn fmp4_index(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let pieces: Vec<Bytes> = if sel == 0 {
        vec![Bytes::copy_from_slice(rest)]
    } else {
        rest.chunks(usize::from(sel) + 1)
            .map(Bytes::copy_from_slice)
            .collect()
    };
    if let Ok(index) = fmp4::index(&pieces) {
        for t in [i64::MIN, -1, 0, 1, 1 << 40, i64::MAX] {
            let _ = index.shown_at(t);
        }
        let _ = index.half_min_gap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::tests::{fragment, init};

    /// xorshift64*: deterministic inputs without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    fn iterations(default: usize) -> usize {
        std::env::var("VELA_FUZZ_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    #[test]
    fn seeded_random_inputs_never_panic() {
        let mut rng = Rng(0x7407_b0a1_5eed_0001);
        for _ in 0..iterations(500) {
            let len = (rng.next() % 4096) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            fmp4_index(&data);
        }
    }

    #[test]
    fn mutated_real_inputs_never_panic() {
        let mut real = vec![5u8];
        real.extend(init(true, 512));
        real.extend(fragment(
            1,
            Some(1 << 33),
            1,
            &[(512, 0), (512, -1024), (512, 512)],
        ));
        real.extend(fragment(1, None, 0, &[(512, 0); 3]));
        fmp4_index(&real);
        let mut rng = Rng(77);
        for _ in 0..iterations(5000) {
            let mut m = real.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let i = (rng.next() as usize) % m.len();
                m[i] = rng.next() as u8;
            }
            fmp4_index(&m);
        }
    }
}
