use super::representation::frame_rate_attr;
use super::*;
use crate::live::tests::{audio_track, feed, video_track};
use crate::protection::{system, CencScheme, ContentProtection, KeyPeriod, KeyRotation};
use crate::LivePackager;
use crate::PackagerConfig;
use quick_xml::events::Event;
use std::collections::HashMap;
use std::sync::Arc;
use vela_media::MediaEvent;

/// Parses the MPD with a real XML parser into (element name, attributes) in document order.
fn elements(xml: &str) -> Vec<(String, HashMap<String, String>)> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        (
                            String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                            a.unescape_value().unwrap().to_string(),
                        )
                    })
                    .collect();
                out.push((name, attrs));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn running() -> LivePackager {
    let mut p = LivePackager::new(PackagerConfig::default());
    p.push(
        MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
        0,
    );
    feed(&mut p, 0, 10.2, 30, 1_795_000_000_000);
    p
}

#[test]
fn dynamic_mpd_is_well_formed_and_complete() {
    let p = running();
    let xml = mpd(
        &p.presentation(),
        1_795_000_010_300,
        &MpdOptions {
            utc_timing_url: Some("http://h/time".into()),
            target_latency_ms: 1500,
            protection: None,
            base_url: Some("t/1.x-y/".into()),
        },
    )
    .unwrap();
    let els = elements(&xml);
    let mpd = &els[0].1;
    // The schema's order: BaseURL before ServiceDescription and Periods.
    assert!(
        xml.contains("  <BaseURL>t/1.x-y/</BaseURL>\n  <ServiceDescription"),
        "{xml}"
    );
    assert_eq!(mpd["type"], "dynamic");
    assert_eq!(mpd["availabilityStartTime"], "2026-11-18T11:06:40.000Z");
    assert_eq!(mpd["timeShiftBufferDepth"], "PT120S");
    assert_eq!(
        mpd["suggestedPresentationDelay"], "PT3.167S",
        "target + availabilityTimeOffset"
    );
    assert_eq!(
        mpd["minimumUpdatePeriod"],
        crate::time_fmt::iso_duration(p.config().part_target)
    );
    assert!(mpd.contains_key("minimumUpdatePeriod"));
    let reps: Vec<_> = els.iter().filter(|(n, _)| n == "Representation").collect();
    assert_eq!(reps.len(), 2);
    assert_eq!(reps[0].1["codecs"], "avc1.64001e");
    assert_eq!(reps[1].1["codecs"], "mp4a.40.2");
    let templates: Vec<_> = els.iter().filter(|(n, _)| n == "SegmentTemplate").collect();
    assert_eq!(
        templates[0].1["media"],
        "$RepresentationID$/seg-$Number$.m4s"
    );
    assert_eq!(templates[0].1["availabilityTimeComplete"], "false");
    assert!(els
        .iter()
        .any(|(n, a)| n == "UTCTiming" && a["value"] == "http://h/time"));
    // The time source comes before the (possibly stale) direct value.
    let first_timing = els.iter().find(|(n, _)| n == "UTCTiming").unwrap();
    assert_eq!(
        first_timing.1["schemeIdUri"],
        "urn:mpeg:dash:utc:http-xsdate:2014"
    );
    assert!(els
        .iter()
        .any(|(n, a)| n == "Latency" && a["target"] == "1500"));
    // The timeline covers the listed segments: count S entries with repeats.
    let v = p.rendition("v1").unwrap();
    let mut count = 0;
    let mut in_video = false;
    for (n, a) in &els {
        match n.as_str() {
            "Representation" => in_video = a["id"] == "v1",
            "S" if in_video => {
                count += 1 + a.get("r").map(|r| r.parse::<usize>().unwrap()).unwrap_or(0)
            }
            _ => {}
        }
    }
    let expected =
        v.segments.len() + usize::from(v.building.as_ref().is_some_and(|b| !b.parts.is_empty()));
    assert_eq!(count, expected);
    assert_eq!(templates[0].1["startNumber"], v.segments[0].msn.to_string());
}

