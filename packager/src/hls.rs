//! HLS and LL-HLS playlists for a live stream (RFC 8216bis).
//!
//! The master playlist is built with m3u8-rs. Media playlists are written
//! here: m3u8-rs 6 cannot place the LL-HLS tags that follow the last segment
//! (the parts of the segment being built, `EXT-X-PRELOAD-HINT`,
//! `EXT-X-RENDITION-REPORT`) nor header tags such as `EXT-X-SERVER-CONTROL`;
//! the tests parse what we write with m3u8-rs.
//!
//! URIs, relative to the master at `/live/STREAM/master.m3u8`:
//! `RID/index.m3u8`, `RID/init-V.mp4`, `RID/seg-N.m4s`, `RID/part-N.P.m4s`.

use std::fmt::Write as _;

use vela_media::{CodecConfig, MediaKind};

use crate::live::PART_SLACK;
use crate::presentation::{Part, Presentation, Rendition, Segment};
use crate::time_fmt::rfc3339_ms;

/// Group id of the audio renditions in the master playlist.
const AUDIO_GROUP: &str = "audio";

/// The master playlist, or `None` before the tracks are known.
pub fn master_playlist(p: &Presentation) -> Option<String> {
    master_playlist_at(p, "")
}

/// [`master_playlist`] with the media playlists under `prefix` (a relative
/// path ending in `/`, or ""; e.g. the playback token's path), which every
/// URI in them, being relative, then inherits.
pub fn master_playlist_at(p: &Presentation, prefix: &str) -> Option<String> {
    use m3u8_rs::{
        AlternativeMedia, AlternativeMediaType, MasterPlaylist, Resolution, VariantStream,
    };
    let renditions = p.renditions();
    if renditions.is_empty() {
        return None;
    }
    let audio: Vec<&Rendition> = renditions
        .iter()
        .filter(|r| r.track.kind() == MediaKind::Audio)
        .collect();
    let video: Vec<&Rendition> = renditions
        .iter()
        .filter(|r| r.track.kind() == MediaKind::Video)
        .collect();
    let mut master = MasterPlaylist {
        version: Some(9),
        independent_segments: true,
        ..Default::default()
    };
    let audio_bw = audio.iter().map(|r| r.peak_bandwidth()).max().unwrap_or(0);
    if video.is_empty() {
        for a in &audio {
            master.variants.push(VariantStream {
                uri: format!("{prefix}{}/index.m3u8", a.id),
                bandwidth: a.peak_bandwidth(),
                average_bandwidth: Some(a.bandwidth()),
                codecs: Some(a.track.config.codec_string()),
                ..Default::default()
            });
        }
        return Some(write_master(&master));
    }
    for (i, a) in audio.iter().enumerate() {
        let channels = match &a.track.config {
            CodecConfig::Audio { channels, .. } => Some(channels.to_string()),
            _ => None,
        };
        master.alternatives.push(AlternativeMedia {
            media_type: AlternativeMediaType::Audio,
            uri: Some(format!("{prefix}{}/index.m3u8", a.id)),
            group_id: AUDIO_GROUP.to_string(),
            name: a
                .language
                .clone()
                .unwrap_or_else(|| format!("audio{}", a.track.id)),
            language: a.language.clone(),
            default: i == 0,
            autoselect: true,
            channels,
            ..Default::default()
        });
    }
    let audio_codec = audio.first().map(|a| a.track.config.codec_string());
    for v in &video {
        let (width, height, frame_rate) = match &v.track.config {
            CodecConfig::Video {
                width,
                height,
                frame_rate,
                ..
            } => (*width, *height, *frame_rate),
            _ => (0, 0, None),
        };
        let mut codecs = v.track.config.codec_string();
        if let Some(ac) = &audio_codec {
            codecs = format!("{codecs},{ac}");
        }
        master.variants.push(VariantStream {
            uri: format!("{prefix}{}/index.m3u8", v.id),
            bandwidth: v.peak_bandwidth() + audio_bw,
            average_bandwidth: Some(
                v.bandwidth() + audio.first().map(|a| a.bandwidth()).unwrap_or(0),
            ),
            codecs: Some(codecs),
            resolution: (width > 0 && height > 0).then_some(Resolution {
                width: u64::from(width),
                height: u64::from(height),
            }),
            frame_rate: frame_rate.filter(|f| f.is_finite() && *f > 0.0),
            audio: (!audio.is_empty()).then(|| AUDIO_GROUP.to_string()),
            ..Default::default()
        });
    }
    Some(write_master(&master))
}

