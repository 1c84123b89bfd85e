//! The files of one recording piece on local disk, written on a blocking thread.
//!
//! `DIR/recording.mp4` grows by appends (the sans-IO writer's media bytes) and
//! `DIR/recording.journal` beside it says which samples are complete. Both are
//! appended in order and flushed whenever the queue runs dry, so a `kill -9` loses
//! at most what was still queued; recovery trusts only journal records whose data
//! lies inside the media file. Finishing patches the `mdat` size, appends the
//! `moov`, fsyncs, and renames the file to `DIR/ready.mp4`: a piece is either
//! still a journal-backed recording or a complete MP4, never a torn one.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use vela_vod::record::{Append, Finish};

pub const MEDIA: &str = "recording.mp4";
pub const JOURNAL: &str = "recording.journal";
pub const READY: &str = "ready.mp4";

/// The open files of a piece being recorded.
pub struct PieceFiles {
    dir: PathBuf,
    media: std::io::BufWriter<File>,
    journal: std::io::BufWriter<File>,
}

impl PieceFiles {
    /// Creates the piece's directory and files (fails if they exist).
    pub fn create(dir: &Path) -> std::io::Result<PieceFiles> {
        std::fs::create_dir_all(dir)?;
        let open = |name: &str| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(name))
        };
        Ok(PieceFiles {
            dir: dir.to_path_buf(),
            media: std::io::BufWriter::with_capacity(256 << 10, open(MEDIA)?),
            journal: std::io::BufWriter::with_capacity(16 << 10, open(JOURNAL)?),
        })
    }

    pub fn append(&mut self, a: &Append) -> std::io::Result<()> {
        self.media.write_all(&a.media)?;
        self.journal.write_all(&a.journal)
    }

    /// Hands the buffered bytes to the kernel (media first: a journal record must
    /// never name data that is not in the file).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.media.flush()?;
        self.journal.flush()
    }

    /// Completes the piece as `DIR/ready.mp4` and returns its path.
    pub fn finish(mut self, finish: &Finish) -> std::io::Result<PathBuf> {
        self.flush()?;
        let media = self.media.into_inner().map_err(|e| e.into_error())?;
        drop(self.journal);
        finalize(&self.dir, media, finish)
    }
}

/// Patches and completes `DIR/recording.mp4` (open for writing) as `DIR/ready.mp4`:
/// the body cut to its complete samples, the `moov` after it, and the `mdat` size
/// set last (a file whose size is set always has its `moov`).
pub fn finalize(dir: &Path, mut media: File, finish: &Finish) -> std::io::Result<PathBuf> {
    let body_end = finish.body_end();
    media.set_len(body_end)?;
    media.seek(SeekFrom::Start(body_end))?;
    media.write_all(&finish.moov)?;
    media.sync_data()?;
    media.seek(SeekFrom::Start(finish.mdat_size_at))?;
    media.write_all(&finish.mdat_size)?;
    media.sync_all()?;
    drop(media);
    let ready = dir.join(READY);
    std::fs::rename(dir.join(MEDIA), &ready)?;
    let _ = std::fs::remove_file(dir.join(JOURNAL));
    File::open(dir)?.sync_all()?;
    Ok(ready)
}

/// Re-opens the media file of a piece left by a stopped server, for [`finalize`].
pub fn reopen_media(dir: &Path) -> std::io::Result<(File, u64)> {
    let f = OpenOptions::new().write(true).open(dir.join(MEDIA))?;
    let len = f.metadata()?.len();
    Ok((f, len))
}
