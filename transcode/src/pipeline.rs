//! GStreamer plumbing shared by Vela's media jobs (thumbnails now, cloud
//! encoding of ABR ladders later): initialise GStreamer once, create
//! elements with an error that names the missing plugin package, and run a
//! pipeline with bounded waits.
//!
//! Everything here blocks; callers run it on a blocking thread. A
//! [`Running`] pipeline carries a deadline: every wait (for a sample, for an
//! error on the bus) is cut at that deadline, and dropping it stops the
//! pipeline (state NULL), whatever happened. A failure is reported with the
//! name of the pipeline's element that posted it (an element inside a bin is
//! reported as the bin), so the caller can say which stage failed.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// How often a wait for a sample also looks at the bus for an error.
const POLL: Duration = Duration::from_millis(20);

/// Why a GStreamer job could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GstError {
    #[error("GStreamer cannot be initialised: {0}")]
    Unavailable(String),
    #[error("GStreamer element `{factory}` is missing (Debian package {package})")]
    MissingElement {
        factory: &'static str,
        package: &'static str,
    },
    #[error("cannot build the pipeline: {0}")]
    Build(String),
    /// An element posted an error; `element` is the name of the pipeline's
    /// direct child that it belongs to.
    #[error("`{element}`: {message}")]
    Element {
        element: String,
        message: String,
        debug: Option<String>,
    },
    #[error("no result within {0:?}")]
    Timeout(Duration),
}

static INIT: OnceLock<Result<(), String>> = OnceLock::new();

/// Initialises GStreamer once per process; later calls return the first
/// outcome.
pub fn init() -> Result<(), GstError> {
    INIT.get_or_init(|| gst::init().map_err(|e| e.to_string()))
        .clone()
        .map_err(GstError::Unavailable)
}

/// The Debian package that ships an element factory, for error messages.
pub fn package_of(factory: &str) -> &'static str {
    match factory {
        "capsfilter" | "fakesink" | "queue" => "libgstreamer1.0-0",
        "appsrc" | "appsink" | "videoconvert" | "videoscale" => "gstreamer1.0-plugins-base",
        "qtdemux" | "jpegenc" => "gstreamer1.0-plugins-good",
        "h264parse" | "h265parse" => "gstreamer1.0-plugins-bad",
        f if f.starts_with("avdec_") || f.starts_with("avenc_") => "gstreamer1.0-libav",
        _ => "the GStreamer plugin that provides it",
    }
}

/// Whether an element factory is installed.
pub fn has_element(factory: &str) -> Result<bool, GstError> {
    init()?;
    Ok(gst::ElementFactory::find(factory).is_some())
}

/// Creates an element named `name`, or says which package is missing.
pub fn make(factory: &'static str, name: &str) -> Result<gst::Element, GstError> {
    if !has_element(factory)? {
        return Err(GstError::MissingElement {
            factory,
            package: package_of(factory),
        });
    }
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|e| GstError::Build(format!("{factory}: {e}")))
}

/// Adds `elements` to `pipeline` and links them in order.
pub fn add_linked(pipeline: &gst::Pipeline, elements: &[&gst::Element]) -> Result<(), GstError> {
    pipeline
        .add_many(elements.iter().copied())
        .map_err(|e| GstError::Build(e.to_string()))?;
    gst::Element::link_many(elements.iter().copied()).map_err(|e| GstError::Build(e.to_string()))
}

/// When a job (one or more pipelines in a row) must be done.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    /// The job's whole time limit, for the error message.
    limit: Duration,
}

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }
}

/// A pipeline in PLAYING with a deadline; dropping it sets it to NULL.
pub struct Running {
    pipeline: gst::Pipeline,
    bus: gst::Bus,
    deadline: Deadline,
}

