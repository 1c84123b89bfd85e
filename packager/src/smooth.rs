//! Microsoft Smooth Streaming (MS-SSTR) for live streams: the client
//! manifest and fragments re-boxed on the fly from the CMAF segments.
//!
//! There is no second ingest path: a Smooth fragment is one CMAF segment
//! read back into its samples ([`boxes::read_fragment`], zero-copy) and
//! written as one `moof`+`mdat` on Smooth's 10 MHz timeline, with the `tfxd`
//! box (the fragment's absolute time and duration) and the `tfrf` box (the
//! fragments that follow it, so players extend their timeline without
//! re-reading the manifest). As IIS does, a live manifest holds back its
//! newest [`LOOKAHEAD`] fragments: players learn of them from `tfrf`.
//!
//! URLs, relative to `/live/STREAM/Manifest`:
//! `QualityLevels({bitrate})/Fragments(video={start time})`, and `audio=`.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes};
use vela_media::{AudioCodec, CodecConfig, MediaKind, VideoCodec};

use crate::boxes::{self, BoxWriter, Sample};
use crate::presentation::{Presentation, Rendition, Segment};
use crate::protection::{base64, Uuid};
use crate::xml::Element;

/// Smooth Streaming's clock: 10 MHz.
pub const TIMESCALE: u64 = 10_000_000;
/// Fragments announced through `tfrf` rather than the manifest.
pub const LOOKAHEAD: usize = 2;

const TFXD: [u8; 16] = [
    0x6d, 0x1d, 0x9b, 0x05, 0x42, 0xd5, 0x44, 0xe6, 0x80, 0xe2, 0x14, 0x1d, 0xaf, 0xf7, 0x57, 0xb2,
];
const TFRF: [u8; 16] = [
    0xd4, 0x80, 0x7e, 0xf2, 0xca, 0x39, 0x46, 0x95, 0x8e, 0x54, 0x26, 0xcb, 0x9e, 0x46, 0xa7, 0x9f,
];

/// A time in a track's timescale on the 10 MHz clock.
fn to_hns(t: i64, timescale: u32) -> u64 {
    (i128::from(t.max(0)) * i128::from(TIMESCALE) / i128::from(timescale)) as u64
}

/// The renditions Smooth carries: the first H.264 video and the first AAC
/// audio rendition (one stream of each kind, named `video` and `audio`).
fn smooth_renditions(p: &Presentation) -> impl Iterator<Item = &Rendition> {
    [MediaKind::Video, MediaKind::Audio]
        .into_iter()
        .filter_map(|kind| rendition_for(p, kind))
}

fn rendition_for(p: &Presentation, kind: MediaKind) -> Option<&Rendition> {
    p.renditions().iter().find(|r| {
        r.track.kind() == kind
            && matches!(
                r.track.config,
                CodecConfig::Video {
                    codec: VideoCodec::H264,
                    ..
                } | CodecConfig::Audio {
                    codec: AudioCodec::Aac,
                    ..
                }
            )
    })
}

/// `CodecPrivateData` for H.264: Annex B SPS and PPS from the avcC record.
fn avc_codec_private_data(record: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut at = 5;
    let n_sps = usize::from(*record.get(at)? & 0x1f);
    at += 1;
    let read_sets = |count: usize, at: &mut usize, out: &mut String| -> Option<()> {
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([
                *record.get(*at)?,
                *record.get(*at + 1)?,
            ]));
            let nal = record.get(*at + 2..*at + 2 + len)?;
            out.push_str("00000001");
            for b in nal {
                let _ = write!(out, "{b:02X}");
            }
            *at += 2 + len;
        }
        Some(())
    };
    read_sets(n_sps, &mut at, &mut out)?;
    let n_pps = usize::from(*record.get(at)?);
    at += 1;
    read_sets(n_pps, &mut at, &mut out)?;
    Some(out)
}

fn hex(data: &[u8]) -> String {
    data.iter()
        .fold(String::with_capacity(data.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02X}");
            s
        })
}

/// Segments a manifest lists: while live, all complete ones but the newest
/// [`LOOKAHEAD`]; once ended, all.
fn listed(r: &Rendition, ended: bool) -> impl Iterator<Item = &Segment> {
    let hold = if ended { 0 } else { LOOKAHEAD };
    let n = r.segments.len().saturating_sub(hold);
    r.segments.iter().take(n)
}

