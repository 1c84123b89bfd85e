//! The ETL: raw events → view facts (`analytics_views`, one row per playback
//! session) → hourly rollups (`analytics_hourly`, per partner, entry, hour,
//! player, format, device, OS, browser and country).
//!
//! A pass reads the events after its watermark (an event id) in id order,
//! folds each session's new events into its stored fact ([`super::fold`]),
//! recomputes the rollup rows of every (partner, entry, hour) it touched from
//! the facts, and moves the watermark, all in one transaction. The watermark
//! moves by compare-and-set, so when several nodes of a cluster run passes
//! at once, one wins and the others roll back and retry later.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::any::AnyRow;
use sqlx::{Connection, Row};

use super::beacon::EventKind;
use super::fold::{hour_of, PlayState, RawEvent, ViewFacts};
use crate::db::Db;
use crate::error::DbError;

/// Events read by one pass at most.
pub const PASS_MAX: i64 = 20_000;
const WATERMARK: &str = "etl_event_id";

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub events: usize,
    pub views: usize,
    pub hours: usize,
    /// Another node moved the watermark first; nothing was written.
    pub lost_race: bool,
}

/// The dimensions a view is reported by (from its first event).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dims {
    partner_id: i64,
    viewer_id: String,
    player: String,
    format: String,
    live: bool,
    device: String,
    os: String,
    browser: String,
    country: String,
}

struct View {
    dims: Dims,
    facts: ViewFacts,
    old_hour: Option<i64>,
}

/// Runs passes until the events are caught up; returns the total.
pub async fn run_until_caught_up(db: &Db) -> Result<PassReport, DbError> {
    let mut total = PassReport::default();
    loop {
        let r = pass(db).await?;
        total.events += r.events;
        total.views += r.views;
        total.hours += r.hours;
        total.lost_race |= r.lost_race;
        if r.lost_race || (r.events as i64) < PASS_MAX {
            return Ok(total);
        }
    }
}

/// One pass over at most [`PASS_MAX`] new events.
pub async fn pass(db: &Db) -> Result<PassReport, DbError> {
    let pool = db.pool();
    sqlx::query("INSERT INTO analytics_state (k, v) VALUES ($1, 0) ON CONFLICT (k) DO NOTHING")
        .bind(WATERMARK)
        .execute(pool)
        .await?;
    let mark: i64 = sqlx::query("SELECT v FROM analytics_state WHERE k = $1")
        .bind(WATERMARK)
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    let rows = sqlx::query(
        "SELECT id, partner_id, entry_id, session_id, seq, kind, client_ms, server_ms, position_s, \
         duration_s, bitrate_kbps, value_ms, viewer_id, player, format, live, device, os, browser, \
         country FROM analytics_events WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(mark)
    .bind(PASS_MAX)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(PassReport::default());
    }
    let mut last_id = mark;
    // (entry, session) -> (dims of its first event here, events)
    let mut sessions: BTreeMap<(String, String), (Dims, Vec<RawEvent>)> = BTreeMap::new();
    for r in &rows {
        last_id = last_id.max(r.try_get::<i64, _>("id")?);
        let Some(kind) = EventKind::parse(&r.try_get::<String, _>("kind")?) else {
            continue;
        };
        let key = (r.try_get("entry_id")?, r.try_get("session_id")?);
        let ev = RawEvent {
            kind,
            seq: r.try_get("seq")?,
            client_ms: r.try_get("client_ms")?,
            server_ms: r.try_get("server_ms")?,
            position_s: r.try_get("position_s")?,
            duration_s: r.try_get("duration_s")?,
            bitrate_kbps: r.try_get("bitrate_kbps")?,
            value_ms: r.try_get("value_ms")?,
        };
        let dims = dims_of(r)?;
        sessions
            .entry(key)
            .or_insert_with(|| (dims, Vec::new()))
            .1
            .push(ev);
    }

    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let mut views = Vec::with_capacity(sessions.len());
    for ((entry, session), (dims, mut evs)) in sessions {
        evs.sort_by_key(|e| e.seq);
        let stored =
            sqlx::query("SELECT * FROM analytics_views WHERE entry_id = $1 AND session_id = $2")
                .bind(&entry)
                .bind(&session)
                .fetch_optional(&mut *tx)
                .await?;
        let mut v = match stored {
            Some(r) => View {
                dims: dims_of(&r)?,
                old_hour: Some(r.try_get("hour_ms")?),
                facts: facts_of(&r)?,
            },
            None => View {
                dims,
                facts: ViewFacts::new(),
                old_hour: None,
            },
        };
        for e in &evs {
            v.facts.apply(e);
        }
        views.push(((entry, session), v));
    }
    let mut hours: BTreeSet<(i64, String, i64)> = BTreeSet::new();
    for ((entry, session), v) in &views {
        upsert_view(&mut tx, entry, session, v).await?;
        let hour = hour_of(v.facts.started_ms);
        hours.insert((v.dims.partner_id, entry.clone(), hour));
        if let Some(h) = v.old_hour.filter(|h| *h != hour) {
            hours.insert((v.dims.partner_id, entry.clone(), h));
        }
    }
    for (partner, entry, hour) in &hours {
        rollup_hour(&mut tx, *partner, entry, *hour).await?;
    }
    let moved = sqlx::query("UPDATE analytics_state SET v = $1 WHERE k = $2 AND v = $3")
        .bind(last_id)
        .bind(WATERMARK)
        .bind(mark)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if moved != 1 {
        tx.rollback().await?;
        return Ok(PassReport {
            lost_race: true,
            ..Default::default()
        });
    }
    tx.commit().await?;
    Ok(PassReport {
        events: rows.len(),
        views: views.len(),
        hours: hours.len(),
        lost_race: false,
    })
}

