//! Protection System Specific Header boxes and the manifest values made
//! from them.
//!
//! * W3C ClearKey / "common" (`1077efec-c0b2-4d02-ace3-3c1e52e2fb4b`): a
//!   version 1 `pssh` whose KID list is all a CDM needs; no data.
//! * Widevine (`edef8ba9-79d6-4ace-a3c8-27dcd51d21ed`): version 0, data a
//!   `WidevinePsshData` protobuf, hand-encoded since only two fields are
//!   used: `key_ids` (field 2, bytes, repeated) and `protection_scheme`
//!   (field 9, uint32, the scheme's fourcc as a big-endian integer).
//! * PlayReady (`9a04f079-9840-4286-ab92-e65be0885f95`): version 0, data a
//!   PlayReady Object: a little-endian length and record count, then one
//!   Rights Management Header record (type 1) holding a `WRMHEADER` v4.3.0.0
//!   in UTF-16LE. PlayReady writes KIDs as GUIDs, whose first three fields
//!   are little-endian: [`playready_guid_bytes`] swaps them.
//!
//! Version 0 for the DRM systems because every CDM parses it; version 1
//! for ClearKey because its KIDs are the point.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::Scheme;

/// The DRM systems Vela writes signalling for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemId {
    ClearKey,
    Widevine,
    PlayReady,
}

impl SystemId {
    pub const ALL: [SystemId; 3] = [SystemId::ClearKey, SystemId::Widevine, SystemId::PlayReady];

    pub fn uuid(self) -> [u8; 16] {
        match self {
            SystemId::ClearKey => [
                0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2,
                0xfb, 0x4b,
            ],
            SystemId::Widevine => [
                0xed, 0xef, 0x8b, 0xa9, 0x79, 0xd6, 0x4a, 0xce, 0xa3, 0xc8, 0x27, 0xdc, 0xd5, 0x1d,
                0x21, 0xed,
            ],
            SystemId::PlayReady => [
                0x9a, 0x04, 0xf0, 0x79, 0x98, 0x40, 0x42, 0x86, 0xab, 0x92, 0xe6, 0x5b, 0xe0, 0x88,
                0x5f, 0x95,
            ],
        }
    }

