//! The AES primitives every scheme is built from, over whole buffers.
//!
//! All but x86_64 CTR run on the RustCrypto `aes` block cipher, which detects
//! AES-NI (x86/x86_64) or the ARMv8 crypto extensions at run time
//! (`cpufeatures`) and falls back to a constant-time bitsliced software AES
//! otherwise. [`aes_backend`] reports which one is in use.
//!
//! Nothing here allocates per block. CTR, the hot path of 'cenc' (every
//! byte of every DASH and Smooth segment), runs on x86_64 AES-NI through
//! `crypt/aesni.rs`, which keeps eight counter blocks in flight and reads and
//! writes each byte once: the `ctr` crate reached only 0.76–0.84 of
//! `openssl speed -evp aes-128-ctr`, this 1.1 (benches/README.md). On other
//! CPUs CTR goes through the `ctr` crate over `aes`. CBC hands whole runs of
//! blocks to the `cbc` crate in place; it is serial by construction (each
//! block needs the previous ciphertext), so its ceiling is one AES latency
//! per 16 bytes, which the crate already reaches (a hand-written AES-NI CBC
//! measured the same).

use aes::cipher::inout::InOutBuf;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, StreamCipher};
use aes::Aes128;

#[cfg(target_arch = "x86_64")]
mod aesni;

type Ctr = ctr::Ctr128BE<Aes128>;
type CbcEnc = cbc::Encryptor<Aes128>;
type CbcDec = cbc::Decryptor<Aes128>;

/// AES block size in bytes.
pub const BLOCK: usize = 16;

/// Which AES implementation the `aes` crate picked on this machine.
pub fn aes_backend() -> &'static str {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("sse2")
        {
            return "aes-ni";
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("aes") {
            return "armv8-crypto";
        }
    }
    "software (bitsliced)"
}

/// AES-128-CTR over `data` in place, the counter block starting at `iv`
/// and incrementing as one 128-bit big-endian integer (NIST SP 800-38A,
/// and what ISO/IEC 23001-7 'cenc' specifies with 8- or 16-byte IVs).
pub fn aes128_ctr(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    CtrStream::new(key, iv).apply(data);
}

/// A CTR keystream that continues across calls: 'cenc' encrypts the
/// protected ranges of one sample as a single stream.
pub struct CtrStream(CtrEngine);

// The variants differ in size, but a machine only ever builds one of them
// (the portable one on x86_64 only as the tests' reference): boxing either
// would add an allocation per sample for nothing.
#[allow(clippy::large_enum_variant)]
enum CtrEngine {
    #[cfg(target_arch = "x86_64")]
    AesNi(aesni::Aes128Ctr),
    Portable(Ctr),
}

impl CtrStream {
    pub fn new(key: &[u8; 16], iv: &[u8; 16]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(ni) = aesni::Aes128Ctr::new(key, iv) {
            return CtrStream(CtrEngine::AesNi(ni));
        }
        Self::portable(key, iv)
    }

    /// The `ctr` crate's stream whatever the CPU: what [`CtrStream::new`]
    /// falls back to, and the reference the AES-NI path is checked against.
    pub fn portable(key: &[u8; 16], iv: &[u8; 16]) -> Self {
        CtrStream(CtrEngine::Portable(Ctr::new(key.into(), iv.into())))
    }

    pub fn apply(&mut self, data: &mut [u8]) {
        match &mut self.0 {
            #[cfg(target_arch = "x86_64")]
            CtrEngine::AesNi(ni) => ni.apply(data),
            CtrEngine::Portable(c) => c.apply_keystream(data),
        }
    }
}

/// AES-128-CBC encryption of the whole 16-byte blocks of `data` in place,
/// chained from `iv`; a trailing partial block is left as it is (the
/// 'cbcs' rule for the tail of a protected range). Returns the last
/// ciphertext block (the chaining value), or `iv` when there was none.
pub fn aes128_cbc_blocks(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) -> [u8; 16] {
    let whole = data.len() / BLOCK * BLOCK;
    if whole == 0 {
        return *iv;
    }
    let mut enc = CbcEnc::new(key.into(), iv.into());
    let (blocks, _) = InOutBuf::from(&mut data[..whole]).into_chunks();
    enc.encrypt_blocks_inout_mut(blocks);
    let mut last = [0u8; 16];
    last.copy_from_slice(&data[whole - BLOCK..whole]);
    last
}

