//! A sans-IO parser of FLV audio and video tag *bodies*: what an RTMP audio
//! (type 8) or video (type 9) message carries, which is exactly an FLV tag
//! without its 11-byte tag header.
//!
//! Covered:
//! - legacy H.264 (codec id 7) and the common H.265 extension (codec id 12):
//!   sequence header → decoder configuration record; NALU packets with the
//!   24-bit signed composition time;
//! - Enhanced RTMP (veovera enhanced-rtmp v1/v2, as OBS 30+ sends it):
//!   `ExVideoTagHeader` with FourCC `avc1`, `hvc1`, `av01`; packet types
//!   SequenceStart, CodedFrames (with a composition time for avc1/hvc1 only),
//!   CodedFramesX, SequenceEnd, Metadata; ModEx prefixes are skipped;
//! - AAC (sound format 10) and enhanced audio with FourCC `mp4a`.
//!
//! The parser is a pure function of one tag body; it holds no state, so the
//! caller keeps the decoder configuration and hands its NAL length size to
//! [`normalize_nal_lengths`], which produces the 4-byte length prefixes the
//! media model requires. Every malformed input is a typed [`FlvError`]; no
//! count read from the input sizes an allocation before it is checked
//! against the bytes actually present.

pub mod aac;
pub mod av1;
pub mod avc;
mod bits;
pub mod hevc;

use bytes::{BufMut, Bytes, BytesMut};
use vela_media::{AudioCodec, CodecConfig, VideoCodec};

/// Why a tag body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("{what} truncated: needs {need} bytes, has {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("unsupported video codec id {0}")]
    UnsupportedVideoCodec(u8),
    #[error("unsupported FourCC {0:?}")]
    UnsupportedFourCc(String),
    #[error("unsupported audio sound format {0}")]
    UnsupportedSoundFormat(u8),
    #[error("unsupported {what} packet type {value}")]
    UnsupportedPacketType { what: &'static str, value: u8 },
    #[error("malformed {what}: {reason}")]
    BadRecord {
        what: &'static str,
        reason: &'static str,
    },
    #[error("malformed {what}: {reason}")]
    Bitstream {
        what: &'static str,
        reason: &'static str,
    },
    #[error("NAL unit length {length} at offset {offset} overruns the {size}-byte frame")]
    BadNalLength {
        offset: usize,
        length: usize,
        size: usize,
    },
    #[error("empty tag body")]
    Empty,
}

/// A video decoder configuration as announced by a sequence header.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoConfig {
    pub codec: VideoCodec,
    /// avcC / hvcC / av1C, as received.
    pub record: Bytes,
    pub width: u16,
    pub height: u16,
    /// Length-prefix size of the NAL units in coded frames (H.264/H.265); 0 for AV1.
    pub nalu_length_size: u8,
}

impl VideoConfig {
    pub fn to_codec_config(&self, frame_rate: Option<f64>) -> CodecConfig {
        CodecConfig::Video {
            codec: self.codec,
            width: self.width,
            height: self.height,
            frame_rate,
            record: self.record.clone(),
        }
    }
}

