//! Media analytics: collection, warehouse (ETL) and reports.
//!
//! - Collection: players post batches of events to `POST /api/v1/analytics/events`
//!   ([`beacon`] parses and checks them). The partner is the entry's, looked
//!   up by the server (a small TTL cache in front of the database), never the
//!   client's word. Rows go through a bounded channel to one writer task that
//!   group-commits them ([`store`]); the handler answers once they are
//!   durable, or 503 when the queue is full. Each client (its
//!   `X-Forwarded-For` address when a proxy sets one, else its session) has
//!   a token bucket.
//! - The origin's access log ([`access`]): a middleware notes every manifest
//!   and segment request of `/live/` and `/vod/` with a non-blocking
//!   `try_send`; a task folds them per playback session and upserts them
//!   every few seconds, so minutes served are known for players without the
//!   plugin.
//! - Warehouse: a periodic ETL ([`etl`]) folds raw events into view facts and
//!   hourly rollups, in the same database (SQLite embedded, PostgreSQL for
//!   clusters); retention deletes old raw events and, later, old rollups.
//! - Reports ([`reports`], served by [`api`]): partner-scoped totals, time
//!   series, breakdowns, top entries, concurrency, CSV.

pub mod access;
pub mod api;
pub mod beacon;
pub mod etl;
pub mod fold;
pub mod metrics;
pub mod reports;
pub mod store;
pub mod ua;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::ControlPlane;

/// Settings of [`Analytics::start`].
#[derive(Debug, Clone)]
pub struct AnalyticsConfig {
    /// Time between ETL passes.
    pub etl_interval: Duration,
    /// Raw events older than this are deleted (once folded).
    pub raw_retention: Duration,
    /// Facts and rollups older than this are deleted.
    pub rollup_retention: Duration,
    /// Beacons per second per client, and the burst allowed.
    pub rate_per_s: f64,
    pub burst: f64,
    /// A header a CDN or proxy sets to the viewer's country (`CF-IPCountry`).
    pub country_header: Option<http::HeaderName>,
    /// Queued write jobs (beacons) before 503.
    pub queue: usize,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            etl_interval: Duration::from_secs(10),
            raw_retention: Duration::from_secs(30 * 86_400),
            rollup_retention: Duration::from_secs(400 * 86_400),
            rate_per_s: 20.0,
            burst: 60.0,
            country_header: None,
            queue: 4096,
        }
    }
}

/// The analytics service. Cheap to clone.
#[derive(Clone)]
pub struct Analytics {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cp: ControlPlane,
    pub(crate) cfg: AnalyticsConfig,
    pub(crate) writer: mpsc::Sender<store::WriteJob>,
    pub(crate) limiter: Mutex<RateLimiter>,
    /// entry id -> (its partner or none, when looked up).
    entries: Mutex<HashMap<String, (Option<i64>, Instant)>>,
    pub(crate) access: access::AccessLog,
    /// Serialises ETL passes on this node.
    etl_lock: tokio::sync::Mutex<()>,
}

const ENTRY_TTL: Duration = Duration::from_secs(30);
const ENTRY_CACHE_MAX: usize = 100_000;

impl Analytics {
    /// Starts the writer, the access log and the periodic ETL on the current
    /// runtime; they stop when the last clone is dropped.
    pub fn start(cp: ControlPlane, cfg: AnalyticsConfig) -> Analytics {
        metrics::touch();
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        tokio::spawn(store::run_writer(cp.db().clone(), rx));
        let access = access::AccessLog::start(cp.clone());
        let an = Analytics {
            inner: Arc::new(Inner {
                limiter: Mutex::new(RateLimiter::new(cfg.rate_per_s, cfg.burst)),
                cp,
                cfg,
                writer: tx,
                entries: Mutex::new(HashMap::new()),
                access,
                etl_lock: tokio::sync::Mutex::new(()),
            }),
        };
        an.spawn_etl();
        an
    }

