//! Typed protection signalling: what a manifest says about encrypted
//! media, as values (schemes, key ids, DRM systems' `pssh` boxes and
//! headers as bytes), never as preformatted XML or attribute strings. The
//! origin makes them from its keys; the DASH and Smooth writers render them
//! (UUID text, base64, XML) and nothing else formats them.

use std::collections::BTreeMap;
use std::fmt;

use vela_media::MediaKind;

/// A common-encryption scheme (ISO/IEC 23001-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CencScheme {
    Cenc,
    Cbcs,
}

impl CencScheme {
    /// The four-character scheme type, also the encrypted files' tag
    /// (`seg-N.cenc.m4s`).
    pub fn as_str(self) -> &'static str {
        match self {
            CencScheme::Cenc => "cenc",
            CencScheme::Cbcs => "cbcs",
        }
    }
}

/// DRM system ids (the `pssh` SystemID and the DASH `schemeIdUri`).
pub mod system {
    /// W3C Common (Clear Key) system.
    pub const CLEAR_KEY: [u8; 16] = [
        0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb,
        0x4b,
    ];
    /// DASH-IF's Clear Key scheme (the one dash.js looks for).
    pub const DASHIF_CLEAR_KEY: [u8; 16] = [
        0xe2, 0x71, 0x9d, 0x58, 0xa9, 0x85, 0xb3, 0xc9, 0x78, 0x1a, 0xb0, 0x30, 0xaf, 0x78, 0xd3,
        0x0e,
    ];
    pub const WIDEVINE: [u8; 16] = [
        0xed, 0xef, 0x8b, 0xa9, 0x79, 0xd6, 0x4a, 0xce, 0xa3, 0xc8, 0x27, 0xdc, 0xd5, 0x1d, 0x21,
        0xed,
    ];
    pub const PLAYREADY: [u8; 16] = [
        0x9a, 0x04, 0xf0, 0x79, 0x98, 0x40, 0x42, 0x86, 0xab, 0x92, 0xe6, 0x5b, 0xe0, 0x88, 0x5f,
        0x95,
    ];
}

/// One way a player may learn how to decrypt a track (a DASH
/// `ContentProtection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentProtection {
    /// The scheme and the default key id (`urn:mpeg:dash:mp4protection:2011`).
    Mp4Protection {
        scheme: CencScheme,
        default_kid: [u8; 16],
    },
    /// Clear Key with its licence URL and its `pssh` box (signalled under
    /// both DASH-IF's scheme and the W3C system id).
    ClearKey { laurl: String, pssh: Vec<u8> },
    /// Widevine with its `pssh` box.
    Widevine { pssh: Vec<u8> },
    /// PlayReady with its `pssh` box and PlayReady Object.
    PlayReady { pssh: Vec<u8>, pro: Vec<u8> },
}

/// The signalling of one key period (or of a stream whose keys do not
/// rotate), per track kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPeriod {
    pub video: Vec<ContentProtection>,
    pub audio: Vec<ContentProtection>,
}

impl KeyPeriod {
    pub fn of(&self, kind: MediaKind) -> &[ContentProtection] {
        match kind {
            MediaKind::Video => &self.video,
            MediaKind::Audio => &self.audio,
        }
    }
}

/// Common encryption of a stream as a manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonEncryption {
    /// The scheme, which is also the encrypted files' tag
    /// (`seg-N.TAG.m4s`, `init-V.TAG.mp4`).
    pub scheme: CencScheme,
    /// The signalling of the stream's keys (key period of the window's
    /// first segment).
    pub keys: KeyPeriod,
    /// Key rotation, if keys change every few segments.
    pub rotation: Option<KeyRotation>,
}

/// Keys that change every `every` segments, with the signalling of each key
/// period a manifest may list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRotation {
    pub every: u64,
    pub periods: BTreeMap<u64, KeyPeriod>,
}

/// A 16-byte id as a UUID: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower
/// case (`{:#}`: upper case, as Smooth writes system ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uuid(pub [u8; 16]);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            if f.alternate() {
                write!(f, "{b:02X}")?;
            } else {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Standard base64 with padding, as `cenc:pssh`, `mspr:pro` and Smooth's
/// `ProtectionHeader` carry binary data.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_render_in_both_cases() {
        let id = Uuid(system::PLAYREADY);
        assert_eq!(id.to_string(), "9a04f079-9840-4286-ab92-e65be0885f95");
        assert_eq!(format!("{id:#}"), "9A04F079-9840-4286-AB92-E65BE0885F95");
    }
}
