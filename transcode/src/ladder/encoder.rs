//! One ladder encoder: a GStreamer pipeline that decodes an H.264 source once
//! and encodes every rung from it.
//!
//! ```text
//! appsrc ! h264parse ! avdec_h264 ! tee ─┬─ queue ! videoconvert ! videoscale ! caps ! x264enc ! caps(avc) ! appsink r0
//!                                         └─ queue ! ...                                                    ! appsink r1
//! ```
//!
//! - x264enc runs with `tune=zerolatency` (no B-frames, no lookahead, sliced
//!   threads), `rc-lookahead=0`, no scene-cut keyframes and no automatic
//!   keyframe interval. Every keyframe is *forced*: a pad probe before each
//!   x264enc sends a force-key-unit event ahead of every decoded picture whose
//!   timestamp is one of the source's keyframes, so all rungs have keyframes at
//!   exactly the source's keyframe times and the packager cuts segments and
//!   parts of every rung where it cuts the source's.
//! - The tee's branches have short queues (8 pictures) and a thread each; with
//!   no lookahead nothing in a branch holds pictures back, so a branch cannot
//!   wait on another (a tee into encoders with lookahead and default queue
//!   limits deadlocks).
//! - Nothing here blocks: pushing a picture never waits (appsrc does not
//!   block), results and errors come back through a channel from GStreamer's
//!   own threads (appsink callbacks, a bus sync handler). Only
//!   [`Encoder::start`] and dropping an [`Encoder`] change pipeline states,
//!   which may wait briefly: async callers run them on a blocking thread.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::plan::Rung;
use crate::pipeline::{self, GstError};

/// The x264 speed preset of every rung (Vela's and the benchmark's ffmpeg).
pub const SPEED_PRESET: &str = "veryfast";

/// What the encoder sends back.
#[derive(Debug)]
pub enum Output {
    /// A rung's output format is known (before its first picture).
    Config {
        rung: usize,
        width: u32,
        height: u32,
        /// The AVCDecoderConfigurationRecord.
        avcc: Bytes,
    },
    /// An encoded picture: length-prefixed NAL units (4-byte lengths).
    Picture {
        rung: usize,
        /// Nanoseconds, on the timeline of the pushed pictures.
        pts_ns: u64,
        dts_ns: u64,
        keyframe: bool,
        data: Bytes,
    },
    /// A rung finished after end of stream.
    Finished { rung: usize },
    /// The pipeline failed; nothing more comes.
    Failed(String),
}

/// Where outputs go (called on GStreamer threads: must not block).
pub type OutputSink = Arc<dyn Fn(Output) + Send + Sync>;

/// A running ladder pipeline. Dropping it stops the pipeline.
pub struct Encoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    /// Source keyframe times (ns) not yet reached by every rung.
    keyframes: Arc<Mutex<BTreeSet<u64>>>,
}

/// The elements an encoder needs, for a check at start-up.
pub const ELEMENTS: &[&str] = &[
    "appsrc",
    "h264parse",
    "avdec_h264",
    "tee",
    "queue",
    "videoconvert",
    "videoscale",
    "x264enc",
    "appsink",
];

fn set_caps(el: &gst::Element, caps: gst::Caps) {
    el.set_property("caps", caps);
}

impl Encoder {
    /// Builds and starts the pipeline for an H.264 source whose decoder
    /// configuration record is `avcc`. Blocks briefly (state change).
    pub fn start(avcc: &[u8], rungs: &[Rung], sink: OutputSink) -> Result<Encoder, GstError> {
        pipeline::init()?;
        if rungs.is_empty() {
            return Err(GstError::Build("no rung to encode".into()));
        }
        let pipe = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder()
            .name("src")
            .caps(
                &gst::Caps::builder("video/x-h264")
                    .field("stream-format", "avc")
                    .field("alignment", "au")
                    .field("codec_data", gst::Buffer::from_slice(avcc.to_vec()))
                    .build(),
            )
            .format(gst::Format::Time)
            .is_live(true)
            .block(false)
            // Bounded: a stuck pipeline drops input rather than growing.
            .max_bytes(64 * 1024 * 1024)
            .build();
        let parse = pipeline::make("h264parse", "parse")?;
        let dec = pipeline::make("avdec_h264", "decode")?;
        let tee = pipeline::make("tee", "tee")?;
        pipeline::add_linked(&pipe, &[src.upcast_ref(), &parse, &dec, &tee])?;
        let keyframes = Arc::new(Mutex::new(BTreeSet::new()));
        for (i, rung) in rungs.iter().enumerate() {
            let queue = pipeline::make("queue", &format!("queue{i}"))?;
            queue.set_property("max-size-buffers", 8u32);
            queue.set_property("max-size-bytes", 0u32);
            queue.set_property("max-size-time", 0u64);
            let convert = pipeline::make("videoconvert", &format!("convert{i}"))?;
            let scale = pipeline::make("videoscale", &format!("scale{i}"))?;
            let raw_caps = pipeline::make("capsfilter", &format!("size{i}"))?;
            set_caps(
                &raw_caps,
                gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .field("width", rung.width as i32)
                    .field("height", rung.height as i32)
                    .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                    .build(),
            );
            let enc = pipeline::make("x264enc", &format!("x264_{i}"))?;
            enc.set_property_from_str("tune", "zerolatency");
            enc.set_property_from_str("speed-preset", SPEED_PRESET);
            enc.set_property("rc-lookahead", 0i32);
            enc.set_property("bitrate", rung.bitrate_kbps);
            enc.set_property("vbv-buf-capacity", rung.vbv_buffer_ms());
            enc.set_property("key-int-max", 0u32);
            enc.set_property("b-adapt", false);
            enc.set_property("bframes", 0u32);
            enc.set_property("option-string", rung.x264_options());
            let out_caps = pipeline::make("capsfilter", &format!("h264caps{i}"))?;
            let mut caps = gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .field("profile", rung.profile.as_str());
            if let Some(level) = &rung.level {
                caps = caps.field("level", level.as_str());
            }
            set_caps(&out_caps, caps.build());
            let appsink = gst_app::AppSink::builder()
                .name(format!("out{i}"))
                .sync(false)
                .build();
            pipeline::add_linked(
                &pipe,
                &[
                    &queue,
                    &convert,
                    &scale,
                    &raw_caps,
                    &enc,
                    &out_caps,
                    appsink.upcast_ref(),
                ],
            )?;
            tee.link(&queue)
                .map_err(|e| GstError::Build(format!("tee branch {i}: {e}")))?;
            force_keyframes(&enc, keyframes.clone(), rungs.len())?;
            attach_sink(&appsink, i, sink.clone());
        }
        let bus = pipe
            .bus()
            .ok_or_else(|| GstError::Build("the pipeline has no bus".into()))?;
        let errors = sink.clone();
        bus.set_sync_handler(move |_, msg| {
            if let gst::MessageView::Error(e) = msg.view() {
                let element = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                errors(Output::Failed(format!("{element}: {}", e.error())));
            }
            gst::BusSyncReply::Drop
        });
        pipe.set_state(gst::State::Playing)
            .map_err(|e| GstError::Build(format!("the pipeline refused to start: {e}")))?;
        Ok(Encoder {
            pipeline: pipe,
            src,
            keyframes,
        })
    }

