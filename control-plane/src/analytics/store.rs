//! Raw events in, group-committed: the beacon handlers hand their rows to
//! one writer task through a bounded channel; the writer takes whatever is
//! queued (up to [`GROUP_MAX`] rows), writes it in one transaction and only
//! then answers every handler of the group. One fsync'd commit serves many
//! beacons, and a beacon is answered only once its events are durable
//! (SQLite: `synchronous = FULL` for these commits; PostgreSQL: the
//! server's own commit durability).

use sqlx::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::db::{Backend, Db};
use crate::error::DbError;

/// Most rows in one group commit.
pub const GROUP_MAX: usize = 20_000;
/// Rows per INSERT statement (20 binds each, under SQLite's 32,766).
const CHUNK: usize = 500;

/// One raw event row, as stored.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub partner_id: i64,
    pub entry_id: String,
    pub session_id: String,
    pub seq: i64,
    pub kind: &'static str,
    pub client_ms: i64,
    pub server_ms: i64,
    pub position_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub bitrate_kbps: Option<i64>,
    pub value_ms: Option<i64>,
    pub detail: Option<String>,
    pub viewer_id: String,
    pub player: String,
    pub format: String,
    pub live: bool,
    pub device: &'static str,
    pub os: &'static str,
    pub browser: &'static str,
    pub country: String,
}

/// Rows waiting for their commit, and who to tell.
pub struct WriteJob {
    pub rows: Vec<EventRow>,
    pub done: oneshot::Sender<Result<(), ()>>,
}

/// The writer task: group commits until every sender is gone.
pub async fn run_writer(db: Db, mut rx: mpsc::Receiver<WriteJob>) {
    while let Some(first) = rx.recv().await {
        let mut n = first.rows.len();
        let mut jobs = vec![first];
        while n < GROUP_MAX {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.rows.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let timer = super::metrics::COMMIT_SECONDS.start_timer();
        let result = commit(&db, &jobs).await.map_err(|e| {
            tracing::error!(error = %e, rows = n, "analytics events could not be stored");
        });
        timer.observe_duration();
        if result.is_ok() {
            super::metrics::EVENTS.inc_by(n as u64);
        }
        for j in jobs {
            let _ = j.done.send(result);
        }
    }
}

/// Writes rows in one transaction (what one group commit does; the
/// benchmark also uses it for bulk loads and as the per-request peer).
pub async fn commit_rows(db: &Db, rows: Vec<EventRow>) -> Result<(), DbError> {
    let (done, _) = oneshot::channel();
    commit(db, &[WriteJob { rows, done }]).await
}

async fn commit(db: &Db, jobs: &[WriteJob]) -> Result<(), DbError> {
    let mut conn = db.pool().acquire().await?;
    let sqlite = db.backend() == Backend::Sqlite;
    if sqlite {
        // The pool's connections run `synchronous = NORMAL` (durable against
        // a crash of the process); beacons are answered as stored, so their
        // commits also survive a power loss.
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await?;
    }
    let result = async {
        let mut tx = conn.begin().await?;
        let rows: Vec<&EventRow> = jobs.iter().flat_map(|j| j.rows.iter()).collect();
        for chunk in rows.chunks(CHUNK) {
            insert_chunk(&mut tx, chunk).await?;
        }
        tx.commit().await?;
        Ok::<(), DbError>(())
    }
    .await;
    if sqlite {
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn insert_chunk(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[&EventRow],
) -> Result<(), DbError> {
    const COLS: usize = 20;
    let mut sql = String::with_capacity(160 + rows.len() * 90);
    sql.push_str(
        "INSERT INTO analytics_events (partner_id, entry_id, session_id, seq, kind, client_ms, \
         server_ms, position_s, duration_s, bitrate_kbps, value_ms, detail, viewer_id, player, \
         format, live, device, os, browser, country) VALUES ",
    );
    for i in 0..rows.len() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..COLS {
            if c > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&(i * COLS + c + 1).to_string());
        }
        sql.push(')');
    }
    // A resent event (same session and seq) is stored once.
    sql.push_str(" ON CONFLICT (entry_id, session_id, seq) DO NOTHING");
    let mut q = sqlx::query(&sql);
    for r in rows {
        q = q
            .bind(r.partner_id)
            .bind(r.entry_id.as_str())
            .bind(r.session_id.as_str())
            .bind(r.seq)
            .bind(r.kind)
            .bind(r.client_ms)
            .bind(r.server_ms)
            .bind(r.position_s)
            .bind(r.duration_s)
            .bind(r.bitrate_kbps)
            .bind(r.value_ms)
            .bind(r.detail.as_deref())
            .bind(r.viewer_id.as_str())
            .bind(r.player.as_str())
            .bind(r.format.as_str())
            .bind(i64::from(r.live))
            .bind(r.device)
            .bind(r.os)
            .bind(r.browser)
            .bind(r.country.as_str());
    }
    q.execute(&mut **tx).await?;
    Ok(())
}
