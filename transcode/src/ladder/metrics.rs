//! The encoder's Prometheus metrics, in the default registry that `/metrics` exports.

use std::sync::LazyLock;

use prometheus::{register_int_counter, register_int_counter_vec, register_int_gauge};
use prometheus::{IntCounter, IntCounterVec, IntGauge};

pub static LADDERS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("vela_encode_ladders", "Live ABR ladders being encoded")
        .expect("metric registers once")
});

pub static FALLBACKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "vela_encode_fallbacks_total",
        "Streams with a ladder left passthrough, by reason (budget, codec, start)",
        &["reason"]
    )
    .expect("metric registers once")
});

pub static FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_encode_failures_total",
        "Ladder pipelines that failed to start or died"
    )
    .expect("metric registers once")
});

pub static RESTARTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_encode_restarts_total",
        "Ladder pipelines started again after a failure"
    )
    .expect("metric registers once")
});
