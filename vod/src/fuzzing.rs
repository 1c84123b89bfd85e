//! Fuzz entry points (cargo-fuzz targets `mp4_index` and
//! `recording_journal`), also driven on stable by seeded mutations in the
//! tests.

use std::time::Duration;

use crate::{IndexOptions, MediaIndex};

/// Indexes `data` as a whole MP4 file, then builds every track's init
/// segment and its first fragments. Errors are fine; panics are not.
pub fn mp4_index(data: &[u8]) {
    let opts = IndexOptions {
        segment_target: Duration::from_millis(500),
    };
    let Ok(ix) = MediaIndex::open(data, &opts) else {
        return;
    };
    assert!(ix.segment_count() >= 1);
    let ids: Vec<u32> = ix.tracks().map(|t| t.id()).collect();
    for id in ids {
        let init = ix.init(id).expect("a listed track has an init segment");
        assert!(init.len() > 16);
        for n in 0..ix.segment_count().min(16) {
            let seg = ix.segment(id, n).expect("listed segment");
            if let Ok(frag) = ix.fragment(data, id, n) {
                assert!(frag.len() as u64 >= seg.bytes);
            }
        }
    }
}

/// A recording journal after a crash (cargo-fuzz target
/// `recording_journal`): the first 8 bytes are the media file's length
/// (big-endian), the rest the journal. Recovers the piece; when that works
/// and it has samples, finishes it, lays the finished file out (sample data
/// as zeros, when small enough) and indexes it. Errors are fine; panics are
/// not.
pub fn recording_journal(data: &[u8]) {
    use crate::record::{is_finished_mp4, RecordingWriter};
    let (len, journal) = data.split_at(data.len().min(8));
    let mut be = [0u8; 8];
    be[..len.len()].copy_from_slice(len);
    let media_len = u64::from_be_bytes(be);
    let Ok(w) = RecordingWriter::recover(journal, media_len) else {
        return;
    };
    let Ok(fin) = w.finish() else {
        assert_eq!(w.samples(), 0);
        return;
    };
    assert!(fin.body_end() <= media_len);
    assert_eq!(fin.body_end(), w.bytes());
    if fin.media_len > 4 << 20 {
        return;
    }
    let mut file = w.media_head().to_vec();
    file.resize(fin.body_end() as usize, 0);
    file.extend_from_slice(&fin.moov);
    let at = fin.mdat_size_at as usize;
    file[at..at + 8].copy_from_slice(&fin.mdat_size);
    assert!(is_finished_mp4(&file, file.len() as u64));
    assert!(crate::scan::find_moov(&file[..]).is_ok());
    mp4_index(&file);
}

/// A seeded xorshift64* for stable mutation tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// One random mutation of `seed_file`: bit flips, a 32-bit field overwritten
/// with an extreme or random value (box sizes, counts, offsets), a cut, or a
/// duplicated span.
pub fn mutate(seed_file: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed_file.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        if v.is_empty() {
            break;
        }
        match rng.below(5) {
            0 => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 | 2 => {
                if v.len() >= 4 {
                    let i = rng.below(v.len() - 3);
                    let val: u32 = match rng.below(6) {
                        0 => 0,
                        1 => 1,
                        2 => u32::MAX,
                        3 => 0x7fff_ffff,
                        4 => rng.next_u64() as u32 & 0xffff,
                        _ => rng.next_u64() as u32,
                    };
                    v[i..i + 4].copy_from_slice(&val.to_be_bytes());
                }
            }
            3 => {
                let n = rng.below(v.len());
                v.truncate(n);
            }
            _ => {
                let a = rng.below(v.len());
                let b = (a + rng.below(64)).min(v.len());
                let span = v[a..b].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, span);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_file_mutations_do_not_panic() {
        let file = crate::synth::small_file();
        mp4_index(&file);
        let mut rng = Rng::new(0x5eed_0001);
        for _ in 0..3000 {
            mp4_index(&mutate(&file, &mut rng));
        }
    }

    #[test]
    fn random_bytes_do_not_panic() {
        let mut rng = Rng::new(7);
        for _ in 0..500 {
            let n = rng.below(512);
            let v: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            mp4_index(&v);
        }
    }
}
