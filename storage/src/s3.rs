//! The S3 backend: object_store's S3 implementation (request signing, XML,
//! multipart uploads, retries with exponential backoff and jitter) sending
//! through our own hyper client (see `http.rs`).
//!
//! Atomicity comes from S3 itself: a PUT, and the CompleteMultipartUpload
//! that ends a multipart upload, replace the object at once, so readers see
//! the old object or the new one. A failed multipart upload is aborted so
//! that its parts do not linger (and cost) in the bucket.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::HttpError;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutPayload, RetryConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::HyperConnector;
use crate::local::download_temp;
use crate::{Key, ObjectInfo, S3Config, StorageError};

/// Part size for multipart uploads (S3 allows 5 MiB..5 GiB, 10 000 parts).
pub(crate) const PART_SIZE: usize = 16 * 1024 * 1024;
/// `put(Bytes)` above this goes multipart (the data is in memory anyway, so
/// only to keep each request, and each retry, reasonably small).
const PUT_MULTIPART_THRESHOLD: usize = 64 * 1024 * 1024;
/// Parts uploaded at once: bounds memory to this many parts.
const PARTS_IN_FLIGHT: usize = 2;

pub(crate) struct S3 {
    store: Arc<AmazonS3>,
    describe: String,
}

// Not derived: the store's configuration holds the credentials.
impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("backend", &self.describe)
            .finish()
    }
}

