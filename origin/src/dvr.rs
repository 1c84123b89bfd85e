//! The DVR spool: the older part of each live stream's window on local
//! disk instead of in memory.
//!
//! The packager keeps the bytes of the recent part of the window (the
//! memory horizon, `[live] dvr_memory_s`, at least four segment targets,
//! plus the segment being built), which is all that low-latency players
//! fetch near the edge. Older complete segments are handed out by the
//! sans-IO packager ([`vela_packager::LivePackager::segments_to_spool`]);
//! this module's writer task, one per stream, stores each one and only then
//! tells the packager to drop its bytes ([`LiveStream::evict`]), so at every
//! moment a segment is readable from memory or from a complete file. The
//! page cache keeps recently written and popular files in RAM; the process
//! itself no longer grows with the window, so windows of hours are
//! practical.
//!
//! ## Layout
//! `DATA/dvr/<stream>-<instance>/<rendition>/seg-<msn>.m4s`, the segment's
//! parts back to back (the clear CMAF bytes a client reads). Each file is
//! written under a temporary name and renamed, so no torn file is ever
//! served. A file is deleted when its segment leaves the window, the
//! stream's directory when the stream is dropped from the registry, and the
//! whole of `DATA/dvr` at start-up: live windows do not survive a restart.
//! Names are sanitised (`[A-Za-z0-9_-]`, others become `_`); the instance
//! number, unique across streams, keeps sanitised names apart.
//!
//! ## Reading
//! [`spooled`] gets a spooled segment's file from the spool's shared
//! [`SegmentCache`] (hot segments stay there as one buffer that every
//! response references; a miss reads the file with `tokio::fs`, never on an
//! async worker's thread, never under the packager lock, one read for all
//! concurrent misses) and splits it into its
//! parts by the sizes in the timing model, as a [`MediaSource`] for that one
//! segment, so the clear and the encrypted paths serve it exactly as they
//! serve one from memory. A part of a spooled segment is answered from the
//! segment's file too (a slice of it): players only ask for parts near the
//! edge, but a late one gets the same bytes rather than a 404.
//!
//! ## Failures
//! When a file cannot be written, the segment simply stays in memory until
//! it leaves the window (the packager does not hand it out again), so memory
//! stays bounded by the window as before the spool existed. Each failure is
//! counted (`vela_dvr_spool_errors_total`); the error is logged once per
//! incident, and its end once when a write succeeds again.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use vela_packager::SpoolJob;

use crate::dvr_cache::SegmentCache;
use crate::live::LiveStream;
use crate::metrics;
use crate::source::MediaSource;

/// The spool's root, `DATA/dvr`, and the cache of its hot segments.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    cache: Arc<SegmentCache>,
}

/// What the spool can fail with at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot clear the DVR spool {path}: {source}")]
    Clear { path: PathBuf, source: io::Error },
    #[error("cannot create the DVR spool {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
}

