//! `PUT /api/v1/entries/ID/content`: a media entry's content, streamed from the request
//! body into the [`MediaStore`](crate::storage::MediaStore), checked by the
//! [`ContentInspector`](crate::content::ContentInspector), then made the entry's content.
//!
//! Status: the entry goes to `processing` while the upload runs and is checked, then to
//! `ready` (content, `media` and `duration_s` recorded), or the upload fails:
//! - an entry that had content (a replacement upload) goes back to its status before
//!   (`ready`) with its previous content, which stayed playable all along (the new file is staged under a
//!   temporary name and only renamed over the old one once accepted);
//! - an entry without content goes to `error` with `status_reason` saying why (`upload
//!   interrupted`, `content larger than the maximum of N bytes`, `insufficient storage`,
//!   the inspector's reason, ...).
//!
//! In every failure the staged file is removed. The work after the status change runs in
//! its own task, so a request dropped half-way (client gone) still cleans up and restores
//! the status. One upload per entry at a time (per process: a second one is 409). On
//! SQLite (one process), entries left `processing` by a stopped server are recovered when
//! the control plane opens.

use std::collections::HashSet;
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use futures_util::{StreamExt, TryStreamExt};
use utoipa::ToSchema;

use crate::api::{load_entry, ApiPath, Auth, Entry};
use crate::auth::{self, now_s};
use crate::content::{extension_for_content_type, sniff_extension, EntryStatus, MediaSource};
use crate::db::EntryRow;
use crate::error::{ApiError, DbError, ErrorBody};
use crate::storage::{ByteStream, StoreError};
use crate::ControlPlane;

/// The `status_reason` of an entry whose upload broke off.
pub const REASON_INTERRUPTED: &str = "upload interrupted";

/// Entries with an upload running in this process.
#[derive(Debug, Default)]
pub(crate) struct Uploads(Mutex<HashSet<String>>);

impl Uploads {
    /// Whether an upload or import of `id` runs in this process.
    pub(crate) fn busy(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }
}

/// Holds an entry's upload slot until dropped.
pub(crate) struct UploadSlot {
    cp: ControlPlane,
    id: String,
}

impl UploadSlot {
    pub(crate) fn acquire(cp: &ControlPlane, id: &str) -> Option<UploadSlot> {
        let mut set = cp.inner.uploads.0.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_string()).then(|| UploadSlot {
            cp: cp.clone(),
            id: id.to_string(),
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut set = self
            .cp
            .inner
            .uploads
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.remove(&self.id);
    }
}

/// Why an upload that had started failed.
#[derive(Debug)]
pub(crate) enum Failure {
    Store(StoreError),
    Rejected(String),
    Inspection(String),
    Db(DbError),
    /// The entry was deleted during the upload.
    Gone,
}

impl Failure {
    /// What the entry's `status_reason` says (no internals).
    pub(crate) fn reason(&self) -> String {
        match self {
            Failure::Store(StoreError::Interrupted(_)) => REASON_INTERRUPTED.into(),
            Failure::Store(e @ StoreError::TooLarge { .. }) => e.to_string(),
            Failure::Store(StoreError::Full { .. }) => "insufficient storage".into(),
            Failure::Store(StoreError::Io { .. }) => "storage error".into(),
            Failure::Rejected(r) => r.clone(),
            Failure::Inspection(_) => "content inspection failed".into(),
            Failure::Db(_) => "internal error".into(),
            Failure::Gone => "entry deleted".into(),
        }
    }

