//! Recording live streams as stored media (live-to-VOD).
//!
//! Every stream the hub starts gets a recorder task beside its packager. The task
//! asks the [`RecordingCatalog`] (the control plane) whether the stream records; if
//! it does, it feeds the stream's events to the sans-IO
//! [`vela_vod::record::RecordingWriter`], which turns them into a plain MP4 (`ftyp`,
//! a growing `mdat`, the `moov` at the end) and a journal of complete samples. A
//! blocking writer thread per piece appends those bytes to local files
//! ([`file::PieceFiles`]) through a bounded queue: a disk slower than the stream
//! makes the recorder lag its broadcast channel (a discontinuity in the recording,
//! counted), never the publisher or the packager.
//!
//! When the stream ends (after the hub's reconnect grace: a publisher that comes back
//! in time continues the same recording, with the gap closed), the piece is finished
//! and handed to the catalog, which makes it a media entry's content: playable at
//! `/vod/ENTRY/...` in every format, with thumbnails, through the same code as an
//! upload. A long stream is cut into pieces of at most the configured length, each
//! its own media entry, cut at a video keyframe. After a `kill -9`,
//! [`Recordings::recover`] finishes every piece left on disk from its journal: what
//! was written before the kill plays, nothing torn is ever served.

mod file;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, mpsc, oneshot};
use vela_media::hub::{StreamHub, StreamStart};
use vela_media::{MediaEvent, MediaKind, TrackSet};
use vela_vod::record::{Append, Push, RecordingWriter};

use crate::metrics;

/// Where recordings go: the control plane's media entries.
pub trait RecordingCatalog: Send + Sync + 'static {
    /// The media entry of piece `piece` (1, 2, …) of `stream`'s recording, or `None`
    /// when the stream does not record.
    fn begin<'a>(&'a self, stream: &'a str, piece: u32) -> BoxFuture<'a, Option<String>>;
    /// The complete MP4 at `file` becomes `entry`'s content (the file is consumed).
    /// `Err` with a reason when it could not; `retry` says whether trying again later
    /// may help (the store was unavailable).
    fn complete<'a>(
        &'a self,
        entry: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<(), CompleteError>>;
    /// Nothing playable came of `entry`'s recording.
    fn fail<'a>(&'a self, entry: &'a str, reason: &'a str) -> BoxFuture<'a, ()>;
}

/// Why a finished piece did not become content.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct CompleteError {
    pub reason: String,
    /// The file is still there and a later attempt may succeed.
    pub retry: bool,
}

/// Recording settings.
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Pieces in progress: `DIR/ENTRY/` (local disk, the node's own).
    pub dir: PathBuf,
    /// A piece is cut at the first video keyframe after this much media.
    pub piece: Duration,
}

/// Appends queued per piece before the recorder waits for the disk (and, if the
/// disk stays slow, lags its stream instead of growing).
const QUEUE: usize = 2048;

/// The recorders of every stream. Cheap to clone.
#[derive(Clone)]
pub struct Recordings {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Arc<dyn RecordingCatalog>,
    config: RecordingConfig,
    /// Distinguishes pieces' directories of the same entry across retries.
    seq: AtomicU64,
    /// Recorder tasks running (shutdown waits for their pieces to finish).
    running: tokio::sync::watch::Sender<usize>,
}

