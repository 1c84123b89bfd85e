//! The journal: a header record describing the piece's tracks, then one
//! fixed-size record per sample, in the order the samples' data was appended
//! to the media file.
//!
//! # Format (version 1, all integers big-endian)
//!
//! Header record:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `VELAJRNL` |
//! | 2 | version (1) |
//! | 4 | body length `n` (at most [`MAX_HEADER`]) |
//! | n | body |
//! | 4 | CRC-32 (IEEE) of the body |
//!
//! Body: `data_start` (u64, media file offset of the first sample byte),
//! track count (u8), then per track: id (u32), timescale (u32), bitrate
//! flag (u8) and bitrate (u32), kind (u8: 0 video, 1 audio), then for video
//! codec (u8: 0 H.264, 1 H.265, 2 AV1), width, height (u16), frame-rate flag
//! (u8) and rate (f64 bits, u64), record length (u32) and the decoder
//! configuration record; for audio codec (u8: 0 AAC), sample rate (u32),
//! channels (u16), AudioSpecificConfig length (u32) and bytes.
//!
//! Sample record ([`RECORD_LEN`] bytes): track index (u8), flags (u8: 1
//! keyframe, 2 first sample after a discontinuity), reserved (u16, 0), size
//! (u32), decode time on the file's timeline (i64), composition offset (i32),
//! CRC-32 of the 20 bytes before it. A sample's bytes follow the previous
//! sample's in the media file, so no offset is stored.
//!
//! Every length is checked against the bytes that are there before anything
//! is sliced or allocated; the CRCs catch a torn or scribbled record, which
//! ends the journal.

use bytes::{BufMut, Bytes, BytesMut};
use vela_media::{AudioCodec, CodecConfig, Track, VideoCodec};

use super::{RecordError, MAX_HEADER, MAX_TRACKS};

pub const MAGIC: &[u8; 8] = b"VELAJRNL";
pub const VERSION: u16 = 1;
/// Bytes of one sample record.
pub const RECORD_LEN: usize = 24;
/// Magic, version, body length.
const PREFIX_LEN: usize = 8 + 2 + 4;

pub const FLAG_KEYFRAME: u8 = 1;
pub const FLAG_DISCONTINUITY: u8 = 2;

/// One sample as the journal records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub track: u8,
    pub flags: u8,
    pub size: u32,
    pub dts: i64,
    pub cts_offset: i32,
}

/// CRC-32 (IEEE 802.3, reflected), bit by bit: records are 20 bytes and the
/// header is written once, so a table buys nothing.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

impl Record {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0] = self.track;
        b[1] = self.flags;
        b[4..8].copy_from_slice(&self.size.to_be_bytes());
        b[8..16].copy_from_slice(&self.dts.to_be_bytes());
        b[16..20].copy_from_slice(&self.cts_offset.to_be_bytes());
        let crc = crc32(&b[..20]);
        b[20..24].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// `None` when the CRC does not match (a torn or damaged record).
    pub fn decode(b: &[u8; RECORD_LEN]) -> Option<Record> {
        let crc = u32::from_be_bytes([b[20], b[21], b[22], b[23]]);
        if crc != crc32(&b[..20]) {
            return None;
        }
        Some(Record {
            track: b[0],
            flags: b[1],
            size: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            dts: i64::from_be_bytes(b[8..16].try_into().ok()?),
            cts_offset: i32::from_be_bytes([b[16], b[17], b[18], b[19]]),
        })
    }
}

/// What the header record holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub data_start: u64,
    pub tracks: Vec<Track>,
}

fn put_blob(out: &mut BytesMut, blob: &[u8]) {
    out.put_u32(blob.len() as u32);
    out.put_slice(blob);
}

/// Encodes the header record; errors if it would exceed [`MAX_HEADER`].
pub fn encode_header(h: &Header) -> Result<Bytes, RecordError> {
    let mut body = BytesMut::with_capacity(256);
    body.put_u64(h.data_start);
    body.put_u8(h.tracks.len() as u8);
    for t in &h.tracks {
        body.put_u32(t.id);
        body.put_u32(t.timescale);
        body.put_u8(u8::from(t.bitrate.is_some()));
        body.put_u32(t.bitrate.unwrap_or(0));
        match &t.config {
            CodecConfig::Video {
                codec,
                width,
                height,
                frame_rate,
                record,
            } => {
                body.put_u8(0);
                body.put_u8(match codec {
                    VideoCodec::H264 => 0,
                    VideoCodec::H265 => 1,
                    VideoCodec::Av1 => 2,
                });
                body.put_u16(*width);
                body.put_u16(*height);
                body.put_u8(u8::from(frame_rate.is_some()));
                body.put_u64(frame_rate.unwrap_or(0.0).to_bits());
                if record.len() > MAX_HEADER {
                    return Err(too_large(record.len()));
                }
                put_blob(&mut body, record);
            }
            CodecConfig::Audio {
                codec: AudioCodec::Aac,
                sample_rate,
                channels,
                specific_config,
            } => {
                body.put_u8(1);
                body.put_u8(0);
                body.put_u32(*sample_rate);
                body.put_u16(*channels);
                if specific_config.len() > MAX_HEADER {
                    return Err(too_large(specific_config.len()));
                }
                put_blob(&mut body, specific_config);
            }
        }
        if body.len() > MAX_HEADER {
            return Err(too_large(body.len()));
        }
    }
    let mut out = BytesMut::with_capacity(PREFIX_LEN + body.len() + 4);
    out.put_slice(MAGIC);
    out.put_u16(VERSION);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.put_u32(crc32(&body));
    Ok(out.freeze())
}

