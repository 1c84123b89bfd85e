//! Unit tests of the fMP4 index, and box builders shared with the fuzzing
//! tests.

use super::*;

/// Builds boxes for the tests (sizes back-patched on `end`).
#[derive(Default)]
pub(crate) struct W {
    pub buf: Vec<u8>,
    open: Vec<usize>,
}

impl W {
    pub fn begin(&mut self, kind: &[u8; 4]) -> &mut Self {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(kind);
        self
    }
    pub fn full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> &mut Self {
        self.begin(kind);
        self.u32((u32::from(version) << 24) | flags)
    }
    pub fn end(&mut self) -> &mut Self {
        let start = self.open.pop().unwrap();
        let size = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
}

/// ftyp + moov with one video track (id 1, timescale 12800, avc1) and,
/// when `audio`, an audio track (id 2) before it.
pub(crate) fn init(audio: bool, trex_duration: u32) -> Vec<u8> {
    let mut w = W::default();
    w.begin(b"ftyp").raw(b"iso6").u32(0).raw(b"iso6").end();
    w.begin(b"moov");
    w.full(b"mvhd", 0, 0).raw(&[0; 96]).end();
    if audio {
        trak(&mut w, 2, b"soun", 48_000, b"mp4a");
    }
    trak(&mut w, 1, b"vide", 12_800, b"avc1");
    w.begin(b"mvex");
    w.full(b"trex", 0, 0)
        .u32(1)
        .u32(1)
        .u32(trex_duration)
        .u32(0)
        .u32(0)
        .end();
    w.end();
    w.end();
    w.buf
}

fn trak(w: &mut W, id: u32, handler: &[u8; 4], timescale: u32, entry: &[u8; 4]) {
    w.begin(b"trak");
    w.full(b"tkhd", 0, 3)
        .u32(0)
        .u32(0)
        .u32(id)
        .raw(&[0; 68])
        .end();
    w.begin(b"mdia");
    w.full(b"mdhd", 0, 0)
        .u32(0)
        .u32(0)
        .u32(timescale)
        .u32(0)
        .u32(0)
        .end();
    w.full(b"hdlr", 0, 0)
        .u32(0)
        .raw(handler)
        .raw(&[0; 13])
        .end();
    w.begin(b"minf").begin(b"stbl");
    w.full(b"stsd", 0, 0).u32(1);
    w.begin(entry).raw(&[0; 78]).end();
    w.end();
    w.end().end();
    w.end();
    w.end();
}

/// moof + mdat for track `id`: samples as (duration, cto); `version` 1
/// for signed offsets; `tfdt` omitted when `None`.
pub(crate) fn fragment(id: u32, tfdt: Option<u64>, version: u8, samples: &[(u32, i32)]) -> Vec<u8> {
    let mut w = W::default();
    w.begin(b"moof");
    w.full(b"mfhd", 0, 0).u32(1).end();
    w.begin(b"traf");
    w.full(b"tfhd", 0, 0x02_0000).u32(id).end();
    if let Some(t) = tfdt {
        w.full(b"tfdt", 1, 0).u64(t).end();
    }
    w.full(b"trun", version, 0x1 | 0x100 | 0x200 | 0x800)
        .u32(samples.len() as u32)
        .u32(0);
    for &(d, cto) in samples {
        w.u32(d).u32(1).u32(cto as u32);
    }
    w.end().end().end();
    w.begin(b"mdat").raw(&vec![0xAB; samples.len()]).end();
    w.buf
}

/// I P B B pattern at 512 ticks a frame: decode order with offsets.
const GOP: [(u32, i32); 4] = [(512, 512), (512, 1536), (512, 0), (512, 0)];

fn split_every(data: &[u8], n: usize) -> Vec<Bytes> {
    data.chunks(n).map(Bytes::copy_from_slice).collect()
}

#[test]
fn indexes_b_frames_across_pieces_cut_anywhere() {
    let mut all = init(true, 0);
    all.extend(fragment(2, Some(0), 0, &[(1024, 0)])); // audio: ignored
    all.extend(fragment(1, Some(25_600), 0, &GOP));
    for cut in [1, 3, 7, 64, all.len()] {
        let idx = index(&split_every(&all, cut)).unwrap();
        assert_eq!(idx.track_id, 1);
        assert_eq!(idx.timescale, 12_800);
        assert_eq!(&idx.sample_entry, b"avc1");
        let pts: Vec<i64> = idx.samples.iter().map(|s| s.pts).collect();
        assert_eq!(pts, [26_112, 27_648, 26_624, 27_648 - 512]);
        let dts: Vec<i64> = idx.samples.iter().map(|s| s.dts).collect();
        assert_eq!(dts, [25_600, 26_112, 26_624, 27_136]);
    }
}

#[test]
fn signed_offsets_trex_defaults_and_missing_tfdt() {
    let mut all = init(false, 1000);
    all.extend(fragment(1, Some(10_000), 1, &[(0, 0), (0, -500)]));
    // No tfdt: continues from the previous fragment's end; durations
    // come from trex (the trun here has them as 0, which is explicit).
    let mut w = W::default();
    w.begin(b"moof").begin(b"traf");
    w.full(b"tfhd", 0, 0).u32(1).end();
    w.full(b"trun", 0, 0).u32(3).end();
    w.end().end();
    all.extend(w.buf);
    let idx = index(&[Bytes::from(all)]).unwrap();
    let got: Vec<(i64, i64, u32)> = idx
        .samples
        .iter()
        .map(|s| (s.dts, s.pts, s.duration))
        .collect();
    assert_eq!(
        got,
        [
            (10_000, 10_000, 0),
            (10_000, 9_500, 0),
            (10_000, 10_000, 1000),
            (11_000, 11_000, 1000),
            (12_000, 12_000, 1000)
        ]
    );
}

#[test]
fn shown_at_picks_largest_pts_not_after_the_time() {
    let mut all = init(false, 0);
    all.extend(fragment(1, Some(25_600), 0, &GOP));
    let idx = index(&[Bytes::from(all)]).unwrap();
    // Presentation order: 26112 (I), 26624 (B), 27136 (B), 27648 (P).
    assert_eq!(idx.shown_at(0), Shown::Frame { pts: 26_112 });
    assert_eq!(idx.shown_at(26_112), Shown::Frame { pts: 26_112 });
    assert_eq!(idx.shown_at(26_700), Shown::Frame { pts: 26_624 });
    assert_eq!(idx.shown_at(27_647), Shown::Frame { pts: 27_136 });
    assert_eq!(idx.shown_at(28_159), Shown::Frame { pts: 27_648 });
    assert_eq!(idx.shown_at(28_160), Shown::PastEnd);
    assert_eq!(idx.half_min_gap(), 256);
}

#[test]
fn rejects_what_is_not_one_video_track_in_fmp4() {
    let frag = fragment(1, Some(0), 0, &GOP);
    assert_eq!(
        index(&[Bytes::from(frag.clone())]),
        Err(InputError::NoInit("moof"))
    );
    assert_eq!(
        index(&[Bytes::from(init(false, 0))]),
        Err(InputError::NoSamples)
    );
    assert_eq!(index(&[]), Err(InputError::NoMoov));
    let mut two = init(false, 0);
    two.extend(init(false, 0));
    assert_eq!(index(&[Bytes::from(two)]), Err(InputError::SecondMoov));
    // A box that claims more bytes than there are.
    let mut cut = init(false, 0);
    cut.extend(&frag[..frag.len() - 1]);
    assert!(matches!(
        index(&[Bytes::from(cut)]),
        Err(InputError::Malformed { .. })
    ));
    // A trun whose count exceeds its bytes is refused before allocating.
    let mut w = W::default();
    w.begin(b"moof").begin(b"traf");
    w.full(b"tfhd", 0, 0).u32(1).end();
    w.full(b"trun", 0, 0x100).u32(u32::MAX).end();
    w.end().end();
    let mut huge = init(false, 0);
    huge.extend(w.buf);
    assert!(matches!(
        index(&[Bytes::from(huge)]),
        Err(InputError::Malformed { what: "trun", .. })
    ));
    // And without per-sample fields, by MAX_SAMPLES.
    let mut w = W::default();
    w.begin(b"moof").begin(b"traf");
    w.full(b"tfhd", 0, 0).u32(1).end();
    w.full(b"trun", 0, 0).u32(u32::MAX).end();
    w.end().end();
    let mut huge = init(false, 0);
    huge.extend(w.buf);
    assert_eq!(index(&[Bytes::from(huge)]), Err(InputError::TooManySamples));
    assert_eq!(
        index(&[Bytes::from_static(b"garbage!garbage!")]),
        Err(InputError::Malformed {
            what: "top-level box",
            offset: 0,
            why: "bad size"
        })
    );
}