    /// The DASH `ContentProtection@schemeIdUri`, e.g. `urn:uuid:edef8ba9-...`.
    pub fn scheme_id_uri(self) -> String {
        format!("urn:uuid:{}", uuid_string(&self.uuid()))
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower case: the form of
/// `cenc:default_KID` and of system ids in `schemeIdUri`.
pub fn uuid_string(id: &[u8; 16]) -> String {
    let h: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A `pssh` box with the given version, KIDs (version 1 only) and data.
pub fn raw_pssh(system: [u8; 16], kids: Option<&[[u8; 16]]>, data: &[u8]) -> Vec<u8> {
    let kid_bytes = kids.map_or(0, |k| 4 + 16 * k.len());
    let size = 8 + 4 + 16 + kid_bytes + 4 + data.len();
    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(&(size as u32).to_be_bytes());
    b.extend_from_slice(b"pssh");
    b.extend_from_slice(&[u8::from(kids.is_some()), 0, 0, 0]);
    b.extend_from_slice(&system);
    if let Some(kids) = kids {
        b.extend_from_slice(&(kids.len() as u32).to_be_bytes());
        for k in kids {
            b.extend_from_slice(k);
        }
    }
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// The `pssh` box Vela writes for `system`.
pub fn pssh_box(system: SystemId, scheme: Scheme, kids: &[[u8; 16]]) -> Vec<u8> {
    match system {
        SystemId::ClearKey => raw_pssh(system.uuid(), Some(kids), &[]),
        SystemId::Widevine => raw_pssh(system.uuid(), None, &widevine_data(scheme, kids)),
        SystemId::PlayReady => raw_pssh(system.uuid(), None, &playready_object(scheme, kids, None)),
    }
}

/// Base64 of [`pssh_box`]: the text of a DASH `<cenc:pssh>` element.
pub fn pssh_base64(system: SystemId, scheme: Scheme, kids: &[[u8; 16]]) -> String {
    STANDARD.encode(pssh_box(system, scheme, kids))
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The `WidevinePsshData` protobuf: `key_ids` and `protection_scheme`.
pub fn widevine_data(scheme: Scheme, kids: &[[u8; 16]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(kids.len() * 18 + 6);
    for k in kids {
        out.push(0x12); // field 2, length-delimited
        out.push(16);
        out.extend_from_slice(k);
    }
    out.push(0x48); // field 9, varint
    varint(&mut out, u64::from(u32::from_be_bytes(scheme.fourcc())));
    out
}

/// A KID in the byte order of a Microsoft GUID (Data1..3 little-endian).
pub fn playready_guid_bytes(kid: &[u8; 16]) -> [u8; 16] {
    let mut g = *kid;
    g[0..4].reverse();
    g[4..6].reverse();
    g[6..8].reverse();
    g
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The `WRMHEADER` v4.3.0.0 XML (as a Rust string, before UTF-16 encoding).
pub fn playready_wrmheader(scheme: Scheme, kids: &[[u8; 16]], la_url: Option<&str>) -> String {
    let alg = match scheme {
        Scheme::Cenc => "AESCTR",
        Scheme::Cbcs => "AESCBC",
    };
    let mut x = String::from(
        "<WRMHEADER xmlns=\"http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader\" version=\"4.3.0.0\"><DATA><PROTECTINFO><KIDS>",
    );
    for k in kids {
        x.push_str(&format!(
            "<KID ALGID=\"{alg}\" VALUE=\"{}\"></KID>",
            STANDARD.encode(playready_guid_bytes(k))
        ));
    }
    x.push_str("</KIDS></PROTECTINFO>");
    if let Some(url) = la_url {
        x.push_str(&format!("<LA_URL>{}</LA_URL>", xml_escape(url)));
    }
    x.push_str("</DATA></WRMHEADER>");
    x
}

/// The PlayReady Object (PRO): the `pssh` data and the `mspr:pro` value.
pub fn playready_object(scheme: Scheme, kids: &[[u8; 16]], la_url: Option<&str>) -> Vec<u8> {
    let xml: Vec<u8> = playready_wrmheader(scheme, kids, la_url)
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let total = 4 + 2 + 2 + 2 + xml.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // record count
    out.extend_from_slice(&1u16.to_le_bytes()); // type: rights management header
    out.extend_from_slice(&(xml.len() as u16).to_le_bytes());
    out.extend_from_slice(&xml);
    out
}

/// Base64 of the PRO: the text of a DASH `<mspr:pro>` element.
pub fn playready_pro_base64(scheme: Scheme, kids: &[[u8; 16]], la_url: Option<&str>) -> String {
    STANDARD.encode(playready_object(scheme, kids, la_url))
}

/// Smooth Streaming's `<ProtectionHeader SystemID="..">base64 PRO</ProtectionHeader>`:
/// returns (SystemID, value). MSS is 'cenc' only.
pub fn smooth_protection_header(kids: &[[u8; 16]], la_url: Option<&str>) -> (String, String) {
    (
        uuid_string(&SystemId::PlayReady.uuid()).to_uppercase(),
        playready_pro_base64(Scheme::Cenc, kids, la_url),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KID: [u8; 16] = [
        0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0,
        0x01,
    ];

    #[test]
    fn uuid_strings() {
        assert_eq!(uuid_string(&KID), "10203040-5060-7080-90a0-b0c0d0e0f001");
        assert_eq!(
            SystemId::Widevine.scheme_id_uri(),
            "urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
        );
        assert_eq!(
            smooth_protection_header(&[KID], None).0,
            "9A04F079-9840-4286-AB92-E65BE0885F95"
        );
    }

    #[test]
    fn clearkey_pssh_is_version_1_with_kids() {
        let b = pssh_box(SystemId::ClearKey, Scheme::Cenc, &[KID]);
        assert_eq!(b.len(), 8 + 4 + 16 + 4 + 16 + 4);
        assert_eq!(&b[0..4], &(b.len() as u32).to_be_bytes());
        assert_eq!(&b[4..8], b"pssh");
        assert_eq!(b[8], 1);
        assert_eq!(&b[28..32], &1u32.to_be_bytes());
        assert_eq!(&b[32..48], &KID);
        assert_eq!(&b[48..52], &0u32.to_be_bytes());
    }

    #[test]
    fn widevine_protobuf_fields() {
        let d = widevine_data(Scheme::Cenc, &[KID]);
        assert_eq!(&d[..2], &[0x12, 16]);
        assert_eq!(&d[2..18], &KID);
        // 0x63656e63 ('cenc') as a varint: 5 bytes.
        assert_eq!(&d[18..], &[0x48, 0xe3, 0xdc, 0x95, 0x9b, 0x06]);
    }

    #[test]
    fn playready_object_layout_and_guid_order() {
        assert_eq!(
            playready_guid_bytes(&KID),
            [
                0x40, 0x30, 0x20, 0x10, 0x60, 0x50, 0x80, 0x70, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0,
                0xf0, 0x01
            ]
        );
        let pro = playready_object(Scheme::Cenc, &[KID], Some("https://x/?a&b"));
        assert_eq!(
            u32::from_le_bytes(pro[0..4].try_into().unwrap()) as usize,
            pro.len()
        );
        assert_eq!(&pro[4..8], &[1, 0, 1, 0]);
        let xml_len = u16::from_le_bytes([pro[8], pro[9]]) as usize;
        assert_eq!(xml_len, pro.len() - 10);
        let units: Vec<u16> = pro[10..]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let xml = String::from_utf16(&units).unwrap();
        assert!(xml.contains("version=\"4.3.0.0\""));
        assert!(xml.contains("ALGID=\"AESCTR\" VALUE=\"QDAgEGBQgHCQoLDA0ODwAQ==\""));
        assert!(xml.contains("<LA_URL>https://x/?a&amp;b</LA_URL>"));
    }
}
