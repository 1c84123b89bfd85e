//! The live side: a stage between a stream's hub channel and its packager.
//!
//! [`LiveLadders::transform`] takes the receiver a consumer got from the hub
//! and returns another one that carries the same events plus the encoded
//! renditions: the source's tracks and frames pass through untouched (the
//! `source` flavor, and the fallback whenever encoding cannot run), and each
//! rung is one more video track whose frames come back from the
//! [`Encoder`](super::encoder::Encoder). So the encoder is a consumer of a
//! stream and a producer of renditions, not part of ingest, and anything that
//! turns a receiver into a receiver could run it elsewhere.
//!
//! The packager learns a stream's tracks once (tracks added later are
//! ignored), so the first `Tracks` event is held back, with the source events
//! after it, until every rung has reported its format (a fraction of a second;
//! at most [`START_LIMIT`], after which the stream goes on as passthrough).
//!
//! Capacity: a [`Budget`] counts the ladders running on this node; a stream
//! that would exceed it stays passthrough, with a log line and
//! `vela_encode_fallbacks_total{reason="budget"}`. A pipeline that fails is
//! dropped (passthrough keeps flowing) and started again at a source keyframe
//! after [`RESTART_DELAY`]. A source whose size changes gets a new pipeline
//! and new rendition formats (the packager starts new init segments).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use vela_media::{CodecConfig, Frame, MediaEvent, Track, TrackSet, VideoCodec};

use super::encoder::{Encoder, Output};
use super::metrics;
use super::plan::{self, Rung, RungSpec};

/// How long the first rendition formats may take before the stream goes on as
/// passthrough.
pub const START_LIMIT: Duration = Duration::from_secs(5);
/// How long after a failure a pipeline is started again.
pub const RESTART_DELAY: Duration = Duration::from_secs(2);
/// Source events held while the first formats are awaited, at most.
const MAX_HELD: usize = 4096;
/// Rendition track ids start here (source tracks keep theirs).
pub const RENDITION_TRACK_BASE: u32 = 100;

/// The ladder of a stream, looked up when it starts (`None`: passthrough).
pub type LadderLookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Option<Vec<RungSpec>>> + Send>> + Send + Sync,
>;

/// How many ladders may run at once on this node.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            max,
            used: AtomicUsize::new(0),
        })
    }

    /// The default: one ladder per two cores, at least one.
    pub fn default_max() -> usize {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get() / 2)
            .max(1)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// A slot, or `None` when the budget is spent.
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            if cur >= self.max {
                return None;
            }
            match self
                .used
                .compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    metrics::LADDERS.inc();
                    return Some(Slot(self.clone()));
                }
                Err(now) => cur = now,
            }
        }
    }
}

/// One ladder's share of the budget, given back on drop.
#[derive(Debug)]
pub struct Slot(Arc<Budget>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
        metrics::LADDERS.dec();
    }
}

/// The live encoding stage of a node.
#[derive(Clone)]
pub struct LiveLadders {
    lookup: LadderLookup,
    budget: Arc<Budget>,
    capacity: usize,
}

impl LiveLadders {
    /// `capacity`: the output channel's (as the hub's).
    pub fn new(lookup: LadderLookup, budget: Arc<Budget>, capacity: usize) -> Self {
        LiveLadders {
            lookup,
            budget,
            capacity: capacity.max(16),
        }
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The stream `name`'s events with its renditions added. Spawns the stage
    /// on the current runtime; returns at once (safe under the hub's lock).
    pub fn transform(
        &self,
        name: &str,
        input: broadcast::Receiver<MediaEvent>,
    ) -> broadcast::Receiver<MediaEvent> {
        let (out, rx) = broadcast::channel(self.capacity);
        let stage = Stage {
            name: name.to_string(),
            out,
            specs: Vec::new(),
            budget: self.budget.clone(),
            source: None,
            announced: None,
            enc: None,
            held: None,
            failed_at: None,
            generation: 0,
        };
        let lookup = self.lookup.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(stage.run(lookup, input));
            }
            Err(_) => tracing::error!(stream = name, "no runtime for the encoding stage"),
        }
        rx
    }
}