fn write_master(m: &m3u8_rs::MasterPlaylist) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = m.write_to(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The part target that a rendition's playlist advertises, seconds. Parts of
/// a following track end at the first of its samples past the lead's cut, so
/// they may run one of its frames longer.
pub fn part_target(p: &Presentation, r: &Rendition) -> f64 {
    let base = p.config().part_target + PART_SLACK;
    let lead = p.lead().map(|l| l.id == r.id).unwrap_or(true);
    let secs = if lead {
        base
    } else {
        match &r.track.config {
            CodecConfig::Audio { .. } => base + 1024.0 / f64::from(r.timescale()),
            CodecConfig::Video { .. } => base + 0.05,
        }
    };
    (secs * 1000.0).ceil() / 1000.0
}

/// EXT-X-TARGETDURATION: whole seconds, at least the longest segment.
pub fn target_duration(p: &Presentation) -> u64 {
    let longest = p
        .renditions()
        .iter()
        .map(|r| r.max_segment_duration as f64 / f64::from(r.timescale()))
        .fold(p.config().segment_target, f64::max);
    longest.round().max(1.0) as u64
}

/// A delta update request (`_HLS_skip=YES` or `v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Skip(pub bool);

/// How a media playlist's media is encrypted: which variant of the files it
/// names, and the `EXT-X-KEY` in force at each segment.
pub struct HlsKeying<'a> {
    /// The encrypted variant's tag in file names: `seg-N.TAG.m4s`.
    pub tag: &'a str,
    /// Whether the init segment is a protected variant too (`cbcs`: its
    /// sample entry says so), rather than the clear one (`AES-128`).
    pub protected_init: bool,
    /// The `EXT-X-KEY` attributes for segment `msn` (they change at a key
    /// rotation).
    pub key_attributes: &'a dyn Fn(u64) -> String,
    /// With key rotation and a protected init: the key period of segment
    /// `msn`, which names its init segment (`init-V.kK.TAG.mp4`, whose
    /// `tenc` holds that period's key id).
    pub init_key_period: Option<&'a dyn Fn(u64) -> u64>,
}

fn file_name(stem: &str, tag: Option<&str>, ext: &str) -> String {
    match tag {
        Some(t) => format!("{stem}.{t}.{ext}"),
        None => format!("{stem}.{ext}"),
    }
}

/// The media playlist of one rendition, or `None` if there is no such rendition.
pub fn media_playlist(p: &Presentation, rendition_id: &str, skip: Skip) -> Option<String> {
    media_playlist_with(p, rendition_id, skip, None)
}

