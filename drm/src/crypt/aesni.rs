//! AES-128-CTR on x86_64 AES-NI, eight counter blocks in flight.
//!
//! Why this exists beside the `aes` crate: the `ctr` crate over `aes` 0.8
//! reached 0.76–0.84 of `openssl speed -evp aes-128-ctr` on the CI machine
//! (benches/README.md "DRM vs openssl"). Its backend writes the keystream to
//! a buffer and XORs it in a second pass; here the counter blocks are built
//! in registers, the data is folded into the last round key
//! (`aesenclast(state, rk10 ^ data)` is the ciphertext) and each 128-byte
//! chunk is read and written once, as OpenSSL's `aesni_ctr32_encrypt_blocks`
//! does. Eight blocks cover the AES unit's latency × throughput on every
//! AES-NI core from Westmere to Sapphire Rapids (4 measured the same, 16
//! slower: more round-key reloads).
//!
//! Safety: the only `unsafe` is calling the `#[target_feature]` functions
//! below. An [`Aes128Ctr`] is only built after run-time detection of the
//! features they enable, so every call through it is sound. The functions
//! themselves are safe Rust: no pointers, loads and stores go through
//! slices and `_mm_set_epi64x`/`_mm_extract_epi64`, which LLVM turns into
//! plain unaligned vector moves.

use core::arch::x86_64::{
    __m128i, _mm_add_epi64, _mm_aesenc_si128, _mm_aesenclast_si128, _mm_aeskeygenassist_si128,
    _mm_cvtsi128_si64, _mm_extract_epi64, _mm_set_epi64x, _mm_set_epi8, _mm_shuffle_epi32,
    _mm_shuffle_epi8, _mm_slli_si128, _mm_xor_si128,
};

use super::BLOCK;

/// Counter blocks encrypted per loop iteration.
const LANES: usize = 8;

/// Whether this CPU has what the functions below are compiled for.
fn detected() -> bool {
    std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("ssse3")
        && std::arch::is_x86_feature_detected!("sse4.1")
}

/// An AES-128-CTR keystream on AES-NI: the expanded key, the next counter
/// block and what is left of the last, partly used keystream block.
#[derive(Clone)]
pub struct Aes128Ctr {
    round_keys: [__m128i; 11],
    counter: u128,
    keystream: [u8; BLOCK],
    /// Bytes of `keystream` already used; `BLOCK` when none is left.
    used: usize,
}

impl Aes128Ctr {
    /// `None` on a CPU without AES-NI, SSSE3 and SSE4.1.
    pub fn new(key: &[u8; 16], iv: &[u8; 16]) -> Option<Self> {
        if !detected() {
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: the features `expand_key` enables were detected just above.
        let round_keys = unsafe { expand_key(key) };
        Some(Aes128Ctr {
            round_keys,
            counter: u128::from_be_bytes(*iv),
            keystream: [0; BLOCK],
            used: BLOCK,
        })
    }

    /// XORs the next `data.len()` keystream bytes into `data`.
    pub fn apply(&mut self, data: &mut [u8]) {
        let left = (BLOCK - self.used).min(data.len());
        let (head, data) = data.split_at_mut(left);
        xor_into(head, &self.keystream[self.used..self.used + left]);
        self.used += left;
        if data.is_empty() {
            return;
        }
        let whole = data.len() / BLOCK * BLOCK;
        let (blocks, tail) = data.split_at_mut(whole);
        #[allow(unsafe_code)]
        // SAFETY: `self` exists only where `new` detected these features.
        unsafe {
            self.counter = ctr_blocks(&self.round_keys, self.counter, blocks);
        }
        if !tail.is_empty() {
            #[allow(unsafe_code)]
            // SAFETY: as above.
            unsafe {
                self.keystream = keystream_block(&self.round_keys, self.counter);
            }
            self.counter = self.counter.wrapping_add(1);
            xor_into(tail, &self.keystream[..tail.len()]);
            self.used = tail.len();
        }
    }
}

fn xor_into(data: &mut [u8], keystream: &[u8]) {
    for (d, k) in data.iter_mut().zip(keystream) {
        *d ^= k;
    }
}

#[inline]
#[target_feature(enable = "sse2")]
fn load(b: &[u8]) -> __m128i {
    let lo = u64::from_le_bytes(b[0..8].try_into().unwrap_or_default());
    let hi = u64::from_le_bytes(b[8..16].try_into().unwrap_or_default());
    _mm_set_epi64x(hi as i64, lo as i64)
}

#[inline]
#[target_feature(enable = "sse4.1")]
fn store(v: __m128i, b: &mut [u8]) {
    b[0..8].copy_from_slice(&_mm_cvtsi128_si64(v).to_le_bytes());
    b[8..16].copy_from_slice(&_mm_extract_epi64::<1>(v).to_le_bytes());
}

/// One step of the AES-128 key schedule (FIPS-197 5.2) with AESKEYGENASSIST.
macro_rules! next_round_key {
    ($k:expr, $rcon:literal) => {{
        let k = $k;
        let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(k));
        let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        _mm_xor_si128(k, t)
    }};
}