/// One coded picture, payload as received (see [`normalize_nal_lengths`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    pub codec: VideoCodec,
    pub keyframe: bool,
    /// Composition time offset in milliseconds.
    pub cts_ms: i32,
    pub data: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VideoTag {
    SequenceStart(VideoConfig),
    Frame(VideoFrame),
    SequenceEnd(VideoCodec),
    /// Valid but of no use to Vela (command frames, enhanced metadata, empty frames).
    Ignored(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioConfig {
    pub codec: AudioCodec,
    pub specific_config: Bytes,
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u16,
}

impl AudioConfig {
    pub fn to_codec_config(&self) -> CodecConfig {
        CodecConfig::Audio {
            codec: self.codec,
            sample_rate: self.sample_rate,
            channels: self.channels,
            specific_config: self.specific_config.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AudioTag {
    SequenceStart(AudioConfig),
    Frame(Bytes),
    SequenceEnd,
    Ignored(&'static str),
}

const FOURCC_AVC1: [u8; 4] = *b"avc1";
const FOURCC_HVC1: [u8; 4] = *b"hvc1";
const FOURCC_AV01: [u8; 4] = *b"av01";
const FOURCC_MP4A: [u8; 4] = *b"mp4a";

// Enhanced RTMP packet types (video and audio share the ModEx/Multitrack values' meaning).
const PT_SEQUENCE_START: u8 = 0;
const PT_CODED_FRAMES: u8 = 1;
const PT_SEQUENCE_END: u8 = 2;
const PT_CODED_FRAMES_X: u8 = 3;
const PT_METADATA: u8 = 4;
const PT_VIDEO_MULTITRACK: u8 = 6;
const PT_MODEX: u8 = 7;
const PT_AUDIO_MULTICHANNEL_CONFIG: u8 = 4;
const PT_AUDIO_MULTITRACK: u8 = 5;

const FRAME_TYPE_KEY: u8 = 1;
const FRAME_TYPE_COMMAND: u8 = 5;

fn need(body: &[u8], n: usize, what: &'static str) -> Result<(), FlvError> {
    if body.len() < n {
        Err(FlvError::Truncated {
            what,
            need: n,
            have: body.len(),
        })
    } else {
        Ok(())
    }
}

fn si24(b: &[u8]) -> i32 {
    // Sign-extend a big-endian 24-bit value.
    (i32::from_be_bytes([b[0], b[1], b[2], 0])) >> 8
}

fn fourcc_string(f: [u8; 4]) -> String {
    f.iter()
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
        .collect()
}

fn video_config(codec: VideoCodec, record: Bytes) -> Result<VideoConfig, FlvError> {
    let (width, height, nalu_length_size) = match codec {
        VideoCodec::H264 => {
            let info = avc::parse_avcc(&record)?;
            (info.width, info.height, info.nalu_length_size)
        }
        VideoCodec::H265 => {
            let info = hevc::parse_hvcc(&record)?;
            (info.width, info.height, info.nalu_length_size)
        }
        VideoCodec::Av1 => {
            let (w, h) = av1::parse_av1c(&record)?;
            (w, h, 0)
        }
    };
    Ok(VideoConfig {
        codec,
        record,
        width,
        height,
        nalu_length_size,
    })
}

fn coded_frame(codec: VideoCodec, keyframe: bool, cts_ms: i32, data: Bytes) -> VideoTag {
    if data.is_empty() {
        return VideoTag::Ignored("empty coded frame");
    }
    VideoTag::Frame(VideoFrame {
        codec,
        keyframe,
        cts_ms,
        data,
    })
}

/// Skips ModEx prefixes (enhanced RTMP v2) and returns the real packet type and the offset after them.
fn skip_modex(body: &[u8], mut packet_type: u8, mut pos: usize) -> Result<(u8, usize), FlvError> {
    while packet_type == PT_MODEX {
        need(body, pos + 1, "ModEx size")?;
        let mut size = usize::from(body[pos]) + 1;
        pos += 1;
        if size == 256 {
            need(body, pos + 2, "ModEx size")?;
            size = usize::from(u16::from_be_bytes([body[pos], body[pos + 1]])) + 1;
            pos += 2;
        }
        need(body, pos + size + 1, "ModEx data")?;
        pos += size;
        // modExType (high nibble) is informational for us; the low nibble is the next packet type.
        packet_type = body[pos] & 0x0f;
        pos += 1;
    }
    Ok((packet_type, pos))
}

/// Parses one video tag body (an RTMP video message's payload).
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Empty)?;
    if first & 0x80 != 0 {
        return parse_enhanced_video(body);
    }
    let frame_type = (first >> 4) & 0x07;
    let codec = match first & 0x0f {
        7 => VideoCodec::H264,
        12 => VideoCodec::H265,
        other => return Err(FlvError::UnsupportedVideoCodec(other)),
    };
    if frame_type == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Ignored("video info/command frame"));
    }
    need(body, 5, "AVC video tag header")?;
    let cts_ms = si24(&body[2..5]);
    match body[1] {
        0 => Ok(VideoTag::SequenceStart(video_config(
            codec,
            body.slice(5..),
        )?)),
        1 => Ok(coded_frame(
            codec,
            frame_type == FRAME_TYPE_KEY,
            cts_ms,
            body.slice(5..),
        )),
        2 => Ok(VideoTag::SequenceEnd(codec)),
        other => Err(FlvError::UnsupportedPacketType {
            what: "AVC",
            value: other,
        }),
    }
}

fn parse_enhanced_video(body: &Bytes) -> Result<VideoTag, FlvError> {
    let frame_type = (body[0] >> 4) & 0x07;
    let (packet_type, mut pos) = skip_modex(body, body[0] & 0x0f, 1)?;
    if packet_type != PT_METADATA && frame_type == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Ignored("enhanced video command frame"));
    }
    if packet_type == PT_VIDEO_MULTITRACK {
        return Err(FlvError::UnsupportedPacketType {
            what: "enhanced video (multitrack)",
            value: packet_type,
        });
    }
    need(body, pos + 4, "enhanced video FourCC")?;
    let fourcc = [body[pos], body[pos + 1], body[pos + 2], body[pos + 3]];
    pos += 4;
    let codec = match fourcc {
        FOURCC_AVC1 => VideoCodec::H264,
        FOURCC_HVC1 => VideoCodec::H265,
        FOURCC_AV01 => VideoCodec::Av1,
        other => return Err(FlvError::UnsupportedFourCc(fourcc_string(other))),
    };
    let keyframe = frame_type == FRAME_TYPE_KEY;
    match packet_type {
        PT_SEQUENCE_START => Ok(VideoTag::SequenceStart(video_config(
            codec,
            body.slice(pos..),
        )?)),
        PT_CODED_FRAMES if codec != VideoCodec::Av1 => {
            need(body, pos + 3, "enhanced video composition time")?;
            let cts_ms = si24(&body[pos..pos + 3]);
            Ok(coded_frame(codec, keyframe, cts_ms, body.slice(pos + 3..)))
        }
        // AV1 CodedFrames carry no composition time; CodedFramesX never do.
        PT_CODED_FRAMES | PT_CODED_FRAMES_X => {
            Ok(coded_frame(codec, keyframe, 0, body.slice(pos..)))
        }
        PT_SEQUENCE_END => Ok(VideoTag::SequenceEnd(codec)),
        PT_METADATA => Ok(VideoTag::Ignored("enhanced video metadata")),
        other => Err(FlvError::UnsupportedPacketType {
            what: "enhanced video",
            value: other,
        }),
    }
}

