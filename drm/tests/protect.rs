//! Protecting what `vela_packager::boxes` writes: the result parses strictly
//! with mp4-atom, and an independent decryption — written here on the raw
//! `aes` block cipher, sharing no code with the crate — gives back the clear
//! samples bit for bit.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use bytes::Bytes;
use mp4_atom::{Any, Codec, DecodeMaybe};
use vela_drm::cenc::{self, protect_fragment, protect_init};
use vela_drm::{ContentKey, DrmError, Scheme, SystemId};
use vela_media::{AudioCodec, CodecConfig, Track, VideoCodec};
use vela_packager::boxes::{fragment, init_segment, Sample};

const KEY: ContentKey = ContentKey {
    period: 0,
    kid: [
        0x9e, 0xb4, 0x05, 0x0d, 0xe4, 0x4b, 0x49, 0x02, 0x8c, 0x61, 0x0b, 0x4b, 0x45, 0x11, 0x30,
        0x73,
    ],
    key: [
        0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f, 0x70, 0x81, 0x92, 0xa3, 0xb4, 0xc5, 0xd6, 0xe7, 0xf8,
        0x09,
    ],
    iv: [
        0xd5, 0xfb, 0xd6, 0xb8, 0x2e, 0xd9, 0x3e, 0x4e, 0xf9, 0x8a, 0xe4, 0x09, 0x31, 0xee, 0x33,
        0xb7,
    ],
};

/// xorshift64*: deterministic filler for sample payloads.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn h264_track() -> Track {
    // avcC of an x264 640x360 High profile stream, as in the packager's tests.
    let sps: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
    ];
    let pps: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    let mut rec = vec![1, 0x64, 0x00, 0x1e, 0xff, 0xe1];
    rec.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    rec.extend_from_slice(sps);
    rec.push(1);
    rec.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    rec.extend_from_slice(pps);
    rec.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0x00]);
    Track {
        id: 1,
        timescale: 90000,
        config: CodecConfig::Video {
            codec: VideoCodec::H264,
            width: 640,
            height: 360,
            frame_rate: Some(30.0),
            record: Bytes::from(rec),
        },
        bitrate: None,
    }
}

fn aac_track() -> Track {
    Track {
        id: 2,
        timescale: 48000,
        config: CodecConfig::Audio {
            codec: AudioCodec::Aac,
            sample_rate: 48000,
            channels: 2,
            specific_config: Bytes::from_static(&[0x11, 0x90]),
        },
        bitrate: Some(128_000),
    }
}

fn nal(rng: &mut Rng, t: u8, len: usize) -> Vec<u8> {
    let mut v = (len as u32).to_be_bytes().to_vec();
    v.push(t);
    v.extend(rng.bytes(len - 1));
    v
}

/// An IDR access unit with AUD, SEI, two slices; then P frames of varied size.
fn video_samples(rng: &mut Rng) -> Vec<Sample> {
    let mut out = Vec::new();
    for i in 0..12usize {
        let data = if i == 0 {
            [
                nal(rng, 9, 2),
                nal(rng, 6, 40),
                nal(rng, 5, 5000),
                nal(rng, 5, 3001),
            ]
            .concat()
        } else {
            let size = 20 + (rng.next() % 1500) as usize;
            [nal(rng, 9, 2), nal(rng, 1, size)].concat()
        };
        out.push(Sample {
            duration: 3000,
            cts_offset: if i % 3 == 1 { 6000 } else { 0 },
            keyframe: i == 0,
            data: Bytes::from(data),
        });
    }
    out
}

fn audio_samples(rng: &mut Rng) -> Vec<Sample> {
    (0..10)
        .map(|i| Sample {
            duration: 1024,
            cts_offset: 0,
            keyframe: true,
            data: Bytes::from(rng.bytes(7 + i * 37)),
        })
        .collect()
}

fn decode_all(mut buf: &[u8]) -> Vec<Any> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(
            Any::decode_maybe(&mut buf)
                .expect("strict decode")
                .expect("complete box"),
        );
    }
    out
}

/// One senc entry: IV bytes and (clear, protected) subsamples.
type SencEntry = (Vec<u8>, Vec<(usize, usize)>);

