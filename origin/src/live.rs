//! Live streams as the origin sees them: one packager per published stream,
//! driven by a task that consumes the stream's hub channel, and, when the
//! registry has a DVR spool, a writer task that moves the older part of the
//! window to disk ([`crate::dvr`]).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, watch};
use vela_media::hub::{StreamHub, StreamStart};
use vela_media::MediaEvent;
use vela_packager::{LivePackager, PackagerConfig, Presentation};

use crate::dvr::{self, Spool, SpoolWork};
use crate::dvr_cache::SegmentCache;
use crate::metrics;
use crate::source::MediaSource;

/// Per-stream packaging settings, chosen when a stream starts.
pub type StreamSettings = Arc<dyn Fn(&str) -> PackagerConfig + Send + Sync>;

/// One live stream: its packager (which holds the media bytes) and the
/// channel that announces each change with a fresh [`Presentation`]
/// snapshot, which manifests are rendered from without holding a lock.
pub struct LiveStream {
    pub name: String,
    /// Distinguishes successive streams of the same name, across restarts
    /// too: the wall clock in milliseconds at its start, kept increasing.
    /// ETags carry it, and it is the key store's timeline, so a republished
    /// stream (whose segment numbers start again) never reuses a key.
    pub instance: u64,
    packager: RwLock<LivePackager>,
    version: watch::Sender<Arc<Presentation>>,
    /// This instance's directory in the DVR spool, if spooling.
    spool_dir: Option<PathBuf>,
    /// The spool's cache of recently read segments, if spooling.
    spool_cache: Option<Arc<SegmentCache>>,
    /// The packager's media bytes in memory as last added to the
    /// `vela_dvr_memory_bytes` gauge.
    memory_reported: AtomicI64,
}

