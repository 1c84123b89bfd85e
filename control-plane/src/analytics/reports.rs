//! Report queries over the warehouse: the hourly rollups for sums, the view
//! facts for unique viewers and concurrency, the raw events for "now".
//! Every query is scoped to one partner; filters are typed and columns come
//! from a fixed list, never from the request.

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use crate::db::Db;
use crate::error::DbError;

/// A dimension of the rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Player,
    Format,
    Device,
    Os,
    Browser,
    Country,
    Entry,
}

impl Dimension {
    fn column(self) -> &'static str {
        match self {
            Dimension::Player => "player",
            Dimension::Format => "format",
            Dimension::Device => "device",
            Dimension::Os => "os",
            Dimension::Browser => "browser",
            Dimension::Country => "country",
            Dimension::Entry => "entry_id",
        }
    }
}

/// Checked filters of a report.
#[derive(Debug, Clone)]
pub struct Filter {
    pub partner_id: i64,
    /// Unix ms, inclusive; rounded down to the hour for rollup queries.
    pub from_ms: i64,
    /// Unix ms, exclusive.
    pub to_ms: i64,
    pub entry_id: Option<String>,
    /// Only rows whose `dimension` equals the value.
    pub only: Option<(Dimension, String)>,
}

impl Filter {
    /// ` AND …` clauses and their string binds, starting at `$first`.
    fn clauses(&self, first: usize) -> (String, Vec<String>) {
        let mut sql = String::new();
        let mut binds = Vec::new();
        if let Some(e) = &self.entry_id {
            binds.push(e.clone());
            sql.push_str(&format!(" AND entry_id = ${}", first + binds.len() - 1));
        }
        if let Some((d, v)) = &self.only {
            binds.push(v.clone());
            sql.push_str(&format!(
                " AND {} = ${}",
                d.column(),
                first + binds.len() - 1
            ));
        }
        (sql, binds)
    }
}

/// Share of plays reaching each quarter of the media (VOD plays only).
#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct DropOff {
    pub p25: f64,
    pub p50: f64,
    pub p75: f64,
    pub p100: f64,
}

/// Quality of experience.
#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct Qoe {
    /// Mean time from view start to first frame, ms.
    pub startup_ms_avg: f64,
    /// Rebuffering time / (rebuffering + viewing time).
    pub rebuffer_ratio: f64,
    pub rebuffer_s: f64,
    pub avg_bitrate_kbps: f64,
    pub errors: i64,
}

/// The totals of a report.
#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct Summary {
    pub from: i64,
    pub to: i64,
    /// Playback sessions seen (with or without a play).
    pub views: i64,
    pub plays: i64,
    pub unique_viewers: i64,
    pub minutes_viewed: f64,
    /// Seconds viewed per play.
    pub avg_view_time_s: f64,
    pub drop_off: DropOff,
    pub qoe: Qoe,
    /// Most sessions playing at once in the range (live and VOD).
    pub peak_concurrent: i64,
    /// Sessions that sent an event in the last 30 s.
    pub current_concurrent: i64,
    /// Minutes of media served by the origin (its access log), players with
    /// or without the plugin.
    pub origin_minutes: f64,
}

/// One row of a grouped report (time bucket, dimension value or entry).
#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct Row_ {
    /// Bucket start (unix seconds) or dimension value.
    pub key: String,
    /// The entry's name (top entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub views: i64,
    pub plays: i64,
    pub minutes_viewed: f64,
    pub avg_view_time_s: f64,
    pub startup_ms_avg: f64,
    pub rebuffer_ratio: f64,
    pub avg_bitrate_kbps: f64,
    pub errors: i64,
}

