//! ISO/IEC 23001-7 common encryption of CMAF init segments and fragments.
//!
//! # Fragments
//! [`protect_fragment`] takes clear bytes as `vela_packager::boxes::fragment`
//! writes them — one or more `moof`(`mfhd`, `traf`(`tfhd`, `tfdt`, `trun`)) +
//! `mdat` pairs, optionally preceded by `styp`/`sidx`/`prft`/`emsg` — parses
//! them with the small reader in `bmff` (a small box reader of this crate), encrypts the sample bytes in
//! the copy it writes, and writes each `moof` anew with `saiz`, `saio` and
//! `senc` added to the `traf`. Because the `moof` grows, the `trun`
//! `data_offset` (relative to the `moof`, default-base-is-moof) grows by the
//! same amount; `saio` points at the first `senc` entry, also relative to the
//! `moof`. Nothing is edited as text: a box that is not understood is an
//! error, and every size and count from the input is checked before use.
//!
//! # What is encrypted (after Shaka Packager's subsample generator)
//! * H.264 / H.265 video, both schemes: subsample encryption. Every NAL unit
//!   keeps its length prefix and NAL header clear; non-VCL NAL units (SPS,
//!   PPS, SEI, AUD, ...) stay clear whole. For a VCL NAL unit (H.264 types
//!   1-5, H.265 types 0-31) a further [`SLICE_HEADER_CLEAR`] bytes stay clear
//!   so that the slice header remains readable without parsing it (Apple's
//!   SAMPLE-AES keeps the same 32 bytes clear), and the protected range is
//!   cut to whole 16-byte blocks, the remainder joining the clear bytes before
//!   it (23001-7 asks block-aligned protected ranges for 'cenc' video, and it
//!   changes nothing for 'cbcs', whose partial blocks stay clear anyway).
//! * 'cenc' (AES-128-CTR): each sample one keystream over its protected
//!   ranges, from its own 8-byte IV (the low 64 bits of the counter block
//!   start at 0), written in `senc`.
//! * 'cbcs' (AES-128-CBC): 1:9 pattern over each video protected range, IV
//!   reset to the constant IV (in `tenc`) at each subsample; audio samples
//!   are encrypted whole-block, no pattern (tenc crypt:skip 0:0), trailing
//!   partial block clear. Audio then has no per-sample auxiliary data at all,
//!   so no `senc`/`saiz`/`saio` is written for it.
//! * AAC in 'cenc': the whole sample, no subsamples.
//! * AV1 needs OBU-aware subsamples (tile data only); not implemented yet:
//!   [`DrmError::Unsupported`].
//!
//! # IVs in 'cenc'
//! 8-byte per-sample IVs must never repeat under one key. Sample `i` of
//! chunk `k` (the k-th `moof` of the input) gets
//! `IV = key.iv[0..8] + ((iv_seed + k) << 16) + i` (64-bit wrapping), so the
//! caller makes `iv_seed` unique per chunk: [`iv_seed`] packs (track, media
//! sequence number, part index) into it. A segment that is the concatenation
//! of its LL-HLS parts then gets exactly the same bytes as the parts
//! encrypted one by one with `iv_seed(track, msn, part)`.
//!
//! # Init segments
//! [`protect_init`] renames the sample entry (`avc1`/`avc3`/`hvc1`/`hev1`/
//! `av01` to `encv`, `mp4a` to `enca`), appends `sinf`(`frma`, `schm`,
//! `schi`(`tenc`)) to it, and appends one `pssh` per requested system to
//! `moov`; the sizes of every ancestor are rewritten.

use crate::bmff::{boxes, fourcc_str, RawBox, Reader, Writer};
use crate::crypt::{self, CtrStream, BLOCK};
use crate::pssh::{self, SystemId};
use crate::{ContentKey, DrmError, Scheme};
use bytes::Bytes;
use vela_media::{CodecConfig, VideoCodec};

