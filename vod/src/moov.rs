//! Decodes the `moov`: the tracks, their codec configurations, edit lists and
//! sample tables (with mp4-atom), and where each table's entries sit in the
//! file so a fragment can re-read its slice of them.
//!
//! Boxes are located with our own header walk ([`crate::scan`]) and each box
//! we need is decoded on its own with mp4-atom: the workspace builds
//! mp4-atom `strict`, which rejects unknown boxes, so decoding the whole
//! `moov` in one go would refuse files with harmless extras (`udta`, `meta`,
//! `sgpd`, ...). Sample entries are read by hand (fixed fields and child
//! boxes) so the `avcC`/`hvcC` body is kept exactly; the `esds` goes through
//! mp4-atom.

use bytes::Bytes;
use mp4_atom::{
    Co64, Ctts, Decode, Elst, Esds, Hdlr, Mdhd, Mvhd, Stco, Stsc, Stss, Stsz, Stts, Tkhd,
};
use vela_media::{AudioCodec, CodecConfig, MediaKind, VideoCodec};

use crate::scan::{child, children, BoxRef, MoovBytes};
use crate::VodError;

/// How a track's edit list moves its samples on the presentation timeline.
///
/// A player of the source presents a sample at `dts + cts + empty -
/// media_time` (ISO/IEC 14496-12 8.6.6, the first media edit; leading empty
/// edits delay the track). Fragments keep that presentation time exactly:
/// a positive shift is added to the decode times, a negative one (B-frame
/// composition delay, AAC priming) to the composition offsets, which may then
/// be negative (trun version 1). Edits after the first media edit and an
/// edit's end are not applied: every sample is passed through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EditShift {
    /// Leading empty edits, in the track's timescale.
    pub empty: u64,
    /// Media time where the first media edit starts, in the track's timescale.
    pub media_time: u64,
}

impl EditShift {
    /// Presentation shift in ticks (`empty - media_time`).
    pub fn shift(&self) -> i64 {
        self.empty as i64 - self.media_time as i64
    }
    /// What the fragments add to decode times.
    pub fn dts_add(&self) -> u64 {
        self.shift().max(0) as u64
    }
    /// What the fragments add to composition offsets.
    pub fn cts_add(&self) -> i64 {
        self.shift().min(0)
    }
}

/// Per-sample sizes.
#[derive(Debug, Clone)]
pub enum Sizes {
    Uniform { size: u32, count: u32 },
    Table(Vec<u32>),
}

impl Sizes {
    pub fn count(&self) -> u32 {
        match self {
            Sizes::Uniform { count, .. } => *count,
            Sizes::Table(v) => v.len() as u32,
        }
    }
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Sizes::Uniform { size, .. } => *size,
            Sizes::Table(v) => v[i],
        }
    }
}

/// The decoded sample tables of a track (held only while indexing).
#[derive(Debug, Clone)]
pub struct Tables {
    /// (count, delta)
    pub stts: Vec<(u32, u32)>,
    /// (count, offset); version 0 offsets are read as signed, as ffmpeg does.
    pub ctts: Option<Vec<(u32, i32)>>,
    /// 1-based sync sample numbers; `None`: every sample is a sync sample.
    pub stss: Option<Vec<u32>>,
    /// (first chunk, 1-based; samples per chunk)
    pub stsc: Vec<(u32, u32)>,
    pub sizes: Sizes,
    pub chunks: Vec<u64>,
}

/// File offsets of the first entry of each table, for fragment-time reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableLocs {
    pub stts: u64,
    pub stts_count: u32,
    pub ctts: Option<u64>,
    pub ctts_count: u32,
    pub stss: Option<u64>,
    pub stss_count: u32,
    pub stsc: u64,
    pub stsc_count: u32,
    /// `None` when every sample has the same size.
    pub stsz: Option<u64>,
    pub chunks: u64,
    pub chunk_count: u32,
    pub co64: bool,
}

