//! ISO BMFF box writing for CMAF: init segments (`ftyp`+`moov`) and fragments
//! (`moof`+`mdat`).
//!
//! Boxes are written into one growing buffer; a box's size is back-patched
//! when it is closed, so nothing is measured twice. Flags are derived from the
//! samples (a `trun` carries composition offsets only when some sample has
//! one, per-sample flags only when they differ), as in gst-plugins-rs's
//! isobmff muxer.

use bytes::{BufMut, Bytes, BytesMut};
use vela_media::{AudioCodec, CodecConfig, Track, VideoCodec};

/// Sample flags (ISO/IEC 14496-12 8.8.3.1) for a sync sample.
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// Sample flags for a sample that depends on others and is not a sync sample.
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// A buffer that writes nested boxes and back-patches their sizes.
pub struct BoxWriter {
    buf: BytesMut,
    open: Vec<usize>,
}

impl Default for BoxWriter {
    fn default() -> Self {
        Self::with_capacity(4096)
    }
}

impl BoxWriter {
    pub fn with_capacity(cap: usize) -> Self {
        BoxWriter {
            buf: BytesMut::with_capacity(cap),
            open: Vec::new(),
        }
    }

    /// Opens a box; close it with [`BoxWriter::end`].
    pub fn begin(&mut self, fourcc: &[u8; 4]) {
        self.open.push(self.buf.len());
        self.buf.put_u32(0);
        self.buf.put_slice(fourcc);
    }

    /// Opens a full box (version and flags).
    pub fn begin_full(&mut self, fourcc: &[u8; 4], version: u8, flags: u32) {
        self.begin(fourcc);
        self.buf
            .put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
    }

    pub fn end(&mut self) {
        let start = self.open.pop().expect("end() without begin()");
        let size = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }

    pub fn position(&self) -> usize {
        self.buf.len()
    }

    pub fn patch_u32(&mut self, at: usize, value: u32) {
        self.buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }

    pub fn finish(self) -> BytesMut {
        debug_assert!(self.open.is_empty(), "unclosed boxes");
        self.buf
    }
}

impl std::ops::Deref for BoxWriter {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.buf
    }
}

impl std::ops::DerefMut for BoxWriter {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

/// `ftyp` + `moov` for one track (CMAF: one track per rendition).
pub fn init_segment(track: &Track) -> Bytes {
    let mut w = BoxWriter::with_capacity(1024);
    w.begin(b"ftyp");
    w.put_slice(b"iso6");
    w.put_u32(0);
    for brand in [b"iso6", b"cmfc", b"mp41", b"dash"] {
        w.put_slice(brand);
    }
    w.end();

    w.begin(b"moov");
    write_mvhd(&mut w, track.id + 1);
    write_trak(&mut w, track);
    w.begin(b"mvex");
    w.begin_full(b"trex", 0, 0);
    w.put_u32(track.id);
    w.put_u32(1); // default sample description index
    w.put_u32(0); // default duration
    w.put_u32(0); // default size
    w.put_u32(0); // default flags
    w.end();
    w.end();
    w.end();
    w.finish().freeze()
}

fn write_matrix(w: &mut BoxWriter) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        w.put_u32(v);
    }
}

fn write_mvhd(w: &mut BoxWriter, next_track_id: u32) {
    w.begin_full(b"mvhd", 0, 0);
    w.put_u32(0); // creation time
    w.put_u32(0); // modification time
    w.put_u32(1000); // timescale
    w.put_u32(0); // duration: unknown (fragmented)
    w.put_u32(0x0001_0000); // rate 1.0
    w.put_u16(0x0100); // volume 1.0
    w.put_bytes(0, 10);
    write_matrix(w);
    w.put_bytes(0, 24); // pre_defined
    w.put_u32(next_track_id);
    w.end();
}

