//! The durable queue: jobs rows in the operational database, claimed atomically.
//!
//! Every function takes `now` (unix milliseconds) from its caller, so the rules
//! (claim order, lease expiry, backoff) are tested on simulated time.
//!
//! A claim is one statement: an `UPDATE … WHERE id = (SELECT … LIMIT 1)`, with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL so concurrent workers take different rows
//! without waiting; SQLite serialises writers, so the same statement is atomic there.
//! A claimed job holds a lease (`lease_until`) its worker extends while it runs; a
//! worker that dies stops extending it, and once it has passed the job is claimable
//! again. Each claim bumps `attempts`, and every later write of the worker is fenced
//! on (`worker`, `attempts`), so a worker that lost its lease cannot complete a job
//! another worker now runs: a job ends `done` once.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{Backend, Db};
use crate::error::DbError;

use super::{JobStatus, JOB_COLS};

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: i64,
    pub partner_id: i64,
    pub entry_id: Option<String>,
    pub job_type: String,
    pub payload: serde_json::Value,
    pub status: JobStatus,
    pub attempts: i64,
    pub max_attempts: i64,
    pub progress: f64,
    pub run_at: i64,
    pub lease_until: Option<i64>,
    pub worker: Option<String>,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

/// A new job.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub partner_id: i64,
    pub entry_id: Option<&'a str>,
    pub job_type: &'a str,
    pub payload: &'a serde_json::Value,
    pub max_attempts: i64,
}

/// Filters of a job listing.
#[derive(Debug, Clone, Default)]
pub struct JobFilter<'a> {
    /// `None`: every partner (admin views only).
    pub partner_id: Option<i64>,
    pub entry_id: Option<&'a str>,
    pub job_type: Option<&'a str>,
    pub status: Option<JobStatus>,
    pub limit: i64,
    pub offset: i64,
}

/// How a finished attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(serde_json::Value),
    /// Try again at the given time (unix ms), or fail for good when `None`.
    Failed {
        error: String,
        retry_at: Option<i64>,
    },
}