/// The senc entries, read with the IV size.
fn read_senc(data: &[u8], iv_size: usize, subsamples: bool) -> Vec<SencEntry> {
    let count = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
    let mut at = 4;
    let mut out = Vec::new();
    for _ in 0..count {
        let iv = data[at..at + iv_size].to_vec();
        at += iv_size;
        let mut subs = Vec::new();
        if subsamples {
            let n = u16::from_be_bytes([data[at], data[at + 1]]) as usize;
            at += 2;
            for _ in 0..n {
                let c = u16::from_be_bytes([data[at], data[at + 1]]) as usize;
                let p = u32::from_be_bytes(data[at + 2..at + 6].try_into().unwrap()) as usize;
                subs.push((c, p));
                at += 6;
            }
        }
        out.push((iv, subs));
    }
    assert_eq!(at, data.len(), "senc fully consumed");
    out
}

/// Independent CTR: counter block = IV (8 bytes) || 64-bit block counter.
fn ref_ctr(key: &[u8; 16], iv8: &[u8], ranges: &mut [&mut [u8]]) {
    let aes = Aes128::new(key.into());
    let mut counter = [0u8; 16];
    counter[..8].copy_from_slice(iv8);
    let mut ks = [0u8; 16];
    let mut used = 16;
    let mut n: u64 = 0;
    for r in ranges.iter_mut() {
        for b in r.iter_mut() {
            if used == 16 {
                counter[8..].copy_from_slice(&n.to_be_bytes());
                let mut blk = counter.into();
                aes.encrypt_block(&mut blk);
                ks.copy_from_slice(&blk);
                n += 1;
                used = 0;
            }
            *b ^= ks[used];
            used += 1;
        }
    }
}

/// Independent CBC decryption of whole blocks chosen by a 'cbcs' pattern.
fn ref_cbcs_decrypt(key: &[u8; 16], iv: &[u8; 16], crypt: usize, skip: usize, data: &mut [u8]) {
    let aes = Aes128::new(key.into());
    let mut chain = *iv;
    let mut blk = 0usize;
    let nblocks = data.len() / 16;
    while blk < nblocks {
        let group = if crypt == 0 { nblocks } else { crypt };
        if blk + group > nblocks && crypt != 0 {
            break;
        }
        for b in blk..blk + group {
            let c: [u8; 16] = data[b * 16..b * 16 + 16].try_into().unwrap();
            let mut x = c.into();
            aes.decrypt_block(&mut x);
            for i in 0..16 {
                data[b * 16 + i] = x[i] ^ chain[i];
            }
            chain = c;
        }
        blk += group + skip;
    }
}

struct Parsed {
    samples: Vec<Vec<u8>>,
    senc: Option<mp4_atom::Senc>,
    saiz: Vec<mp4_atom::Saiz>,
    saio: Vec<mp4_atom::Saio>,
    moof_len: usize,
    data_offset: i32,
}

fn parse_fragment(frag: &[u8]) -> Parsed {
    let atoms = decode_all(frag);
    let Any::Moof(moof) = &atoms[0] else {
        panic!("first box is not moof")
    };
    let Any::Mdat(mdat) = &atoms[1] else {
        panic!("second box is not mdat")
    };
    let traf = &moof.traf[0];
    let trun = &traf.trun[0];
    let moof_len = u32::from_be_bytes(frag[0..4].try_into().unwrap()) as usize;
    let data_offset = trun.data_offset.unwrap();
    // Sample bytes located through trun: data_offset is moof-relative.
    let mut at = data_offset as usize;
    let mut samples = Vec::new();
    for e in trun.samples.iter() {
        let n = e.size.unwrap() as usize;
        samples.push(frag[at..at + n].to_vec());
        at += n;
    }
    assert_eq!(at, moof_len + 8 + mdat.data.len(), "samples fill the mdat");
    Parsed {
        samples,
        senc: traf.senc.clone(),
        saiz: traf.saiz.clone(),
        saio: traf.saio.clone(),
        moof_len,
        data_offset,
    }
}

