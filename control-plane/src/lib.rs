//! Vela's control plane: partners (tenants), sessions, entries with stream keys,
//! categories, conversion profiles and full-text search, served under `/api/v1`.
//!
//! Storage is one repository layer ([`db::Db`]) over SQLite (embedded, WAL, in the data
//! directory) or PostgreSQL (several nodes). Search is an embedded tantivy index that
//! follows the database's change log ([`search::SearchIndex`]), so every node sharing
//! one PostgreSQL finds what any node wrote.
//!
//! Media entries' content is uploaded through [`upload`] into a [`storage::MediaStore`]
//! (the data directory's `media/` by default), checked by an injected
//! [`content::ContentInspector`]; [`ControlPlane::media_source`] tells the VOD origin
//! where a ready entry's file is.

pub mod analytics;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod content;
pub mod db;
pub mod encoding;
pub mod error;
pub mod jobs;
pub mod recording;
pub mod search;
pub mod shared_store;
pub mod storage;
pub mod upload;
pub mod web;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

pub use content::{
    ContentInspector, EntryStatus, MediaConfig, MediaInfo, MediaSource, TrackInfo, TrackKind,
};
pub use error::{ApiError, DbError, Error, SearchError};
pub use storage::{LocalMediaStore, MediaStore};

use auth::{hash_secret, hash_stream_key, new_secret, now_s, random_hex, TokenKey};
use db::{Backend, Db, EntryRow};
use search::SearchIndex;

/// How publishing is authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishMode {
    /// Any key publishes, played under the key's own name.
    Open,
    /// Only a live entry's stream key publishes, played under the entry id.
    Keys,
    /// Open until the control plane holds live entries, then keys.
    #[default]
    Auto,
}

/// Configuration of [`ControlPlane::open`].
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// The state directory (SQLite database, search index, admin secret).
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL; `None` for SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub publish_mode: PublishMode,
    /// e.g. `http://HOST:8080` (no trailing slash).
    pub public_http_base: String,
    /// e.g. `rtmp://HOST:1935/live` (no trailing slash).
    pub public_rtmp_base: String,
    /// Media content: upload size limit, inspector, store.
    pub media: MediaConfig,
}

/// A granted publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishGrant {
    /// Open mode: the key; key mode: the entry id.
    pub stream_name: String,
    /// The live entry, in key mode.
    pub entry_id: Option<String>,
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefusal {
    #[error("unknown stream key")]
    UnknownKey,
    #[error("application {0:?} does not accept publishing")]
    WrongApp(String),
    #[error("malformed stream key")]
    MalformedKey,
    #[error("control plane unavailable")]
    Unavailable,
}

impl PublishRefusal {
    /// A short fixed label (for metrics and the ingest's refusal reason).
    pub fn reason(&self) -> &'static str {
        match self {
            PublishRefusal::UnknownKey => "unknown_key",
            PublishRefusal::WrongApp(_) => "app",
            PublishRefusal::MalformedKey => "bad_key",
            PublishRefusal::Unavailable => "unavailable",
        }
    }
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) search: SearchIndex,
    pub(crate) tokens: TokenKey,
    pub(crate) sealer: TokenKey,
    /// Signs playback tokens (a key derived from the server key, which the
    /// database shares between nodes).
    pub(crate) playback: TokenKey,
    /// Authenticates requests between cluster nodes (derived from the server key).
    pub(crate) cluster_key: [u8; 32],
    /// The secret content keys are derived under (from the server key, so
    /// every node on one database derives the same keys).
    pub(crate) content_keys: [u8; 32],
    /// partner id -> (secret generation, active).
    pub(crate) partners: RwLock<HashMap<i64, (i64, bool)>>,
    /// Entry cache for the embedded (single-process) SQLite backend.
    pub(crate) cache: Option<RwLock<HashMap<String, Arc<EntryRow>>>>,
    pub(crate) cfg: ControlPlaneConfig,
    /// A background index sync is scheduled.
    pub(crate) sync_pending: std::sync::atomic::AtomicBool,
    /// Bumped by every cache invalidation.
    pub(crate) cache_epoch: std::sync::atomic::AtomicU64,
    /// Media entries' content.
    pub(crate) store: Arc<dyn MediaStore>,
    /// Entries with an upload running.
    pub(crate) uploads: upload::Uploads,
    /// The batch jobs' wake-ups and outbound policy.
    pub(crate) jobs: jobs::JobsState,
}

/// The control plane. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("backend", &self.inner.db.backend())
            .finish()
    }
}

const CACHE_MAX: usize = 200_000;

