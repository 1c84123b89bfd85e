//! Caches: parsed indexes and built fragments, each a byte-bounded LRU.
//!
//! Both are synchronous: the `Mutex` is held only to look up or insert, never
//! while a file is read or a fragment built (two requests for the same
//! missing entry may both build it; the second insert replaces the first).

use std::collections::HashMap;
use std::fs::File;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;

use crate::{IndexOptions, MediaIndex, VodError};

/// A least-recently-used map bounded by the sum of its entries' weights.
struct Lru<K, V> {
    map: HashMap<K, (V, usize, u64)>,
    bytes: usize,
    budget: usize,
    tick: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> Lru<K, V> {
    fn new(budget: usize) -> Self {
        Lru {
            map: HashMap::new(),
            bytes: 0,
            budget,
            tick: 0,
        }
    }

    fn get(&mut self, k: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(k).map(|e| {
            e.2 = tick;
            e.0.clone()
        })
    }

    fn insert(&mut self, k: K, v: V, weight: usize) {
        if weight > self.budget {
            return;
        }
        self.tick += 1;
        if let Some(old) = self.map.insert(k, (v, weight, self.tick)) {
            self.bytes -= old.1;
        }
        self.bytes += weight;
        // Linear scan for the oldest: caches hold hundreds of entries at most
        // per MiB of budget, and eviction is rare next to a file read.
        while self.bytes > self.budget {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, e)| e.2)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = self.map.remove(&oldest) {
                self.bytes -= e.1;
            }
        }
    }

    fn remove_if(&mut self, mut f: impl FnMut(&K) -> bool) {
        let bytes = &mut self.bytes;
        self.map.retain(|k, e| {
            let drop = f(k);
            if drop {
                *bytes -= e.1;
            }
            !drop
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere leaves a consistent map (every update is one step).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Identifies one version of a file: path, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub path: PathBuf,
    pub len: u64,
    pub modified: Option<SystemTime>,
}

impl FileKey {
    pub fn of(path: &Path, file: &File) -> Result<FileKey, VodError> {
        let meta = file.metadata().map_err(|source| VodError::Io {
            what: "file metadata",
            offset: 0,
            source,
        })?;
        Ok(FileKey {
            path: path.to_path_buf(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// Parsed indexes by file version, within a byte budget (by
/// [`MediaIndex::heap_size`]).
pub struct IndexCache {
    opts: IndexOptions,
    lru: Mutex<Lru<FileKey, Arc<MediaIndex>>>,
}

impl IndexCache {
    pub fn new(budget_bytes: usize, opts: IndexOptions) -> Self {
        IndexCache {
            opts,
            lru: Mutex::new(Lru::new(budget_bytes)),
        }
    }

    /// Opens `path` and returns its index (cached or built now) with the
    /// open file to build fragments from and the key that names this
    /// version. Blocking: call from a blocking thread.
    pub fn open(&self, path: &Path) -> Result<(Arc<MediaIndex>, File, FileKey), VodError> {
        let file = File::open(path).map_err(|source| VodError::Io {
            what: "open",
            offset: 0,
            source,
        })?;
        let key = FileKey::of(path, &file)?;
        if let Some(ix) = lock(&self.lru).get(&key) {
            return Ok((ix, file, key));
        }
        let ix = Arc::new(MediaIndex::open(&file, &self.opts)?);
        let weight = ix.heap_size();
        let mut lru = lock(&self.lru);
        // An older version of the same path is dead weight.
        lru.remove_if(|k| k.path == key.path && *k != key);
        lru.insert(key.clone(), Arc::clone(&ix), weight);
        drop(lru);
        Ok((ix, file, key))
    }

    /// Bytes held (sum of the cached indexes' heap sizes).
    pub fn bytes(&self) -> usize {
        lock(&self.lru).bytes
    }

    pub fn len(&self) -> usize {
        lock(&self.lru).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a cached fragment is: a file version, a track and a segment number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub file: FileKey,
    pub track_id: u32,
    pub segment: u32,
}

/// Recently built init segments and fragments, within a byte budget.
pub struct FragmentCache {
    lru: Mutex<Lru<FragmentKey, Bytes>>,
}

impl FragmentCache {
    pub fn new(budget_bytes: usize) -> Self {
        FragmentCache {
            lru: Mutex::new(Lru::new(budget_bytes)),
        }
    }

    pub fn get(&self, key: &FragmentKey) -> Option<Bytes> {
        lock(&self.lru).get(key)
    }

    pub fn insert(&self, key: FragmentKey, data: Bytes) {
        let n = data.len();
        lock(&self.lru).insert(key, data, n);
    }

    /// The cached bytes, or `build()`'s (run without the lock), cached.
    pub fn get_or_build(
        &self,
        key: FragmentKey,
        build: impl FnOnce() -> Result<Bytes, VodError>,
    ) -> Result<Bytes, VodError> {
        if let Some(b) = self.get(&key) {
            return Ok(b);
        }
        let b = build()?;
        self.insert(key, b.clone());
        Ok(b)
    }

    pub fn bytes(&self) -> usize {
        lock(&self.lru).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_least_recent_within_budget() {
        let mut l = Lru::new(10);
        l.insert(1, "a", 4);
        l.insert(2, "b", 4);
        assert_eq!(l.get(&1), Some("a")); // 2 is now the oldest
        l.insert(3, "c", 4);
        assert_eq!(l.get(&2), None);
        assert_eq!(l.get(&1), Some("a"));
        assert_eq!(l.get(&3), Some("c"));
        assert_eq!(l.bytes, 8);
        l.insert(4, "too big", 11);
        assert_eq!(l.get(&4), None);
        l.insert(3, "c2", 2);
        assert_eq!(l.bytes, 6);
    }

    #[test]
    fn index_cache_keys_on_file_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mp4");
        std::fs::write(&path, crate::synth::small_file()).unwrap();
        let cache = IndexCache::new(1 << 20, IndexOptions::default());
        let (a, _, ka) = cache.open(&path).unwrap();
        let (b, _, kb) = cache.open(&path).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "second open is a hit");
        assert_eq!(ka, kb);
        assert_eq!(cache.bytes(), a.heap_size());
        // A rewritten file (another size) is indexed again; the old version
        // leaves the cache.
        let mut f = crate::synth::small_file();
        f.extend_from_slice(&[0, 0, 0, 8, b'f', b'r', b'e', b'e']);
        std::fs::write(&path, f).unwrap();
        let (c, _, kc) = cache.open(&path).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_ne!(ka, kc);
        assert_eq!(cache.len(), 1);
        // A budget below one index caches nothing.
        let tiny = IndexCache::new(16, IndexOptions::default());
        tiny.open(&path).unwrap();
        assert!(tiny.is_empty());
        assert!(matches!(
            cache.open(&dir.path().join("missing.mp4")),
            Err(VodError::Io { what: "open", .. })
        ));
    }

    #[test]
    fn fragment_cache_builds_once() {
        let c = FragmentCache::new(1000);
        let key = FragmentKey {
            file: FileKey {
                path: "/x".into(),
                len: 1,
                modified: None,
            },
            track_id: 1,
            segment: 0,
        };
        let mut builds = 0;
        for _ in 0..3 {
            let b = c
                .get_or_build(key.clone(), || {
                    builds += 1;
                    Ok(Bytes::from_static(b"frag"))
                })
                .unwrap();
            assert_eq!(&b[..], b"frag");
        }
        assert_eq!(builds, 1);
        assert_eq!(c.bytes(), 4);
    }
}
