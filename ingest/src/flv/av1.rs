//! AV1: the AV1CodecConfigurationRecord (av1C, AV1-ISOBMFF 2.3) and the
//! picture size from the sequence header OBU among its configOBUs (AV1 5.5).

use super::bits::BitReader;
use super::FlvError;

const OBU_SEQUENCE_HEADER: u32 = 1;

/// Validates an av1C record; the size comes from its sequence header OBU,
/// or is `(0, 0)` when the record carries none (allowed by the binding).
pub fn parse_av1c(record: &[u8]) -> Result<(u16, u16), FlvError> {
    if record.len() < 4 {
        return Err(FlvError::Truncated {
            what: "av1C",
            need: 4,
            have: record.len(),
        });
    }
    if record[0] != 0x81 {
        return Err(FlvError::BadRecord {
            what: "av1C",
            reason: "marker/version is not 0x81",
        });
    }
    let mut obus = &record[4..];
    while !obus.is_empty() {
        let (obu_type, payload, rest) = split_obu(obus)?;
        if obu_type == OBU_SEQUENCE_HEADER {
            return sequence_header_size(payload);
        }
        obus = rest;
    }
    Ok((0, 0))
}

const OBU_TEMPORAL_DELIMITER: u32 = 2;

/// Drops the temporal delimiter OBUs that lead a temporal unit: the AV1
/// ISOBMFF binding keeps them out of samples. Zero-copy; input that does not
/// parse as OBUs is returned unchanged for the consumer to judge.
pub fn strip_temporal_delimiters(data: &bytes::Bytes) -> bytes::Bytes {
    let mut rest: &[u8] = data;
    while !rest.is_empty() {
        match split_obu(rest) {
            Ok((OBU_TEMPORAL_DELIMITER, _, after)) if rest[0] & 0x02 != 0 => rest = after,
            _ => break,
        }
    }
    data.slice_ref(rest)
}

/// One OBU: (type, payload, the bytes after it). OBUs without a size field run to the end.
fn split_obu(data: &[u8]) -> Result<(u32, &[u8], &[u8]), FlvError> {
    let header = data[0];
    if header & 0x80 != 0 {
        return Err(FlvError::Bitstream {
            what: "AV1 OBU",
            reason: "forbidden bit set",
        });
    }
    let obu_type = u32::from((header >> 3) & 0x0f);
    let has_extension = header & 0x04 != 0;
    let has_size = header & 0x02 != 0;
    let mut pos = 1 + usize::from(has_extension);
    if pos > data.len() {
        return Err(FlvError::Truncated {
            what: "AV1 OBU header",
            need: pos,
            have: data.len(),
        });
    }
    let size = if has_size {
        let mut value: u64 = 0;
        let mut i = 0;
        loop {
            let byte = *data.get(pos).ok_or(FlvError::Truncated {
                what: "AV1 OBU size",
                need: pos + 1,
                have: data.len(),
            })?;
            value |= u64::from(byte & 0x7f) << (7 * i);
            pos += 1;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if i == 8 {
                return Err(FlvError::Bitstream {
                    what: "AV1 OBU",
                    reason: "leb128 size longer than 8 bytes",
                });
            }
        }
        usize::try_from(value).unwrap_or(usize::MAX)
    } else {
        data.len() - pos
    };
    let end = pos
        .checked_add(size)
        .filter(|&e| e <= data.len())
        .ok_or(FlvError::Truncated {
            what: "AV1 OBU payload",
            need: pos.saturating_add(size),
            have: data.len(),
        })?;
    Ok((obu_type, &data[pos..end], &data[end..]))
}

fn sequence_header_size(payload: &[u8]) -> Result<(u16, u16), FlvError> {
    let mut r = BitReader::new(payload, "AV1 sequence header");
    r.skip(3)?; // seq_profile
    r.skip(1)?; // still_picture
    let reduced = r.bit()?;
    if reduced {
        r.skip(5)?; // seq_level_idx[0]
    } else {
        let timing_info_present = r.bit()?;
        let mut decoder_model_info_present = false;
        let mut buffer_delay_length = 0;
        if timing_info_present {
            r.skip(64)?; // num_units_in_display_tick, time_scale
            if r.bit()? {
                r.uvlc()?; // num_ticks_per_picture_minus_1
            }
            decoder_model_info_present = r.bit()?;
            if decoder_model_info_present {
                buffer_delay_length = r.bits(5)? + 1;
                r.skip(32)?; // num_units_in_decoding_tick
                r.skip(10)?; // buffer_removal_time_length_minus_1, frame_presentation_time_length_minus_1
            }
        }
        let initial_display_delay_present = r.bit()?;
        let operating_points = r.bits(5)? + 1;
        for _ in 0..operating_points {
            r.skip(12)?; // operating_point_idc
            let seq_level_idx = r.bits(5)?;
            if seq_level_idx > 7 {
                r.skip(1)?; // seq_tier
            }
            if decoder_model_info_present && r.bit()? {
                r.skip(2 * buffer_delay_length as usize + 1)?;
            }
            if initial_display_delay_present && r.bit()? {
                r.skip(4)?;
            }
        }
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    let w = u64::from(r.bits(width_bits)?) + 1;
    let h = u64::from(r.bits(height_bits)?) + 1;
    if w > u64::from(u16::MAX) || h > u64::from(u16::MAX) {
        return Err(FlvError::Bitstream {
            what: "AV1 sequence header",
            reason: "picture size out of range",
        });
    }
    Ok((w as u16, h as u16))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const LIBAOM_320X240: &[u8] =
        include_bytes!("../../fixtures/ffmpeg-libaom-320x240.av1C");

    #[test]
    fn size_from_libaom_av1c() {
        assert_eq!(parse_av1c(LIBAOM_320X240).unwrap(), (320, 240));
    }

    #[test]
    fn leading_temporal_delimiters_are_stripped() {
        let tu = bytes::Bytes::from_static(&[0x12, 0x00, 0x32, 0x02, 0xaa, 0xbb]);
        assert_eq!(
            &strip_temporal_delimiters(&tu)[..],
            &[0x32, 0x02, 0xaa, 0xbb]
        );
        let no_td = bytes::Bytes::from_static(&[0x32, 0x01, 0xaa]);
        assert_eq!(strip_temporal_delimiters(&no_td), no_td);
        assert!(strip_temporal_delimiters(&bytes::Bytes::from_static(&[0x12, 0x00])).is_empty());
    }

    #[test]
    fn record_without_config_obus_has_unknown_size() {
        assert_eq!(parse_av1c(&LIBAOM_320X240[..4]).unwrap(), (0, 0));
    }

    #[test]
    fn truncations_never_panic() {
        for n in 0..LIBAOM_320X240.len() {
            let _ = parse_av1c(&LIBAOM_320X240[..n]);
        }
        assert!(parse_av1c(&LIBAOM_320X240[..8]).is_err());
    }
}
