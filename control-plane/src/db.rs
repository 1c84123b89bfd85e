//! The repository layer: one set of queries over SQLite (embedded, WAL) and PostgreSQL
//! through sqlx's `Any` driver. SQL sticks to the common dialect (`$n` placeholders,
//! BIGINT/TEXT/DOUBLE PRECISION columns); the few differences live in the migrations.

use std::borrow::Cow;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row};

use crate::content::MediaInfo;
use crate::error::DbError;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A partner (tenant) as stored.
#[derive(Debug, Clone)]
pub struct PartnerRow {
    pub id: i64,
    pub name: String,
    pub secret_salt: String,
    pub secret_hash: String,
    pub secret_gen: i64,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// DRM policy of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Drm {
    /// `none`, `aes-128` or `sample-aes`.
    #[serde(default = "none")]
    #[schema(pattern = "^(none|aes-128|sample-aes)$")]
    pub hls: String,
    /// `none`, `cenc` or `cbcs`.
    #[serde(default = "none")]
    #[schema(pattern = "^(none|cenc|cbcs)$")]
    pub dash: String,
    /// `none` or `cenc`.
    #[serde(default = "none")]
    #[schema(pattern = "^(none|cenc)$")]
    pub mss: String,
}

fn none() -> String {
    "none".into()
}

impl Default for Drm {
    fn default() -> Self {
        Drm {
            hls: none(),
            dash: none(),
            mss: none(),
        }
    }
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRow {
    pub id: String,
    pub partner_id: i64,
    pub kind: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub categories: Vec<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub status: String,
    pub duration_s: Option<f64>,
    pub thumbnail_url: Option<String>,
    pub stream_key_hash: Option<String>,
    pub stream_key_sealed: Option<String>,
    pub recording: bool,
    pub dvr_window_s: i64,
    pub conversion_profile_id: Option<i64>,
    pub drm: Drm,
    pub created_at: i64,
    pub updated_at: i64,
    /// Why the entry is in its status (media entries in `error`).
    pub status_reason: Option<String>,
    /// What the content inspector found in the entry's content.
    pub media: Option<MediaInfo>,
    /// The content's file name in the media store (`source.mp4`); `None` without content.
    pub content_name: Option<String>,
    /// A recorded media entry: the live entry it was recorded from.
    pub source_entry_id: Option<String>,
    /// A live entry: its latest recording (a media entry).
    pub recorded_entry_id: Option<String>,
    /// When the entry (and its content) is deleted, unix seconds (retention).
    pub expires_at: Option<i64>,
    /// Bytes of the entry's stored content.
    pub stored_bytes: Option<i64>,
}

/// A category (node of the partner's category tree).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Category {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    /// Names from the root, joined by `>`.
    pub full_name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Filters and order of an entry listing (all already validated).
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub category: Option<String>,
    pub tag: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    /// One of the fixed ORDER BY clauses.
    pub order: EntryOrder,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EntryOrder {
    #[default]
    CreatedDesc,
    CreatedAsc,
    UpdatedDesc,
    UpdatedAsc,
    NameAsc,
    NameDesc,
}

impl EntryOrder {
    fn sql(self) -> &'static str {
        match self {
            EntryOrder::CreatedDesc => "created_at DESC, id DESC",
            EntryOrder::CreatedAsc => "created_at ASC, id ASC",
            EntryOrder::UpdatedDesc => "updated_at DESC, id DESC",
            EntryOrder::UpdatedAsc => "updated_at ASC, id ASC",
            EntryOrder::NameAsc => "name ASC, id ASC",
            EntryOrder::NameDesc => "name DESC, id DESC",
        }
    }
}

const ENTRY_COLS: &str = "id, partner_id, kind, name, description, tags, categories, metadata, \
    status, duration_s, thumbnail_url, stream_key_hash, stream_key_sealed, recording, dvr_window_s, \
    conversion_profile_id, drm, created_at, updated_at, status_reason, media, content_name, \
    source_entry_id, recorded_entry_id, expires_at, stored_bytes";