fn dims_of(r: &AnyRow) -> Result<Dims, DbError> {
    Ok(Dims {
        partner_id: r.try_get("partner_id")?,
        viewer_id: r.try_get("viewer_id")?,
        player: r.try_get("player")?,
        format: r.try_get("format")?,
        live: r.try_get::<i64, _>("live")? != 0,
        device: r.try_get("device")?,
        os: r.try_get("os")?,
        browser: r.try_get("browser")?,
        country: r.try_get("country")?,
    })
}

fn facts_of(r: &AnyRow) -> Result<ViewFacts, DbError> {
    Ok(ViewFacts {
        started_ms: r.try_get("started_ms")?,
        last_ms: r.try_get("last_ms")?,
        state: Some(PlayState::parse(&r.try_get::<String, _>("state")?)),
        state_at: r.try_get("state_at")?,
        view_start_at: r.try_get("view_start_at")?,
        played: r.try_get::<i64, _>("played")? != 0,
        ended: r.try_get::<i64, _>("ended")? != 0,
        watched_ms: r.try_get("watched_ms")?,
        startup_ms: r.try_get("startup_ms")?,
        rebuffer_ms: r.try_get("rebuffer_ms")?,
        rebuffer_count: r.try_get("rebuffer_count")?,
        bitrate_sum: r.try_get("bitrate_sum")?,
        bitrate_n: r.try_get("bitrate_n")?,
        errors: r.try_get("errors")?,
        seeks: r.try_get("seeks")?,
        max_position_s: r.try_get("max_position_s")?,
        duration_s: r.try_get("duration_s")?,
    })
}