/// A running encoder and what it was built for.
struct Running {
    enc: Arc<Encoder>,
    rungs: Vec<Rung>,
    /// Each rung's format once reported: (width, height, avcC).
    formats: Vec<Option<(u32, u32, bytes::Bytes)>>,
    /// The source size it was planned for.
    size: (u16, u16),
    video_track: u32,
    timescale: u32,
    /// A source keyframe was pushed (pictures before the first are not).
    keyed: bool,
    /// The pushed source pictures in decode order, as (pts, dts) ticks, from
    /// index `log_base`: the k-th picture a rung puts out (in presentation
    /// order, x264 makes no B-frames) takes the k-th source decode time, so a
    /// rung's keyframe has the source keyframe's decode time, which is where
    /// the packager cuts, even when the source has B-frames.
    log: std::collections::VecDeque<(i64, i64)>,
    log_base: u64,
    /// Each rung's next index into `log`.
    next: Vec<u64>,
    generation: u64,
    _slot: Slot,
}

impl Running {
    /// The decode time of rung `rung`'s next picture (presentation time `pts`).
    fn decode_time(&mut self, rung: usize, pts: i64, keyframe: bool) -> Option<i64> {
        let next = self.next.get_mut(rung)?;
        if keyframe {
            // Resynchronise on the source picture of the same time.
            if let Some(i) = self.log.iter().position(|&(p, _)| p == pts) {
                *next = self.log_base + i as u64;
            }
        }
        let idx = usize::try_from(next.checked_sub(self.log_base)?).ok()?;
        let &(_, dts) = self.log.get(idx)?;
        *next += 1;
        // Never after the presentation time (a lost picture would shift it).
        Some(dts.min(pts))
    }
}

struct Stage {
    name: String,
    out: broadcast::Sender<MediaEvent>,
    specs: Vec<RungSpec>,
    budget: Arc<Budget>,
    /// The source's tracks.
    source: Option<TrackSet>,
    /// The track set last sent (source + renditions).
    announced: Option<TrackSet>,
    enc: Option<Running>,
    /// Source events held until the first formats are known, and since when.
    held: Option<(Vec<MediaEvent>, Instant)>,
    failed_at: Option<Instant>,
    generation: u64,
}

type Outputs = mpsc::UnboundedReceiver<(u64, Output)>;

fn ns_to_ticks(ns: u64, timescale: u32) -> i64 {
    ((u128::from(ns) * u128::from(timescale) + 500_000_000) / 1_000_000_000) as i64
}

fn ticks_to_ns(ticks: i64, timescale: u32) -> u64 {
    (i128::from(ticks.max(0)) * 1_000_000_000 / i128::from(timescale.max(1))) as u64
}

