//! H.264 access units from the RTP depacketiser to Vela's sample format.
//!
//! str0m reassembles packetization-mode 1 RTP (single NAL units, STAP-A,
//! FU-A) into one Annex B byte stream per picture (start-code separated NAL
//! units). The media model wants what CMAF stores: NAL units with 4-byte
//! length prefixes, and the parameter sets out of band in an avcC record.
//! [`AvcTracker`] does that conversion: it splits the Annex B stream, keeps
//! the latest SPS and PPS, builds (and validates) a new avcC whenever they
//! change, drops access unit delimiters and in-band parameter sets from the
//! sample, and tells keyframes (IDR slices) apart.
//!
//! Everything here reads bytes that a remote peer chose: sizes are capped,
//! nothing panics (`fuzz/fuzz_targets/webrtc_h264.rs`).

use bytes::{BufMut, Bytes, BytesMut};

/// NAL unit types (ITU-T H.264 table 7-1) that matter here.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// Longest parameter set kept (real ones are tens of bytes).
pub const MAX_PARAMETER_SET: usize = 1024;
/// Most NAL units in one access unit (a slice per macroblock row of 4K is ~135).
pub const MAX_NALS_PER_UNIT: usize = 512;

/// Why an access unit was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvcError {
    #[error("the access unit has no NAL unit")]
    Empty,
    #[error("the access unit has more than {MAX_NALS_PER_UNIT} NAL units")]
    TooManyNals,
    #[error("a parameter set is longer than {MAX_PARAMETER_SET} bytes")]
    ParameterSetTooLong,
    #[error("the parameter sets do not make a valid avcC: {0}")]
    BadParameterSets(String),
    #[error("no SPS and PPS were received before this picture")]
    NoParameterSets,
}

/// One converted access unit.
#[derive(Debug, Clone, PartialEq)]
pub struct AvcUnit {
    /// Length-prefixed NAL units (4-byte lengths), without SPS/PPS/AUD.
    pub sample: Bytes,
    /// It contains an IDR slice.
    pub keyframe: bool,
    /// A new avcC record (with its picture size), when the parameter sets
    /// changed with this unit.
    pub new_config: Option<AvcConfig>,
}

/// A validated decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    pub record: Bytes,
    pub width: u16,
    pub height: u16,
}

/// The parameter-set state of one H.264 stream.
#[derive(Debug, Default)]
pub struct AvcTracker {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    config: Option<AvcConfig>,
}

impl AvcTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The configuration in force, once parameter sets were seen.
    pub fn config(&self) -> Option<&AvcConfig> {
        self.config.as_ref()
    }

    /// Converts one Annex B access unit.
    pub fn push(&mut self, annex_b: &[u8]) -> Result<AvcUnit, AvcError> {
        let mut sample = BytesMut::with_capacity(annex_b.len() + 16);
        let mut keyframe = false;
        let mut params_changed = false;
        let mut count = 0usize;
        for nal in nal_units(annex_b) {
            count += 1;
            if count > MAX_NALS_PER_UNIT {
                return Err(AvcError::TooManyNals);
            }
            let Some(&header) = nal.first() else { continue };
            match header & 0x1f {
                NAL_SPS | NAL_PPS => {
                    if nal.len() > MAX_PARAMETER_SET {
                        return Err(AvcError::ParameterSetTooLong);
                    }
                    let slot = if header & 0x1f == NAL_SPS {
                        &mut self.sps
                    } else {
                        &mut self.pps
                    };
                    if slot.as_deref() != Some(nal) {
                        *slot = Some(nal.to_vec());
                        params_changed = true;
                    }
                }
                NAL_AUD => {}
                t => {
                    keyframe |= t == NAL_IDR;
                    // NAL units of an access unit are far below 4 GiB (str0m caps frames).
                    let len = u32::try_from(nal.len()).map_err(|_| AvcError::TooManyNals)?;
                    sample.put_u32(len);
                    sample.put_slice(nal);
                }
            }
        }
        if count == 0 {
            return Err(AvcError::Empty);
        }
        let mut new_config = None;
        if params_changed {
            if let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
                let config = build_config(sps, pps)?;
                if self.config.as_ref() != Some(&config) {
                    self.config = Some(config.clone());
                    new_config = Some(config);
                }
            }
        }
        if self.config.is_none() && !sample.is_empty() {
            return Err(AvcError::NoParameterSets);
        }
        Ok(AvcUnit {
            sample: sample.freeze(),
            keyframe,
            new_config,
        })
    }
}