const SUMS: &str = "CAST(COALESCE(SUM(views), 0) AS BIGINT), CAST(COALESCE(SUM(plays), 0) AS BIGINT), \
    CAST(COALESCE(SUM(watched_ms), 0) AS BIGINT), CAST(COALESCE(SUM(startup_ms_sum), 0) AS BIGINT), \
    CAST(COALESCE(SUM(startup_n), 0) AS BIGINT), CAST(COALESCE(SUM(rebuffer_ms), 0) AS BIGINT), \
    CAST(COALESCE(SUM(bitrate_sum), 0) AS BIGINT), CAST(COALESCE(SUM(bitrate_n), 0) AS BIGINT), \
    CAST(COALESCE(SUM(errors), 0) AS BIGINT), CAST(COALESCE(SUM(vod_plays), 0) AS BIGINT), \
    CAST(COALESCE(SUM(reach25), 0) AS BIGINT), CAST(COALESCE(SUM(reach50), 0) AS BIGINT), \
    CAST(COALESCE(SUM(reach75), 0) AS BIGINT), CAST(COALESCE(SUM(reach100), 0) AS BIGINT)";

#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    views: i64,
    plays: i64,
    watched_ms: i64,
    startup_sum: i64,
    startup_n: i64,
    rebuffer_ms: i64,
    bitrate_sum: i64,
    bitrate_n: i64,
    errors: i64,
    vod_plays: i64,
    reach: [i64; 4],
}

fn sums(r: &sqlx::any::AnyRow, at: usize) -> Result<Sums, DbError> {
    let g = |i: usize| r.try_get::<i64, _>(at + i);
    Ok(Sums {
        views: g(0)?,
        plays: g(1)?,
        watched_ms: g(2)?,
        startup_sum: g(3)?,
        startup_n: g(4)?,
        rebuffer_ms: g(5)?,
        bitrate_sum: g(6)?,
        bitrate_n: g(7)?,
        errors: g(8)?,
        vod_plays: g(9)?,
        reach: [g(10)?, g(11)?, g(12)?, g(13)?],
    })
}

fn ratio(a: i64, b: i64) -> f64 {
    if b > 0 {
        a as f64 / b as f64
    } else {
        0.0
    }
}

impl Sums {
    fn row(&self, key: String) -> Row_ {
        Row_ {
            key,
            name: None,
            views: self.views,
            plays: self.plays,
            minutes_viewed: self.watched_ms as f64 / 60_000.0,
            avg_view_time_s: ratio(self.watched_ms, self.plays) / 1000.0,
            startup_ms_avg: ratio(self.startup_sum, self.startup_n),
            rebuffer_ratio: ratio(self.rebuffer_ms, self.rebuffer_ms + self.watched_ms),
            avg_bitrate_kbps: ratio(self.bitrate_sum, self.bitrate_n),
            errors: self.errors,
        }
    }
}

fn hour_floor(ms: i64) -> i64 {
    super::fold::hour_of(ms)
}

/// The totals of `f`; `now_ms` for "current" concurrency.
pub async fn summary(db: &Db, f: &Filter, now_ms: i64) -> Result<Summary, DbError> {
    let pool = db.pool();
    let (clauses, binds) = f.clauses(4);
    let sql = format!(
        "SELECT {SUMS} FROM analytics_hourly WHERE partner_id = $1 AND hour_ms >= $2 \
         AND hour_ms < $3{clauses}"
    );
    let mut q = sqlx::query(&sql)
        .bind(f.partner_id)
        .bind(hour_floor(f.from_ms))
        .bind(f.to_ms);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    let s = sums(&q.fetch_one(pool).await?, 0)?;

    let sql = format!(
        "SELECT COUNT(DISTINCT viewer_id) FROM analytics_views WHERE partner_id = $1 \
         AND hour_ms >= $2 AND hour_ms < $3 AND played = 1{clauses}"
    );
    let mut q = sqlx::query(&sql)
        .bind(f.partner_id)
        .bind(hour_floor(f.from_ms))
        .bind(f.to_ms);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    let unique: i64 = q.fetch_one(pool).await?.try_get(0)?;

    let peak = peak_concurrent(db, f).await?;
    let current = current_concurrent(db, f, now_ms).await?;
    let origin_ms = origin_ms(db, f).await?;
    let row = s.row(String::new());
    Ok(Summary {
        from: f.from_ms / 1000,
        to: f.to_ms / 1000,
        views: s.views,
        plays: s.plays,
        unique_viewers: unique,
        minutes_viewed: row.minutes_viewed,
        avg_view_time_s: row.avg_view_time_s,
        drop_off: DropOff {
            p25: ratio(s.reach[0], s.vod_plays),
            p50: ratio(s.reach[1], s.vod_plays),
            p75: ratio(s.reach[2], s.vod_plays),
            p100: ratio(s.reach[3], s.vod_plays),
        },
        qoe: Qoe {
            startup_ms_avg: row.startup_ms_avg,
            rebuffer_ratio: row.rebuffer_ratio,
            rebuffer_s: s.rebuffer_ms as f64 / 1000.0,
            avg_bitrate_kbps: row.avg_bitrate_kbps,
            errors: s.errors,
        },
        peak_concurrent: peak,
        current_concurrent: current,
        origin_minutes: origin_ms as f64 / 60_000.0,
    })
}

