//! Index, plan and fragment tests on synthetic files.

use mp4_atom::{Decode, Mdat, Moof};

use crate::synth::{build, fill_byte, small_file, SparseFile, SynthTrack};
use crate::{IndexOptions, MediaIndex, ReadAt, VodError};

fn open(f: &[u8]) -> Result<MediaIndex, VodError> {
    MediaIndex::open(f, &IndexOptions::default())
}

fn materialize(f: &SparseFile) -> Vec<u8> {
    let mut v = vec![0u8; f.len as usize];
    f.read_exact_at(&mut v, 0).unwrap();
    v
}

#[test]
fn small_file_segments_and_fragments() {
    let file = small_file();
    let ix = open(&file).unwrap();
    let ids: Vec<u32> = ix.tracks().map(|t| t.id()).collect();
    assert_eq!(ids, [1, 2]);
    let audio = ix.track(2).unwrap();
    assert_eq!(audio.language, "eng");
    // 300 frames at 30 fps, keyframes every 2 s: cuts at 4 s and 8 s.
    assert_eq!(ix.segment_count(), 3);
    let v = ix.segments(1).unwrap();
    assert_eq!(
        v.iter().map(|s| s.first_sample).collect::<Vec<_>>(),
        [0, 120, 240]
    );
    assert_eq!(v.iter().map(|s| s.sample_count).sum::<u32>(), 300);
    // Edit media_time 1024 on video: composition offsets shift, decode times do not.
    assert_eq!(v[1].start, 120 * 512);
    assert_eq!(v[1].presentation_start, 120 * 512);
    // Audio cuts at its first sample presenting at or after 4 s (priming:
    // sample k presents at k*1024 - 1024).
    let a = ix.segments(2).unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a[1].first_sample, 189); // 188*1024 = 192512 < 4 s*48000 <= 189*1024
    assert_eq!(a[1].presentation_start, 188 * 1024);
    assert_eq!(a.iter().map(|s| s.sample_count).sum::<u32>(), 469);

    for id in ids {
        let init = ix.init(id).unwrap();
        let moov = &init[init.windows(4).position(|w| w == b"moov").unwrap() - 4..];
        mp4_atom::Moov::decode(&mut &moov[..]).unwrap();
        for seg in ix.segments(id).unwrap() {
            let frag = ix.fragment(&file[..], id, seg.number).unwrap();
            let mut buf = &frag[..];
            let moof = Moof::decode(&mut buf).unwrap();
            let mdat = Mdat::decode(&mut buf).unwrap();
            assert!(buf.is_empty());
            assert_eq!(moof.mfhd.sequence_number, seg.number + 1);
            let traf = &moof.traf[0];
            assert_eq!(traf.tfhd.track_id, id);
            assert_eq!(
                traf.tfdt.as_ref().unwrap().base_media_decode_time,
                seg.start
            );
            let trun = &traf.trun[0];
            assert_eq!(trun.samples.len() as u32, seg.sample_count);
            assert_eq!(mdat.data.len() as u64, seg.bytes);
            // Each sample's bytes are the source's.
            let mut at = 0usize;
            for (k, e) in trun.samples.iter().enumerate() {
                let n = e.size.unwrap() as usize;
                let want = fill_byte(id, seg.first_sample as usize + k);
                assert!(mdat.data[at..at + n].iter().all(|&b| b == want));
                at += n;
                if id == 1 {
                    let src = [1024, 2560, 512, 1024][(seg.first_sample as usize + k) % 4];
                    assert_eq!(e.cts.unwrap_or(0), src - 1024);
                }
            }
        }
    }
}

