//! The ladder encoder against a real H.264 source: GStreamer's own
//! videotestsrc + x264enc make a 320x180 clip with B-frames and a keyframe
//! every 15 pictures (plus scene cuts x264 may add on its own), which is fed to
//! [`Encoder`] for two rungs. Every rung must put out as many pictures as went
//! in, with keyframes at exactly the source's keyframe times and nowhere else,
//! at the planned sizes, and report its avcC first.
//!
//! Needs GStreamer 1.22 with x264enc (gstreamer1.0-plugins-ugly) and avdec_h264
//! (gstreamer1.0-libav), as scripts/setup installs.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use vela_transcode::ladder::plan::{plan, RungSpec};
use vela_transcode::ladder::{Encoder, Output};

struct Picture {
    pts: u64,
    dts: u64,
    keyframe: bool,
    data: Bytes,
}

/// `frames` pictures of a 320x180 H.264 source (avc, B-frames), with its avcC.
fn source(frames: u32) -> (Bytes, Vec<Picture>) {
    vela_transcode::pipeline::init().unwrap();
    let desc = format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=320,height=180,framerate=30/1 \
         ! x264enc speed-preset=ultrafast bframes=2 key-int-max=15 \
         ! video/x-h264,stream-format=avc,alignment=au ! appsink name=out sync=false"
    );
    let pipe = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipe
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipe.set_state(gst::State::Playing).unwrap();
    let mut avcc = None;
    let mut pics = Vec::new();
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(20)) {
        if avcc.is_none() {
            let caps = s.caps().unwrap().structure(0).unwrap().to_owned();
            let b = caps.get::<gst::Buffer>("codec_data").unwrap();
            avcc = Some(Bytes::copy_from_slice(b.map_readable().unwrap().as_slice()));
        }
        let b = s.buffer().unwrap();
        pics.push(Picture {
            pts: b.pts().unwrap().nseconds(),
            dts: b.dts().unwrap_or(b.pts().unwrap()).nseconds(),
            keyframe: !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: Bytes::copy_from_slice(b.map_readable().unwrap().as_slice()),
        });
    }
    pipe.set_state(gst::State::Null).unwrap();
    (avcc.unwrap(), pics)
}

fn spec(height: u32, kbps: u32) -> RungSpec {
    RungSpec {
        name: format!("{height}p"),
        width: None,
        height: Some(height),
        video_bitrate_kbps: kbps,
        max_rate_kbps: None,
        buffer_kbits: None,
        profile: Some("main".into()),
        level: None,
    }
}

#[test]
fn every_rung_has_the_source_keyframes_and_only_those() {
    let (avcc, pics) = source(90);
    assert_eq!(pics.len(), 90);
    let source_keys: BTreeSet<u64> = pics.iter().filter(|p| p.keyframe).map(|p| p.pts).collect();
    assert!(source_keys.len() >= 6, "{source_keys:?}");
    // 180p would be the source's own size; 360p upscales and is skipped.
    let rungs = plan(&[spec(360, 900), spec(180, 300), spec(90, 120)], 320, 180);
    assert_eq!(
        rungs
            .iter()
            .map(|r| (r.width, r.height))
            .collect::<Vec<_>>(),
        [(320, 180), (160, 90)]
    );
    let outputs = Arc::new(Mutex::new(Vec::new()));
    let o = outputs.clone();
    let enc = Encoder::start(
        &avcc,
        &rungs,
        Arc::new(move |out| o.lock().unwrap().push(out)),
    )
    .unwrap();
    for p in &pics {
        enc.push(p.pts, p.dts, p.keyframe, p.data.clone()).unwrap();
    }
    enc.finish();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = outputs
            .lock()
            .unwrap()
            .iter()
            .filter(|o| matches!(o, Output::Finished { .. }))
            .count();
        let failed = outputs.lock().unwrap().iter().find_map(|o| match o {
            Output::Failed(e) => Some(e.clone()),
            _ => None,
        });
        assert!(failed.is_none(), "{failed:?}");
        if done == rungs.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the rungs did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(enc);
    let outputs = std::mem::take(&mut *outputs.lock().unwrap());
    for (i, rung) in rungs.iter().enumerate() {
        let mut config_first = None;
        let mut pictures = Vec::new();
        for o in &outputs {
            match o {
                Output::Config {
                    rung: r,
                    width,
                    height,
                    avcc,
                } if *r == i => {
                    config_first.get_or_insert(pictures.len());
                    assert_eq!((*width, *height), (rung.width, rung.height));
                    assert_eq!(avcc.first(), Some(&1), "avcC version");
                }
                Output::Picture {
                    rung: r,
                    pts_ns,
                    keyframe,
                    data,
                    ..
                } if *r == i => {
                    assert!(data.len() > 4);
                    pictures.push((*pts_ns, *keyframe));
                }
                _ => {}
            }
        }
        assert_eq!(config_first, Some(0), "rung {i}: avcC before the pictures");
        assert_eq!(
            pictures.len(),
            pics.len(),
            "rung {i}: every picture encoded"
        );
        let keys: BTreeSet<u64> = pictures.iter().filter(|p| p.1).map(|p| p.0).collect();
        assert_eq!(
            keys, source_keys,
            "rung {i}: keyframes at the source's times only"
        );
        let all: BTreeSet<u64> = pictures.iter().map(|p| p.0).collect();
        let src_all: BTreeSet<u64> = pics.iter().map(|p| p.pts).collect();
        assert_eq!(all, src_all, "rung {i}: the source's presentation times");
    }
}

#[test]
fn garbage_input_fails_with_an_error_not_a_panic() {
    let (avcc, _) = source(2);
    let rungs = plan(&[spec(90, 100)], 320, 180);
    let outputs = Arc::new(Mutex::new(Vec::new()));
    let o = outputs.clone();
    let enc = Encoder::start(
        &avcc,
        &rungs,
        Arc::new(move |out| o.lock().unwrap().push(out)),
    )
    .unwrap();
    for i in 0..30u64 {
        let _ = enc.push(
            i * 33_333_333,
            i * 33_333_333,
            i == 0,
            Bytes::from(vec![0, 0, 0, 8, 0x65, 0xff, 0x13, 0x37, 1, 2, 3, 4]),
        );
    }
    enc.finish();
    // Either an error or the end: never a hang, never a panic.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ended = outputs
            .lock()
            .unwrap()
            .iter()
            .any(|o| matches!(o, Output::Failed(_) | Output::Finished { .. }));
        if ended {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no error and no end for garbage input"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