/// Shaka's drift correction takes the end of the newest listed segment
/// for "now"; the delay it is given makes up for how far that end lies
/// ahead of the wall clock, so it still starts at the target latency.
#[test]
fn presentation_delay_covers_the_announced_building_segment() {
    let wall0 = 1_795_000_000_000;
    let mut p = LivePackager::new(PackagerConfig::default());
    p.push(
        MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
        0,
    );
    // 2 s segments of 1 s GOPs; at 10.6 s the segment begun at 10 s has
    // its first part and is announced as ending at 12 s.
    feed(&mut p, 0, 10.6, 30, wall0);
    let opts = MpdOptions {
        target_latency_ms: 1500,
        ..MpdOptions::default()
    };
    let delay = |now_ms| {
        let xml = mpd(&p.presentation(), now_ms, &opts).unwrap();
        let d = &elements(&xml)[0].1["suggestedPresentationDelay"];
        d.trim_start_matches("PT")
            .trim_end_matches('S')
            .parse::<f64>()
            .unwrap()
    };
    // target 1.5 + availabilityTimeOffset 1.667 + (12 - 10.6); the audio
    // track's segment ends a few milliseconds later than the video's.
    let close = |a: f64, b: f64| (a - b).abs() < 0.02;
    assert!(
        close(delay(wall0 + 10_600), 4.567),
        "{}",
        delay(wall0 + 10_600)
    );
    // Later in the same segment, less of it lies ahead.
    assert!(
        close(delay(wall0 + 11_500), 3.667),
        "{}",
        delay(wall0 + 11_500)
    );
    // Never below target + offset, even with a late clock.
    assert_eq!(delay(wall0 + 13_000), 3.167);
}

#[test]
fn protected_mpd_names_encrypted_files_and_carries_content_protection() {
    let p = running();
    let kp = |n: u8| {
        vec![ContentProtection::Mp4Protection {
            scheme: CencScheme::Cenc,
            default_kid: kid(n),
        }]
    };
    let protection = CommonEncryption {
        scheme: CencScheme::Cenc,
        keys: KeyPeriod {
            video: kp(1),
            audio: kp(2),
        },
        rotation: None,
    };
    let opts = MpdOptions {
        protection: Some(protection),
        ..Default::default()
    };
    let xml = mpd(&p.presentation(), 0, &opts).unwrap();
    let els = elements(&xml);
    assert_eq!(els[0].1["xmlns:cenc"], "urn:mpeg:cenc:2013");
    let cps: Vec<_> = els
        .iter()
        .filter(|(n, _)| n == "ContentProtection")
        .collect();
    assert_eq!(cps.len(), 2);
    assert_eq!(
        cps[1].1["cenc:default_KID"],
        "00000000-0000-0000-0000-000000000002"
    );
    let t: Vec<_> = els.iter().filter(|(n, _)| n == "SegmentTemplate").collect();
    assert_eq!(t[0].1["media"], "$RepresentationID$/seg-$Number$.cenc.m4s");
    assert_eq!(
        t[0].1["initialization"],
        "$RepresentationID$/init-0.cenc.mp4"
    );
}

