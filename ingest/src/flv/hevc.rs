//! H.265: the HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3) and the
//! picture size from the SPS in its arrays (ITU-T H.265 7.3.2.2.1).

use super::avc::read_u16_prefixed;
use super::bits::{unescape_rbsp, BitReader};
use super::FlvError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcRecordInfo {
    pub nalu_length_size: u8,
    pub width: u16,
    pub height: u16,
}

const SPS_NUT: u8 = 33;

fn bad(reason: &'static str) -> FlvError {
    FlvError::BadRecord {
        what: "hvcC",
        reason,
    }
}

/// Validates an hvcC record's structure and reads the picture size from its first SPS.
pub fn parse_hvcc(record: &[u8]) -> Result<HevcRecordInfo, FlvError> {
    if record.len() < 23 {
        return Err(FlvError::Truncated {
            what: "hvcC",
            need: 23,
            have: record.len(),
        });
    }
    if record[0] != 1 {
        return Err(bad("configurationVersion is not 1"));
    }
    let nalu_length_size = (record[21] & 0x03) + 1;
    if nalu_length_size == 3 {
        return Err(bad(
            "lengthSizeMinusOne is 2 (3-byte lengths are not allowed)",
        ));
    }
    let num_arrays = record[22];
    let mut pos = 23;
    let mut sps: Option<&[u8]> = None;
    for _ in 0..num_arrays {
        let header = *record.get(pos).ok_or(FlvError::Truncated {
            what: "hvcC array",
            need: pos + 1,
            have: record.len(),
        })?;
        let count = record
            .get(pos + 1..pos + 3)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(FlvError::Truncated {
                what: "hvcC array",
                need: pos + 3,
                have: record.len(),
            })?;
        pos += 3;
        // Each NAL unit needs at least its 2-byte length, so `count` is bounded
        // by the record's size before anything is looped over.
        if usize::from(count) * 2 > record.len().saturating_sub(pos) {
            return Err(FlvError::Truncated {
                what: "hvcC NAL units",
                need: pos + usize::from(count) * 2,
                have: record.len(),
            });
        }
        for _ in 0..count {
            let nal = read_u16_prefixed(record, &mut pos)?;
            if header & 0x3f == SPS_NUT && sps.is_none() {
                sps = Some(nal);
            }
        }
    }
    let sps = sps.ok_or_else(|| bad("no sequence parameter set"))?;
    let (width, height) = sps_picture_size(sps)?;
    Ok(HevcRecordInfo {
        nalu_length_size,
        width,
        height,
    })
}

fn skip_profile_tier_level(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u32,
) -> Result<(), FlvError> {
    // general_profile_space .. general_level_idc: 2+1+5+32+48+8 bits.
    r.skip(96)?;
    let mut present = [(false, false); 8];
    for p in present.iter_mut().take(max_sub_layers_minus1 as usize) {
        *p = (r.bit()?, r.bit()?);
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.skip(2)?; // reserved_zero_2bits
        }
    }
    for &(profile, level) in present.iter().take(max_sub_layers_minus1 as usize) {
        if profile {
            r.skip(88)?;
        }
        if level {
            r.skip(8)?;
        }
    }
    Ok(())
}

/// The conformance-window-cropped picture size of an H.265 SPS NAL unit (with its header).
pub fn sps_picture_size(nal: &[u8]) -> Result<(u16, u16), FlvError> {
    let rbsp = unescape_rbsp(nal);
    let mut r = BitReader::new(&rbsp, "H.265 SPS");
    let nal_type = (r.bits(16)? >> 9) & 0x3f;
    if nal_type != u32::from(SPS_NUT) {
        return Err(FlvError::Bitstream {
            what: "H.265 SPS",
            reason: "NAL unit is not an SPS",
        });
    }
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    if max_sub_layers_minus1 > 6 {
        return Err(FlvError::Bitstream {
            what: "H.265 SPS",
            reason: "sps_max_sub_layers_minus1 > 6",
        });
    }
    r.skip(1)?; // sps_temporal_id_nesting_flag
    skip_profile_tier_level(&mut r, max_sub_layers_minus1)?;
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    if chroma_format_idc > 3 {
        return Err(FlvError::Bitstream {
            what: "H.265 SPS",
            reason: "chroma_format_idc > 3",
        });
    }
    let mut separate_colour_plane = false;
    if chroma_format_idc == 3 {
        separate_colour_plane = r.bit()?;
    }
    let width = u64::from(r.ue()?);
    let height = u64::from(r.ue()?);
    let (mut l, mut rt, mut t, mut b) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? {
        l = r.ue()?.into();
        rt = r.ue()?.into();
        t = r.ue()?.into();
        b = r.ue()?.into();
    }
    let (sub_w, sub_h) = if separate_colour_plane {
        (1, 1)
    } else {
        match chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        }
    };
    let w = width.checked_sub(sub_w * (l + rt));
    let h = height.checked_sub(sub_h * (t + b));
    match (w, h) {
        (Some(w), Some(h)) if w <= u64::from(u16::MAX) && h <= u64::from(u16::MAX) => {
            Ok((w as u16, h as u16))
        }
        _ => Err(FlvError::Bitstream {
            what: "H.265 SPS",
            reason: "picture size out of range",
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const X265_426X240: &[u8] =
        include_bytes!("../../fixtures/ffmpeg-x265-426x240.hvcC");

    #[test]
    fn size_from_x265_hvcc_with_conformance_window() {
        // 426 is not a multiple of the 8-sample minimum coding block: x265 codes 432 and crops.
        let info = parse_hvcc(X265_426X240).unwrap();
        assert_eq!(
            info,
            HevcRecordInfo {
                nalu_length_size: 4,
                width: 426,
                height: 240
            }
        );
    }

    #[test]
    fn truncated_and_lying_records_are_errors() {
        for n in 0..X265_426X240.len() {
            assert!(
                parse_hvcc(&X265_426X240[..n]).is_err(),
                "prefix of {n} bytes parsed"
            );
        }
        let mut lying = X265_426X240.to_vec();
        lying[22] = 0xff; // numOfArrays far beyond the data
        assert!(parse_hvcc(&lying).is_err());
    }
}