/// "s3 ENDPOINT/BUCKET", without any userinfo an endpoint URL might carry.
fn describe(config: &S3Config) -> String {
    let endpoint = match &config.endpoint {
        Some(e) => {
            let e = e.trim_end_matches('/');
            match (e.find("://"), e.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}{}", &e[..s + 3], &e[at + 1..]),
                _ => e.to_owned(),
            }
        }
        None => format!("https://s3.{}.amazonaws.com", config.region),
    };
    format!("s3 {endpoint}/{}", config.bucket)
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl S3 {
    pub(crate) fn open(config: &S3Config) -> Result<S3, StorageError> {
        let describe = describe(config);
        let other = |message: String| StorageError::Other {
            key: String::new(),
            backend: describe.clone(),
            message,
        };
        let from_env = config.access_key_id.is_none();
        let access_key_id = config
            .access_key_id
            .clone()
            .or_else(|| env_nonempty("AWS_ACCESS_KEY_ID"));
        let secret_access_key = config
            .secret_access_key
            .clone()
            .or_else(|| env_nonempty("AWS_SECRET_ACCESS_KEY"));
        let (Some(access_key_id), Some(secret_access_key)) = (access_key_id, secret_access_key)
        else {
            return Err(StorageError::Denied {
                key: String::new(),
                backend: describe.clone(),
                message: "no credentials: set the access key id and secret \
                          (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                    .into(),
            });
        };
        let timeout = config.request_timeout.max(Duration::from_millis(100));
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: config.max_retries,
            // Long enough for every retry to run its full timeout, capped
            // well below the lifetime of a request's signature.
            retry_timeout: timeout
                .saturating_mul(config.max_retries.min(1000) as u32 + 1)
                .min(Duration::from_secs(240)),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(access_key_id)
            .with_secret_access_key(secret_access_key)
            .with_virtual_hosted_style_request(config.virtual_hosted)
            .with_retry(retry)
            .with_client_options(ClientOptions::new().with_timeout(timeout))
            .with_http_connector(HyperConnector::new(timeout).map_err(&other)?);
        if from_env {
            if let Some(token) = env_nonempty("AWS_SESSION_TOKEN") {
                builder = builder.with_token(token);
            }
        }
        if let Some(endpoint) = &config.endpoint {
            // http:// endpoints are for S3-compatible servers on a trusted
            // network (and the tests' SeaweedFS on loopback).
            builder = builder.with_endpoint(endpoint).with_allow_http(true);
        }
        let store = builder.build().map_err(|e| other(e.to_string()))?;
        Ok(S3 {
            store: Arc::new(store),
            describe,
        })
    }

    pub(crate) fn describe(&self) -> &str {
        &self.describe
    }

    fn err(&self, key: &str) -> impl Fn(object_store::Error) -> StorageError + '_ {
        let key = key.to_owned();
        move |e| map_error(e, &key, &self.describe)
    }

    fn io_err(&self, key: &Key) -> impl Fn(std::io::Error) -> StorageError + '_ {
        let key = key.to_string();
        move |e| StorageError::from_io(&key, &self.describe, e)
    }

    pub(crate) async fn put(&self, key: &Key, data: Bytes) -> Result<(), StorageError> {
        let path = path(key);
        if data.len() <= PUT_MULTIPART_THRESHOLD {
            self.store
                .put(&path, PutPayload::from_bytes(data))
                .await
                .map_err(self.err(key.as_str()))?;
            return Ok(());
        }
        let mut parts = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            parts.push(rest.split_to(PART_SIZE.min(rest.len())));
        }
        let mut iter = parts.into_iter();
        self.multipart(key, move || {
            let next = iter.next();
            async move { Ok(next) }
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn put_file(&self, key: &Key, src: &Path) -> Result<u64, StorageError> {
        let io_err = self.io_err(key);
        let mut file = tokio::fs::File::open(src).await.map_err(&io_err)?;
        let size = file.metadata().await.map_err(&io_err)?.len();
        if size <= PART_SIZE as u64 {
            // Small enough for one PUT (at most one part in memory).
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf).await.map_err(&io_err)?;
            let n = buf.len() as u64;
            self.put(key, Bytes::from(buf)).await?;
            return Ok(n);
        }
        // Larger parts for very large files: S3 allows 10 000 parts.
        let part_size = PART_SIZE.max(size.div_ceil(9_000) as usize);
        let file = Arc::new(tokio::sync::Mutex::new(file));
        self.multipart(key, move || {
            let file = file.clone();
            async move {
                let mut file = file.lock().await;
                let mut buf = Vec::with_capacity(part_size);
                // read_buf fills up to capacity; stop at a full part or EOF.
                while buf.len() < part_size {
                    if file.read_buf(&mut buf).await? == 0 {
                        break;
                    }
                }
                Ok((!buf.is_empty()).then(|| Bytes::from(buf)))
            }
        })
        .await
    }

    /// Uploads the parts `next_part` yields (None: done) as one multipart
    /// upload, with up to PARTS_IN_FLIGHT parts in flight; aborts the upload
    /// on any error. Returns the bytes uploaded.
    async fn multipart<F, Fut>(&self, key: &Key, mut next_part: F) -> Result<u64, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::io::Result<Option<Bytes>>>,
    {
        let err = self.err(key.as_str());
        let mut upload = self.store.put_multipart(&path(key)).await.map_err(&err)?;
        let result: Result<u64, StorageError> = async {
            let mut in_flight = VecDeque::new();
            let mut total = 0u64;
            while let Some(part) = next_part().await.map_err(self.io_err(key))? {
                total += part.len() as u64;
                if in_flight.len() >= PARTS_IN_FLIGHT {
                    if let Some(oldest) = in_flight.pop_front() {
                        let oldest: object_store::UploadPart = oldest;
                        oldest.await.map_err(&err)?;
                    }
                }
                in_flight.push_back(upload.put_part(PutPayload::from_bytes(part)));
            }
            for part in in_flight {
                part.await.map_err(&err)?;
            }
            upload.complete().await.map_err(&err)?;
            Ok(total)
        }
        .await;
        if result.is_err() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(backend = %self.describe, key = %key, error = %e,
                    "storage: could not abort a failed multipart upload");
            }
        }
        result
    }

    pub(crate) async fn get(&self, key: &Key) -> Result<Bytes, StorageError> {
        let err = self.err(key.as_str());
        let result = self.store.get(&path(key)).await.map_err(&err)?;
        result.bytes().await.map_err(&err)
    }

    pub(crate) async fn get_range(
        &self,
        key: &Key,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StorageError> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        self.store
            .get_range(&path(key), range)
            .await
            .map_err(self.err(key.as_str()))
    }

    pub(crate) async fn get_to_file(&self, key: &Key, dst: &Path) -> Result<u64, StorageError> {
        let err = self.err(key.as_str());
        let io_err = self.io_err(key);
        let result = self.store.get(&path(key)).await.map_err(&err)?;
        if let Some(dir) = dst.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(&io_err)?;
        }
        let tmp = download_temp(dst);
        let written: Result<u64, StorageError> = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .await
                .map_err(&io_err)?;
            let mut stream = result.into_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(&err)?;
                file.write_all(&chunk).await.map_err(&io_err)?;
                n += chunk.len() as u64;
            }
            file.flush().await.map_err(&io_err)?;
            file.sync_all().await.map_err(&io_err)?;
            tokio::fs::rename(&tmp, dst).await.map_err(&io_err)?;
            Ok(n)
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        written
    }

    pub(crate) async fn head(&self, key: &Key) -> Result<Option<ObjectInfo>, StorageError> {
        match self.store.head(&path(key)).await {
            Ok(meta) => Ok(Some(info(key.clone(), meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_error(e, key.as_str(), &self.describe)),
        }
    }

    pub(crate) async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        match self.store.delete(&path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_error(e, key.as_str(), &self.describe)),
        }
    }

    /// Every object under `prefix/`, keys as stored.
    async fn list_raw(&self, prefix: &Key) -> Result<Vec<ObjectMeta>, StorageError> {
        self.store
            .list(Some(&path(prefix)))
            .try_collect()
            .await
            .map_err(self.err(prefix.as_str()))
    }

    pub(crate) async fn list(&self, prefix: &Key) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut out: Vec<ObjectInfo> = self
            .list_raw(prefix)
            .await?
            .into_iter()
            .filter_map(|meta| match Key::parse(meta.location.as_ref()) {
                Ok(key) => Some(info(key, meta)),
                Err(_) => {
                    // Written by something else: not ours to name.
                    tracing::debug!(backend = %self.describe, object = %meta.location,
                        "storage: skipping an object whose name is not a valid key");
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub(crate) async fn usage(&self, prefix: &Key) -> Result<u64, StorageError> {
        Ok(self.list_raw(prefix).await?.iter().map(|m| m.size).sum())
    }

    pub(crate) async fn delete_prefix(&self, prefix: &Key) -> Result<u64, StorageError> {
        let locations = self.list_raw(prefix).await?;
        let locations = futures_util::stream::iter(
            locations
                .into_iter()
                .map(|m| Ok::<_, object_store::Error>(m.location)),
        );
        // Bulk deletes (DeleteObjects, 1000 keys a request) where supported.
        let mut deleted = self.store.delete_stream(locations.boxed());
        let mut n = 0;
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) => n += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(map_error(e, prefix.as_str(), &self.describe)),
            }
        }
        Ok(n)
    }
}

