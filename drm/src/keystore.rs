//! Content keys per stream, made by a CSPRNG and kept across restarts.
//!
//! One JSON file per stream in the store's directory (`DATA/keys/` by
//! convention), mode 0600 in a 0700 directory, replaced atomically (written
//! to a temporary file, synced, renamed) whenever a key is added, so a crash
//! leaves the old or the new file, never half of one. All files are loaded
//! at [`KeyStore::open`], so a license request after a restart finds keys
//! of streams not yet republished.
//!
//! A key is chosen by (stream, timeline, track kind or `None` for one key
//! shared by all tracks, key period), the first three given as a
//! [`KeyScope`]. Without rotation the period is always 0; with rotation
//! every N segments it is `msn / N`. Keys are made lazily, the first time a
//! period is asked for.
//!
//! A timeline is one live instance of the stream: segment numbers start
//! again with each, so keys must too, or 'cenc' would encrypt new media
//! under an old (key, IV) pair and two ciphertexts would XOR to the XOR of
//! their clear texts. Timelines are ordered (the origin numbers instances
//! from the wall clock); the first key of a newer timeline drops the
//! older one's keys, and a request from an older one is refused.
//!
//! Within a timeline, a key period that has left the window (the scope's
//! oldest listed segment, less two periods of grace: renditions' windows
//! differ by a segment, concurrent requests see snapshots a segment apart,
//! and a player's licence request comes late) is dropped and never made again: asking for it is an
//! error, not a new key, because the media it protected may still sit in a
//! cache. Period 0 stays for the whole timeline (Smooth's one
//! `ProtectionHeader` names its keys). So the store holds about a window's
//! worth of periods however long the stream runs.
//!
//! ## Keys shared by a cluster
//!
//! A store opened with a secret ([`KeyStore::open_shared`]: the binary
//! gives it one derived from the cluster's server key, which every node on
//! one database shares) derives each key instead of drawing it: key id, key
//! and IV are HMAC-SHA256 of (stream, timeline, track kind, period) under
//! the secret, each with its own label. Every node then encrypts the same
//! content (the same stream name and timeline: a VOD entry's version, a
//! live instance) under the same key, so a player may take its key from
//! one node and its segments from another. Key files still record which
//! keys exist and the timeline and floor (the retirement rules above hold
//! per node as before); with a secret, the key material of a loaded record
//! is derived again rather than read, so a record written before the store
//! had a secret takes the cluster's key too. Deriving the same scope again
//! gives the same key: that is the point, and it is safe because one scope
//! always names the same media.
//!
//! Without a secret, key bytes come from `rand::rng()` (ChaCha12 seeded
//! from the OS). They are never logged: [`ContentKey`]'s `Debug` is redacted, and errors name files
//! and reasons, not contents.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use vela_media::MediaKind;

use crate::{ContentKey, DrmError};

/// Largest key file read at open: a day's window rotating every segment
/// of 0.5 s, two kinds, is ~50 MB; anything larger is not ours.
const MAX_FILE: u64 = 64 << 20;

#[derive(Serialize, Deserialize, Clone)]
struct KeyRecord {
    /// "video", "audio" or "all".
    kind: String,
    period: u64,
    kid: String,
    key: String,
    iv: String,
}

#[derive(Serialize, Deserialize, Default)]
struct KeyFile {
    stream: String,
    /// Absent in files written before timelines: 0, older than any.
    #[serde(default)]
    timeline: u64,
    #[serde(default)]
    floor: u64,
    keys: Vec<KeyRecord>,
}

/// Which keys a request may use: those of `stream`'s `timeline`, where
/// `oldest_msn` is the oldest segment the requester still lists (0 when it
/// does not know: nothing is dropped then).
#[derive(Clone, Copy, Debug)]
pub struct KeyScope<'a> {
    pub stream: &'a str,
    pub timeline: u64,
    pub oldest_msn: u64,
}

/// A track kind as a map key: 0 for the key shared by all tracks.
type Slot = u8;

fn slot(kind: Option<MediaKind>) -> Slot {
    match kind {
        None => 0,
        Some(MediaKind::Video) => 1,
        Some(MediaKind::Audio) => 2,
    }
}

