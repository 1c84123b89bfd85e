//! Analytics metrics, in the process's default Prometheus registry (the one
//! `/metrics` renders).

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, Histogram, IntCounter,
    IntCounterVec,
};

pub static BEACONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "vela_analytics_beacons_total",
        "Analytics beacons by result (accepted, invalid, unknown_entry, rate_limited, busy, failed)",
        &["result"]
    )
    .expect("metric registers once")
});

pub static EVENTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_analytics_events_total",
        "Player events accepted (durably stored)"
    )
    .expect("metric registers once")
});

pub static COMMIT_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "vela_analytics_commit_seconds",
        "Time of one group commit of analytics events",
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
    )
    .expect("metric registers once")
});

pub static ETL_EVENTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_analytics_etl_events_total",
        "Raw events folded into views and rollups by the ETL"
    )
    .expect("metric registers once")
});

pub static ACCESS_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_analytics_access_dropped_total",
        "Origin access-log hits dropped because the log could not keep up"
    )
    .expect("metric registers once")
});

/// Registers every metric (so they show before their first event).
pub fn touch() {
    for r in [
        "accepted",
        "invalid",
        "unknown_entry",
        "rate_limited",
        "busy",
        "failed",
    ] {
        BEACONS.with_label_values(&[r]);
    }
    LazyLock::force(&EVENTS);
    LazyLock::force(&COMMIT_SECONDS);
    LazyLock::force(&ETL_EVENTS);
    LazyLock::force(&ACCESS_DROPPED);
}