/// The repository: a pool and the backend it talks to.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// The migrations of each backend, in order: (version, description, SQLite, PostgreSQL).
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite_0001_init.sql"),
        include_str!("../migrations/postgres_0001_init.sql"),
    ),
    (
        2,
        "media_content",
        include_str!("../migrations/sqlite_0002_media_content.sql"),
        include_str!("../migrations/postgres_0002_media_content.sql"),
    ),
    (
        3,
        "recording",
        include_str!("../migrations/sqlite_0003_recording.sql"),
        include_str!("../migrations/postgres_0003_recording.sql"),
    ),
    (
        4,
        "cluster",
        include_str!("../migrations/sqlite_0004_cluster.sql"),
        include_str!("../migrations/postgres_0004_cluster.sql"),
    ),
    (
        5,
        "conversion_profiles",
        include_str!("../migrations/sqlite_0005_conversion_profiles.sql"),
        include_str!("../migrations/postgres_0005_conversion_profiles.sql"),
    ),
    (
        6,
        "jobs",
        include_str!("../migrations/sqlite_0006_jobs.sql"),
        include_str!("../migrations/postgres_0006_jobs.sql"),
    ),
    (
        7,
        "analytics",
        include_str!("../migrations/sqlite_0007_analytics.sql"),
        include_str!("../migrations/postgres_0007_analytics.sql"),
    ),
];