impl Recordings {
    /// Starts a recorder for every stream `hub` starts from now on.
    pub fn attach(
        hub: &StreamHub,
        catalog: Arc<dyn RecordingCatalog>,
        config: RecordingConfig,
    ) -> Recordings {
        let r = Recordings {
            inner: Arc::new(Inner {
                catalog,
                config,
                seq: AtomicU64::new(0),
                running: tokio::sync::watch::channel(0).0,
            }),
        };
        let rec = r.clone();
        hub.on_stream_start(move |start: StreamStart| {
            let rec = rec.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rec.inner.running.send_modify(|n| *n += 1);
                    rt.spawn(async move {
                        let inner = rec.inner.clone();
                        rec.run(start.name, start.events).await;
                        inner.running.send_modify(|n| *n -= 1);
                    });
                }
                Err(_) => tracing::error!(stream = start.name, "no runtime to record on"),
            }
        });
        r
    }

    /// Waits (at most `timeout`) until every recorder has finished its pieces: at
    /// shutdown, after the streams ended. What does not finish in time is recovered at
    /// the next start.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.running.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Finishes the pieces a stopped server left in the recordings directory (its own:
    /// every node has its own data directory). Returns how many became content.
    pub async fn recover(&self) -> usize {
        let dir = self.inner.config.dir.clone();
        let entries = match tokio::fs::read_dir(&dir).await {
            Ok(mut rd) => {
                let mut v = Vec::new();
                while let Ok(Some(e)) = rd.next_entry().await {
                    v.push(e.path());
                }
                v
            }
            Err(_) => return 0,
        };
        let mut n = 0;
        for piece_dir in entries {
            let Some(entry) = piece_dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('.').next())
                .map(str::to_string)
            else {
                continue;
            };
            let d = piece_dir.clone();
            let finished = tokio::task::spawn_blocking(move || recover_piece(&d))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            match finished {
                Ok(ready) => {
                    tracing::info!(entry, path = %ready.display(), "recovered a recording left by a stopped server");
                    if self.complete(&entry, &piece_dir, &ready).await {
                        n += 1;
                    }
                }
                Err(reason) => {
                    tracing::warn!(
                        entry,
                        reason,
                        "a recording left by a stopped server holds nothing playable"
                    );
                    self.inner.catalog.fail(&entry, &reason).await;
                    metrics::RECORDINGS_FAILED.inc();
                    let _ = tokio::fs::remove_dir_all(&piece_dir).await;
                }
            }
        }
        n
    }

    /// Hands a finished piece to the catalog, retrying with backoff while the store is
    /// unavailable; the piece's directory goes once the content is safe.
    async fn complete(&self, entry: &str, piece_dir: &Path, ready: &Path) -> bool {
        let mut backoff = Duration::from_millis(500);
        let mut logged = false;
        loop {
            match self.inner.catalog.complete(entry, ready).await {
                Ok(()) => {
                    if logged {
                        tracing::info!(entry, "recording stored after the store came back");
                    }
                    metrics::RECORDINGS_COMPLETED.inc();
                    let _ = tokio::fs::remove_dir_all(piece_dir).await;
                    return true;
                }
                Err(e) if e.retry && tokio::fs::metadata(ready).await.is_ok() => {
                    if !logged {
                        tracing::warn!(entry, error = %e, "cannot store a finished recording yet; retrying with backoff");
                        logged = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => {
                    tracing::error!(entry, error = %e, "a finished recording could not become content");
                    metrics::RECORDINGS_FAILED.inc();
                    let _ = tokio::fs::remove_dir_all(piece_dir).await;
                    return false;
                }
            }
        }
    }

    /// [`Self::complete`] in its own task (a store that is away must not hold up the
    /// stream's next piece), counted as running for [`Self::wait_idle`].
    fn complete_in_background(&self, entry: String, dir: PathBuf, ready: PathBuf) {
        let rec = self.clone();
        self.inner.running.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            rec.complete(&entry, &dir, &ready).await;
            rec.inner.running.send_modify(|n| *n -= 1);
        });
    }

    /// The recorder task of one stream.
    async fn run(self, stream: String, mut events: broadcast::Receiver<MediaEvent>) {
        let mut piece_no = 0u32;
        let mut tracks: Option<TrackSet> = None;
        let mut piece: Option<Piece> = None;
        // After a local write error (a full disk), a new piece is tried after a
        // backoff, at the next keyframe: the recording resumes when the disk does.
        let mut resume_at: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_secs(5);
        let mut refused_logged = false;
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    if piece.is_some() {
                        tracing::warn!(
                            stream,
                            missed = n,
                            "recorder fell behind; the recording gets a gap"
                        );
                        metrics::RECORDING_LAGGED.inc();
                    }
                    MediaEvent::Discontinuity
                }
                Err(broadcast::error::RecvError::Closed) => MediaEvent::End,
            };
            if let MediaEvent::Tracks(t) = &event {
                tracks = Some(t.clone());
            }
            if matches!(event, MediaEvent::End) {
                break;
            }
            // The first piece (or the next one after a cut or a write error).
            if piece.is_none() {
                let Some(t) = tracks.clone() else { continue };
                if resume_at.is_some_and(|at| tokio::time::Instant::now() < at) {
                    continue;
                }
                piece_no += 1;
                match self.start_piece(&stream, piece_no, &t).await {
                    Some(p) => piece = Some(p),
                    // The stream does not record (or no longer): stop listening.
                    None => break,
                }
            }
            let Some(p) = piece.as_mut() else { continue };
            // A long stream: cut at the first video keyframe past the piece length.
            let cut = matches!(&event, MediaEvent::Frame(f) if f.keyframe
                && p.is_video(f.track_id)
                && p.writer.duration_secs() >= self.inner.config.piece.as_secs_f64());
            let pushed = if cut {
                Ok(Push::NeedsNewPiece)
            } else {
                p.writer.push(&event)
            };
            match pushed {
                Ok(Push::Appended(a)) => {
                    if p.send(a).await {
                        backoff = Duration::from_secs(5);
                    } else {
                        // The writer thread stopped on a write error: finish what it
                        // wrote, and try again later.
                        if let Some(p) = piece.take() {
                            self.finish_piece(&stream, p).await;
                        }
                        tracing::warn!(
                            stream,
                            retry_in_s = backoff.as_secs(),
                            "recording paused after a write error"
                        );
                        resume_at = Some(tokio::time::Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
                Ok(Push::Ignored) => {}
                Ok(Push::NeedsNewPiece) => {
                    if let Some(done) = piece.take() {
                        self.finish_piece(&stream, done).await;
                    }
                    let Some(t) = tracks.clone() else { continue };
                    piece_no += 1;
                    piece = self.start_piece(&stream, piece_no, &t).await;
                    match piece.as_mut() {
                        Some(p) => {
                            if let Ok(Push::Appended(a)) = p.writer.push(&event) {
                                p.send(a).await;
                            }
                        }
                        None => break,
                    }
                }
                Err(e) => {
                    // The writer is unchanged by a refused frame: go on without it.
                    if !refused_logged {
                        tracing::warn!(stream, error = %e, "recording skipped a frame it cannot store");
                        refused_logged = true;
                    }
                }
            }
        }
        if let Some(p) = piece.take() {
            self.finish_piece(&stream, p).await;
        }
    }

    async fn start_piece(&self, stream: &str, piece_no: u32, tracks: &TrackSet) -> Option<Piece> {
        let entry = self.inner.catalog.begin(stream, piece_no).await?;
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let dir = self.inner.config.dir.join(format!("{entry}.{seq}"));
        let (writer, first) = match RecordingWriter::start(tracks) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(stream, entry, error = %e, "cannot record these tracks");
                self.inner.catalog.fail(&entry, &e.to_string()).await;
                return None;
            }
        };
        let video: Vec<u32> = tracks
            .iter()
            .filter(|t| t.kind() == MediaKind::Video)
            .map(|t| t.id)
            .collect();
        let (tx, rx) = mpsc::channel::<Cmd>(QUEUE);
        let d = dir.clone();
        let stream_name = stream.to_string();
        let entry_id = entry.clone();
        tokio::task::spawn_blocking(move || write_piece(&d, first, rx, &stream_name, &entry_id));
        metrics::RECORDINGS_ACTIVE.inc();
        tracing::info!(stream, entry, piece = piece_no, dir = %dir.display(), "recording piece started");
        Some(Piece {
            entry,
            dir,
            writer,
            video,
            tx,
        })
    }

    async fn finish_piece(&self, stream: &str, p: Piece) {
        metrics::RECORDINGS_ACTIVE.dec();
        let Piece {
            entry,
            dir,
            writer,
            tx,
            ..
        } = p;
        let finish = match writer.finish() {
            Ok(f) => f,
            Err(e) => {
                tracing::info!(stream, entry, error = %e, "recording piece holds no media");
                drop(tx);
                self.inner.catalog.fail(&entry, &e.to_string()).await;
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return;
            }
        };
        let (done_tx, done_rx) = oneshot::channel();
        let sent = tx
            .send(Cmd::Finish(Box::new(finish), done_tx))
            .await
            .is_ok();
        drop(tx);
        let ready = if sent {
            done_rx
                .await
                .unwrap_or_else(|_| Err("writer stopped".into()))
        } else {
            Err("writer stopped".into())
        };
        match ready {
            Ok(ready) => {
                tracing::info!(stream, entry, "recording piece finished");
                self.complete_in_background(entry, dir, ready);
            }
            Err(reason) => {
                // A write error stopped the files: what the journal holds still plays.
                let d = dir.clone();
                let recovered = tokio::task::spawn_blocking(move || recover_piece(&d))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                match recovered {
                    Ok(ready) => {
                        tracing::warn!(
                            stream,
                            entry,
                            reason,
                            "recording piece finished from its journal after a write error"
                        );
                        self.complete_in_background(entry, dir, ready);
                    }
                    Err(e) => {
                        tracing::error!(stream, entry, reason, error = e, "recording piece lost");
                        metrics::RECORDINGS_FAILED.inc();
                        self.inner.catalog.fail(&entry, &reason).await;
                        let _ = tokio::fs::remove_dir_all(&dir).await;
                    }
                }
            }
        }
    }
}

