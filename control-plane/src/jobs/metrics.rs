//! The jobs' Prometheus metrics (served at `/metrics` from the default registry).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

use crate::ControlPlane;

fn registered<C: prometheus::core::Collector + Clone + 'static>(name: &str, c: C) -> C {
    if let Err(e) = prometheus::default_registry().register(Box::new(c.clone())) {
        tracing::warn!(metric = name, error = %e, "metric not registered");
    }
    c
}

pub static ENQUEUED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let n = "vela_jobs_enqueued_total";
    let c = IntCounterVec::new(Opts::new(n, "Jobs enqueued by this process"), &["type"])
        .expect("metric");
    registered(n, c)
});

/// Attempts ended here: `done`, `retried`, `failed`, or `lost` (cancelled or taken over).
pub static FINISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let n = "vela_job_attempts_total";
    let c = IntCounterVec::new(
        Opts::new(n, "Job attempts ended on this process, by outcome"),
        &["type", "outcome"],
    )
    .expect("metric");
    registered(n, c)
});

pub static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    let n = "vela_job_duration_seconds";
    let c = HistogramVec::new(
        HistogramOpts::new(n, "Duration of job attempts run on this process").buckets(vec![
            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0,
        ]),
        &["type"],
    )
    .expect("metric");
    registered(n, c)
});

pub static START_DELAY: LazyLock<HistogramVec> = LazyLock::new(|| {
    let n = "vela_job_start_delay_seconds";
    let c = HistogramVec::new(
        HistogramOpts::new(n, "From enqueue to the first attempt's start").buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
        ]),
        &["type"],
    )
    .expect("metric");
    registered(n, c)
});

/// Jobs in the database by type and status (queue depth: `pending` + `retried`).
pub static JOBS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    let n = "vela_jobs";
    let c = IntGaugeVec::new(
        Opts::new(n, "Jobs in the database by type and status"),
        &["type", "status"],
    )
    .expect("metric");
    registered(n, c)
});

/// Refreshes [`JOBS`] every 5 s until `stop`.
pub(crate) async fn sample_counts(cp: ControlPlane, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match cp.inner.db.job_counts().await {
            Ok(counts) => {
                JOBS.reset();
                for (t, s, n) in counts {
                    JOBS.with_label_values(&[&t, &s]).set(n);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot count jobs"),
        }
    }
}