fn audio_config(asc: Bytes, fallback_channels: u16) -> Result<AudioConfig, FlvError> {
    let parsed = aac::parse_asc(&asc)?;
    Ok(AudioConfig {
        codec: AudioCodec::Aac,
        object_type: parsed.object_type,
        sample_rate: parsed.sample_rate,
        channels: aac::channels(parsed.channel_config).unwrap_or(fallback_channels),
        specific_config: asc,
    })
}

/// Parses one audio tag body (an RTMP audio message's payload).
pub fn parse_audio_tag(body: &Bytes) -> Result<AudioTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Empty)?;
    let sound_format = first >> 4;
    match sound_format {
        10 => {
            need(body, 2, "AAC audio tag header")?;
            let stereo = if first & 0x01 != 0 { 2 } else { 1 };
            match body[1] {
                0 => Ok(AudioTag::SequenceStart(audio_config(
                    body.slice(2..),
                    stereo,
                )?)),
                1 if body.len() == 2 => Ok(AudioTag::Ignored("empty AAC frame")),
                1 => Ok(AudioTag::Frame(body.slice(2..))),
                other => Err(FlvError::UnsupportedPacketType {
                    what: "AAC",
                    value: other,
                }),
            }
        }
        9 => parse_enhanced_audio(body),
        other => Err(FlvError::UnsupportedSoundFormat(other)),
    }
}