/// Bytes of a VCL NAL unit's payload (after the NAL header) kept clear to
/// cover the slice header.
pub const SLICE_HEADER_CLEAR: usize = 32;
/// Most samples in one chunk: the 'cenc' IV leaves 16 bits for the index.
pub const MAX_SAMPLES: usize = 1 << 16;
/// Most subsamples in one sample: `saiz` sizes are one byte
/// (8-byte IV + 2 + 6 per subsample <= 255).
pub const MAX_SUBSAMPLES: usize = 40;
/// The 'cbcs' video pattern: 1 encrypted block, 9 clear.
pub const CBCS_CRYPT: u8 = 1;
pub const CBCS_SKIP: u8 = 9;

/// A per-chunk IV seed unique for (track, media sequence number, part):
/// 8 bits of track id, 32 bits of msn, 8 bits of part index.
pub fn iv_seed(track_id: u32, msn: u64, part: u32) -> u64 {
    (u64::from(track_id & 0xff) << 40) | ((msn & 0xffff_ffff) << 8) | u64::from(part & 0xff)
}

/// The 8-byte 'cenc' IV of sample `index` of a chunk seeded `seed`.
fn sample_iv(key: &ContentKey, seed: u64, index: usize) -> [u8; 8] {
    let mut base = [0u8; 8];
    base.copy_from_slice(&key.iv[..8]);
    let v = u64::from_be_bytes(base)
        .wrapping_add(seed.wrapping_shl(16))
        .wrapping_add(index as u64);
    v.to_be_bytes()
}

/// How a track's samples are cut into clear and protected bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Length-prefixed NAL units; `header` is the NAL header size.
    Nal {
        length_size: usize,
        header: usize,
        hevc: bool,
    },
    /// The whole sample (audio).
    Whole,
}

fn layout_of(codec: &CodecConfig) -> Result<Layout, DrmError> {
    match codec {
        CodecConfig::Video {
            codec: VideoCodec::H264,
            record,
            ..
        } => Ok(Layout::Nal {
            length_size: record.get(4).map_or(4, |b| usize::from(b & 3) + 1),
            header: 1,
            hevc: false,
        }),
        CodecConfig::Video {
            codec: VideoCodec::H265,
            record,
            ..
        } => Ok(Layout::Nal {
            length_size: record.get(21).map_or(4, |b| usize::from(b & 3) + 1),
            header: 2,
            hevc: true,
        }),
        CodecConfig::Video {
            codec: VideoCodec::Av1,
            ..
        } => Err(DrmError::Unsupported(
            "AV1 common encryption (OBU subsamples)".into(),
        )),
        CodecConfig::Audio { .. } => Ok(Layout::Whole),
    }
}

/// One subsample: clear bytes, then protected bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subsample {
    pub clear: u16,
    pub protected: u32,
}

fn push_clear_only(out: &mut Vec<Subsample>, mut clear: usize) {
    while clear > usize::from(u16::MAX) {
        out.push(Subsample {
            clear: u16::MAX,
            protected: 0,
        });
        clear -= usize::from(u16::MAX);
    }
    if clear > 0 {
        out.push(Subsample {
            clear: clear as u16,
            protected: 0,
        });
    }
}