impl Spool {
    /// Opens the spool at `root`, deleting whatever a previous run left
    /// there (live windows do not survive a restart), with a cache of at
    /// most `cache_bytes` of recently read segments (0: no cache).
    pub async fn open(root: PathBuf, cache_bytes: u64) -> Result<Arc<Spool>, SpoolError> {
        match tokio::fs::remove_dir_all(&root).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(SpoolError::Clear { path: root, source }),
        }
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|source| SpoolError::Create {
                path: root.clone(),
                source,
            })?;
        // Registers the spool's series now, so /metrics shows them at zero.
        let _ = (
            metrics::DVR_SPOOLED_BYTES.get(),
            metrics::DVR_SPOOL_READS.get(),
        );
        let _ = (
            metrics::DVR_SPOOL_ERRORS.get(),
            metrics::DVR_MEMORY_BYTES.get(),
        );
        let _ = (
            metrics::DVR_CACHE_HITS.get(),
            metrics::DVR_CACHE_BYTES.get(),
        );
        Ok(Arc::new(Spool {
            root,
            cache: Arc::new(SegmentCache::new(cache_bytes)),
        }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cache of recently read segments.
    pub fn cache(&self) -> &Arc<SegmentCache> {
        &self.cache
    }

    /// The directory of one stream instance.
    pub fn stream_dir(&self, name: &str, instance: u64) -> PathBuf {
        self.root.join(format!("{}-{instance}", safe(name)))
    }
}

/// A file-name-safe form of `s`: at most 64 of `[A-Za-z0-9_-]`.
fn safe(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where segment `msn` of rendition `rid` is spooled under a stream's
/// directory.
pub fn segment_path(dir: &Path, rid: &str, msn: u64) -> PathBuf {
    dir.join(safe(rid)).join(format!("seg-{msn}.m4s"))
}

/// Work for a stream's writer: segments to store, and spooled segments that
/// left the window (their files to delete).
#[derive(Debug, Default)]
pub(crate) struct SpoolWork {
    pub jobs: Vec<SpoolJob>,
    pub removals: Vec<(String, u64)>,
}

impl SpoolWork {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.removals.is_empty()
    }
}

/// Starts the writer task of one stream instance. Work sent on the returned
/// channel is done in order; when the channel closes (the stream left the
/// registry), the task deletes the stream's directory and ends.
pub(crate) fn start_writer(
    rt: &tokio::runtime::Handle,
    stream: Arc<LiveStream>,
    dir: PathBuf,
) -> mpsc::UnboundedSender<SpoolWork> {
    let (tx, rx) = mpsc::unbounded_channel();
    rt.spawn(write_loop(stream, dir, rx));
    tx
}

async fn write_loop(
    stream: Arc<LiveStream>,
    dir: PathBuf,
    mut rx: mpsc::UnboundedReceiver<SpoolWork>,
) {
    let mut made: HashSet<String> = HashSet::new();
    let mut failing = false;
    while let Some(work) = rx.recv().await {
        for (rid, msn) in work.removals {
            let path = segment_path(&dir, &rid, msn);
            remove(&path).await;
            stream.forget_spooled(&path);
        }
        for job in work.jobs {
            let path = segment_path(&dir, &job.rid, job.msn);
            match write_segment(&path, &job, &mut made, &dir).await {
                Ok(len) => {
                    if failing {
                        failing = false;
                        tracing::info!(stream = stream.name, "DVR spool writes again");
                    }
                    if stream.evict(&job.rid, job.msn) {
                        metrics::DVR_SPOOLED_BYTES.inc_by(len);
                    } else {
                        // It left the window while being written.
                        remove(&path).await;
                    }
                }
                Err(e) => {
                    metrics::DVR_SPOOL_ERRORS.inc();
                    if !failing {
                        failing = true;
                        tracing::error!(
                            stream = stream.name,
                            path = %path.display(),
                            error = %e,
                            "cannot write to the DVR spool; old segments stay in memory"
                        );
                    }
                }
            }
        }
    }
    // The evictions above may have reported memory after the packaging task
    // took the stream out of the gauge.
    stream.unreport_memory();
    if let Some(cache) = stream.spool_cache() {
        cache.forget_dir(&dir);
    }
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            stream = stream.name,
            dir = %dir.display(),
            error = %e,
            "cannot delete a dropped stream's DVR spool"
        ),
    }
}

/// Writes one segment under a temporary name and renames it into place.
/// Returns its length.
async fn write_segment(
    path: &Path,
    job: &SpoolJob,
    made: &mut HashSet<String>,
    dir: &Path,
) -> io::Result<u64> {
    use tokio::io::AsyncWriteExt;
    if !made.contains(&job.rid) {
        tokio::fs::create_dir_all(dir.join(safe(&job.rid))).await?;
        made.insert(job.rid.clone());
    }
    let tmp = path.with_extension("m4s.tmp");
    let result = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        let mut len = 0u64;
        for chunk in &job.chunks {
            f.write_all(chunk).await?;
            len += chunk.len() as u64;
        }
        f.flush().await?;
        drop(f);
        tokio::fs::rename(&tmp, path).await?;
        Ok(len)
    }
    .await;
    if result.is_err() {
        remove(&tmp).await;
    }
    result
}

async fn remove(path: &Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete a DVR spool file")
        }
    }
}