#[test]
fn cenc_video_fragment_parses_strictly_and_decrypts_independently() {
    let mut rng = Rng(0x5eed);
    let samples = video_samples(&mut rng);
    let clear = fragment(3, 1, 90_000, &samples);
    let track = h264_track();
    let seed = cenc::iv_seed(1, 3, 0);
    let enc = protect_fragment(&clear, Scheme::Cenc, &KEY, &track.config, seed).unwrap();
    let p = parse_fragment(&enc);
    assert_eq!(
        p.data_offset as usize,
        p.moof_len + 8,
        "trun data_offset follows the grown moof"
    );
    let senc = p.senc.expect("senc");
    assert!(senc.use_subsamples);
    assert_eq!(p.saiz.len(), 1);
    assert_eq!(p.saio.len(), 1);
    assert_eq!(p.saiz[0].sample_count as usize, samples.len());
    let entries = read_senc(&senc.data, 8, true);
    // saio points at the first senc entry (moof-relative): the 8 IV bytes there.
    let off = p.saio[0].offsets[0] as usize;
    assert_eq!(&enc[off..off + 8], &entries[0].0[..]);
    // saiz sizes match the entries.
    for (i, (_, subs)) in entries.iter().enumerate() {
        let size = 8 + 2 + 6 * subs.len();
        let z = &p.saiz[0];
        let recorded = if z.default_sample_info_size != 0 {
            z.default_sample_info_size as usize
        } else {
            z.sample_info_size[i] as usize
        };
        assert_eq!(recorded, size);
    }
    let mut ivs = std::collections::HashSet::new();
    for (i, (s, (iv, subs))) in p.samples.iter().zip(&entries).enumerate() {
        assert!(ivs.insert(iv.clone()), "IV reused");
        assert_ne!(s[..], samples[i].data[..], "sample {i} left clear");
        let mut dec = s.clone();
        let mut ranges: Vec<&mut [u8]> = Vec::new();
        let mut rest = &mut dec[..];
        for &(c, pr) in subs {
            let (_, r) = rest.split_at_mut(c);
            let (prot, r) = r.split_at_mut(pr);
            // NAL length prefixes and headers are in the clear part.
            ranges.push(prot);
            rest = r;
        }
        assert!(rest.is_empty(), "subsamples cover the sample");
        ref_ctr(&KEY.key, iv, &mut ranges);
        assert_eq!(dec[..], samples[i].data[..], "sample {i}");
    }
    // The clear fragment's other boxes are unchanged: same mfhd/tfdt/trun entries.
    let a = decode_all(&clear);
    let b = decode_all(&enc);
    let (Any::Moof(ma), Any::Moof(mb)) = (&a[0], &b[0]) else {
        panic!()
    };
    assert_eq!(ma.mfhd, mb.mfhd);
    assert_eq!(ma.traf[0].tfhd, mb.traf[0].tfhd);
    assert_eq!(ma.traf[0].tfdt, mb.traf[0].tfdt);
    assert_eq!(ma.traf[0].trun[0].samples, mb.traf[0].trun[0].samples);
}

#[test]
fn cbcs_video_fragment_parses_strictly_and_decrypts_independently() {
    let mut rng = Rng(77);
    let samples = video_samples(&mut rng);
    let clear = fragment(9, 1, 0, &samples);
    let enc = protect_fragment(&clear, Scheme::Cbcs, &KEY, &h264_track().config, 0).unwrap();
    let p = parse_fragment(&enc);
    assert_eq!(p.data_offset as usize, p.moof_len + 8);
    let senc = p.senc.expect("senc");
    let entries = read_senc(&senc.data, 0, true);
    assert_eq!(entries.len(), samples.len());
    for (i, (s, (_, subs))) in p.samples.iter().zip(&entries).enumerate() {
        let mut dec = s.clone();
        let mut at = 0;
        for &(c, pr) in subs {
            at += c;
            ref_cbcs_decrypt(&KEY.key, &KEY.iv, 1, 9, &mut dec[at..at + pr]);
            at += pr;
        }
        assert_eq!(at, dec.len());
        assert_eq!(dec[..], samples[i].data[..], "sample {i}");
    }
}

