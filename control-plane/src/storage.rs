//! Where media entries' content is kept, behind a narrow [`MediaStore`] trait (the data
//! directory now; S3-compatible storage later).
//!
//! Content arrives as a stream and is *staged* first: written to a temporary file next
//! to its final place, never buffered whole, bounded by a maximum size and fsynced. Only
//! after the inspector accepted it is it *committed* (renamed to its final name, the
//! directory fsynced), so a half-written or rejected file is never seen as content, and a
//! replacement keeps the previous content readable until the rename.
//!
//! [`LocalMediaStore`] layout: `ROOT/ENTRY_ID/source.EXT` (the content),
//! `ROOT/ENTRY_ID/.upload-RANDOM.part` (a staged upload; leftovers of a stopped server are
//! removed when the store opens).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

/// A request body as a stream of chunks; an `Err` means the body broke off.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Errors of a media store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The body stream failed (the client stopped sending).
    #[error("upload interrupted: {0}")]
    Interrupted(#[source] std::io::Error),
    #[error("content larger than the maximum of {max} bytes")]
    TooLarge { max: u64 },
    /// No space (or quota) left where content is written.
    #[error("insufficient storage writing {path}: {source}")]
    Full {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("media storage I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Classifies an I/O error on `path` (a full disk or quota is [`StoreError::Full`]).
    pub fn io(path: &Path, source: std::io::Error) -> StoreError {
        let path = path.display().to_string();
        match source.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => StoreError::Full { path, source },
            _ => StoreError::Io { path, source },
        }
    }
}

/// Content written but not yet the entry's content.
#[derive(Debug)]
pub struct StagedContent {
    pub entry_id: String,
    /// A local file holding the complete content (what the inspector reads).
    pub path: PathBuf,
    /// Bytes written.
    pub size: u64,
    /// The first bytes (up to [`crate::content::SNIFF_LEN`]), for sniffing the type.
    pub head: Vec<u8>,
}

/// Keeps media entries' content.
pub trait MediaStore: Send + Sync + 'static {
    /// Writes `body` as staged content of `entry_id`, refusing more than `max_bytes`.
    /// Nothing is left behind on error.
    fn stage<'a>(
        &'a self,
        entry_id: &'a str,
        body: ByteStream,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<StagedContent, StoreError>>;

    /// Makes staged content the entry's content named `name` (`source.mp4`), replacing
    /// content of the same name at once. On error the staged content is removed.
    fn commit<'a>(
        &'a self,
        staged: StagedContent,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Stages a complete local file (a finished recording) as content of `entry_id`: moved
    /// when it is on the store's file system, else copied (and the original removed).
    fn stage_file<'a>(
        &'a self,
        entry_id: &'a str,
        path: &'a Path,
    ) -> BoxFuture<'a, Result<StagedContent, StoreError>>;

    /// The local file of content `name` of `entry_id`, fetched first from shared storage
    /// when this node has no copy; `None` when the content exists nowhere.
    fn fetch<'a>(
        &'a self,
        entry_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PathBuf>, StoreError>>;

    /// Whether content is shared with other nodes (S3-compatible storage): content names
    /// are then versioned, so that a node never serves a stale local copy.
    fn is_shared(&self) -> bool {
        false
    }

    /// Removes staged content that will not become the entry's content.
    fn discard(&self, staged: StagedContent) -> BoxFuture<'_, ()>;

    /// The local file of content `name` of `entry_id`, if this store keeps files locally.
    fn local_path(&self, entry_id: &str, name: &str) -> Option<PathBuf>;

    /// Removes content `name` of `entry_id` (a previous version after a replacement).
    fn remove<'a>(
        &'a self,
        entry_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes everything of `entry_id` (its entry was deleted).
    fn delete<'a>(&'a self, entry_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Content in a local directory: `ROOT/ENTRY_ID/NAME`.
#[derive(Debug, Clone)]
pub struct LocalMediaStore {
    root: PathBuf,
}

const PART_PREFIX: &str = ".upload-";
const PART_SUFFIX: &str = ".part";

/// Whether `s` is safe as one path component here (entry ids and `source.EXT`).
fn safe_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