/// AES-128-CBC decryption of the whole blocks of `data` in place (the
/// inverse of [`aes128_cbc_blocks`]).
pub fn aes128_cbc_blocks_decrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    let whole = data.len() / BLOCK * BLOCK;
    if whole == 0 {
        return;
    }
    let mut dec = CbcDec::new(key.into(), iv.into());
    let (blocks, _) = InOutBuf::from(&mut data[..whole]).into_chunks();
    dec.decrypt_blocks_inout_mut(blocks);
}

/// 'cbcs' pattern encryption of one protected range in place: CBC from the
/// constant `iv`, encrypting `crypt` blocks then skipping `skip` blocks,
/// repeatedly; the chain runs through the encrypted blocks only (ISO/IEC
/// 23001-7 10.4). A pattern of 0:0 (or `skip` 0) encrypts every whole block.
/// A last pattern group shorter than `crypt` whole blocks stays clear, and so
/// does a trailing partial block.
pub fn aes128_cbcs_pattern(key: &[u8; 16], iv: &[u8; 16], crypt: u8, skip: u8, data: &mut [u8]) {
    let (crypt, skip) = (usize::from(crypt), usize::from(skip));
    if crypt == 0 || skip == 0 {
        aes128_cbc_blocks(key, iv, data);
        return;
    }
    let mut enc = CbcEnc::new(key.into(), iv.into());
    let step = (crypt + skip) * BLOCK;
    let run = crypt * BLOCK;
    let mut at = 0;
    while data.len() - at >= run {
        let (blocks, _) = InOutBuf::from(&mut data[at..at + run]).into_chunks();
        enc.encrypt_blocks_inout_mut(blocks);
        at = at.saturating_add(step).min(data.len());
    }
}

/// HLS `METHOD=AES-128`: the whole segment in AES-128-CBC with PKCS#7
/// padding (RFC 8216 4.3.2.4, 5.2). Returns the ciphertext, which is
/// 1 to 16 bytes longer than `data`.
pub fn aes128_cbc_pkcs7(key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let pad = BLOCK - data.len() % BLOCK;
    let mut out = Vec::with_capacity(data.len() + pad);
    out.extend_from_slice(data);
    out.resize(data.len() + pad, pad as u8);
    aes128_cbc_blocks(key, iv, &mut out);
    out
}

