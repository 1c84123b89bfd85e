//! Prometheus metrics of the RTMP ingest, registered in the default registry.
//!
//! Registration happens on first use. Should another crate of the process
//! already have registered a metric of the same name, this one keeps working
//! unregistered (and says so in the log) rather than panicking.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

fn registered<C: prometheus::core::Collector + Clone + 'static>(name: &str, c: C) -> C {
    if let Err(e) = prometheus::default_registry().register(Box::new(c.clone())) {
        tracing::warn!(metric = name, error = %e, "metric not registered");
    }
    c
}

/// Open RTMP/RTMPS connections.
pub static RTMP_CONNECTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    let g = IntGauge::new("vela_rtmp_connections", "Open RTMP and RTMPS connections")
        .expect("valid metric");
    registered("vela_rtmp_connections", g)
});

/// Streams currently published over RTMP.
pub static PUBLISHERS: LazyLock<IntGauge> = LazyLock::new(|| {
    let g = IntGauge::new("vela_publishers", "Streams currently being published")
        .expect("valid metric");
    registered("vela_publishers", g)
});

/// Bytes received from publishers.
pub static INGEST_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    let c = IntCounter::new("vela_ingest_bytes_total", "Bytes received from publishers")
        .expect("valid metric");
    registered("vela_ingest_bytes_total", c)
});

/// Refused publishes, by reason (`bad_key`, `unknown_key`, `already_publishing`, `app`, ...).
pub static PUBLISH_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new("vela_publish_refused_total", "Refused publish requests"),
        &["reason"],
    )
    .expect("valid metric");
    registered("vela_publish_refused_total", c)
});

/// RTMP sessions that ended with an error (protocol errors, timeouts, refusals).
pub static SESSIONS_FAILED: LazyLock<IntCounter> = LazyLock::new(|| {
    let c = IntCounter::new(
        "vela_rtmp_sessions_failed_total",
        "RTMP sessions that ended with an error",
    )
    .expect("valid metric");
    registered("vela_rtmp_sessions_failed_total", c)
});