fn opt_json(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

pub(crate) fn job_from_row(r: &AnyRow) -> Result<JobRow, DbError> {
    let status: String = r.try_get("status")?;
    let payload: String = r.try_get("payload")?;
    Ok(JobRow {
        id: r.try_get("id")?,
        partner_id: r.try_get("partner_id")?,
        entry_id: r.try_get("entry_id")?,
        job_type: r.try_get("job_type")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| DbError::Corrupt(format!("job payload: {e}")))?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| DbError::Corrupt(format!("job status {status:?}")))?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        progress: r.try_get("progress")?,
        run_at: r.try_get("run_at")?,
        lease_until: r.try_get("lease_until")?,
        worker: r.try_get("worker")?,
        error: r.try_get("error")?,
        result: opt_json(r.try_get("result")?),
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Db {
    /// Adds a pending job, runnable now; returns it.
    pub async fn enqueue_job(&self, job: &NewJob<'_>, now: i64) -> Result<JobRow, DbError> {
        let sql = format!(
            "INSERT INTO jobs (partner_id, entry_id, job_type, payload, status, attempts, \
             max_attempts, progress, run_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7, $7, $7) RETURNING {JOB_COLS}"
        );
        let r = sqlx::query(&sql)
            .bind(job.partner_id)
            .bind(job.entry_id)
            .bind(job.job_type)
            .bind(job.payload.to_string())
            .bind(job.max_attempts.max(1))
            .bind(0.0f64)
            .bind(now)
            .fetch_one(self.pool())
            .await?;
        job_from_row(&r)
    }

    /// Claims the oldest runnable job of `job_type` for `worker` until `now + lease_ms`.
    pub async fn claim_job(
        &self,
        job_type: &str,
        worker: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<JobRow>, DbError> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = $1, \
             worker = $2, started_at = $3, updated_at = $3, error = NULL \
             WHERE id = (SELECT id FROM jobs WHERE job_type = $4 AND \
               ((status IN ('pending', 'retried') AND run_at <= $3) \
                OR (status = 'running' AND lease_until < $3)) \
               ORDER BY run_at, id LIMIT 1{lock}) \
             RETURNING {JOB_COLS}"
        );
        let r = sqlx::query(&sql)
            .bind(now + lease_ms)
            .bind(worker)
            .bind(now)
            .bind(job_type)
            .fetch_optional(self.pool())
            .await?;
        r.as_ref().map(job_from_row).transpose()
    }

    /// Extends the lease of a running attempt and records its progress. `false`: the
    /// attempt is no longer this worker's (cancelled, or reclaimed after its lease
    /// expired) and should stop.
    pub async fn heartbeat_job(
        &self,
        id: i64,
        worker: &str,
        attempt: i64,
        progress: f64,
        now: i64,
        lease_ms: i64,
    ) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE jobs SET lease_until = $1, progress = $2, updated_at = $3 \
             WHERE id = $4 AND worker = $5 AND attempts = $6 AND status = 'running'",
        )
        .bind(now + lease_ms)
        .bind(progress.clamp(0.0, 1.0))
        .bind(now)
        .bind(id)
        .bind(worker)
        .bind(attempt)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records how an attempt ended; `false` if it was no longer this worker's (then
    /// nothing changes: the job's current owner decides).
    pub async fn finish_job(
        &self,
        id: i64,
        worker: &str,
        attempt: i64,
        outcome: &Outcome,
        now: i64,
    ) -> Result<bool, DbError> {
        let q = match outcome {
            Outcome::Done(result) => sqlx::query(
                "UPDATE jobs SET status = 'done', progress = $1, result = $2, error = NULL, \
                 lease_until = NULL, finished_at = $3, updated_at = $3 \
                 WHERE id = $4 AND worker = $5 AND attempts = $6 AND status = 'running'",
            )
            .bind(1.0f64)
            .bind(result.to_string()),
            Outcome::Failed {
                error,
                retry_at: Some(at),
            } => sqlx::query(
                "UPDATE jobs SET status = 'retried', run_at = $1, error = $2, \
                 lease_until = NULL, updated_at = $3 \
                 WHERE id = $4 AND worker = $5 AND attempts = $6 AND status = 'running'",
            )
            .bind(*at)
            .bind(error.as_str()),
            Outcome::Failed {
                error,
                retry_at: None,
            } => sqlx::query(
                "UPDATE jobs SET status = 'failed', progress = $1, error = $2, \
                 lease_until = NULL, finished_at = $3, updated_at = $3 \
                 WHERE id = $4 AND worker = $5 AND attempts = $6 AND status = 'running'",
            )
            .bind(0.0f64)
            .bind(error.as_str()),
        };
        let r = q
            .bind(now)
            .bind(id)
            .bind(worker)
            .bind(attempt)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Cancels a job that has not ended; `false` if there is none such.
    pub async fn cancel_job(
        &self,
        partner: Option<i64>,
        id: i64,
        now: i64,
    ) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', lease_until = NULL, finished_at = $1, \
             updated_at = $1, error = 'cancelled' \
             WHERE id = $2 AND ($3 < 0 OR partner_id = $3) \
             AND status IN ('pending', 'retried', 'running')",
        )
        .bind(now)
        .bind(id)
        .bind(partner.unwrap_or(-1))
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Runs a failed or cancelled job again (a fresh set of attempts); `false` if
    /// there is no such job.
    pub async fn retry_job(
        &self,
        partner: Option<i64>,
        id: i64,
        now: i64,
    ) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE jobs SET status = 'pending', attempts = 0, run_at = $1, progress = $2, \
             error = NULL, worker = NULL, finished_at = NULL, updated_at = $1 \
             WHERE id = $3 AND ($4 < 0 OR partner_id = $4) AND status IN ('failed', 'cancelled')",
        )
        .bind(now)
        .bind(0.0f64)
        .bind(id)
        .bind(partner.unwrap_or(-1))
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn get_job(&self, partner: Option<i64>, id: i64) -> Result<Option<JobRow>, DbError> {
        let sql =
            format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1 AND ($2 < 0 OR partner_id = $2)");
        let r = sqlx::query(&sql)
            .bind(id)
            .bind(partner.unwrap_or(-1))
            .fetch_optional(self.pool())
            .await?;
        r.as_ref().map(job_from_row).transpose()
    }

    /// Jobs matching `f`, newest first, and how many match in all.
    pub async fn list_jobs(&self, f: &JobFilter<'_>) -> Result<(Vec<JobRow>, i64), DbError> {
        let cond = "($1 < 0 OR partner_id = $1) AND ($2 = '' OR entry_id = $2) \
                    AND ($3 = '' OR job_type = $3) AND ($4 = '' OR status = $4)";
        let status = f.status.map(JobStatus::as_str).unwrap_or("");
        let sql =
            format!("SELECT {JOB_COLS} FROM jobs WHERE {cond} ORDER BY id DESC LIMIT $5 OFFSET $6");
        let rows = sqlx::query(&sql)
            .bind(f.partner_id.unwrap_or(-1))
            .bind(f.entry_id.unwrap_or(""))
            .bind(f.job_type.unwrap_or(""))
            .bind(status)
            .bind(f.limit)
            .bind(f.offset)
            .fetch_all(self.pool())
            .await?;
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM jobs WHERE {cond}"))
            .bind(f.partner_id.unwrap_or(-1))
            .bind(f.entry_id.unwrap_or(""))
            .bind(f.job_type.unwrap_or(""))
            .bind(status)
            .fetch_one(self.pool())
            .await?
            .try_get(0)?;
        let jobs = rows.iter().map(job_from_row).collect::<Result<_, _>>()?;
        Ok((jobs, total))
    }

    /// (type, status, count) over every job, for the metrics.
    pub async fn job_counts(&self) -> Result<Vec<(String, String, i64)>, DbError> {
        let rows =
            sqlx::query("SELECT job_type, status, COUNT(*) FROM jobs GROUP BY job_type, status")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Whether `entry` has a job of `job_type` that has not ended (one import at a time).
    pub async fn entry_has_open_job(&self, entry: &str, job_type: &str) -> Result<bool, DbError> {
        let r = sqlx::query(
            "SELECT COUNT(*) FROM jobs WHERE entry_id = $1 AND job_type = $2 \
             AND status IN ('pending', 'retried', 'running')",
        )
        .bind(entry)
        .bind(job_type)
        .fetch_one(self.pool())
        .await?;
        Ok(r.try_get::<i64, _>(0)? > 0)
    }
}