fn write_trak(w: &mut BoxWriter, track: &Track) {
    let (is_video, width, height) = match &track.config {
        CodecConfig::Video { width, height, .. } => (true, *width, *height),
        CodecConfig::Audio { .. } => (false, 0, 0),
    };
    w.begin(b"trak");
    w.begin_full(b"tkhd", 0, 0x3); // enabled, in movie
    w.put_u32(0);
    w.put_u32(0);
    w.put_u32(track.id);
    w.put_u32(0); // reserved
    w.put_u32(0); // duration
    w.put_bytes(0, 8);
    w.put_u16(0); // layer
    w.put_u16(if is_video { 0 } else { 1 }); // alternate group
    w.put_u16(if is_video { 0 } else { 0x0100 }); // volume
    w.put_u16(0);
    write_matrix(w);
    w.put_u32(u32::from(width) << 16);
    w.put_u32(u32::from(height) << 16);
    w.end();

    w.begin(b"mdia");
    w.begin_full(b"mdhd", 0, 0);
    w.put_u32(0);
    w.put_u32(0);
    w.put_u32(track.timescale);
    w.put_u32(0);
    w.put_u16(0x55c4); // language "und"
    w.put_u16(0);
    w.end();
    w.begin_full(b"hdlr", 0, 0);
    w.put_u32(0);
    w.put_slice(if is_video { b"vide" } else { b"soun" });
    w.put_bytes(0, 12);
    w.put_slice(if is_video {
        b"Vela video\0"
    } else {
        b"Vela audio\0"
    });
    w.end();
    w.begin(b"minf");
    if is_video {
        w.begin_full(b"vmhd", 0, 1);
        w.put_bytes(0, 8);
        w.end();
    } else {
        w.begin_full(b"smhd", 0, 0);
        w.put_u32(0);
        w.end();
    }
    w.begin(b"dinf");
    w.begin_full(b"dref", 0, 0);
    w.put_u32(1);
    w.begin_full(b"url ", 0, 1); // media is in the same file
    w.end();
    w.end();
    w.end();
    w.begin(b"stbl");
    write_stsd(w, track);
    for fourcc in [b"stts", b"stsc", b"stco"] {
        w.begin_full(fourcc, 0, 0);
        w.put_u32(0);
        w.end();
    }
    w.begin_full(b"stsz", 0, 0);
    w.put_u32(0);
    w.put_u32(0);
    w.end();
    w.end(); // stbl
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak
}

/// Writes the `stsd` box (one sample entry: `avc1`/`hvc1`/`av01` with its
/// decoder configuration record, or `mp4a` with its `esds`) for a track, as
/// init segments carry it; progressive MP4 writers (the recorder) reuse it.
pub fn write_stsd(w: &mut BoxWriter, track: &Track) {
    w.begin_full(b"stsd", 0, 0);
    w.put_u32(1);
    write_sample_entry(w, track);
    w.end();
}

fn write_sample_entry(w: &mut BoxWriter, track: &Track) {
    match &track.config {
        CodecConfig::Video {
            codec,
            width,
            height,
            record,
            ..
        } => {
            let (entry, config_box) = match codec {
                VideoCodec::H264 => (b"avc1", b"avcC"),
                VideoCodec::H265 => (b"hvc1", b"hvcC"),
                VideoCodec::Av1 => (b"av01", b"av1C"),
            };
            w.begin(entry);
            w.put_bytes(0, 6);
            w.put_u16(1); // data reference index
            w.put_bytes(0, 16); // pre_defined, reserved
            w.put_u16(*width);
            w.put_u16(*height);
            w.put_u32(0x0048_0000); // 72 dpi
            w.put_u32(0x0048_0000);
            w.put_u32(0);
            w.put_u16(1); // frame count
            w.put_bytes(0, 32); // compressor name
            w.put_u16(0x0018); // depth
            w.put_i16(-1);
            w.begin(config_box);
            w.put_slice(record);
            w.end();
            w.end();
        }
        CodecConfig::Audio {
            codec: AudioCodec::Aac,
            sample_rate,
            channels,
            specific_config,
        } => {
            w.begin(b"mp4a");
            w.put_bytes(0, 6);
            w.put_u16(1);
            w.put_bytes(0, 8);
            w.put_u16(*channels);
            w.put_u16(16);
            w.put_u32(0);
            // 16.16 fixed point; rates above 65535 Hz do not fit and are
            // signalled by the AudioSpecificConfig alone.
            w.put_u32(if *sample_rate <= 0xffff {
                sample_rate << 16
            } else {
                0
            });
            write_esds(w, track.id, track.bitrate.unwrap_or(0), specific_config);
            w.end();
        }
    }
}

