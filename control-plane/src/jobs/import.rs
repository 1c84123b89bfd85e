//! The import job: fetches a URL into a media entry's content, the same way an upload
//! arrives (staged in the media store, inspected, committed), with progress.
//!
//! Limits: the server's upload maximum (a larger `Content-Length` is refused before
//! the body, a longer body is cut), a connect timeout, a timeout for the response head,
//! an idle timeout on the body and an overall timeout; HTML (a login page, an error
//! page) is refused by type and by its first bytes. The entry is `processing` while the
//! job runs and turns `ready` (or, when the job fails for good, goes back to its
//! content, or to `error` with the reason).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;

use super::fetch::{FetchError, Fetcher};
use super::{JobContext, JobError, JobHandler};
use crate::auth::now_s;
use crate::content::EntryStatus;
use crate::storage::{ByteStream, StoreError};
use crate::upload::{with_idle_timeout, Failure, UploadSlot};
use crate::ControlPlane;

/// Limits of import downloads.
#[derive(Debug, Clone)]
pub struct ImportLimits {
    pub connect_timeout: Duration,
    /// Until the response head arrives.
    pub head_timeout: Duration,
    /// With no body bytes for this long the download fails.
    pub idle_timeout: Duration,
    /// The whole download and its inspection.
    pub total_timeout: Duration,
    pub max_redirects: usize,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            connect_timeout: Duration::from_secs(10),
            head_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(3600),
            max_redirects: 5,
        }
    }
}

pub(crate) struct ImportHandler {
    pub(crate) limits: ImportLimits,
}

/// Whether the first bytes look like an HTML document.
pub fn looks_like_html(head: &[u8]) -> bool {
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let h = &head[start..head.len().min(start + 64)];
    let lower: Vec<u8> = h.iter().map(u8::to_ascii_lowercase).collect();
    lower.starts_with(b"<!doctype html")
        || lower.starts_with(b"<html")
        || lower.starts_with(b"<head")
}

impl JobHandler for ImportHandler {
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<serde_json::Value, JobError>> {
        let limits = self.limits.clone();
        Box::pin(async move {
            let Some(entry) = ctx.job.entry_id.clone() else {
                return Err(JobError::Permanent("an import job needs an entry".into()));
            };
            let partner = ctx.job.partner_id;
            let r = tokio::time::timeout(limits.total_timeout, import(&ctx, &limits, &entry)).await;
            let r = match r {
                Ok(r) => r,
                Err(_) => Err(JobError::Permanent(format!(
                    "the import took longer than {} s",
                    limits.total_timeout.as_secs()
                ))),
            };
            if let Err(e) = &r {
                let ends = matches!(e, JobError::Permanent(_)) || ctx.last_attempt();
                if ends {
                    give_up(&ctx.cp, partner, &entry, &e.to_string()).await;
                }
            }
            r
        })
    }

    fn gave_up(&self, ctx: JobContext, reason: String) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Some(entry) = &ctx.job.entry_id {
                give_up(&ctx.cp, ctx.job.partner_id, entry, &reason).await;
            }
        })
    }
}

/// The job failed for good: the entry goes back to its content, or to `error`.
pub(crate) async fn give_up(cp: &ControlPlane, partner: i64, id: &str, reason: &str) {
    let Ok(Some(entry)) = cp.inner.db.get_entry(partner, id).await else {
        return;
    };
    let (status, reason) = match entry.content_name {
        Some(_) => (EntryStatus::Ready, None),
        None => (EntryStatus::Error, Some(format!("import failed: {reason}"))),
    };
    let r = cp
        .inner
        .db
        .set_media_status(partner, id, status.as_str(), reason.as_deref(), now_s())
        .await;
    if let Err(e) = r {
        tracing::error!(entry = id, error = %e, "cannot set the status after a failed import");
    }
    cp.cache_forget(id);
    cp.after_write().await;
}