#[test]
fn two_hour_index_stays_under_one_mib() {
    // 2 h of 1080p30 H.264 (B-frames: a ctts entry per sample, varying
    // sizes) and 48 kHz AAC: 216k + 337.5k samples.
    let video = SynthTrack::video(1, 216_000, |i| 4000 + (i * 7919 % 20000) as u32);
    let audio = SynthTrack::audio(2, 337_500, "eng");
    let f = build(&[video, audio], false);
    let ix = MediaIndex::open(&f, &IndexOptions::default()).unwrap();
    let size = ix.heap_size();
    println!(
        "2-hour asset: {} segments, index heap size {size} bytes",
        ix.segment_count()
    );
    assert_eq!(ix.segment_count(), 1800);
    assert!(size <= 1 << 20, "index holds {size} bytes");
    // A fragment late in the asset re-reads its table slices correctly.
    let seg = ix.segment(1, 1799).unwrap();
    assert_eq!(seg.first_sample, 1799 * 120);
    let frag = ix.fragment(&f, 1, 1799).unwrap();
    let moof = Moof::decode(&mut &frag[..]).unwrap();
    let trun = &moof.traf[0].trun[0];
    for (k, e) in trun.samples.iter().enumerate() {
        let i = seg.first_sample as usize + k;
        assert_eq!(e.size.unwrap(), 4000 + (i * 7919 % 20000) as u32);
    }
    let aseg = ix.segment(2, 1799).unwrap();
    let frag = ix.fragment(&f, 2, 1799).unwrap();
    let moof = Moof::decode(&mut &frag[..]).unwrap();
    assert_eq!(moof.traf[0].trun[0].samples.len() as u32, aseg.sample_count);
    assert_eq!(aseg.first_sample + aseg.sample_count, 337_500);
}

#[test]
fn audio_only_cuts_on_fixed_duration() {
    let f = materialize(&build(&[SynthTrack::audio(1, 1000, "fra")], true));
    let ix = open(&f).unwrap();
    let segs = ix.segments(1).unwrap();
    // 1000 * 1024 / 48000 = 21.3 s: cuts at 4, 8, 12, 16, 20 s.
    assert_eq!(segs.len(), 6);
    for s in &segs[1..] {
        let t = s.presentation_start as f64 / 48000.0;
        assert!((t / 4.0 - (t / 4.0).round()).abs() < 0.03, "{t}");
    }
}

#[test]
fn empty_edit_delays_decode_times() {
    let mut v = SynthTrack::video(1, 120, |_| 50);
    v.edit = Some((500, 0)); // 0.5 s (movie timescale 1000)
    let f = materialize(&build(&[v], true));
    let ix = open(&f).unwrap();
    let s = ix.segment(1, 0).unwrap();
    assert_eq!(s.start, 7680);
    let frag = ix.fragment(&f[..], 1, 0).unwrap();
    let moof = Moof::decode(&mut &frag[..]).unwrap();
    assert_eq!(
        moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time,
        7680
    );
}

/// Patches the first occurrence of `fourcc`'s box: `at` bytes into its body.
fn patch(file: &mut [u8], fourcc: &[u8; 4], at: usize, value: &[u8]) {
    let p = file.windows(4).position(|w| w == fourcc).expect("box") + 4 + at;
    file[p..p + value.len()].copy_from_slice(value);
}

fn err_of(file: &[u8]) -> String {
    let e = open(file).expect_err("corrupt input must fail");
    e.to_string()
}