/// Writes an MPEG-4 descriptor header with its size in the expandable form.
fn put_descriptor(w: &mut BoxWriter, tag: u8, len: usize) {
    w.put_u8(tag);
    // Four bytes of 7-bit groups, the form every reader accepts.
    let len = len as u32;
    w.put_u8(0x80 | ((len >> 21) & 0x7f) as u8);
    w.put_u8(0x80 | ((len >> 14) & 0x7f) as u8);
    w.put_u8(0x80 | ((len >> 7) & 0x7f) as u8);
    w.put_u8((len & 0x7f) as u8);
}

fn write_esds(w: &mut BoxWriter, track_id: u32, bitrate: u32, asc: &[u8]) {
    w.begin_full(b"esds", 0, 0);
    let dsi_len = asc.len();
    let dcd_len = 13 + 5 + dsi_len;
    let sl_len = 1;
    let es_len = 3 + (5 + dcd_len) + (5 + sl_len);
    put_descriptor(w, 0x03, es_len);
    w.put_u16(track_id as u16); // ES_ID
    w.put_u8(0); // flags
    put_descriptor(w, 0x04, dcd_len);
    w.put_u8(0x40); // objectTypeIndication: Audio ISO/IEC 14496-3
    w.put_u8(0x15); // streamType audio (5) << 2 | upstream 0 | reserved 1
    w.put_uint(0, 3); // bufferSizeDB
    w.put_u32(bitrate); // maxBitrate
    w.put_u32(bitrate); // avgBitrate
    put_descriptor(w, 0x05, dsi_len);
    w.put_slice(asc);
    put_descriptor(w, 0x06, sl_len);
    w.put_u8(0x02); // predefined: MP4
    w.end();
}

/// One sample of a fragment.
#[derive(Debug, Clone)]
pub struct Sample {
    pub duration: u32,
    pub cts_offset: i32,
    pub keyframe: bool,
    pub data: Bytes,
}

/// Writes one CMAF chunk: `moof` (mfhd, traf with tfhd, tfdt, trun) + `mdat`.
///
/// `base_decode_time` is the first sample's decode time in the track's
/// timescale. Sample data is copied once, into the `mdat`.
pub fn fragment(
    sequence_number: u32,
    track_id: u32,
    base_decode_time: u64,
    samples: &[Sample],
) -> Bytes {
    let payload: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut w = BoxWriter::with_capacity(payload + 128 + samples.len() * 16);

    let has_cts = samples.iter().any(|s| s.cts_offset != 0);
    let negative_cts = samples.iter().any(|s| s.cts_offset < 0);
    let flags_of = |s: &Sample| {
        if s.keyframe {
            SYNC_SAMPLE_FLAGS
        } else {
            NON_SYNC_SAMPLE_FLAGS
        }
    };
    // Per-sample flags only when samples after the first differ from each other;
    // otherwise a first-sample-flags override plus tfhd defaults say it all.
    let rest_uniform = samples
        .iter()
        .skip(1)
        .all(|s| s.keyframe == samples.get(1).is_some_and(|f| f.keyframe));
    let per_sample_flags = !rest_uniform;
    let default_flags = samples
        .get(1)
        .or(samples.first())
        .map(flags_of)
        .unwrap_or(SYNC_SAMPLE_FLAGS);
    let first_flags = samples.first().map(flags_of).unwrap_or(SYNC_SAMPLE_FLAGS);
    let first_override = !per_sample_flags && first_flags != default_flags;

    w.begin(b"moof");
    w.begin_full(b"mfhd", 0, 0);
    w.put_u32(sequence_number);
    w.end();
    w.begin(b"traf");
    // default-base-is-moof | default-sample-flags-present
    w.begin_full(b"tfhd", 0, 0x02_0000 | 0x20);
    w.put_u32(track_id);
    w.put_u32(default_flags);
    w.end();
    w.begin_full(b"tfdt", 1, 0);
    w.put_u64(base_decode_time);
    w.end();
    let mut trun_flags = 0x1 | 0x100 | 0x200; // data offset, duration, size
    if first_override {
        trun_flags |= 0x4;
    }
    if per_sample_flags {
        trun_flags |= 0x400;
    }
    if has_cts {
        trun_flags |= 0x800;
    }
    w.begin_full(b"trun", u8::from(negative_cts), trun_flags);
    w.put_u32(samples.len() as u32);
    let data_offset_at = w.position();
    w.put_u32(0); // back-patched below
    if first_override {
        w.put_u32(first_flags);
    }
    for s in samples {
        w.put_u32(s.duration);
        w.put_u32(s.data.len() as u32);
        if per_sample_flags {
            w.put_u32(flags_of(s));
        }
        if has_cts {
            w.put_i32(s.cts_offset);
        }
    }
    w.end(); // trun
    w.end(); // traf
    w.end(); // moof
    let moof_len = w.position();
    w.patch_u32(data_offset_at, (moof_len + 8) as u32);
    w.begin(b"mdat");
    for s in samples {
        w.put_slice(&s.data);
    }
    w.end();
    w.finish().freeze()
}