/// The subsample map of one length-prefixed NAL sample.
fn nal_subsamples(
    sample: &[u8],
    length_size: usize,
    header: usize,
    hevc: bool,
) -> Result<Vec<Subsample>, DrmError> {
    let mut out = Vec::new();
    let mut clear = 0usize;
    let mut at = 0usize;
    while at < sample.len() {
        if sample.len() - at < length_size {
            return Err(DrmError::Malformed {
                what: "NAL length prefix truncated",
                offset: at,
            });
        }
        let len = sample[at..at + length_size]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        let body = at + length_size;
        if len > sample.len() - body {
            return Err(DrmError::Malformed {
                what: "NAL unit longer than its sample",
                offset: at,
            });
        }
        let vcl = len >= header
            && if hevc {
                (sample[body] >> 1) & 0x3f < 32
            } else {
                (1..=5).contains(&(sample[body] & 0x1f))
            };
        let lead = length_size + header + SLICE_HEADER_CLEAR;
        let total = length_size + len;
        if vcl && total > lead {
            let rest = total - lead;
            let protected = rest / BLOCK * BLOCK;
            if protected > 0 {
                // The clear field is 16 bits: emit clear-only entries first
                // when a long run of non-VCL units precedes this one.
                let mut c = clear + lead + rest % BLOCK;
                while c > usize::from(u16::MAX) {
                    out.push(Subsample {
                        clear: u16::MAX,
                        protected: 0,
                    });
                    c -= usize::from(u16::MAX);
                }
                out.push(Subsample {
                    clear: c as u16,
                    protected: u32::try_from(protected).map_err(|_| DrmError::TooLarge {
                        what: "NAL unit",
                        limit: u32::MAX as usize,
                    })?,
                });
                clear = 0;
            } else {
                clear += total;
            }
        } else {
            clear += total;
        }
        at = body + len;
    }
    push_clear_only(&mut out, clear);
    if out.len() > MAX_SUBSAMPLES {
        return Err(DrmError::TooLarge {
            what: "subsamples in one sample",
            limit: MAX_SUBSAMPLES,
        });
    }
    Ok(out)
}

/// A parsed `moof` of the shapes our packager writes.
struct Moof<'a> {
    raw: RawBox<'a>,
    /// Sample sizes in trun order.
    sizes: Vec<usize>,
    /// Absolute offset (in the input) of the first sample's data.
    data_start: usize,
}

fn parse_moof<'a>(moof: RawBox<'a>) -> Result<Moof<'a>, DrmError> {
    let mut traf = None;
    for b in boxes(moof.body) {
        let b = b?;
        if &b.kind == b"traf" {
            if traf.is_some() {
                return Err(DrmError::Unsupported("more than one traf in a moof".into()));
            }
            traf = Some(b);
        }
    }
    let traf = traf.ok_or(DrmError::MissingBox {
        what: "traf",
        parent: "moof",
    })?;
    let mut default_size = None;
    let mut tfhd_seen = false;
    let mut trun = None;
    for b in boxes(traf.body) {
        let b = b?;
        match &b.kind {
            b"tfhd" => {
                tfhd_seen = true;
                let mut r = Reader::new(b.body, "tfhd truncated");
                let flags = r.u32()? & 0x00ff_ffff;
                r.u32()?; // track id
                if flags & 0x1 != 0 {
                    return Err(DrmError::Unsupported(
                        "tfhd base-data-offset (only moof-relative offsets)".into(),
                    ));
                }
                if flags & 0x2 != 0 {
                    r.u32()?;
                }
                if flags & 0x8 != 0 {
                    r.u32()?;
                }
                if flags & 0x10 != 0 {
                    default_size = Some(r.u32()? as usize);
                }
            }
            b"trun" => {
                if trun.is_some() {
                    return Err(DrmError::Unsupported("more than one trun in a traf".into()));
                }
                trun = Some(b);
            }
            b"senc" | b"saiz" | b"saio" => {
                return Err(DrmError::AlreadyProtected("senc/saiz/saio in traf"))
            }
            _ => {}
        }
    }
    if !tfhd_seen {
        return Err(DrmError::MissingBox {
            what: "tfhd",
            parent: "traf",
        });
    }
    let trun = trun.ok_or(DrmError::MissingBox {
        what: "trun",
        parent: "traf",
    })?;
    let mut r = Reader::new(trun.body, "trun truncated");
    let flags = r.u32()? & 0x00ff_ffff;
    let count = r.u32()? as usize;
    if flags & 0x1 == 0 {
        return Err(DrmError::Unsupported("trun without data_offset".into()));
    }
    let data_offset = r.u32()? as i32;
    if flags & 0x4 != 0 {
        r.u32()?;
    }
    let per_sample = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|&&f| flags & f != 0)
        .count()
        * 4;
    if count > MAX_SAMPLES {
        return Err(DrmError::TooLarge {
            what: "samples in one trun",
            limit: MAX_SAMPLES,
        });
    }
    if per_sample > 0 && count > r.remaining() / per_sample {
        return Err(DrmError::Malformed {
            what: "trun sample count exceeds its entries",
            offset: trun.offset,
        });
    }
    let mut sizes = Vec::with_capacity(count);
    for _ in 0..count {
        if flags & 0x100 != 0 {
            r.u32()?;
        }
        let size = if flags & 0x200 != 0 {
            r.u32()? as usize
        } else {
            default_size.ok_or(DrmError::Malformed {
                what: "no sample size in trun nor tfhd",
                offset: trun.offset,
            })?
        };
        if flags & 0x400 != 0 {
            r.u32()?;
        }
        if flags & 0x800 != 0 {
            r.u32()?;
        }
        sizes.push(size);
    }
    let data_start = i64::try_from(moof.offset)
        .ok()
        .and_then(|o| o.checked_add(i64::from(data_offset)))
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| {
            DrmError::SampleRange(format!("data_offset {data_offset} before the file"))
        })?;
    Ok(Moof {
        raw: moof,
        sizes,
        data_start,
    })
}