fn migrator(backend: Backend) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, description, sqlite, postgres)| {
            let sql = match backend {
                Backend::Sqlite => sqlite,
                Backend::Postgres => postgres,
            };
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

fn like_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

fn media_json(m: &MediaInfo) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

/// `%"value"%` for matching one element of a JSON string array stored as text.
fn json_element_pattern(v: &str) -> String {
    let quoted = serde_json::to_string(v).unwrap_or_default();
    format!("%{}%", like_escape(&quoted))
}

impl Db {
    /// Opens (creating if needed) and migrates the database.
    /// `url`: `None` for SQLite at `data_dir/vela.db`, or a `postgres://` / `sqlite:` URL.
    pub async fn open(data_dir: &Path, url: Option<&str>) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = match url {
            None => (
                format!("sqlite://{}?mode=rwc", data_dir.join("vela.db").display()),
                Backend::Sqlite,
            ),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                (u.to_string(), Backend::Postgres)
            }
            Some(u) if u.starts_with("sqlite:") => (u.to_string(), Backend::Sqlite),
            Some(_) => {
                return Err(DbError::Corrupt(
                    "database URL must start with postgres:// or sqlite:".into(),
                ))
            }
        };
        let opts = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .min_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(10));
        let opts = if backend == Backend::Sqlite {
            opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    for p in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        sqlx::query(p).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
        } else {
            opts
        };
        let pool = opts.connect(&url).await?;
        migrator(backend).run(&pool).await?;
        Ok(Db { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    // ---- settings ----

    /// Returns the value of `k`, inserting `v` first if absent (first writer wins).
    pub async fn setting_or_insert(&self, k: &str, v: &str) -> Result<String, DbError> {
        let ins =
            sqlx::query("INSERT INTO settings (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING")
                .bind(k)
                .bind(v)
                .execute(&self.pool)
                .await;
        ins.map_err(DbError::from_sqlx)?;
        let row = sqlx::query("SELECT v FROM settings WHERE k = $1")
            .bind(k)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<String, _>(0)?)
    }

    // ---- partners ----

    fn partner_from_row(r: &AnyRow) -> Result<PartnerRow, DbError> {
        Ok(PartnerRow {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            secret_salt: r.try_get("secret_salt")?,
            secret_hash: r.try_get("secret_hash")?,
            secret_gen: r.try_get("secret_gen")?,
            status: r.try_get("status")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    /// Inserts a partner with a fixed id; `Conflict` if it exists.
    pub async fn insert_partner_with_id(
        &self,
        id: i64,
        name: &str,
        salt: &str,
        hash: &str,
        now: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO partners (id, name, secret_salt, secret_hash, secret_gen, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 1, 'active', $5, $5)",
        )
        .bind(id)
        .bind(name)
        .bind(salt)
        .bind(hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(DbError::from_sqlx)?;
        Ok(())
    }

    /// Inserts a partner with the next free id.
    pub async fn insert_partner(
        &self,
        name: &str,
        salt: &str,
        hash: &str,
        now: i64,
    ) -> Result<i64, DbError> {
        for _ in 0..20 {
            let row = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 FROM partners")
                .fetch_one(&self.pool)
                .await?;
            let id: i64 = row.try_get(0)?;
            match self.insert_partner_with_id(id, name, salt, hash, now).await {
                Ok(()) => return Ok(id),
                Err(DbError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(DbError::Conflict)
    }

    pub async fn get_partner(&self, id: i64) -> Result<Option<PartnerRow>, DbError> {
        let r = sqlx::query(
            "SELECT id, name, secret_salt, secret_hash, secret_gen, status, created_at, updated_at \
             FROM partners WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(Self::partner_from_row).transpose()
    }

    pub async fn list_partners(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<PartnerRow>, i64), DbError> {
        let rows = sqlx::query(
            "SELECT id, name, secret_salt, secret_hash, secret_gen, status, created_at, updated_at \
             FROM partners ORDER BY id LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) FROM partners")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let v = rows
            .iter()
            .map(Self::partner_from_row)
            .collect::<Result<_, _>>()?;
        Ok((v, total))
    }

    /// Replaces a partner's secret and bumps its generation (invalidating its tokens).
    pub async fn rotate_partner_secret(
        &self,
        id: i64,
        salt: &str,
        hash: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE partners SET secret_salt = $1, secret_hash = $2, secret_gen = secret_gen + 1, updated_at = $3 WHERE id = $4",
        )
        .bind(salt)
        .bind(hash)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// (id, generation, active) of every partner, for the token verifier's cache.
    pub async fn partner_generations(&self) -> Result<Vec<(i64, i64, bool)>, DbError> {
        let rows = sqlx::query("SELECT id, secret_gen, status FROM partners")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>(0)?,
                    r.try_get::<i64, _>(1)?,
                    r.try_get::<String, _>(2)? == "active",
                ))
            })
            .collect()
    }

    // ---- entries ----

    fn entry_from_row(r: &AnyRow) -> Result<EntryRow, DbError> {
        let json = |col: &str| -> Result<String, DbError> { Ok(r.try_get::<String, _>(col)?) };
        let corrupt = |e: serde_json::Error| DbError::Corrupt(e.to_string());
        Ok(EntryRow {
            id: r.try_get("id")?,
            partner_id: r.try_get("partner_id")?,
            kind: r.try_get("kind")?,
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            tags: serde_json::from_str(&json("tags")?).map_err(corrupt)?,
            categories: serde_json::from_str(&json("categories")?).map_err(corrupt)?,
            metadata: serde_json::from_str(&json("metadata")?).map_err(corrupt)?,
            status: r.try_get("status")?,
            duration_s: r.try_get("duration_s")?,
            thumbnail_url: r.try_get("thumbnail_url")?,
            stream_key_hash: r.try_get("stream_key_hash")?,
            stream_key_sealed: r.try_get("stream_key_sealed")?,
            recording: r.try_get::<i64, _>("recording")? != 0,
            dvr_window_s: r.try_get("dvr_window_s")?,
            conversion_profile_id: r.try_get("conversion_profile_id")?,
            drm: serde_json::from_str(&json("drm")?).map_err(corrupt)?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            status_reason: r.try_get("status_reason")?,
            media: r
                .try_get::<Option<String>, _>("media")?
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(corrupt)?,
            content_name: r.try_get("content_name")?,
            source_entry_id: r.try_get("source_entry_id")?,
            recorded_entry_id: r.try_get("recorded_entry_id")?,
            expires_at: r.try_get("expires_at")?,
            stored_bytes: r.try_get("stored_bytes")?,
        })
    }

    /// Appends to the change log inside the caller's transaction. On PostgreSQL the table
    /// lock serialises change-log writers so that sequence numbers become visible in order
    /// (a follower reading `seq > cursor` never skips a later-committing lower number).
    async fn log_change(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        entry_id: &str,
        partner_id: i64,
        now: i64,
    ) -> Result<(), DbError> {
        if self.backend == Backend::Postgres {
            sqlx::query("LOCK TABLE changes IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query("INSERT INTO changes (entry_id, partner_id, at) VALUES ($1, $2, $3)")
            .bind(entry_id)
            .bind(partner_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    fn bind_entry<'q>(
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        e: &'q EntryRow,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        q.bind(&e.id)
            .bind(e.partner_id)
            .bind(&e.kind)
            .bind(&e.name)
            .bind(&e.description)
            .bind(serde_json::to_string(&e.tags).unwrap_or_else(|_| "[]".into()))
            .bind(serde_json::to_string(&e.categories).unwrap_or_else(|_| "[]".into()))
            .bind(serde_json::to_string(&e.metadata).unwrap_or_else(|_| "{}".into()))
            .bind(&e.status)
            .bind(e.duration_s)
            .bind(&e.thumbnail_url)
            .bind(&e.stream_key_hash)
            .bind(&e.stream_key_sealed)
            .bind(e.recording as i64)
            .bind(e.dvr_window_s)
            .bind(e.conversion_profile_id)
            .bind(serde_json::to_string(&e.drm).unwrap_or_else(|_| "{}".into()))
            .bind(e.created_at)
            .bind(e.updated_at)
            .bind(&e.status_reason)
            .bind(e.media.as_ref().map(media_json))
            .bind(&e.content_name)
            .bind(&e.source_entry_id)
            .bind(&e.recorded_entry_id)
            .bind(e.expires_at)
            .bind(e.stored_bytes)
    }

    pub async fn insert_entry(&self, e: &EntryRow) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "INSERT INTO entries ({ENTRY_COLS}) VALUES \
             ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,\
             $23,$24,$25,$26)"
        );
        Self::bind_entry(sqlx::query(&sql), e)
            .execute(&mut *tx)
            .await
            .map_err(DbError::from_sqlx)?;
        self.log_change(&mut tx, &e.id, e.partner_id, e.updated_at)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts many entries in one transaction (bulk loads, benchmarks).
    pub async fn insert_entries(&self, es: &[EntryRow]) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "INSERT INTO entries ({ENTRY_COLS}) VALUES \
             ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,\
             $23,$24,$25,$26)"
        );
        for e in es {
            Self::bind_entry(sqlx::query(&sql), e)
                .execute(&mut *tx)
                .await
                .map_err(DbError::from_sqlx)?;
            self.log_change(&mut tx, &e.id, e.partner_id, e.updated_at)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes every column of an existing entry (scoped to its partner).
    pub async fn update_entry(&self, e: &EntryRow) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE entries SET name=$1, description=$2, tags=$3, categories=$4, metadata=$5, \
             status=$6, duration_s=$7, thumbnail_url=$8, stream_key_hash=$9, stream_key_sealed=$10, \
             recording=$11, dvr_window_s=$12, conversion_profile_id=$13, drm=$14, updated_at=$15, \
             expires_at=$16 WHERE id=$17 AND partner_id=$18",
        )
        .bind(&e.name)
        .bind(&e.description)
        .bind(serde_json::to_string(&e.tags).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&e.categories).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&e.metadata).unwrap_or_else(|_| "{}".into()))
        .bind(&e.status)
        .bind(e.duration_s)
        .bind(&e.thumbnail_url)
        .bind(&e.stream_key_hash)
        .bind(&e.stream_key_sealed)
        .bind(e.recording as i64)
        .bind(e.dvr_window_s)
        .bind(e.conversion_profile_id)
        .bind(serde_json::to_string(&e.drm).unwrap_or_else(|_| "{}".into()))
        .bind(e.updated_at)
        .bind(e.expires_at)
        .bind(&e.id)
        .bind(e.partner_id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from_sqlx)?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        self.log_change(&mut tx, &e.id, e.partner_id, e.updated_at)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The partner of live entry `id`, read inside the caller's transaction.
    async fn live_partner(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        id: &str,
    ) -> Result<Option<i64>, DbError> {
        let row = sqlx::query("SELECT partner_id FROM entries WHERE id = $1 AND kind = 'live'")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
    }

    /// Sets the status of a live entry; returns it if it changed.
    pub async fn set_entry_status(
        &self,
        id: &str,
        status: &str,
        now: i64,
    ) -> Result<Option<i64>, DbError> {
        let mut tx = self.pool.begin().await?;
        let Some(partner) = Self::live_partner(&mut tx, id).await? else {
            return Ok(None);
        };
        sqlx::query("UPDATE entries SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.log_change(&mut tx, id, partner, now).await?;
        tx.commit().await?;
        Ok(Some(partner))
    }

    /// Sets the status (and its reason) of a media entry of `partner_id`; `false` if there
    /// is no such media entry.
    pub async fn set_media_status(
        &self,
        partner_id: i64,
        id: &str,
        status: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE entries SET status = $1, status_reason = $2, updated_at = $3 \
             WHERE id = $4 AND partner_id = $5 AND kind = 'media'",
        )
        .bind(status)
        .bind(reason)
        .bind(now)
        .bind(id)
        .bind(partner_id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        self.log_change(&mut tx, id, partner_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records new content of a media entry: `ready`, no reason, its file name, what the
    /// inspector found and (if known) its duration. `false` if there is no such entry.
    pub async fn set_media_content(
        &self,
        partner_id: i64,
        id: &str,
        content_name: &str,
        media: Option<&MediaInfo>,
        stored_bytes: u64,
        now: i64,
    ) -> Result<bool, DbError> {
        let duration = media.map(|m| m.duration_s).filter(|d| *d > 0.0);
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE entries SET status = 'ready', status_reason = NULL, content_name = $1, \
             media = $2, duration_s = COALESCE($3, duration_s), updated_at = $4, stored_bytes = $7 \
             WHERE id = $5 AND partner_id = $6 AND kind = 'media'",
        )
        .bind(content_name)
        .bind(media.map(media_json))
        .bind(duration)
        .bind(now)
        .bind(id)
        .bind(partner_id)
        .bind(i64::try_from(stored_bytes).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        self.log_change(&mut tx, id, partner_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Media entries left `processing` by a server that stopped during an upload go back
    /// to `ready` if they have content, else to `error` with `reason`. Returns their ids.
    pub async fn recover_processing(&self, reason: &str, now: i64) -> Result<Vec<String>, DbError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, partner_id FROM entries WHERE kind = 'media' AND status = 'processing'",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get(0)?;
            let partner: i64 = r.try_get(1)?;
            sqlx::query(
                "UPDATE entries SET \
                 status = CASE WHEN content_name IS NULL THEN 'error' ELSE 'ready' END, \
                 status_reason = CASE WHEN content_name IS NULL THEN $1 ELSE NULL END, \
                 updated_at = $2 WHERE id = $3",
            )
            .bind(reason)
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            self.log_change(&mut tx, &id, partner, now).await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Links live entry `live_id` to its latest recording `media_id`.
    pub async fn set_recorded_entry(
        &self,
        live_id: &str,
        media_id: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let Some(partner) = Self::live_partner(&mut tx, live_id).await? else {
            return Ok(false);
        };
        sqlx::query("UPDATE entries SET recorded_entry_id = $1, updated_at = $2 WHERE id = $3")
            .bind(media_id)
            .bind(now)
            .bind(live_id)
            .execute(&mut *tx)
            .await?;
        self.log_change(&mut tx, live_id, partner, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Sets (or clears) when an entry expires.
    pub async fn set_expiry(
        &self,
        partner_id: i64,
        id: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE entries SET expires_at = $1, updated_at = $2 WHERE id = $3 AND partner_id = $4",
        )
        .bind(expires_at)
        .bind(now)
        .bind(id)
        .bind(partner_id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        self.log_change(&mut tx, id, partner_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// (partner, id) of entries whose retention has passed at `now`, at most `limit`.
    pub async fn expired_entries(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT partner_id, id FROM entries WHERE expires_at IS NOT NULL AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Stored content per partner: (partner, entries with content, bytes).
    pub async fn usage_by_partner(&self) -> Result<Vec<(i64, i64, i64)>, DbError> {
        let rows = sqlx::query(
            "SELECT partner_id, CAST(COUNT(stored_bytes) AS BIGINT), \
             CAST(COALESCE(SUM(stored_bytes), 0) AS BIGINT) FROM entries \
             WHERE stored_bytes IS NOT NULL GROUP BY partner_id ORDER BY partner_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    pub async fn delete_entry(&self, partner_id: i64, id: &str, now: i64) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("DELETE FROM entries WHERE id = $1 AND partner_id = $2")
            .bind(id)
            .bind(partner_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        self.log_change(&mut tx, id, partner_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// An entry of `partner_id` (tenant-scoped).
    pub async fn get_entry(&self, partner_id: i64, id: &str) -> Result<Option<EntryRow>, DbError> {
        let sql = format!("SELECT {ENTRY_COLS} FROM entries WHERE id = $1 AND partner_id = $2");
        let r = sqlx::query(&sql)
            .bind(id)
            .bind(partner_id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(Self::entry_from_row).transpose()
    }

    /// An entry whatever its partner (server-internal use only).
    pub async fn get_entry_unscoped(&self, id: &str) -> Result<Option<EntryRow>, DbError> {
        let sql = format!("SELECT {ENTRY_COLS} FROM entries WHERE id = $1");
        let r = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(Self::entry_from_row).transpose()
    }

    pub async fn entry_by_stream_key_hash(&self, hash: &str) -> Result<Option<EntryRow>, DbError> {
        let sql = format!(
            "SELECT {ENTRY_COLS} FROM entries WHERE stream_key_hash = $1 AND kind = 'live'"
        );
        let r = sqlx::query(&sql)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(Self::entry_from_row).transpose()
    }

    pub async fn has_live_entries(&self) -> Result<bool, DbError> {
        let r = sqlx::query("SELECT id FROM entries WHERE kind = 'live' LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.is_some())
    }

    /// Entries of a partner by id, in the order of `ids`.
    pub async fn entries_by_ids(
        &self,
        partner_id: i64,
        ids: &[String],
    ) -> Result<Vec<EntryRow>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Looked up by primary key only (a `partner_id` condition can make SQLite's planner
        // walk the partner index instead); the tenant check is done on the rows.
        let mut found: Vec<EntryRow> = self
            .entries_by_ids_any(ids)
            .await?
            .into_iter()
            .filter(|e| e.partner_id == partner_id)
            .collect();
        let mut out = Vec::with_capacity(found.len());
        for id in ids {
            if let Some(pos) = found.iter().position(|e| &e.id == id) {
                out.push(found.swap_remove(pos));
            }
        }
        Ok(out)
    }

    /// Entries by id whatever their partner (index maintenance only).
    pub async fn entries_by_ids_any(&self, ids: &[String]) -> Result<Vec<EntryRow>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ph: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 1)).collect();
        let sql = format!(
            "SELECT {ENTRY_COLS} FROM entries WHERE id IN ({})",
            ph.join(",")
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(Self::entry_from_row).collect()
    }

    pub async fn list_entries(
        &self,
        partner_id: i64,
        f: &EntryFilter,
    ) -> Result<(Vec<EntryRow>, i64), DbError> {
        let mut conds = vec!["partner_id = $1".to_string()];
        let mut args: Vec<Arg> = vec![Arg::I(partner_id)];
        let mut push = |cond: &str, a: Arg, args: &mut Vec<Arg>| {
            args.push(a);
            conds.push(cond.replace('?', &format!("${}", args.len())));
        };
        if let Some(k) = &f.kind {
            push("kind = ?", Arg::S(k.clone()), &mut args);
        }
        if let Some(s) = &f.status {
            push("status = ?", Arg::S(s.clone()), &mut args);
        }
        if let Some(t) = &f.tag {
            push(
                "tags LIKE ? ESCAPE '\\'",
                Arg::S(json_element_pattern(t)),
                &mut args,
            );
        }
        if let Some(c) = &f.category {
            push(
                "categories LIKE ? ESCAPE '\\'",
                Arg::S(json_element_pattern(c)),
                &mut args,
            );
        }
        if let Some(a) = f.created_after {
            push("created_at >= ?", Arg::I(a), &mut args);
        }
        if let Some(b) = f.created_before {
            push("created_at < ?", Arg::I(b), &mut args);
        }
        let wh = conds.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) FROM entries WHERE {wh}");
        let list_sql = format!(
            "SELECT {ENTRY_COLS} FROM entries WHERE {wh} ORDER BY {} LIMIT ${} OFFSET ${}",
            f.order.sql(),
            args.len() + 1,
            args.len() + 2
        );
        let mut cq = sqlx::query(&count_sql);
        for a in &args {
            cq = a.bind(cq);
        }
        let total: i64 = cq.fetch_one(&self.pool).await?.try_get(0)?;
        let mut lq = sqlx::query(&list_sql);
        for a in &args {
            lq = a.bind(lq);
        }
        let rows = lq
            .bind(f.limit)
            .bind(f.offset)
            .fetch_all(&self.pool)
            .await?;
        let v = rows
            .iter()
            .map(Self::entry_from_row)
            .collect::<Result<_, _>>()?;
        Ok((v, total))
    }

    /// Entries with `id > after`, ordered by id (full index rebuilds).
    pub async fn entries_after(&self, after: &str, limit: i64) -> Result<Vec<EntryRow>, DbError> {
        let sql = format!("SELECT {ENTRY_COLS} FROM entries WHERE id > $1 ORDER BY id LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::entry_from_row).collect()
    }

    // ---- change log ----

    pub async fn max_change_seq(&self) -> Result<i64, DbError> {
        let r = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get(0)?)
    }

    /// (seq, entry_id) of changes after `seq`, in order.
    pub async fn changes_since(&self, seq: i64, limit: i64) -> Result<Vec<(i64, String)>, DbError> {
        let rows =
            sqlx::query("SELECT seq, entry_id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(seq)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    // ---- categories ----

    fn category_from_row(r: &AnyRow) -> Result<Category, DbError> {
        Ok(Category {
            id: r.try_get("id")?,
            parent_id: r.try_get("parent_id")?,
            name: r.try_get("name")?,
            full_name: r.try_get("full_name")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    pub async fn insert_category(&self, partner_id: i64, c: &Category) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO categories (id, partner_id, parent_id, name, full_name, created_at, updated_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7)",
        )
        .bind(c.id)
        .bind(partner_id)
        .bind(c.parent_id)
        .bind(&c.name)
        .bind(&c.full_name)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&self.pool)
        .await
        .map_err(DbError::from_sqlx)?;
        Ok(())
    }

    pub async fn get_category(
        &self,
        partner_id: i64,
        id: i64,
    ) -> Result<Option<Category>, DbError> {
        let r = sqlx::query(
            "SELECT id, parent_id, name, full_name, created_at, updated_at FROM categories WHERE id = $1 AND partner_id = $2",
        )
        .bind(id)
        .bind(partner_id)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(Self::category_from_row).transpose()
    }

    pub async fn list_categories(
        &self,
        partner_id: i64,
        parent: Option<i64>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Category>, i64), DbError> {
        let (wh, p) = match parent {
            Some(p) => ("partner_id = $1 AND parent_id = $2", p),
            None => ("partner_id = $1 AND $2 = $2", 0),
        };
        let rows = sqlx::query(&format!(
            "SELECT id, parent_id, name, full_name, created_at, updated_at FROM categories WHERE {wh} ORDER BY full_name LIMIT $3 OFFSET $4"
        ))
        .bind(partner_id)
        .bind(p)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM categories WHERE {wh}"))
            .bind(partner_id)
            .bind(p)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let v = rows
            .iter()
            .map(Self::category_from_row)
            .collect::<Result<_, _>>()?;
        Ok((v, total))
    }

    /// Renames a category and rewrites the full names of its subtree.
    pub async fn rename_category(
        &self,
        partner_id: i64,
        id: i64,
        name: &str,
        old_full: &str,
        new_full: &str,
        now: i64,
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE categories SET name = $1, full_name = $2, updated_at = $3 WHERE id = $4 AND partner_id = $5")
            .bind(name)
            .bind(new_full)
            .bind(now)
            .bind(id)
            .bind(partner_id)
            .execute(&mut *tx)
            .await
            .map_err(DbError::from_sqlx)?;
        let prefix = format!("{old_full}>");
        let rows = sqlx::query("SELECT id, full_name FROM categories WHERE partner_id = $1 AND full_name LIKE $2 ESCAPE '\\'")
            .bind(partner_id)
            .bind(format!("{}%", like_escape(&prefix)))
            .fetch_all(&mut *tx)
            .await?;
        for r in rows {
            let cid: i64 = r.try_get(0)?;
            let full: String = r.try_get(1)?;
            let nf = format!("{new_full}>{}", &full[prefix.len().min(full.len())..]);
            sqlx::query("UPDATE categories SET full_name = $1, updated_at = $2 WHERE id = $3")
                .bind(nf)
                .bind(now)
                .bind(cid)
                .execute(&mut *tx)
                .await
                .map_err(DbError::from_sqlx)?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a category that has no children; `Ok(false)` if absent.
    pub async fn delete_category(
        &self,
        partner_id: i64,
        id: i64,
    ) -> Result<Result<bool, ()>, DbError> {
        let child = sqlx::query(
            "SELECT id FROM categories WHERE partner_id = $1 AND parent_id = $2 LIMIT 1",
        )
        .bind(partner_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        if child.is_some() {
            return Ok(Err(()));
        }
        let r = sqlx::query("DELETE FROM categories WHERE id = $1 AND partner_id = $2")
            .bind(id)
            .bind(partner_id)
            .execute(&self.pool)
            .await?;
        Ok(Ok(r.rows_affected() == 1))
    }
}

enum Arg {
    I(i64),
    S(String),
}

impl Arg {
    fn bind<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        match self {
            Arg::I(i) => q.bind(*i),
            Arg::S(s) => q.bind(s.clone()),
        }
    }
}
