//! The jobs API: `GET /api/v1/jobs`, `GET /api/v1/jobs/ID`, `POST /api/v1/jobs/ID/cancel`,
//! `POST /api/v1/jobs/ID/retry`, `POST /api/v1/jobs` (admin: the `noop` probe) and
//! `POST /api/v1/entries/ID/import`. Every query is scoped to the session's partner.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::{now_ms, JobFilter, JobRow, JobStatus, IMPORT, NOOP};
use crate::api::{load_entry, page_bounds, ApiJson, ApiPath, ApiQuery, Auth};
use crate::auth::{self, now_s};
use crate::content::EntryStatus;
use crate::error::{ApiError, ErrorBody};
use crate::ControlPlane;

/// A batch job.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    pub id: i64,
    /// `import` or `noop`.
    #[serde(rename = "type")]
    pub job_type: String,
    pub entry_id: Option<String>,
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: i64,
    pub max_attempts: i64,
    /// The worker that runs (or last ran) it: `HOST-PID-RANDOM`.
    pub worker: Option<String>,
    /// 0 to 1.
    pub progress: f64,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// When the latest attempt started.
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// A `retried` job's next attempt.
    pub run_at_ms: i64,
    pub updated_at_ms: i64,
}

impl From<JobRow> for Job {
    fn from(j: JobRow) -> Job {
        Job {
            id: j.id,
            job_type: j.job_type,
            entry_id: j.entry_id,
            status: j.status,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            worker: j.worker,
            progress: j.progress,
            payload: j.payload,
            result: j.result,
            error: j.error,
            created_at_ms: j.created_at,
            started_at_ms: j.started_at,
            finished_at_ms: j.finished_at,
            run_at_ms: j.run_at,
            updated_at_ms: j.updated_at,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub objects: Vec<Job>,
    pub total_count: i64,
    pub page: u32,
    pub page_size: u32,
}

/// Job listing filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    pub entry_id: Option<String>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub job_type: Option<String>,
    pub status: Option<JobStatus>,
    pub page: Option<u32>,
    pub page_size: Option<u32>,
}

/// An import: the URL to fetch (http or https).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    #[schema(max_length = 2048)]
    pub url: String,
}

/// A job started directly (admins; only `noop`, which waits `payload.sleep_ms`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobCreate {
    #[serde(rename = "type")]
    pub job_type: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

fn job_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or(ApiError::NotFound("job"))
}

/// Who may see a job: the partner's admins, or a session that may edit its entry.
fn may_see(c: &auth::Claims, job: &JobRow) -> bool {
    c.is_admin()
        || job
            .entry_id
            .as_deref()
            .is_some_and(|e| c.may("edit", Some(e)))
}

/// List the partner's jobs.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(JobListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = JobList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_jobs(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<JobListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let allowed = c.is_admin()
        || q.entry_id
            .as_deref()
            .is_some_and(|e| c.may("edit", Some(e)));
    if !allowed {
        return Err(ApiError::Forbidden(
            "listing jobs needs an admin session, or an entry_id you may edit",
        ));
    }
    let (page, page_size, limit, offset) = page_bounds(q.page, q.page_size)?;
    let f = JobFilter {
        partner_id: Some(c.p),
        entry_id: q.entry_id.as_deref(),
        job_type: q.job_type.as_deref(),
        status: q.status,
        limit,
        offset,
    };
    let (jobs, total) = cp.inner.db.list_jobs(&f).await?;
    Ok(Json(JobList {
        objects: jobs.into_iter().map(Job::from).collect(),
        total_count: total,
        page,
        page_size,
    }))
}

async fn load_job(cp: &ControlPlane, c: &auth::Claims, id: &str) -> Result<JobRow, ApiError> {
    let job = cp
        .inner
        .db
        .get_job(Some(c.p), job_id(id)?)
        .await?
        .ok_or(ApiError::NotFound("job"))?;
    if !may_see(c, &job) {
        return Err(ApiError::NotFound("job"));
    }
    Ok(job)
}

/// Get a job.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = i64, Path, description = "job id")), security(("bearer" = [])),
    responses((status = 200, body = Job), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(load_job(&cp, &c, &id).await?.into()))
}

