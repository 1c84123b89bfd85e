//! Media content shared by every node through S3-compatible object storage.
//!
//! [`SharedMediaStore`] keeps the node-local [`LocalMediaStore`] as a write-back cache
//! in front of a bucket (`media/ENTRY/NAME`). Content is staged, inspected and
//! committed locally exactly as on a single node, so an upload or a finished
//! recording is playable here at once; committing also writes a marker
//! (`ENTRY/.share-NAME`) and copies the file to the bucket in the background,
//! retrying with backoff while the bucket is unreachable (logged once per incident)
//! and resuming after a restart from the markers. Another node that is asked for
//! content it has no copy of fetches it once from the bucket into its own cache
//! (written to a temporary name and renamed, so a torn file is never read). Content
//! names are versioned on a shared store (`source-RANDOM.mp4`), so a cached copy is
//! never stale: a replacement is a new name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use vela_storage::{Key, Storage, StorageError};

use crate::storage::{ByteStream, LocalMediaStore, MediaStore, StagedContent, StoreError};

const MARKER: &str = ".share-";

/// A local cache in front of a shared bucket. See the module docs.
#[derive(Clone)]
pub struct SharedMediaStore {
    local: LocalMediaStore,
    shared: Storage,
    /// Whether an upload incident is being reported (log once per incident).
    incident: Arc<AtomicBool>,
    /// Fetches in progress, by `ENTRY/NAME`: concurrent requests for content this
    /// node lacks wait for one download instead of each starting their own.
    fetching: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

fn key(entry_id: &str, name: Option<&str>) -> Result<Key, StorageError> {
    match name {
        Some(n) => Key::new(&["media", entry_id, n]),
        None => Key::new(&["media", entry_id]),
    }
}

fn shared_err(key: &str, e: StorageError) -> StoreError {
    StoreError::Io {
        path: format!("shared:{key}"),
        source: std::io::Error::other(e.to_string()),
    }
}

impl SharedMediaStore {
    /// Opens the local cache in `root` and resumes the copies to the bucket that a
    /// stopped server left unfinished.
    pub async fn open(root: PathBuf, shared: Storage) -> Result<SharedMediaStore, StoreError> {
        let local = LocalMediaStore::open(root.clone()).await?;
        let store = SharedMediaStore {
            local,
            shared,
            incident: Arc::new(AtomicBool::new(false)),
            fetching: Arc::default(),
        };
        let mut pending = Vec::new();
        if let Ok(mut entries) = tokio::fs::read_dir(&root).await {
            while let Ok(Some(e)) = entries.next_entry().await {
                let Ok(mut files) = tokio::fs::read_dir(e.path()).await else {
                    continue;
                };
                while let Ok(Some(f)) = files.next_entry().await {
                    let file_name = f.file_name();
                    let Some(name) = file_name.to_str().and_then(|n| n.strip_prefix(MARKER)) else {
                        continue;
                    };
                    if let Some(entry) = e.file_name().to_str() {
                        pending.push((entry.to_string(), name.to_string()));
                    }
                }
            }
        }
        for (entry, name) in pending {
            tracing::info!(
                entry,
                name,
                "resuming the copy of content to shared storage"
            );
            store.spawn_share(entry, name);
        }
        Ok(store)
    }

