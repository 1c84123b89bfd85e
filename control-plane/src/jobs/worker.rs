//! The worker runtime: per job type, `concurrency` loops that claim a job, run its
//! handler in a task while a heartbeat extends the lease (and writes progress), and
//! record the outcome. A heartbeat that finds the attempt no longer ours (cancelled,
//! or reclaimed after a stall) aborts the handler.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{
    backoff, metrics, now_ms, JobContext, JobError, JobHandler, JobRow, JobsConfig, Outcome,
};
use crate::ControlPlane;

/// Running workers; dropping it does not stop them, [`Workers::stop`] does.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// This process's worker id (`HOST-PID-RANDOM`).
    pub id: String,
}

impl Workers {
    /// Stops claiming, and waits up to `grace` for running jobs (the rest are
    /// reclaimed by another worker when their lease expires).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        let _ = tokio::time::timeout(grace, all).await;
    }
}

impl ControlPlane {
    /// Starts this process's workers: the built-in job types plus `extra` handlers.
    pub fn start_workers(
        &self,
        cfg: JobsConfig,
        extra: HashMap<String, Arc<dyn JobHandler>>,
    ) -> Workers {
        self.inner
            .jobs
            .max_attempts
            .store(cfg.max_attempts.max(1), Ordering::Relaxed);
        let mut handlers: HashMap<String, Arc<dyn JobHandler>> = HashMap::new();
        handlers.insert(
            super::IMPORT.into(),
            Arc::new(super::import::ImportHandler {
                limits: cfg.import.clone(),
            }),
        );
        handlers.insert(super::NOOP.into(), Arc::new(Noop));
        handlers.insert(
            super::notify::NOTIFY.into(),
            Arc::new(super::notify::NotifyHandler),
        );
        handlers.extend(extra);
        let id = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            crate::auth::random_hex(3)
        );
        let (stop, stop_rx) = watch::channel(false);
        let cfg = Arc::new(cfg);
        let mut tasks = Vec::new();
        for (job_type, handler) in handlers {
            let n = cfg.concurrency.get(&job_type).copied().unwrap_or(1);
            for _ in 0..n {
                tasks.push(tokio::spawn(worker_loop(
                    self.clone(),
                    cfg.clone(),
                    id.clone(),
                    job_type.clone(),
                    handler.clone(),
                    stop_rx.clone(),
                )));
            }
        }
        tasks.push(tokio::spawn(metrics::sample_counts(self.clone(), stop_rx)));
        tracing::info!(worker = %id, "batch job workers started");
        Workers { stop, tasks, id }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().chars().take(32).collect())
        .filter(|h: &String| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

async fn worker_loop(
    cp: ControlPlane,
    cfg: Arc<JobsConfig>,
    worker: String,
    job_type: String,
    handler: Arc<dyn JobHandler>,
    mut stop: watch::Receiver<bool>,
) {
    let lease_ms = cfg.lease.as_millis() as i64;
    let wake = &cp.inner.jobs.wake;
    while !*stop.borrow() {
        // Registered before the claim, so an enqueue between the two still wakes us.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match cp
            .inner
            .db
            .claim_job(&job_type, &worker, now_ms(), lease_ms)
            .await
        {
            Ok(Some(job)) => {
                run_job(&cp, &cfg, &worker, job, handler.clone()).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(job_type, error = %e, "cannot claim a job");
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(cfg.poll) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn run_job(
    cp: &ControlPlane,
    cfg: &JobsConfig,
    worker: &str,
    job: JobRow,
    handler: Arc<dyn JobHandler>,
) {
    let (id, attempt, job_type) = (job.id, job.attempts, job.job_type.clone());
    let started = std::time::Instant::now();
    if job.attempts == 1 {
        let waited = (job.started_at.unwrap_or(job.run_at) - job.created_at).max(0);
        metrics::START_DELAY
            .with_label_values(&[job_type.as_str()])
            .observe(waited as f64 / 1000.0);
    }
    if job.attempts > job.max_attempts {
        // Only a job whose worker kept dying gets here (a lease that expired each time).
        let error = format!(
            "gave up after {} attempts (the worker running it stopped)",
            job.max_attempts
        );
        let ctx = JobContext {
            cp: cp.clone(),
            job: job.clone(),
            progress: Arc::new(AtomicU64::new(0)),
        };
        handler.gave_up(ctx, error.clone()).await;
        let outcome = Outcome::Failed {
            error,
            retry_at: None,
        };
        record(cp, worker, &job, &outcome).await;
        return;
    }
    tracing::info!(job = id, job_type, attempt, entry = ?job.entry_id, "job started");
    let progress = Arc::new(AtomicU64::new(job.progress.to_bits()));
    let ctx = JobContext {
        cp: cp.clone(),
        job: job.clone(),
        progress: progress.clone(),
    };
    let mut task = tokio::spawn(handler.run(ctx));
    let lease_ms = cfg.lease.as_millis() as i64;
    let mut beat = tokio::time::interval((cfg.lease / 3).max(Duration::from_millis(50)));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    let result = loop {
        tokio::select! {
            r = &mut task => break Some(r),
            _ = beat.tick() => {
                let p = f64::from_bits(progress.load(Ordering::Relaxed));
                match cp.inner.db.heartbeat_job(id, worker, attempt, p, now_ms(), lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // Cancelled, or our lease passed and another worker has it.
                        task.abort();
                        tracing::info!(job = id, job_type, "job stopped: cancelled or taken over");
                        break None;
                    }
                    Err(e) => tracing::warn!(job = id, error = %e, "job heartbeat failed"),
                }
            }
        }
    };
    let Some(result) = result else {
        metrics::FINISHED
            .with_label_values(&[job_type.as_str(), "lost"])
            .inc();
        return;
    };
    let outcome = match result {
        Ok(Ok(v)) => Outcome::Done(v),
        Ok(Err(e)) => failed(cfg, &job, e),
        Err(join) => failed(
            cfg,
            &job,
            JobError::Transient(if join.is_panic() {
                "the job's handler panicked".into()
            } else {
                "the job's handler was stopped".into()
            }),
        ),
    };
    metrics::DURATION
        .with_label_values(&[job_type.as_str()])
        .observe(started.elapsed().as_secs_f64());
    record(cp, worker, &job, &outcome).await;
}

/// The outcome of a failed attempt: retried after the backoff while attempts remain.
pub(crate) fn failed(cfg: &JobsConfig, job: &JobRow, e: JobError) -> Outcome {
    match e {
        JobError::Transient(msg) if job.attempts < job.max_attempts => {
            let delay = backoff(job.attempts, cfg.backoff_base, cfg.backoff_max);
            Outcome::Failed {
                error: msg,
                retry_at: Some(now_ms() + delay.as_millis() as i64),
            }
        }
        JobError::Transient(msg) | JobError::Permanent(msg) => Outcome::Failed {
            error: msg,
            retry_at: None,
        },
    }
}

async fn record(cp: &ControlPlane, worker: &str, job: &JobRow, outcome: &Outcome) {
    let label = match outcome {
        Outcome::Done(_) => "done",
        Outcome::Failed {
            retry_at: Some(_), ..
        } => "retried",
        Outcome::Failed { retry_at: None, .. } => "failed",
    };
    // The outcome is retried for a while: losing it to a database restart would
    // run the job again after its lease.
    for wait in [0u64, 200, 1000, 3000] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        match cp
            .inner
            .db
            .finish_job(job.id, worker, job.attempts, outcome, now_ms())
            .await
        {
            Ok(true) => {
                metrics::FINISHED
                    .with_label_values(&[job.job_type.as_str(), label])
                    .inc();
                match outcome {
                    Outcome::Failed { error, .. } => {
                        tracing::warn!(job = job.id, job_type = %job.job_type, outcome = label, error = %error, "job attempt failed")
                    }
                    Outcome::Done(_) => {
                        tracing::info!(job = job.id, job_type = %job.job_type, "job done")
                    }
                }
                return;
            }
            Ok(false) => {
                metrics::FINISHED
                    .with_label_values(&[job.job_type.as_str(), "lost"])
                    .inc();
                tracing::info!(job = job.id, "job outcome dropped: cancelled or taken over");
                return;
            }
            Err(e) => tracing::warn!(job = job.id, error = %e, "cannot record a job's outcome"),
        }
    }
}

/// [`super::NOOP`]: waits `sleep_ms` (capped at a minute), then reports its attempt.
struct Noop;

impl JobHandler for Noop {
    fn run(
        &self,
        ctx: JobContext,
    ) -> futures_util::future::BoxFuture<'static, Result<serde_json::Value, JobError>> {
        Box::pin(async move {
            let ms = ctx
                .job
                .payload
                .get("sleep_ms")
                .and_then(|v| v.as_u64())
                .unwrap_or(0)
                .min(60_000);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok(serde_json::json!({ "attempt": ctx.job.attempts }))
        })
    }
}