/// Cancel a job that has not ended (a running one stops at its next heartbeat). A
/// cancelled import puts its entry back to its content, or to `error`.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = i64, Path, description = "job id")), security(("bearer" = [])),
    responses((status = 200, body = Job), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the job has ended")))]
pub async fn cancel_job(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<Json<Job>, ApiError> {
    let job = load_job(&cp, &c, &id).await?;
    if !cp.inner.db.cancel_job(Some(c.p), job.id, now_ms()).await? {
        return Err(ApiError::Conflict("the job has ended"));
    }
    if let (IMPORT, Some(entry)) = (job.job_type.as_str(), job.entry_id.as_deref()) {
        super::import::give_up(&cp, c.p, entry, "cancelled").await;
    }
    Ok(Json(load_job(&cp, &c, &id).await?.into()))
}

/// Run a failed or cancelled job again, with a fresh set of attempts.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = i64, Path, description = "job id")), security(("bearer" = [])),
    responses((status = 200, body = Job), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the job is not failed or cancelled")))]
pub async fn retry_job(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
) -> Result<Json<Job>, ApiError> {
    let job = load_job(&cp, &c, &id).await?;
    if let (IMPORT, Some(entry)) = (job.job_type.as_str(), job.entry_id.as_deref()) {
        if cp.inner.db.entry_has_open_job(entry, IMPORT).await? {
            return Err(ApiError::Conflict(
                "another import of this entry is running",
            ));
        }
    }
    if !cp.inner.db.retry_job(Some(c.p), job.id, now_ms()).await? {
        return Err(ApiError::Conflict("the job is not failed or cancelled"));
    }
    if let (IMPORT, Some(entry)) = (job.job_type.as_str(), job.entry_id.as_deref()) {
        cp.inner
            .db
            .set_media_status(c.p, entry, EntryStatus::Processing.as_str(), None, now_s())
            .await?;
        cp.cache_forget(entry);
        cp.after_write().await;
    }
    cp.inner.jobs.wake.notify_waiters();
    Ok(Json(load_job(&cp, &c, &id).await?.into()))
}

/// Start a job directly: admins, type `noop` only (it waits `payload.sleep_ms`, at
/// most 60000, and measures the queue); other types start from their own APIs.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = JobCreate,
    security(("bearer" = [])),
    responses((status = 202, body = Job), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_job(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<JobCreate>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    if !c.is_admin() {
        return Err(ApiError::Forbidden("starting jobs needs an admin session"));
    }
    if req.job_type != NOOP {
        return Err(ApiError::Validation(
            "only noop jobs start here; imports start at /entries/ID/import".into(),
        ));
    }
    let payload = match req.payload {
        serde_json::Value::Null => serde_json::json!({}),
        p @ serde_json::Value::Object(_) if p.to_string().len() <= 4096 => p,
        _ => {
            return Err(ApiError::Validation(
                "payload must be a JSON object of at most 4 KiB".into(),
            ))
        }
    };
    let job = cp.enqueue_job(c.p, None, NOOP, &payload).await?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// Import a media entry's content from an HTTP(S) URL as a batch job. The entry is
/// `processing` until the job ends (`ready`, or `error` with the reason when it fails
/// for good). URLs that point at loopback, link-local or private addresses are refused
/// unless the server allows them (`[outbound] allow_private`).
#[utoipa::path(post, path = "/api/v1/entries/{id}/import", tag = "entries",
    params(("id" = String, Path, description = "entry id")), request_body = ImportRequest,
    security(("bearer" = [])),
    responses((status = 202, body = Job, description = "the import job"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "not a media entry, or an import or upload is running"),
        (status = 422, body = ErrorBody, description = "the URL is invalid or refused")))]
pub async fn import_entry(
    State(cp): State<ControlPlane>,
    Auth(c): Auth,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<ImportRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    if !auth::is_entry_id(&id) {
        return Err(ApiError::NotFound("entry"));
    }
    if !c.may("edit", Some(&id)) {
        return Err(ApiError::Forbidden("no edit privilege on this entry"));
    }
    if req.url.len() > 2048 {
        return Err(ApiError::Validation(
            "url is longer than 2048 characters".into(),
        ));
    }
    let url = url::Url::parse(&req.url)
        .map_err(|e| ApiError::Validation(format!("url is invalid: {e}")))?;
    super::fetch::check_url(&url, cp.outbound().allow_private)
        .map_err(|e| ApiError::Validation(e.to_string()))?;
    let entry = load_entry(&cp, c.p, &id).await?;
    if entry.kind != "media" {
        return Err(ApiError::Conflict(
            "only media entries take content (live entries are published)",
        ));
    }
    if cp.inner.db.entry_has_open_job(&id, IMPORT).await? {
        return Err(ApiError::Conflict("an import of this entry is running"));
    }
    if cp.inner.uploads.busy(&id) {
        return Err(ApiError::Conflict("an upload to this entry is running"));
    }
    if !cp
        .inner
        .db
        .set_media_status(c.p, &id, EntryStatus::Processing.as_str(), None, now_s())
        .await?
    {
        return Err(ApiError::NotFound("entry"));
    }
    cp.cache_forget(&id);
    cp.after_write().await;
    let job = cp
        .enqueue_job(
            c.p,
            Some(&id),
            IMPORT,
            &serde_json::json!({ "url": url.as_str() }),
        )
        .await?;
    tracing::info!(entry = %id, job = job.id, "import queued");
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// The jobs' OpenAPI paths, merged into the API's document.
#[derive(OpenApi)]
#[openapi(
    paths(list_jobs, get_job, cancel_job, retry_job, create_job, import_entry),
    components(schemas(Job, JobList, JobStatus, ImportRequest, JobCreate))
)]
pub struct JobsDoc;

/// The jobs routes (relative to `/api/v1`).
pub fn routes() -> Router<ControlPlane> {
    Router::new()
        .route("/jobs", get(list_jobs).post(create_job))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/retry", post(retry_job))
        .route("/entries/{id}/import", post(import_entry))
}