/// The avcC record (ISO/IEC 14496-15 5.3.3.1) of one SPS and one PPS,
/// validated by the RTMP ingest's parser (which also reads the picture size).
pub fn build_config(sps: &[u8], pps: &[u8]) -> Result<AvcConfig, AvcError> {
    if sps.len() < 4 {
        return Err(AvcError::BadParameterSets("the SPS is truncated".into()));
    }
    let mut r = Vec::with_capacity(11 + sps.len() + pps.len());
    r.extend_from_slice(&[1, sps[1], sps[2], sps[3], 0xff, 0xe1]);
    // Both are at most MAX_PARAMETER_SET bytes.
    r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    r.extend_from_slice(sps);
    r.push(1);
    r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    r.extend_from_slice(pps);
    let info = vela_ingest::flv::avc::parse_avcc(&r)
        .map_err(|e| AvcError::BadParameterSets(e.to_string()))?;
    Ok(AvcConfig {
        record: Bytes::from(r),
        width: info.width,
        height: info.height,
    })
}

/// The NAL units of an Annex B byte stream (3- or 4-byte start codes;
/// bytes before the first start code are taken as a NAL unit too, since a
/// depacketiser may hand over a single unit without a start code).
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let start = if rest.starts_with(&[0, 0, 0, 1]) {
            4
        } else if rest.starts_with(&[0, 0, 1]) {
            3
        } else {
            0
        };
        let body = &rest[start..];
        let end = find_start_code(body).unwrap_or(body.len());
        let mut nal = &body[..end];
        rest = &body[end..];
        // A 4-byte start code's leading zero belongs to no NAL unit.
        while let Some((&0, head)) = nal.split_last() {
            nal = head;
        }
        if !nal.is_empty() {
            return Some(nal);
        }
    })
}

fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1]).map(|i| {
        // Include a preceding zero of a 4-byte start code in the separator.
        if i > 0 && data[i - 1] == 0 {
            i - 1
        } else {
            i
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// SPS and PPS of an x264 640x360 constrained-baseline stream.
    pub(crate) const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
    ];
    pub(crate) const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

    pub(crate) fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 1, 2, 0, 0, 0, 1, 0x41, 3,
        ];
        let nals: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(
            nals,
            vec![&[0x09, 0xf0][..], &[0x65, 1, 2][..], &[0x41, 3][..]]
        );
        assert_eq!(nal_units(&[0x41, 7]).collect::<Vec<_>>(), vec![&[0x41, 7]]);
        assert_eq!(nal_units(&[0, 0, 1]).count(), 0);
    }

    #[test]
    fn keyframe_with_parameter_sets_gives_a_config_and_a_clean_sample() {
        let mut t = AvcTracker::new();
        let idr: &[u8] = &[0x65, 0x88, 0x84, 0x10];
        let unit = t.push(&annex_b(&[&[0x09, 0xf0], SPS, PPS, idr])).unwrap();
        assert!(unit.keyframe);
        let config = unit.new_config.expect("a configuration");
        assert_eq!((config.width, config.height), (640, 360));
        assert_eq!(&config.record[..4], &[1, 0x42, 0xc0, 0x1e]);
        assert_eq!(&unit.sample[..], &[0, 0, 0, 4, 0x65, 0x88, 0x84, 0x10]);
        // The same parameter sets again: no new configuration.
        let unit = t.push(&annex_b(&[SPS, PPS, idr])).unwrap();
        assert!(unit.new_config.is_none());
        let unit = t.push(&annex_b(&[&[0x41, 0x9a, 0x02]])).unwrap();
        assert!(!unit.keyframe);
        assert_eq!(&unit.sample[..], &[0, 0, 0, 3, 0x41, 0x9a, 0x02]);
    }

    #[test]
    fn pictures_before_parameter_sets_are_refused() {
        let mut t = AvcTracker::new();
        assert_eq!(
            t.push(&annex_b(&[&[0x41, 0x9a]])),
            Err(AvcError::NoParameterSets)
        );
        assert_eq!(t.push(&[]), Err(AvcError::Empty));
        assert!(matches!(
            t.push(&annex_b(&[&[0x67, 0x42], PPS, &[0x65, 1]])),
            Err(AvcError::BadParameterSets(_))
        ));
    }

    #[test]
    fn hostile_input_is_bounded() {
        let mut t = AvcTracker::new();
        let many: Vec<&[u8]> = vec![&[0x41, 1]; MAX_NALS_PER_UNIT + 1];
        assert_eq!(t.push(&annex_b(&many)), Err(AvcError::TooManyNals));
        let mut long_sps = vec![0x67; MAX_PARAMETER_SET + 1];
        long_sps[1] = 0x42;
        assert_eq!(
            t.push(&annex_b(&[&long_sps])),
            Err(AvcError::ParameterSetTooLong)
        );
    }
}
