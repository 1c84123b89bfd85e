//! Encodes an MP4's H.264 video with Vela's ladder encoder, as fast as it
//! goes, for benches/encode/run (which times it against ffmpeg's command line
//! for the same ladder).
//!
//! `ladder_bench INPUT.mp4 HEIGHT:KBPS [HEIGHT:KBPS ...]`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use vela_transcode::ladder::plan::{plan, RungSpec};
use vela_transcode::ladder::{Encoder, Output};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: ladder_bench INPUT.mp4 HEIGHT:KBPS [HEIGHT:KBPS ...]");
        std::process::exit(2);
    }
    vela_transcode::pipeline::init().expect("GStreamer");
    let specs: Vec<RungSpec> = args[2..]
        .iter()
        .map(|a| {
            let (h, k) = a.split_once(':').expect("HEIGHT:KBPS");
            RungSpec {
                name: format!("{h}p"),
                width: None,
                height: Some(h.parse().expect("height")),
                video_bitrate_kbps: k.parse().expect("kbps"),
                max_rate_kbps: None,
                buffer_kbits: None,
                profile: Some("main".into()),
                level: None,
            }
        })
        .collect();
    let pipe = gst::parse::launch(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! video/x-h264,stream-format=avc,alignment=au ! appsink name=out sync=false",
        args[1]
    ))
    .expect("demux pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = pipe
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .expect("appsink");
    pipe.set_state(gst::State::Playing).expect("playing");
    let started = Instant::now();
    let mut enc: Option<Encoder> = None;
    let finished = Arc::new(AtomicUsize::new(0));
    let pictures = Arc::new(Mutex::new(0u64));
    let mut rungs_n = 0;
    let mut source_pictures = 0u64;
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        let caps = s.caps().and_then(|c| c.structure(0).map(|s| s.to_owned()));
        let buf = s.buffer().expect("a buffer");
        if enc.is_none() {
            let caps = caps.expect("caps");
            let avcc = caps.get::<gst::Buffer>("codec_data").expect("avcC");
            let avcc = avcc.map_readable().expect("readable").to_vec();
            let w = caps.get::<i32>("width").expect("width") as u32;
            let h = caps.get::<i32>("height").expect("height") as u32;
            let rungs = plan(&specs, w, h);
            rungs_n = rungs.len();
            eprintln!(
                "source {w}x{h}; rungs {:?}",
                rungs
                    .iter()
                    .map(|r| (r.width, r.height))
                    .collect::<Vec<_>>()
            );
            let (f, p) = (finished.clone(), pictures.clone());
            enc = Some(
                Encoder::start(
                    &avcc,
                    &rungs,
                    Arc::new(move |o| match o {
                        Output::Picture { .. } => *p.lock().unwrap() += 1,
                        Output::Finished { .. } => {
                            f.fetch_add(1, Ordering::AcqRel);
                        }
                        Output::Failed(e) => panic!("encoder failed: {e}"),
                        Output::Config { .. } => {}
                    }),
                )
                .expect("encoder"),
            );
        }
        let data = bytes::Bytes::copy_from_slice(&buf.map_readable().expect("readable"));
        let pts = buf.pts().map_or(0, |t| t.nseconds());
        let dts = buf.dts().map_or(pts, |t| t.nseconds());
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let e = enc.as_ref().expect("started");
        // Keep the input a little ahead of the slowest rung (appsrc does not block).
        while *pictures.lock().unwrap() + 60 * rungs_n as u64 <= source_pictures * rungs_n as u64 {
            std::thread::sleep(Duration::from_millis(1));
        }
        e.push(pts, dts, key, data).expect("push");
        source_pictures += 1;
    }
    let _ = pipe.set_state(gst::State::Null);
    let e = enc.expect("no video in the input");
    e.finish();
    while finished.load(Ordering::Acquire) < rungs_n {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "{source_pictures} source pictures, {} encoded, {:.2} s wall",
        pictures.lock().unwrap(),
        started.elapsed().as_secs_f64()
    );
}
