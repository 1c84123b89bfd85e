//! H.264: the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3) and the
//! picture size from its first sequence parameter set (ITU-T H.264 7.3.2.1.1).

use super::bits::{unescape_rbsp, BitReader};
use super::FlvError;

/// What Vela needs from an avcC record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcRecordInfo {
    /// Bytes per NAL unit length prefix in the samples (1, 2 or 4).
    pub nalu_length_size: u8,
    pub width: u16,
    pub height: u16,
}

fn bad(reason: &'static str) -> FlvError {
    FlvError::BadRecord {
        what: "avcC",
        reason,
    }
}

/// Validates an avcC record's structure and reads the picture size from its SPS.
pub fn parse_avcc(record: &[u8]) -> Result<AvcRecordInfo, FlvError> {
    if record.len() < 7 {
        return Err(FlvError::Truncated {
            what: "avcC",
            need: 7,
            have: record.len(),
        });
    }
    if record[0] != 1 {
        return Err(bad("configurationVersion is not 1"));
    }
    let nalu_length_size = (record[4] & 0x03) + 1;
    if nalu_length_size == 3 {
        return Err(bad(
            "lengthSizeMinusOne is 2 (3-byte lengths are not allowed)",
        ));
    }
    let num_sps = usize::from(record[5] & 0x1f);
    let mut pos = 6;
    let mut first_sps: Option<&[u8]> = None;
    for _ in 0..num_sps {
        let nal = read_u16_prefixed(record, &mut pos)?;
        if first_sps.is_none() {
            first_sps = Some(nal);
        }
    }
    let num_pps = *record.get(pos).ok_or(FlvError::Truncated {
        what: "avcC PPS count",
        need: pos + 1,
        have: record.len(),
    })?;
    pos += 1;
    for _ in 0..num_pps {
        read_u16_prefixed(record, &mut pos)?;
    }
    // Trailing bytes (the High-profile chroma/bit-depth extension) are allowed.
    let sps = first_sps.ok_or_else(|| bad("no sequence parameter set"))?;
    let (width, height) = sps_picture_size(sps)?;
    Ok(AvcRecordInfo {
        nalu_length_size,
        width,
        height,
    })
}

pub(crate) fn read_u16_prefixed<'a>(data: &'a [u8], pos: &mut usize) -> Result<&'a [u8], FlvError> {
    let len_bytes = data.get(*pos..*pos + 2).ok_or(FlvError::Truncated {
        what: "parameter set length",
        need: *pos + 2,
        have: data.len(),
    })?;
    let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    let start = *pos + 2;
    let nal = data.get(start..start + len).ok_or(FlvError::Truncated {
        what: "parameter set",
        need: start + len,
        have: data.len(),
    })?;
    *pos = start + len;
    Ok(nal)
}