fn slot_kind(slot: Slot) -> Option<MediaKind> {
    match slot {
        1 => Some(MediaKind::Video),
        2 => Some(MediaKind::Audio),
        _ => None,
    }
}

/// One stream's keys: those of its newest timeline.
struct StreamKeys {
    timeline: u64,
    /// Key periods below this (except 0) were dropped; never made again.
    floor: u64,
    keys: BTreeMap<(Slot, u64), ContentKey>,
}

struct State {
    streams: HashMap<String, StreamKeys>,
    /// Every key by id, with the stream it belongs to.
    by_kid: HashMap<[u8; 16], (std::sync::Arc<str>, ContentKey)>,
}

/// The key store. Cheap to share behind an `Arc`; methods take `&self`.
pub struct KeyStore {
    dir: PathBuf,
    rotation: Option<u64>,
    /// Keys are derived under this secret (shared by a cluster's nodes);
    /// `None`: drawn at random.
    secret: Option<[u8; 32]>,
    state: Mutex<State>,
}

/// One of the three values derived for a key scope.
fn derive16(
    secret: &[u8; 32],
    label: &[u8],
    stream: &str,
    timeline: u64,
    slot: Slot,
    period: u64,
) -> [u8; 16] {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    m.update(label);
    // Length-prefixed: no two (stream, ...) tuples feed the same bytes.
    m.update(&(stream.len() as u64).to_be_bytes());
    m.update(stream.as_bytes());
    m.update(&timeline.to_be_bytes());
    m.update(&[slot]);
    m.update(&period.to_be_bytes());
    let out = m.finalize().into_bytes();
    let mut v = [0u8; 16];
    v.copy_from_slice(&out[..16]);
    v
}