/// One spooled segment read back, standing in for the stream as the
/// [`MediaSource`] of that segment and its parts (everything else comes
/// from the stream).
pub struct Spooled<'a> {
    stream: &'a LiveStream,
    rid: String,
    msn: u64,
    whole: Bytes,
    parts: Vec<Bytes>,
}

impl Spooled<'_> {
    /// The whole segment.
    pub fn whole(&self) -> Bytes {
        self.whole.clone()
    }

    /// Part `idx` of the segment.
    pub fn part(&self, idx: usize) -> Option<Bytes> {
        self.parts.get(idx).cloned()
    }
}

impl MediaSource for Spooled<'_> {
    fn init(&self, rid: &str, version: u32) -> Option<Bytes> {
        self.stream.init(rid, version)
    }

    fn segment(&self, rid: &str, msn: u64) -> Option<Vec<Bytes>> {
        if rid == self.rid && msn == self.msn {
            return Some(self.parts.clone());
        }
        self.stream.segment(rid, msn)
    }

    fn part(&self, rid: &str, msn: u64, idx: usize) -> Option<Bytes> {
        if rid == self.rid && msn == self.msn {
            return self.parts.get(idx).cloned();
        }
        self.stream.part(rid, msn, idx)
    }

    fn cache_floor(&self, rid: &str) -> u64 {
        self.stream.cache_floor(rid)
    }
}

/// Reads a spooled segment's file, which must be `len` bytes long.
async fn read_segment(path: &Path, len: u64) -> Option<Bytes> {
    let data = match tokio::fs::read(path).await {
        Ok(d) => Bytes::from(d),
        Err(e) => {
            // NotFound: the segment left the window after the check.
            if e.kind() != io::ErrorKind::NotFound {
                metrics::DVR_SPOOL_ERRORS.inc();
                tracing::warn!(path = %path.display(), error = %e, "cannot read a DVR spool file");
            }
            return None;
        }
    };
    if data.len() as u64 != len {
        metrics::DVR_SPOOL_ERRORS.inc();
        tracing::error!(path = %path.display(), "a DVR spool file does not match its segment");
        return None;
    }
    metrics::DVR_SPOOL_READS.inc();
    Some(data)
}

