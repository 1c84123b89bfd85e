//! AAC: the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), as far as a
//! track needs it: object type, sampling rate, channel configuration.
//!
//! HE-AAC signalled implicitly (an AAC-LC config whose stream carries SBR) is
//! reported as the ASC says: the core rate. With explicit signalling (object
//! type 5 or 29) the ASC's first rate is also the core rate, which is the rate
//! the 1024-sample frames run at, so it is the right timescale either way.

use super::bits::BitReader;
use super::FlvError;

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    pub object_type: u8,
    pub sample_rate: u32,
    /// 0 means "defined in a program config element": the caller falls back to the FLV header.
    pub channel_config: u8,
}

pub fn parse_asc(asc: &[u8]) -> Result<AudioSpecificConfig, FlvError> {
    if asc.len() < 2 {
        return Err(FlvError::Truncated {
            what: "AudioSpecificConfig",
            need: 2,
            have: asc.len(),
        });
    }
    let mut r = BitReader::new(asc, "AudioSpecificConfig");
    let mut object_type = r.bits(5)?;
    if object_type == 31 {
        object_type = 32 + r.bits(6)?;
    }
    if object_type == 0 {
        return Err(FlvError::Bitstream {
            what: "AudioSpecificConfig",
            reason: "audio object type 0",
        });
    }
    let index = r.bits(4)?;
    let sample_rate = if index == 0x0f {
        r.bits(24)?
    } else {
        *SAMPLE_RATES
            .get(index as usize)
            .ok_or(FlvError::Bitstream {
                what: "AudioSpecificConfig",
                reason: "reserved sampling frequency index",
            })?
    };
    if sample_rate == 0 {
        return Err(FlvError::Bitstream {
            what: "AudioSpecificConfig",
            reason: "sampling frequency 0",
        });
    }
    let channel_config = r.bits(4)? as u8;
    Ok(AudioSpecificConfig {
        object_type: object_type as u8,
        sample_rate,
        channel_config,
    })
}

/// Channels for a channelConfiguration (ISO/IEC 14496-3 Table 1.19).
pub fn channels(channel_config: u8) -> Option<u16> {
    match channel_config {
        1..=6 => Some(u16::from(channel_config)),
        7 => Some(8),
        11 => Some(7),
        12 | 14 => Some(8),
        13 => Some(24),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_44100_stereo() {
        assert_eq!(
            parse_asc(&[0x12, 0x10]).unwrap(),
            AudioSpecificConfig {
                object_type: 2,
                sample_rate: 44100,
                channel_config: 2
            }
        );
    }

    #[test]
    fn explicit_rate_and_escaped_object_type() {
        // AOT 2, index 15, rate 22050 (0x005622), channel config 1.
        let asc = [
            0b0001_0111,
            0b1000_0000,
            0b0010_1011,
            0b0001_0001,
            0b0000_1000,
        ];
        assert_eq!(parse_asc(&asc).unwrap().sample_rate, 22050);
        assert_eq!(parse_asc(&asc).unwrap().channel_config, 1);
        // AOT 31 escape -> 32 + 10 = 42 (USAC), 48 kHz, stereo.
        let asc = [0b1111_1001, 0b0100_0110, 0b0100_0000];
        assert_eq!(parse_asc(&asc).unwrap().object_type, 42);
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(parse_asc(&[0x12]).is_err());
        assert!(parse_asc(&[0x00, 0x00]).is_err());
        assert!(parse_asc(&[0x16, 0x90]).is_err()); // index 13 reserved
    }
}