/// The key of (stream, timeline, slot, period) under `secret`.
fn derive_key(
    secret: &[u8; 32],
    stream: &str,
    timeline: u64,
    slot: Slot,
    period: u64,
) -> ContentKey {
    ContentKey {
        period,
        kid: derive16(
            secret,
            b"vela content kid\0",
            stream,
            timeline,
            slot,
            period,
        ),
        key: derive16(
            secret,
            b"vela content key\0",
            stream,
            timeline,
            slot,
            period,
        ),
        iv: derive16(secret, b"vela content iv\0", stream, timeline, slot, period),
    }
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("rotation", &self.rotation)
            .field("shared", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn kind_str(k: Option<MediaKind>) -> &'static str {
    k.map_or("all", MediaKind::as_str)
}

fn parse_kind(s: &str) -> Option<Option<MediaKind>> {
    match s {
        "all" => Some(None),
        "video" => Some(Some(MediaKind::Video)),
        "audio" => Some(Some(MediaKind::Audio)),
        _ => None,
    }
}

/// The file name for a stream: the name itself when it is plain, otherwise
/// `~` and its hex, so no name can escape the directory.
fn file_name(stream: &str) -> Result<String, DrmError> {
    if stream.is_empty() || stream.len() > 100 {
        return Err(DrmError::BadStreamName(stream.chars().take(120).collect()));
    }
    let plain = !stream.starts_with('.')
        && stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    Ok(if plain {
        format!("{stream}.json")
    } else {
        format!("~{}.json", hex(stream.as_bytes()))
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DrmError + '_ {
    move |source| DrmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl KeyStore {
    /// Opens (creating it if needed) the store in `dir` and loads every key
    /// file in it. `rotation`: a new key every that many segments.
    pub fn open(dir: impl AsRef<Path>, rotation: Option<u64>) -> Result<KeyStore, DrmError> {
        Self::open_with(dir.as_ref(), rotation, None)
    }

    /// Opens the store like [`KeyStore::open`], deriving every key under
    /// `secret` (see the module docs): stores of the nodes of one cluster,
    /// given the same secret, hand out the same keys.
    pub fn open_shared(
        dir: impl AsRef<Path>,
        rotation: Option<u64>,
        secret: [u8; 32],
    ) -> Result<KeyStore, DrmError> {
        Self::open_with(dir.as_ref(), rotation, Some(secret))
    }

    fn open_with(
        dir: &Path,
        rotation: Option<u64>,
        secret: Option<[u8; 32]>,
    ) -> Result<KeyStore, DrmError> {
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(&dir))?;
        }
        let mut state = State {
            streams: HashMap::new(),
            by_kid: HashMap::new(),
        };
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let file = load(&path)?;
            let mut sk = StreamKeys {
                timeline: file.timeline,
                floor: file.floor,
                keys: BTreeMap::new(),
            };
            for r in &file.keys {
                let bad = |what: &str| DrmError::KeyFile {
                    path: path.clone(),
                    reason: format!("bad {what} in a key record"),
                };
                let kind = parse_kind(&r.kind).ok_or_else(|| bad("kind"))?;
                let mut key = ContentKey {
                    period: r.period,
                    kid: unhex16(&r.kid).ok_or_else(|| bad("kid"))?,
                    key: unhex16(&r.key).ok_or_else(|| bad("key"))?,
                    iv: unhex16(&r.iv).ok_or_else(|| bad("iv"))?,
                };
                if let Some(secret) = &secret {
                    key = derive_key(secret, &file.stream, file.timeline, slot(kind), r.period);
                }
                state
                    .by_kid
                    .insert(key.kid, (file.stream.as_str().into(), key.clone()));
                sk.keys.insert((slot(kind), key.period), key);
            }
            state.streams.insert(file.stream, sk);
        }
        Ok(KeyStore {
            dir,
            rotation: rotation.filter(|&n| n > 0),
            secret,
            state: Mutex::new(state),
        })
    }

    /// The key period segment `msn` falls in.
    pub fn period_of(&self, msn: u64) -> u64 {
        self.rotation.map_or(0, |n| msn / n)
    }

    /// Segments per key period, when keys rotate.
    pub fn rotation(&self) -> Option<u64> {
        self.rotation
    }

    /// The first segment of key period `period`.
    pub fn first_msn(&self, period: u64) -> u64 {
        self.rotation.map_or(0, |n| period.saturating_mul(n))
    }

    /// The key for segment `msn` in `scope` (`kind` `None`: one key for
    /// all tracks), made and persisted on first use. Refused
    /// ([`DrmError::KeyRetired`]) for a timeline older than the stream's
    /// newest, and for a key period already dropped from the window.
    pub fn key(
        &self,
        scope: KeyScope<'_>,
        kind: Option<MediaKind>,
        msn: u64,
    ) -> Result<ContentKey, DrmError> {
        let stream = scope.stream;
        let period = self.period_of(msn);
        let at = (slot(kind), period);
        let retired = || DrmError::KeyRetired {
            stream: stream.chars().take(120).collect(),
            timeline: scope.timeline,
            period,
        };
        let name = file_name(stream)?;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let current = st.streams.get(stream);
        match current {
            Some(sk) if sk.timeline > scope.timeline => return Err(retired()),
            Some(sk) if sk.timeline == scope.timeline => {
                if let Some(k) = sk.keys.get(&at) {
                    return Ok(k.clone());
                }
                if period != 0 && period < sk.floor {
                    return Err(retired());
                }
            }
            _ => {}
        }
        let key = match &self.secret {
            Some(secret) => derive_key(secret, stream, scope.timeline, at.0, period),
            None => {
                let mut rng = rand::rng();
                let mut key = ContentKey {
                    period,
                    kid: [0; 16],
                    key: [0; 16],
                    iv: [0; 16],
                };
                rng.fill_bytes(&mut key.kid);
                rng.fill_bytes(&mut key.key);
                rng.fill_bytes(&mut key.iv);
                key
            }
        };

        // The stream's keys after this one is added: a newer timeline starts
        // empty; periods that left the window go.
        let (mut next, mut dropped) = match st.streams.get(stream) {
            Some(sk) if sk.timeline == scope.timeline => (
                StreamKeys {
                    timeline: sk.timeline,
                    floor: sk.floor,
                    keys: sk.keys.clone(),
                },
                Vec::new(),
            ),
            old => (
                StreamKeys {
                    timeline: scope.timeline,
                    floor: 0,
                    keys: BTreeMap::new(),
                },
                old.map(|sk| sk.keys.values().map(|k| k.kid).collect())
                    .unwrap_or_default(),
            ),
        };
        next.floor = next
            .floor
            .max(self.period_of(scope.oldest_msn).saturating_sub(2));
        let floor = next.floor;
        if period != 0 && period < floor {
            // Older than the requester's own window: nothing may use it.
            return Err(retired());
        }
        next.keys.retain(|&(_, p), k| {
            let keep = p == 0 || p >= floor;
            if !keep {
                dropped.push(k.kid);
            }
            keep
        });
        next.keys.insert(at, key.clone());
        // Persist before handing the key out: a key that was used must
        // survive a restart.
        self.save(&name, stream, &next)?;
        for kid in dropped {
            st.by_kid.remove(&kid);
        }
        st.by_kid.insert(key.kid, (stream.into(), key.clone()));
        st.streams.insert(stream.to_string(), next);
        tracing::info!(stream, timeline = scope.timeline, kind = kind_str(kind), period, kid = %crate::pssh::uuid_string(&key.kid), "new content key");
        Ok(key)
    }

    /// The key with this id, from any stream (for license requests).
    pub fn find_by_kid(&self, kid: &[u8; 16]) -> Option<ContentKey> {
        self.find_with_stream(kid).map(|(_, k)| k)
    }

    /// The key with this id and the stream it belongs to (for playback
    /// authorisation of key and licence requests).
    pub fn find_with_stream(&self, kid: &[u8; 16]) -> Option<(std::sync::Arc<str>, ContentKey)> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.by_kid.get(kid).cloned()
    }

    fn save(&self, name: &str, stream: &str, keys: &StreamKeys) -> Result<(), DrmError> {
        let file = KeyFile {
            stream: stream.to_string(),
            timeline: keys.timeline,
            floor: keys.floor,
            keys: keys
                .keys
                .iter()
                .map(|(&(slot, _), c)| KeyRecord {
                    kind: kind_str(slot_kind(slot)).to_string(),
                    period: c.period,
                    kid: hex(&c.kid),
                    key: hex(&c.key),
                    iv: hex(&c.iv),
                })
                .collect(),
        };
        // Compact: with rotation a file holds a window's worth of keys and is
        // rewritten at each new period.
        let json = serde_json::to_vec(&file).map_err(|e| DrmError::KeyFile {
            path: self.dir.join(name),
            reason: e.to_string(),
        })?;
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&json).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn load(path: &Path) -> Result<KeyFile, DrmError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.len() > MAX_FILE {
        return Err(DrmError::KeyFile {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_FILE} bytes"),
        });
    }
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| DrmError::KeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stream: &str, timeline: u64) -> KeyScope<'_> {
        KeyScope {
            stream,
            timeline,
            oldest_msn: 0,
        }
    }

    #[test]
    fn keys_persist_across_reopen_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let (a, v) = {
            let s = KeyStore::open(&keys, None).unwrap();
            let a = s.key(at("cam1", 7), None, 0).unwrap();
            assert_eq!(
                s.key(at("cam1", 7), None, 999).unwrap(),
                a,
                "no rotation: one period"
            );
            let v = s.key(at("cam1", 7), Some(MediaKind::Video), 0).unwrap();
            assert_ne!(a.kid, v.kid);
            assert_ne!(a.key, v.key);
            (a, v)
        };
        let s = KeyStore::open(&keys, None).unwrap();
        assert_eq!(s.key(at("cam1", 7), None, 5).unwrap(), a);
        assert_eq!(s.find_by_kid(&v.kid).unwrap(), v);
        // After a restart a key still names its stream.
        assert_eq!(&*s.find_with_stream(&v.kid).unwrap().0, "cam1");
        assert!(s.find_by_kid(&[0; 16]).is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(keys.join("cam1.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Only the key file; no temporary left behind.
        assert_eq!(std::fs::read_dir(&keys).unwrap().count(), 1);
    }

    #[test]
    fn rotation_every_n_segments() {
        let dir = tempfile::tempdir().unwrap();
        let s = KeyStore::open(dir.path(), Some(10)).unwrap();
        let k0 = s.key(at("s", 1), None, 9).unwrap();
        let k1 = s.key(at("s", 1), None, 10).unwrap();
        assert_eq!(k0.period, 0);
        assert_eq!(k1.period, 1);
        assert_ne!(k0.kid, k1.kid);
        assert_eq!(s.key(at("s", 1), None, 0).unwrap(), k0);
        assert_eq!(s.find_by_kid(&k0.kid).unwrap(), k0);
    }

    /// A republished stream numbers its segments from 0 again: it must get
    /// new keys, or 'cenc' would reuse (key, IV) pairs. The old instance's
    /// keys go; a late request from it is refused rather than answered with
    /// the new keys.
    #[test]
    fn a_newer_timeline_gets_new_keys_and_retires_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let s = KeyStore::open(dir.path(), None).unwrap();
        let old = s.key(at("s", 100), Some(MediaKind::Video), 1).unwrap();
        let new = s.key(at("s", 200), Some(MediaKind::Video), 1).unwrap();
        assert_ne!(old.kid, new.kid);
        assert_ne!(old.key, new.key);
        assert!(s.find_by_kid(&old.kid).is_none());
        assert!(matches!(
            s.key(at("s", 100), Some(MediaKind::Video), 1),
            Err(DrmError::KeyRetired { timeline: 100, .. })
        ));
        // Other streams are not touched, and the timeline survives a restart.
        let other = s.key(at("t", 100), None, 0).unwrap();
        let again = KeyStore::open(dir.path(), None).unwrap();
        assert_eq!(
            again.key(at("s", 200), Some(MediaKind::Video), 9).unwrap(),
            new
        );
        assert_eq!(again.key(at("t", 100), None, 0).unwrap(), other);
        assert!(again.key(at("s", 100), Some(MediaKind::Video), 1).is_err());
    }

    /// With rotation, the store keeps the periods the window lists (and two
    /// before, and period 0) however long the stream runs, and never makes
    /// a dropped period's key again.
    #[test]
    fn rotation_keeps_a_window_of_periods_and_never_remakes_a_dropped_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = KeyStore::open(dir.path(), Some(2)).unwrap();
        let window = 20u64; // segments listed
        let first = s.key(at("s", 1), None, 0).unwrap();
        let mut early = None;
        for msn in 0..5000u64 {
            let scope = KeyScope {
                stream: "s",
                timeline: 1,
                oldest_msn: msn.saturating_sub(window),
            };
            let k = s.key(scope, None, msn).unwrap();
            if msn == 40 {
                early = Some(k);
            }
        }
        let early = early.unwrap();
        assert!(
            s.find_by_kid(&early.kid).is_none(),
            "period 20 left the window"
        );
        assert!(matches!(
            s.key(at("s", 1), None, 40),
            Err(DrmError::KeyRetired { period: 20, .. })
        ));
        assert_eq!(s.key(at("s", 1), None, 1).unwrap(), first, "period 0 stays");
        // The window's 10 periods, the two before and period 0.
        let file: KeyFile =
            serde_json::from_slice(&std::fs::read(dir.path().join("s.json")).unwrap()).unwrap();
        assert!(file.keys.len() <= 14, "{} keys kept", file.keys.len());
        assert_eq!(file.floor, (4999 - window) / 2 - 2);
        // A stale scope (an older snapshot's window) never lowers the floor.
        let stale = KeyScope {
            stream: "s",
            timeline: 1,
            oldest_msn: 10,
        };
        assert!(s.key(stale, None, 100).is_err());
        // Nor is a key made for a period older than the requester's own window.
        let late = KeyScope {
            stream: "u",
            timeline: 1,
            oldest_msn: 100,
        };
        assert!(s.key(late, None, 10).is_err());
        assert!(s.key(late, None, 100).is_ok());
    }

    #[test]
    fn files_from_before_timelines_load_as_timeline_0() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("old.json"),
            br#"{"stream":"old","keys":[{"kind":"all","period":0,"kid":"0102030405060708090a0b0c0d0e0f10","key":"00000000000000000000000000000000","iv":"ffffffffffffffffffffffffffffffff"}]}"#,
        )
        .unwrap();
        let s = KeyStore::open(dir.path(), None).unwrap();
        let k = s.key(at("old", 0), None, 3).unwrap();
        assert_eq!(k.kid[0], 1);
        assert!(s.find_by_kid(&k.kid).is_some());
    }

    #[test]
    fn odd_stream_names_stay_inside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let s = KeyStore::open(dir.path(), None).unwrap();
        let k = s.key(at("../etc/passwd", 1), None, 0).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![format!("~{}.json", hex(b"../etc/passwd"))]);
        assert!(s.key(at("", 1), None, 0).is_err());
        let again = KeyStore::open(dir.path(), None).unwrap();
        assert_eq!(again.key(at("../etc/passwd", 1), None, 0).unwrap(), k);
    }

    /// Two nodes' stores under one secret hand out the same keys for the
    /// same scope (whichever asks first), different ones for another
    /// timeline, kind or period; another secret, or none, other keys. The
    /// retirement rules are unchanged.
    #[test]
    fn stores_with_one_secret_derive_the_same_keys() {
        let (d1, d2, d3) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let secret = [7u8; 32];
        let a = KeyStore::open_shared(d1.path(), Some(10), secret).unwrap();
        let b = KeyStore::open_shared(d2.path(), Some(10), secret).unwrap();
        let other = KeyStore::open_shared(d3.path(), Some(10), [8u8; 32]).unwrap();
        let vod = at("vod-1_abc", 3);
        let kb = b.key(vod, Some(MediaKind::Video), 25).unwrap();
        let ka = a.key(vod, Some(MediaKind::Video), 25).unwrap();
        assert_eq!(ka, kb);
        assert_eq!(ka.period, 2);
        assert_ne!(ka.key, ka.kid);
        assert_ne!(ka.iv, ka.key);
        for k in [
            a.key(vod, Some(MediaKind::Audio), 25).unwrap(),
            a.key(vod, None, 25).unwrap(),
            a.key(vod, Some(MediaKind::Video), 35).unwrap(),
            a.key(at("vod-1_abd", 3), Some(MediaKind::Video), 25)
                .unwrap(),
            other.key(vod, Some(MediaKind::Video), 25).unwrap(),
        ] {
            assert_ne!(k.kid, ka.kid);
            assert_ne!(k.key, ka.key);
        }
        let newer = a
            .key(at("vod-1_abc", 4), Some(MediaKind::Video), 25)
            .unwrap();
        assert_ne!(newer.key, ka.key, "a new version, new keys");
        assert!(matches!(
            a.key(vod, Some(MediaKind::Video), 25),
            Err(DrmError::KeyRetired { timeline: 3, .. })
        ));
        assert_eq!(b.find_by_kid(&ka.kid).unwrap(), ka);

        // A record written without a secret takes the derived key when the
        // store is opened with one; the file keeps the state.
        let plain_dir = tempfile::tempdir().unwrap();
        let random = {
            let s = KeyStore::open(plain_dir.path(), Some(10)).unwrap();
            s.key(vod, Some(MediaKind::Video), 25).unwrap()
        };
        assert_ne!(random.key, ka.key);
        let shared = KeyStore::open_shared(plain_dir.path(), Some(10), secret).unwrap();
        assert!(shared.find_by_kid(&random.kid).is_none());
        assert_eq!(shared.find_by_kid(&ka.kid).unwrap(), ka);
        assert_eq!(shared.key(vod, Some(MediaKind::Video), 25).unwrap(), ka);
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = ContentKey {
            period: 0,
            kid: [0xab; 16],
            key: [0xcd; 16],
            iv: [0xef; 16],
        };
        let s = format!("{k:?}");
        assert!(s.contains("abababab-"));
        assert!(
            !s.contains("cd") && !s.contains("205") && !s.contains("ef,"),
            "{s}"
        );
    }

    #[test]
    fn corrupt_files_are_reported_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.json"), b"{not json").unwrap();
        let e = KeyStore::open(dir.path(), None).unwrap_err();
        assert!(e.to_string().contains("x.json"), "{e}");
    }
}
