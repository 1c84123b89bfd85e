//! Origin-cluster membership in the shared database (migration 0004).
//!
//! Every `vela serve` node with a `[cluster]` table registers itself in
//! `cluster_nodes` (its id, the HTTP address other nodes reach it at) and
//! renews the row on a heartbeat; a row whose `expires_at` has passed is a
//! node that is gone (stopped, or `kill -9`ed) and is ignored by every
//! query here. `cluster_streams` says which node holds each live stream: the
//! node writes its live streams on every publish, end and heartbeat, and the
//! newest instance of a name wins, so a publisher that reconnects to another
//! node moves its stream there. Times are unix milliseconds.

use sqlx::Row;

use crate::db::Db;
use crate::error::DbError;

/// A live cluster node as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// `http://host:port`, as the node advertised it.
    pub advertise: String,
}

/// Nodes whose heartbeat expired longer ago than this are deleted.
const FORGET_AFTER_MS: i64 = 3_600_000;

impl Db {
    /// Registers node `id` (or renews its registration) until `now_ms + ttl_ms`.
    pub async fn cluster_heartbeat(
        &self,
        id: &str,
        advertise: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO cluster_nodes (id, advertise, started_at, heartbeat_at, expires_at) \
             VALUES ($1, $2, $3, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET advertise = excluded.advertise, \
             heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
        )
        .bind(id)
        .bind(advertise)
        .bind(now_ms)
        .bind(now_ms + ttl_ms)
        .execute(self.pool())
        .await
        .map_err(DbError::from_sqlx)?;
        sqlx::query("DELETE FROM cluster_nodes WHERE expires_at < $1")
            .bind(now_ms - FORGET_AFTER_MS)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records that node `id` holds exactly `streams` (name, instance): each
    /// is claimed unless a live node holds a newer instance of it, and the
    /// node's rows for other streams are removed.
    pub async fn cluster_set_streams(
        &self,
        id: &str,
        streams: &[(String, i64)],
        now_ms: i64,
    ) -> Result<(), DbError> {
        for (stream, instance) in streams {
            sqlx::query(
                "INSERT INTO cluster_streams (stream, node_id, instance, updated_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (stream) DO UPDATE SET node_id = excluded.node_id, \
                 instance = excluded.instance, updated_at = excluded.updated_at \
                 WHERE cluster_streams.instance <= excluded.instance \
                 OR NOT EXISTS (SELECT 1 FROM cluster_nodes n \
                   WHERE n.id = cluster_streams.node_id AND n.expires_at > $4)",
            )
            .bind(stream)
            .bind(id)
            .bind(*instance)
            .bind(now_ms)
            .execute(self.pool())
            .await
            .map_err(DbError::from_sqlx)?;
        }
        let held = sqlx::query("SELECT stream FROM cluster_streams WHERE node_id = $1")
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        for row in held {
            let stream: String = row.try_get(0)?;
            if !streams.iter().any(|(s, _)| *s == stream) {
                sqlx::query("DELETE FROM cluster_streams WHERE stream = $1 AND node_id = $2")
                    .bind(&stream)
                    .bind(id)
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(())
    }

    /// The live node that holds `stream`, if any, and the stream's instance there.
    pub async fn cluster_locate(
        &self,
        stream: &str,
        now_ms: i64,
    ) -> Result<Option<(Member, i64)>, DbError> {
        let row = sqlx::query(
            "SELECT n.id, n.advertise, s.instance FROM cluster_streams s \
             JOIN cluster_nodes n ON n.id = s.node_id \
             WHERE s.stream = $1 AND n.expires_at > $2",
        )
        .bind(stream)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok((
                Member {
                    id: r.try_get(0)?,
                    advertise: r.try_get(1)?,
                },
                r.try_get(2)?,
            ))
        })
        .transpose()
    }

    /// Every live node, by id.
    pub async fn cluster_members(&self, now_ms: i64) -> Result<Vec<Member>, DbError> {
        let rows = sqlx::query(
            "SELECT id, advertise FROM cluster_nodes WHERE expires_at > $1 ORDER BY id",
        )
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    id: r.try_get(0)?,
                    advertise: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// Removes node `id` and its streams (a clean stop).
    pub async fn cluster_leave(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM cluster_streams WHERE node_id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        sqlx::query("DELETE FROM cluster_nodes WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), None).await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn streams_are_located_on_live_nodes_only() {
        let (_dir, db) = db().await;
        db.cluster_heartbeat("a", "http://127.0.0.1:1", 1_000, 3_000)
            .await
            .unwrap();
        db.cluster_heartbeat("b", "http://127.0.0.1:2", 1_000, 3_000)
            .await
            .unwrap();
        db.cluster_set_streams("a", &[("show".into(), 10)], 1_000)
            .await
            .unwrap();
        let (a, instance) = db.cluster_locate("show", 2_000).await.unwrap().unwrap();
        assert_eq!((a.advertise.as_str(), instance), ("http://127.0.0.1:1", 10));
        assert_eq!(db.cluster_locate("other", 2_000).await.unwrap(), None);
        // An older instance elsewhere does not take the stream over.
        db.cluster_set_streams("b", &[("show".into(), 5)], 2_000)
            .await
            .unwrap();
        assert_eq!(
            db.cluster_locate("show", 2_000)
                .await
                .unwrap()
                .unwrap()
                .0
                .id,
            "a"
        );
        // Node a's heartbeat expires: its stream is no longer pointed to.
        assert_eq!(db.cluster_locate("show", 4_000).await.unwrap(), None);
        assert_eq!(db.cluster_members(4_000).await.unwrap().len(), 0);
        // ... and any instance on a live node takes it over.
        db.cluster_heartbeat("b", "http://127.0.0.1:2", 4_000, 3_000)
            .await
            .unwrap();
        db.cluster_set_streams("b", &[("show".into(), 5)], 4_000)
            .await
            .unwrap();
        assert_eq!(
            db.cluster_locate("show", 4_500)
                .await
                .unwrap()
                .unwrap()
                .0
                .id,
            "b"
        );
        // The stream ends on b: its row goes.
        db.cluster_set_streams("b", &[], 5_000).await.unwrap();
        assert_eq!(db.cluster_locate("show", 5_000).await.unwrap(), None);
        db.cluster_leave("b").await.unwrap();
        assert!(db.cluster_members(5_000).await.unwrap().is_empty());
    }
}