/// Keys rotating every 3 segments: a Period per key period, each with
/// its own key ids and init segments named by the key period; a key
/// period whose first segment has left the window is no longer listed.
#[test]
fn key_rotation_makes_a_period_per_key_period() {
    let cfg = PackagerConfig {
        dvr_window: 9.0,
        ..PackagerConfig::default()
    };
    let mut p = LivePackager::new(cfg);
    p.push(
        MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
        0,
    );
    feed(&mut p, 0, 24.5, 30, 1_795_000_000_000);
    // Key ids that name their key period and kind: 0x0V00..00K / 0x0A00..00K.
    let cp = |k: u64, kind: u8| {
        let mut kid = [0u8; 16];
        kid[0] = kind;
        kid[15] = k as u8;
        vec![ContentProtection::Mp4Protection {
            scheme: CencScheme::Cenc,
            default_kid: kid,
        }]
    };
    let key_period = |k| KeyPeriod {
        video: cp(k, 0x0b),
        audio: cp(k, 0x0a),
    };
    let periods = (0..=5).map(|k| (k, key_period(k))).collect();
    let opts = MpdOptions {
        protection: Some(CommonEncryption {
            scheme: CencScheme::Cenc,
            keys: key_period(99),
            rotation: Some(KeyRotation { every: 3, periods }),
        }),
        ..Default::default()
    };
    let xml = mpd(&p.presentation(), 1_795_000_024_500, &opts).unwrap();
    let els = elements(&xml);
    let listed: Vec<u64> = p.lead().unwrap().segments.iter().map(|s| s.msn).collect();
    assert!(
        !listed[0].is_multiple_of(3),
        "the window must begin inside a key period: {listed:?}"
    );
    let mut period_ids = Vec::new();
    let mut current = String::new();
    for (name, a) in &els {
        match name.as_str() {
            "Period" => {
                current = a["id"].clone();
                period_ids.push(current.clone());
            }
            "SegmentTemplate" => {
                let k: u64 = current.rsplit('k').next().unwrap().parse().unwrap();
                let start: u64 = a["startNumber"].parse().unwrap();
                assert_eq!(
                    start,
                    3 * k,
                    "{current} starts at its key period's first segment"
                );
                assert!(
                    a["initialization"].ends_with(&format!("init-0.k{k}.cenc.mp4")),
                    "{a:?}"
                );
            }
            "ContentProtection" => {
                let k: u64 = current.rsplit('k').next().unwrap().parse().unwrap();
                assert!(
                    a["cenc:default_KID"].ends_with(&format!("-0000000000{k:02x}")),
                    "{current}: {a:?}"
                );
            }
            _ => {}
        }
    }
    let first_full = listed[0].div_ceil(3);
    let last = p.lead().unwrap().next_part().0 / 3;
    let want: Vec<String> = (first_full..=last)
        .map(|k| format!("p{}k{k}", 3 * k))
        .collect();
    assert_eq!(period_ids, want, "{xml}");
}

#[test]
fn ended_stream_turns_static() {
    let mut p = running();
    p.push(MediaEvent::End, 0);
    let xml = mpd(&p.presentation(), 0, &MpdOptions::default()).unwrap();
    let els = elements(&xml);
    assert_eq!(els[0].1["type"], "static");
    assert!(els[0].1["mediaPresentationDuration"].starts_with("PT10."));
    assert!(!xml.contains("availabilityTimeOffset"));
}

#[test]
fn a_reconnect_starts_a_new_period_with_a_stable_id() {
    let mut p = LivePackager::new(PackagerConfig {
        dvr_window: 12.0,
        ..Default::default()
    });
    p.push(
        MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
        0,
    );
    feed(&mut p, 0, 6.0, 30, 0);
    p.push(MediaEvent::Discontinuity, 6_000);
    feed(&mut p, 0, 6.0, 30, 8_000); // a 2 s outage
    let periods_of = |p: &Presentation| -> Vec<(String, String)> {
        let xml = mpd(p, 14_000, &MpdOptions::default()).unwrap();
        elements(&xml)
            .into_iter()
            .filter(|(n, _)| n == "Period")
            .map(|(_, a)| (a["id"].clone(), a["start"].clone()))
            .collect()
    };
    let before = periods_of(&p.presentation());
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(before[0], ("p0".to_string(), "PT0S".to_string()));
    assert_eq!(
        before[1].1, "PT8S",
        "the second timeline starts at the wall-clock time of the reconnect"
    );
    // No holes inside a period: each S after the first carries no t.
    let xml = mpd(&p.presentation(), 14_000, &MpdOptions::default()).unwrap();
    let mut in_timeline = 0;
    for (n, a) in elements(&xml) {
        match n.as_str() {
            "SegmentTimeline" => in_timeline = 0,
            "S" => {
                assert!(
                    in_timeline == 0 || !a.contains_key("t"),
                    "a hole inside a period: {xml}"
                );
                in_timeline += 1;
            }
            _ => {}
        }
    }
    // The window slides past the first timeline's start; ids stay.
    feed(&mut p, 6_000, 10.0, 30, 14_000);
    let after = periods_of(&p.presentation());
    assert_eq!(after.last().unwrap().0, before[1].0);
}

