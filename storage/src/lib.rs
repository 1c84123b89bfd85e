//! Vela's storage layer: objects (VOD assets, recordings, thumbnails) kept
//! either in the local data directory or in S3-compatible object storage
//! (AWS S3, SeaweedFS, MinIO, ...), behind one small API, [`Storage`].
//!
//! - **Keys** ([`Key`]) are validated `a/b/c` paths of `[A-Za-z0-9._-]`
//!   segments that never start with `.`, so a key cannot escape the local
//!   root and means the same object on both backends.
//! - **Local** (`local.rs`): object `a/b/c` is the file `ROOT/a/b/c`
//!   ([`Storage::local_path`] hands it to code that wants the file itself).
//!   Writes go to a hidden temporary file in the same directory, are fsynced
//!   and renamed into place, so they are atomic; stale temporary files from a
//!   crash are removed by [`Storage::open`]. File I/O runs on tokio's
//!   blocking pool.
//! - **S3** (`s3.rs`): object_store's S3 implementation (signing, multipart,
//!   retries with exponential backoff) over our own hyper-util + hyper-rustls
//!   client (`http.rs`; ring, no reqwest, no aws-lc). A PUT or a completed
//!   multipart upload replaces an object atomically; large files go up in
//!   16 MiB parts, read from disk as they are sent, never whole in memory.
//!   Connection errors, timeouts and 5xx are retried `max_retries` times
//!   before they surface as [`StorageError::Unavailable`].
//! - **Downloads to a file** ([`Storage::get_to_file`]) stream into
//!   `PATH.tmp-RANDOM` and rename it to `PATH`, so `PATH` is never torn.

mod error;
mod http;
mod key;
mod local;
mod s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

pub use error::StorageError;
pub use key::Key;

/// Where objects are kept.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Files under `root` (created if missing).
    Local { root: PathBuf },
    /// An S3 bucket.
    S3(S3Config),
}

/// An S3 (or S3-compatible) bucket. `Debug` hides the secret.
#[derive(Clone)]
pub struct S3Config {
    /// None: AWS (`https://s3.REGION.amazonaws.com`); else the service's URL,
    /// e.g. `http://127.0.0.1:8333` for SeaweedFS or MinIO (`http://` allowed).
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Default "us-east-1".
    pub region: String,
    /// None: from env `AWS_ACCESS_KEY_ID` (and `AWS_SESSION_TOKEN` if set).
    pub access_key_id: Option<String>,
    /// None: from env `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// false (default): path-style requests (`ENDPOINT/BUCKET/KEY`), what
    /// most S3-compatible servers want; true: `BUCKET.HOST/KEY` (then a
    /// custom endpoint must already include the bucket).
    pub virtual_hosted: bool,
    /// Retries of a failed request (connect error, timeout, 5xx), with
    /// exponential backoff from 100 ms up to 15 s. Default 5.
    pub max_retries: usize,
    /// Per request until the response starts, and between two reads of a
    /// response body. Default 30 s.
    pub request_timeout: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            bucket: String::new(),
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            virtual_hosted: false,
            max_retries: 5,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &self.access_key_id.as_ref().map(|_| "<set>"),
            )
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("virtual_hosted", &self.virtual_hosted)
            .field("max_retries", &self.max_retries)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// What [`Storage::head`] and [`Storage::list`] tell about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: Key,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
    /// S3's ETag; locally a weak validator from mtime and size.
    pub e_tag: Option<String>,
}

/// A handle on the store; cheap to clone (an `Arc` inside).
#[derive(Debug, Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Inner {
    Local(local::Local),
    S3(s3::S3),
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $e:expr) => {
        match &*$self.inner {
            Inner::Local($b) => $e,
            Inner::S3($b) => $e,
        }
    };
}

