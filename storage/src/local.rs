//! The local backend: object `a/b/c` is the file `ROOT/a/b/c`.
//!
//! Writes go to a temporary file beside the target (`.vela-tmp-RANDOM`, a
//! name no key can have since key segments never start with `.`), are
//! fsynced, then renamed over the target: rename is atomic on POSIX, so a
//! reader sees the old object or the new one, never a torn one. Temporary
//! files left by a crash are removed when the store is opened. All file I/O
//! runs on tokio's blocking pool (`spawn_blocking`), never on async workers.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;

use crate::{Key, ObjectInfo, StorageError};

/// Prefix of temporary files in the data directory.
const TMP_PREFIX: &str = ".vela-tmp-";

#[derive(Debug)]
pub(crate) struct Local {
    root: PathBuf,
    describe: String,
}

/// A random hex suffix for temporary names (no `rand` dependency: the
/// standard library's hasher keys are random per process).
pub(crate) fn random_suffix() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Runs blocking file I/O on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StorageError::Other {
            key: String::new(),
            backend: "local".into(),
            message: format!("blocking task failed: {e}"),
        })
    })
}

/// Writes `target` through a temporary file in its directory
/// (`.vela-tmp-RANDOM`): see [`write_via_temp`].
pub(crate) fn write_atomically<T>(
    target: &Path,
    fill: impl FnOnce(&mut fs::File) -> io::Result<T>,
) -> io::Result<T> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("{TMP_PREFIX}{}", random_suffix()));
    write_via_temp(&tmp, target, fill)
}

/// `PATH.tmp-RANDOM`: the temporary file for a download to `path`.
pub(crate) fn download_temp(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}", random_suffix()));
    PathBuf::from(name)
}

