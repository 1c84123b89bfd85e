//! Live-to-VOD on the control plane's side: the media entry of each recording, its
//! completion into playable content, retention and storage use.
//!
//! The media side (the recorder) asks [`ControlPlane::begin_recording`] when a stream
//! starts (and at each new piece of a long stream): a live entry with `recording` on, or
//! an open-mode stream when the server is configured to record those, gets a new media
//! entry in status `pending` with the reason `recording`, linked both ways to its live
//! entry (`source_entry_id` / `recorded_entry_id`) and carrying the live entry's DRM
//! policy, so the recording plays under the same encryption. When the recording's file
//! is complete, [`ControlPlane::complete_recording`] makes it the entry's content the way
//! an upload is: inspected by the same inspector, committed into the media store (and
//! shared storage), `ready`.
//!
//! Retention: an entry with `expires_at` in the past is deleted with its content by
//! [`ControlPlane::expire_once`] (run periodically by [`ControlPlane::spawn_retention`]);
//! recordings get `expires_at` from the server's configured retention, and any entry's
//! can be set or cleared with a PATCH.

use std::path::Path;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::Auth;
use crate::auth::{self, now_s};
use crate::content::EntryStatus;
use crate::db::EntryRow;
use crate::error::ErrorBody;
use crate::upload::Failure;
use crate::{ApiError, ControlPlane, DbError};

/// The `status_reason` of a media entry whose recording is running.
pub const REASON_RECORDING: &str = "recording";

/// Why a recording could not become content.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("recording entry {entry}: {source}")]
    Db {
        entry: String,
        #[source]
        source: DbError,
    },
    /// The entry was deleted while it recorded (its file is removed).
    #[error("recording entry {0} was deleted")]
    Gone(String),
    #[error("recording entry {entry}: {reason}")]
    Content { entry: String, reason: String },
    /// The file could not be moved into the media store (it is still where it was):
    /// trying again later may work.
    #[error("recording entry {entry}: cannot store the file: {reason}")]
    Store { entry: String, reason: String },
}

/// Stored content of one partner (`GET /api/v1/usage`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Usage {
    pub partner_id: i64,
    /// Media entries with stored content.
    pub entries: i64,
    /// Bytes of their content.
    pub stored_bytes: i64,
}