impl LocalMediaStore {
    /// A store in `root` (created if needed), with leftover staged files of a previous
    /// run removed (only one process uses a local store, and it has no upload running
    /// while it opens).
    pub async fn open(root: PathBuf) -> Result<LocalMediaStore, StoreError> {
        let r = root.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            std::fs::create_dir_all(&r).map_err(|e| StoreError::io(&r, e))?;
            for dir in std::fs::read_dir(&r).map_err(|e| StoreError::io(&r, e))? {
                let Ok(dir) = dir else { continue };
                let Ok(files) = std::fs::read_dir(dir.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let name = f.file_name();
                    let name = name.to_string_lossy();
                    if name.starts_with(PART_PREFIX) && name.ends_with(PART_SUFFIX) {
                        match std::fs::remove_file(f.path()) {
                            Ok(()) => tracing::info!(path = %f.path().display(), "removed an unfinished upload"),
                            Err(e) => tracing::warn!(path = %f.path().display(), error = %e, "cannot remove an unfinished upload"),
                        }
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Io {
            path: root.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })??;
        Ok(LocalMediaStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entry_dir(&self, entry_id: &str) -> Result<PathBuf, StoreError> {
        if !safe_component(entry_id) {
            return Err(StoreError::Io {
                path: self.root.display().to_string(),
                source: std::io::Error::new(ErrorKind::InvalidInput, "malformed entry id"),
            });
        }
        Ok(self.root.join(entry_id))
    }

    async fn stage_inner(
        &self,
        entry_id: &str,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<StagedContent, StoreError> {
        let dir = self.entry_dir(entry_id)?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| StoreError::io(&dir, e))?;
        let path = dir.join(format!(
            "{PART_PREFIX}{}{PART_SUFFIX}",
            crate::auth::random_hex(8)
        ));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| StoreError::io(&path, e))?;
        let written = match write_limited(&mut file, body, max_bytes, &path).await {
            // The data is on disk before it can become content.
            Ok(w) => file
                .sync_all()
                .await
                .map(|()| w)
                .map_err(|e| StoreError::io(&path, e)),
            Err(e) => Err(e),
        };
        drop(file);
        match written {
            Ok((size, head)) => Ok(StagedContent {
                entry_id: entry_id.to_string(),
                path,
                size,
                head,
            }),
            Err(e) => {
                remove_quietly(&path).await;
                Err(e)
            }
        }
    }
}

impl LocalMediaStore {
    async fn stage_file_inner(
        &self,
        entry_id: &str,
        source: &Path,
    ) -> Result<StagedContent, StoreError> {
        use tokio::io::AsyncReadExt;
        let dir = self.entry_dir(entry_id)?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| StoreError::io(&dir, e))?;
        let path = dir.join(format!(
            "{PART_PREFIX}{}{PART_SUFFIX}",
            crate::auth::random_hex(8)
        ));
        if tokio::fs::rename(source, &path).await.is_err() {
            // Another file system: copy, make it durable, then drop the original.
            if let Err(e) = tokio::fs::copy(source, &path).await {
                remove_quietly(&path).await;
                return Err(StoreError::io(&path, e));
            }
            let synced = async {
                tokio::fs::File::open(&path).await?.sync_all().await?;
                tokio::fs::remove_file(source).await
            };
            if let Err(e) = synced.await {
                remove_quietly(&path).await;
                return Err(StoreError::io(&path, e));
            }
        }
        let mut head = vec![0u8; crate::content::SNIFF_LEN];
        let (size, n) = async {
            let mut f = tokio::fs::File::open(&path).await?;
            let size = f.metadata().await?.len();
            let mut n = 0;
            while n < head.len() {
                let r = f.read(&mut head[n..]).await?;
                if r == 0 {
                    break;
                }
                n += r;
            }
            Ok::<_, std::io::Error>((size, n))
        }
        .await
        .map_err(|e| StoreError::io(&path, e))?;
        head.truncate(n);
        Ok(StagedContent {
            entry_id: entry_id.to_string(),
            path,
            size,
            head,
        })
    }
}

/// Copies `body` into `file` (at most `max_bytes`), then flushes and fsyncs it. Returns
/// the size and the first bytes.
pub(crate) async fn write_limited<W: tokio::io::AsyncWrite + Unpin>(
    file: &mut W,
    mut body: ByteStream,
    max_bytes: u64,
    path: &Path,
) -> Result<(u64, Vec<u8>), StoreError> {
    let mut size: u64 = 0;
    let mut head = Vec::with_capacity(crate::content::SNIFF_LEN);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StoreError::Interrupted)?;
        size = size.saturating_add(chunk.len() as u64);
        if size > max_bytes {
            return Err(StoreError::TooLarge { max: max_bytes });
        }
        let want = crate::content::SNIFF_LEN.saturating_sub(head.len());
        head.extend_from_slice(&chunk[..want.min(chunk.len())]);
        file.write_all(&chunk)
            .await
            .map_err(|e| StoreError::io(path, e))?;
    }
    file.flush().await.map_err(|e| StoreError::io(path, e))?;
    Ok((size, head))
}

async fn remove_quietly(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        if e.kind() != ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a staged upload");
        }
    }
}

/// fsyncs a directory so that a rename in it is durable.
async fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&d).and_then(|f| f.sync_all()))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|e| StoreError::io(dir, e))
}

impl MediaStore for LocalMediaStore {
    fn stage<'a>(
        &'a self,
        entry_id: &'a str,
        body: ByteStream,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<StagedContent, StoreError>> {
        Box::pin(self.stage_inner(entry_id, body, max_bytes))
    }