#[test]
fn audio_fragments_both_schemes() {
    let mut rng = Rng(3);
    let samples = audio_samples(&mut rng);
    let clear = fragment(1, 2, 0, &samples);
    let cfg = aac_track().config;
    // cenc: whole-sample CTR, senc without subsamples.
    let enc = protect_fragment(&clear, Scheme::Cenc, &KEY, &cfg, cenc::iv_seed(2, 1, 0)).unwrap();
    let p = parse_fragment(&enc);
    let senc = p.senc.expect("senc");
    assert!(!senc.use_subsamples);
    assert_eq!(p.saiz[0].default_sample_info_size, 8);
    let entries = read_senc(&senc.data, 8, false);
    for (i, (s, (iv, _))) in p.samples.iter().zip(&entries).enumerate() {
        let mut dec = s.clone();
        ref_ctr(&KEY.key, iv, &mut [&mut dec[..]]);
        assert_eq!(dec[..], samples[i].data[..]);
    }
    // cbcs: whole blocks with the constant IV, partial tail clear, no senc.
    let enc = protect_fragment(&clear, Scheme::Cbcs, &KEY, &cfg, 0).unwrap();
    let p = parse_fragment(&enc);
    assert!(p.senc.is_none() && p.saiz.is_empty() && p.saio.is_empty());
    for (i, s) in p.samples.iter().enumerate() {
        let orig = &samples[i].data;
        let tail = orig.len() / 16 * 16;
        assert_eq!(s[tail..], orig[tail..], "partial block stays clear");
        let mut dec = s.clone();
        ref_cbcs_decrypt(&KEY.key, &KEY.iv, 0, 0, &mut dec);
        assert_eq!(dec[..], orig[..]);
    }
}

#[test]
fn segment_of_several_chunks_equals_its_parts() {
    let mut rng = Rng(11);
    let s = video_samples(&mut rng);
    let parts = [fragment(1, 1, 0, &s[..4]), fragment(2, 1, 12000, &s[4..])];
    let segment = [parts[0].to_vec(), parts[1].to_vec()].concat();
    let cfg = h264_track().config;
    let whole =
        protect_fragment(&segment, Scheme::Cenc, &KEY, &cfg, cenc::iv_seed(1, 8, 0)).unwrap();
    let p0 = protect_fragment(&parts[0], Scheme::Cenc, &KEY, &cfg, cenc::iv_seed(1, 8, 0)).unwrap();
    let p1 = protect_fragment(&parts[1], Scheme::Cenc, &KEY, &cfg, cenc::iv_seed(1, 8, 1)).unwrap();
    assert_eq!(whole[..], [p0.to_vec(), p1.to_vec()].concat()[..]);
}