/// Buckets of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Hour,
    Day,
}

/// Grouped by time bucket, a dimension or entry; sorted by key (time) or
/// by plays, most first (dimensions, entries), at most `limit` rows.
pub async fn grouped(db: &Db, f: &Filter, by: Grouping, limit: i64) -> Result<Vec<Row_>, DbError> {
    let (clauses, binds) = f.clauses(5);
    let (key, order) = match by {
        Grouping::Time(Interval::Hour) => ("hour_ms".to_string(), "1 ASC"),
        Grouping::Time(Interval::Day) => ("(hour_ms / 86400000) * 86400000".to_string(), "1 ASC"),
        Grouping::By(d) => (d.column().to_string(), "3 DESC, 1 ASC"),
    };
    let key_sql = match by {
        Grouping::Time(_) => format!("CAST({key} AS BIGINT)"),
        Grouping::By(_) => key.clone(),
    };
    let sql = format!(
        "SELECT {key_sql}, {SUMS} FROM analytics_hourly WHERE partner_id = $1 AND hour_ms >= $2 \
         AND hour_ms < $3{clauses} GROUP BY {key} ORDER BY {order} LIMIT $4"
    );
    // `3 DESC` orders by the second sum (plays) counting the key as 1.
    let mut q = sqlx::query(&sql)
        .bind(f.partner_id)
        .bind(hour_floor(f.from_ms))
        .bind(f.to_ms)
        .bind(limit);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    let rows = q.fetch_all(db.pool()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let key = match by {
            Grouping::Time(_) => (r.try_get::<i64, _>(0)? / 1000).to_string(),
            Grouping::By(_) => r.try_get::<String, _>(0)?,
        };
        out.push(sums(&r, 1)?.row(key));
    }
    Ok(out)
}

/// How [`grouped`] groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Time(Interval),
    By(Dimension),
}

/// Views overlapping the range, as (start, end) ms, at most this many.
const SPAN_MAX: i64 = 200_000;

