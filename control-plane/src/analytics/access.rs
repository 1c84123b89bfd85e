//! The origin's access log per playback session: which manifests and
//! segments a client fetched, from when to when. It knows minutes served
//! for every player, with or without the analytics plugin.
//!
//! The middleware does no I/O: it notes the hit with a `try_send` into a
//! bounded channel (a full channel drops the hit and counts it) and returns.
//! One task folds hits per (stream, session) in memory and upserts the
//! sessions every few seconds. A session is the client address, its user
//! agent and the stream, hashed.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::{mpsc, oneshot};

use crate::ControlPlane;

const QUEUE: usize = 16_384;
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Sessions kept in memory between flushes at most (more are flushed early).
const PENDING_MAX: usize = 50_000;

/// One request the origin answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub stream: String,
    pub session: String,
    pub at_ms: i64,
    pub segment: bool,
    pub bytes: i64,
}

/// What a media path is: its stream and whether it is a manifest.
pub fn classify(path: &str) -> Option<(&str, bool)> {
    let rest = path
        .strip_prefix("/live/")
        .or_else(|| path.strip_prefix("/vod/"))?;
    let (stream, file) = rest.split_once('/')?;
    if stream.is_empty() || stream.len() > 128 || file.is_empty() {
        return None;
    }
    let manifest = file.ends_with(".m3u8") || file.ends_with(".mpd") || file.ends_with("Manifest");
    Some((stream, !manifest))
}

fn session_of(ip: Option<std::net::IpAddr>, ua: &str, stream: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ip.hash(&mut h);
    ua.hash(&mut h);
    stream.hash(&mut h);
    format!("{:016x}", h.finish())
}

enum Cmd {
    Flush(oneshot::Sender<()>),
}

/// The access log's handle (cheap to clone).
#[derive(Clone)]
pub struct AccessLog {
    hits: mpsc::Sender<Hit>,
    cmds: mpsc::Sender<Cmd>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    pub(crate) fn start(cp: ControlPlane) -> AccessLog {
        let (hits, rx) = mpsc::channel(QUEUE);
        let (cmds, crx) = mpsc::channel(16);
        tokio::spawn(run(cp, rx, crx));
        AccessLog {
            hits,
            cmds,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Notes a hit without waiting.
    pub fn note(&self, hit: Hit) {
        if self.hits.try_send(hit).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            super::metrics::ACCESS_DROPPED.inc();
        }
    }

    /// Hits dropped because the log could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes what is pending now (the ETL calls it before a pass).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The middleware: layer it over the origin's routes.
pub async fn layer(State(log): State<AccessLog>, req: Request, next: Next) -> Response {
    let noted = classify(req.uri().path()).map(|(stream, segment)| {
        let ip = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let ua = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        (stream.to_string(), session_of(ip, ua, stream), segment)
    });
    let res = next.run(req).await;
    if let Some((stream, session, segment)) = noted {
        if res.status().is_success() {
            let bytes = res
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            log.note(Hit {
                stream,
                session,
                at_ms: super::now_ms(),
                segment,
                bytes,
            });
        }
    }
    res
}

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    first_ms: i64,
    last_ms: i64,
    requests: i64,
    segments: i64,
    bytes: i64,
}

async fn run(cp: ControlPlane, mut rx: mpsc::Receiver<Hit>, mut cmds: mpsc::Receiver<Cmd>) {
    let mut pending: HashMap<(String, String), Acc> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            hit = rx.recv() => {
                let Some(h) = hit else { break };
                let a = pending.entry((h.stream, h.session)).or_default();
                if a.requests == 0 {
                    a.first_ms = h.at_ms;
                }
                a.last_ms = a.last_ms.max(h.at_ms);
                a.requests += 1;
                a.segments += i64::from(h.segment);
                a.bytes += h.bytes;
                if pending.len() >= PENDING_MAX {
                    write(&cp, std::mem::take(&mut pending)).await;
                }
            }
            cmd = cmds.recv() => {
                // Take what is already queued first.
                while let Ok(h) = rx.try_recv() {
                    let a = pending.entry((h.stream, h.session)).or_default();
                    if a.requests == 0 {
                        a.first_ms = h.at_ms;
                    }
                    a.last_ms = a.last_ms.max(h.at_ms);
                    a.requests += 1;
                    a.segments += i64::from(h.segment);
                    a.bytes += h.bytes;
                }
                write(&cp, std::mem::take(&mut pending)).await;
                if let Some(Cmd::Flush(done)) = cmd {
                    let _ = done.send(());
                }
            }
            _ = tick.tick() => {
                if !pending.is_empty() {
                    write(&cp, std::mem::take(&mut pending)).await;
                }
            }
        }
    }
}

async fn write(cp: &ControlPlane, sessions: HashMap<(String, String), Acc>) {
    let mut partners: HashMap<String, i64> = HashMap::new();
    for ((stream, session), a) in sessions {
        let partner = match partners.get(&stream) {
            Some(p) => *p,
            None => {
                // Open-mode streams belong to no partner (0).
                let p = if crate::auth::is_entry_id(&stream) {
                    match cp.db().get_entry_unscoped(&stream).await {
                        Ok(Some(e)) => e.partner_id,
                        _ => 0,
                    }
                } else {
                    0
                };
                partners.insert(stream.clone(), p);
                p
            }
        };
        let r = sqlx::query(
            "INSERT INTO analytics_access (stream, session, partner_id, first_ms, last_ms, \
             requests, segments, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (stream, session) DO UPDATE SET \
             last_ms = CASE WHEN excluded.last_ms > analytics_access.last_ms \
             THEN excluded.last_ms ELSE analytics_access.last_ms END, \
             requests = analytics_access.requests + excluded.requests, \
             segments = analytics_access.segments + excluded.segments, \
             bytes = analytics_access.bytes + excluded.bytes",
        )
        .bind(&stream)
        .bind(&session)
        .bind(partner)
        .bind(a.first_ms)
        .bind(a.last_ms)
        .bind(a.requests)
        .bind(a.segments)
        .bind(a.bytes)
        .execute(cp.db().pool())
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, stream = %stream, "access log write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_media_paths() {
        assert_eq!(classify("/live/show/master.m3u8"), Some(("show", false)));
        assert_eq!(
            classify("/vod/0_abcd1234/manifest.mpd"),
            Some(("0_abcd1234", false))
        );
        assert_eq!(classify("/live/show/v0/12.m4s"), Some(("show", true)));
        assert_eq!(classify("/api/v1/entries"), None);
        assert_eq!(classify("/live/show"), None);
        let a = session_of(None, "ua", "s");
        assert_eq!(a, session_of(None, "ua", "s"));
        assert_ne!(a, session_of(None, "ua2", "s"));
    }
}