fn strip_pssh(init: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    // Top level: ftyp, moov. mp4-atom 0.17 has no pssh type, and strict
    // parsing refuses unknown boxes in moov, so take them out here.
    let ftyp_len = u32::from_be_bytes(init[0..4].try_into().unwrap()) as usize;
    let moov = &init[ftyp_len..];
    assert_eq!(&moov[4..8], b"moov");
    let mut kept = Vec::new();
    let mut pssh = Vec::new();
    let mut at = 8;
    while at < moov.len() {
        let n = u32::from_be_bytes(moov[at..at + 4].try_into().unwrap()) as usize;
        if &moov[at + 4..at + 8] == b"pssh" {
            pssh.push(moov[at..at + n].to_vec());
        } else {
            kept.extend_from_slice(&moov[at..at + n]);
        }
        at += n;
    }
    let mut out = init[..ftyp_len].to_vec();
    out.extend_from_slice(&((kept.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(b"moov");
    out.extend_from_slice(&kept);
    (out, pssh)
}

/// Child boxes of a sample entry body after `fixed` bytes, by type.
fn children(body: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let n = u32::from_be_bytes(body[at..at + 4].try_into().unwrap()) as usize;
        out.push((
            body[at + 4..at + 8].try_into().unwrap(),
            body[at + 8..at + n].to_vec(),
        ));
        at += n;
    }
    out
}

fn check_init(track: &Track, scheme: Scheme, entry: &[u8; 4], original: &[u8; 4], fixed: usize) {
    let clear = init_segment(track);
    let enc = protect_init(&clear, scheme, &KEY, &SystemId::ALL).unwrap();
    let (stripped, pssh) = strip_pssh(&enc);
    let atoms = decode_all(&stripped);
    let Any::Moov(moov) = &atoms[1] else { panic!() };
    let codec = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0];
    let Codec::Unknown(kind, body) = codec else {
        panic!("expected an encrypted sample entry, got {codec:?}")
    };
    assert_eq!(kind.as_ref(), entry);
    let kids = children(&body[fixed..]);
    let (_, sinf) = kids.iter().find(|(k, _)| k == b"sinf").expect("sinf");
    let sinf = children(sinf);
    assert_eq!(sinf[0].0, *b"frma");
    assert_eq!(&sinf[0].1[..], original);
    assert_eq!(sinf[1].0, *b"schm");
    assert_eq!(&sinf[1].1[4..8], &scheme.fourcc());
    assert_eq!(&sinf[1].1[8..12], &0x0001_0000u32.to_be_bytes());
    assert_eq!(sinf[2].0, *b"schi");
    let tenc = children(&sinf[2].1);
    assert_eq!(tenc[0].0, *b"tenc");
    let t = &tenc[0].1;
    assert_eq!(t[6], 1, "default_isProtected");
    assert_eq!(&t[8..24], &KEY.kid);
    match scheme {
        Scheme::Cenc => {
            assert_eq!(t[0], 0);
            assert_eq!(t[7], 8);
            assert_eq!(t.len(), 24);
        }
        Scheme::Cbcs => {
            assert_eq!(t[0], 1);
            assert_eq!(t[5], if entry == b"encv" { 0x19 } else { 0 });
            assert_eq!(t[7], 0);
            assert_eq!(t[24], 16);
            assert_eq!(&t[25..41], &KEY.iv);
        }
    }
    // Renamed back and without sinf, the entry parses strictly as the clear one.
    let mut clear_entry = body[..fixed].to_vec();
    for (k, b) in &kids {
        if k != b"sinf" {
            clear_entry.extend_from_slice(&((b.len() + 8) as u32).to_be_bytes());
            clear_entry.extend_from_slice(k);
            clear_entry.extend_from_slice(b);
        }
    }
    let mut boxed = ((clear_entry.len() + 8) as u32).to_be_bytes().to_vec();
    boxed.extend_from_slice(original);
    boxed.extend_from_slice(&clear_entry);
    let again = decode_all(&boxed);
    assert_eq!(again.len(), 1);
    // pssh: ClearKey v1 with the KID, Widevine and PlayReady v0 with data.
    assert_eq!(pssh.len(), 3);
    for (b, sys) in pssh.iter().zip(SystemId::ALL) {
        assert_eq!(&b[12..28], &sys.uuid());
        match sys {
            SystemId::ClearKey => {
                assert_eq!(b[8], 1);
                assert_eq!(&b[32..48], &KEY.kid);
            }
            _ => {
                assert_eq!(b[8], 0);
                let n = u32::from_be_bytes(b[28..32].try_into().unwrap()) as usize;
                assert_eq!(n, b.len() - 32);
            }
        }
    }
}

#[test]
fn init_segments_parse_strictly_with_encv_enca_sinf_tenc_pssh() {
    for scheme in [Scheme::Cenc, Scheme::Cbcs] {
        check_init(&h264_track(), scheme, b"encv", b"avc1", 78);
        check_init(&aac_track(), scheme, b"enca", b"mp4a", 28);
    }
}

#[test]
fn protected_input_is_refused() {
    let clear = init_segment(&h264_track());
    let enc = protect_init(&clear, Scheme::Cenc, &KEY, &[]).unwrap();
    assert!(matches!(
        protect_init(&enc, Scheme::Cenc, &KEY, &[]),
        Err(DrmError::AlreadyProtected(_))
    ));
    let mut rng = Rng(5);
    let frag = fragment(1, 1, 0, &video_samples(&mut rng));
    let cfg = h264_track().config;
    let enc = protect_fragment(&frag, Scheme::Cenc, &KEY, &cfg, 0).unwrap();
    assert!(matches!(
        protect_fragment(&enc, Scheme::Cenc, &KEY, &cfg, 0),
        Err(DrmError::AlreadyProtected(_))
    ));
}

/// Deterministic stand-in for the fuzz target: seeded random bytes, and
/// random mutations of real fragments and init segments, through every entry
/// point. Errors are fine; a panic fails the test.
#[test]
fn random_and_mutated_inputs_never_panic() {
    let mut rng = Rng(0xdead_beef);
    let cfgs = [h264_track().config, aac_track().config];
    let frag = fragment(1, 1, 0, &video_samples(&mut rng)).to_vec();
    let afrag = fragment(1, 2, 0, &audio_samples(&mut rng)).to_vec();
    let init = init_segment(&h264_track()).to_vec();
    let ainit = init_segment(&aac_track()).to_vec();
    let seeds = [frag, afrag, init, ainit];
    for round in 0..4000u32 {
        let input: Vec<u8> = if round % 4 == 0 {
            let n = (rng.next() % 512) as usize;
            rng.bytes(n)
        } else {
            let mut s = seeds[(round as usize / 4) % seeds.len()].clone();
            let flips = 1 + rng.next() % 6;
            for _ in 0..flips {
                let i = (rng.next() as usize) % s.len();
                match rng.next() % 4 {
                    0 => s[i] = rng.next() as u8,
                    1 => s[i] = 0xff,
                    2 => s.truncate(i),
                    _ => s[i] ^= 1 << (rng.next() % 8),
                }
                if s.is_empty() {
                    break;
                }
            }
            s
        };
        for cfg in &cfgs {
            for scheme in [Scheme::Cenc, Scheme::Cbcs] {
                let _ = protect_fragment(&input, scheme, &KEY, cfg, u64::from(round));
            }
        }
        let _ = protect_init(&input, Scheme::Cbcs, &KEY, &SystemId::ALL);
        let _ = vela_drm::clearkey::license_response(&input, |_| Some([0; 16]));
    }
}

/// The body of the first box whose header ends with `tag` (a fourcc, or a
/// `uuid` box's 16-byte extended type), from after `tag`.
fn box_body<'a>(data: &'a [u8], tag: &[u8]) -> &'a [u8] {
    let at = data
        .windows(tag.len())
        .position(|w| w == tag)
        .expect("box present");
    let start = if tag.len() == 4 { at - 4 } else { at - 8 };
    let size = u32::from_be_bytes(data[start..start + 4].try_into().unwrap()) as usize;
    &data[at + tag.len()..start + size]
}