/// One sample to encrypt: its range in the input, its index in its chunk,
/// its subsamples and (for 'cenc') its IV.
struct Job {
    start: usize,
    end: usize,
    index: usize,
    subs: Vec<Subsample>,
    iv: [u8; 8],
}

/// Encrypts one clear fragment (or a segment of several `moof`+`mdat`
/// chunks) with `scheme` under `key`. `codec` is the track's configuration
/// (it decides the subsample layout); `iv_seed` makes 'cenc' IVs unique (see
/// the module docs and [`iv_seed`]); 'cbcs' ignores it.
pub fn protect_fragment(
    frag: &[u8],
    scheme: Scheme,
    key: &ContentKey,
    codec: &CodecConfig,
    iv_seed: u64,
) -> Result<Bytes, DrmError> {
    protect(frag, scheme, key, codec, iv_seed, false)
}

/// The PIFF 1.1 sample encryption box's `uuid` (Smooth Streaming).
pub const PIFF_SENC_UUID: [u8; 16] = [
    0xa2, 0x39, 0x4f, 0x52, 0x5a, 0x9b, 0x4f, 0x14, 0xa2, 0x44, 0x6c, 0x42, 0x7c, 0x64, 0x8d, 0xf4,
];

/// [`protect_fragment`] in 'cenc' for Smooth Streaming: the `traf` also
/// carries the per-sample IVs and subsamples in PIFF's sample encryption
/// `uuid` box, which Smooth clients read (CENC readers read `senc`).
pub fn protect_fragment_piff(
    frag: &[u8],
    key: &ContentKey,
    codec: &CodecConfig,
    iv_seed: u64,
) -> Result<Bytes, DrmError> {
    protect(frag, Scheme::Cenc, key, codec, iv_seed, true)
}