fn path(key: &Key) -> ObjectPath {
    // Key segments are [A-Za-z0-9._-] and never `.`/`..`: always a valid
    // object_store path, with nothing to percent-encode.
    ObjectPath::from(key.as_str())
}

fn info(key: Key, meta: ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        key,
        size: meta.size,
        last_modified: Some(SystemTime::from(meta.last_modified)),
        e_tag: meta.e_tag,
    }
}

/// Maps object_store's errors onto ours. object_store has already retried
/// what is retryable (connection errors, timeouts, 5xx) by then.
fn map_error(e: object_store::Error, key: &str, backend: &str) -> StorageError {
    use object_store::Error as E;
    let (key, backend) = (key.to_owned(), backend.to_owned());
    let message = e.to_string();
    match e {
        E::NotFound { .. } => StorageError::NotFound { key, backend },
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => StorageError::Denied {
            key,
            backend,
            message,
        },
        e => {
            // A transport failure (connect, timeout, reset) somewhere in the
            // source chain, or a 5xx status, means the service is unavailable.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut transport = false;
            while let Some(s) = source {
                if s.downcast_ref::<HttpError>().is_some() {
                    transport = true;
                    break;
                }
                source = s.source();
            }
            let server_error = message.contains("status code: 5")
                || message.contains("503 Service Unavailable")
                || message.contains("SlowDown");
            if transport || server_error {
                StorageError::Unavailable {
                    key,
                    backend,
                    message,
                }
            } else if message.contains("QuotaExceeded")
                || message.contains("EntityTooLarge")
                || message.contains("InsufficientStorage")
            {
                StorageError::Full {
                    key,
                    backend,
                    message,
                }
            } else {
                StorageError::Other {
                    key,
                    backend,
                    message,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_has_no_secrets() {
        let mut c = S3Config {
            endpoint: Some("http://user:pw@127.0.0.1:8333/".into()),
            bucket: "vela".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("SECRETEXAMPLE".into()),
            ..S3Config::default()
        };
        assert_eq!(describe(&c), "s3 http://127.0.0.1:8333/vela");
        c.endpoint = None;
        assert_eq!(describe(&c), "s3 https://s3.us-east-1.amazonaws.com/vela");
        let s = format!("{:?}", S3::open(&c).unwrap());
        assert!(!s.contains("SECRETEXAMPLE"), "{s}");
    }
}