    /// Pushes one source picture (length-prefixed NAL units). Never blocks; a
    /// refused push (the pipeline stopped) is an error.
    pub fn push(
        &self,
        pts_ns: u64,
        dts_ns: u64,
        keyframe: bool,
        data: Bytes,
    ) -> Result<(), GstError> {
        if keyframe {
            let mut k = self.keyframes.lock().unwrap_or_else(|e| e.into_inner());
            k.insert(pts_ns);
            // Bounded: times far behind can no longer arrive.
            while k.len() > 64 {
                k.pop_first();
            }
        }
        let mut buf = gst::Buffer::from_slice(data);
        {
            let b = buf.get_mut().expect("a new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
            b.set_dts(gst::ClockTime::from_nseconds(dts_ns));
            if !keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.src
            .push_buffer(buf)
            .map(|_| ())
            .map_err(|e| GstError::Build(format!("push refused: {e:?}")))
    }

    /// Ends the input: every rung drains and reports [`Output::Finished`].
    pub fn finish(&self) {
        let _ = self.src.end_of_stream();
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A probe on x264enc's sink pad: a force-key-unit event goes ahead of every
/// picture at a source keyframe time. Each rung removes nothing: the times are
/// pruned by [`Encoder::push`] (bounded), and a picture's time is looked up,
/// not consumed, since every rung needs it.
fn force_keyframes(
    enc: &gst::Element,
    keyframes: Arc<Mutex<BTreeSet<u64>>>,
    _rungs: usize,
) -> Result<(), GstError> {
    let pad = enc
        .static_pad("sink")
        .ok_or_else(|| GstError::Build("x264enc has no sink pad".into()))?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let pts = match &info.data {
            Some(gst::PadProbeData::Buffer(b)) => b.pts(),
            _ => None,
        };
        let Some(pts) = pts else {
            return gst::PadProbeReturn::Ok;
        };
        let hit = keyframes
            .lock()
            .map(|k| k.contains(&pts.nseconds()))
            .unwrap_or(false);
        if hit {
            let event = gst::event::CustomDownstream::builder(
                gst::Structure::builder("GstForceKeyUnit")
                    .field("timestamp", pts.nseconds())
                    .field("stream-time", pts.nseconds())
                    // None: the next picture, which is this one.
                    .field("running-time", u64::MAX)
                    .field("all-headers", true)
                    .field("count", 0u32)
                    .build(),
            )
            .build();
            let _ = pad.send_event(event);
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

fn attach_sink(appsink: &gst_app::AppSink, rung: usize, sink: OutputSink) {
    let eos_sink = sink.clone();
    let mut announced = false;
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if !announced {
                    if let Some(out) = config_of(&sample, rung) {
                        sink(out);
                        announced = true;
                    }
                }
                let Some(buf) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Ok(map) = buf.map_readable() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let pts = buf.pts().map_or(0, |t| t.nseconds());
                sink(Output::Picture {
                    rung,
                    pts_ns: pts,
                    dts_ns: buf.dts().map_or(pts, |t| t.nseconds()),
                    keyframe: !buf.flags().contains(gst::BufferFlags::DELTA_UNIT),
                    data: Bytes::copy_from_slice(map.as_slice()),
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .eos(move |_| eos_sink(Output::Finished { rung }))
            .build(),
    );
}

fn config_of(sample: &gst::Sample, rung: usize) -> Option<Output> {
    let s = sample.caps()?.structure(0)?;
    let avcc = s.get::<gst::Buffer>("codec_data").ok()?;
    let avcc = Bytes::copy_from_slice(avcc.map_readable().ok()?.as_slice());
    Some(Output::Config {
        rung,
        width: s.get::<i32>("width").ok()?.max(0) as u32,
        height: s.get::<i32>("height").ok()?.max(0) as u32,
        avcc,
    })
}
