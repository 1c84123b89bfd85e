//! A bounded, shared cache of spooled DVR segments.
//!
//! Players behind on the live edge (and every player of a popular DVR
//! position) ask for the same few spooled segments over and over. Reading
//! the file into a fresh buffer for each request costs a copy out of the page
//! cache, an allocation and a trip to the blocking pool per request; this
//! cache keeps the whole file of recently read segments as one [`Bytes`],
//! shared by every request that serves it (each response is a reference to
//! it, not a copy).
//!
//! - Bounded by bytes (`[live] dvr_cache_mib`, 0 turns it off), least
//!   recently used first out. A segment larger than the whole budget is read
//!   but not kept.
//! - Single-flight: concurrent misses on one segment share one read. The
//!   read runs in whichever waiting request polls it; if that request goes
//!   away, another waiter takes it over ([`tokio::sync::OnceCell`]).
//! - Entries are keyed by the segment's file path, unique to one stream
//!   instance and segment, and files are never rewritten in place, so an
//!   entry can never be stale. Entries are dropped when their file is deleted
//!   from the spool (the segment left the window, or its stream was dropped),
//!   so the cache never holds what the spool no longer has; the caller still
//!   checks the packager's window first.
//! - The lock is a plain mutex held for map updates only, never across a
//!   read.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::metrics;

/// What a load resolves to: the file's bytes, or `None` (missing or bad;
/// the loader logs why).
type Load = Arc<OnceCell<Option<Bytes>>>;

/// The cache; see the module docs.
#[derive(Debug)]
pub struct SegmentCache {
    capacity: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<PathBuf, Slot>,
    /// Ready entries by last use, oldest first.
    lru: BTreeMap<u64, PathBuf>,
    tick: u64,
    bytes: u64,
}

#[derive(Debug)]
enum Slot {
    Loading(Load),
    Ready { data: Bytes, used: u64 },
}

impl Inner {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Removes `path`'s entry, whatever its state.
    fn remove(&mut self, path: &Path) {
        if let Some(Slot::Ready { data, used }) = self.entries.remove(path) {
            self.lru.remove(&used);
            self.bytes -= data.len() as u64;
        }
    }

    /// Evicts least recently used entries until the total fits `capacity`.
    fn shrink_to(&mut self, capacity: u64) {
        while self.bytes > capacity {
            let Some((_, path)) = self.lru.pop_first() else {
                break;
            };
            if let Some(Slot::Ready { data, .. }) = self.entries.remove(&path) {
                self.bytes -= data.len() as u64;
            }
        }
    }
}

