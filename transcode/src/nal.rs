//! Which access units the thumbnailer may keep from the decoder: pictures
//! that no other picture references (H.264 `nal_ref_idc` 0; HEVC sub-layer
//! non-reference pictures in a stream of one temporal layer) are not needed
//! to decode the asked frame, so, unless they are that frame, they are
//! dropped before the decoder (what ffmpeg's `skip_frame=nonref` does, but
//! per frame). Samples are length-prefixed NAL units, as MP4 carries them.
//! Anything unexpected keeps the access unit: skipping is only an
//! optimisation.

/// The codec of the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    H264,
    H265,
}

/// The NAL length size from the decoder configuration record (`avcC` /
/// `hvcC` body), or `None` when non-reference pictures must not be skipped
/// (a malformed record; HEVC with temporal sub-layers, whose
/// non-reference pictures may still be referenced by higher sub-layers).
pub fn length_size(kind: Kind, record: &[u8]) -> Option<usize> {
    match kind {
        // configurationVersion, profile, compatibility, level, then
        // 6 bits reserved + lengthSizeMinusOne.
        Kind::H264 => record.get(4).map(|b| usize::from(b & 3) + 1),
        // Byte 21: constantFrameRate(2) numTemporalLayers(3)
        // temporalIdNested(1) lengthSizeMinusOne(2).
        Kind::H265 => {
            let b = *record.get(21)?;
            ((b >> 3) & 7 == 1).then_some(usize::from(b & 3) + 1)
        }
    }
}

/// Whether the access unit `au` holds pictures and only non-reference ones.
pub fn is_disposable(kind: Kind, length_size: usize, au: &[u8]) -> bool {
    let mut at = 0usize;
    let mut pictures = false;
    while at < au.len() {
        let Some(len) = au.get(at..at + length_size) else {
            return false;
        };
        let len = len.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        at += length_size;
        let Some(nal) = au.get(at..at.saturating_add(len)) else {
            return false;
        };
        at += len;
        let Some(&h) = nal.first() else {
            continue;
        };
        match kind {
            Kind::H264 => {
                // Coded slices (1..=5): nal_ref_idc 0 means unreferenced.
                if (1..=5).contains(&(h & 0x1f)) {
                    if h >> 5 & 3 != 0 {
                        return false;
                    }
                    pictures = true;
                }
            }
            Kind::H265 => {
                // VCL types 0..=31; the even ones up to 14 are the
                // sub-layer non-reference (`_N`) pictures.
                let t = (h >> 1) & 0x3f;
                if t <= 31 {
                    if !(t <= 14 && t % 2 == 0) {
                        return false;
                    }
                    pictures = true;
                }
            }
        }
    }
    pictures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn au(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn h264_non_reference_slices_are_disposable() {
        let sei: &[u8] = &[0x06, 0x05, 0x00];
        let b_nonref: &[u8] = &[0x01, 0x9e, 0x00]; // nal_ref_idc 0, type 1
        let b_ref: &[u8] = &[0x21, 0x9e, 0x00]; // nal_ref_idc 1, type 1
        let idr: &[u8] = &[0x65, 0x88, 0x80];
        assert!(is_disposable(Kind::H264, 4, &au(&[sei, b_nonref])));
        assert!(is_disposable(Kind::H264, 4, &au(&[b_nonref, b_nonref])));
        assert!(!is_disposable(Kind::H264, 4, &au(&[b_nonref, b_ref])));
        assert!(!is_disposable(Kind::H264, 4, &au(&[idr])));
        // No picture at all, or a truncated unit: kept.
        assert!(!is_disposable(Kind::H264, 4, &au(&[sei])));
        let mut cut = au(&[b_nonref]);
        cut.pop();
        assert!(!is_disposable(Kind::H264, 4, &cut));
        assert!(!is_disposable(Kind::H264, 4, &[0, 0]));
    }

    #[test]
    fn h265_sub_layer_non_reference_pictures_are_disposable() {
        let trail_n: &[u8] = &[0x00, 0x01, 0xaa]; // type 0, tid+1 = 1
        let trail_r: &[u8] = &[0x02, 0x01, 0xaa]; // type 1
        let rasl_n: &[u8] = &[0x10, 0x01, 0xaa]; // type 8
        let prefix_sei: &[u8] = &[0x4e, 0x01, 0x05];
        let idr: &[u8] = &[0x26, 0x01, 0xaf]; // type 19
        assert!(is_disposable(Kind::H265, 4, &au(&[prefix_sei, trail_n])));
        assert!(is_disposable(Kind::H265, 4, &au(&[rasl_n])));
        assert!(!is_disposable(Kind::H265, 4, &au(&[trail_r])));
        assert!(!is_disposable(Kind::H265, 4, &au(&[idr])));
    }

    #[test]
    fn length_size_from_the_records() {
        assert_eq!(
            length_size(Kind::H264, &[1, 0x64, 0, 0x1f, 0xff, 0xe1]),
            Some(4)
        );
        assert_eq!(length_size(Kind::H264, &[1, 0x64, 0, 0x1f, 0xfd]), Some(2));
        assert_eq!(length_size(Kind::H264, &[1, 0x64]), None);
        let mut hvcc = [0u8; 23];
        // numTemporalLayers << 3 | temporalIdNested << 2 | lengthSizeMinusOne
        hvcc[21] = (1 << 3) | (1 << 2) | 3; // one layer, 4-byte lengths
        assert_eq!(length_size(Kind::H265, &hvcc), Some(4));
        hvcc[21] = (2 << 3) | 3; // two temporal layers: no skipping
        assert_eq!(length_size(Kind::H265, &hvcc), None);
        assert_eq!(length_size(Kind::H265, &hvcc[..10]), None);
    }
}