/// Segment `msn` of rendition `rid` read from the spool, if that is where
/// its bytes are (`None` when they are in memory, or the segment is not in
/// the window). From the spool's cache, or read with `tokio::fs`, no lock
/// held.
pub async fn spooled<'a>(stream: &'a LiveStream, rid: &str, msn: u64) -> Option<Spooled<'a>> {
    let dir = stream.spool_dir()?;
    let sizes: Vec<u64> = {
        let p = stream.read();
        let r = p.rendition(rid)?;
        if !r.is_spooled(msn) {
            return None;
        }
        r.segment(msn)?.parts.iter().map(|p| p.size).collect()
    };
    let path = segment_path(dir, rid, msn);
    let len = sizes.iter().sum::<u64>();
    let data = match stream.spool_cache() {
        Some(cache) => cache.get(&path, len, || read_segment(&path, len)).await,
        None => read_segment(&path, len).await,
    }?;
    if data.len() as u64 != len {
        return None;
    }
    let mut parts = Vec::with_capacity(sizes.len());
    let mut at = 0usize;
    for size in sizes {
        let end = at + size as usize;
        parts.push(data.slice(at..end));
        at = end;
    }
    Some(Spooled {
        stream,
        rid: rid.to_string(),
        msn,
        whole: data,
        parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{router, OriginState};
    use crate::live::LiveRegistry;
    use crate::protect::{DashMode, DrmPolicy, HlsMode, Protection};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use std::time::Duration;
    use tower::ServiceExt;
    use vela_media::hub::StreamHub;
    use vela_media::{CodecConfig, Frame, MediaEvent, Track, VideoCodec};
    use vela_packager::PackagerConfig;

    fn tracks() -> MediaEvent {
        MediaEvent::Tracks(Arc::new(vec![Track {
            id: 1,
            timescale: 90000,
            config: CodecConfig::Video {
                codec: VideoCodec::H264,
                width: 320,
                height: 240,
                frame_rate: Some(30.0),
                record: Bytes::from_static(&[1, 0x42, 0, 0x1e, 0xff, 0xe0, 0]),
            },
            bitrate: None,
        }]))
    }

    /// Frame `i` of 30 fps video with a keyframe every second: one
    /// length-prefixed slice NAL unit, long enough to encrypt.
    fn frame(i: i64) -> MediaEvent {
        let idr = i % 30 == 0;
        let mut v = vec![0, 0, 0, 96, if idr { 0x65 } else { 0x41 }];
        v.extend((0..95u8).map(|b| b.wrapping_mul(7).wrapping_add(i as u8)));
        MediaEvent::Frame(Frame {
            track_id: 1,
            dts: i * 3000,
            cts_offset: 0,
            keyframe: idr,
            data: Bytes::from(v),
        })
    }

    async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Bytes) {
        let res = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        (status, res.into_body().collect().await.unwrap().to_bytes())
    }

    /// Polls (bounded) until `f` holds.
    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..400 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gave up waiting for {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn old_segments_move_to_the_spool_and_serve_the_same_bytes() {
        let base = std::env::temp_dir().join(format!("vela-dvr-test-{}", std::process::id()));
        let root = base.join("dvr");
        std::fs::create_dir_all(root.join("stale")).unwrap();
        let spool = Spool::open(root.clone(), 1 << 20).await.unwrap();
        assert!(!root.join("stale").exists(), "start-up clears the spool");
        let keys = vela_drm::KeyStore::open(base.join("keys"), None).unwrap();
        let policy = DrmPolicy {
            hls: HlsMode::Aes128,
            dash: DashMode::None,
            mss_protected: false,
        };
        let hub = StreamHub::new(4096, Duration::from_secs(1));
        let live = LiveRegistry::attach_with_spool(
            &hub,
            Arc::new(|_: &str| PackagerConfig {
                dvr_window: 12.0,
                dvr_memory: 2.0, // the floor, 4 segment targets (8 s), applies
                ..Default::default()
            }),
            Some(spool.clone()),
        );
        let mut state = OriginState::new(live.clone());
        let protection = Arc::new(Protection::new(keys, Arc::new(move |_: &str| policy)));
        state.protection = Some(protection.clone());
        let app = router(state);
        let publisher = hub.publish("show").unwrap();
        publisher.send(tracks());
        let mut sent = 0;
        let mut send_to = |n: i64| {
            while sent < n {
                publisher.send(frame(sent));
                sent += 1;
            }
        };
        send_to(200);
        let s = live.get("show").unwrap();
        until("segment 0", || {
            s.read()
                .rendition("v1")
                .is_some_and(|r| r.segment(0).is_some())
        })
        .await;
        let (st, seg0) = get(&app, "/live/show/v1/seg-0.m4s").await;
        assert_eq!(st, StatusCode::OK);
        let (_, part0_1) = get(&app, "/live/show/v1/part-0.1.m4s").await;
        assert!(!part0_1.is_empty());
        let dir = s.spool_dir().unwrap().to_path_buf();
        assert!(dir.starts_with(&root));

        // 13 s in: segments 0 and 1 end more than 8 s before the newest.
        send_to(400);
        until("segment 0 spooled", || {
            s.read().rendition("v1").unwrap().is_spooled(0)
        })
        .await;
        let file = segment_path(&dir, "v1", 0);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            seg0,
            "the spool holds the clear segment"
        );
        {
            let p = s.read();
            let r = p.rendition("v1").unwrap();
            assert!(r.segment_data(0).is_none(), "and memory does not");
            let newest = r.segments.back().unwrap().msn;
            assert!(r.segment_data(newest).is_some());
        }
        let (st, again) = get(&app, "/live/show/v1/seg-0.m4s").await;
        assert_eq!(
            (st, &again),
            (StatusCode::OK, &seg0),
            "served from the spool, byte for byte"
        );
        let cached_seg0 = spool.cache().bytes();
        assert!(
            cached_seg0 >= seg0.len() as u64,
            "the spool's cache holds it"
        );
        let hits = crate::metrics::DVR_CACHE_HITS.get();
        assert_eq!(get(&app, "/live/show/v1/seg-0.m4s").await.1, seg0);
        assert!(crate::metrics::DVR_CACHE_HITS.get() > hits, "a hit");
        assert_eq!(get(&app, "/live/show/v1/part-0.1.m4s").await.1, part0_1);
        assert_eq!(
            get(&app, "/live/show/v1/part-0.99.m4s").await.0,
            StatusCode::NOT_FOUND
        );
        // The encrypted variant is made from the spooled bytes.
        let (_, playlist) = get(&app, "/live/show/v1/index.m3u8").await;
        let playlist = String::from_utf8(playlist.to_vec()).unwrap();
        assert!(playlist.contains("seg-0.aes.m4s"), "{playlist}");
        let uri = playlist
            .lines()
            .find(|l| l.starts_with("#EXT-X-KEY:METHOD=AES-128,URI="))
            .and_then(|l| l.split('"').nth(1))
            .unwrap();
        let (_, key) = get(&app, uri).await;
        let cached = protection.cached_bytes();
        let (st, enc) = get(&app, "/live/show/v1/seg-0.aes.m4s").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(
            protection.cached_bytes(),
            cached,
            "a spooled segment's variant is not kept in memory"
        );
        let key: [u8; 16] = key[..].try_into().unwrap();
        let clear = vela_drm::crypt::aes128_cbc_pkcs7_decrypt(&key, &[0u8; 16], &enc).unwrap();
        assert_eq!(clear, seg0);

        // Far on: segment 0 leaves the window, and its file with it.
        send_to(1000);
        until("segment 0 out of the window", || {
            s.read().rendition("v1").unwrap().first_msn() > 0
        })
        .await;
        until("its file deleted", || !file.exists()).await;
        until("and its cache entry dropped", || {
            spool.cache().bytes() < cached_seg0
        })
        .await;
        assert_eq!(
            get(&app, "/live/show/v1/seg-0.m4s").await.0,
            StatusCode::NOT_FOUND
        );
        let first = s.read().rendition("v1").unwrap().first_msn();
        until("the window's oldest segment spooled", || {
            segment_path(&dir, "v1", first).exists()
        })
        .await;
        assert!(crate::metrics::DVR_SPOOLED_BYTES.get() > 0);
        assert!(crate::metrics::render().contains("vela_dvr_memory_bytes"));
        drop(publisher);
        let _ = std::fs::remove_dir_all(base);
    }

    #[tokio::test]
    async fn a_dropped_stream_takes_its_directory_with_it() {
        let base = std::env::temp_dir().join(format!("vela-dvr-drop-{}", std::process::id()));
        let spool = Spool::open(base.clone(), 1 << 20).await.unwrap();
        let dir = spool.stream_dir("gone", 1);
        let stream = Arc::new(LiveStream::new(
            "gone".into(),
            1,
            PackagerConfig::default(),
            Some(&spool),
        ));
        assert_eq!(stream.spool_dir(), Some(dir.as_path()));
        let tx = start_writer(&tokio::runtime::Handle::current(), stream, dir.clone());
        let job = SpoolJob {
            rid: "v1".into(),
            msn: 3,
            init_version: 0,
            chunks: vec![Bytes::from_static(b"abc"), Bytes::from_static(b"def")],
        };
        tx.send(SpoolWork {
            jobs: vec![job],
            removals: Vec::new(),
        })
        .unwrap();
        let file = segment_path(&dir, "v1", 3);
        until("the rendition's directory", || dir.join("v1").exists()).await;
        // Not in this (empty) packager's window: the writer deleted it again.
        until("its deletion", || !file.exists()).await;
        drop(tx);
        until("the directory's deletion", || !dir.exists()).await;
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn names_are_sanitised() {
        assert_eq!(safe("show/../x y"), "show____x_y");
        assert_eq!(safe("cam-1_a"), "cam-1_a");
        assert_eq!(safe(&"é".repeat(100)).len(), 64);
        let s = Spool {
            root: PathBuf::from("/d/dvr"),
            cache: Arc::new(SegmentCache::new(0)),
        };
        assert_eq!(s.stream_dir("a/b", 7), PathBuf::from("/d/dvr/a_b-7"));
        assert_eq!(
            segment_path(Path::new("/x"), "v1", 12),
            PathBuf::from("/x/v1/seg-12.m4s")
        );
    }
}