fn parse_enhanced_audio(body: &Bytes) -> Result<AudioTag, FlvError> {
    let (packet_type, mut pos) = skip_modex(body, body[0] & 0x0f, 1)?;
    if packet_type == PT_AUDIO_MULTITRACK {
        return Err(FlvError::UnsupportedPacketType {
            what: "enhanced audio (multitrack)",
            value: packet_type,
        });
    }
    need(body, pos + 4, "enhanced audio FourCC")?;
    let fourcc = [body[pos], body[pos + 1], body[pos + 2], body[pos + 3]];
    pos += 4;
    if fourcc != FOURCC_MP4A {
        return Err(FlvError::UnsupportedFourCc(fourcc_string(fourcc)));
    }
    match packet_type {
        PT_SEQUENCE_START => Ok(AudioTag::SequenceStart(audio_config(body.slice(pos..), 2)?)),
        PT_CODED_FRAMES if body.len() == pos => Ok(AudioTag::Ignored("empty AAC frame")),
        PT_CODED_FRAMES => Ok(AudioTag::Frame(body.slice(pos..))),
        PT_SEQUENCE_END => Ok(AudioTag::SequenceEnd),
        PT_AUDIO_MULTICHANNEL_CONFIG => Ok(AudioTag::Ignored("enhanced audio multichannel config")),
        other => Err(FlvError::UnsupportedPacketType {
            what: "enhanced audio",
            value: other,
        }),
    }
}

/// Rewrites length-prefixed NAL units to 4-byte lengths and checks that the
/// lengths tile the frame exactly. With 4-byte input that is valid, the
/// payload is returned without copying.
///
/// A frame that is not length-prefixed but starts with an Annex B start code
/// (some encoders send that despite the spec) is converted too.
pub fn normalize_nal_lengths(data: &Bytes, length_size: u8) -> Result<Bytes, FlvError> {
    let size = usize::from(length_size);
    if !matches!(size, 1 | 2 | 4) {
        return Err(FlvError::BadRecord {
            what: "NAL length size",
            reason: "must be 1, 2 or 4",
        });
    }
    match walk_nals(data, size) {
        Ok(count) if size == 4 => {
            let _ = count;
            Ok(data.clone())
        }
        Ok(count) => {
            let mut out = BytesMut::with_capacity(data.len() + count * (4 - size));
            let mut pos = 0;
            while pos < data.len() {
                let len = read_len(&data[pos..pos + size]);
                pos += size;
                out.put_u32(len as u32);
                out.put_slice(&data[pos..pos + len]);
                pos += len;
            }
            Ok(out.freeze())
        }
        Err(e) => annex_b_to_length_prefixed(data).ok_or(e),
    }
}

fn read_len(b: &[u8]) -> usize {
    b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x))
}

/// Number of NAL units if the lengths tile `data` exactly.
fn walk_nals(data: &[u8], size: usize) -> Result<usize, FlvError> {
    let mut pos = 0;
    let mut count = 0;
    while pos < data.len() {
        if pos + size > data.len() {
            return Err(FlvError::BadNalLength {
                offset: pos,
                length: size,
                size: data.len(),
            });
        }
        let len = read_len(&data[pos..pos + size]);
        if len > data.len() - pos - size {
            return Err(FlvError::BadNalLength {
                offset: pos,
                length: len,
                size: data.len(),
            });
        }
        pos += size + len;
        count += 1;
    }
    Ok(count)
}

