//! Prometheus metrics of the listeners, in the default registry that
//! `/metrics` exports. Every series is labelled with the listener's name
//! (`http`, `rtmp`, `rtmps`, ...).
//!
//! Should another crate already have registered a metric of the same name,
//! this one keeps working unregistered (and says so in the log).

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

fn registered<C: prometheus::core::Collector + Clone + 'static>(name: &str, c: C) -> C {
    if let Err(e) = prometheus::default_registry().register(Box::new(c.clone())) {
        tracing::warn!(metric = name, error = %e, "metric not registered");
    }
    c
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(name, c)
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(name, g)
}

/// Connections refused at accept, by listener and reason (`total`,
/// `per_address`, `pre_auth`).
pub static REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "vela_connections_refused_total",
        "Connections refused at accept by a connection limit",
        &["listener", "reason"],
    )
});

/// Open connections, by listener.
pub static OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "vela_connections_open",
        "Open connections admitted by a listener",
        &["listener"],
    )
});

/// Open connections that have not authenticated, published or sent a first
/// request yet, by listener.
pub static PRE_AUTH: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "vela_connections_pre_auth",
        "Open connections that have not authenticated or sent a first request yet",
        &["listener"],
    )
});

/// Connections closed by a time limit, by listener and phase (`header`,
/// `handshake`, `idle`, `write`, `publish`, `media`).
pub static TIMED_OUT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "vela_connections_timed_out_total",
        "Connections closed by a time limit",
        &["listener", "phase"],
    )
});

/// Failed `accept` calls, by listener and kind (`fd_exhausted`, `other`).
pub static ACCEPT_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "vela_accept_errors_total",
        "Failed accept calls on a listener",
        &["listener", "kind"],
    )
});

/// Answers that the HTTP layer itself produced (not a handler), by status,
/// rewritten to the JSON error shape.
pub static HTTP_LAYER_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "vela_http_layer_errors_total",
        "Error answers produced by the HTTP layer itself (parse errors, timeouts, limits)",
        &["status"],
    )
});

/// Tasks alive in the tokio runtime (sampled every second by
/// [`spawn_runtime_sampler`]); a leak of per-connection tasks shows here.
pub static RUNTIME_TASKS: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    let g = prometheus::IntGauge::new(
        "vela_runtime_alive_tasks",
        "Tasks alive in the tokio runtime",
    )
    .expect("valid metric");
    registered("vela_runtime_alive_tasks", g)
});

/// Samples the runtime's task count into [`RUNTIME_TASKS`] every second.
pub fn spawn_runtime_sampler() {
    tokio::spawn(async {
        loop {
            let n = tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks();
            RUNTIME_TASKS.set(i64::try_from(n).unwrap_or(i64::MAX));
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
}

/// QUIC connection attempts answered with a Retry (address validation
/// under load), by listener.
pub static QUIC_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "vela_quic_retries_total",
        "QUIC connection attempts answered with a Retry to validate the client address",
        &["listener"],
    )
});

/// HTTP/1 keep-alive connections parked between requests (no hyper state
/// held), by listener.
pub static PARKED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "vela_http_keepalives_parked",
        "HTTP/1 keep-alive connections waiting for their next request without protocol state",
        &["listener"],
    )
});