    /// Downloads content `name` of `entry_id` into the local cache, unless a
    /// concurrent fetch already did.
    async fn fetch_once(
        &self,
        entry_id: &str,
        name: &str,
        k: &Key,
        path: &Path,
    ) -> Result<Option<PathBuf>, StoreError> {
        if let Some(p) = self.local.fetch(entry_id, name).await? {
            return Ok(Some(p));
        }
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::io(dir, e))?;
        }
        match self.shared.get_to_file(k, path).await {
            Ok(bytes) => {
                tracing::info!(
                    entry = entry_id,
                    name,
                    bytes,
                    "content fetched from shared storage"
                );
                Ok(Some(path.to_path_buf()))
            }
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(shared_err(k.as_str(), e)),
        }
    }

    fn marker(&self, entry_id: &str, name: &str) -> Option<PathBuf> {
        self.local
            .local_path(entry_id, name)
            .map(|p| p.with_file_name(format!("{MARKER}{name}")))
    }

    /// Copies content to the bucket until it is there (or the content is gone).
    fn spawn_share(&self, entry: String, name: String) {
        let store = self.clone();
        tokio::spawn(async move {
            let (Some(path), Some(marker), Ok(k)) = (
                store.local.local_path(&entry, &name),
                store.marker(&entry, &name),
                key(&entry, Some(&name)),
            ) else {
                return;
            };
            let mut backoff = Duration::from_millis(500);
            loop {
                if tokio::fs::metadata(&path).await.is_err() {
                    // Removed (entry deleted or replaced) before it was copied.
                    let _ = tokio::fs::remove_file(&marker).await;
                    return;
                }
                match store.shared.put_file(&k, &path).await {
                    Ok(bytes) => {
                        let _ = tokio::fs::remove_file(&marker).await;
                        if store.incident.swap(false, Ordering::AcqRel) {
                            tracing::info!("shared storage reachable again; copies resumed");
                        }
                        tracing::debug!(entry, name, bytes, "content copied to shared storage");
                        return;
                    }
                    Err(e) => {
                        if !store.incident.swap(true, Ordering::AcqRel) {
                            tracing::warn!(entry, name, kind = e.kind(), error = %e,
                                "cannot copy content to shared storage; retrying with backoff (content stays playable on this node)");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    }
}

impl MediaStore for SharedMediaStore {
    fn stage<'a>(
        &'a self,
        entry_id: &'a str,
        body: ByteStream,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<StagedContent, StoreError>> {
        self.local.stage(entry_id, body, max_bytes)
    }

    fn stage_file<'a>(
        &'a self,
        entry_id: &'a str,
        path: &'a Path,
    ) -> BoxFuture<'a, Result<StagedContent, StoreError>> {
        self.local.stage_file(entry_id, path)
    }

    fn commit<'a>(
        &'a self,
        staged: StagedContent,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let entry = staged.entry_id.clone();
            // The marker first: a crash after the commit still copies the content.
            if let Some(marker) = self.marker(&entry, name) {
                if let Some(dir) = marker.parent() {
                    let _ = tokio::fs::create_dir_all(dir).await;
                }
                tokio::fs::write(&marker, b"")
                    .await
                    .map_err(|e| StoreError::io(&marker, e))?;
            }
            if let Err(e) = self.local.commit(staged, name).await {
                if let Some(marker) = self.marker(&entry, name) {
                    let _ = tokio::fs::remove_file(&marker).await;
                }
                return Err(e);
            }
            self.spawn_share(entry, name.to_string());
            Ok(())
        })
    }

    fn fetch<'a>(
        &'a self,
        entry_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PathBuf>, StoreError>> {
        Box::pin(async move {
            if let Some(p) = self.local.fetch(entry_id, name).await? {
                return Ok(Some(p));
            }
            let Some(path) = self.local.local_path(entry_id, name) else {
                return Ok(None);
            };
            let k = key(entry_id, Some(name)).map_err(|e| shared_err(entry_id, e))?;
            let slot = {
                let mut f = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
                f.entry(k.as_str().to_string()).or_default().clone()
            };
            let _one = slot.lock().await;
            let fetched = self.fetch_once(entry_id, name, &k, &path).await;
            {
                let mut f = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
                // The last waiter takes the slot away.
                if Arc::strong_count(&slot) <= 2 {
                    f.remove(k.as_str());
                }
            }
            fetched
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn discard(&self, staged: StagedContent) -> BoxFuture<'_, ()> {
        self.local.discard(staged)
    }

    fn local_path(&self, entry_id: &str, name: &str) -> Option<PathBuf> {
        self.local.local_path(entry_id, name)
    }

    fn remove<'a>(
        &'a self,
        entry_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.local.remove(entry_id, name).await?;
            if let Some(marker) = self.marker(entry_id, name) {
                let _ = tokio::fs::remove_file(&marker).await;
            }
            let k = key(entry_id, Some(name)).map_err(|e| shared_err(entry_id, e))?;
            self.shared
                .delete(&k)
                .await
                .map_err(|e| shared_err(k.as_str(), e))
        })
    }

    fn delete<'a>(&'a self, entry_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.local.delete(entry_id).await?;
            let k = key(entry_id, None).map_err(|e| shared_err(entry_id, e))?;
            self.shared
                .delete_prefix(&k)
                .await
                .map(|_| ())
                .map_err(|e| shared_err(k.as_str(), e))
        })
    }
}