fn annex_b_to_length_prefixed(data: &[u8]) -> Option<Bytes> {
    if !(data.starts_with(&[0, 0, 1]) || data.starts_with(&[0, 0, 0, 1])) {
        return None;
    }
    // Find start codes; a NAL runs until the next start code.
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = BytesMut::with_capacity(data.len() + 4 * starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map(|&n| n - 3).unwrap_or(data.len());
        // A 4-byte start code leaves a zero byte that belongs to it, not to the NAL.
        while end > s && data[end - 1] == 0 && k + 1 < starts.len() {
            end -= 1;
        }
        if end > s {
            out.put_u32((end - s) as u32);
            out.put_slice(&data[s..end]);
        }
    }
    (!out.is_empty()).then(|| out.freeze())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// (tag type, body) of every tag in an FLV file.
    pub(crate) fn flv_tags(flv: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let header_len = u32::from_be_bytes([flv[5], flv[6], flv[7], flv[8]]) as usize;
        let mut pos = header_len + 4;
        while pos + 11 <= flv.len() {
            let ty = flv[pos] & 0x1f;
            let size = read_len(&flv[pos + 1..pos + 4]);
            let body = flv[pos + 11..pos + 11 + size].to_vec();
            out.push((ty, body));
            pos += 11 + size + 4;
        }
        out
    }

    /// (tag type, timestamp ms, body) of every tag in an FLV file.
    pub(crate) fn flv_tags_with_time(flv: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let header_len = u32::from_be_bytes([flv[5], flv[6], flv[7], flv[8]]) as usize;
        let mut pos = header_len + 4;
        while pos + 11 <= flv.len() {
            let ty = flv[pos] & 0x1f;
            let size = read_len(&flv[pos + 1..pos + 4]);
            let ts = (read_len(&flv[pos + 4..pos + 7]) as u32) | (u32::from(flv[pos + 7]) << 24);
            out.push((ty, ts, flv[pos + 11..pos + 11 + size].to_vec()));
            pos += 11 + size + 4;
        }
        out
    }

    pub(crate) const X264_FLV: &[u8] = include_bytes!("../../fixtures/ffmpeg-x264-aac-640x360.flv");

    #[test]
    fn ffmpeg_x264_aac_flv_parses_end_to_end() {
        let mut video_config = None;
        let mut audio_config = None;
        let (mut frames, mut keyframes, mut audio_frames, mut with_cts) = (0, 0, 0, 0);
        for (ty, body) in flv_tags(X264_FLV) {
            let body = Bytes::from(body);
            match ty {
                9 => match parse_video_tag(&body).unwrap() {
                    VideoTag::SequenceStart(c) => video_config = Some(c),
                    VideoTag::Frame(f) => {
                        let c = video_config.as_ref().unwrap();
                        let norm = normalize_nal_lengths(&f.data, c.nalu_length_size).unwrap();
                        assert_eq!(norm, f.data, "4-byte input passes through");
                        frames += 1;
                        keyframes += usize::from(f.keyframe);
                        with_cts += usize::from(f.cts_ms != 0);
                    }
                    VideoTag::SequenceEnd(VideoCodec::H264) => {} // ffmpeg ends the file with one
                    other => panic!("unexpected {other:?}"),
                },
                8 => match parse_audio_tag(&body).unwrap() {
                    AudioTag::SequenceStart(c) => audio_config = Some(c),
                    AudioTag::Frame(_) => audio_frames += 1,
                    other => panic!("unexpected {other:?}"),
                },
                _ => {}
            }
        }
        let v = video_config.unwrap();
        assert_eq!(
            (v.codec, v.width, v.height, v.nalu_length_size),
            (VideoCodec::H264, 640, 360, 4)
        );
        assert!(v
            .to_codec_config(None)
            .codec_string()
            .starts_with("avc1.64"));
        let a = audio_config.unwrap();
        assert_eq!((a.sample_rate, a.channels, a.object_type), (44100, 1, 2));
        assert_eq!(a.to_codec_config().codec_string(), "mp4a.40.2");
        assert_eq!(frames, 30);
        assert!(keyframes >= 1);
        assert!(
            with_cts > 0,
            "x264 uses B-frames, so some composition offsets are non-zero"
        );
        assert!(audio_frames >= 40, "{audio_frames} audio frames");
    }

    #[test]
    fn composition_time_is_signed_24_bit() {
        let body = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0x41]);
        match parse_video_tag(&body).unwrap() {
            VideoTag::Frame(f) => {
                assert_eq!(f.cts_ms, -2);
                assert!(!f.keyframe);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_byte_nal_lengths_are_rewritten() {
        let data = Bytes::from_static(&[0, 2, 0x65, 0xaa, 0, 1, 0x06]);
        let out = normalize_nal_lengths(&data, 2).unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x06]);
        let one = normalize_nal_lengths(&Bytes::from_static(&[1, 0x41]), 1).unwrap();
        assert_eq!(&one[..], &[0, 0, 0, 1, 0x41]);
    }

    #[test]
    fn overrunning_nal_lengths_are_errors() {
        assert!(matches!(
            normalize_nal_lengths(&Bytes::from_static(&[0, 0, 0, 9, 0x65]), 4),
            Err(FlvError::BadNalLength { .. })
        ));
        assert!(normalize_nal_lengths(&Bytes::from_static(&[0, 5, 1]), 2).is_err());
        assert!(normalize_nal_lengths(&Bytes::from_static(&[0, 1]), 3).is_err());
    }

    #[test]
    fn annex_b_frames_are_converted() {
        let data = Bytes::from_static(&[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 0x88, 0x84]);
        let out = normalize_nal_lengths(&data, 4).unwrap();
        assert_eq!(
            &out[..],
            &[0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
    }

    fn enhanced(frame_type: u8, packet_type: u8, fourcc: &[u8; 4], rest: &[u8]) -> Bytes {
        let mut v = vec![0x80 | (frame_type << 4) | packet_type];
        v.extend_from_slice(fourcc);
        v.extend_from_slice(rest);
        Bytes::from(v)
    }

    #[test]
    fn enhanced_hevc_sequence_start_and_frames() {
        let tag = enhanced(1, PT_SEQUENCE_START, b"hvc1", hevc::tests::X265_426X240);
        let VideoTag::SequenceStart(c) = parse_video_tag(&tag).unwrap() else {
            panic!()
        };
        assert_eq!((c.codec, c.width, c.height), (VideoCodec::H265, 426, 240));
        assert!(c
            .to_codec_config(Some(30.0))
            .codec_string()
            .starts_with("hvc1.1.6.L"));

        let tag = enhanced(
            1,
            PT_CODED_FRAMES,
            b"hvc1",
            &[0, 0, 40, 0, 0, 0, 2, 0x26, 0x01],
        );
        let VideoTag::Frame(f) = parse_video_tag(&tag).unwrap() else {
            panic!()
        };
        assert_eq!((f.keyframe, f.cts_ms, f.data.len()), (true, 40, 6));

        let tag = enhanced(2, PT_CODED_FRAMES_X, b"hvc1", &[0, 0, 0, 2, 0x02, 0x01]);
        let VideoTag::Frame(f) = parse_video_tag(&tag).unwrap() else {
            panic!()
        };
        assert_eq!((f.keyframe, f.cts_ms, f.data.len()), (false, 0, 6));

        assert_eq!(
            parse_video_tag(&enhanced(1, PT_SEQUENCE_END, b"hvc1", &[])).unwrap(),
            VideoTag::SequenceEnd(VideoCodec::H265)
        );
        assert!(matches!(
            parse_video_tag(&enhanced(1, PT_METADATA, b"hvc1", &[2, 0, 0])).unwrap(),
            VideoTag::Ignored(_)
        ));
    }

    #[test]
    fn enhanced_av1_has_no_composition_time() {
        let tag = enhanced(1, PT_SEQUENCE_START, b"av01", av1::tests::LIBAOM_320X240);
        let VideoTag::SequenceStart(c) = parse_video_tag(&tag).unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.codec, c.width, c.height, c.nalu_length_size),
            (VideoCodec::Av1, 320, 240, 0)
        );
        let tag = enhanced(1, PT_CODED_FRAMES, b"av01", &[0x12, 0x00, 0x0a, 0x0b]);
        let VideoTag::Frame(f) = parse_video_tag(&tag).unwrap() else {
            panic!()
        };
        assert_eq!((f.cts_ms, &f.data[..]), (0, &[0x12, 0x00, 0x0a, 0x0b][..]));
    }

    #[test]
    fn enhanced_modex_prefix_is_skipped() {
        // ModEx: size-1 = 2 (3 bytes of data), then modExType 0 / packet type CodedFramesX.
        let mut v = vec![
            0x80 | (1 << 4) | PT_MODEX,
            2,
            0xaa,
            0xbb,
            0xcc,
            PT_CODED_FRAMES_X,
        ];
        v.extend_from_slice(b"avc1");
        v.extend_from_slice(&[0, 0, 0, 1, 0x65]);
        let VideoTag::Frame(f) = parse_video_tag(&Bytes::from(v)).unwrap() else {
            panic!()
        };
        assert!(f.keyframe);
        assert_eq!(f.codec, VideoCodec::H264);
    }

    #[test]
    fn enhanced_aac_audio() {
        let mut v = vec![0x90 | PT_SEQUENCE_START];
        v.extend_from_slice(b"mp4a");
        v.extend_from_slice(&[0x11, 0x90]); // AAC-LC 48 kHz stereo
        let AudioTag::SequenceStart(c) = parse_audio_tag(&Bytes::from(v)).unwrap() else {
            panic!()
        };
        assert_eq!((c.sample_rate, c.channels), (48000, 2));
        let mut v = vec![0x90 | PT_CODED_FRAMES];
        v.extend_from_slice(b"mp4a");
        v.extend_from_slice(&[0x21, 0x10]);
        assert_eq!(
            parse_audio_tag(&Bytes::from(v)).unwrap(),
            AudioTag::Frame(Bytes::from_static(&[0x21, 0x10]))
        );
        let mut v = vec![0x90 | PT_CODED_FRAMES];
        v.extend_from_slice(b"Opus");
        assert_eq!(
            parse_audio_tag(&Bytes::from(v)),
            Err(FlvError::UnsupportedFourCc("Opus".into()))
        );
    }

    #[test]
    fn unsupported_and_truncated_inputs_are_typed_errors() {
        assert_eq!(parse_video_tag(&Bytes::new()), Err(FlvError::Empty));
        assert_eq!(
            parse_video_tag(&Bytes::from_static(&[0x12, 0])),
            Err(FlvError::UnsupportedVideoCodec(2))
        );
        assert!(matches!(
            parse_video_tag(&Bytes::from_static(&[0x17, 0, 0])),
            Err(FlvError::Truncated { .. })
        ));
        assert!(matches!(
            parse_video_tag(&Bytes::from_static(&[0x17, 0, 0, 0, 0, 1])),
            Err(FlvError::Truncated { .. })
        ));
        assert!(matches!(
            parse_video_tag(&enhanced(1, 0, b"vp09", &[])),
            Err(FlvError::UnsupportedFourCc(_))
        ));
        assert!(matches!(
            parse_video_tag(&Bytes::from_static(&[0x90, b'h'])),
            Err(FlvError::Truncated { .. })
        ));
        assert_eq!(
            parse_audio_tag(&Bytes::from_static(&[0x2f, 0xff])),
            Err(FlvError::UnsupportedSoundFormat(2))
        );
        assert!(parse_audio_tag(&Bytes::from_static(&[0xaf])).is_err());
        assert!(parse_audio_tag(&Bytes::from_static(&[0xaf, 0, 0x12])).is_err());
        // A ModEx chain that runs off the end.
        assert!(parse_video_tag(&Bytes::from_static(&[0x97, 0xff, 0xff])).is_err());
    }
}