impl Stage {
    async fn run(mut self, lookup: LadderLookup, mut input: broadcast::Receiver<MediaEvent>) {
        self.specs = lookup(self.name.clone()).await.unwrap_or_default();
        if self.specs.is_empty() {
            return self.forward_only(input).await;
        }
        tracing::info!(
            stream = self.name,
            rungs = self.specs.len(),
            "live encoding stage started"
        );
        let (tx, mut outputs): (_, Outputs) = mpsc::unbounded_channel();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                ev = input.recv() => match ev {
                    Ok(MediaEvent::End) | Err(broadcast::error::RecvError::Closed) => {
                        self.finish(&mut outputs).await;
                        self.emit(MediaEvent::End);
                        break;
                    }
                    Ok(ev) => self.on_source(ev, &tx).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(stream = self.name, missed = n, "encoding stage fell behind; resynchronising");
                        self.emit(MediaEvent::Discontinuity);
                        if let Some(r) = &mut self.enc { r.keyed = false; }
                    }
                },
                Some((generation, out)) = outputs.recv() => self.on_output(generation, out),
                _ = tick.tick() => self.on_tick(&tx).await,
            }
        }
        self.stop_encoder().await;
    }

    /// No ladder: the events pass through unchanged.
    async fn forward_only(self, mut input: broadcast::Receiver<MediaEvent>) {
        loop {
            match input.recv().await {
                Ok(MediaEvent::End) | Err(broadcast::error::RecvError::Closed) => {
                    self.emit(MediaEvent::End);
                    break;
                }
                Ok(ev) => self.emit(ev),
                Err(broadcast::error::RecvError::Lagged(_)) => self.emit(MediaEvent::Discontinuity),
            }
        }
    }

    fn emit(&self, ev: MediaEvent) {
        // No receiver (the packager left) is not an error here.
        let _ = self.out.send(ev);
    }

    /// A source event: held while the first formats are awaited, else sent;
    /// video pictures also go to the encoder.
    async fn on_source(&mut self, ev: MediaEvent, tx: &mpsc::UnboundedSender<(u64, Output)>) {
        match &ev {
            MediaEvent::Tracks(t) => {
                self.source = Some(t.clone());
                self.on_tracks(tx).await;
                if self.held.is_none() {
                    self.announce();
                }
                return;
            }
            MediaEvent::Frame(f) => self.feed(f, tx).await,
            MediaEvent::Discontinuity => {
                // New timestamps: the pipeline starts again with the next Tracks.
                self.stop_encoder().await;
            }
            MediaEvent::End => {}
        }
        match &mut self.held {
            Some((held, _)) if held.len() < MAX_HELD => held.push(ev),
            Some(_) => {
                self.give_up_start("the first rendition formats took too long");
                self.emit(ev);
            }
            None => self.emit(ev),
        }
    }

    /// The source's H.264 video track: (id, timescale, width, height, avcC).
    fn source_video(&self) -> Option<(u32, u32, u16, u16, bytes::Bytes)> {
        self.source
            .as_ref()?
            .iter()
            .find_map(|t: &Track| match &t.config {
                CodecConfig::Video {
                    codec: VideoCodec::H264,
                    width,
                    height,
                    record,
                    ..
                } => Some((t.id, t.timescale, *width, *height, record.clone())),
                _ => None,
            })
    }

    /// (Re)starts the encoder when the source's video is new or changed size.
    async fn on_tracks(&mut self, tx: &mpsc::UnboundedSender<(u64, Output)>) {
        let Some((id, timescale, w, h, avcc)) = self.source_video() else {
            if self.announced.is_none() {
                tracing::warn!(stream = self.name, "no H.264 video to encode; passthrough");
                metrics::FALLBACKS.with_label_values(&["codec"]).inc();
            }
            self.stop_encoder().await;
            return;
        };
        if let Some(r) = &self.enc {
            if r.size == (w, h) && r.video_track == id {
                return;
            }
            tracing::info!(
                stream = self.name,
                width = w,
                height = h,
                "source size changed; new ladder pipeline"
            );
        }
        self.stop_encoder().await;
        self.start_encoder(id, timescale, (w, h), avcc, tx).await;
    }

    async fn start_encoder(
        &mut self,
        video_track: u32,
        timescale: u32,
        size: (u16, u16),
        avcc: bytes::Bytes,
        tx: &mpsc::UnboundedSender<(u64, Output)>,
    ) {
        let rungs = plan::plan(&self.specs, u32::from(size.0), u32::from(size.1));
        if rungs.is_empty() {
            tracing::info!(
                stream = self.name,
                "every rung would upscale the source; passthrough"
            );
            return;
        }
        let Some(slot) = self.budget.take() else {
            tracing::warn!(
                stream = self.name,
                budget = self.budget.max(),
                "encoding budget spent; the stream stays passthrough"
            );
            metrics::FALLBACKS.with_label_values(&["budget"]).inc();
            return;
        };
        self.generation += 1;
        let generation = self.generation;
        let tx = tx.clone();
        let sink: super::encoder::OutputSink = Arc::new(move |o| {
            let _ = tx.send((generation, o));
        });
        let build_rungs = rungs.clone();
        let started =
            tokio::task::spawn_blocking(move || Encoder::start(&avcc, &build_rungs, sink)).await;
        let enc = match started {
            Ok(Ok(enc)) => enc,
            Ok(Err(e)) => {
                tracing::error!(stream = self.name, error = %e, "cannot start the ladder pipeline; passthrough");
                metrics::FAILURES.inc();
                self.failed_at = Some(Instant::now());
                return;
            }
            Err(e) => {
                tracing::error!(stream = self.name, error = %e, "ladder pipeline start panicked; passthrough");
                metrics::FAILURES.inc();
                return;
            }
        };
        tracing::info!(
            stream = self.name,
            rungs = ?rungs.iter().map(|r| format!("{}x{}", r.width, r.height)).collect::<Vec<_>>(),
            "ladder pipeline started"
        );
        let rungs_len = rungs.len();
        self.enc = Some(Running {
            enc: Arc::new(enc),
            formats: vec![None; rungs.len()],
            rungs,
            size,
            video_track,
            timescale,
            keyed: false,
            log: Default::default(),
            log_base: 0,
            next: vec![0; rungs_len],
            generation,
            _slot: slot,
        });
        if self.announced.is_none() {
            self.held = Some((Vec::new(), Instant::now()));
        }
    }

    async fn stop_encoder(&mut self) {
        if let Some(r) = self.enc.take() {
            // Setting a pipeline to NULL may wait for its threads.
            let _ = tokio::task::spawn_blocking(move || drop(r)).await;
        }
        if self.held.is_some() {
            self.give_up_start("the encoder stopped before its first pictures");
        }
    }

    /// Sends a source picture to the encoder.
    async fn feed(&mut self, f: &Frame, _tx: &mpsc::UnboundedSender<(u64, Output)>) {
        let Some(r) = &mut self.enc else { return };
        if f.track_id != r.video_track {
            return;
        }
        if !r.keyed && !f.keyframe {
            return;
        }
        r.keyed = true;
        r.log.push_back((f.pts(), f.dts));
        // Bounded: a rung that far behind has failed anyway.
        while r.log.len() > 1024 {
            r.log.pop_front();
            r.log_base += 1;
        }
        let pts = ticks_to_ns(f.pts(), r.timescale);
        let dts = ticks_to_ns(f.dts, r.timescale);
        if let Err(e) = r.enc.push(pts, dts, f.keyframe, f.data.clone()) {
            tracing::warn!(stream = self.name, error = %e, "the ladder pipeline refused a picture");
            self.fail("refused input".into()).await;
        }
    }

    fn on_output(&mut self, generation: u64, out: Output) {
        let Some(r) = &mut self.enc else { return };
        if generation != r.generation {
            return;
        }
        match out {
            Output::Config {
                rung,
                width,
                height,
                avcc,
            } => {
                if let Some(slot) = r.formats.get_mut(rung) {
                    *slot = Some((width, height, avcc));
                }
                if r.formats.iter().all(Option::is_some) {
                    self.formats_known();
                }
            }
            Output::Picture {
                rung,
                pts_ns,
                dts_ns,
                keyframe,
                data,
            } => {
                if r.formats.get(rung).is_none_or(Option::is_none) {
                    // Before its format is known a rung's pictures have no track.
                    return;
                }
                let pts = ns_to_ticks(pts_ns, r.timescale);
                let dts = r
                    .decode_time(rung, pts, keyframe)
                    .unwrap_or_else(|| ns_to_ticks(dts_ns, r.timescale));
                let frame = Frame {
                    track_id: RENDITION_TRACK_BASE + rung as u32,
                    dts,
                    cts_offset: i32::try_from(pts - dts).unwrap_or(0),
                    keyframe,
                    data,
                };
                match &mut self.held {
                    // Announced with the tracks, after the held source events.
                    Some((held, _)) => held.push(MediaEvent::Frame(frame)),
                    None => self.emit(MediaEvent::Frame(frame)),
                }
            }
            Output::Finished { .. } => {}
            Output::Failed(why) => {
                tracing::error!(stream = self.name, error = %why, "ladder pipeline failed; passthrough until it restarts");
                metrics::FAILURES.inc();
                self.failed_at = Some(Instant::now());
                self.drop_encoder();
                if self.held.is_some() {
                    self.give_up_start("the encoder failed before its first pictures");
                }
            }
        }
    }

    /// Every rung's format is known: announce the tracks and release what was held.
    fn formats_known(&mut self) {
        let changed = self.announce();
        if let Some((held, _)) = self.held.take() {
            for ev in held {
                // The held Tracks were replaced by the announcement.
                if !matches!(ev, MediaEvent::Tracks(_)) {
                    self.emit(ev);
                }
            }
        } else if changed {
            tracing::info!(stream = self.name, "rendition formats changed");
        }
    }

    /// Sends the source's tracks plus every rendition whose format is known;
    /// returns whether that differs from the last announcement.
    fn announce(&mut self) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        let mut tracks: Vec<Track> = source.as_ref().clone();
        if let Some(r) = &self.enc {
            let frame_rate = source.iter().find_map(|t| match &t.config {
                CodecConfig::Video { frame_rate, .. } if t.id == r.video_track => *frame_rate,
                _ => None,
            });
            for (i, (rung, f)) in r.rungs.iter().zip(&r.formats).enumerate() {
                if let Some((w, h, avcc)) = f {
                    tracks.push(Track {
                        id: RENDITION_TRACK_BASE + i as u32,
                        timescale: r.timescale,
                        config: CodecConfig::Video {
                            codec: VideoCodec::H264,
                            width: u16::try_from(*w).unwrap_or(u16::MAX),
                            height: u16::try_from(*h).unwrap_or(u16::MAX),
                            frame_rate,
                            record: avcc.clone(),
                        },
                        bitrate: Some(rung.bitrate_kbps.saturating_mul(1000)),
                    });
                }
            }
        }
        let tracks: TrackSet = Arc::new(tracks);
        if self.announced.as_ref() == Some(&tracks) {
            return false;
        }
        self.announced = Some(tracks.clone());
        self.emit(MediaEvent::Tracks(tracks));
        true
    }

    /// Starting failed or took too long: release the held events as passthrough.
    fn give_up_start(&mut self, why: &str) {
        let Some((held, _)) = self.held.take() else {
            return;
        };
        tracing::warn!(
            stream = self.name,
            reason = why,
            "live encoding not started; passthrough"
        );
        metrics::FALLBACKS.with_label_values(&["start"]).inc();
        self.drop_encoder();
        // The packager takes no tracks later: without renditions announced
        // now, this stream stays passthrough.
        self.failed_at = None;
        self.announce();
        for ev in held {
            match &ev {
                MediaEvent::Tracks(_) => {}
                MediaEvent::Frame(f) if f.track_id >= RENDITION_TRACK_BASE => {}
                _ => self.emit(ev),
            }
        }
    }

    /// Stops the encoder off the async thread (a state change may wait).
    fn drop_encoder(&mut self) {
        if let Some(r) = self.enc.take() {
            tokio::task::spawn_blocking(move || drop(r));
        }
    }

    async fn fail(&mut self, why: String) {
        tracing::error!(stream = self.name, error = %why, "ladder pipeline failed; passthrough until it restarts");
        metrics::FAILURES.inc();
        self.failed_at = Some(Instant::now());
        self.stop_encoder().await;
    }

    async fn on_tick(&mut self, tx: &mpsc::UnboundedSender<(u64, Output)>) {
        if let Some((_, since)) = &self.held {
            if since.elapsed() > START_LIMIT {
                self.give_up_start("the first rendition formats took too long");
            }
        }
        // Restart after a failure, once the delay has passed.
        if self.enc.is_none() {
            if let Some(at) = self.failed_at {
                if at.elapsed() >= RESTART_DELAY && self.source_video().is_some() {
                    self.failed_at = None;
                    metrics::RESTARTS.inc();
                    tracing::info!(stream = self.name, "restarting the ladder pipeline");
                    self.on_tracks(tx).await;
                }
            }
        }
    }

    /// End of stream: the rungs drain (bounded), their last pictures go out.
    async fn finish(&mut self, outputs: &mut Outputs) {
        let Some(r) = &self.enc else { return };
        let enc = r.enc.clone();
        let generation = r.generation;
        let mut left = r.rungs.len();
        enc.finish();
        let deadline = Instant::now() + Duration::from_secs(3);
        while left > 0 {
            match tokio::time::timeout_at(deadline, outputs.recv()).await {
                Ok(Some((g, Output::Finished { .. }))) if g == generation => left -= 1,
                Ok(Some((g, out))) => self.on_output(g, out),
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_conversions_round_trip() {
        for ts in [1000u32, 90_000, 30_000] {
            for t in [0i64, 1, 33, 1001, 123_456_789] {
                assert_eq!(ns_to_ticks(ticks_to_ns(t, ts), ts), t);
            }
        }
    }

    #[test]
    fn budget_counts_slots() {
        let b = Budget::new(2);
        let s1 = b.take().unwrap();
        let _s2 = b.take().unwrap();
        assert!(b.take().is_none());
        drop(s1);
        assert_eq!(b.in_use(), 1);
        assert!(b.take().is_some());
    }
}