impl ControlPlane {
    /// Creates the media entry of recording piece `piece` (1, 2, …) of live stream
    /// `stream`, if the stream records: a live entry with `recording` on, or, with
    /// `open_partner`, an open-mode stream (no live entry) recorded for that partner.
    /// `None`: the stream does not record.
    pub async fn begin_recording(
        &self,
        stream: &str,
        piece: u32,
        open_partner: Option<i64>,
    ) -> Result<Option<String>, DbError> {
        let live = if auth::is_entry_id(stream) {
            self.inner.db.get_entry_unscoped(stream).await?
        } else {
            None
        };
        let now = now_s();
        let stamp = time::OffsetDateTime::from_unix_timestamp(now)
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute] UTC"
                ))
                .ok()
            })
            .unwrap_or_default();
        let part = if piece > 1 {
            format!(", part {piece}")
        } else {
            String::new()
        };
        // Only a live entry with `recording` on, or (with a partner for them) an
        // open-mode stream, records.
        let live = match live {
            Some(l) if l.kind == "live" && l.recording => Some(l),
            Some(_) => return Ok(None),
            None if open_partner.is_some() => None,
            None => return Ok(None),
        };
        let mut row = EntryRow {
            id: auth::new_entry_id(),
            partner_id: open_partner.unwrap_or(1),
            kind: "media".into(),
            name: bounded(&format!("{stream} (recording {stamp}{part})"), 256),
            description: String::new(),
            tags: Vec::new(),
            categories: Vec::new(),
            metadata: serde_json::Map::new(),
            status: EntryStatus::Pending.as_str().into(),
            duration_s: None,
            thumbnail_url: None,
            stream_key_hash: None,
            stream_key_sealed: None,
            recording: false,
            dvr_window_s: 0,
            conversion_profile_id: None,
            drm: Default::default(),
            created_at: now,
            updated_at: now,
            status_reason: Some(REASON_RECORDING.into()),
            media: None,
            content_name: None,
            source_entry_id: None,
            recorded_entry_id: None,
            expires_at: None,
            stored_bytes: None,
        };
        match live {
            // The live entry's description, labels and policies carry over.
            Some(l) => {
                row.partner_id = l.partner_id;
                row.name = bounded(&format!("{} (recording {stamp}{part})", l.name), 256);
                row.description = l.description;
                row.tags = l.tags;
                row.categories = l.categories;
                row.metadata = l.metadata;
                row.conversion_profile_id = l.conversion_profile_id;
                row.drm = l.drm;
                row.source_entry_id = Some(l.id);
            }
            None => {
                row.metadata
                    .insert("stream".into(), serde_json::Value::String(stream.into()));
            }
        }
        let mut tries = 0;
        loop {
            match self.inner.db.insert_entry(&row).await {
                Ok(()) => break,
                Err(DbError::Conflict) if tries < 5 => {
                    tries += 1;
                    row.id = auth::new_entry_id();
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(live) = &row.source_entry_id {
            self.cache_forget(live);
            self.inner.db.set_recorded_entry(live, &row.id, now).await?;
            self.cache_forget(live);
        }
        self.after_write().await;
        tracing::info!(
            stream,
            entry = row.id,
            partner = row.partner_id,
            piece,
            "recording started"
        );
        Ok(Some(row.id))
    }

    /// Makes the complete recording in `file` (a local MP4) the content of media entry
    /// `id`: moved into the media store, inspected, `ready`, expiring after
    /// `retention` if given. The file is consumed whatever the outcome.
    pub async fn complete_recording(
        &self,
        id: &str,
        file: &Path,
        retention: Option<Duration>,
    ) -> Result<(), RecordingError> {
        let db_err = |source| RecordingError::Db {
            entry: id.to_string(),
            source,
        };
        let Some(row) = self.inner.db.get_entry_unscoped(id).await.map_err(db_err)? else {
            let _ = tokio::fs::remove_file(file).await;
            return Err(RecordingError::Gone(id.to_string()));
        };
        let staged = match self.inner.store.stage_file(id, file).await {
            Ok(s) => s,
            Err(e) => {
                return Err(RecordingError::Store {
                    entry: id.to_string(),
                    reason: e.to_string(),
                })
            }
        };
        self.cache_forget(id);
        let accepted = self
            .accept_staged(
                row.partner_id,
                id,
                row.content_name.as_deref(),
                Some("video/mp4".into()),
                staged,
            )
            .await;
        self.cache_forget(id);
        match accepted {
            Ok(()) => {}
            Err(Failure::Gone) => {
                self.remove_media(id).await;
                return Err(RecordingError::Gone(id.to_string()));
            }
            Err(f) => {
                let reason = f.reason();
                self.fail_recording(id, &reason).await;
                return Err(RecordingError::Content {
                    entry: id.to_string(),
                    reason: format!("{f}"),
                });
            }
        }
        if let Some(keep) = retention {
            let at = now_s().saturating_add(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX));
            self.inner
                .db
                .set_expiry(row.partner_id, id, Some(at), now_s())
                .await
                .map_err(db_err)?;
            self.cache_forget(id);
        }
        self.after_write().await;
        tracing::info!(entry = id, partner = row.partner_id, "recording ready");
        self.emit(row.partner_id, "recording.ready", id);
        Ok(())
    }

    /// A recording that produced nothing playable: its entry goes to `error`.
    pub async fn fail_recording(&self, id: &str, reason: &str) {
        let partner = match self.inner.db.get_entry_unscoped(id).await {
            Ok(Some(r)) => r.partner_id,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(entry = id, error = %e, "cannot mark a failed recording");
                return;
            }
        };
        self.cache_forget(id);
        let r = self
            .inner
            .db
            .set_media_status(
                partner,
                id,
                EntryStatus::Error.as_str(),
                Some(&bounded(reason, 512)),
                now_s(),
            )
            .await;
        if let Err(e) = r {
            tracing::error!(entry = id, error = %e, "cannot mark a failed recording");
        }
        self.cache_forget(id);
        self.after_write().await;
    }

    /// Deletes the entries whose retention has passed, with their content. Returns how
    /// many were deleted.
    pub async fn expire_once(&self) -> Result<usize, DbError> {
        let now = now_s();
        let expired = self.inner.db.expired_entries(now, 256).await?;
        let mut n = 0;
        for (partner, id) in expired {
            self.cache_forget(&id);
            if self.inner.db.delete_entry(partner, &id, now).await? {
                n += 1;
                self.cache_forget(&id);
                self.remove_media(&id).await;
                tracing::info!(entry = id, partner, "entry expired and deleted");
            }
        }
        if n > 0 {
            self.after_write().await;
        }
        Ok(n)
    }

    /// Runs [`Self::expire_once`] every `every`, for as long as the runtime runs.
    pub fn spawn_retention(&self, every: Duration) {
        let cp = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = cp.expire_once().await {
                    tracing::warn!(error = %e, "retention pass failed");
                }
            }
        });
    }

    /// Stored content per partner.
    pub async fn usage(&self) -> Result<Vec<Usage>, DbError> {
        Ok(self
            .inner
            .db
            .usage_by_partner()
            .await?
            .into_iter()
            .map(|(partner_id, entries, stored_bytes)| Usage {
                partner_id,
                entries,
                stored_bytes,
            })
            .collect())
    }
}

/// Storage use: the session's partner's, or every partner's for the admin partner.
#[utoipa::path(get, path = "/api/v1/usage", tag = "partners", security(("bearer" = [])),
    responses((status = 200, body = Vec<Usage>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn get_usage(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
) -> Result<Json<Vec<Usage>>, ApiError> {
    if !c.is_admin() {
        return Err(ApiError::Forbidden("usage needs an admin session"));
    }
    let all = cp.usage().await?;
    let mine: Vec<Usage> = if c.p == 1 {
        all
    } else {
        let own = all.into_iter().find(|u| u.partner_id == c.p);
        vec![own.unwrap_or(Usage {
            partner_id: c.p,
            entries: 0,
            stored_bytes: 0,
        })]
    };
    Ok(Json(mine))
}

fn bounded(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}