    fn spawn_etl(&self) {
        let weak = Arc::downgrade(&self.inner);
        let every = self.inner.cfg.etl_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut passes: u64 = 0;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let an = Analytics { inner };
                if let Err(e) = an.run_etl().await {
                    tracing::warn!(error = %e, "analytics ETL pass failed");
                }
                passes += 1;
                if passes % 60 == 1 {
                    if let Err(e) = an.run_retention().await {
                        tracing::warn!(error = %e, "analytics retention failed");
                    }
                }
            }
        });
    }

    /// Runs the ETL until the raw events are caught up (also on demand).
    pub async fn run_etl(&self) -> Result<etl::PassReport, crate::DbError> {
        let _g = self.inner.etl_lock.lock().await;
        self.inner.access.flush().await;
        let r = etl::run_until_caught_up(self.inner.cp.db()).await?;
        metrics::ETL_EVENTS.inc_by(r.events as u64);
        Ok(r)
    }

    async fn run_retention(&self) -> Result<u64, crate::DbError> {
        let now = now_ms();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        etl::retention(
            self.inner.cp.db(),
            now.saturating_sub(ms(self.inner.cfg.raw_retention)),
            now.saturating_sub(ms(self.inner.cfg.rollup_retention)),
        )
        .await
    }

    /// The partner of an entry, or `None` for no such entry.
    pub(crate) async fn partner_of(&self, entry: &str) -> Result<Option<i64>, crate::DbError> {
        if let Ok(m) = self.inner.entries.lock() {
            if let Some((p, at)) = m.get(entry) {
                if at.elapsed() < ENTRY_TTL {
                    return Ok(*p);
                }
            }
        }
        let p = self
            .inner
            .cp
            .db()
            .get_entry_unscoped(entry)
            .await?
            .map(|e| e.partner_id);
        if let Ok(mut m) = self.inner.entries.lock() {
            if m.len() >= ENTRY_CACHE_MAX {
                m.clear();
            }
            m.insert(entry.to_string(), (p, Instant::now()));
        }
        Ok(p)
    }

    /// The `/api/v1/analytics` routes and `/sdk/vela-analytics.js`.
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// The origin's access-log middleware (layer it over the media routes).
    pub fn access_log(&self) -> access::AccessLog {
        self.inner.access.clone()
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Token buckets per client key (bounded: the map is cleared when full, which
/// at worst gives clients a fresh burst).
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<String, (f64, Instant)>,
}

const LIMITER_MAX: usize = 100_000;

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `key` at `now`; false when the bucket is empty.
    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        if self.buckets.len() >= LIMITER_MAX && !self.buckets.contains_key(key) {
            self.buckets.clear();
        }
        let (rate, burst) = (self.rate, self.burst);
        let (tokens, at) = self.buckets.entry(key.to_string()).or_insert((burst, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * rate;
        *tokens = (*tokens + refill).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_refills() {
        let mut l = RateLimiter::new(2.0, 3.0);
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow("a", t0)));
        assert!(!l.allow("a", t0));
        assert!(l.allow("b", t0), "buckets are per client");
        assert!(l.allow("a", t0 + Duration::from_millis(500)));
        assert!(!l.allow("a", t0 + Duration::from_millis(500)));
    }
}

/// Entry points for fuzzing (`fuzz/fuzz_targets/analytics_beacon.rs`), also
/// run on stable by this module's tests.
pub mod fuzzing {
    /// Parses `data` as a beacon, a user agent and a media path: none may panic.
    pub fn beacon(data: &[u8]) {
        if let Ok(b) = super::beacon::parse(data) {
            assert!(!b.events.is_empty() && b.events.len() <= super::beacon::MAX_EVENTS);
        }
        let s = String::from_utf8_lossy(data);
        let _ = super::ua::classify(&s);
        let _ = super::access::classify(&s);
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn mutated_beacons_do_not_panic() {
            let seed = br#"{"entry_id":"0_abcd1234","session_id":"s","events":[{"type":"play","seq":0,"t":1764000000000,"position":1.5,"detail":"x"}]}"#;
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for _ in 0..5000 {
                let mut v = seed.to_vec();
                for _ in 0..(x % 6) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x as usize) % v.len();
                    v[i] = (x >> 32) as u8;
                }
                super::beacon(&v);
                x = x.wrapping_add(1);
            }
        }
    }
}
