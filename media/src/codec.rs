//! Codec configurations as the containers carry them, and RFC 6381 codec strings.

use bytes::Bytes;

use crate::MediaKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    H264,
    H265,
    Av1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    Aac,
}

/// A track's decoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum CodecConfig {
    Video {
        codec: VideoCodec,
        /// Coded picture size, from the parameter sets (0 when unknown).
        width: u16,
        height: u16,
        /// Frames per second as announced by the source, if any.
        frame_rate: Option<f64>,
        /// The decoder configuration record, exactly as the sample entry's
        /// box body: AVCDecoderConfigurationRecord (avcC),
        /// HEVCDecoderConfigurationRecord (hvcC) or AV1CodecConfigurationRecord (av1C).
        record: Bytes,
    },
    Audio {
        codec: AudioCodec,
        sample_rate: u32,
        channels: u16,
        /// The AudioSpecificConfig (ISO/IEC 14496-3) for AAC.
        specific_config: Bytes,
    },
}

impl CodecConfig {
    pub fn kind(&self) -> MediaKind {
        match self {
            CodecConfig::Video { .. } => MediaKind::Video,
            CodecConfig::Audio { .. } => MediaKind::Audio,
        }
    }

    /// The RFC 6381 `codecs` parameter value, e.g. `avc1.64001f`, `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        match self {
            CodecConfig::Video {
                codec: VideoCodec::H264,
                record,
                ..
            } => {
                if record.len() >= 4 {
                    format!("avc1.{:02x}{:02x}{:02x}", record[1], record[2], record[3])
                } else {
                    "avc1".to_string()
                }
            }
            CodecConfig::Video {
                codec: VideoCodec::H265,
                record,
                ..
            } => hevc_codec_string(record),
            CodecConfig::Video {
                codec: VideoCodec::Av1,
                record,
                ..
            } => av1_codec_string(record),
            CodecConfig::Audio {
                codec: AudioCodec::Aac,
                specific_config,
                ..
            } => {
                let aot = specific_config.first().map(|b| b >> 3).unwrap_or(2);
                format!("mp4a.40.{}", if aot == 0 { 2 } else { aot })
            }
        }
    }
}

/// `hvc1.P.C.Tn.Bx` per ISO/IEC 14496-15 Annex E.
fn hevc_codec_string(r: &[u8]) -> String {
    if r.len() < 13 {
        return "hvc1".to_string();
    }
    let profile_space = r[1] >> 6;
    let tier = (r[1] >> 5) & 1;
    let profile_idc = r[1] & 0x1f;
    let compat = u32::from_be_bytes([r[2], r[3], r[4], r[5]]).reverse_bits();
    let level = r[12];
    let space = match profile_space {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    let mut s = format!(
        "hvc1.{space}{profile_idc}.{compat:X}.{}{level}",
        if tier == 1 { 'H' } else { 'L' }
    );
    // Constraint flags: six bytes, trailing zero bytes omitted.
    let constraints = &r[6..12];
    let n = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map(|i| i + 1)
        .unwrap_or(0);
    for b in &constraints[..n] {
        s.push_str(&format!(".{b:X}"));
    }
    s
}

/// `av01.P.LLT.DD` per the AV1 ISOBMFF binding, from the av1C record.
fn av1_codec_string(r: &[u8]) -> String {
    if r.len() < 4 {
        return "av01".to_string();
    }
    let profile = r[1] >> 5;
    let level = r[1] & 0x1f;
    let tier = if r[2] & 0x80 != 0 { 'H' } else { 'M' };
    let high_bitdepth = r[2] & 0x40 != 0;
    let twelve_bit = r[2] & 0x20 != 0;
    let depth = match (high_bitdepth, twelve_bit) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    format!("av01.{profile}.{level:02}{tier}.{depth:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_codec_string_from_record() {
        let c = CodecConfig::Video {
            codec: VideoCodec::H264,
            width: 1280,
            height: 720,
            frame_rate: None,
            record: Bytes::from_static(&[1, 0x64, 0x00, 0x1f, 0xff]),
        };
        assert_eq!(c.codec_string(), "avc1.64001f");
    }

    #[test]
    fn aac_codec_string_from_asc() {
        // AAC-LC, 44.1 kHz, stereo.
        let c = CodecConfig::Audio {
            codec: AudioCodec::Aac,
            sample_rate: 44100,
            channels: 2,
            specific_config: Bytes::from_static(&[0x12, 0x10]),
        };
        assert_eq!(c.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn hevc_codec_string_main_profile() {
        // Main profile, main tier, level 3.1 (93), compat flag bit 1 (and 2), constraint 0x90.
        let mut r = vec![1u8, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93];
        r.resize(23, 0);
        assert_eq!(hevc_codec_string(&r), "hvc1.1.6.L93.90");
    }

    #[test]
    fn av1_codec_string_main_8bit() {
        assert_eq!(av1_codec_string(&[0x81, 0x08, 0x0c, 0x00]), "av01.0.08M.08");
    }
}