#[target_feature(enable = "aes,sse2")]
fn expand_key(key: &[u8; 16]) -> [__m128i; 11] {
    let k0 = load(key);
    let k1 = next_round_key!(k0, 0x01);
    let k2 = next_round_key!(k1, 0x02);
    let k3 = next_round_key!(k2, 0x04);
    let k4 = next_round_key!(k3, 0x08);
    let k5 = next_round_key!(k4, 0x10);
    let k6 = next_round_key!(k5, 0x20);
    let k7 = next_round_key!(k6, 0x40);
    let k8 = next_round_key!(k7, 0x80);
    let k9 = next_round_key!(k8, 0x1b);
    let k10 = next_round_key!(k9, 0x36);
    [k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10]
}

/// The keystream block for `counter`.
#[target_feature(enable = "aes,sse2,sse4.1")]
fn keystream_block(rk: &[__m128i; 11], counter: u128) -> [u8; BLOCK] {
    let mut s = _mm_xor_si128(load(&counter.to_be_bytes()), rk[0]);
    for k in &rk[1..10] {
        s = _mm_aesenc_si128(s, *k);
    }
    let mut out = [0u8; BLOCK];
    store(_mm_aesenclast_si128(s, rk[10]), &mut out);
    out
}

/// CTR over whole blocks (`data.len()` a multiple of 16) from `counter`;
/// returns the counter after the last block. The counter is one 128-bit
/// big-endian integer.
#[target_feature(enable = "aes,sse2,ssse3,sse4.1")]
fn ctr_blocks(rk: &[__m128i; 11], mut counter: u128, data: &mut [u8]) -> u128 {
    // PSHUFB mask reversing all 16 bytes: the counter is added to as a
    // little-endian pair of 64-bit lanes, AES wants it big-endian.
    let reverse = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut chunks = data.chunks_exact_mut(LANES * BLOCK);
    for chunk in &mut chunks {
        let mut s = [rk[0]; LANES];
        if (counter as u64) <= u64::MAX - LANES as u64 {
            // No carry out of the low 64 bits within this chunk.
            let base = _mm_set_epi64x((counter >> 64) as i64, counter as u64 as i64);
            for (i, s) in s.iter_mut().enumerate() {
                let c = _mm_add_epi64(base, _mm_set_epi64x(0, i as i64));
                *s = _mm_xor_si128(_mm_shuffle_epi8(c, reverse), *s);
            }
        } else {
            for (i, s) in s.iter_mut().enumerate() {
                let c = counter.wrapping_add(i as u128).to_be_bytes();
                *s = _mm_xor_si128(load(&c), *s);
            }
        }
        counter = counter.wrapping_add(LANES as u128);
        for k in &rk[1..10] {
            for s in &mut s {
                *s = _mm_aesenc_si128(*s, *k);
            }
        }
        for (s, b) in s.iter().zip(chunk.chunks_exact_mut(BLOCK)) {
            let last = _mm_xor_si128(load(b), rk[10]);
            store(_mm_aesenclast_si128(*s, last), b);
        }
    }
    for b in chunks.into_remainder().chunks_exact_mut(BLOCK) {
        let ks = keystream_block(rk, counter);
        counter = counter.wrapping_add(1);
        xor_into(b, &ks);
    }
    counter
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS-197 Appendix A.1: the last round key of the expansion of
    /// 2b7e1516 28aed2a6 abf71588 09cf4f3c is d014f9a8 c9ee2589 e13f0cc8 b6630ca6.
    #[test]
    fn key_expansion_matches_fips_197_a1() {
        if !detected() {
            return;
        }
        let key = [
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ];
        #[allow(unsafe_code)]
        // SAFETY: detected above.
        let rk = unsafe { expand_key(&key) };
        let mut last = [0u8; 16];
        #[allow(unsafe_code)]
        // SAFETY: detected above.
        unsafe {
            store(rk[10], &mut last)
        };
        assert_eq!(
            last,
            [
                0xd0, 0x14, 0xf9, 0xa8, 0xc9, 0xee, 0x25, 0x89, 0xe1, 0x3f, 0x0c, 0xc8, 0xb6, 0x63,
                0x0c, 0xa6
            ]
        );
    }
}