fn protect(
    frag: &[u8],
    scheme: Scheme,
    key: &ContentKey,
    codec: &CodecConfig,
    iv_seed: u64,
    piff: bool,
) -> Result<Bytes, DrmError> {
    let layout = layout_of(codec)?;
    let top: Vec<RawBox<'_>> = boxes(frag).collect::<Result<_, _>>()?;
    if !top.iter().any(|b| &b.kind == b"moof") {
        return Err(DrmError::MissingBox {
            what: "moof",
            parent: "fragment",
        });
    }
    // Room for senc: per sample IV + subsamples (bounded by the caps above).
    let mut w = Writer::with_capacity(frag.len() + 1024);
    // Samples are encrypted after the copy, where they land in the output:
    // each mdat's (input offset, length, header length, output offset) maps
    // an input sample range to its output range.
    let mut mdats: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    let mut chunk: u64 = 0;
    for b in &top {
        match &b.kind {
            b"moof" => {
                let m = parse_moof(*b)?;
                let per_sample_iv = scheme == Scheme::Cenc;
                let mut entries = Vec::with_capacity(m.sizes.len());
                let mut at = m.data_start;
                for (i, &size) in m.sizes.iter().enumerate() {
                    let end = at
                        .checked_add(size)
                        .filter(|&e| e <= frag.len())
                        .ok_or_else(|| {
                            DrmError::SampleRange(format!("sample {i} of {size} bytes at {at}"))
                        })?;
                    let subs = match layout {
                        Layout::Nal {
                            length_size,
                            header,
                            hevc,
                        } => nal_subsamples(&frag[at..end], length_size, header, hevc)?,
                        Layout::Whole => Vec::new(),
                    };
                    let iv = if per_sample_iv {
                        sample_iv(key, iv_seed.wrapping_add(chunk), i)
                    } else {
                        [0; 8]
                    };
                    entries.push((subs, iv));
                    jobs.push(Job {
                        start: at,
                        end,
                        index: i,
                        subs: Vec::new(),
                        iv,
                    });
                    at = end;
                }
                write_moof(&mut w, &m, scheme, layout, &entries, piff)?;
                // Encryption jobs need the subsamples; move them over.
                let first = jobs.len() - entries.len();
                for (job, (subs, _)) in jobs[first..].iter_mut().zip(entries) {
                    job.subs = subs;
                }
                chunk += 1;
            }
            b"mdat" => {
                mdats.push((
                    b.offset,
                    b.bytes.len(),
                    b.bytes.len() - b.body.len(),
                    w.pos(),
                ));
                w.bytes(b.bytes);
            }
            _ => w.bytes(b.bytes),
        }
    }
    // Encrypt each sample where it now lies in the output.
    for Job {
        start,
        end,
        index: i,
        subs,
        iv: iv8,
    } in jobs
    {
        let (in_off, _, _, out_off) = mdats
            .iter()
            .copied()
            .find(|&(o, l, h, _)| start >= o + h && end <= o + l)
            .ok_or_else(|| DrmError::SampleRange(format!("sample {i} is not inside an mdat")))?;
        let s = out_off + (start - in_off);
        let e = out_off + (end - in_off);
        encrypt_sample(&mut w.buf[s..e], scheme, layout, key, &subs, &iv8);
    }
    Ok(Bytes::from(w.buf))
}

fn encrypt_sample(
    sample: &mut [u8],
    scheme: Scheme,
    layout: Layout,
    key: &ContentKey,
    subs: &[Subsample],
    iv8: &[u8; 8],
) {
    match (scheme, layout) {
        (Scheme::Cenc, Layout::Whole) => {
            let mut iv = [0u8; 16];
            iv[..8].copy_from_slice(iv8);
            crypt::aes128_ctr(&key.key, &iv, sample);
        }
        (Scheme::Cenc, Layout::Nal { .. }) => {
            let mut iv = [0u8; 16];
            iv[..8].copy_from_slice(iv8);
            let mut ctr = CtrStream::new(&key.key, &iv);
            let mut at = 0usize;
            for s in subs {
                at += usize::from(s.clear);
                let p = s.protected as usize;
                ctr.apply(&mut sample[at..at + p]);
                at += p;
            }
        }
        (Scheme::Cbcs, Layout::Whole) => {
            crypt::aes128_cbc_blocks(&key.key, &key.iv, sample);
        }
        (Scheme::Cbcs, Layout::Nal { .. }) => {
            let mut at = 0usize;
            for s in subs {
                at += usize::from(s.clear);
                let p = s.protected as usize;
                crypt::aes128_cbcs_pattern(
                    &key.key,
                    &key.iv,
                    CBCS_CRYPT,
                    CBCS_SKIP,
                    &mut sample[at..at + p],
                );
                at += p;
            }
        }
    }
}