/// A playable track as found in the `moov`.
#[derive(Debug, Clone)]
pub struct ParsedTrack {
    pub id: u32,
    pub timescale: u32,
    pub config: CodecConfig,
    /// ISO 639-2/T code from `mdhd` ("und" when unset).
    pub language: String,
    /// The packed `mdhd` language field, written back into init segments.
    pub language_code: u16,
    /// BCP 47 tag from `elng`, if present.
    pub extended_language: Option<String>,
    pub edit: EditShift,
    pub tables: Tables,
    pub locs: TableLocs,
}

impl ParsedTrack {
    pub fn kind(&self) -> MediaKind {
        self.config.kind()
    }
}

/// What the `moov` holds: playable tracks, and the first unsupported codec
/// met (the error when nothing else plays).
pub struct ParsedMoov {
    pub tracks: Vec<ParsedTrack>,
    pub unsupported: Option<VodError>,
}

struct Ctx<'a> {
    buf: &'a [u8],
    base: u64,
    track: u32,
}

impl Ctx<'_> {
    fn decode<T: Decode>(&self, b: &BoxRef, kind: &'static str) -> Result<T, VodError> {
        let mut slice = &self.buf[b.start..b.end];
        T::decode(&mut slice).map_err(|source| VodError::Atom {
            track: self.track,
            kind,
            source,
        })
    }

    fn need(&self, parent: &BoxRef, kind: &'static str) -> Result<BoxRef, VodError> {
        let fourcc: [u8; 4] = kind.as_bytes().try_into().expect("fourcc");
        child(self.buf, parent, &fourcc, self.base)?.ok_or(VodError::Missing {
            track: self.track,
            kind,
        })
    }

    fn find(&self, parent: &BoxRef, kind: &[u8; 4]) -> Result<Option<BoxRef>, VodError> {
        child(self.buf, parent, kind, self.base)
    }

    /// File offset of a full box's first table entry (`skip` bytes after
    /// version/flags).
    fn entries_at(&self, b: &BoxRef, skip: usize) -> u64 {
        self.base + (b.body + 4 + skip) as u64
    }
}

