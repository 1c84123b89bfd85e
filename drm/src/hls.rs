//! HLS `METHOD=AES-128`: whole-resource AES-128-CBC with PKCS#7 padding.
//!
//! # The IV rule
//! Vela writes `EXT-X-KEY:METHOD=AES-128,URI="..."` without an `IV`
//! attribute, so by RFC 8216 5.2 the IV of a Media Segment is its Media
//! Sequence Number as a 128-bit big-endian integer ([`iv_for_msn`]).
//!
//! LL-HLS Partial Segments are fetched and decrypted on their own, so each
//! part is encrypted as its own CBC unit with its own padding. RFC 8216bis
//! gives parts no IV of their own: without an `IV` attribute players (hls.js,
//! AVPlayer) use the parent segment's sequence number for every part of it,
//! and an `IV` attribute cannot differ per part without an `EXT-X-KEY` tag
//! between parts. So parts use the parent segment's IV too
//! ([`iv_for_part`]). Reusing a CBC IV under one key reveals only whether two
//! units begin with the same 16-byte blocks: part 0 is a prefix of its
//! segment (the same plaintext, the same ciphertext), and other parts begin
//! with a `moof` header whose sizes and sequence numbers differ; no
//! keystream is reused, unlike CTR.
//!
//! # The init segment
//! Keep `EXT-X-MAP` before the first `EXT-X-KEY` and serve the init segment
//! clear: an `EXT-X-MAP` under `METHOD=AES-128` would need an explicit `IV`
//! attribute (RFC 8216 4.3.2.5), and the init holds no media. The ffmpeg
//! end-to-end test plays exactly that layout.

use bytes::Bytes;

use crate::crypt;
use crate::ContentKey;

/// RFC 8216 5.2: the media sequence number as a 128-bit big-endian integer.
pub fn iv_for_msn(msn: u64) -> [u8; 16] {
    u128::from(msn).to_be_bytes()
}

/// The IV of part `part` of segment `msn`: the segment's (see module docs).
pub fn iv_for_part(msn: u64, _part: u32) -> [u8; 16] {
    iv_for_msn(msn)
}

/// AES-128-CBC + PKCS#7 of a whole resource with an explicit IV.
pub fn aes128_cbc_segment(key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Bytes {
    Bytes::from(crypt::aes128_cbc_pkcs7(key, iv, data))
}

/// Encrypts segment `msn` (or any of its parts) for `METHOD=AES-128`.
pub fn encrypt_segment(key: &ContentKey, msn: u64, data: &[u8]) -> Bytes {
    aes128_cbc_segment(&key.key, &iv_for_msn(msn), data)
}

/// The inverse of [`encrypt_segment`]; `None` if the padding is wrong.
pub fn decrypt_segment(key: &ContentKey, msn: u64, data: &[u8]) -> Option<Vec<u8>> {
    crypt::aes128_cbc_pkcs7_decrypt(&key.key, &iv_for_msn(msn), data)
}

/// The playlist tag for a key served at `uri` (quotes are not allowed in
/// a quoted-string, so they are percent-encoded).
pub fn ext_x_key(uri: &str) -> String {
    format!(
        "#EXT-X-KEY:METHOD=AES-128,URI=\"{}\"",
        uri.replace('"', "%22")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iv_is_the_big_endian_sequence_number() {
        let iv = iv_for_msn(0x0102);
        assert_eq!(&iv[..14], &[0u8; 14]);
        assert_eq!(&iv[14..], &[1, 2]);
        assert_eq!(iv_for_part(7, 3), iv_for_msn(7));
    }

    #[test]
    fn segment_round_trip() {
        let key = ContentKey {
            period: 0,
            kid: [1; 16],
            key: [2; 16],
            iv: [3; 16],
        };
        let seg: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let enc = encrypt_segment(&key, 9, &seg);
        assert_eq!(enc.len(), 1008);
        assert_eq!(decrypt_segment(&key, 9, &enc).unwrap(), seg);
        assert_ne!(decrypt_segment(&key, 10, &enc).as_deref(), Some(&seg[..]));
        assert_eq!(
            ext_x_key("/k/a\"b"),
            "#EXT-X-KEY:METHOD=AES-128,URI=\"/k/a%22b\""
        );
    }
}