fn write_moof(
    w: &mut Writer,
    m: &Moof<'_>,
    scheme: Scheme,
    layout: Layout,
    entries: &[(Vec<Subsample>, [u8; 8])],
    piff: bool,
) -> Result<(), DrmError> {
    let moof_start = w.pos();
    let iv_size: usize = if scheme == Scheme::Cenc { 8 } else { 0 };
    let subsamples = matches!(layout, Layout::Nal { .. });
    let aux = iv_size > 0 || subsamples;
    let mut data_offset_at = None;
    w.begin(b"moof");
    for b in boxes(m.raw.body) {
        let b = b?;
        if &b.kind != b"traf" {
            w.bytes(b.bytes);
            continue;
        }
        w.begin(b"traf");
        for c in boxes(b.body) {
            let c = c?;
            if &c.kind == b"trun" {
                // Same trun; only data_offset (right after count) changes.
                data_offset_at = Some(w.pos() + 16);
            }
            w.bytes(c.bytes);
        }
        if aux {
            let info_size = |(subs, _): &(Vec<Subsample>, [u8; 8])| {
                iv_size + if subsamples { 2 + 6 * subs.len() } else { 0 }
            };
            let sizes: Vec<usize> = entries.iter().map(info_size).collect();
            let uniform = sizes.windows(2).all(|p| p[0] == p[1]);
            w.begin_full(b"saiz", 0, 0);
            if uniform {
                w.u8(sizes.first().copied().unwrap_or(0) as u8);
                w.u32(sizes.len() as u32);
            } else {
                w.u8(0);
                w.u32(sizes.len() as u32);
                for s in &sizes {
                    // <= 8 + 2 + 6 * MAX_SUBSAMPLES = 250.
                    w.u8(*s as u8);
                }
            }
            w.end()?;
            w.begin_full(b"saio", 0, 0);
            w.u32(1);
            let saio_at = w.pos();
            w.u32(0);
            w.end()?;
            let write_entries = |w: &mut Writer| {
                w.u32(entries.len() as u32);
                for (subs, iv) in entries {
                    w.bytes(&iv[..iv_size]);
                    if subsamples {
                        w.u16(subs.len() as u16);
                        for s in subs {
                            w.u16(s.clear);
                            w.u32(s.protected);
                        }
                    }
                }
            };
            w.begin_full(b"senc", 0, if subsamples { 0x2 } else { 0 });
            let first_entry = w.pos() - moof_start + 4;
            write_entries(w);
            w.end()?;
            w.patch_u32(saio_at, first_entry as u32);
            if piff {
                // PIFF: the same entries in a uuid box (version 0; flag 0x2:
                // subsamples; the track's tenc gives algorithm, IV size, KID).
                w.begin(b"uuid");
                w.bytes(&PIFF_SENC_UUID);
                w.u32(if subsamples { 0x2 } else { 0 });
                write_entries(w);
                w.end()?;
            }
        }
        w.end()?;
    }
    w.end()?;
    let grown = (w.pos() - moof_start) as i64 - m.raw.bytes.len() as i64;
    let at = data_offset_at.ok_or(DrmError::Internal("trun vanished"))?;
    let old = i32::from_be_bytes([w.buf[at], w.buf[at + 1], w.buf[at + 2], w.buf[at + 3]]);
    let new = i32::try_from(i64::from(old) + grown).map_err(|_| DrmError::TooLarge {
        what: "trun data_offset",
        limit: i32::MAX as usize,
    })?;
    w.patch_u32(at, new as u32);
    Ok(())
}

/// Rewrites a clear init segment into a protected one (see the module docs).
/// `systems` selects the `pssh` boxes written into `moov`.
pub fn protect_init(
    init: &[u8],
    scheme: Scheme,
    key: &ContentKey,
    systems: &[SystemId],
) -> Result<Bytes, DrmError> {
    let mut w = Writer::with_capacity(init.len() + 512 + systems.len() * 200);
    let mut saw_moov = false;
    for b in boxes(init) {
        let b = b?;
        if &b.kind == b"moov" {
            saw_moov = true;
            w.begin(b"moov");
            let mut entries = 0;
            for c in boxes(b.body) {
                let c = c?;
                match &c.kind {
                    b"trak" => entries += rewrite_trak(&mut w, c, scheme, key)?,
                    b"pssh" => return Err(DrmError::AlreadyProtected("pssh in moov")),
                    _ => w.bytes(c.bytes),
                }
            }
            if entries == 0 {
                return Err(DrmError::MissingBox {
                    what: "trak with a sample entry",
                    parent: "moov",
                });
            }
            for &s in systems {
                w.bytes(&pssh::pssh_box(s, scheme, &[key.kid]));
            }
            w.end()?;
        } else {
            w.bytes(b.bytes);
        }
    }
    if !saw_moov {
        return Err(DrmError::MissingBox {
            what: "moov",
            parent: "init segment",
        });
    }
    Ok(Bytes::from(w.buf))
}