/// The client manifest, or `None` before there is anything to list.
pub fn client_manifest(p: &Presentation) -> Option<String> {
    client_manifest_with(p, None, "")
}

/// A Smooth `ProtectionHeader`: the DRM system and its header, e.g.
/// PlayReady's system id and its PlayReady Object (rendered in base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionHeader {
    pub system_id: [u8; 16],
    pub header: Vec<u8>,
}

/// [`client_manifest`] with a `Protection` element for protected fragments,
/// and fragment URLs under `prefix` (a relative path ending in `/`, or "";
/// e.g. the playback token's path).
pub fn client_manifest_with(
    p: &Presentation,
    protection: Option<&ProtectionHeader>,
    prefix: &str,
) -> Option<String> {
    let ended = p.is_ended();
    let lead = smooth_renditions(p).next()?;
    // Nothing listed yet: no manifest.
    listed(lead, ended).next()?;
    let mut root = Element::new("SmoothStreamingMedia")
        .attr("MajorVersion", 2)
        .attr("MinorVersion", 2)
        .attr("TimeScale", TIMESCALE);
    if ended {
        let duration = smooth_renditions(p)
            .filter_map(|r| {
                Some(
                    to_hns(r.segments.back()?.end(), r.timescale())
                        - to_hns(r.segments.front()?.start, r.timescale()),
                )
            })
            .max()
            .unwrap_or(0);
        root.set("Duration", duration);
    } else {
        let window = (p.config().dvr_window * TIMESCALE as f64) as u64;
        root.set("Duration", 0);
        root.set("IsLive", "TRUE");
        root.set("LookAheadFragmentCount", LOOKAHEAD);
        root.set("DVRWindowLength", window);
        root.set("CanSeek", "TRUE");
        root.set("CanPause", "TRUE");
    }
    root = root.children(smooth_renditions(p).map(|r| stream_index(r, ended, prefix)));
    if let Some(h) = protection {
        root.push(
            Element::new("Protection").child(
                Element::new("ProtectionHeader")
                    .attr("SystemID", format!("{:#}", Uuid(h.system_id)))
                    .text(base64(&h.header)),
            ),
        );
    }
    Some(root.to_document())
}

fn stream_index(r: &Rendition, ended: bool, prefix: &str) -> Element {
    let ts = r.timescale();
    let segs: Vec<&Segment> = listed(r, ended).collect();
    let bitrate = r.bandwidth().max(1);
    let mut el = match &r.track.config {
        CodecConfig::Video {
            width,
            height,
            record,
            ..
        } => {
            let cpd = avc_codec_private_data(record).unwrap_or_default();
            Element::new("StreamIndex")
                .attr("Type", "video")
                .attr("Name", "video")
                .attr("Chunks", segs.len())
                .attr("QualityLevels", 1)
                .attr(
                    "Url",
                    format!("{prefix}QualityLevels({{bitrate}})/Fragments(video={{start time}})"),
                )
                .attr("MaxWidth", width)
                .attr("MaxHeight", height)
                .attr("DisplayWidth", width)
                .attr("DisplayHeight", height)
                .child(
                    Element::new("QualityLevel")
                        .attr("Index", 0)
                        .attr("Bitrate", bitrate)
                        .attr("FourCC", "H264")
                        .attr("MaxWidth", width)
                        .attr("MaxHeight", height)
                        .attr("CodecPrivateData", cpd),
                )
        }
        CodecConfig::Audio {
            sample_rate,
            channels,
            specific_config,
            ..
        } => Element::new("StreamIndex")
            .attr("Type", "audio")
            .attr("Name", "audio")
            .attr("Language", r.language.as_deref().unwrap_or("und"))
            .attr("Chunks", segs.len())
            .attr("QualityLevels", 1)
            .attr(
                "Url",
                format!("{prefix}QualityLevels({{bitrate}})/Fragments(audio={{start time}})"),
            )
            .child(
                Element::new("QualityLevel")
                    .attr("Index", 0)
                    .attr("Bitrate", bitrate)
                    .attr("FourCC", "AACL")
                    .attr("SamplingRate", sample_rate)
                    .attr("Channels", channels)
                    .attr("BitsPerSample", 16)
                    .attr("PacketSize", 4 * channels)
                    .attr("AudioTag", 255)
                    .attr("CodecPrivateData", hex(specific_config)),
            ),
    };
    // Start and end both rounded on the 10 MHz clock, so t + d is exactly
    // the next t and fragment requests name times we can find again.
    let mut expected: Option<u64> = None;
    for s in segs {
        let t = to_hns(s.start, ts);
        let d = to_hns(s.end(), ts) - t;
        el.push(
            Element::new("c")
                .attr_opt("t", (expected != Some(t)).then_some(t))
                .attr("d", d),
        );
        expected = Some(t + d);
    }
    el
}