/// Why a fragment could not be read back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FragmentError {
    #[error("fragment truncated in {0}")]
    Truncated(&'static str),
    #[error("fragment has no {0} box")]
    Missing(&'static str),
    #[error("sample sizes run past the mdat")]
    SamplesPastMdat,
}

/// A fragment read back into its samples (payloads are slices of the input).
#[derive(Debug, Clone)]
pub struct ReadFragment {
    pub base_decode_time: u64,
    pub samples: Vec<Sample>,
}

fn box_at(data: &[u8], at: usize) -> Option<(usize, [u8; 4])> {
    let size = u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
    let kind: [u8; 4] = data.get(at + 4..at + 8)?.try_into().ok()?;
    (size >= 8 && at + size <= data.len()).then_some((size, kind))
}

fn children(data: &[u8], mut at: usize, end: usize) -> Vec<(usize, usize, [u8; 4])> {
    let mut out = Vec::new();
    while at + 8 <= end {
        let Some((size, kind)) = box_at(&data[..end], at) else {
            break;
        };
        out.push((at, size, kind));
        at += size;
    }
    out
}

/// Reads back a fragment as [`fragment`] writes it (one `traf` with `tfhd`,
/// `tfdt` and one `trun`), for re-boxing into other forms (Smooth
/// Streaming). Payloads are zero-copy slices of `data`.
pub fn read_fragment(data: &Bytes) -> Result<ReadFragment, FragmentError> {
    let top = children(data, 0, data.len());
    let &(moof_at, moof_size, _) = top
        .iter()
        .find(|b| &b.2 == b"moof")
        .ok_or(FragmentError::Missing("moof"))?;
    let &(mdat_at, mdat_size, _) = top
        .iter()
        .find(|b| &b.2 == b"mdat")
        .ok_or(FragmentError::Missing("mdat"))?;
    let traf = children(data, moof_at + 8, moof_at + moof_size)
        .into_iter()
        .find(|b| &b.2 == b"traf")
        .ok_or(FragmentError::Missing("traf"))?;
    let kids = children(data, traf.0 + 8, traf.0 + traf.1);
    let get = |name: &'static [u8; 4]| {
        kids.iter()
            .find(|b| &b.2 == name)
            .copied()
            .ok_or(FragmentError::Missing("traf child"))
    };
    let u32_at = |at: usize, what: &'static str| -> Result<u32, FragmentError> {
        data.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or(FragmentError::Truncated(what))
    };
    let tfhd = get(b"tfhd")?;
    let tfhd_flags = u32_at(tfhd.0 + 8, "tfhd")? & 0x00ff_ffff;
    let mut at = tfhd.0 + 16;
    let mut default_duration = 0;
    let mut default_flags = SYNC_SAMPLE_FLAGS;
    if tfhd_flags & 0x1 != 0 {
        at += 8;
    }
    if tfhd_flags & 0x2 != 0 {
        at += 4;
    }
    if tfhd_flags & 0x8 != 0 {
        default_duration = u32_at(at, "tfhd")?;
        at += 4;
    }
    if tfhd_flags & 0x10 != 0 {
        at += 4;
    }
    if tfhd_flags & 0x20 != 0 {
        default_flags = u32_at(at, "tfhd")?;
    }
    let tfdt = get(b"tfdt")?;
    let version = data
        .get(tfdt.0 + 8)
        .copied()
        .ok_or(FragmentError::Truncated("tfdt"))?;
    let base_decode_time = if version == 1 {
        u64::from(u32_at(tfdt.0 + 12, "tfdt")?) << 32 | u64::from(u32_at(tfdt.0 + 16, "tfdt")?)
    } else {
        u64::from(u32_at(tfdt.0 + 12, "tfdt")?)
    };
    let trun = get(b"trun")?;
    let trun_end = trun.0 + trun.1;
    let flags = u32_at(trun.0 + 8, "trun")? & 0x00ff_ffff;
    let count = u32_at(trun.0 + 12, "trun")? as usize;
    let mut at = trun.0 + 16;
    if flags & 0x1 != 0 {
        at += 4;
    }
    let mut first_flags = None;
    if flags & 0x4 != 0 {
        first_flags = Some(u32_at(at, "trun")?);
        at += 4;
    }
    let per_sample = 4 * [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|f| flags & **f != 0)
        .count();
    // The count is untrusted: it must fit in the box before anything is allocated for it.
    if count.saturating_mul(per_sample) > trun_end.saturating_sub(at) {
        return Err(FragmentError::Truncated("trun"));
    }
    let mut payload_at = mdat_at + 8;
    let payload_end = mdat_at + mdat_size;
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let mut field = |on: bool| -> Result<Option<u32>, FragmentError> {
            if !on {
                return Ok(None);
            }
            let v = u32_at(at, "trun")?;
            at += 4;
            Ok(Some(v))
        };
        let duration = field(flags & 0x100 != 0)?.unwrap_or(default_duration);
        let size =
            field(flags & 0x200 != 0)?.ok_or(FragmentError::Missing("sample sizes"))? as usize;
        let sflags = field(flags & 0x400 != 0)?
            .or(if i == 0 { first_flags } else { None })
            .unwrap_or(default_flags);
        let cts = field(flags & 0x800 != 0)?.map(|v| v as i32).unwrap_or(0);
        if payload_at + size > payload_end {
            return Err(FragmentError::SamplesPastMdat);
        }
        samples.push(Sample {
            duration,
            cts_offset: cts,
            keyframe: sflags & 0x0001_0000 == 0,
            data: data.slice(payload_at..payload_at + size),
        });
        payload_at += size;
    }
    Ok(ReadFragment {
        base_decode_time,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp4_atom::{Any, DecodeMaybe};
    use vela_media::CodecConfig;

    fn decode_all(mut buf: &[u8]) -> Vec<Any> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let atom = Any::decode_maybe(&mut buf)
                .expect("strict decode")
                .expect("complete box");
            out.push(atom);
        }
        out
    }

    pub(crate) fn h264_track() -> Track {
        // avcC from an x264 640x360 High profile stream (SPS/PPS trimmed to what avcC needs).
        let sps: &[u8] = &[
            0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00,
            0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
        ];
        let pps: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
        let mut rec = vec![1, 0x64, 0x00, 0x1e, 0xff, 0xe1];
        rec.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        rec.extend_from_slice(sps);
        rec.push(1);
        rec.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        rec.extend_from_slice(pps);
        rec.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0x00]); // high-profile extension: 4:2:0, 8-bit, no SPS ext
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

    pub(crate) fn aac_track() -> Track {
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

    #[test]
    fn video_init_segment_parses_strictly() {
        let atoms = decode_all(&init_segment(&h264_track()));
        assert!(matches!(atoms[0], Any::Ftyp(_)));
        let Any::Moov(moov) = &atoms[1] else {
            panic!("no moov: {atoms:?}")
        };
        assert_eq!(moov.trak.len(), 1);
        let trak = &moov.trak[0];
        assert_eq!(trak.tkhd.track_id, 1);
        assert_eq!(trak.mdia.mdhd.timescale, 90000);
        let codec = &trak.mdia.minf.stbl.stsd.codecs[0];
        let mp4_atom::Codec::Avc1(avc1) = codec else {
            panic!("not avc1: {codec:?}")
        };
        assert_eq!(avc1.visual.width, 640);
        assert_eq!(avc1.avcc.avc_profile_indication, 0x64);
        assert_eq!(moov.mvex.as_ref().unwrap().trex[0].track_id, 1);
    }

    #[test]
    fn audio_init_segment_parses_strictly() {
        let atoms = decode_all(&init_segment(&aac_track()));
        let Any::Moov(moov) = &atoms[1] else { panic!() };
        let codec = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0];
        let mp4_atom::Codec::Mp4a(mp4a) = codec else {
            panic!("not mp4a: {codec:?}")
        };
        assert_eq!(mp4a.audio.channel_count, 2);
        assert_eq!(mp4a.esds.es_desc.dec_config.object_type_indication, 0x40);
    }

    #[test]
    fn fragment_parses_strictly_and_derives_flags() {
        let samples = vec![
            Sample {
                duration: 3000,
                cts_offset: 6000,
                keyframe: true,
                data: Bytes::from_static(b"key!"),
            },
            Sample {
                duration: 3000,
                cts_offset: 0,
                keyframe: false,
                data: Bytes::from_static(b"b1"),
            },
            Sample {
                duration: 3000,
                cts_offset: 3000,
                keyframe: false,
                data: Bytes::from_static(b"p1"),
            },
        ];
        let frag = fragment(7, 1, 123_456, &samples);
        let atoms = decode_all(&frag);
        let Any::Moof(moof) = &atoms[0] else { panic!() };
        assert_eq!(moof.mfhd.sequence_number, 7);
        let traf = &moof.traf[0];
        assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, 123_456);
        let trun = &traf.trun[0];
        let entries: Vec<_> = trun.samples.iter().collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].cts, Some(6000));
        assert_eq!(entries[1].duration, Some(3000));
        assert_eq!(traf.tfhd.default_sample_flags, Some(NON_SYNC_SAMPLE_FLAGS));
        let Any::Mdat(mdat) = &atoms[1] else { panic!() };
        assert_eq!(&mdat.data[..], b"key!b1p1");
        // data_offset points at the first payload byte, relative to moof start.
        let moof_len = u32::from_be_bytes(frag[0..4].try_into().unwrap()) as usize;
        assert_eq!(trun.data_offset, Some((moof_len + 8) as i32));

        let back = read_fragment(&frag).unwrap();
        assert_eq!(back.base_decode_time, 123_456);
        assert_eq!(back.samples.len(), 3);
        for (a, b) in back.samples.iter().zip(&samples) {
            assert_eq!(
                (a.duration, a.cts_offset, a.keyframe, &a.data),
                (b.duration, b.cts_offset, b.keyframe, &b.data)
            );
        }
    }

    #[test]
    fn reading_hostile_fragments_fails_cleanly() {
        let good = fragment(
            1,
            1,
            0,
            &[Sample {
                duration: 1,
                cts_offset: 0,
                keyframe: true,
                data: Bytes::from_static(b"abc"),
            }],
        );
        for cut in 0..good.len() {
            let _ = read_fragment(&good.slice(..cut)); // must not panic
        }
        let mut huge = good.to_vec();
        // claim 2^30 samples in the trun
        let trun_at = huge.windows(4).position(|w| w == b"trun").unwrap() - 4;
        huge[trun_at + 12..trun_at + 16].copy_from_slice(&(1u32 << 30).to_be_bytes());
        assert_eq!(
            read_fragment(&Bytes::from(huge)).unwrap_err(),
            FragmentError::Truncated("trun")
        );
    }

    #[test]
    fn audio_fragment_has_no_per_sample_flags() {
        let samples: Vec<Sample> = (0..4)
            .map(|_| Sample {
                duration: 1024,
                cts_offset: 0,
                keyframe: true,
                data: Bytes::from_static(b"aac"),
            })
            .collect();
        let frag = fragment(1, 2, 0, &samples);
        let atoms = decode_all(&frag);
        let Any::Moof(moof) = &atoms[0] else { panic!() };
        let trun = &moof.traf[0].trun[0];
        assert!(trun.samples.iter().all(|e| e.cts.is_none()));
        assert_eq!(
            moof.traf[0].tfhd.default_sample_flags,
            Some(SYNC_SAMPLE_FLAGS)
        );
    }
}