#[test]
fn corrupt_inputs_name_the_problem() {
    let good = small_file();

    // No moov: cut the file before it.
    let moov_at = good.windows(4).position(|w| w == b"moov").unwrap() - 4;
    assert!(matches!(open(&good[..moov_at]), Err(VodError::NoMoov)));
    // moov past EOF: truncated file.
    assert!(matches!(
        open(&good[..good.len() - 10]),
        Err(VodError::MoovPastEof { .. })
    ));
    // A 4 GB size field in a small file (the moov's).
    let mut f = good.clone();
    f[moov_at..moov_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(open(&f), Err(VodError::MoovPastEof { .. })));
    // ... and a 64-bit size of 2^62 on the mdat.
    let mut f = good.clone();
    patch(&mut f, b"mdat", 0, &(1u64 << 62).to_be_bytes());
    assert!(matches!(open(&f), Err(VodError::NoMoov)));

    // stts covering fewer samples than stsz.
    let mut f = good.clone();
    patch(&mut f, b"stts", 8, &299u32.to_be_bytes());
    let e = err_of(&f);
    assert!(e.contains("track 1") && e.contains("stts"), "{e}");

    // An stsz count larger than the box can hold.
    let mut f = good.clone();
    patch(&mut f, b"stsz", 8, &0x4000_0000u32.to_be_bytes());
    let e = err_of(&f);
    assert!(e.contains("stsz"), "{e}");

    // A chunk offset past the end of the file.
    let mut f = good.clone();
    patch(&mut f, b"stco", 8, &0xffff_0000u32.to_be_bytes());
    let e = err_of(&f);
    assert!(e.contains("stco") && e.contains("past the end"), "{e}");

    // co64 offset that overflows with the sample size.
    let mut f = good.clone();
    patch(&mut f, b"co64", 8, &u64::MAX.to_be_bytes());
    let e = err_of(&f);
    assert!(e.contains("track 2") && e.contains("stco"), "{e}");

    // A sample size that runs past the end of the file.
    let mut f = good.clone();
    patch(&mut f, b"stsz", 12, &0xffff_fff0u32.to_be_bytes());
    let e = err_of(&f);
    assert!(e.contains("past the end"), "{e}");

    // Zero timescale.
    let mut f = good.clone();
    patch(&mut f, b"mdhd", 12, &0u32.to_be_bytes());
    assert!(matches!(
        open(&f),
        Err(VodError::ZeroTimescale { track: 1, .. })
    ));

    // Unsupported codec on every track.
    let mut f = good.clone();
    let at = f.windows(4).rposition(|w| w == b"avc1").unwrap();
    f[at..at + 4].copy_from_slice(b"vp09");
    let mut f2 = f.clone();
    let at = f2.windows(4).position(|w| w == b"mp4a").unwrap();
    f2[at..at + 4].copy_from_slice(b"ac-3");
    let e = open(&f2).unwrap_err();
    assert!(
        matches!(e, VodError::UnsupportedCodec { track: 1, .. }),
        "{e}"
    );
    // ... on one track only: that track is skipped.
    let ix = open(&f).unwrap();
    assert_eq!(ix.tracks().map(|t| t.id()).collect::<Vec<_>>(), [2]);

    // A data track only: no playable track.
    let mut f = good.clone();
    for _ in 0..2 {
        let at = f
            .windows(4)
            .position(|w| w == b"vide" || w == b"soun")
            .unwrap();
        f[at..at + 4].copy_from_slice(b"meta");
    }
    assert!(matches!(open(&f), Err(VodError::NoPlayableTrack)));
}

#[test]
fn unknown_track_and_segment() {
    let file = small_file();
    let ix = open(&file).unwrap();
    assert!(matches!(
        ix.fragment(&file[..], 9, 0),
        Err(VodError::UnknownTrack(9))
    ));
    assert!(matches!(
        ix.fragment(&file[..], 1, 3),
        Err(VodError::UnknownSegment { segment: 3, .. })
    ));
}

#[test]
fn changed_file_gives_an_error_not_a_panic() {
    let file = small_file();
    let ix = open(&file).unwrap();
    // Sample tables rewritten after indexing.
    let mut f = file.clone();
    patch(&mut f, b"stsz", 12, &7u32.to_be_bytes());
    assert!(ix.fragment(&f[..], 1, 0).is_err());
    // File truncated after indexing.
    assert!(ix.fragment(&file[..file.len() / 2], 1, 2).is_err());
}

#[test]
fn billions_of_empty_samples_are_refused_not_walked() {
    // One stsz size (1 byte) and counts patched to 2^31: a few bytes claim
    // more samples than the walk accepts, refused by count before walking
    // (chunk offsets that repeat could otherwise keep such a walk in bounds).
    let mut a = SynthTrack::audio(1, 10, "eng");
    a.sizes = vec![1; 10];
    a.uniform_size = true;
    a.chunk_len = 10;
    let mut f = materialize(&build(&[a], true));
    let huge = 0x8000_0000u32.to_be_bytes();
    patch(&mut f, b"stts", 8, &huge);
    patch(&mut f, b"stsz", 8, &huge);
    patch(&mut f, b"stsc", 12, &huge);
    let e = open(&f).unwrap_err();
    assert!(
        matches!(
            e,
            VodError::TooLarge {
                what: "sample count",
                ..
            }
        ),
        "{e}"
    );
}