/// A piece being recorded.
struct Piece {
    entry: String,
    dir: PathBuf,
    writer: RecordingWriter,
    video: Vec<u32>,
    tx: mpsc::Sender<Cmd>,
}

impl Piece {
    fn is_video(&self, track: u32) -> bool {
        self.video.contains(&track)
    }

    /// Queues an append; `false` when the writer thread has stopped.
    async fn send(&mut self, a: Append) -> bool {
        metrics::RECORDING_BYTES.inc_by(a.media.len() as u64);
        self.tx.send(Cmd::Append(a)).await.is_ok()
    }
}

enum Cmd {
    Append(Append),
    Finish(
        Box<vela_vod::record::Finish>,
        oneshot::Sender<Result<PathBuf, String>>,
    ),
}

/// The writer thread of one piece: appends, flushes when the queue runs dry,
/// finishes on request. Stops at the first write error (logged, counted).
fn write_piece(dir: &Path, first: Append, mut rx: mpsc::Receiver<Cmd>, stream: &str, entry: &str) {
    let mut files = match file::PieceFiles::create(dir).and_then(|mut f| {
        f.append(&first)?;
        f.flush()?;
        Ok(f)
    }) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(stream, entry, dir = %dir.display(), error = %e, "cannot create the recording's files");
            metrics::RECORDING_WRITE_ERRORS.inc();
            return;
        }
    };
    loop {
        let cmd = match rx.try_recv() {
            Ok(c) => c,
            Err(mpsc::error::TryRecvError::Empty) => {
                if let Err(e) = files.flush() {
                    tracing::error!(stream, entry, error = %e, "recording write failed; the piece ends here");
                    metrics::RECORDING_WRITE_ERRORS.inc();
                    return;
                }
                match rx.blocking_recv() {
                    Some(c) => c,
                    None => return,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => return,
        };
        match cmd {
            Cmd::Append(a) => {
                if let Err(e) = files.append(&a) {
                    tracing::error!(stream, entry, error = %e, "recording write failed; the piece ends here");
                    metrics::RECORDING_WRITE_ERRORS.inc();
                    return;
                }
            }
            Cmd::Finish(finish, done) => {
                let r = files.finish(&finish).map_err(|e| e.to_string());
                let _ = done.send(r);
                return;
            }
        }
    }
}

/// Finishes a piece from its files: `ready.mp4` as it is, or the media file rebuilt
/// from the journal's complete samples.
fn recover_piece(dir: &Path) -> Result<PathBuf, String> {
    let ready = dir.join(file::READY);
    if ready.is_file() {
        return Ok(ready);
    }
    let journal = std::fs::read(dir.join(file::JOURNAL)).map_err(|e| format!("no journal: {e}"))?;
    let (media, len) = file::reopen_media(dir).map_err(|e| format!("no media file: {e}"))?;
    let writer = RecordingWriter::recover(&journal, len).map_err(|e| e.to_string())?;
    let finish = writer.finish().map_err(|e| e.to_string())?;
    file::finalize(dir, media, &finish).map_err(|e| e.to_string())
}
