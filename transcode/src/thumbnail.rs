//! A JPEG of the frame shown at a presentation time, from fragmented MP4
//! (CMAF) bytes: an init segment and the media fragments of one video track
//! (H.264 or HEVC).
//!
//! Design: [`crate::fmp4`] indexes the input first (no GStreamer), which
//! rejects garbage early, names the codec, answers [`ThumbnailError::PastEnd`]
//! without decoding, and gives the exact presentation time of the frame
//! shown at the asked time: the largest PTS at or before it (the first frame
//! for a time before it). Then two short pipelines run under one deadline:
//!
//! 1. decode: `appsrc` (the pieces, zero-copy) → `qtdemux` → `h264parse` /
//!    `h265parse` → `avdec_h264` / `avdec_h265` → `appsink`. Frames come out
//!    in presentation order; the wait stops at the asked frame. With B-frames
//!    that frame is not the keyframe, so the decoder runs forward from the
//!    fragment's keyframe; unreferenced pictures other than the asked one
//!    are dropped before the decoder ([`crate::nal`]). qtdemux's timestamps
//!    are mapped to the index's by the first sample it emits (edit lists may
//!    shift them).
//! 2. encode: `appsrc` (that one raw frame) → `videoconvert` (RGB) →
//!    `videoscale` → `capsfilter` (the output size, square pixels) →
//!    `videoconvert` (I420, BT.601 full range as JFIF wants) → `jpegenc`
//!    → `appsink`. Only the chosen frame is converted and encoded.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::fmp4::{self, InputError, Shown, TrackIndex};
use crate::nal;
use crate::pipeline::{self, Deadline, GstError, Running};

/// Largest output: every thumbnail fits inside this box.
pub const MAX_WIDTH: u32 = 3840;
pub const MAX_HEIGHT: u32 = 2160;
/// `range:matrix:transfer:primaries`: full range (1), BT.601 (4), transfer
/// and primaries unspecified.
const JFIF_COLORIMETRY: &str = "1:4:0:0";
/// The whole job (both pipelines) ends with [`ThumbnailError::Timeout`]
/// after this long.
pub const TIME_LIMIT: Duration = Duration::from_secs(10);

/// The input: pieces that, concatenated, are an init segment (`ftyp` +
/// `moov`) followed by one or more fragments (`moof` + `mdat`) of one video
/// track. The pieces may be cut anywhere.
#[derive(Debug, Clone, Copy)]
pub struct ThumbnailInput<'a> {
    pub pieces: &'a [Bytes],
}

impl<'a> ThumbnailInput<'a> {
    pub fn new(pieces: &'a [Bytes]) -> Self {
        ThumbnailInput { pieces }
    }
}

impl<'a> From<&'a [Bytes]> for ThumbnailInput<'a> {
    fn from(pieces: &'a [Bytes]) -> Self {
        ThumbnailInput { pieces }
    }
}

/// What to render.
///
/// Size: neither `width` nor `height` gives the picture's own display size
/// (square pixels); one of them scales to it and keeps the aspect ratio;
/// both give the largest picture that fits inside `width` × `height` and
/// keeps the aspect ratio (no borders, no distortion: one side may come out
/// smaller than asked). Any result is also fitted inside
/// [`MAX_WIDTH`] × [`MAX_HEIGHT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThumbnailRequest {
    /// Presentation time in `timescale` units on the fragments' own
    /// timeline (`tfdt` plus composition offsets, edit lists ignored).
    pub time_ticks: i64,
    /// Units of `time_ticks` per second; normally the track's timescale,
    /// any other is converted (rounding down).
    pub timescale: u32,
    /// 1..=[`MAX_WIDTH`].
    pub width: Option<u32>,
    /// 1..=[`MAX_HEIGHT`].
    pub height: Option<u32>,
    /// JPEG quality, 1..=100.
    pub quality: u8,
}

impl ThumbnailRequest {
    pub const DEFAULT_QUALITY: u8 = 85;

    /// The picture at `time_ticks`, at its own size, default quality.
    pub fn at(time_ticks: i64, timescale: u32) -> Self {
        ThumbnailRequest {
            time_ticks,
            timescale,
            width: None,
            height: None,
            quality: Self::DEFAULT_QUALITY,
        }
    }
}