impl LiveStream {
    /// Which keys this instance's media may use: its own timeline, the
    /// window starting at `oldest_msn`.
    pub fn key_scope(&self, oldest_msn: u64) -> vela_drm::KeyScope<'_> {
        vela_drm::KeyScope {
            stream: &self.name,
            timeline: self.instance,
            oldest_msn,
        }
    }

    pub(crate) fn new(
        name: String,
        instance: u64,
        config: PackagerConfig,
        spool: Option<&Spool>,
    ) -> Self {
        let spool_dir = spool.map(|s| s.stream_dir(&name, instance));
        let packager = LivePackager::new(config);
        let (version, _) = watch::channel(Arc::new(packager.presentation()));
        LiveStream {
            name,
            instance,
            packager: RwLock::new(packager),
            version,
            spool_dir,
            spool_cache: spool.map(|s| s.cache().clone()),
            memory_reported: AtomicI64::new(0),
        }
    }

    /// This instance's directory in the DVR spool, if it spools.
    pub fn spool_dir(&self) -> Option<&Path> {
        self.spool_dir.as_deref()
    }

    /// The spool's cache of recently read segments, if it spools.
    pub fn spool_cache(&self) -> Option<&SegmentCache> {
        self.spool_cache.as_deref()
    }

    /// Drops a spooled segment's file from the cache (it was deleted).
    pub(crate) fn forget_spooled(&self, path: &Path) {
        if let Some(cache) = &self.spool_cache {
            cache.forget(path);
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, LivePackager> {
        self.packager.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings the memory gauge up to date with the packager.
    fn report_memory(&self, p: &LivePackager) {
        let now = i64::try_from(p.memory_bytes()).unwrap_or(i64::MAX);
        let before = self.memory_reported.swap(now, Ordering::Relaxed);
        metrics::DVR_MEMORY_BYTES.add(now - before);
    }

    /// Takes this stream's memory out of the gauge (it left the registry).
    pub(crate) fn unreport_memory(&self) {
        let before = self.memory_reported.swap(0, Ordering::Relaxed);
        metrics::DVR_MEMORY_BYTES.sub(before);
    }

    /// Segments to spool and spooled segments that left the window.
    fn spool_work(&self) -> SpoolWork {
        let mut p = self.write();
        SpoolWork {
            jobs: p.segments_to_spool(),
            removals: p.take_spool_removals(),
        }
    }

    /// Drops a segment's bytes from memory now that the spool holds them;
    /// false when it has left the window meanwhile.
    pub(crate) fn evict(&self, rid: &str, msn: u64) -> bool {
        let mut p = self.write();
        let evicted = p.evict(rid, msn);
        self.report_memory(&p);
        evicted
    }

    /// The stream's presentation as of its latest change.
    pub fn presentation(&self) -> Arc<Presentation> {
        self.version.borrow().clone()
    }

    /// Read access to the packager (its timeline and media bytes). Hold it
    /// briefly, never across encryption or I/O: the packager task waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, LivePackager> {
        self.packager.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Feeds one event to the packager; returns whether a segment was
    /// completed (or the stream ended), when there may be work to spool.
    fn apply(&self, event: MediaEvent, now_ms: i64) -> bool {
        let (changes, snapshot) = {
            let mut p = self.write();
            let changes = p.push(event, now_ms);
            if changes.parts > 0 || changes.segments > 0 {
                self.report_memory(&p);
            }
            (changes, changes.any().then(|| Arc::new(p.presentation())))
        };
        if let Some(snapshot) = snapshot {
            metrics::PARTS.inc_by(changes.parts as u64);
            metrics::SEGMENTS.inc_by(changes.segments as u64);
            self.version.send_replace(snapshot);
        }
        changes.segments > 0 || changes.ended
    }

    /// Waits until `ready` holds for the packager, or `timeout` passes.
    /// Returns whether it holds.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut ready: impl FnMut(&LivePackager) -> bool,
    ) -> bool {
        let mut rx = self.version.subscribe();
        let wait = async {
            loop {
                if ready(&self.read()) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return ready(&self.read());
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// A future that resolves at the next change (or after `timeout`).
    pub fn changed(&self, timeout: Duration) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.version.subscribe();
        rx.borrow_and_update();
        async move {
            let _ = tokio::time::timeout(timeout, rx.changed()).await;
        }
    }
}

impl MediaSource for LiveStream {
    fn init(&self, rid: &str, version: u32) -> Option<Bytes> {
        self.read().rendition(rid)?.init(version).cloned()
    }

    fn segment(&self, rid: &str, msn: u64) -> Option<Vec<Bytes>> {
        let p = self.read();
        let r = p.rendition(rid)?;
        // Complete segments only: the one being built is still growing.
        r.segments.iter().find(|s| s.msn == msn)?;
        r.segment_data(msn).map(<[Bytes]>::to_vec)
    }

    fn part(&self, rid: &str, msn: u64, idx: usize) -> Option<Bytes> {
        self.read().rendition(rid)?.part_data(msn, idx).cloned()
    }

    /// The oldest segment within the memory horizon (from the snapshot, no
    /// lock): older ones are, or are about to be, in the DVR spool.
    fn cache_floor(&self, rid: &str) -> u64 {
        let p = self.presentation();
        let Some(r) = p.rendition(rid) else {
            return 0;
        };
        let Some(newest) = r.segments.back() else {
            return 0;
        };
        let horizon = (p.timing.memory_horizon() * f64::from(r.timescale())) as i64;
        r.segments
            .iter()
            .rev()
            .take_while(|s| s.end() > newest.end() - horizon)
            .last()
            .map_or(newest.msn, |s| s.msn)
    }
}

/// The wall clock, unix milliseconds (the packager's and manifests' time).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Inner {
    streams: HashMap<String, Arc<LiveStream>>,
    last_instance: u64,
}

/// The live streams the origin can serve, by name.
#[derive(Clone)]
pub struct LiveRegistry {
    inner: Arc<Mutex<Inner>>,
    settings: StreamSettings,
    spool: Option<Arc<Spool>>,
    /// Bumped whenever a stream starts or ends (cluster membership follows it).
    changes: Arc<watch::Sender<u64>>,
}

impl LiveRegistry {
    /// Attaches to `hub`: every stream it starts gets a packager here, which
    /// keeps its whole DVR window in memory.
    pub fn attach(hub: &StreamHub, settings: StreamSettings) -> Self {
        Self::attach_with_spool(hub, settings, None)
    }

    /// Attaches to `hub` like [`LiveRegistry::attach`]; with a `spool`,
    /// each stream keeps only the recent part of its window in memory and
    /// the rest in the spool ([`crate::dvr`]).
    pub fn attach_with_spool(
        hub: &StreamHub,
        settings: StreamSettings,
        spool: Option<Arc<Spool>>,
    ) -> Self {
        let registry = LiveRegistry {
            inner: Arc::new(Mutex::new(Inner {
                streams: HashMap::new(),
                last_instance: 0,
            })),
            settings,
            spool,
            changes: Arc::new(watch::channel(0).0),
        };
        let r = registry.clone();
        hub.on_stream_start(move |start| r.start(start));
        registry
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<LiveStream>> {
        self.lock().streams.get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().streams.keys().cloned().collect();
        v.sort();
        v
    }

    /// The streams being published now (not ended), with their instances.
    pub fn live_streams(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .lock()
            .streams
            .values()
            .filter(|s| !s.presentation().is_ended())
            .map(|s| (s.name.clone(), s.instance))
            .collect();
        v.sort();
        v
    }

    /// The stream `name` if it is being published here now (not ended).
    pub fn get_live(&self, name: &str) -> Option<Arc<LiveStream>> {
        self.get(name).filter(|s| !s.presentation().is_ended())
    }

    /// A receiver that sees a change whenever a stream starts or ends.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn announce_change(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn start(&self, start: StreamStart) {
        let config = (self.settings)(&start.name);
        let stream = {
            let mut inner = self.lock();
            let instance = (now_ms().max(0) as u64).max(inner.last_instance + 1);
            inner.last_instance = instance;
            let stream = Arc::new(LiveStream::new(
                start.name.clone(),
                instance,
                config,
                self.spool.as_deref(),
            ));
            // A new publish of a name replaces its ended predecessor.
            inner.streams.insert(start.name.clone(), stream.clone());
            stream
        };
        metrics::LIVE_STREAMS.set(self.lock().streams.len() as i64);
        self.announce_change();
        let registry = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let writer = stream
                    .spool_dir
                    .clone()
                    .map(|dir| dvr::start_writer(&rt, stream.clone(), dir));
                rt.spawn(async move { registry.run(stream, start.events, writer).await });
            }
            Err(_) => tracing::error!(stream = start.name, "no runtime to package the stream on"),
        }
    }

    /// The packager task of one stream. `writer`: its spool writer's queue.
    async fn run(
        self,
        stream: Arc<LiveStream>,
        mut events: broadcast::Receiver<MediaEvent>,
        writer: Option<mpsc::UnboundedSender<SpoolWork>>,
    ) {
        tracing::info!(stream = stream.name, "packaging started");
        let spool = |completed: bool| {
            if let (true, Some(w)) = (completed, &writer) {
                let work = stream.spool_work();
                if !work.is_empty() {
                    // The writer ends only after this task drops the sender.
                    let _ = w.send(work);
                }
            }
        };
        loop {
            match events.recv().await {
                Ok(MediaEvent::End) => {
                    spool(stream.apply(MediaEvent::End, now_ms()));
                    break;
                }
                Ok(event) => spool(stream.apply(event, now_ms())),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Frames were lost to this consumer: close what was built
                    // and restart cleanly at the next keyframe.
                    tracing::warn!(
                        stream = stream.name,
                        missed = n,
                        "packager fell behind; resynchronising"
                    );
                    metrics::PACKAGER_LAGGED.inc();
                    spool(stream.apply(MediaEvent::Discontinuity, now_ms()));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    spool(stream.apply(MediaEvent::End, now_ms()));
                    break;
                }
            }
        }
        tracing::info!(
            stream = stream.name,
            "stream ended; keeping its window for late viewers"
        );
        self.announce_change();
        // Keep the ended stream's window for players finishing it, then drop
        // it unless a new publish has replaced it in the meantime.
        let keep = Duration::from_secs_f64(
            stream
                .presentation()
                .timing
                .dvr_window
                .clamp(10.0, 86_400.0),
        );
        tokio::time::sleep(keep).await;
        let mut inner = self.lock();
        if inner
            .streams
            .get(&stream.name)
            .is_some_and(|s| s.instance == stream.instance)
        {
            inner.streams.remove(&stream.name);
        }
        metrics::LIVE_STREAMS.set(inner.streams.len() as i64);
        drop(inner);
        // Closing the writer's queue deletes the instance's spool directory
        // once the queued work is done.
        drop(writer);
        stream.unreport_memory();
    }
}