/// Decodes the tracks of a `moov` body.
pub fn parse_moov(moov: &MoovBytes) -> Result<ParsedMoov, VodError> {
    let buf = &moov.body[..];
    // Positions in `buf` are relative to the moov body.
    let base = moov.body_offset;
    let top = children(buf, 0, buf.len(), base)?;
    if top.iter().any(|b| &b.kind == b"mvex") {
        return Err(VodError::Fragmented);
    }
    let mvhd = top
        .iter()
        .find(|b| &b.kind == b"mvhd")
        .ok_or_else(|| VodError::Movie("no mvhd".into()))?;
    let mvhd: Mvhd = Mvhd::decode(&mut &buf[mvhd.start..mvhd.end])
        .map_err(|e| VodError::Movie(format!("mvhd: {e}")))?;

    let mut tracks: Vec<ParsedTrack> = Vec::new();
    let mut unsupported = None;
    for (n, trak) in top.iter().filter(|b| &b.kind == b"trak").enumerate() {
        // Until tkhd is read, errors name the track by its position.
        let mut ctx = Ctx {
            buf,
            base,
            track: n as u32 + 1,
        };
        let tkhd: Tkhd = ctx.decode(&ctx.need(trak, "tkhd")?, "tkhd")?;
        ctx.track = tkhd.track_id;
        match parse_trak(&ctx, trak, mvhd.timescale) {
            Ok(Some(t)) => {
                if tracks.iter().any(|o| o.id == t.id) || t.id == 0 {
                    return Err(VodError::table(t.id, "tkhd", "duplicate or zero track id"));
                }
                tracks.push(t);
            }
            Ok(None) => {}
            Err(e @ VodError::UnsupportedCodec { .. }) => {
                tracing::warn!("skipping a track: {e}");
                unsupported.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(ParsedMoov {
        tracks,
        unsupported,
    })
}

fn parse_trak(
    ctx: &Ctx,
    trak: &BoxRef,
    movie_timescale: u32,
) -> Result<Option<ParsedTrack>, VodError> {
    let track = ctx.track;
    let mdia = ctx.need(trak, "mdia")?;
    let hdlr: Hdlr = ctx.decode(&ctx.need(&mdia, "hdlr")?, "hdlr")?;
    let handler = hdlr.handler.to_string();
    let is_video = match &handler[..] {
        "vide" => true,
        "soun" => false,
        other => {
            tracing::info!(
                track,
                handler = other,
                "skipping a track that is neither video nor audio"
            );
            return Ok(None);
        }
    };
    let mdhd_box = ctx.need(&mdia, "mdhd")?;
    let mdhd: Mdhd = ctx.decode(&mdhd_box, "mdhd")?;
    if mdhd.timescale == 0 {
        return Err(VodError::ZeroTimescale {
            track,
            kind: "mdhd",
        });
    }
    let language = mdhd_language(&ctx.buf[mdhd_box.body..mdhd_box.end], &mdhd.language);
    let language_code = language_code(&language);
    let extended_language = match ctx.find(&mdia, b"elng")? {
        Some(b) => parse_elng(&ctx.buf[b.body..b.end]),
        None => None,
    };

    let minf = ctx.need(&mdia, "minf")?;
    let stbl = ctx.need(&minf, "stbl")?;
    let stsd = ctx.need(&stbl, "stsd")?;
    let config = parse_stsd(ctx, &stsd, is_video)?;

    let edit = match ctx.find(trak, b"edts")? {
        Some(edts) => match ctx.find(&edts, b"elst")? {
            Some(b) => {
                let elst: Elst = ctx.decode(&b, "elst")?;
                edit_shift(&elst, movie_timescale, mdhd.timescale, track)?
            }
            None => EditShift::default(),
        },
        None => EditShift::default(),
    };

    let (tables, locs) = parse_tables(ctx, &stbl)?;
    Ok(Some(ParsedTrack {
        id: track,
        timescale: mdhd.timescale,
        config,
        language,
        language_code,
        extended_language,
        edit,
        tables,
        locs,
    }))
}

fn edit_shift(
    elst: &Elst,
    movie_ts: u32,
    media_ts: u32,
    track: u32,
) -> Result<EditShift, VodError> {
    let mut empty_movie = 0u64;
    for e in &elst.entries {
        match e.media_time {
            None => empty_movie = empty_movie.saturating_add(e.segment_duration),
            Some(t) => {
                if e.media_rate.integer() != 1 || e.media_rate.decimal() != 0 {
                    tracing::warn!(track, "edit with a rate other than 1 ignored");
                }
                if elst.entries.len() > 2 {
                    tracing::info!(
                        track,
                        "only the first media edit of {} is applied",
                        elst.entries.len()
                    );
                }
                if empty_movie > 0 && movie_ts == 0 {
                    return Err(VodError::ZeroTimescale {
                        track,
                        kind: "mvhd",
                    });
                }
                let empty = if empty_movie == 0 {
                    0
                } else {
                    (u128::from(empty_movie) * u128::from(media_ts) / u128::from(movie_ts)) as u64
                };
                // Shifts beyond ~2^40 ticks are nonsense: refuse rather than overflow.
                const LIMIT: u64 = 1 << 40;
                if empty > LIMIT || t > LIMIT {
                    return Err(VodError::table(track, "elst", "edit offset out of range"));
                }
                return Ok(EditShift {
                    empty,
                    media_time: t,
                });
            }
        }
    }
    Ok(EditShift::default())
}

/// QuickTime's Macintosh language codes (`mdhd` values below 0x400), as
/// ISO 639-2/T; "" where there is none.
const MAC_LANGUAGES: [&str; 95] = [
    "eng", "fra", "deu", "ita", "nld", "swe", "spa", "dan", "por", "nor", "heb", "jpn", "ara",
    "fin", "ell", "isl", "mlt", "tur", "hrv", "zho", "urd", "hin", "tha", "kor", "lit", "pol",
    "hun", "est", "lav", "sme", "fao", "fas", "rus", "zho", "nld", "gle", "sqi", "ron", "ces",
    "slk", "slv", "yid", "srp", "mkd", "bul", "ukr", "bel", "uzb", "kaz", "aze", "aze", "hye",
    "kat", "ron", "kir", "tgk", "tuk", "mon", "mon", "pus", "kur", "kas", "snd", "bod", "nep",
    "san", "mar", "ben", "asm", "guj", "pan", "ori", "mal", "kan", "tam", "tel", "sin", "mya",
    "khm", "lao", "vie", "ind", "tgl", "msa", "msa", "amh", "tir", "orm", "som", "swa", "kin",
    "run", "nya", "mlg", "epo",
];

/// The track's language: ISO 639-2/T packed in `mdhd`, or a QuickTime
/// Macintosh code; "und" when unset or unreadable.
fn mdhd_language(body: &[u8], decoded: &str) -> String {
    let at = if body.first() == Some(&1) {
        4 + 28
    } else {
        4 + 16
    };
    let raw = match body.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => return "und".into(),
    };
    if raw < 0x400 {
        let code = MAC_LANGUAGES.get(usize::from(raw)).copied().unwrap_or("");
        return if code.is_empty() { "und" } else { code }.into();
    }
    let ok = decoded.len() == 3 && decoded.bytes().all(|c| c.is_ascii_lowercase());
    if ok { decoded } else { "und" }.into()
}

/// Packs an ISO 639-2/T code as `mdhd` stores it.
fn language_code(lang: &str) -> u16 {
    let b = lang.as_bytes();
    if b.len() != 3 || !b.iter().all(|c| c.is_ascii_lowercase()) {
        return 0x55c4; // "und"
    }
    b.iter()
        .fold(0u16, |acc, c| (acc << 5) | u16::from(c - 0x60))
}

fn parse_elng(body: &[u8]) -> Option<String> {
    let s = body.get(4..)?;
    let s = s.split(|&c| c == 0).next()?;
    let s = std::str::from_utf8(s).ok()?;
    (!s.is_empty() && s.len() <= 64).then(|| s.to_string())
}

fn parse_stsd(ctx: &Ctx, stsd: &BoxRef, is_video: bool) -> Result<CodecConfig, VodError> {
    let track = ctx.track;
    let buf = ctx.buf;
    // version/flags, entry_count, then the entries.
    if stsd.end - stsd.body < 8 {
        return Err(VodError::table(track, "stsd", "too short"));
    }
    let count = u32::from_be_bytes(buf[stsd.body + 4..stsd.body + 8].try_into().expect("4"));
    let entries = children(buf, stsd.body + 8, stsd.end, ctx.base)?;
    let entry = entries
        .first()
        .ok_or_else(|| VodError::table(track, "stsd", "no sample entry"))?;
    if count != 1 || entries.len() != 1 {
        return Err(VodError::table(
            track,
            "stsd",
            format!("{count} sample descriptions: only one is supported"),
        ));
    }
    let fourcc = String::from_utf8_lossy(&entry.kind).into_owned();
    let unsupported = || VodError::UnsupportedCodec {
        track,
        codec: fourcc.clone(),
    };
    if is_video {
        let (codec, config_kind) = match &entry.kind {
            b"avc1" | b"avc3" => (VideoCodec::H264, b"avcC"),
            b"hvc1" | b"hev1" => (VideoCodec::H265, b"hvcC"),
            _ => return Err(unsupported()),
        };
        // VisualSampleEntry: 8 reserved/dref + 16 pre_defined/reserved, then
        // width, height at body+24, children at body+78.
        if entry.end - entry.body < 78 {
            return Err(VodError::table(
                track,
                "stsd",
                "visual sample entry too short",
            ));
        }
        let b = entry.body;
        let width = u16::from_be_bytes([buf[b + 24], buf[b + 25]]);
        let height = u16::from_be_bytes([buf[b + 26], buf[b + 27]]);
        let record = children(buf, b + 78, entry.end, ctx.base)?
            .into_iter()
            .find(|c| &c.kind == config_kind)
            .ok_or(VodError::Missing {
                track,
                kind: if codec == VideoCodec::H264 {
                    "avcC"
                } else {
                    "hvcC"
                },
            })?;
        let record = Bytes::copy_from_slice(&buf[record.body..record.end]);
        if record.first() != Some(&1) {
            return Err(VodError::table(
                track,
                "stsd",
                "decoder configuration record version is not 1",
            ));
        }
        Ok(CodecConfig::Video {
            codec,
            width,
            height,
            frame_rate: None,
            record,
        })
    } else {
        if &entry.kind != b"mp4a" {
            return Err(unsupported());
        }
        // AudioSampleEntry: 8 reserved/dref, version (u16), 6 reserved,
        // channels, sample size, 4, rate 16.16 at body+24; children at body+28
        // (QuickTime version 1/2 entries add 16/36 bytes).
        if entry.end - entry.body < 28 {
            return Err(VodError::table(
                track,
                "stsd",
                "audio sample entry too short",
            ));
        }
        let b = entry.body;
        let version = u16::from_be_bytes([buf[b + 8], buf[b + 9]]);
        let extra = match version {
            0 => 0,
            1 => 16,
            2 => 36,
            _ => {
                return Err(VodError::table(
                    track,
                    "stsd",
                    "unknown audio sample entry version",
                ))
            }
        };
        if entry.end - entry.body < 28 + extra {
            return Err(VodError::table(
                track,
                "stsd",
                "audio sample entry too short",
            ));
        }
        let mut channels = u16::from_be_bytes([buf[b + 16], buf[b + 17]]);
        let mut sample_rate = u32::from(u16::from_be_bytes([buf[b + 24], buf[b + 25]]));
        let kids = children(buf, b + 28 + extra, entry.end, ctx.base)?;
        // QuickTime may wrap the esds in a `wave` box.
        let esds = match kids.iter().find(|c| &c.kind == b"esds") {
            Some(e) => Some(*e),
            None => match kids.iter().find(|c| &c.kind == b"wave") {
                Some(w) => ctx.find(w, b"esds")?,
                None => None,
            },
        }
        .ok_or(VodError::Missing {
            track,
            kind: "esds",
        })?;
        let esds: Esds = ctx.decode(&esds, "esds")?;
        let dc = &esds.es_desc.dec_config;
        if dc.object_type_indication != 0x40 {
            return Err(VodError::UnsupportedCodec {
                track,
                codec: format!("mp4a.{:02x}", dc.object_type_indication),
            });
        }
        let ds = dc
            .dec_specific
            .as_ref()
            .filter(|d| d.raw.len() >= 2)
            .ok_or_else(|| VodError::table(track, "esds", "no AudioSpecificConfig"))?;
        if let Some(rate) = asc_sample_rate(&ds.raw) {
            sample_rate = rate;
        }
        if (1..=7).contains(&ds.chan_conf) {
            channels = if ds.chan_conf == 7 {
                8
            } else {
                u16::from(ds.chan_conf)
            };
        }
        if sample_rate == 0 {
            return Err(VodError::table(track, "mp4a", "zero sample rate"));
        }
        Ok(CodecConfig::Audio {
            codec: AudioCodec::Aac,
            sample_rate,
            channels,
            specific_config: Bytes::from(ds.raw.clone()),
        })
    }
}

/// The sampling frequency an AudioSpecificConfig names (its first two fields).
fn asc_sample_rate(asc: &[u8]) -> Option<u32> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let aot = asc[0] >> 3;
    if aot == 31 {
        return None;
    }
    let idx = ((asc[0] & 7) << 1) | (asc[1] >> 7);
    if idx == 15 {
        let b = asc.get(1..5)?;
        let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        return Some((v >> 7) & 0x00ff_ffff);
    }
    RATES.get(usize::from(idx)).copied()
}

fn parse_tables(ctx: &Ctx, stbl: &BoxRef) -> Result<(Tables, TableLocs), VodError> {
    let track = ctx.track;
    let mut locs = TableLocs::default();

    let b = ctx.need(stbl, "stts")?;
    let stts: Stts = ctx.decode(&b, "stts")?;
    locs.stts = ctx.entries_at(&b, 4);
    locs.stts_count = stts.entries.len() as u32;
    let stts = stts
        .entries
        .iter()
        .map(|e| (e.sample_count, e.sample_delta))
        .collect();

    let ctts = match ctx.find(stbl, b"ctts")? {
        Some(b) => {
            let c: Ctts = ctx.decode(&b, "ctts")?;
            locs.ctts = Some(ctx.entries_at(&b, 4));
            locs.ctts_count = c.entries.len() as u32;
            Some(
                c.entries
                    .iter()
                    .map(|e| (e.sample_count, e.sample_offset as u32 as i32))
                    .collect(),
            )
        }
        None => None,
    };

    let stss = match ctx.find(stbl, b"stss")? {
        Some(b) => {
            let s: Stss = ctx.decode(&b, "stss")?;
            locs.stss = Some(ctx.entries_at(&b, 4));
            locs.stss_count = s.entries.len() as u32;
            Some(s.entries)
        }
        None => None,
    };

    let b = ctx.need(stbl, "stsc")?;
    let stsc: Stsc = ctx.decode(&b, "stsc")?;
    locs.stsc = ctx.entries_at(&b, 4);
    locs.stsc_count = stsc.entries.len() as u32;
    let mut sdi_bad = false;
    let stsc: Vec<(u32, u32)> = stsc
        .entries
        .iter()
        .map(|e| {
            sdi_bad |= e.sample_description_index != 1;
            (e.first_chunk, e.samples_per_chunk)
        })
        .collect();
    if sdi_bad {
        return Err(VodError::table(
            track,
            "stsc",
            "sample description index other than 1",
        ));
    }

    let b = ctx.need(stbl, "stsz")?;
    let stsz: Stsz = ctx.decode(&b, "stsz")?;
    let sizes = match stsz.samples {
        mp4_atom::StszSamples::Identical { count, size } => Sizes::Uniform { size, count },
        mp4_atom::StszSamples::Different { sizes } => {
            locs.stsz = Some(ctx.entries_at(&b, 8));
            Sizes::Table(sizes)
        }
    };

    let chunks = match (ctx.find(stbl, b"stco")?, ctx.find(stbl, b"co64")?) {
        (Some(b), _) => {
            let c: Stco = ctx.decode(&b, "stco")?;
            locs.chunks = ctx.entries_at(&b, 4);
            c.entries.into_iter().map(u64::from).collect::<Vec<_>>()
        }
        (None, Some(b)) => {
            let c: Co64 = ctx.decode(&b, "co64")?;
            locs.chunks = ctx.entries_at(&b, 4);
            locs.co64 = true;
            c.entries
        }
        (None, None) => {
            return Err(VodError::Missing {
                track,
                kind: "stco",
            })
        }
    };
    locs.chunk_count = chunks.len() as u32;
    Ok((
        Tables {
            stts,
            ctts,
            stss,
            stsc,
            sizes,
            chunks,
        },
        locs,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_packing() {
        assert_eq!(language_code("und"), 0x55c4);
        assert_eq!(language_code("eng"), 0x15c7);
        assert_eq!(language_code("x"), 0x55c4);
    }

    #[test]
    fn quicktime_language_codes() {
        let mut body = vec![0u8; 24];
        assert_eq!(mdhd_language(&body, "```"), "eng");
        body[21] = 1;
        assert_eq!(mdhd_language(&body, ""), "fra");
        body[20] = 0x03;
        body[21] = 0xff; // 1023: no Macintosh language
        assert_eq!(mdhd_language(&body, ""), "und");
        body[20..22].copy_from_slice(&0x15c7u16.to_be_bytes());
        assert_eq!(mdhd_language(&body, "eng"), "eng");
        assert_eq!(mdhd_language(&body[..10], "eng"), "und");
    }

    #[test]
    fn elng_tag() {
        assert_eq!(parse_elng(b"\0\0\0\0en-US\0").as_deref(), Some("en-US"));
        assert_eq!(parse_elng(b"\0\0\0\0\0"), None);
        assert_eq!(parse_elng(b"\0\0"), None);
    }

    #[test]
    fn asc_rates() {
        assert_eq!(asc_sample_rate(&[0x11, 0x90]), Some(48000));
        assert_eq!(asc_sample_rate(&[0x12, 0x10]), Some(44100));
    }

    #[test]
    fn edit_shift_rules() {
        let s = EditShift {
            empty: 0,
            media_time: 1024,
        };
        assert_eq!((s.dts_add(), s.cts_add()), (0, -1024));
        let s = EditShift {
            empty: 3000,
            media_time: 1000,
        };
        assert_eq!((s.dts_add(), s.cts_add()), (2000, 0));
    }
}