async fn upsert_view(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entry: &str,
    session: &str,
    v: &View,
) -> Result<(), DbError> {
    let f = &v.facts;
    let d = &v.dims;
    sqlx::query(
        "INSERT INTO analytics_views (entry_id, session_id, partner_id, viewer_id, started_ms, \
         last_ms, hour_ms, state, state_at, view_start_at, played, ended, watched_ms, startup_ms, \
         rebuffer_ms, rebuffer_count, bitrate_sum, bitrate_n, errors, seeks, max_position_s, \
         duration_s, player, format, live, device, os, browser, country) VALUES ($1, $2, $3, $4, \
         $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, \
         $23, $24, $25, $26, $27, $28, $29) ON CONFLICT (entry_id, session_id) DO UPDATE SET \
         started_ms = excluded.started_ms, last_ms = excluded.last_ms, hour_ms = excluded.hour_ms, \
         state = excluded.state, state_at = excluded.state_at, \
         view_start_at = excluded.view_start_at, played = excluded.played, \
         ended = excluded.ended, watched_ms = excluded.watched_ms, \
         startup_ms = excluded.startup_ms, rebuffer_ms = excluded.rebuffer_ms, \
         rebuffer_count = excluded.rebuffer_count, bitrate_sum = excluded.bitrate_sum, \
         bitrate_n = excluded.bitrate_n, errors = excluded.errors, seeks = excluded.seeks, \
         max_position_s = excluded.max_position_s, duration_s = excluded.duration_s",
    )
    .bind(entry)
    .bind(session)
    .bind(d.partner_id)
    .bind(d.viewer_id.as_str())
    .bind(f.started_ms)
    .bind(f.last_ms)
    .bind(hour_of(f.started_ms))
    .bind(f.state.unwrap_or(PlayState::Idle).as_str())
    .bind(f.state_at)
    .bind(f.view_start_at)
    .bind(i64::from(f.played))
    .bind(i64::from(f.ended))
    .bind(f.watched_ms)
    .bind(f.startup_ms)
    .bind(f.rebuffer_ms)
    .bind(f.rebuffer_count)
    .bind(f.bitrate_sum)
    .bind(f.bitrate_n)
    .bind(f.errors)
    .bind(f.seeks)
    .bind(f.max_position_s)
    .bind(f.duration_s)
    .bind(d.player.as_str())
    .bind(d.format.as_str())
    .bind(i64::from(d.live))
    .bind(d.device.as_str())
    .bind(d.os.as_str())
    .bind(d.browser.as_str())
    .bind(d.country.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Rebuilds the rollup rows of one (partner, entry, hour) from its facts.
async fn rollup_hour(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    partner: i64,
    entry: &str,
    hour: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "DELETE FROM analytics_hourly WHERE partner_id = $1 AND entry_id = $2 AND hour_ms = $3",
    )
    .bind(partner)
    .bind(entry)
    .bind(hour)
    .execute(&mut **tx)
    .await?;
    // SUM is cast: PostgreSQL sums BIGINT as NUMERIC. A VOD view "reaches"
    // a quarter when its furthest position passes it (or it ended).
    let reach = |q: &str| {
        format!(
            "CAST(SUM(CASE WHEN played = 1 AND duration_s > 0 AND (ended = 1 OR \
             max_position_s >= {q} * duration_s) THEN 1 ELSE 0 END) AS BIGINT)"
        )
    };
    let sql = format!(
        "INSERT INTO analytics_hourly (partner_id, entry_id, hour_ms, player, format, device, os, \
         browser, country, views, plays, vod_plays, watched_ms, startup_ms_sum, startup_n, \
         rebuffer_ms, bitrate_sum, bitrate_n, errors, reach25, reach50, reach75, reach100) \
         SELECT partner_id, entry_id, hour_ms, player, format, device, os, browser, country, \
         COUNT(*), CAST(SUM(played) AS BIGINT), \
         CAST(SUM(CASE WHEN played = 1 AND duration_s > 0 THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(watched_ms) AS BIGINT), \
         CAST(SUM(CASE WHEN startup_ms >= 0 THEN startup_ms ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN startup_ms >= 0 THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(rebuffer_ms) AS BIGINT), CAST(SUM(bitrate_sum) AS BIGINT), \
         CAST(SUM(bitrate_n) AS BIGINT), CAST(SUM(errors) AS BIGINT), {}, {}, {}, {} \
         FROM analytics_views WHERE partner_id = $1 AND entry_id = $2 AND hour_ms = $3 \
         GROUP BY partner_id, entry_id, hour_ms, player, format, device, os, browser, country",
        reach("0.25"),
        reach("0.5"),
        reach("0.75"),
        reach("0.95"),
    );
    sqlx::query(&sql)
        .bind(partner)
        .bind(entry)
        .bind(hour)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes raw events older than `raw_before_ms` (only those the ETL has
/// read) and facts, rollups and access sessions older than `rollup_before_ms`.
pub async fn retention(db: &Db, raw_before_ms: i64, rollup_before_ms: i64) -> Result<u64, DbError> {
    let pool = db.pool();
    let mark: i64 = sqlx::query("SELECT v FROM analytics_state WHERE k = $1")
        .bind(WATERMARK)
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    let mut n = sqlx::query("DELETE FROM analytics_events WHERE server_ms < $1 AND id <= $2")
        .bind(raw_before_ms)
        .bind(mark)
        .execute(pool)
        .await?
        .rows_affected();
    for sql in [
        "DELETE FROM analytics_views WHERE last_ms < $1",
        "DELETE FROM analytics_hourly WHERE hour_ms < $1",
        "DELETE FROM analytics_access WHERE last_ms < $1",
    ] {
        n += sqlx::query(sql)
            .bind(rollup_before_ms)
            .execute(pool)
            .await?
            .rows_affected();
    }
    Ok(n)
}