/// Inverse of [`aes128_cbc_pkcs7`]; `None` when the length or the padding is
/// not valid (a wrong key shows up here).
pub fn aes128_cbc_pkcs7_decrypt(key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Option<Vec<u8>> {
    if data.is_empty() || !data.len().is_multiple_of(BLOCK) {
        return None;
    }
    let mut out = data.to_vec();
    aes128_cbc_blocks_decrypt(key, iv, &mut out);
    let pad = usize::from(*out.last()?);
    if pad == 0
        || pad > BLOCK
        || out[out.len() - pad..]
            .iter()
            .any(|&b| usize::from(b) != pad)
    {
        return None;
    }
    out.truncate(out.len() - pad);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c";
    const PLAIN: &str = "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
                         30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710";

    /// NIST SP 800-38A F.5.1 CTR-AES128.Encrypt.
    #[test]
    fn nist_sp800_38a_f51_ctr_aes128() {
        let key: [u8; 16] = hex(KEY).try_into().unwrap();
        let iv: [u8; 16] = hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").try_into().unwrap();
        let mut data = hex(PLAIN);
        aes128_ctr(&key, &iv, &mut data);
        assert_eq!(
            data,
            hex(
                "874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff
                 5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee"
            )
        );
        // Split across calls, as 'cenc' subsamples do, the stream continues.
        let mut again = hex(PLAIN);
        let mut s = CtrStream::new(&key, &iv);
        let (a, b) = again.split_at_mut(21);
        s.apply(a);
        s.apply(b);
        assert_eq!(again, data);
    }

    #[test]
    fn ctr_stream_continues_across_any_split_and_the_counter_wrap() {
        let key = [3u8; 16];
        // Start near the 128-bit wrap to check the carry.
        let iv = [0xffu8; 16];
        let clear: Vec<u8> = (0..5000u32).map(|i| (i * 31) as u8).collect();
        let mut want = clear.clone();
        aes128_ctr(&key, &iv, &mut want);
        for split in [0usize, 1, 15, 16, 17, 2047, 2048, 2049, 4999] {
            let mut got = clear.clone();
            let mut s = CtrStream::new(&key, &iv);
            let (a, b) = got.split_at_mut(split);
            s.apply(a);
            let (b1, b2) = b.split_at_mut(b.len() / 3);
            s.apply(b1);
            s.apply(&mut []);
            s.apply(b2);
            assert_eq!(got, want, "split at {split}");
        }
    }

    /// Whatever the engine `new` picks (AES-NI on x86_64), it produces the
    /// `ctr` crate's stream bit for bit: every length around the 8-block
    /// chunk, splits that leave partial keystream blocks, and counters that
    /// carry out of the low 64 bits or wrap all 128 inside a chunk.
    #[test]
    fn ctr_engine_matches_the_portable_stream() {
        let mut ivs = vec![[0u8; 16], [0xf0; 16], [0xff; 16]];
        for back in 1..=9u64 {
            // Low 64 bits `back` short of the carry, high half arbitrary.
            let mut iv = [0x5au8; 16];
            iv[8..].copy_from_slice(&(u64::MAX - back + 1).to_be_bytes());
            ivs.push(iv);
        }
        let clear: Vec<u8> = (0..1200u32).map(|i| (i * 7 + i / 256) as u8).collect();
        for (n, iv) in ivs.iter().enumerate() {
            let key = [n as u8 ^ 0x3c; 16];
            for len in (0..300).chain([1023, 1024, 1025, 1200]) {
                let mut want = clear[..len].to_vec();
                CtrStream::portable(&key, iv).apply(&mut want);
                let mut got = clear[..len].to_vec();
                CtrStream::new(&key, iv).apply(&mut got);
                assert_eq!(got, want, "iv {iv:02x?} len {len}");
                for split in [1usize, 5, 16, 31, 129] {
                    let mut got = clear[..len].to_vec();
                    let mut s = CtrStream::new(&key, iv);
                    for piece in got.chunks_mut(split) {
                        s.apply(piece);
                    }
                    assert_eq!(got, want, "iv {iv:02x?} len {len} pieces of {split}");
                }
            }
        }
    }

    /// NIST SP 800-38A F.2.1 CBC-AES128.Encrypt (and F.2.2 decrypt).
    #[test]
    fn nist_sp800_38a_f21_cbc_aes128() {
        let key: [u8; 16] = hex(KEY).try_into().unwrap();
        let iv: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let expected = hex(
            "7649abac8119b246cee98e9b12e9197d 5086cb9b507219ee95db113a917678b2
             73bed6b8e3c1743b7116e69e22229516 3ff1caa1681fac09120eca307586e1a7",
        );
        let mut data = hex(PLAIN);
        let last = aes128_cbc_blocks(&key, &iv, &mut data);
        assert_eq!(data, expected);
        assert_eq!(&last[..], &expected[48..]);
        aes128_cbc_blocks_decrypt(&key, &iv, &mut data);
        assert_eq!(data, hex(PLAIN));
        // PKCS#7 over the same four blocks adds a fifth block of padding;
        // the first four are the NIST ciphertext.
        let padded = aes128_cbc_pkcs7(&key, &iv, &hex(PLAIN));
        assert_eq!(padded.len(), 80);
        assert_eq!(&padded[..64], &expected[..]);
        assert_eq!(
            aes128_cbc_pkcs7_decrypt(&key, &iv, &padded).unwrap(),
            hex(PLAIN)
        );
    }

    #[test]
    fn pkcs7_round_trips_every_tail_length() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        for n in 0..70usize {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let enc = aes128_cbc_pkcs7(&key, &iv, &data);
            assert_eq!(enc.len(), (n / 16 + 1) * 16);
            assert_eq!(aes128_cbc_pkcs7_decrypt(&key, &iv, &enc).unwrap(), data);
        }
        assert!(aes128_cbc_pkcs7_decrypt(&key, &iv, &[0u8; 15]).is_none());
        assert!(
            aes128_cbc_pkcs7_decrypt(&key, &[0x10u8; 16], &aes128_cbc_pkcs7(&key, &iv, b"x"))
                .is_none()
        );
    }

    #[test]
    fn cbcs_pattern_encrypts_one_block_in_ten_and_chains_through_them() {
        let key = [1u8; 16];
        let iv = [2u8; 16];
        let clear: Vec<u8> = (0..(16 * 25 + 5)).map(|i| i as u8).collect();
        let mut data = clear.clone();
        aes128_cbcs_pattern(&key, &iv, 1, 9, &mut data);
        // Blocks 0, 10, 20 encrypted, chained; all others untouched.
        let mut expect = clear.clone();
        let mut chain: Vec<u8> = [&clear[0..16], &clear[160..176], &clear[320..336]].concat();
        aes128_cbc_blocks(&key, &iv, &mut chain);
        expect[0..16].copy_from_slice(&chain[0..16]);
        expect[160..176].copy_from_slice(&chain[16..32]);
        expect[320..336].copy_from_slice(&chain[32..48]);
        assert_eq!(data, expect);
    }
}