/// The cropped picture size of an H.264 SPS NAL unit (with its NAL header).
pub fn sps_picture_size(nal: &[u8]) -> Result<(u16, u16), FlvError> {
    let rbsp = unescape_rbsp(nal);
    let mut r = BitReader::new(&rbsp, "H.264 SPS");
    let nal_type = r.bits(8)? & 0x1f;
    if nal_type != 7 {
        return Err(FlvError::Bitstream {
            what: "H.264 SPS",
            reason: "NAL unit is not an SPS",
        });
    }
    let profile_idc = r.bits(8)?;
    r.skip(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return Err(FlvError::Bitstream {
                what: "H.264 SPS",
                reason: "chroma_format_idc > 3",
            });
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            // seq_scaling_matrix_present_flag: skip the lists, they do not affect the size.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            let delta = r.se()?;
                            next = (last + delta).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.skip(1)?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(FlvError::Bitstream {
                    what: "H.264 SPS",
                    reason: "num_ref_frames_in_pic_order_cnt_cycle > 255",
                });
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => {
            return Err(FlvError::Bitstream {
                what: "H.264 SPS",
                reason: "pic_order_cnt_type > 2",
            })
        }
    }
    r.ue()?; // max_num_ref_frames
    r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.skip(1)?; // mb_adaptive_frame_field_flag
    }
    r.skip(1)?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? {
        crop_l = r.ue()?.into();
        crop_r = r.ue()?.into();
        crop_t = r.ue()?.into();
        crop_b = r.ue()?.into();
    }
    // Table 6-1: SubWidthC / SubHeightC; monochrome and separate planes crop in luma units.
    let (sub_w, sub_h) = if separate_colour_plane {
        (1, 1)
    } else {
        match chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        }
    };
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let width = (width_mbs * 16).checked_sub(sub_w * (crop_l + crop_r));
    let height = (height_map_units * 16 * field_factor)
        .checked_sub(sub_h * field_factor * (crop_t + crop_b));
    match (width, height) {
        (Some(w), Some(h)) if w <= u64::from(u16::MAX) && h <= u64::from(u16::MAX) => {
            Ok((w as u16, h as u16))
        }
        _ => Err(FlvError::Bitstream {
            what: "H.264 SPS",
            reason: "picture size out of range",
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The SPS x264 writes for 640x360 High profile (coded 640x368, cropped by 8 lines).
    pub(crate) fn x264_640x360_avcc() -> Vec<u8> {
        let flv = include_bytes!("../../fixtures/ffmpeg-x264-aac-640x360.flv");
        crate::flv::tests::flv_tags(flv)
            .into_iter()
            .find(|(ty, body)| *ty == 9 && body.len() > 5 && body[1] == 0)
            .map(|(_, body)| body[5..].to_vec())
            .expect("fixture has an AVC sequence header")
    }

    #[test]
    fn size_from_x264_sps_with_cropping() {
        let info = parse_avcc(&x264_640x360_avcc()).unwrap();
        assert_eq!(
            info,
            AvcRecordInfo {
                nalu_length_size: 4,
                width: 640,
                height: 360
            }
        );
    }

    #[test]
    fn truncated_records_are_errors() {
        let rec = x264_640x360_avcc();
        for n in 0..rec.len() {
            // Some prefixes may still parse (trailing PPS missing is caught); none may panic.
            let _ = parse_avcc(&rec[..n]);
        }
        assert!(parse_avcc(&rec[..10]).is_err());
        assert!(parse_avcc(&[]).is_err());
    }

    #[test]
    fn hand_built_baseline_sps() {
        // Baseline 1280x720: 80x45 MBs, frame_mbs_only, no cropping.
        // Built with a tiny bit writer to exercise exp-Golomb paths.
        let mut w = BitWriter::default();
        w.put(8, 0x67);
        w.put(8, 66); // profile_idc baseline
        w.put(16, 0x001f);
        w.ue(0); // sps id
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(2); // poc type 2
        w.ue(1); // max_num_ref_frames
        w.put(1, 0);
        w.ue(79); // width mbs - 1
        w.ue(44); // height map units - 1
        w.put(1, 1); // frame_mbs_only
        w.put(1, 1); // direct_8x8
        w.put(1, 0); // no cropping
        w.put(1, 0); // no vui
        w.put(1, 1); // stop bit
        assert_eq!(sps_picture_size(&w.finish()).unwrap(), (1280, 720));
    }

    #[derive(Default)]
    pub(crate) struct BitWriter {
        bytes: Vec<u8>,
        nbits: usize,
    }

    impl BitWriter {
        pub(crate) fn put(&mut self, n: u32, v: u64) {
            for i in (0..n).rev() {
                if self.nbits.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let bit = ((v >> i) & 1) as u8;
                let last = self.bytes.len() - 1;
                self.bytes[last] |= bit << (7 - (self.nbits % 8));
                self.nbits += 1;
            }
        }
        pub(crate) fn ue(&mut self, v: u32) {
            let x = u64::from(v) + 1;
            let len = 64 - x.leading_zeros();
            self.put(len - 1, 0);
            self.put(len, x);
        }
        pub(crate) fn finish(self) -> Vec<u8> {
            self.bytes
        }
    }
}