fn fetch_error(e: FetchError) -> JobError {
    if e.transient() {
        JobError::Transient(e.to_string())
    } else {
        JobError::Permanent(e.to_string())
    }
}

fn failure(f: Failure) -> JobError {
    match f {
        Failure::Store(StoreError::Interrupted(e)) => {
            JobError::Transient(format!("download interrupted: {e}"))
        }
        Failure::Store(e @ StoreError::TooLarge { .. }) => JobError::Permanent(e.to_string()),
        Failure::Rejected(r) => JobError::Permanent(format!("content rejected: {r}")),
        Failure::Gone => JobError::Permanent("the entry was deleted".into()),
        other => JobError::Transient(other.reason()),
    }
}

async fn import(
    ctx: &JobContext,
    limits: &ImportLimits,
    id: &str,
) -> Result<serde_json::Value, JobError> {
    let cp = &ctx.cp;
    let partner = ctx.job.partner_id;
    let url = ctx
        .job
        .payload
        .get("url")
        .and_then(|u| u.as_str())
        .ok_or_else(|| JobError::Permanent("the job has no url".into()))?;
    let db = |e: crate::DbError| JobError::Transient(e.to_string());
    let entry = cp
        .inner
        .db
        .get_entry(partner, id)
        .await
        .map_err(db)?
        .ok_or_else(|| JobError::Permanent("the entry was deleted".into()))?;
    if entry.kind != "media" {
        return Err(JobError::Permanent("not a media entry".into()));
    }
    let _slot = UploadSlot::acquire(cp, id)
        .ok_or_else(|| JobError::Transient("an upload to this entry is running".into()))?;
    if entry.status != EntryStatus::Processing.as_str() {
        cp.inner
            .db
            .set_media_status(partner, id, EntryStatus::Processing.as_str(), None, now_s())
            .await
            .map_err(db)?;
        cp.cache_forget(id);
    }

    let fetcher = Fetcher::new(
        cp.outbound().allow_private,
        limits.connect_timeout,
        limits.head_timeout,
        limits.max_redirects,
    )
    .map_err(JobError::Permanent)?;
    let fetched = fetcher.get(url).await.map_err(fetch_error)?;
    let max = cp.inner.cfg.media.max_upload_bytes;
    let headers = fetched.response.headers();
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > max) {
        return Err(JobError::Permanent(format!(
            "content larger than the maximum of {max} bytes"
        )));
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if content_type
        .as_deref()
        .is_some_and(|t| t == "text/html" || t == "application/xhtml+xml")
    {
        return Err(JobError::Permanent(
            "the URL serves an HTML page, not media".into(),
        ));
    }
    let final_url = fetched.url.to_string();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let progress = ctx.progress.clone();
    let body: ByteStream = fetched
        .response
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other)
        .inspect_ok(move |chunk| {
            let n = counter.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            if let Some(total) = length.filter(|t| *t > 0) {
                // The download is most of the job; the inspection is the rest.
                let p = 0.95 * n as f64 / total as f64;
                progress.store(p.clamp(0.0, 0.95).to_bits(), Ordering::Relaxed);
            }
        })
        .boxed();
    let body = with_idle_timeout(body, limits.idle_timeout);
    let store = &cp.inner.store;
    let staged = store
        .stage(id, body, max)
        .await
        .map_err(|e| failure(Failure::Store(e)))?;
    if looks_like_html(&staged.head) {
        store.discard(staged).await;
        return Err(JobError::Permanent(
            "the URL serves an HTML page, not media".into(),
        ));
    }
    let size = staged.size;
    let r = cp
        .accept_staged(
            partner,
            id,
            entry.content_name.as_deref(),
            content_type,
            staged,
        )
        .await;
    cp.cache_forget(id);
    cp.after_write().await;
    r.map_err(failure)?;
    ctx.set_progress(1.0);
    Ok(serde_json::json!({ "bytes": size, "url": final_url }))
}