fn too_large(size: usize) -> RecordError {
    RecordError::HeaderTooLarge {
        size,
        limit: MAX_HEADER,
    }
}

/// A bounds-checked reader over the header body; errors name the byte.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the journal, for messages.
    base: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], RecordError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(RecordError::journal(
                self.base + self.pos,
                format!("header ends inside {what}"),
            ));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, RecordError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, RecordError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, RecordError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, RecordError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(a))
    }
    fn flag(&mut self, what: &str) -> Result<bool, RecordError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.bad(format!("{what} flag is {v}"))),
        }
    }
    /// A length-prefixed blob; the length is checked against what is left.
    fn blob(&mut self, what: &str) -> Result<Bytes, RecordError> {
        let n = self.u32(what)? as usize;
        Ok(Bytes::copy_from_slice(self.take(n, what)?))
    }
    fn bad(&self, reason: String) -> RecordError {
        RecordError::journal(self.base + self.pos, reason)
    }
}

/// Decodes the header record at the start of `journal`; returns it and the
/// offset of the first sample record.
pub fn decode_header(journal: &[u8]) -> Result<(Header, usize), RecordError> {
    if journal.len() < PREFIX_LEN {
        return Err(RecordError::journal(
            journal.len(),
            "shorter than the header prefix",
        ));
    }
    if &journal[..8] != MAGIC {
        return Err(RecordError::journal(0, "not a Vela recording journal"));
    }
    let version = u16::from_be_bytes([journal[8], journal[9]]);
    if version != VERSION {
        return Err(RecordError::journal(
            8,
            format!("version {version}, this build reads {VERSION}"),
        ));
    }
    let len = u32::from_be_bytes([journal[10], journal[11], journal[12], journal[13]]) as usize;
    if len > MAX_HEADER {
        return Err(RecordError::HeaderTooLarge {
            size: len,
            limit: MAX_HEADER,
        });
    }
    let end = PREFIX_LEN + len + 4;
    if journal.len() < end {
        return Err(RecordError::journal(
            journal.len(),
            format!("header record of {end} bytes is torn"),
        ));
    }
    let body = &journal[PREFIX_LEN..PREFIX_LEN + len];
    let crc = u32::from_be_bytes(journal[end - 4..end].try_into().expect("4 bytes"));
    if crc != crc32(body) {
        return Err(RecordError::journal(end - 4, "header CRC mismatch"));
    }
    let mut c = Cursor {
        buf: body,
        pos: 0,
        base: PREFIX_LEN,
    };
    let data_start = c.u64("data start")?;
    let count = usize::from(c.u8("track count")?);
    if count == 0 || count > MAX_TRACKS {
        return Err(c.bad(format!("{count} tracks (1 to {MAX_TRACKS} allowed)")));
    }
    let mut tracks = Vec::with_capacity(count);
    for _ in 0..count {
        let id = c.u32("track id")?;
        let timescale = c.u32("timescale")?;
        let has_bitrate = c.flag("bitrate")?;
        let bitrate = c.u32("bitrate")?;
        let kind = c.u8("kind")?;
        let codec = c.u8("codec")?;
        let config = match (kind, codec) {
            (0, 0..=2) => {
                let width = c.u16("width")?;
                let height = c.u16("height")?;
                let has_rate = c.flag("frame rate")?;
                let rate = f64::from_bits(c.u64("frame rate")?);
                let record = c.blob("decoder configuration record")?;
                CodecConfig::Video {
                    codec: match codec {
                        0 => VideoCodec::H264,
                        1 => VideoCodec::H265,
                        _ => VideoCodec::Av1,
                    },
                    width,
                    height,
                    frame_rate: has_rate.then_some(rate),
                    record,
                }
            }
            (1, 0) => {
                let sample_rate = c.u32("sample rate")?;
                let channels = c.u16("channels")?;
                let specific_config = c.blob("AudioSpecificConfig")?;
                CodecConfig::Audio {
                    codec: AudioCodec::Aac,
                    sample_rate,
                    channels,
                    specific_config,
                }
            }
            _ => return Err(c.bad(format!("unknown track kind {kind} / codec {codec}"))),
        };
        tracks.push(Track {
            id,
            timescale,
            config,
            bitrate: has_bitrate.then_some(bitrate),
        });
    }
    if c.pos != body.len() {
        return Err(c.bad("trailing bytes in the header".into()));
    }
    Ok((Header { data_start, tracks }, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn record_round_trip_and_damage() {
        let r = Record {
            track: 3,
            flags: FLAG_KEYFRAME | FLAG_DISCONTINUITY,
            size: 123_456,
            dts: -5,
            cts_offset: -1024,
        };
        let b = r.encode();
        assert_eq!(Record::decode(&b), Some(r));
        for i in 0..RECORD_LEN {
            let mut d = b;
            d[i] ^= 0x10;
            assert_eq!(Record::decode(&d), None, "flip at {i}");
        }
    }
}