impl Running {
    /// Starts `pipeline`; every later wait ends by `deadline`.
    pub fn start(pipeline: gst::Pipeline, deadline: Deadline) -> Result<Self, GstError> {
        let bus = pipeline
            .bus()
            .ok_or_else(|| GstError::Build("the pipeline has no bus".into()))?;
        let run = Running {
            pipeline,
            bus,
            deadline,
        };
        if run.pipeline.set_state(gst::State::Playing).is_err() {
            return Err(run
                .bus_error()
                .unwrap_or_else(|| GstError::Build("the pipeline refused to start".into())));
        }
        Ok(run)
    }

    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// The next sample of `sink`, or `None` at the end of the stream. An
    /// error posted by any element, or the deadline, ends the wait.
    pub fn pull(&self, sink: &gst_app::AppSink) -> Result<Option<gst::Sample>, GstError> {
        loop {
            if let Some(e) = self.bus_error() {
                return Err(e);
            }
            let now = Instant::now();
            if now >= self.deadline.at {
                return Err(GstError::Timeout(self.deadline.limit));
            }
            let wait = (self.deadline.at - now).min(POLL);
            let wait = gst::ClockTime::from_nseconds(wait.as_nanos() as u64);
            if let Some(sample) = sink.try_pull_sample(wait) {
                return Ok(Some(sample));
            }
            if sink.is_eos() {
                // An element that fails may still let EOS through; its
                // error is the better answer.
                return match self.bus_error() {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            }
        }
    }

    /// The first error waiting on the bus, if any (without blocking).
    fn bus_error(&self) -> Option<GstError> {
        while let Some(msg) = self.bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Some(GstError::Element {
                    element: self.stage_element(msg.src()),
                    message: e.error().to_string(),
                    debug: e.debug().map(|d| d.to_string()),
                });
            }
        }
        None
    }

    /// The name of the pipeline's direct child that `src` is or is inside.
    fn stage_element(&self, src: Option<&gst::Object>) -> String {
        let Some(src) = src else {
            return "unknown".into();
        };
        let mut obj = src.clone();
        // Pads post through their element; bins' children report as the bin.
        while let Some(parent) = obj.parent() {
            if parent == *self.pipeline.upcast_ref::<gst::Object>() {
                break;
            }
            obj = parent;
        }
        obj.name().to_string()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// appsrc → (`middle`) → appsink.
    fn app_pipeline(
        middle: Option<gst::Element>,
        caps: Option<&str>,
    ) -> (gst::Pipeline, gst_app::AppSrc, gst_app::AppSink) {
        init().unwrap();
        let src = gst_app::AppSrc::builder().name("src").build();
        if let Some(c) = caps {
            src.set_caps(Some(&gst::Caps::builder(c).build()));
        }
        let sink = gst_app::AppSink::builder().name("sink").sync(false).build();
        let pipe = gst::Pipeline::new();
        let mut chain: Vec<gst::Element> = vec![src.clone().upcast()];
        chain.extend(middle);
        chain.push(sink.clone().upcast());
        add_linked(&pipe, &chain.iter().collect::<Vec<_>>()).unwrap();
        (pipe, src, sink)
    }

    #[test]
    fn a_wait_ends_at_the_deadline() {
        let (pipe, _src, sink) = app_pipeline(None, None);
        let limit = Duration::from_millis(150);
        let run = Running::start(pipe, Deadline::after(limit)).unwrap();
        // Nothing is ever pushed: only the deadline ends the wait.
        assert_eq!(run.pull(&sink).unwrap_err(), GstError::Timeout(limit));
    }

    #[test]
    fn an_element_error_names_the_element_and_eos_is_none() {
        // jpegdec fails at the first undecodable picture with max-errors 0.
        let dec = make("jpegdec", "middle").unwrap();
        dec.set_property("max-errors", 0i32);
        let (pipe, src, sink) = app_pipeline(Some(dec), Some("image/jpeg"));
        let run = Running::start(pipe, Deadline::after(Duration::from_secs(10))).unwrap();
        src.push_buffer(gst::Buffer::from_slice(vec![0x55u8; 4096]))
            .unwrap();
        src.end_of_stream().unwrap();
        match run.pull(&sink) {
            Err(GstError::Element { element, .. }) => assert_eq!(element, "middle"),
            other => panic!("{other:?}"),
        }

        let (pipe, src, sink) = app_pipeline(None, None);
        let run = Running::start(pipe, Deadline::after(Duration::from_secs(10))).unwrap();
        src.push_buffer(gst::Buffer::from_slice(vec![1u8; 16]))
            .unwrap();
        src.end_of_stream().unwrap();
        assert!(run.pull(&sink).unwrap().is_some());
        assert!(run.pull(&sink).unwrap().is_none());
    }

    #[test]
    fn a_missing_element_names_its_package() {
        assert_eq!(
            make("avdec_no_such_codec", "x").unwrap_err(),
            GstError::MissingElement {
                factory: "avdec_no_such_codec",
                package: "gstreamer1.0-libav"
            }
        );
    }
}
