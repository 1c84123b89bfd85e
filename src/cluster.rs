//! `[cluster]`: this node's part in an origin cluster (docs/cluster.md).
//!
//! The node registers in the shared PostgreSQL database with the address
//! its peers reach it at and renews the registration on a heartbeat; at
//! every heartbeat and at every start or end of a live stream it writes the
//! streams it holds. [`DbDirectory`] answers the pull middleware's
//! questions (`vela_origin::cluster`) from the same tables.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use vela_control_plane::db::Db;
use vela_origin::cluster::{Directory, Location, Member};
use vela_origin::LiveRegistry;

use crate::config::ConfigError;

/// The `[cluster]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// `http://host:port` at which the other nodes reach this node's HTTP
    /// listener; defaults to the `--http` address when that names an IP.
    pub advertise: Option<String>,
    /// How often the registration is renewed, seconds.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_s: f64,
    /// How long a registration lasts without renewal, seconds: a node that
    /// died is no longer pointed to after this.
    #[serde(default = "default_expiry")]
    pub expiry_s: f64,
    /// Memory for media pulled from other nodes, MiB.
    #[serde(default = "default_cache")]
    pub media_cache_mb: usize,
}

fn default_heartbeat() -> f64 {
    1.0
}
fn default_expiry() -> f64 {
    4.0
}
fn default_cache() -> usize {
    64
}

impl ClusterSettings {
    /// Checks the table; returns the address to advertise.
    pub fn resolve(
        &self,
        http: std::net::SocketAddr,
        database: Option<&str>,
    ) -> Result<String, ConfigError> {
        if database.is_none() {
            return Err(ConfigError::Invalid(
                "[cluster] needs a shared PostgreSQL database (--database or [database] url)"
                    .into(),
            ));
        }
        let heartbeat_ok = (0.1..=60.0).contains(&self.heartbeat_s);
        let expiry_ok = (2.0 * self.heartbeat_s..=600.0).contains(&self.expiry_s);
        if !(heartbeat_ok && expiry_ok) {
            return Err(ConfigError::Invalid(
                "cluster.heartbeat_s must be 0.1..=60 and cluster.expiry_s at least twice it (and at most 600)".into(),
            ));
        }
        let advertise = match &self.advertise {
            Some(a) => a.trim_end_matches('/').to_string(),
            None if !http.ip().is_unspecified() => format!("http://{http}"),
            None => {
                return Err(ConfigError::Invalid(
                    "cluster.advertise is needed when --http listens on all addresses".into(),
                ))
            }
        };
        let uri: http::Uri = advertise
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("cluster.advertise: bad URL {advertise}")))?;
        if uri.scheme_str() != Some("http")
            || uri.authority().is_none()
            || uri.path().len() > 1
            || uri.query().is_some()
        {
            return Err(ConfigError::Invalid(format!(
                "cluster.advertise must be http://host:port, not {advertise}"
            )));
        }
        Ok(advertise)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The directory over the shared database.
pub struct DbDirectory {
    pub db: Db,
}

impl Directory for DbDirectory {
    fn locate(&self, stream: &str) -> BoxFuture<'static, Result<Option<Location>, String>> {
        let db = self.db.clone();
        let stream = stream.to_string();
        Box::pin(async move {
            let found = db
                .cluster_locate(&stream, now_ms())
                .await
                .map_err(|e| e.to_string())?;
            Ok(found.map(|(m, instance)| Location {
                member: Member {
                    id: m.id,
                    advertise: m.advertise,
                },
                instance: instance.max(0) as u64,
            }))
        })
    }

    fn members(&self) -> BoxFuture<'static, Result<Vec<Member>, String>> {
        let db = self.db.clone();
        Box::pin(async move {
            let all = db
                .cluster_members(now_ms())
                .await
                .map_err(|e| e.to_string())?;
            Ok(all
                .into_iter()
                .map(|m| Member {
                    id: m.id,
                    advertise: m.advertise,
                })
                .collect())
        })
    }
}

/// A node id: unique per process start.
pub fn new_node_id() -> String {
    format!("n{:x}-{}", now_ms(), std::process::id())
}

/// Registers the node and keeps its registration and stream list current
/// until `stop` turns true; then removes both (a clean stop).
pub async fn run_membership(
    db: Db,
    node: String,
    advertise: String,
    settings: ClusterSettings,
    live: LiveRegistry,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let ttl = (settings.expiry_s * 1000.0) as i64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(settings.heartbeat_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changes = live.subscribe_changes();
    let mut failing = false;
    tracing::info!(node, advertise, "joined the origin cluster");
    loop {
        let now = now_ms();
        let streams: Vec<(String, i64)> = live
            .live_streams()
            .into_iter()
            .map(|(s, i)| (s, i64::try_from(i).unwrap_or(i64::MAX)))
            .collect();
        let result = async {
            db.cluster_heartbeat(&node, &advertise, now, ttl).await?;
            db.cluster_set_streams(&node, &streams, now).await
        }
        .await;
        match result {
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot renew the cluster registration (logged once until it works again)");
            }
            Ok(()) if failing => {
                failing = false;
                tracing::info!("cluster registration renewed again");
            }
            _ => {}
        }
        tokio::select! {
            _ = tick.tick() => {}
            r = changes.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    if let Err(e) = db.cluster_leave(&node).await {
        tracing::warn!(error = %e, "could not leave the cluster cleanly; the registration expires by itself");
    }
}

/// The pull middleware's state for this node.
pub fn puller(
    node: String,
    key: [u8; 32],
    settings: &ClusterSettings,
    db: Db,
    live: LiveRegistry,
    protection: Option<Arc<vela_origin::protect::Protection>>,
) -> vela_origin::cluster::Cluster {
    let mut cfg = vela_origin::cluster::ClusterConfig::new(node, key);
    cfg.media_cache_bytes = settings.media_cache_mb << 20;
    vela_origin::cluster::Cluster::new(cfg, Arc::new(DbDirectory { db }), live, protection)
}
