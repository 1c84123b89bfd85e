//! The listeners' limits from `[limits]`, checked against the process's
//! file-descriptor limit (raised to the hard limit first), and said in the log.

use vela_ingest::server::IngestLimits;
use vela_ingest::session::SessionConfig;
use vela_net::http::HttpLimits;
use vela_net::limits::AdmissionLimits;

use crate::config::LimitsConfig;

/// Descriptors kept for everything that is not a client connection
/// (database, search index, segments being written, logs).
const RESERVED_FDS: u64 = 1024;

/// Raises the descriptor limit, fits the connection caps into it, and logs
/// the limits in force.
pub fn listener_limits(c: &LimitsConfig) -> (IngestLimits, HttpLimits) {
    let secs = LimitsConfig::secs;
    let (mut rtmp_max, mut http_max) = (c.max_rtmp_connections, c.max_http_connections);
    match vela_net::fdlimit::raise_nofile_limit() {
        Ok(fd) => {
            let usable = fd.soft.saturating_sub(RESERVED_FDS).max(64);
            let wanted = (rtmp_max + http_max) as u64;
            if wanted > usable {
                // Scale both down: running out of descriptors stops every listener at once.
                rtmp_max = ((rtmp_max as u64 * usable / wanted) as usize).max(1);
                http_max = ((http_max as u64 * usable / wanted) as usize).max(1);
                tracing::warn!(
                    fd_limit = fd.soft,
                    configured_rtmp = c.max_rtmp_connections,
                    configured_http = c.max_http_connections,
                    rtmp_max,
                    http_max,
                    "the file-descriptor limit is below the connection limits; lowering them to fit"
                );
            }
            tracing::info!(
                fd_soft_before = fd.before,
                fd_soft = fd.soft,
                fd_hard = fd
                    .hard
                    .map_or_else(|| "unlimited".to_string(), |h| h.to_string()),
                "file-descriptor limit"
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the file-descriptor limit"),
    }
    let rtmp = IngestLimits {
        max_connections: rtmp_max,
        per_address: c.rtmp_per_address,
        pre_publish: c.rtmp_pre_publish,
        handshake_timeout: secs(c.rtmp_handshake_timeout_s),
        idle_timeout: secs(c.rtmp_idle_timeout_s),
        publish_timeout: secs(c.rtmp_publish_timeout_s),
        session: SessionConfig {
            media_timeout: secs(c.rtmp_media_timeout_s),
            ..SessionConfig::default()
        },
        ..IngestLimits::default()
    };
    let http = HttpLimits {
        admission: AdmissionLimits {
            max_connections: http_max,
            per_address: c.http_per_address,
            pre_auth: c.http_pre_request,
        },
        header_timeout: secs(c.http_header_timeout_s),
        idle_timeout: secs(c.http_idle_timeout_s),
        retry_after_s: c.retry_after_s,
    };
    tracing::info!(
        max = rtmp.max_connections,
        per_address = rtmp.per_address,
        pre_publish = rtmp.pre_publish,
        handshake_s = c.rtmp_handshake_timeout_s,
        idle_s = c.rtmp_idle_timeout_s,
        publish_s = c.rtmp_publish_timeout_s,
        media_s = c.rtmp_media_timeout_s,
        "RTMP/RTMPS connection limits"
    );
    tracing::info!(
        max = http.admission.max_connections,
        per_address = http.admission.per_address,
        pre_request = http.admission.pre_auth,
        header_s = c.http_header_timeout_s,
        idle_s = c.http_idle_timeout_s,
        retry_after_s = c.retry_after_s,
        "HTTP connection limits"
    );
    (rtmp, http)
}
