//! Batch jobs: a durable queue in the operational database and the workers that run it.
//!
//! - [`queue`]: the jobs table and its atomic claim / lease / fenced completion
//!   (every rule takes `now`, so it is tested on simulated time).
//! - [`worker`]: the runtime: per job type, a number of loops that claim a job, run its
//!   [`JobHandler`] while extending the lease, and record the outcome (retried with
//!   exponential backoff up to the job's attempt limit).
//! - [`api`]: `GET /api/v1/jobs`, `GET /api/v1/jobs/ID`, cancel, retry, and
//!   `POST /api/v1/entries/ID/import`.
//! - [`import`] and [`fetch`]: the import job: an HTTP(S) download streamed into the
//!   media store, with the outbound guard (no loopback, link-local or private addresses,
//!   checked on every resolved address and every redirect, unless allowed).
//!
//! Handlers must be idempotent: a job whose worker died is run again from the start
//! (an import run twice leaves one content: the second commit replaces the first).

pub mod api;
pub mod fetch;
pub mod import;
pub mod metrics;
pub mod notify;
pub mod queue;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ControlPlane;
pub use queue::{JobFilter, JobRow, NewJob, Outcome};

pub(crate) const JOB_COLS: &str = "id, partner_id, entry_id, job_type, payload, status, attempts, \
    max_attempts, progress, run_at, lease_until, worker, error, result, created_at, started_at, \
    finished_at, updated_at";

/// The import job type.
pub const IMPORT: &str = "import";
/// A job that does nothing but wait `sleep_ms` (at most a minute): measures the queue
/// itself and checks a deployment's workers end to end.
pub const NOOP: &str = "noop";

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for its first attempt.
    Pending,
    /// A worker runs it.
    Running,
    Done,
    /// Ended without success (see `error`).
    Failed,
    /// An attempt failed; the next one waits until `run_at`.
    Retried,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Retried => "retried",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            "retried" => JobStatus::Retried,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    pub const ALL: [JobStatus; 6] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Failed,
        JobStatus::Retried,
        JobStatus::Cancelled,
    ];
}

/// Outbound requests a user can aim (imports, webhooks).
#[derive(Debug, Clone, Default)]
pub struct OutboundConfig {
    /// Allow loopback, link-local and private addresses (tests, private deployments).
    pub allow_private: bool,
}

/// The workers' configuration (`[jobs]` in the config file).
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Concurrent jobs per type on this process (0: this process runs none of that type).
    pub concurrency: BTreeMap<String, usize>,
    /// How often idle workers look for jobs created by other processes.
    pub poll: Duration,
    /// How long a claim lasts without a heartbeat (a dead worker's jobs wait this long).
    pub lease: Duration,
    /// Attempts of a job before it fails for good.
    pub max_attempts: i64,
    /// The first retry's delay; doubled at each further attempt, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Import downloads: size limit, timeouts, redirects.
    pub import: import::ImportLimits,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            concurrency: [
                (IMPORT.to_string(), 2),
                (NOOP.to_string(), 4),
                (notify::NOTIFY.to_string(), 4),
            ]
            .into_iter()
            .collect(),
            poll: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            max_attempts: 3,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            import: import::ImportLimits::default(),
        }
    }
}

/// The delay before attempt `attempts + 1` after `attempts` failed ones:
/// `base * 2^(attempts-1)`, at most `max`.
pub fn backoff(attempts: i64, base: Duration, max: Duration) -> Duration {
    let exp = attempts.saturating_sub(1).clamp(0, 30) as u32;
    base.saturating_mul(1u32 << exp).min(max)
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (network, storage, database).
    #[error("{0}")]
    Transient(String),
    /// Another attempt would fail the same way (bad input, refused address).
    #[error("{0}")]
    Permanent(String),
}

/// What a handler gets: the job and a way to report progress.
pub struct JobContext {
    pub cp: ControlPlane,
    pub job: JobRow,
    progress: Arc<AtomicU64>,
}

impl JobContext {
    /// Progress from 0 to 1, written to the job at the next heartbeat.
    pub fn set_progress(&self, p: f64) {
        self.progress
            .store(p.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    /// Whether a failure now ends the job (no attempt follows).
    pub fn last_attempt(&self) -> bool {
        self.job.attempts >= self.job.max_attempts
    }
}

/// Runs one type of job. Must be idempotent (see the module docs).
pub trait JobHandler: Send + Sync + 'static {
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<serde_json::Value, JobError>>;

    /// The job failed for good without a last run (its workers kept dying): undo what
    /// its runs left half-done.
    fn gave_up(&self, _ctx: JobContext, _reason: String) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Shared between the API and the local workers.
#[derive(Default)]
pub(crate) struct JobsState {
    /// Wakes this process's idle workers when a job is enqueued here.
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) outbound: RwLock<OutboundConfig>,
    pub(crate) max_attempts: std::sync::atomic::AtomicI64,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl ControlPlane {
    /// Sets the outbound policy (before serving requests).
    pub fn set_outbound(&self, o: OutboundConfig) {
        if let Ok(mut w) = self.inner.jobs.outbound.write() {
            *w = o;
        }
    }

    pub(crate) fn outbound(&self) -> OutboundConfig {
        self.inner
            .jobs
            .outbound
            .read()
            .map(|o| o.clone())
            .unwrap_or_default()
    }

    /// Adds a job and wakes this process's workers.
    pub async fn enqueue_job(
        &self,
        partner: i64,
        entry: Option<&str>,
        job_type: &str,
        payload: &serde_json::Value,
    ) -> Result<JobRow, crate::DbError> {
        let max = match self.inner.jobs.max_attempts.load(Ordering::Relaxed) {
            0 => JobsConfig::default().max_attempts,
            n => n,
        };
        let job = self
            .inner
            .db
            .enqueue_job(
                &NewJob {
                    partner_id: partner,
                    entry_id: entry,
                    job_type,
                    payload,
                    max_attempts: max,
                },
                now_ms(),
            )
            .await?;
        metrics::ENQUEUED.with_label_values(&[job_type]).inc();
        self.inner.jobs.wake.notify_waiters();
        Ok(job)
    }
}

#[cfg(test)]
mod tests;