    fn commit<'a>(
        &'a self,
        staged: StagedContent,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let dir = self.entry_dir(&staged.entry_id)?;
            if !safe_component(name) {
                remove_quietly(&staged.path).await;
                return Err(StoreError::Io {
                    path: dir.display().to_string(),
                    source: std::io::Error::new(ErrorKind::InvalidInput, "malformed content name"),
                });
            }
            let target = dir.join(name);
            if let Err(e) = tokio::fs::rename(&staged.path, &target).await {
                remove_quietly(&staged.path).await;
                return Err(StoreError::io(&target, e));
            }
            sync_dir(&dir).await
        })
    }

    fn stage_file<'a>(
        &'a self,
        entry_id: &'a str,
        path: &'a Path,
    ) -> BoxFuture<'a, Result<StagedContent, StoreError>> {
        Box::pin(self.stage_file_inner(entry_id, path))
    }

    fn fetch<'a>(
        &'a self,
        entry_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PathBuf>, StoreError>> {
        Box::pin(async move {
            let Some(path) = self.local_path(entry_id, name) else {
                return Ok(None);
            };
            match tokio::fs::metadata(&path).await {
                Ok(_) => Ok(Some(path)),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::io(&path, e)),
            }
        })
    }

    fn discard(&self, staged: StagedContent) -> BoxFuture<'_, ()> {
        Box::pin(async move { remove_quietly(&staged.path).await })
    }

    fn local_path(&self, entry_id: &str, name: &str) -> Option<PathBuf> {
        (safe_component(entry_id) && safe_component(name))
            .then(|| self.root.join(entry_id).join(name))
    }

    fn remove<'a>(
        &'a self,
        entry_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(path) = self.local_path(entry_id, name) else {
                return Ok(());
            };
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::io(&path, e)),
            }
        })
    }

    fn delete<'a>(&'a self, entry_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let dir = self.entry_dir(entry_id)?;
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::io(&dir, e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: Vec<Result<&'static [u8], std::io::Error>>) -> ByteStream {
        futures_util::stream::iter(parts.into_iter().map(|p| p.map(Bytes::from_static))).boxed()
    }

    #[tokio::test]
    async fn stage_commit_replace_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMediaStore::open(dir.path().join("media"))
            .await
            .unwrap();
        let staged = store
            .stage("0_abcdefgh", chunks(vec![Ok(b"hello "), Ok(b"world")]), 100)
            .await
            .unwrap();
        assert_eq!(staged.size, 11);
        assert_eq!(staged.head, b"hello world");
        assert_eq!(std::fs::read(&staged.path).unwrap(), b"hello world");
        store.commit(staged, "source.bin").await.unwrap();
        let path = store.local_path("0_abcdefgh", "source.bin").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");

        // A replacement stays out of sight until committed.
        let staged = store
            .stage("0_abcdefgh", chunks(vec![Ok(b"second")]), 100)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        store.commit(staged, "source.bin").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );

        store.delete("0_abcdefgh").await.unwrap();
        assert!(!path.parent().unwrap().exists());
        store.delete("0_abcdefgh").await.unwrap();
    }

    #[tokio::test]
    async fn failed_stages_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMediaStore::open(dir.path().to_path_buf())
            .await
            .unwrap();
        let e = store
            .stage("0_abcdefgh", chunks(vec![Ok(b"12345"), Ok(b"67890")]), 8)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::TooLarge { max: 8 }), "{e}");
        let broken = std::io::Error::new(ErrorKind::ConnectionReset, "reset");
        let e = store
            .stage("0_abcdefgh", chunks(vec![Ok(b"12345"), Err(broken)]), 100)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Interrupted(_)), "{e}");
        let left = std::fs::read_dir(dir.path().join("0_abcdefgh"))
            .unwrap()
            .count();
        assert_eq!(left, 0);
        assert!(store.stage("../x", chunks(vec![]), 1).await.is_err());
        assert!(store.local_path("0_abcdefgh", "../vela.db").is_none());
    }

    #[tokio::test]
    async fn leftover_parts_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let e = dir.path().join("0_abcdefgh");
        std::fs::create_dir_all(&e).unwrap();
        std::fs::write(e.join(".upload-0011.part"), b"half").unwrap();
        std::fs::write(e.join("source.mp4"), b"content").unwrap();
        LocalMediaStore::open(dir.path().to_path_buf())
            .await
            .unwrap();
        let names: Vec<_> = std::fs::read_dir(&e)
            .unwrap()
            .map(|f| f.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("source.mp4")]);
    }

    /// A real ENOSPC from the kernel (`/dev/full`) is reported as a full store.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_full_device_is_insufficient_storage() {
        let mut full = tokio::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .await
            .unwrap();
        let big: &'static [u8] = Box::leak(vec![7u8; 64 * 1024].into_boxed_slice());
        let e = write_limited(
            &mut full,
            chunks(vec![Ok(big), Ok(big)]),
            u64::MAX,
            Path::new("/dev/full"),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, StoreError::Full { .. }), "{e}");
    }
}