/// Copies `b`, descending along trak/mdia/minf/stbl to stsd. Returns how
/// many sample entries were protected.
fn rewrite_trak(
    w: &mut Writer,
    b: RawBox<'_>,
    scheme: Scheme,
    key: &ContentKey,
) -> Result<usize, DrmError> {
    let descend: &[u8; 4] = match &b.kind {
        b"trak" => b"mdia",
        b"mdia" => b"minf",
        b"minf" => b"stbl",
        b"stbl" => b"stsd",
        _ => return Err(DrmError::Internal("rewrite_trak on a leaf")),
    };
    w.begin(&b.kind);
    let mut n = 0;
    for c in boxes(b.body) {
        let c = c?;
        if &c.kind == descend {
            n += if descend == b"stsd" {
                rewrite_stsd(w, c, scheme, key)?
            } else {
                rewrite_trak(w, c, scheme, key)?
            };
        } else {
            w.bytes(c.bytes);
        }
    }
    w.end()?;
    Ok(n)
}

fn rewrite_stsd(
    w: &mut Writer,
    b: RawBox<'_>,
    scheme: Scheme,
    key: &ContentKey,
) -> Result<usize, DrmError> {
    let mut r = Reader::new(b.body, "stsd truncated");
    let version_flags = r.u32()?;
    let count = r.u32()?;
    let entries_buf = &b.body[8..];
    w.begin(b"stsd");
    w.u32(version_flags);
    w.u32(count);
    let mut n = 0;
    for e in boxes(entries_buf) {
        let e = e?;
        let video = matches!(&e.kind, b"avc1" | b"avc3" | b"hvc1" | b"hev1" | b"av01");
        let audio = matches!(&e.kind, b"mp4a");
        if matches!(&e.kind, b"encv" | b"enca") {
            return Err(DrmError::AlreadyProtected("encv/enca sample entry"));
        }
        if !video && !audio {
            return Err(DrmError::Unsupported(format!(
                "sample entry '{}'",
                fourcc_str(&e.kind)
            )));
        }
        // Fixed fields before the child boxes: SampleEntry (8) + Visual (70),
        // or + Audio (20, plus 16/36 for QuickTime sound versions 1/2).
        let fixed = if video {
            78
        } else {
            let v = e.body.get(8..10).map(|s| u16::from_be_bytes([s[0], s[1]]));
            match v {
                Some(0) => 28,
                Some(1) => 44,
                Some(2) => 64,
                _ => {
                    return Err(DrmError::Malformed {
                        what: "audio sample entry version",
                        offset: e.offset,
                    })
                }
            }
        };
        if e.body.len() < fixed {
            return Err(DrmError::Malformed {
                what: "sample entry truncated",
                offset: e.offset,
            });
        }
        // Validate the children before copying them as they are.
        for c in boxes(&e.body[fixed..]) {
            if &c?.kind == b"sinf" {
                return Err(DrmError::AlreadyProtected("sinf in sample entry"));
            }
        }
        w.begin(if video { b"encv" } else { b"enca" });
        w.bytes(e.body);
        write_sinf(w, e.kind, scheme, key, video)?;
        w.end()?;
        n += 1;
    }
    w.end()?;
    Ok(n)
}