    fn into_api(self) -> ApiError {
        match self {
            Failure::Store(StoreError::Interrupted(_)) => ApiError::BadRequest(format!(
                "{REASON_INTERRUPTED}: the request body ended early"
            )),
            Failure::Store(StoreError::TooLarge { max }) => ApiError::UploadTooLarge(max),
            Failure::Store(e @ StoreError::Full { .. }) => {
                tracing::error!(error = %e, "media storage is full");
                ApiError::InsufficientStorage
            }
            Failure::Store(e @ StoreError::Io { .. }) => ApiError::Internal(e.to_string()),
            Failure::Rejected(r) => ApiError::ContentRejected(r),
            Failure::Inspection(detail) => ApiError::Internal(detail),
            Failure::Db(e) => e.into(),
            Failure::Gone => ApiError::NotFound("entry"),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Store(e) => e.fmt(f),
            Failure::Rejected(r) => write!(f, "content rejected: {r}"),
            Failure::Inspection(d) => write!(f, "content inspection failed: {d}"),
            Failure::Db(e) => e.fmt(f),
            Failure::Gone => f.write_str("the entry was deleted during the upload"),
        }
    }
}

/// The raw content (any size; streamed).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ContentBody(#[allow(dead_code)] Vec<u8>);

/// Upload a media entry's content: the file is the raw request body (any size up to the
/// server's maximum, streamed to storage). The entry is `processing` meanwhile, then
/// `ready` with `media` filled in, or the upload fails: an entry that had content keeps
/// it (and goes back to `ready`); one without goes to `error` with `status_reason`.
/// The file type is sniffed from the content (or taken from `Content-Type`).
#[utoipa::path(put, path = "/api/v1/entries/{id}/content", tag = "entries",
    params(("id" = String, Path, description = "entry id")),
    request_body(content = ContentBody, content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses((status = 200, body = Entry, description = "the content was accepted; the entry is ready"),
        (status = 400, body = ErrorBody, description = "the request body broke off"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not a media entry, or an upload to it is running"),
        (status = 413, body = ErrorBody, description = "larger than the server's maximum"),
        (status = 422, body = ErrorBody, description = "the content was rejected (see the message)"),
        (status = 500, body = ErrorBody),
        (status = 507, body = ErrorBody, description = "no storage space left")))]
pub async fn put_content(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Entry>, ApiError> {
    let id = id.as_str();
    let r = async {
        if !auth::is_entry_id(id) {
            return Err(ApiError::NotFound("entry"));
        }
        if !c.may("edit", Some(id)) {
            return Err(ApiError::Forbidden("no edit privilege on this entry"));
        }
        let max = cp.inner.cfg.media.max_upload_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(ApiError::UploadTooLarge(max));
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body: ByteStream = body
            .into_data_stream()
            .map_err(std::io::Error::other)
            .boxed();
        cp.receive_content(c.p, id, content_type, body).await
    }
    .await;
    match r {
        Ok(row) => Ok(Json(Entry::from_row(&cp, &row, true))),
        Err(e) => {
            let cause = match &e {
                ApiError::Internal(detail) => detail.as_str(),
                _ => "",
            };
            tracing::warn!(entry = id, partner = c.p, error = %e, cause, "content upload refused");
            Err(e)
        }
    }
}

impl ControlPlane {
    /// Runs an upload of `partner`'s media entry `id`; returns the entry afterwards.
    async fn receive_content(
        &self,
        partner: i64,
        id: &str,
        content_type: Option<String>,
        body: ByteStream,
    ) -> Result<EntryRow, ApiError> {
        if load_entry(self, partner, id).await?.kind != "media" {
            return Err(ApiError::Conflict(
                "only media entries take content (live entries are published)",
            ));
        }
        let slot = UploadSlot::acquire(self, id).ok_or(ApiError::Conflict(
            "an upload to this entry is already running",
        ))?;
        // Read again under the slot: another upload may have finished since.
        let entry = self
            .inner
            .db
            .get_entry(partner, id)
            .await?
            .ok_or(ApiError::NotFound("entry"))?;
        self.cache_forget(id);
        if !self
            .inner
            .db
            .set_media_status(partner, id, EntryStatus::Processing.as_str(), None, now_s())
            .await?
        {
            return Err(ApiError::NotFound("entry"));
        }
        self.cache_forget(id);
        self.after_write().await;
        tracing::info!(entry = id, partner, "content upload started");

        // From here on the upload finishes in its own task, so that a dropped request
        // (the client went away) still removes its file and restores the status.
        let cp = self.clone();
        let id = id.to_string();
        // With content before, a failure goes back to the status it had (`ready`, or
        // `pending` if it was taken offline by a PATCH).
        let previous = entry.content_name.clone().map(|name| {
            let status = match EntryStatus::parse(&entry.status) {
                Some(EntryStatus::Pending) => EntryStatus::Pending,
                _ => EntryStatus::Ready,
            };
            (name, status)
        });
        let task = tokio::spawn(async move {
            let _slot = slot;
            let r = cp
                .finish_upload(partner, &id, previous, content_type, body)
                .await;
            match &r {
                Ok(_) => tracing::info!(entry = %id, partner, "content upload ready"),
                Err(f) => tracing::warn!(entry = %id, partner, cause = %f, "content upload failed"),
            }
            r.map_err(Failure::into_api)
        });
        task.await
            .map_err(|e| ApiError::Internal(format!("upload task failed: {e}")))?
    }

    async fn finish_upload(
        &self,
        partner: i64,
        id: &str,
        previous: Option<(String, EntryStatus)>,
        content_type: Option<String>,
        body: ByteStream,
    ) -> Result<EntryRow, Failure> {
        let body = with_idle_timeout(body, self.inner.cfg.media.idle_timeout);
        let outcome = self
            .accept_content(
                partner,
                id,
                previous.as_ref().map(|p| p.0.as_str()),
                content_type,
                body,
            )
            .await;
        self.cache_forget(id);
        let outcome = match outcome {
            Ok(()) => Ok(()),
            Err(Failure::Gone) => Err(Failure::Gone),
            Err(f) => {
                // Back to the previous content, or `error` saying why there is none.
                let reason = f.reason();
                let (status, reason) = match previous {
                    Some((_, status)) => (status, None),
                    None => (EntryStatus::Error, Some(reason.as_str())),
                };
                let restored = self
                    .inner
                    .db
                    .set_media_status(partner, id, status.as_str(), reason, now_s())
                    .await;
                match restored {
                    Ok(true) => Err(f),
                    Ok(false) => {
                        tracing::warn!(entry = id, cause = %f, "content upload failed and its entry was deleted");
                        Err(Failure::Gone)
                    }
                    Err(e) => {
                        tracing::error!(entry = id, error = %e, "cannot restore the status after a failed upload");
                        Err(f)
                    }
                }
            }
        };
        self.cache_forget(id);
        self.after_write().await;
        if let Err(Failure::Gone) = outcome {
            // Deleted during the upload: whatever it wrote goes too.
            self.remove_media(id).await;
        }
        outcome?;
        self.inner
            .db
            .get_entry(partner, id)
            .await
            .map_err(Failure::Db)?
            .ok_or(Failure::Gone)
    }

    /// Stages, inspects and commits the content, and records it on the entry.
    async fn accept_content(
        &self,
        partner: i64,
        id: &str,
        previous: Option<&str>,
        content_type: Option<String>,
        body: ByteStream,
    ) -> Result<(), Failure> {
        let store = &self.inner.store;
        let max = self.inner.cfg.media.max_upload_bytes;
        let staged = store.stage(id, body, max).await.map_err(Failure::Store)?;
        self.accept_staged(partner, id, previous, content_type, staged)
            .await
    }

    /// Inspects and commits staged content, and records it on the entry.
    pub(crate) async fn accept_staged(
        &self,
        partner: i64,
        id: &str,
        previous: Option<&str>,
        content_type: Option<String>,
        staged: crate::storage::StagedContent,
    ) -> Result<(), Failure> {
        let store = &self.inner.store;
        if staged.size == 0 {
            store.discard(staged).await;
            return Err(Failure::Rejected("the content is empty".into()));
        }
        let ext = sniff_extension(&staged.head)
            .or_else(|| content_type.as_deref().and_then(extension_for_content_type))
            .unwrap_or("bin");
        // Shared storage: a new name per version, so that no node keeps serving its
        // cached copy of replaced content.
        let name = if store.is_shared() {
            format!("source-{}.{ext}", crate::auth::random_hex(6))
        } else {
            format!("source.{ext}")
        };
        let media = match self.inner.cfg.media.inspector.clone() {
            None => None,
            Some(inspector) => {
                let path = staged.path.clone();
                match tokio::task::spawn_blocking(move || inspector.inspect(&path)).await {
                    Ok(Ok(m)) => Some(m.sanitized()),
                    Ok(Err(reason)) => {
                        store.discard(staged).await;
                        return Err(Failure::Rejected(bounded_reason(&reason)));
                    }
                    Err(e) => {
                        store.discard(staged).await;
                        return Err(Failure::Inspection(e.to_string()));
                    }
                }
            }
        };
        let size = staged.size;
        store.commit(staged, &name).await.map_err(Failure::Store)?;
        let recorded = self
            .inner
            .db
            .set_media_content(partner, id, &name, media.as_ref(), size, now_s())
            .await;
        match recorded {
            Ok(true) => self.emit(partner, "entry.ready", id),
            Ok(false) => return Err(Failure::Gone),
            Err(e) => return Err(Failure::Db(e)),
        }
        if let Some(old) = previous.filter(|old| *old != name) {
            if let Err(e) = store.remove(id, old).await {
                tracing::warn!(entry = id, error = %e, "cannot remove the previous content");
            }
        }
        Ok(())
    }

    /// Removes an entry's content and staged uploads (after the entry was deleted).
    pub(crate) async fn remove_media(&self, id: &str) {
        if let Err(e) = self.inner.store.delete(id).await {
            tracing::warn!(entry = id, error = %e, "cannot remove the media of a deleted entry");
        }
    }

    /// A media entry's content as the VOD origin serves it: `Some` when the entry has
    /// complete, inspected content (status `ready`, or `processing` while a replacement
    /// upload runs — the previous content stays playable), `None` otherwise (unknown
    /// entry, live entry, no content yet, or a store without local files).
    pub async fn media_source(&self, entry_id: &str) -> Result<Option<MediaSource>, DbError> {
        if !auth::is_entry_id(entry_id) {
            return Ok(None);
        }
        let row = match self.cache_get(entry_id) {
            Some(e) => e,
            None => {
                let epoch = self.cache_epoch();
                match self.inner.db.get_entry_unscoped(entry_id).await? {
                    Some(e) => self.cache_put(e, epoch),
                    None => return Ok(None),
                }
            }
        };
        if row.kind != "media" {
            return Ok(None);
        }
        // `pending` with content: taken offline by a PATCH.
        let Some(name) = row.content_name.as_deref() else {
            return Ok(None);
        };
        let status = match EntryStatus::parse(&row.status) {
            Some(s @ (EntryStatus::Ready | EntryStatus::Processing)) => s,
            _ => return Ok(None),
        };
        let path = match self.inner.store.fetch(entry_id, name).await {
            Ok(Some(path)) => path,
            Ok(None) => {
                tracing::warn!(
                    entry = entry_id,
                    name,
                    "the content of a media entry is missing"
                );
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(entry = entry_id, name, error = %e, "cannot fetch the content of a media entry");
                return Ok(None);
            }
        };
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(entry = entry_id, path = %path.display(), error = %e, "the content of a media entry is missing");
                return Ok(None);
            }
        };
        Ok(Some(MediaSource {
            entry_id: row.id.clone(),
            partner_id: row.partner_id,
            status,
            path,
            media: row.media.clone(),
            size: meta.len(),
            updated_at: row.updated_at,
            modified: meta.modified().ok(),
        }))
    }
}

/// At most 512 characters of an inspector's reason, without control characters.
fn bounded_reason(reason: &str) -> String {
    let r: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect();
    if r.trim().is_empty() {
        "the content was rejected".into()
    } else {
        r
    }
}

/// `body`, failing with `TimedOut` when no data arrives for `idle` (a stalled client
/// would otherwise hold the entry's upload slot forever).
pub(crate) fn with_idle_timeout(body: ByteStream, idle: std::time::Duration) -> ByteStream {
    futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(item)) => Some((item, Some(body))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no data for {} s", idle.as_secs()),
                )),
                None,
            )),
        }
    })
    .boxed()
}
