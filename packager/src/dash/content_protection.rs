//! DASH `ContentProtection` elements from typed protection
//! ([`ContentProtection`]): the scheme and default key id, and each DRM
//! system's signalling (`pssh` boxes and PlayReady Objects in base64).

use crate::protection::{base64, system, ContentProtection, Uuid};
use crate::xml::Element;

/// The namespaces of the protection elements, declared on the `MPD`.
pub(super) const NAMESPACES: &[(&str, &str)] = &[
    ("xmlns:cenc", "urn:mpeg:cenc:2013"),
    ("xmlns:mspr", "urn:microsoft:playready"),
    ("xmlns:dashif", "https://dashif.org/CPS"),
];

const MP4_PROTECTION: &str = "urn:mpeg:dash:mp4protection:2011";

fn scheme_id(system: [u8; 16]) -> String {
    format!("urn:uuid:{}", Uuid(system))
}

fn pssh(data: &[u8]) -> Element {
    Element::new("cenc:pssh").text(base64(data))
}

/// Appends the elements of `cp` to an adaptation set.
pub(super) fn render(cp: &ContentProtection, set: &mut Element) {
    match cp {
        ContentProtection::Mp4Protection {
            scheme,
            default_kid,
        } => set.push(
            Element::new("ContentProtection")
                .attr("schemeIdUri", MP4_PROTECTION)
                .attr("value", scheme.as_str())
                .attr("cenc:default_KID", Uuid(*default_kid)),
        ),
        ContentProtection::ClearKey { laurl, pssh: data } => {
            // DASH-IF's scheme (dash.js) and the W3C system id with its
            // pssh (Shaka and others), each with the licence URL.
            set.push(
                Element::new("ContentProtection")
                    .attr("schemeIdUri", scheme_id(system::DASHIF_CLEAR_KEY))
                    .attr("value", "ClearKey1.0")
                    .child(Element::new("dashif:Laurl").text(laurl)),
            );
            set.push(
                Element::new("ContentProtection")
                    .attr("schemeIdUri", scheme_id(system::CLEAR_KEY))
                    .attr("value", "ClearKey1.0")
                    .child(Element::new("dashif:Laurl").text(laurl))
                    .child(pssh(data)),
            );
        }
        ContentProtection::Widevine { pssh: data } => set.push(
            Element::new("ContentProtection")
                .attr("schemeIdUri", scheme_id(system::WIDEVINE))
                .attr("value", "Widevine")
                .child(pssh(data)),
        ),
        ContentProtection::PlayReady { pssh: data, pro } => set.push(
            Element::new("ContentProtection")
                .attr("schemeIdUri", scheme_id(system::PLAYREADY))
                .attr("value", "MSPR 2.0")
                .child(Element::new("mspr:pro").text(base64(pro)))
                .child(pssh(data)),
        ),
    }
}