#[test]
fn no_mpd_before_media() {
    let mut p = LivePackager::new(PackagerConfig::default());
    p.push(MediaEvent::Tracks(Arc::new(vec![video_track()])), 0);
    assert!(mpd(&p.presentation(), 0, &MpdOptions::default()).is_none());
}

#[test]
fn frame_rates_are_exact() {
    assert_eq!(frame_rate_attr(30.0), "30");
    assert_eq!(frame_rate_attr(29.97), "30000/1001");
}

/// A key id with its last byte `n`.
fn kid(n: u8) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[15] = n;
    k
}

/// An element of an independently parsed document.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: HashMap<String, String>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn all<'a>(&'a self, name: &'a str) -> Box<dyn Iterator<Item = &'a Node> + 'a> {
        Box::new(
            self.children
                .iter()
                .filter(move |c| c.name == name)
                .chain(self.children.iter().flat_map(move |c| c.all(name))),
        )
    }

    fn child(&self, name: &str) -> &Node {
        self.children
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} in {self:?}"))
    }
}

/// Parses a whole document into a tree with quick-xml, resolving entity
/// and character references in text.
fn tree(xml: &str) -> Node {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack = vec![Node::default()];
    let open = |e: &quick_xml::events::BytesStart| Node {
        name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
        attrs: e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.unescape_value().unwrap().into_owned(),
                )
            })
            .collect(),
        ..Node::default()
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => stack.push(open(&e)),
            Event::Empty(e) => {
                let n = open(&e);
                stack.last_mut().unwrap().children.push(n);
            }
            Event::End(_) => {
                let n = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(n);
            }
            Event::Text(t) => stack
                .last_mut()
                .unwrap()
                .text
                .push_str(t.decode().unwrap().trim()),
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().unwrap() {
                    Some(c) => c,
                    None => match r.decode().unwrap().as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => panic!("unknown entity {other}"),
                    },
                };
                stack.last_mut().unwrap().text.push(c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(stack.len(), 1, "unbalanced document");
    stack.pop().unwrap()
}