/// What a fragment URL names: `Fragments(video=123)`.
pub fn parse_fragment_name(name: &str) -> Option<(MediaKind, u64)> {
    let inner = name.strip_prefix("Fragments(")?.strip_suffix(')')?;
    let (kind, t) = inner.split_once('=')?;
    let kind = match kind {
        "video" => MediaKind::Video,
        "audio" => MediaKind::Audio,
        _ => return None,
    };
    Some((kind, t.parse().ok()?))
}

/// Why a fragment cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmoothError {
    #[error("no such fragment")]
    NotFound,
    #[error("stored segment is unreadable: {0}")]
    Corrupt(#[from] boxes::FragmentError),
}

/// The rendition and segment behind the fragment at `t` (10 MHz) of the
/// `kind` stream.
pub fn fragment_source(
    p: &Presentation,
    kind: MediaKind,
    t: u64,
) -> Option<(&Rendition, &Segment)> {
    let r = rendition_for(p, kind)?;
    let ts = r.timescale();
    let seg = r.segments.iter().find(|s| to_hns(s.start, ts) == t)?;
    Some((r, seg))
}

/// The samples of a segment's CMAF parts (zero-copy).
pub fn samples_of_parts<'a>(
    parts: impl IntoIterator<Item = &'a Bytes>,
) -> Result<Vec<Sample>, SmoothError> {
    let mut samples: Vec<Sample> = Vec::new();
    for part in parts {
        samples.extend(boxes::read_fragment(part)?.samples);
    }
    Ok(samples)
}

/// The Smooth fragment of segment `seg` of `r`, from its samples (timed in
/// the rendition's timescale, in decode order).
pub fn fragment(r: &Rendition, seg: &Segment, mut samples: Vec<Sample>) -> Bytes {
    let ts = r.timescale();
    let t = to_hns(seg.start, ts);
    // Rescale durations to 10 MHz without drift: each sample ends where its
    // rounded end on the source clock says.
    let mut at = seg.start;
    let mut prev_end = to_hns(at, ts);
    for s in &mut samples {
        at += i64::from(s.duration);
        let end = to_hns(at, ts);
        s.duration = u32::try_from(end - prev_end).unwrap_or(u32::MAX);
        s.cts_offset =
            i32::try_from(to_hns(i64::from(s.cts_offset.max(0)), ts)).unwrap_or(i32::MAX);
        prev_end = end;
    }
    let next: Vec<(u64, u64)> = r
        .segments
        .iter()
        .filter(|n| n.msn > seg.msn)
        .take(LOOKAHEAD)
        .map(|n| {
            (
                to_hns(n.start, ts),
                to_hns(n.end(), ts) - to_hns(n.start, ts),
            )
        })
        .collect();
    let duration = to_hns(seg.end(), ts) - t;
    write_fragment(seg.msn as u32 + 1, r.track.id, t, duration, &next, &samples)
}

