//! The origin's Prometheus metrics, in the default registry that `/metrics` exports.

use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    HistogramVec, IntCounter, IntCounterVec, IntGauge,
};

pub static LIVE_STREAMS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("vela_live_streams", "Live streams being packaged")
        .expect("metric registers once")
});

pub static SEGMENTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_segments_total",
        "Media segments completed, all renditions"
    )
    .expect("metric registers once")
});

pub static PARTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_parts_total",
        "Low-latency parts written, all renditions"
    )
    .expect("metric registers once")
});

pub static PACKAGER_LAGGED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_packager_lagged_total",
        "Times a packager fell behind its stream and resynchronised"
    )
    .expect("metric registers once")
});

pub static DVR_SPOOLED_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_dvr_spooled_bytes_total",
        "Live segment bytes moved from memory to the DVR spool on disk"
    )
    .expect("metric registers once")
});

pub static DVR_SPOOL_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_dvr_spool_errors_total",
        "Failed DVR spool writes and reads (a segment not spooled stays in memory)"
    )
    .expect("metric registers once")
});

pub static DVR_SPOOL_READS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_dvr_spool_reads_total",
        "Live segments read back from the DVR spool"
    )
    .expect("metric registers once")
});

pub static DVR_CACHE_HITS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_dvr_cache_hits_total",
        "Spooled DVR segments served from the segment cache instead of a file read"
    )
    .expect("metric registers once")
});

pub static DVR_CACHE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "vela_dvr_cache_bytes",
        "Bytes of spooled DVR segments held by the segment cache"
    )
    .expect("metric registers once")
});

pub static DVR_MEMORY_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "vela_dvr_memory_bytes",
        "Live media bytes held in memory by the packagers, all streams"
    )
    .expect("metric registers once")
});

pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "vela_http_requests_total",
        "HTTP requests by route and status",
        &["route", "status"]
    )
    .expect("metric registers once")
});

pub static HTTP_BYTES_OUT: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_http_bytes_out_total",
        "Media and manifest bytes sent by the origin"
    )
    .expect("metric registers once")
});

pub static HTTP_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "vela_http_request_duration_seconds",
        "Time to the response head, by route (includes blocking-reload waits)",
        &["route"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("metric registers once")
});

/// Text exposition of every metric in the default registry.
pub fn render() -> String {
    let encoder = prometheus::TextEncoder::new();
    encoder
        .encode_to_string(&prometheus::gather())
        .unwrap_or_default()
}

// Recording (live-to-VOD), `crate::record`.

pub static RECORDINGS_ACTIVE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("vela_recordings_active", "Recording pieces being written")
        .expect("metric registers once")
});
pub static RECORDINGS_COMPLETED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_recordings_completed_total",
        "Recording pieces that became media entries' content"
    )
    .expect("metric registers once")
});
pub static RECORDINGS_FAILED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_recordings_failed_total",
        "Recording pieces that could not become content"
    )
    .expect("metric registers once")
});
pub static RECORDING_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_recording_bytes_total",
        "Bytes of media written to recordings"
    )
    .expect("metric registers once")
});
pub static RECORDING_WRITE_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_recording_write_errors_total",
        "Recording pieces stopped by a local write error (disk full, I/O error)"
    )
    .expect("metric registers once")
});
pub static RECORDING_LAGGED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_recording_lagged_total",
        "Times a recorder fell behind its stream (a gap in the recording)"
    )
    .expect("metric registers once")
});

// Origin cluster, `crate::cluster`.

pub static CLUSTER_PULLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "vela_cluster_pulls_total",
        "Requests for streams held by another cluster node, by how they were served (upstream: a request to the peer; collapsed: joined one in flight; cache: pulled media kept here)",
        &["served"]
    )
    .expect("metric registers once")
});
pub static CLUSTER_PULL_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "vela_cluster_pull_errors_total",
        "Failed pulls from cluster peers and directory reads, by cause",
        &["cause"]
    )
    .expect("metric registers once")
});
pub static CLUSTER_PEER_REQUESTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_cluster_peer_requests_total",
        "Requests served to other cluster nodes (signed pulls)"
    )
    .expect("metric registers once")
});
pub static CLUSTER_AUTH_REFUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "vela_cluster_auth_refused_total",
        "Requests refused for a bad cluster signature"
    )
    .expect("metric registers once")
});