impl Storage {
    /// Opens the backend. Local: creates the root and removes temporary
    /// files a crash left behind. S3: no request is made (the service may
    /// come up later); bad credentials show on the first operation.
    pub async fn open(backend: Backend) -> Result<Storage, StorageError> {
        let inner = match backend {
            Backend::Local { root } => Inner::Local(local::Local::open(root).await?),
            Backend::S3(config) => Inner::S3(s3::S3::open(&config)?),
        };
        let storage = Storage {
            inner: Arc::new(inner),
        };
        tracing::debug!(backend = %storage.describe(), "storage: opened");
        Ok(storage)
    }

    /// Whether objects are local files.
    pub fn is_local(&self) -> bool {
        matches!(*self.inner, Inner::Local(_))
    }

    /// The file holding `key` (`ROOT/a/b/c`, whether or not it exists);
    /// None on S3.
    pub fn local_path(&self, key: &Key) -> Option<PathBuf> {
        match &*self.inner {
            Inner::Local(l) => Some(l.path(key)),
            Inner::S3(_) => None,
        }
    }

    /// `local /path` or `s3 http://host:port/bucket`, for logs (no secrets).
    pub fn describe(&self) -> String {
        dispatch!(self, b => b.describe().to_owned())
    }

    /// Stores `data` at `key`, atomically replacing any object there.
    pub async fn put(&self, key: &Key, data: Bytes) -> Result<(), StorageError> {
        dispatch!(self, b => b.put(key, data).await)
    }

    /// Stores the file at `path` under `key`, streaming it (multipart in
    /// 16 MiB parts on S3 when larger than one part); atomic like `put`.
    /// Returns the bytes stored.
    pub async fn put_file(&self, key: &Key, path: &Path) -> Result<u64, StorageError> {
        dispatch!(self, b => b.put_file(key, path).await)
    }

    /// The whole object.
    pub async fn get(&self, key: &Key) -> Result<Bytes, StorageError> {
        dispatch!(self, b => b.get(key).await)
    }

    /// Bytes `range` of the object (an empty range reads nothing). The
    /// range should lie within the object: locally a range past the end
    /// is cut short at the end, on S3 the service decides (416 for a start
    /// past the end).
    pub async fn get_range(
        &self,
        key: &Key,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StorageError> {
        dispatch!(self, b => b.get_range(key, range).await)
    }

    /// Copies the object to the file `path` through `path.tmp-RANDOM` and a
    /// rename: `path` is the old file or the complete new one, never torn.
    /// Returns the bytes written.
    pub async fn get_to_file(&self, key: &Key, path: &Path) -> Result<u64, StorageError> {
        dispatch!(self, b => b.get_to_file(key, path).await)
    }

    /// The object's size and dates, or None when there is none.
    pub async fn head(&self, key: &Key) -> Result<Option<ObjectInfo>, StorageError> {
        dispatch!(self, b => b.head(key).await)
    }

    /// Deletes the object; a missing object is not an error.
    pub async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        dispatch!(self, b => b.delete(key).await)
    }

    /// Deletes every object under `prefix/` (segment-wise: `a/b` covers
    /// `a/b/c` but not `a/bc`); returns how many were deleted.
    pub async fn delete_prefix(&self, prefix: &Key) -> Result<u64, StorageError> {
        dispatch!(self, b => b.delete_prefix(prefix).await)
    }

    /// The objects under `prefix/`, recursively, sorted by key.
    pub async fn list(&self, prefix: &Key) -> Result<Vec<ObjectInfo>, StorageError> {
        dispatch!(self, b => b.list(prefix).await)
    }

    /// Total bytes of the objects under `prefix/`.
    pub async fn usage(&self, prefix: &Key) -> Result<u64, StorageError> {
        match &*self.inner {
            Inner::Local(l) => Ok(l.list(prefix).await?.iter().map(|o| o.size).sum()),
            Inner::S3(s) => s.usage(prefix).await,
        }
    }
}

#[cfg(test)]
mod tests;