fn write_sinf(
    w: &mut Writer,
    original: [u8; 4],
    scheme: Scheme,
    key: &ContentKey,
    video: bool,
) -> Result<(), DrmError> {
    w.begin(b"sinf");
    w.begin(b"frma");
    w.bytes(&original);
    w.end()?;
    w.begin_full(b"schm", 0, 0);
    w.bytes(&scheme.fourcc());
    w.u32(0x0001_0000);
    w.end()?;
    w.begin(b"schi");
    match scheme {
        Scheme::Cenc => {
            w.begin_full(b"tenc", 0, 0);
            w.u8(0);
            w.u8(0);
            w.u8(1); // default_isProtected
            w.u8(8); // default_Per_Sample_IV_Size
            w.bytes(&key.kid);
            w.end()?;
        }
        Scheme::Cbcs => {
            w.begin_full(b"tenc", 1, 0);
            w.u8(0);
            w.u8(if video {
                (CBCS_CRYPT << 4) | CBCS_SKIP
            } else {
                0
            });
            w.u8(1);
            w.u8(0); // constant IV follows
            w.bytes(&key.kid);
            w.u8(16);
            w.bytes(&key.iv);
            w.end()?;
        }
    }
    w.end()?; // schi
    w.end()?; // sinf
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nal(t: u8, len: usize) -> Vec<u8> {
        let mut v = (len as u32).to_be_bytes().to_vec();
        v.push(t);
        v.extend((1..len).map(|i| i as u8));
        v
    }

    #[test]
    fn h264_subsamples_keep_headers_and_non_vcl_clear() {
        // SEI (6, 20 bytes), IDR slice (5, 1000 bytes), tiny slice (1, 30 bytes).
        let sample = [nal(6, 20), nal(5, 1000), nal(1, 30)].concat();
        let subs = nal_subsamples(&sample, 4, 1, false).unwrap();
        // IDR: 4+1+32 = 37 clear, 967 rest -> 960 protected, 7 more clear.
        assert_eq!(
            subs,
            vec![
                Subsample {
                    clear: 24 + 37 + 7,
                    protected: 960
                },
                Subsample {
                    clear: 34,
                    protected: 0
                }
            ]
        );
        let covered: usize = subs
            .iter()
            .map(|s| usize::from(s.clear) + s.protected as usize)
            .sum();
        assert_eq!(covered, sample.len());
    }

    #[test]
    fn long_clear_runs_split_at_16_bits() {
        let sample = [nal(6, 70_000), nal(5, 100)].concat();
        let subs = nal_subsamples(&sample, 4, 1, false).unwrap();
        assert_eq!(
            subs[0],
            Subsample {
                clear: 65535,
                protected: 0
            }
        );
        let covered: usize = subs
            .iter()
            .map(|s| usize::from(s.clear) + s.protected as usize)
            .sum();
        assert_eq!(covered, sample.len());
        assert!(subs.iter().all(|s| s.protected % 16 == 0));
    }

    #[test]
    fn truncated_nal_is_an_error() {
        let mut s = nal(5, 100);
        s.truncate(50);
        assert!(nal_subsamples(&s, 4, 1, false).is_err());
        assert!(nal_subsamples(&[0, 0], 4, 1, false).is_err());
    }

    #[test]
    fn hevc_vcl_types_are_0_to_31() {
        let mut idr = (200u32).to_be_bytes().to_vec();
        idr.extend([19 << 1, 1]);
        idr.extend(vec![0u8; 198]);
        let mut vps = (50u32).to_be_bytes().to_vec();
        vps.extend([32 << 1, 1]);
        vps.extend(vec![0u8; 48]);
        let sample = [vps, idr].concat();
        let subs = nal_subsamples(&sample, 4, 2, true).unwrap();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].protected, 160);
        assert_eq!(usize::from(subs[0].clear), 54 + 4 + 2 + 32 + 6);
    }

    #[test]
    fn iv_seed_separates_tracks_msns_and_parts() {
        let a = iv_seed(1, 5, 0);
        assert_ne!(a, iv_seed(2, 5, 0));
        assert_ne!(a, iv_seed(1, 6, 0));
        assert_eq!(a + 1, iv_seed(1, 5, 1));
    }
}
