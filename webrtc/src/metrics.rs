//! Prometheus metrics of the WebRTC listener, registered in the default
//! registry on first use. Publishes also count in the RTMP ingest's shared
//! `vela_publishers` gauge and `vela_publish_refused_total` counter (refusals
//! are refusals whatever the protocol), so dashboards see every publisher.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

fn registered<C: prometheus::core::Collector + Clone + 'static>(name: &str, c: C) -> C {
    if let Err(e) = prometheus::default_registry().register(Box::new(c.clone())) {
        tracing::warn!(metric = name, error = %e, "metric not registered");
    }
    c
}

/// Open WebRTC sessions, by state (`connecting`: ICE/DTLS not done yet; `connected`).
pub static SESSIONS: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    let g = prometheus::IntGaugeVec::new(
        Opts::new("vela_webrtc_sessions", "Open WebRTC sessions by state"),
        &["state"],
    )
    .expect("valid metric");
    registered("vela_webrtc_sessions", g)
});

/// Ended WebRTC sessions, by why (`delete`, `ice_timeout`, `media_timeout`,
/// `disconnected`, `failed`, `shutdown`).
pub static SESSIONS_ENDED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new(
            "vela_webrtc_sessions_ended_total",
            "Ended WebRTC sessions by cause",
        ),
        &["cause"],
    )
    .expect("valid metric");
    registered("vela_webrtc_sessions_ended_total", c)
});

/// WHIP/WHEP requests refused before a session existed, by reason
/// (`busy`, `bad_sdp`, `no_codec`, `content_type`, ...).
pub static REQUESTS_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new(
            "vela_webrtc_requests_refused_total",
            "WHIP requests refused before a session was made",
        ),
        &["reason"],
    )
    .expect("valid metric");
    registered("vela_webrtc_requests_refused_total", c)
});

/// UDP datagrams received on the WebRTC port.
pub static DATAGRAMS_IN: LazyLock<IntCounter> = LazyLock::new(|| {
    let c = IntCounter::new(
        "vela_webrtc_datagrams_received_total",
        "UDP datagrams received on the WebRTC port",
    )
    .expect("valid metric");
    registered("vela_webrtc_datagrams_received_total", c)
});

/// Datagrams that no session took (unknown source, not STUN for a session, unparseable).
pub static DATAGRAMS_UNMATCHED: LazyLock<IntCounter> = LazyLock::new(|| {
    let c = IntCounter::new(
        "vela_webrtc_datagrams_unmatched_total",
        "UDP datagrams on the WebRTC port that no session took",
    )
    .expect("valid metric");
    registered("vela_webrtc_datagrams_unmatched_total", c)
});

/// Bytes received on the WebRTC port.
pub static BYTES_IN: LazyLock<IntCounter> = LazyLock::new(|| {
    let c = IntCounter::new(
        "vela_webrtc_received_bytes_total",
        "Bytes received on the WebRTC port",
    )
    .expect("valid metric");
    registered("vela_webrtc_received_bytes_total", c)
});

/// Video pictures received from WHIP publishers and dropped, by why
/// (`bad`: not decodable H.264; `waiting`: before a keyframe after a gap).
pub static PICTURES_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new(
            "vela_webrtc_pictures_dropped_total",
            "WHIP video pictures dropped",
        ),
        &["why"],
    )
    .expect("valid metric");
    registered("vela_webrtc_pictures_dropped_total", c)
});

/// Keyframe requests (PLI) sent to WHIP publishers.
pub static KEYFRAME_REQUESTS: LazyLock<IntCounter> = LazyLock::new(|| {
    let c = IntCounter::new(
        "vela_webrtc_keyframe_requests_total",
        "Keyframe requests (PLI) sent to WHIP publishers",
    )
    .expect("valid metric");
    registered("vela_webrtc_keyframe_requests_total", c)
});

/// The `connecting` and `connected` gauges.
pub fn connecting() -> IntGauge {
    SESSIONS.with_label_values(&["connecting"])
}

pub fn connected() -> IntGauge {
    SESSIONS.with_label_values(&["connected"])
}