/// [`media_playlist`], with the media encrypted as `keying` says.
pub fn media_playlist_with(
    p: &Presentation,
    rendition_id: &str,
    skip: Skip,
    keying: Option<&HlsKeying>,
) -> Option<String> {
    let r = p.rendition(rendition_id)?;
    let tag = keying.map(|k| k.tag);
    let init_tag = keying.filter(|k| k.protected_init).map(|k| k.tag);
    let init_period = keying
        .filter(|k| k.protected_init)
        .and_then(|k| k.init_key_period);
    // An init segment: its version and, with rotation, its key period.
    let init_of = |s: &Segment| (s.init_version, init_period.map(|f| f(s.msn)));
    let map_line = |out: &mut String, (v, k): (u32, Option<u64>)| {
        let stem = match k {
            Some(k) => format!("init-{v}.k{k}"),
            None => format!("init-{v}"),
        };
        let _ = writeln!(
            out,
            "#EXT-X-MAP:URI=\"{}\"",
            file_name(&stem, init_tag, "mp4")
        );
    };
    let mut last_key: Option<String> = None;
    let mut key_line = |out: &mut String, msn: u64| {
        if let Some(k) = keying {
            let attrs = (k.key_attributes)(msn);
            if last_key.as_deref() != Some(attrs.as_str()) {
                let _ = writeln!(out, "#EXT-X-KEY:{attrs}");
                last_key = Some(attrs);
            }
        }
    };
    let ts = f64::from(r.timescale());
    let target = target_duration(p);
    let part_target = part_target(p, r);
    let can_skip_until = 6.0 * target as f64;
    let ended = p.is_ended();

    let mut out = String::with_capacity(4096);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    if !ended {
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={can_skip_until:.1},PART-HOLD-BACK={:.3},HOLD-BACK={:.1}",
            3.0 * part_target,
            3.0 * target as f64
        );
    }
    if p.is_static() {
        out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    } else {
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
    }
    let first_msn = r
        .segments
        .front()
        .map(|s| s.msn)
        .or(r.building.as_ref().map(|b| b.msn))
        .unwrap_or(0);
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
    if r.discontinuity_sequence > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            r.discontinuity_sequence
        );
    }
    if r.track.kind() == MediaKind::Video {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }

    let edge = r.segments.back().map(|s| s.end()).unwrap_or(0);
    let edge_all = r
        .building
        .as_ref()
        .filter(|b| !b.parts.is_empty())
        .map(|b| b.end())
        .unwrap_or(edge);
    // Parts are listed for the last three target durations only.
    let parts_from = edge_all - (3.0 * target as f64 * ts) as i64;
    let mut skipped = 0usize;
    if skip.0 && !ended {
        let skip_before = edge_all - (can_skip_until * ts) as i64;
        skipped = r
            .segments
            .iter()
            .take_while(|s| s.end() < skip_before)
            .count();
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
    }

    let mut last_init: Option<(u32, Option<u64>)> = None;
    for s in r.segments.iter().skip(skipped) {
        if s.discontinuity && last_init.is_some() {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if last_init != Some(init_of(s)) {
            map_line(&mut out, init_of(s));
            last_init = Some(init_of(s));
        }
        key_line(&mut out, s.msn);
        if let Some(pdt) = s.program_date_time_ms {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339_ms(pdt));
        }
        if s.end() > parts_from && !ended {
            write_parts(&mut out, s.msn, &s.parts, ts, tag);
        }
        let _ = writeln!(
            out,
            "#EXTINF:{:.5},\n{}",
            s.duration as f64 / ts,
            file_name(&format!("seg-{}", s.msn), tag, "m4s")
        );
    }
    if let Some(b) = r.building.as_ref().filter(|_| !ended) {
        if !b.parts.is_empty() {
            if b.discontinuity && last_init.is_some() {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if last_init != Some(init_of(b)) {
                map_line(&mut out, init_of(b));
            }
            key_line(&mut out, b.msn);
            if let Some(pdt) = b.program_date_time_ms {
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339_ms(pdt));
            }
            write_parts(&mut out, b.msn, &b.parts, ts, tag);
        }
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
        return Some(out);
    }
    // The hint for the next part, once the segment being built is listed
    // (has a part). A hint alone after a complete segment reads as a segment
    // with no URI to Shaka Player, which failed to start on such a playlist;
    // clients reach that first part by blocking reload instead.
    if r.building.as_ref().is_some_and(|b| !b.parts.is_empty()) {
        let (next_msn, next_part) = r.next_part();
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
            file_name(&format!("part-{next_msn}.{next_part}"), tag, "m4s")
        );
    }
    for other in p.renditions().iter().filter(|o| o.id != r.id) {
        if let Some((msn, part)) = other.last_part() {
            let _ = writeln!(
                out,
                "#EXT-X-RENDITION-REPORT:URI=\"../{}/index.m3u8\",LAST-MSN={msn},LAST-PART={part}",
                other.id
            );
        }
    }
    Some(out)
}