/// Creates `tmp` (and its directory), fills it with `fill`, fsyncs it and
/// renames it to `target`; `tmp` is removed on failure.
pub(crate) fn write_via_temp<T>(
    tmp: &Path,
    target: &Path,
    fill: impl FnOnce(&mut fs::File) -> io::Result<T>,
) -> io::Result<T> {
    let dir = tmp.parent().unwrap_or(Path::new("."));
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
    };
    fs::create_dir_all(dir)?;
    let mut file = match open() {
        // A concurrent delete may have pruned the (empty) directory between
        // create_dir_all and open: make it again, once.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            open()?
        }
        r => r?,
    };
    let result = (|| {
        let out = fill(&mut file)?;
        file.flush()?;
        // Data on disk before the rename makes it visible: after a crash
        // there is the old object or the complete new one.
        file.sync_all()?;
        fs::rename(tmp, target)?;
        Ok(out)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

fn info_of(key: Key, meta: &fs::Metadata) -> ObjectInfo {
    let last_modified = meta.modified().ok();
    // A weak validator like a web server's: mtime and size.
    let e_tag = last_modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| format!("{:x}-{:x}", d.as_nanos(), meta.len()));
    ObjectInfo {
        key,
        size: meta.len(),
        last_modified,
        e_tag,
    }
}

/// Every object file under `dir` (whose key is `prefix`), recursively;
/// names starting with `.` (temporary files) and names that are not valid
/// key segments are skipped.
fn walk(dir: &Path, prefix: &Key, out: &mut Vec<ObjectInfo>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(key) = prefix.child(name) else {
            continue;
        };
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            walk(&entry.path(), &key, out)?;
        } else if file_type.is_file() {
            match entry.metadata() {
                Ok(meta) => out.push(info_of(key, &meta)),
                // Deleted since read_dir: not there any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Removes temporary files left under `dir` by an interrupted write.
fn remove_stale_temps(dir: &Path) -> io::Result<u64> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        let is_tmp = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TMP_PREFIX));
        if file_type.is_dir() {
            removed += remove_stale_temps(&entry.path())?;
        } else if is_tmp {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

impl Local {
    pub(crate) async fn open(root: PathBuf) -> Result<Local, StorageError> {
        let describe = format!("local {}", root.display());
        let d = describe.clone();
        let root = blocking(move || {
            let map = |e| StorageError::from_io("", &d, e);
            fs::create_dir_all(&root).map_err(map)?;
            // Absolute, so local_path() is usable whatever the cwd becomes.
            let root = fs::canonicalize(&root).map_err(map)?;
            let removed = remove_stale_temps(&root).map_err(map)?;
            if removed > 0 {
                tracing::info!(root = %root.display(), removed, "storage: removed stale temporary files");
            }
            Ok(root)
        })
        .await?;
        Ok(Local { root, describe })
    }

    pub(crate) fn describe(&self) -> &str {
        &self.describe
    }

    pub(crate) fn path(&self, key: &Key) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(key.segments());
        p
    }

    fn err(&self, key: &Key) -> impl Fn(io::Error) -> StorageError + Send + 'static {
        let (k, d) = (key.to_string(), self.describe.clone());
        move |e| StorageError::from_io(&k, &d, e)
    }

    pub(crate) async fn put(&self, key: &Key, data: Bytes) -> Result<(), StorageError> {
        let (path, err) = (self.path(key), self.err(key));
        blocking(move || write_atomically(&path, |f| f.write_all(&data)).map_err(err)).await
    }

    pub(crate) async fn put_file(&self, key: &Key, src: &Path) -> Result<u64, StorageError> {
        let (path, err, src) = (self.path(key), self.err(key), src.to_owned());
        blocking(move || {
            let mut input = fs::File::open(&src).map_err(&err)?;
            // io::copy streams (and uses copy_file_range where it can).
            write_atomically(&path, |f| io::copy(&mut input, f)).map_err(&err)
        })
        .await
    }

    pub(crate) async fn get(&self, key: &Key) -> Result<Bytes, StorageError> {
        let (path, err) = (self.path(key), self.err(key));
        blocking(move || fs::read(&path).map(Bytes::from).map_err(err)).await
    }

    pub(crate) async fn get_range(
        &self,
        key: &Key,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StorageError> {
        let (path, err) = (self.path(key), self.err(key));
        blocking(move || {
            let mut f = fs::File::open(&path).map_err(&err)?;
            let size = f.metadata().map_err(&err)?.len();
            let end = range.end.min(size);
            if range.start >= end {
                return Ok(Bytes::new());
            }
            f.seek(SeekFrom::Start(range.start)).map_err(&err)?;
            let mut buf = Vec::with_capacity((end - range.start) as usize);
            f.take(end - range.start)
                .read_to_end(&mut buf)
                .map_err(&err)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    pub(crate) async fn get_to_file(&self, key: &Key, dst: &Path) -> Result<u64, StorageError> {
        let (path, err, dst) = (self.path(key), self.err(key), dst.to_owned());
        blocking(move || {
            let mut input = fs::File::open(&path).map_err(&err)?;
            write_via_temp(&download_temp(&dst), &dst, |f| io::copy(&mut input, f)).map_err(&err)
        })
        .await
    }

    pub(crate) async fn head(&self, key: &Key) -> Result<Option<ObjectInfo>, StorageError> {
        let (path, err, key) = (self.path(key), self.err(key), key.clone());
        blocking(move || match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(info_of(key, &m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(e)),
        })
        .await
    }

    pub(crate) async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        let (path, err, root) = (self.path(key), self.err(key), self.root.clone());
        blocking(move || {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(err(e)),
            }
            prune_empty_parents(&root, &path);
            Ok(())
        })
        .await
    }

    pub(crate) async fn delete_prefix(&self, prefix: &Key) -> Result<u64, StorageError> {
        let (dir, err, root, prefix) = (
            self.path(prefix),
            self.err(prefix),
            self.root.clone(),
            prefix.clone(),
        );
        blocking(move || {
            let mut objects = Vec::new();
            walk(&dir, &prefix, &mut objects).map_err(&err)?;
            let mut n = 0;
            for o in &objects {
                let mut p = root.clone();
                p.extend(o.key.segments());
                match fs::remove_file(&p) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(err(e)),
                }
            }
            // Then the directories, unless a writer put something new there
            // meanwhile (remove_dir_all would delete that too).
            remove_empty_dirs(&dir);
            prune_empty_parents(&root, &dir);
            Ok(n)
        })
        .await
    }

    pub(crate) async fn list(&self, prefix: &Key) -> Result<Vec<ObjectInfo>, StorageError> {
        let (dir, err, prefix) = (self.path(prefix), self.err(prefix), prefix.clone());
        blocking(move || {
            let mut out = Vec::new();
            walk(&dir, &prefix, &mut out).map_err(err)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }
}

/// Removes `dir` and the directories under it that are empty (best effort).
fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Removes the now empty directories between `path` and `root` (best
/// effort: a concurrent writer recreates what it needs, see
/// `write_atomically`'s create_dir_all).
fn prune_empty_parents(root: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}