fn write_fragment(
    seq: u32,
    track_id: u32,
    t: u64,
    duration: u64,
    next: &[(u64, u64)],
    samples: &[Sample],
) -> Bytes {
    // The CMAF writer lays out moof+mdat; Smooth adds its two uuid boxes to
    // the traf, so write the traf children again here with them.
    let payload: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut w = BoxWriter::with_capacity(payload + 256 + samples.len() * 16);
    let has_cts = samples.iter().any(|s| s.cts_offset != 0);
    w.begin(b"moof");
    w.begin_full(b"mfhd", 0, 0);
    w.put_u32(seq);
    w.end();
    w.begin(b"traf");
    w.begin_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
    w.put_u32(track_id);
    w.end();
    let mut trun_flags = 0x1 | 0x100 | 0x200 | 0x400;
    if has_cts {
        trun_flags |= 0x800;
    }
    w.begin_full(b"trun", 0, trun_flags);
    w.put_u32(samples.len() as u32);
    let data_offset_at = w.position();
    w.put_u32(0);
    for s in samples {
        w.put_u32(s.duration);
        w.put_u32(s.data.len() as u32);
        w.put_u32(if s.keyframe {
            boxes::SYNC_SAMPLE_FLAGS
        } else {
            boxes::NON_SYNC_SAMPLE_FLAGS
        });
        if has_cts {
            w.put_u32(s.cts_offset as u32);
        }
    }
    w.end();
    w.begin(b"uuid");
    w.put_slice(&TFXD);
    w.put_u32(0x0100_0000); // version 1, flags 0
    w.put_u64(t);
    w.put_u64(duration);
    w.end();
    w.begin(b"uuid");
    w.put_slice(&TFRF);
    w.put_u32(0x0100_0000);
    w.put_u8(next.len() as u8);
    for (nt, nd) in next {
        w.put_u64(*nt);
        w.put_u64(*nd);
    }
    w.end();
    w.end(); // traf
    w.end(); // moof
    let moof_len = w.position();
    w.patch_u32(data_offset_at, (moof_len + 8) as u32);
    w.begin(b"mdat");
    for s in samples {
        w.put_slice(&s.data);
    }
    w.end();
    w.finish().freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LivePackager;

    /// The Smooth fragment at `t` as the origin builds it from live parts.
    fn live_fragment(p: &crate::LivePackager, kind: MediaKind, t: u64) -> Bytes {
        let pres = p.presentation();
        let (r, seg) = fragment_source(&pres, kind, t).unwrap();
        let parts = p.rendition(&r.id).unwrap().segment_data(seg.msn).unwrap();
        fragment(r, seg, samples_of_parts(parts).unwrap())
    }
    use crate::live::tests::{audio_track, feed};
    use crate::PackagerConfig;
    use quick_xml::events::Event;
    use std::sync::Arc;
    use vela_media::{MediaEvent, Track};

    fn h264_track() -> Track {
        let mut t = crate::live::tests::video_track();
        if let CodecConfig::Video { record, .. } = &mut t.config {
            // avcC with one 4-byte SPS and one 2-byte PPS.
            *record = Bytes::from_static(&[
                1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1e, 1, 0, 2, 0x68, 0xeb,
            ]);
        }
        t
    }

    fn running() -> LivePackager {
        let mut p = LivePackager::new(PackagerConfig::default());
        p.push(
            MediaEvent::Tracks(Arc::new(vec![h264_track(), audio_track(2)])),
            0,
        );
        feed(&mut p, 0, 12.2, 30, 0);
        p
    }

    fn c_entries(xml: &str, kind: &str) -> Vec<(u64, u64)> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut out = Vec::new();
        let mut current = String::new();
        let mut next_t = 0;
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) | Event::Empty(e) => {
                    let attr = |n: &str| {
                        e.attributes()
                            .flatten()
                            .find(|a| a.key.as_ref() == n.as_bytes())
                            .map(|a| String::from_utf8(a.value.to_vec()).unwrap())
                    };
                    match e.name().as_ref() {
                        b"StreamIndex" => current = attr("Type").unwrap(),
                        b"c" if current == kind => {
                            let t = attr("t").map(|t| t.parse().unwrap()).unwrap_or(next_t);
                            let d: u64 = attr("d").unwrap().parse().unwrap();
                            out.push((t, d));
                            next_t = t + d;
                        }
                        _ => {}
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    #[test]
    fn live_manifest_lists_fragments_and_holds_back_lookahead() {
        let p = running();
        let xml = client_manifest(&p.presentation()).unwrap();
        assert!(xml.contains("IsLive=\"TRUE\""));
        assert!(
            xml.contains("CodecPrivateData=\"000000016764001E0000000168EB\""),
            "{xml}"
        );
        assert!(xml.contains("FourCC=\"AACL\""));
        let video = c_entries(&xml, "video");
        let complete = p.rendition("v1").unwrap().segments.len();
        assert_eq!(video.len(), complete - LOOKAHEAD);
        assert_eq!(video[0], (0, 20_000_000));
    }

    #[test]
    fn every_listed_fragment_is_served_with_tfxd_matching_the_manifest() {
        let p = running();
        let xml = client_manifest(&p.presentation()).unwrap();
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let name = if kind == MediaKind::Video {
                "video"
            } else {
                "audio"
            };
            for (t, d) in c_entries(&xml, name) {
                let frag = live_fragment(&p, kind, t);
                let at = frag.windows(16).position(|w| w == TFXD).expect("tfxd");
                let abs = u64::from_be_bytes(frag[at + 20..at + 28].try_into().unwrap());
                let dur = u64::from_be_bytes(frag[at + 28..at + 36].try_into().unwrap());
                assert_eq!((abs, dur), (t, d));
                // the sample durations add up to the fragment duration
                let back = boxes::read_fragment(&frag).unwrap_err();
                assert_eq!(
                    back,
                    boxes::FragmentError::Missing("traf child"),
                    "no tfdt in Smooth fragments"
                );
                let trun_at = frag.windows(4).position(|w| w == b"trun").unwrap() - 4;
                let count = u32::from_be_bytes(frag[trun_at + 12..trun_at + 16].try_into().unwrap())
                    as usize;
                let stride = if frag[trun_at + 10] & 0x08 != 0 {
                    16
                } else {
                    12
                };
                let total: u64 = (0..count)
                    .map(|i| {
                        let o = trun_at + 20 + i * stride;
                        u64::from(u32::from_be_bytes(frag[o..o + 4].try_into().unwrap()))
                    })
                    .sum();
                assert_eq!(total, d, "{name} fragment at {t}");
            }
        }
    }

    #[test]
    fn tfrf_announces_the_held_back_fragments() {
        let p = running();
        let xml = client_manifest(&p.presentation()).unwrap();
        let (t, _) = *c_entries(&xml, "video").last().unwrap();
        let frag = live_fragment(&p, MediaKind::Video, t);
        let at = frag.windows(16).position(|w| w == TFRF).expect("tfrf");
        assert_eq!(frag[at + 20], LOOKAHEAD as u8);
    }

    #[test]
    fn manifest_can_carry_a_protection_header() {
        let p = running();
        let h = ProtectionHeader {
            system_id: crate::protection::system::PLAYREADY,
            header: vec![0, 0, 0],
        };
        let xml = client_manifest_with(&p.presentation(), Some(&h), "").unwrap();
        let mut reader = quick_xml::Reader::from_str(&xml);
        let mut found = None;
        let mut inside = false;
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) if e.name().as_ref() == b"ProtectionHeader" => {
                    inside = true;
                    let id = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == b"SystemID")
                        .unwrap();
                    assert_eq!(&id.value[..], b"9A04F079-9840-4286-AB92-E65BE0885F95");
                }
                Event::Text(t) if inside => found = Some(String::from_utf8(t.to_vec()).unwrap()),
                Event::End(e) if e.name().as_ref() == b"ProtectionHeader" => inside = false,
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(found.as_deref(), Some("AAAA"));
        assert!(!client_manifest(&p.presentation())
            .unwrap()
            .contains("<Protection>"));
    }

    #[test]
    fn fragment_names_parse() {
        assert_eq!(
            parse_fragment_name("Fragments(video=20000000)"),
            Some((MediaKind::Video, 20_000_000))
        );
        assert_eq!(
            parse_fragment_name("Fragments(audio=0)"),
            Some((MediaKind::Audio, 0))
        );
        assert_eq!(parse_fragment_name("Fragments(text=0)"), None);
        assert_eq!(parse_fragment_name("Fragments(video=x)"), None);
        assert!(fragment_source(&running().presentation(), MediaKind::Video, 123).is_none());
    }

    #[test]
    fn ended_stream_manifest_is_on_demand() {
        let mut p = running();
        p.push(MediaEvent::End, 0);
        let xml = client_manifest(&p.presentation()).unwrap();
        assert!(!xml.contains("IsLive"));
        assert_eq!(
            c_entries(&xml, "video").len(),
            p.rendition("v1").unwrap().segments.len()
        );
    }
}