impl SegmentCache {
    /// A cache holding at most `capacity` bytes of segments (0: none).
    pub fn new(capacity: u64) -> Self {
        SegmentCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bytes held now.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// The segment at `path`, `len` bytes long, from the cache or by `load`
    /// (shared with every concurrent request for it).
    pub async fn get<F, Fut>(&self, path: &Path, len: u64, load: F) -> Option<Bytes>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<Bytes>>,
    {
        if len > self.capacity {
            return load().await;
        }
        let cell = {
            let mut inner = self.lock();
            let tick = inner.next_tick();
            match inner.entries.get_mut(path) {
                Some(Slot::Ready { data, used }) => {
                    let data = data.clone();
                    let old = std::mem::replace(used, tick);
                    inner.lru.remove(&old);
                    inner.lru.insert(tick, path.to_path_buf());
                    metrics::DVR_CACHE_HITS.inc();
                    return Some(data);
                }
                Some(Slot::Loading(cell)) => cell.clone(),
                None => {
                    let cell = Load::default();
                    inner
                        .entries
                        .insert(path.to_path_buf(), Slot::Loading(cell.clone()));
                    cell
                }
            }
        };
        let got = cell.get_or_init(load).await.clone();
        let mut inner = self.lock();
        // Only the load this entry still waits on fills it: the file may
        // have been deleted (the entry forgotten) while it was read.
        let ours =
            matches!(inner.entries.get(path), Some(Slot::Loading(c)) if Arc::ptr_eq(c, &cell));
        if ours {
            inner.entries.remove(path);
            if let Some(data) = got.as_ref().filter(|d| d.len() as u64 == len) {
                let used = inner.next_tick();
                inner.bytes += data.len() as u64;
                inner.lru.insert(used, path.to_path_buf());
                inner.entries.insert(
                    path.to_path_buf(),
                    Slot::Ready {
                        data: data.clone(),
                        used,
                    },
                );
                inner.shrink_to(self.capacity);
            }
            metrics::DVR_CACHE_BYTES.set(inner.bytes as i64);
        }
        got
    }

    /// Drops the entry of a file deleted from the spool.
    pub fn forget(&self, path: &Path) {
        let mut inner = self.lock();
        inner.remove(path);
        metrics::DVR_CACHE_BYTES.set(inner.bytes as i64);
    }

    /// Drops the entries of every file under `dir` (a dropped stream's
    /// directory).
    pub fn forget_dir(&self, dir: &Path) {
        let mut inner = self.lock();
        let gone: Vec<PathBuf> = inner
            .entries
            .keys()
            .filter(|p| p.starts_with(dir))
            .cloned()
            .collect();
        for path in gone {
            inner.remove(&path);
        }
        metrics::DVR_CACHE_BYTES.set(inner.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn seg(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[tokio::test]
    async fn hits_share_the_bytes_and_the_budget_evicts_least_recent() {
        let cache = SegmentCache::new(250);
        let loads = AtomicUsize::new(0);
        let load = |fill: u8| {
            loads.fetch_add(1, Ordering::SeqCst);
            async move { Some(seg(100, fill)) }
        };
        let a = cache.get(Path::new("/s/a"), 100, || load(1)).await.unwrap();
        let a2 = cache.get(Path::new("/s/a"), 100, || load(9)).await.unwrap();
        assert_eq!(a2, a);
        assert_eq!(a2.as_ptr(), a.as_ptr(), "a hit is the same buffer");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        cache.get(Path::new("/s/b"), 100, || load(2)).await.unwrap();
        // Touch a: b is now the least recently used.
        cache.get(Path::new("/s/a"), 100, || load(9)).await.unwrap();
        cache.get(Path::new("/s/c"), 100, || load(3)).await.unwrap();
        assert_eq!(cache.bytes(), 200, "b went to make room for c");
        assert_eq!(loads.load(Ordering::SeqCst), 3);
        let b = cache.get(Path::new("/s/b"), 100, || load(4)).await.unwrap();
        assert_eq!(b[0], 4, "b was read again");
        assert_eq!(loads.load(Ordering::SeqCst), 4);
        assert_eq!(cache.bytes(), 200);

        // Larger than the whole budget: served, not kept.
        let big = cache
            .get(Path::new("/s/big"), 300, || async { Some(seg(300, 5)) })
            .await;
        assert_eq!(big.unwrap().len(), 300);
        assert_eq!(cache.bytes(), 200);
    }

    #[tokio::test]
    async fn a_failed_or_short_load_is_not_kept() {
        let cache = SegmentCache::new(1000);
        assert!(cache
            .get(Path::new("/s/x"), 10, || async { None })
            .await
            .is_none());
        let short = cache
            .get(Path::new("/s/x"), 10, || async { Some(seg(5, 0)) })
            .await;
        assert_eq!(short.unwrap().len(), 5, "the caller checks the length");
        assert_eq!(cache.bytes(), 0);
        let ok = cache
            .get(Path::new("/s/x"), 10, || async { Some(seg(10, 1)) })
            .await;
        assert_eq!(ok.unwrap().len(), 10);
        assert_eq!(cache.bytes(), 10);
    }

    #[tokio::test]
    async fn forgetting_a_file_or_a_directory_frees_its_entries() {
        let cache = SegmentCache::new(1000);
        for p in [
            "/d/s-1/v1/seg-1.m4s",
            "/d/s-1/v1/seg-2.m4s",
            "/d/s-2/v1/seg-1.m4s",
        ] {
            cache
                .get(Path::new(p), 10, || async { Some(seg(10, 0)) })
                .await;
        }
        assert_eq!(cache.bytes(), 30);
        cache.forget(Path::new("/d/s-1/v1/seg-1.m4s"));
        assert_eq!(cache.bytes(), 20);
        cache.forget_dir(Path::new("/d/s-1"));
        assert_eq!(cache.bytes(), 10);
        let again = cache
            .get(Path::new("/d/s-1/v1/seg-2.m4s"), 10, || async {
                Some(seg(10, 7))
            })
            .await;
        assert_eq!(again.unwrap()[0], 7, "read again after it was forgotten");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_load() {
        let cache = Arc::new(SegmentCache::new(1 << 20));
        let loads = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, loads, mut gate) = (cache.clone(), loads.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(Path::new("/s/hot"), 64, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        Some(seg(64, 3))
                    })
                    .await
            }));
        }
        // Every task is waiting on the one load once it started.
        while loads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().len(), 64);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one read for eight misses");
    }

    #[tokio::test]
    async fn a_file_deleted_during_its_read_is_not_cached() {
        let cache = SegmentCache::new(1000);
        let path = Path::new("/s/gone");
        let got = cache
            .get(path, 10, || async {
                cache.forget(path);
                Some(seg(10, 0))
            })
            .await;
        assert!(got.is_some());
        assert_eq!(cache.bytes(), 0);
    }
}