async fn spans(db: &Db, f: &Filter) -> Result<Vec<(i64, i64)>, DbError> {
    let (clauses, binds) = f.clauses(5);
    let sql = format!(
        "SELECT started_ms, last_ms FROM analytics_views WHERE partner_id = $1 AND last_ms >= $2 \
         AND started_ms < $3 AND played = 1{clauses} LIMIT $4"
    );
    let mut q = sqlx::query(&sql)
        .bind(f.partner_id)
        .bind(f.from_ms)
        .bind(f.to_ms)
        .bind(SPAN_MAX);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    let rows = q.fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// The most views open at one time (a sweep over their spans).
pub fn peak_of(spans: &[(i64, i64)]) -> i64 {
    let mut edges: Vec<(i64, i64)> = Vec::with_capacity(spans.len() * 2);
    for &(a, b) in spans {
        edges.push((a, 1));
        edges.push((b.max(a), -1));
    }
    // Starts before ends at the same instant: a view that is one instant
    // long (one batch) still counts.
    edges.sort_unstable_by_key(|&(t, d)| (t, -d));
    let (mut now, mut peak) = (0i64, 0i64);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak
}

/// Views open at each `step_ms` from `from_ms` (a concurrency chart).
pub fn series_of(spans: &[(i64, i64)], from_ms: i64, to_ms: i64, step_ms: i64) -> Vec<(i64, i64)> {
    let step = step_ms.max(1);
    let n = ((to_ms - from_ms) / step).clamp(0, 2000) as usize;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = from_ms + i as i64 * step;
        let t1 = t0 + step;
        let c = spans.iter().filter(|(a, b)| *a < t1 && *b >= t0).count() as i64;
        out.push((t0, c));
    }
    out
}

async fn peak_concurrent(db: &Db, f: &Filter) -> Result<i64, DbError> {
    Ok(peak_of(&spans(db, f).await?))
}

/// Concurrent views over time (`step_ms` buckets).
pub async fn concurrency(db: &Db, f: &Filter, step_ms: i64) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(series_of(&spans(db, f).await?, f.from_ms, f.to_ms, step_ms))
}

/// Sessions with an event in the 30 s before `now_ms`.
async fn current_concurrent(db: &Db, f: &Filter, now_ms: i64) -> Result<i64, DbError> {
    let (clauses, binds) = f.clauses(3);
    let sql = format!(
        "SELECT COUNT(DISTINCT session_id) FROM analytics_events WHERE partner_id = $1 \
         AND server_ms >= $2{clauses}"
    );
    let mut q = sqlx::query(&sql).bind(f.partner_id).bind(now_ms - 30_000);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    Ok(q.fetch_one(db.pool()).await?.try_get(0)?)
}

/// Milliseconds of playback the origin served (sessions' first to last request).
async fn origin_ms(db: &Db, f: &Filter) -> Result<i64, DbError> {
    let mut sql =
        "SELECT CAST(COALESCE(SUM(last_ms - first_ms), 0) AS BIGINT) FROM analytics_access \
         WHERE partner_id = $1 AND last_ms >= $2 AND first_ms < $3"
            .to_string();
    if f.entry_id.is_some() {
        sql.push_str(" AND stream = $4");
    }
    let mut q = sqlx::query(&sql)
        .bind(f.partner_id)
        .bind(f.from_ms)
        .bind(f.to_ms);
    if let Some(e) = &f.entry_id {
        q = q.bind(e.as_str());
    }
    Ok(q.fetch_one(db.pool()).await?.try_get(0)?)
}

/// The same totals straight from the raw events (what the rollups save;
/// used by the benchmark): plays and viewers counted from `play` events.
pub async fn plays_from_raw(db: &Db, f: &Filter) -> Result<(i64, i64), DbError> {
    let r = sqlx::query(
        "SELECT COUNT(DISTINCT session_id), COUNT(DISTINCT viewer_id) FROM analytics_events \
         WHERE partner_id = $1 AND server_ms >= $2 AND server_ms < $3 AND kind = 'play'",
    )
    .bind(f.partner_id)
    .bind(f.from_ms)
    .bind(f.to_ms)
    .fetch_one(db.pool())
    .await?;
    Ok((r.try_get(0)?, r.try_get(1)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_and_series() {
        let spans = [(0, 100), (50, 150), (100, 200), (300, 400)];
        // At 100 one ends as one starts: both count.
        assert_eq!(peak_of(&spans), 3);
        assert_eq!(peak_of(&[(5, 5)]), 1);
        assert_eq!(peak_of(&[]), 0);
        let s = series_of(&spans, 0, 400, 100);
        assert_eq!(s, vec![(0, 2), (100, 3), (200, 1), (300, 1)]);
    }
}