fn write_parts(out: &mut String, msn: u64, parts: &[Part], ts: f64, tag: Option<&str>) {
    for (i, part) in parts.iter().enumerate() {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={:.5},URI=\"{}\"",
            part.duration as f64 / ts,
            file_name(&format!("part-{msn}.{i}"), tag, "m4s")
        );
        if part.independent {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::tests::{audio_track, feed, video_track};
    use crate::LivePackager;
    use crate::PackagerConfig;
    use std::sync::Arc;
    use vela_media::MediaEvent;

    fn running() -> LivePackager {
        let mut p = LivePackager::new(PackagerConfig::default());
        p.push(
            MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            0,
        );
        feed(&mut p, 0, 20.5, 30, 1_795_000_000_000);
        p
    }

    fn parse_media(text: &str) -> m3u8_rs::MediaPlaylist {
        match m3u8_rs::parse_playlist_res(text.as_bytes()) {
            Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => m,
            other => panic!("not a media playlist: {other:?}\n{text}"),
        }
    }

    #[test]
    fn master_lists_video_variant_with_audio_group() {
        let p = running();
        let text = master_playlist(&p.presentation()).unwrap();
        let m = match m3u8_rs::parse_playlist_res(text.as_bytes()) {
            Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(m.variants.len(), 1);
        let v = &m.variants[0];
        assert_eq!(v.uri, "v1/index.m3u8");
        assert_eq!(v.codecs.as_deref(), Some("avc1.64001e,mp4a.40.2"));
        assert_eq!(
            v.resolution.as_ref().map(|r| (r.width, r.height)),
            Some((640, 360))
        );
        assert_eq!(v.audio.as_deref(), Some("audio"));
        assert!(v.bandwidth > 0);
        assert_eq!(m.alternatives[0].uri.as_deref(), Some("a2/index.m3u8"));
    }

    #[test]
    fn media_playlist_has_ll_hls_tags_and_parses() {
        let p = running();
        let text = media_playlist(&p.presentation(), "v1", Skip(false)).unwrap();
        let m = parse_media(&text);
        assert!(m.segments.len() >= 9, "{text}");
        assert_eq!(m.target_duration, 2);
        assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"));
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.336"));
        assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-"));
        assert!(text.contains("#EXT-X-RENDITION-REPORT:URI=\"../a2/index.m3u8\",LAST-MSN="));
        assert!(text.contains("#EXT-X-MAP:URI=\"init-0.mp4\""));
        assert!(m.segments[0].program_date_time.is_some());
        // parts only near the live edge
        let first_part_line = text
            .lines()
            .position(|l| l.starts_with("#EXT-X-PART:"))
            .unwrap();
        let first_seg_line = text.lines().position(|l| l.starts_with("#EXTINF")).unwrap();
        assert!(
            first_part_line > first_seg_line,
            "old segments carry no parts"
        );
        for seg in &m.segments {
            assert!(seg.duration <= 2.0 + 0.5);
        }
    }

    #[test]
    fn delta_update_skips_old_segments() {
        let mut p = LivePackager::new(PackagerConfig::default());
        p.push(
            MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            0,
        );
        feed(&mut p, 0, 40.0, 30, 0);
        let full = parse_media(&media_playlist(&p.presentation(), "v1", Skip(false)).unwrap());
        let text = media_playlist(&p.presentation(), "v1", Skip(true)).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("#EXT-X-SKIP:SKIPPED-SEGMENTS="))
            .expect(&text);
        let skipped: usize = line.rsplit('=').next().unwrap().parse().unwrap();
        let delta = parse_media(&text);
        assert_eq!(delta.segments.len() + skipped, full.segments.len());
        assert_eq!(
            delta.segments.last().unwrap().uri,
            full.segments.last().unwrap().uri
        );
    }

    /// Between a segment's completion and the next one's first part the
    /// playlist ends with the complete segment, without a hint.
    #[test]
    fn hint_only_while_a_segment_is_being_built() {
        let mut p = LivePackager::new(PackagerConfig::default());
        p.push(
            MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            0,
        );
        // Segment 5 begins at 10 s; at 10.2 s it has no part yet.
        feed(&mut p, 0, 10.2, 30, 1_795_000_000_000);
        let text = media_playlist(&p.presentation(), "v1", Skip(false)).unwrap();
        assert!(!text.contains("PRELOAD-HINT"), "{text}");
        let m = parse_media(&text);
        assert_eq!(m.segments.last().unwrap().uri, "seg-4.m4s", "{text}");
        // Once it has a part, the next part is hinted.
        feed(&mut p, 10_200, 0.3, 30, 1_795_000_010_200);
        let text = media_playlist(&p.presentation(), "v1", Skip(false)).unwrap();
        assert!(
            text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-5.1.m4s\""),
            "{text}"
        );
    }

    #[test]
    fn ended_stream_has_endlist_and_no_hint() {
        let mut p = running();
        p.push(MediaEvent::End, 0);
        let text = media_playlist(&p.presentation(), "a2", Skip(false)).unwrap();
        let m = parse_media(&text);
        assert!(m.end_list);
        assert!(!text.contains("PRELOAD-HINT"));
        let total: f32 = m.segments.iter().map(|s| s.duration).sum();
        assert!((total - 20.5).abs() < 0.2, "total {total}");
    }

    #[test]
    fn encrypted_playlist_names_the_variant_and_rotates_keys() {
        let p = running();
        let key_of = |msn: u64| format!("METHOD=AES-128,URI=\"/drm/keys/k{}\"", msn / 4);
        let keying = HlsKeying {
            tag: "aes",
            protected_init: false,
            key_attributes: &key_of,
            init_key_period: None,
        };
        let text =
            media_playlist_with(&p.presentation(), "v1", Skip(false), Some(&keying)).unwrap();
        let m = parse_media(&text);
        assert!(
            m.segments.iter().all(|s| s.uri.ends_with(".aes.m4s")),
            "{text}"
        );
        assert!(
            text.contains("#EXT-X-MAP:URI=\"init-0.mp4\""),
            "AES-128 keeps the init clear"
        );
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-KEY:"))
            .collect();
        let first = m.segments.first().map(|s| s.uri.clone()).unwrap();
        assert!(keys.len() >= 2, "a key per rotation period: {keys:?}");
        assert!(
            m.segments[0].key.is_some(),
            "the first segment ({first}) has its key"
        );
        assert!(text.contains(".aes.m4s\",INDEPENDENT=YES"));
        let hint = text
            .lines()
            .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
            .unwrap();
        assert!(hint.ends_with(".aes.m4s\""));
    }

    /// SAMPLE-AES with rotation: the protected init names its key period,
    /// so a new `EXT-X-MAP` comes with each new key.
    #[test]
    fn sample_aes_rotation_writes_a_map_per_key_period() {
        let p = running();
        let key_of = |msn: u64| format!("METHOD=SAMPLE-AES,URI=\"/drm/keys/k{}\"", msn / 4);
        let period = |msn: u64| msn / 4;
        let keying = HlsKeying {
            tag: "cbcs",
            protected_init: true,
            key_attributes: &key_of,
            init_key_period: Some(&period),
        };
        let text =
            media_playlist_with(&p.presentation(), "v1", Skip(false), Some(&keying)).unwrap();
        parse_media(&text);
        let lines: Vec<&str> = text.lines().collect();
        let mut current_map = "";
        for l in &lines {
            if let Some(m) = l.strip_prefix("#EXT-X-MAP:URI=") {
                current_map = m;
            }
            if let Some(n) = l
                .strip_prefix("seg-")
                .and_then(|r| r.strip_suffix(".cbcs.m4s"))
            {
                let msn: u64 = n.parse().unwrap();
                assert_eq!(
                    current_map,
                    format!("\"init-0.k{}.cbcs.mp4\"", msn / 4),
                    "segment {msn}\n{text}"
                );
            }
        }
        let maps = lines.iter().filter(|l| l.starts_with("#EXT-X-MAP")).count();
        assert!(maps >= 3, "{text}");
    }

    #[test]
    fn audio_only_master_points_at_audio_playlist() {
        let mut p = LivePackager::new(PackagerConfig::default());
        p.push(MediaEvent::Tracks(Arc::new(vec![audio_track(1)])), 0);
        let text = master_playlist(&p.presentation()).unwrap();
        assert!(text.contains("a1/index.m3u8"));
        assert!(text.contains("CODECS=\"mp4a.40.2\""));
    }

    #[test]
    fn discontinuity_is_tagged() {
        let mut p = LivePackager::new(PackagerConfig::default());
        p.push(
            MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
            0,
        );
        feed(&mut p, 0, 6.0, 30, 0);
        p.push(MediaEvent::Discontinuity, 6_000);
        feed(&mut p, 0, 6.0, 30, 8_000);
        let text = media_playlist(&p.presentation(), "v1", Skip(false)).unwrap();
        let m = parse_media(&text);
        assert_eq!(
            m.segments.iter().filter(|s| s.discontinuity).count(),
            1,
            "{text}"
        );
    }
}