/// The part of the job that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Feeding the bytes in (`appsrc`).
    Input,
    /// Reading the MP4 structure (`qtdemux`): corrupt input.
    Demux,
    /// Parsing and decoding the video.
    Decode,
    /// Colour conversion and scaling.
    Scale,
    /// JPEG encoding.
    Encode,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Input => "input (appsrc)",
            Stage::Demux => "demuxing (qtdemux)",
            Stage::Decode => "decoding",
            Stage::Scale => "scaling (videoconvert/videoscale)",
            Stage::Encode => "JPEG encoding (jpegenc)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThumbnailError {
    #[error("invalid thumbnail request: {0}")]
    InvalidRequest(&'static str),
    #[error("the input is not usable fragmented MP4: {0}")]
    Input(#[from] InputError),
    #[error("no thumbnail for video codec `{0}` (H.264 and HEVC are supported)")]
    UnsupportedCodec(String),
    /// The asked time is at or after the end of the last frame of the
    /// given fragments.
    #[error("the asked time is past the end of the given fragments")]
    PastEnd,
    #[error("GStreamer is not usable: {0}")]
    Unavailable(String),
    #[error("{stage}: GStreamer element `{factory}` is missing (Debian package {package})")]
    MissingElement {
        stage: Stage,
        factory: &'static str,
        package: &'static str,
    },
    #[error("{stage} failed in `{element}`: {message}")]
    Failed {
        stage: Stage,
        element: String,
        message: String,
    },
    #[error("{stage} did not finish within {after:?}")]
    Timeout { stage: Stage, after: Duration },
    #[error("the decoder gave no frame")]
    NoFrame,
}

/// The pipeline elements' names, which say the stage of an error.
fn stage_of(element: &str) -> Stage {
    match element {
        "input" => Stage::Input,
        "demux" => Stage::Demux,
        "parse" | "decode" | "frames" => Stage::Decode,
        other if other.starts_with("other-") => Stage::Decode,
        "frame" | "scale" | "size" | "convert" | "rgb" | "convert-yuv" | "yuv" => Stage::Scale,
        _ => Stage::Encode,
    }
}

fn gst_error(stage: Stage, e: GstError) -> ThumbnailError {
    match e {
        GstError::Unavailable(m) => ThumbnailError::Unavailable(m),
        GstError::MissingElement { factory, package } => ThumbnailError::MissingElement {
            stage,
            factory,
            package,
        },
        GstError::Build(message) => ThumbnailError::Failed {
            stage,
            element: "pipeline".into(),
            message,
        },
        GstError::Element {
            element,
            message,
            debug,
        } => {
            let debug = debug.unwrap_or_default();
            // A source reports "not-negotiated" when an element downstream
            // refused the stream's format: in the decode pipeline that is
            // the parser or decoder refusing the codec configuration.
            let (stage, message) = if element == "input" && debug.contains("not-negotiated") {
                (
                    Stage::Decode,
                    format!("the parser/decoder refused the stream's codec configuration ({message} {debug})"),
                )
            } else {
                (stage_of(&element), format!("{message} ({debug})"))
            };
            ThumbnailError::Failed {
                stage,
                element,
                message,
            }
        }
        GstError::Timeout(after) => ThumbnailError::Timeout { stage, after },
    }
}

/// How a sample entry is decoded.
struct Codec {
    kind: nal::Kind,
    caps: &'static str,
    parser: &'static str,
    decoder: &'static str,
}

fn codec_of(sample_entry: &[u8; 4]) -> Result<Codec, ThumbnailError> {
    match sample_entry {
        b"avc1" | b"avc3" => Ok(Codec {
            kind: nal::Kind::H264,
            caps: "video/x-h264",
            parser: "h264parse",
            decoder: "avdec_h264",
        }),
        b"hvc1" | b"hev1" => Ok(Codec {
            kind: nal::Kind::H265,
            caps: "video/x-h265",
            parser: "h265parse",
            decoder: "avdec_h265",
        }),
        other => Err(ThumbnailError::UnsupportedCodec(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}

/// Renders the frame shown at `request.time_ticks` as a JPEG, within
/// [`TIME_LIMIT`]. Blocking: run it with `tokio::task::spawn_blocking`.
pub fn thumbnail(
    input: ThumbnailInput<'_>,
    request: &ThumbnailRequest,
) -> Result<Vec<u8>, ThumbnailError> {
    thumbnail_within(input, request, TIME_LIMIT)
}

/// The presentation time of the last frame of the input, in the track's
/// timescale: `(time_ticks, timescale)` for a [`ThumbnailRequest`] of the
/// latest picture (a live stream's `latest.jpg`). Reads only the boxes.
pub fn last_frame_time(input: ThumbnailInput<'_>) -> Result<(i64, u32), ThumbnailError> {
    let index = fmp4::index(input.pieces)?;
    let last = index
        .samples
        .iter()
        .map(|s| s.pts)
        .max()
        .ok_or(InputError::NoSamples)?;
    Ok((last, index.timescale))
}

/// [`thumbnail`] with another time limit for the whole job.
pub fn thumbnail_within(
    input: ThumbnailInput<'_>,
    request: &ThumbnailRequest,
    limit: Duration,
) -> Result<Vec<u8>, ThumbnailError> {
    let started = Instant::now();
    let deadline = Deadline::after(limit);
    validate(request)?;
    let index = fmp4::index(input.pieces)?;
    let codec = codec_of(&index.sample_entry)?;
    let t = convert_time(request.time_ticks, request.timescale, index.timescale);
    let target = match index.shown_at(t) {
        Shown::Frame { pts } => pts,
        Shown::PastEnd => return Err(ThumbnailError::PastEnd),
    };
    pipeline::init().map_err(|e| gst_error(Stage::Input, e))?;
    let decoding = Instant::now();
    let frame = decode_frame(input.pieces, &index, &codec, target, deadline)?;
    let encoding = Instant::now();
    let jpeg = encode_jpeg(&frame, request, deadline)?;
    tracing::debug!(
        samples = index.samples.len(),
        index_us = (decoding - started).as_micros() as u64,
        decode_ms = (encoding - decoding).as_millis() as u64,
        encode_ms = encoding.elapsed().as_millis() as u64,
        bytes = jpeg.len(),
        "thumbnail"
    );
    Ok(jpeg)
}

fn validate(r: &ThumbnailRequest) -> Result<(), ThumbnailError> {
    if r.timescale == 0 {
        return Err(ThumbnailError::InvalidRequest("timescale is 0"));
    }
    if r.width.is_some_and(|w| !(1..=MAX_WIDTH).contains(&w)) {
        return Err(ThumbnailError::InvalidRequest(
            "width must be between 1 and 3840",
        ));
    }
    if r.height.is_some_and(|h| !(1..=MAX_HEIGHT).contains(&h)) {
        return Err(ThumbnailError::InvalidRequest(
            "height must be between 1 and 2160",
        ));
    }
    if !(1..=100).contains(&r.quality) {
        return Err(ThumbnailError::InvalidRequest(
            "quality must be between 1 and 100",
        ));
    }
    Ok(())
}

/// `t` from timescale `from` to `to`, rounding down.
fn convert_time(t: i64, from: u32, to: u32) -> i64 {
    if from == to {
        return t;
    }
    let v = (i128::from(t) * i128::from(to)).div_euclid(i128::from(from));
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn ticks_to_ns(t: i64, timescale: u32) -> i128 {
    i128::from(t) * 1_000_000_000 / i128::from(timescale)
}

/// Decodes forward to the frame whose presentation time is `target` (track
/// ticks) and returns it raw.
fn decode_frame(
    pieces: &[Bytes],
    index: &TrackIndex,
    codec: &Codec,
    target: i64,
    deadline: Deadline,
) -> Result<gst::Sample, ThumbnailError> {
    let setup = |e| gst_error(Stage::Decode, e);
    let demux = pipeline::make("qtdemux", "demux").map_err(|e| gst_error(Stage::Demux, e))?;
    let parse = pipeline::make(codec.parser, "parse").map_err(setup)?;
    let decode = pipeline::make(codec.decoder, "decode").map_err(setup)?;
    let total: u64 = pieces.iter().map(|p| p.len() as u64).sum();
    let src = gst_app::AppSrc::builder()
        .name("input")
        .caps(&gst::Caps::builder("video/quicktime").build())
        .format(gst::Format::Bytes)
        .max_bytes(total.saturating_add(1))
        .build();
    let sink = gst_app::AppSink::builder()
        .name("frames")
        .caps(&gst::Caps::builder("video/x-raw").build())
        .sync(false)
        .max_buffers(4)
        .enable_last_sample(false)
        .build();

    let pipe = gst::Pipeline::with_name("thumbnail-decode");
    pipeline::add_linked(&pipe, &[src.upcast_ref(), &demux]).map_err(setup)?;
    pipeline::add_linked(&pipe, &[&parse, &decode, sink.upcast_ref()]).map_err(setup)?;

    // qtdemux's pads appear once it has read the moov: the video one goes to
    // the parser, any other (the index allows one video track, but an init
    // segment may also describe audio) to a fakesink.
    let parse_sink = parse
        .static_pad("sink")
        .ok_or_else(|| setup(GstError::Build("parser without a sink pad".into())))?;
    let weak_pipe = pipe.downgrade();
    let video_caps = codec.caps;
    demux.connect_pad_added(move |_, pad| {
        // qtdemux sets a pad's caps before adding it; its name says the
        // kind if not.
        let is_video = match pad.current_caps() {
            Some(c) => c.structure(0).is_some_and(|s| s.name() == video_caps),
            None => pad.name().starts_with("video_"),
        };
        if is_video && !parse_sink.is_linked() {
            let _ = pad.link(&parse_sink);
        } else if let Some(p) = weak_pipe.upgrade() {
            let name = format!("other-{}", pad.name());
            if let Ok(fake) = gst::ElementFactory::make("fakesink").name(name).build() {
                fake.set_property("sync", false);
                // Not part of the preroll: qtdemux's one streaming thread
                // blocks in the prerolled video branch until PLAYING, and
                // would never bring this sink its first buffer.
                fake.set_property("async", false);
                if p.add(&fake).is_ok() {
                    let _ = fake.sync_state_with_parent();
                    if let Some(sinkpad) = fake.static_pad("sink") {
                        let _ = pad.link(&sinkpad);
                    }
                }
            }
        }
    });

    // The first buffer that qtdemux emits is the index's first sample: the
    // difference of their times maps one timeline to the other. Before the
    // decoder, access units that no picture references and that are not
    // the asked frame are dropped (see `crate::nal`).
    let first_pts_ns = ticks_to_ns(index.samples[0].pts, index.timescale);
    let target_ns = ticks_to_ns(target, index.timescale);
    let tolerance = ticks_to_ns(index.half_min_gap(), index.timescale).max(1);
    let offset: Arc<Mutex<Option<i128>>> = Arc::new(Mutex::new(None));
    if let Some(pad) = parse.static_pad("sink") {
        let offset = offset.clone();
        let kind = codec.kind;
        let length_size: Arc<OnceLock<Option<usize>>> = Arc::new(OnceLock::new());
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(buf) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(pts) = buf.pts() else {
                return gst::PadProbeReturn::Ok;
            };
            let pts = i128::from(pts.nseconds());
            let base = *offset
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(pts - first_pts_ns);
            if (pts - base - target_ns).abs() <= tolerance {
                return gst::PadProbeReturn::Ok;
            }
            let length_size = *length_size.get_or_init(|| {
                let caps = pad.current_caps()?;
                let record = caps.structure(0)?.get::<gst::Buffer>("codec_data").ok()?;
                let map = record.map_readable().ok()?;
                nal::length_size(kind, &map)
            });
            match (length_size, buf.map_readable()) {
                (Some(n), Ok(map)) if nal::is_disposable(kind, n, &map) => {
                    gst::PadProbeReturn::Drop
                }
                _ => gst::PadProbeReturn::Ok,
            }
        });
    }

    let run = Running::start(pipe, deadline).map_err(setup)?;
    for piece in pieces {
        if src
            .push_buffer(gst::Buffer::from_slice(piece.clone()))
            .is_err()
        {
            // The pipeline already failed (its error is on the bus) or
            // stopped; the pull below says which.
            break;
        }
    }
    let _ = src.end_of_stream();

    let mut earlier: Option<gst::Sample> = None;
    loop {
        let Some(sample) = run.pull(&sink).map_err(setup)? else {
            // End of stream before the asked frame: the last frame before
            // it is the best there is (a decoder may drop frames).
            return earlier.ok_or(ThumbnailError::NoFrame);
        };
        let Some(pts) = sample.buffer().and_then(|b| b.pts()) else {
            continue;
        };
        let base = offset
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(0);
        let pts = i128::from(pts.nseconds()) - base;
        if (pts - target_ns).abs() <= tolerance {
            return Ok(sample);
        }
        if pts > target_ns {
            // Past the asked frame without meeting it: the frame before it
            // is shown at the asked time (or, if none came, this first one).
            return Ok(earlier.unwrap_or(sample));
        }
        earlier = Some(sample);
    }
}

fn caps_filter(name: &str, caps: gst::Caps) -> Result<gst::Element, GstError> {
    let f = pipeline::make("capsfilter", name)?;
    f.set_property("caps", caps);
    Ok(f)
}

/// Scales `frame` to the requested size and encodes it as a JPEG.
fn encode_jpeg(
    frame: &gst::Sample,
    request: &ThumbnailRequest,
    deadline: Deadline,
) -> Result<Vec<u8>, ThumbnailError> {
    let setup = |e| gst_error(Stage::Scale, e);
    let caps = frame.caps().ok_or(ThumbnailError::NoFrame)?.to_owned();
    let buffer = frame.buffer_owned().ok_or(ThumbnailError::NoFrame)?;
    let s = caps.structure(0).ok_or(ThumbnailError::NoFrame)?;
    let w = s.get::<i32>("width").map_err(|_| ThumbnailError::NoFrame)?;
    let h = s
        .get::<i32>("height")
        .map_err(|_| ThumbnailError::NoFrame)?;
    let par = s
        .get::<gst::Fraction>("pixel-aspect-ratio")
        .map(|f| (f.numer(), f.denom()))
        .unwrap_or((1, 1));
    let (out_w, out_h) = output_size(
        (w.max(1) as u32, h.max(1) as u32),
        par,
        request.width,
        request.height,
    );

    // JFIF's colours are BT.601, full range. videoconvert 1.22 leaves YUV
    // to YUV range changes undone (limited-range video would come out
    // washed out) and videoscale's I420 path is off by a fraction of a
    // pixel, so the frame goes to RGB, is scaled there, and goes back to
    // full-range I420 (jpegenc given RGB would write an RGB JPEG).
    let to_rgb = pipeline::make("videoconvert", "convert").map_err(setup)?;
    let rgb = caps_filter(
        "rgb",
        gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .build(),
    )
    .map_err(setup)?;
    let scale = pipeline::make("videoscale", "scale").map_err(setup)?;
    // The size is already the aspect-keeping one, rounded: no letterbox
    // line for the rounding.
    scale.set_property("add-borders", false);
    let size = caps_filter("size", {
        gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", out_w as i32)
            .field("height", out_h as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build()
    })
    .map_err(setup)?;
    let to_yuv = pipeline::make("videoconvert", "convert-yuv").map_err(setup)?;
    let yuv = caps_filter("yuv", {
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("colorimetry", JFIF_COLORIMETRY)
            .build()
    })
    .map_err(setup)?;
    let encode = pipeline::make("jpegenc", "encode").map_err(|e| gst_error(Stage::Encode, e))?;
    encode.set_property("quality", i32::from(request.quality));
    let src = gst_app::AppSrc::builder()
        .name("frame")
        .caps(&caps)
        .format(gst::Format::Time)
        .build();
    let sink = gst_app::AppSink::builder()
        .name("jpeg")
        .sync(false)
        .enable_last_sample(false)
        .build();
    let pipe = gst::Pipeline::with_name("thumbnail-encode");
    pipeline::add_linked(
        &pipe,
        &[
            src.upcast_ref(),
            &to_rgb,
            &rgb,
            &scale,
            &size,
            &to_yuv,
            &yuv,
            &encode,
            sink.upcast_ref(),
        ],
    )
    .map_err(setup)?;
    let run = Running::start(pipe, deadline).map_err(setup)?;
    let _ = src.push_buffer(buffer);
    let _ = src.end_of_stream();
    let jpeg = run
        .pull(&sink)
        .map_err(|e| gst_error(Stage::Encode, e))?
        .ok_or_else(|| ThumbnailError::Failed {
            stage: Stage::Encode,
            element: "encode".into(),
            message: "no picture came out".into(),
        })?;
    let buf = jpeg.buffer().ok_or(ThumbnailError::NoFrame)?;
    let map = buf.map_readable().map_err(|_| ThumbnailError::Failed {
        stage: Stage::Encode,
        element: "jpeg".into(),
        message: "cannot read the JPEG".into(),
    })?;
    Ok(map.as_slice().to_vec())
}

/// The output size for a `coded` picture with pixel aspect ratio `par`
/// (see [`ThumbnailRequest`]); always at least 1×1 and inside
/// [`MAX_WIDTH`] × [`MAX_HEIGHT`].
pub fn output_size(
    coded: (u32, u32),
    par: (i32, i32),
    width: Option<u32>,
    height: Option<u32>,
) -> (u32, u32) {
    let (pn, pd) = if par.0 > 0 && par.1 > 0 {
        (f64::from(par.0), f64::from(par.1))
    } else {
        (1.0, 1.0)
    };
    // Display size: square pixels.
    let dw = f64::from(coded.0.max(1)) * pn / pd;
    let dh = f64::from(coded.1.max(1));
    let (w, h) = match (width, height) {
        (None, None) => (dw, dh),
        (Some(w), None) => (f64::from(w), f64::from(w) * dh / dw),
        (None, Some(h)) => (f64::from(h) * dw / dh, f64::from(h)),
        (Some(w), Some(h)) => {
            let s = (f64::from(w) / dw).min(f64::from(h) / dh);
            ((dw * s).min(f64::from(w)), (dh * s).min(f64::from(h)))
        }
    };
    let cap = (f64::from(MAX_WIDTH) / w)
        .min(f64::from(MAX_HEIGHT) / h)
        .min(1.0);
    let round = |v: f64, max: u32| (v.round() as u32).clamp(1, max);
    (round(w * cap, MAX_WIDTH), round(h * cap, MAX_HEIGHT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_keeps_the_aspect_ratio() {
        let sq = (1, 1);
        assert_eq!(output_size((1920, 1080), sq, None, None), (1920, 1080));
        assert_eq!(output_size((1920, 1080), sq, Some(320), None), (320, 180));
        assert_eq!(output_size((1920, 1080), sq, None, Some(90)), (160, 90));
        // Both: fit inside the box.
        assert_eq!(
            output_size((1920, 1080), sq, Some(320), Some(320)),
            (320, 180)
        );
        assert_eq!(
            output_size((1920, 1080), sq, Some(1000), Some(90)),
            (160, 90)
        );
        // Anamorphic: 1440x1080 at 4:3 pixels displays as 1920x1080.
        assert_eq!(output_size((1440, 1080), (4, 3), None, None), (1920, 1080));
        assert_eq!(
            output_size((1440, 1080), (4, 3), Some(480), None),
            (480, 270)
        );
        // Capped at 3840x2160, aspect kept.
        assert_eq!(output_size((7680, 4320), sq, None, None), (3840, 2160));
        assert_eq!(
            output_size((1080, 1920), sq, Some(3840), None),
            (1215, 2160)
        );
        // Never zero.
        assert_eq!(output_size((4000, 2), sq, Some(100), None), (100, 1));
    }

    #[test]
    fn requests_out_of_range_are_refused() {
        let ok = ThumbnailRequest::at(0, 90_000);
        assert_eq!(validate(&ok), Ok(()));
        for bad in [
            ThumbnailRequest {
                timescale: 0,
                ..ok.clone()
            },
            ThumbnailRequest {
                width: Some(0),
                ..ok.clone()
            },
            ThumbnailRequest {
                width: Some(100_000),
                ..ok.clone()
            },
            ThumbnailRequest {
                height: Some(2161),
                ..ok.clone()
            },
            ThumbnailRequest {
                quality: 0,
                ..ok.clone()
            },
            ThumbnailRequest {
                quality: 101,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(validate(&bad), Err(ThumbnailError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn times_convert_between_timescales_rounding_down() {
        assert_eq!(convert_time(90_000, 90_000, 90_000), 90_000);
        assert_eq!(convert_time(1_000, 1_000, 12_800), 12_800);
        assert_eq!(convert_time(1, 1_000, 12_800), 12);
        assert_eq!(convert_time(-1, 1_000, 12_800), -13);
        assert_eq!(convert_time(i64::MAX, 1, 90_000), i64::MAX);
    }
}