/// Smooth's PIFF variant: the same encryption as 'cenc' (same bytes in the
/// mdat for the same seed), and the sample encryption entries twice: in
/// `senc` and in PIFF's `uuid` box, with the moof offsets still right.
#[test]
fn piff_fragment_carries_senc_entries_in_its_uuid_box_too() {
    let mut rng = Rng(0x91ff);
    let samples = video_samples(&mut rng);
    let clear = fragment(4, 1, 0, &samples);
    let track = h264_track();
    let seed = cenc::iv_seed(0x81, 4, 0);
    let cenc_only = protect_fragment(&clear, Scheme::Cenc, &KEY, &track.config, seed).unwrap();
    let piff = cenc::protect_fragment_piff(&clear, &KEY, &track.config, seed).unwrap();
    let senc = box_body(&piff, b"senc");
    let uuid = box_body(&piff, &cenc::PIFF_SENC_UUID);
    assert_eq!(
        senc, uuid,
        "PIFF entries = senc entries (flags 0x2, count, IVs, subsamples)"
    );
    assert_eq!(senc, box_body(&cenc_only, b"senc"));
    assert_eq!(
        box_body(&piff, b"mdat"),
        box_body(&cenc_only, b"mdat"),
        "the same encrypted samples"
    );
    // The trun's data_offset still points at the first sample (mp4-atom's
    // strict reader refuses uuid boxes in a traf, so read it by hand).
    assert_eq!(&piff[4..8], b"moof");
    let moof_len = u32::from_be_bytes(piff[0..4].try_into().unwrap()) as usize;
    let trun = box_body(&piff, b"trun");
    let count = u32::from_be_bytes(trun[4..8].try_into().unwrap()) as usize;
    let data_offset = u32::from_be_bytes(trun[8..12].try_into().unwrap()) as usize;
    assert_eq!(count, samples.len());
    assert_eq!(data_offset, moof_len + 8);
    assert_eq!(&piff[moof_len + 4..moof_len + 8], b"mdat");
}