fn parse_key(hexstr: &str) -> Option<[u8; 32]> {
    if hexstr.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hexstr.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl ControlPlane {
    /// The secret the DRM key store derives content keys under: derived
    /// from the server key the database holds, so the same on every node of
    /// a cluster (and never the server key itself).
    pub fn content_key_secret(&self) -> [u8; 32] {
        self.inner.content_keys
    }

    /// Opens the database (creating and migrating it), creates the admin partner on first
    /// start (secret written to `DATA/admin-secret`, mode 0600), and opens or rebuilds the
    /// search index. Spawns background refreshers on the current tokio runtime.
    pub async fn open(cfg: ControlPlaneConfig) -> Result<ControlPlane, Error> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| Error::Io {
            path: cfg.data_dir.display().to_string(),
            source: e,
        })?;
        let db = Db::open(&cfg.data_dir, cfg.database_url.as_deref()).await?;
        let server_key = db.setting_or_insert("server_key", &random_hex(32)).await?;
        let server_key = parse_key(&server_key)
            .ok_or_else(|| Error::Config("stored server key is malformed".into()))?;
        let tokens = TokenKey::new(server_key);
        // A separate key for sealing stream keys, derived from the server key.
        let sealer = TokenKey::new(derive(&server_key, b"seal"));
        let playback = TokenKey::new(derive(&server_key, b"playback"));
        let content_keys = derive(&server_key, b"content keys");

        // The admin partner (id 1) on first start.
        let now = now_s();
        let secret = new_secret();
        let salt = random_hex(16);
        match db
            .insert_partner_with_id(1, "admin", &salt, &hash_secret(&salt, &secret), now)
            .await
        {
            Ok(()) => {
                let path = cfg.data_dir.join("admin-secret");
                write_secret_file(&path, &secret)?;
                tracing::info!(path = %path.display(), "created the admin partner (id 1); its secret is in this file");
            }
            Err(DbError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }

        let store: Arc<dyn MediaStore> = match &cfg.media.store {
            Some(s) => s.clone(),
            None => Arc::new(LocalMediaStore::open(cfg.data_dir.join("media")).await?),
        };
        if db.backend() == Backend::Sqlite {
            // One process owns an SQLite database: an entry still `processing` had its
            // upload cut off by a stop of this server.
            let reason = format!("{} (the server stopped)", upload::REASON_INTERRUPTED);
            for id in db.recover_processing(&reason, now).await? {
                tracing::warn!(entry = %id, "an upload was cut off by a server stop; status restored");
            }
        }

        let search = SearchIndex::open(&cfg.data_dir.join("search"), &db).await?;
        let cache = (db.backend() == Backend::Sqlite).then(|| RwLock::new(HashMap::new()));
        let cp = ControlPlane {
            inner: Arc::new(Inner {
                db,
                search,
                tokens,
                sealer,
                playback,
                cluster_key: derive(&server_key, b"cluster"),
                content_keys,
                partners: RwLock::new(HashMap::new()),
                cache,
                cfg,
                sync_pending: std::sync::atomic::AtomicBool::new(false),
                cache_epoch: std::sync::atomic::AtomicU64::new(0),
                store,
                uploads: Default::default(),
                jobs: Default::default(),
            }),
        };
        cp.refresh_partners().await?;
        cp.spawn_background();
        Ok(cp)
    }

    fn spawn_background(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut refresh = false;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let cp = ControlPlane { inner };
                if let Err(e) = cp.inner.search.sync(&cp.inner.db).await {
                    tracing::warn!(error = %e, "search index sync failed");
                }
                refresh = !refresh;
                if refresh {
                    if let Err(e) = cp.refresh_partners().await {
                        tracing::warn!(error = %e, "partner refresh failed");
                    }
                }
            }
        });
    }

    pub(crate) async fn refresh_partners(&self) -> Result<(), DbError> {
        let gens = self.inner.db.partner_generations().await?;
        let map: HashMap<i64, (i64, bool)> =
            gens.into_iter().map(|(id, g, a)| (id, (g, a))).collect();
        if let Ok(mut w) = self.inner.partners.write() {
            *w = map;
        }
        Ok(())
    }

    /// The `/api/v1` router (merge it into the server's router).
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// A playback token for `stream` until `expires_at` (unix seconds).
    pub fn sign_playback_token(&self, stream: &str, expires_at: i64) -> String {
        self.inner.playback.sign_playback(stream, expires_at)
    }

    /// Checks a playback token for `stream` at `now` (unix seconds).
    pub fn verify_playback_token(
        &self,
        token: &str,
        stream: &str,
        now: i64,
    ) -> Result<i64, auth::TokenError> {
        self.inner.playback.verify_playback(token, stream, now)
    }

    /// The key that authenticates requests between the nodes of an origin
    /// cluster: derived from the server key, which every node sharing the
    /// database reads.
    pub fn cluster_key(&self) -> [u8; 32] {
        self.inner.cluster_key
    }

    /// The repository (for tests and tools).
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The search index (for tests and tools).
    pub fn search_index(&self) -> &SearchIndex {
        &self.inner.search
    }

    pub(crate) fn cache_get(&self, id: &str) -> Option<Arc<EntryRow>> {
        self.inner.cache.as_ref()?.read().ok()?.get(id).cloned()
    }

    /// The cache epoch, taken before a database read whose row may be cached.
    pub(crate) fn cache_epoch(&self) -> u64 {
        self.inner
            .cache_epoch
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Caches a row read when the epoch was `epoch`, unless a write happened since (a
    /// row read before a concurrent write must not outlive it in the cache).
    pub(crate) fn cache_put(&self, e: EntryRow, epoch: u64) -> Arc<EntryRow> {
        let e = Arc::new(e);
        if let Some(c) = &self.inner.cache {
            if let Ok(mut w) = c.write() {
                if self.cache_epoch() != epoch {
                    return e;
                }
                if w.len() >= CACHE_MAX {
                    w.clear();
                }
                w.insert(e.id.clone(), e.clone());
            }
        }
        e
    }

    pub(crate) fn cache_forget(&self, id: &str) {
        if let Some(c) = &self.inner.cache {
            if let Ok(mut w) = c.write() {
                self.inner
                    .cache_epoch
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                w.remove(id);
            }
        }
    }

    /// Brings the search index up to date after a local write. The index commit runs in
    /// the background so that writes do not wait for it; searches catch up first anyway
    /// (`sync` before every search), so a search right after a write still sees it.
    /// Concurrent writes share one commit.
    pub(crate) async fn after_write(&self) {
        use std::sync::atomic::Ordering;
        // Coalesce: at most one pending background sync, started 50 ms after the first
        // write of a burst, so a stream of writes costs a few index commits per second.
        if self.inner.sync_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let cp = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cp.inner.sync_pending.store(false, Ordering::Release);
            if let Err(e) = cp.inner.search.sync(&cp.inner.db).await {
                tracing::warn!(error = %e, "search index sync after write failed");
            }
        });
    }

    /// Whether key mode is in force now.
    pub async fn key_mode(&self) -> Result<bool, DbError> {
        Ok(match self.inner.cfg.publish_mode {
            PublishMode::Open => false,
            PublishMode::Keys => true,
            PublishMode::Auto => self.inner.db.has_live_entries().await?,
        })
    }

    /// May `stream_key` publish on application `app`, and under which stream name?
    pub async fn authorize_publish(
        &self,
        app: &str,
        stream_key: &str,
    ) -> Result<PublishGrant, PublishRefusal> {
        if stream_key.is_empty() || stream_key.len() > 256 || stream_key.contains(['/', '\0']) {
            return Err(PublishRefusal::MalformedKey);
        }
        let key_mode = self.key_mode().await.map_err(|e| {
            tracing::error!(error = %e, "publish authorisation: database error");
            PublishRefusal::Unavailable
        })?;
        if !key_mode {
            return Ok(PublishGrant {
                stream_name: stream_key.to_string(),
                entry_id: None,
            });
        }
        if app != "live" {
            return Err(PublishRefusal::WrongApp(app.chars().take(64).collect()));
        }
        let hash = hash_stream_key(stream_key);
        let entry = self
            .inner
            .db
            .entry_by_stream_key_hash(&hash)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "publish authorisation: database error");
                PublishRefusal::Unavailable
            })?;
        match entry {
            Some(e)
                if e.stream_key_hash
                    .as_deref()
                    .is_some_and(|h| auth::ct_eq(h, &hash)) =>
            {
                Ok(PublishGrant {
                    stream_name: e.id.clone(),
                    entry_id: Some(e.id),
                })
            }
            _ => Err(PublishRefusal::UnknownKey),
        }
    }

    async fn set_live_status(&self, stream_name: &str, status: &str) {
        if !auth::is_entry_id(stream_name) {
            return;
        }
        match self
            .inner
            .db
            .set_entry_status(stream_name, status, now_s())
            .await
        {
            Ok(Some(partner)) => {
                self.cache_forget(stream_name);
                self.after_write().await;
                let event = if status == "live" {
                    "live.started"
                } else {
                    "live.ended"
                };
                self.emit(partner, event, stream_name);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, entry = stream_name, "cannot set live status"),
        }
    }

    /// The publisher of `stream_name` started: a live entry becomes `live`.
    pub async fn publish_started(&self, stream_name: &str) {
        self.set_live_status(stream_name, "live").await
    }

    /// The publisher of `stream_name` went away: a live entry becomes `offline`.
    pub async fn publish_stopped(&self, stream_name: &str) {
        self.set_live_status(stream_name, "offline").await
    }

    /// An entry by id whatever its partner (for the media side: DVR window, recording,
    /// DRM policy, conversion profile).
    pub async fn entry(&self, id: &str) -> Result<Option<api::Entry>, DbError> {
        if !auth::is_entry_id(id) {
            return Ok(None);
        }
        Ok(self
            .inner
            .db
            .get_entry_unscoped(id)
            .await?
            .map(|e| api::Entry::from_row(self, &e, false)))
    }
}

fn derive(key: &[u8; 32], label: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    m.update(label);
    m.finalize().into_bytes().into()
}

pub(crate) fn write_secret_file(path: &std::path::Path, secret: &str) -> Result<(), Error> {
    use std::io::Write;
    let io = |e| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    f.write_all(secret.as_bytes()).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    Ok(())
}