/// A protected MPD with rotating keys and every DRM system: each
/// AdaptationSet of each Period carries its own key period's and kind's
/// signalling (key id, licence URL, pssh and PRO bytes), and text and
/// attributes with markup characters come back unchanged from a parse.
#[test]
fn protected_rotated_mpd_renders_typed_signalling_escaped() {
    let cfg = PackagerConfig {
        dvr_window: 9.0,
        ..PackagerConfig::default()
    };
    let mut p = LivePackager::new(cfg);
    p.push(
        MediaEvent::Tracks(Arc::new(vec![video_track(), audio_track(2)])),
        0,
    );
    feed(&mut p, 0, 24.5, 30, 1_795_000_000_000);
    let mut pres = p.presentation();
    let lang = "x-\"<&>'";
    for r in &mut pres.renditions {
        if r.track.kind() == MediaKind::Audio {
            r.language = Some(lang.into());
        }
    }
    let laurl = "https://lic.example/ck?a=1&b=<2>&c=\"3\"";
    let base = "t/a&b<c>\"d\"/";
    let timing = "http://h/time?x=1&y=2";
    // Bytes that name their key period, kind and system.
    let bytes = |k: u64, kind: u8, sys: u8| vec![sys, kind, k as u8, 0xff, 0x00];
    let signalling = |k: u64, kind: u8| {
        let mut default_kid = [0u8; 16];
        default_kid[0] = kind;
        default_kid[15] = k as u8;
        vec![
            ContentProtection::Mp4Protection {
                scheme: CencScheme::Cbcs,
                default_kid,
            },
            ContentProtection::ClearKey {
                laurl: laurl.into(),
                pssh: bytes(k, kind, 1),
            },
            ContentProtection::Widevine {
                pssh: bytes(k, kind, 2),
            },
            ContentProtection::PlayReady {
                pssh: bytes(k, kind, 3),
                pro: bytes(k, kind, 4),
            },
        ]
    };
    let key_period = |k| KeyPeriod {
        video: signalling(k, b'v'),
        audio: signalling(k, b'a'),
    };
    let opts = MpdOptions {
        utc_timing_url: Some(timing.into()),
        target_latency_ms: 1500,
        protection: Some(CommonEncryption {
            scheme: CencScheme::Cbcs,
            keys: key_period(99),
            rotation: Some(KeyRotation {
                every: 3,
                periods: (0..=9).map(|k| (k, key_period(k))).collect(),
            }),
        }),
        base_url: Some(base.into()),
    };
    let xml = mpd(&pres, 1_795_000_024_500, &opts).unwrap();
    let doc = tree(&xml);
    let root = doc.child("MPD");
    assert_eq!(root.attrs["xmlns:cenc"], "urn:mpeg:cenc:2013");
    assert_eq!(root.attrs["xmlns:mspr"], "urn:microsoft:playready");
    assert_eq!(root.attrs["xmlns:dashif"], "https://dashif.org/CPS");
    assert_eq!(root.child("BaseURL").text, base);
    let timings: Vec<&str> = root
        .all("UTCTiming")
        .map(|t| t.attrs["value"].as_str())
        .collect();
    assert_eq!(timings[0], timing);

    let uri = |id: [u8; 16]| format!("urn:uuid:{}", crate::protection::Uuid(id));
    let b64 = |d: &[u8]| crate::protection::base64(d);
    let periods: Vec<&Node> = root.all("Period").collect();
    assert!(periods.len() >= 2, "{xml}");
    let mut sets_seen = 0;
    for period in periods {
        let k: u64 = period.attrs["id"]
            .rsplit('k')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let sets: Vec<&Node> = period.all("AdaptationSet").collect();
        assert_eq!(sets.len(), 2);
        for set in sets {
            sets_seen += 1;
            let kind = match set.attrs["contentType"].as_str() {
                "video" => b'v',
                "audio" => {
                    assert_eq!(set.attrs["lang"], lang);
                    b'a'
                }
                other => panic!("{other}"),
            };
            let cps: Vec<&Node> = set.all("ContentProtection").collect();
            let schemes: Vec<&str> = cps
                .iter()
                .map(|c| c.attrs["schemeIdUri"].as_str())
                .collect();
            assert_eq!(
                schemes,
                [
                    "urn:mpeg:dash:mp4protection:2011".to_string(),
                    uri(system::DASHIF_CLEAR_KEY),
                    uri(system::CLEAR_KEY),
                    uri(system::WIDEVINE),
                    uri(system::PLAYREADY),
                ]
            );
            assert_eq!(cps[0].attrs["value"], "cbcs");
            let kid = &cps[0].attrs["cenc:default_KID"];
            assert_eq!(kid.len(), 36);
            assert!(
                kid.starts_with(&format!("{kind:02x}000000-"))
                    && kid.ends_with(&format!("-0000000000{k:02x}")),
                "period {k}: {kid}"
            );
            assert_eq!(cps[1].child("dashif:Laurl").text, laurl);
            assert_eq!(cps[2].child("dashif:Laurl").text, laurl);
            assert_eq!(cps[2].child("cenc:pssh").text, b64(&bytes(k, kind, 1)));
            assert_eq!(cps[3].attrs["value"], "Widevine");
            assert_eq!(cps[3].child("cenc:pssh").text, b64(&bytes(k, kind, 2)));
            assert_eq!(cps[4].attrs["value"], "MSPR 2.0");
            assert_eq!(cps[4].child("cenc:pssh").text, b64(&bytes(k, kind, 3)));
            assert_eq!(cps[4].child("mspr:pro").text, b64(&bytes(k, kind, 4)));
            // ContentProtection precedes the Representations.
            let first_rep = set
                .children
                .iter()
                .position(|c| c.name == "Representation")
                .unwrap();
            assert!(set.children[..first_rep]
                .iter()
                .all(|c| c.name == "ContentProtection"));
            let template = set.child("Representation").child("SegmentTemplate");
            assert!(template.attrs["initialization"].ends_with(&format!(".k{k}.cbcs.mp4")));
            assert!(template.attrs["media"].ends_with("$Number$.cbcs.m4s"));
        }
    }
    assert!(sets_seen >= 4);
}
