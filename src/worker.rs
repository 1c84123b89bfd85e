//! Batch job workers: the `[jobs]` and `[outbound]` settings, the workers `vela serve`
//! runs, and `vela worker` (workers only, no listeners) for separate batch nodes on
//! the same PostgreSQL and storage (docs/jobs.md).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use vela_control_plane::jobs::{import::ImportLimits, JobsConfig, OutboundConfig};
use vela_control_plane::{ControlPlane, ControlPlaneConfig};

use crate::config::{self, ConfigError, FileConfig};

/// `[jobs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSettings {
    /// Whether `vela serve` runs workers too.
    #[serde(default = "yes")]
    pub run_in_serve: bool,
    /// Concurrent jobs per type on each process, e.g. `{ import = 2, noop = 4 }`;
    /// types not named keep their default.
    #[serde(default)]
    pub concurrency: BTreeMap<String, usize>,
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    #[serde(default = "default_lease_s")]
    pub lease_s: f64,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: i64,
    #[serde(default = "default_backoff_s")]
    pub backoff_s: f64,
    #[serde(default = "default_backoff_max_s")]
    pub backoff_max_s: f64,
    /// Import downloads.
    #[serde(default = "default_import_timeout_s")]
    pub import_timeout_s: u64,
    #[serde(default = "default_idle_timeout_s")]
    pub import_idle_timeout_s: u64,
    #[serde(default = "default_redirects")]
    pub import_max_redirects: usize,
}

fn yes() -> bool {
    true
}
fn default_poll_ms() -> u64 {
    500
}
fn default_lease_s() -> f64 {
    30.0
}
fn default_max_attempts() -> i64 {
    3
}
fn default_backoff_s() -> f64 {
    2.0
}
fn default_backoff_max_s() -> f64 {
    300.0
}
fn default_import_timeout_s() -> u64 {
    3600
}
fn default_idle_timeout_s() -> u64 {
    30
}
fn default_redirects() -> usize {
    5
}

impl Default for JobsSettings {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// `[outbound]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSettings {
    /// Let imports reach loopback, link-local and private addresses.
    #[serde(default)]
    pub allow_private: bool,
}

impl JobsSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(format!("jobs.{m}")));
        if !(50..=60_000).contains(&self.poll_ms) {
            return bad("poll_ms must be 50 to 60000");
        }
        if !(1.0..=3600.0).contains(&self.lease_s) {
            return bad("lease_s must be 1 to 3600");
        }
        if !(1..=100).contains(&self.max_attempts) {
            return bad("max_attempts must be 1 to 100");
        }
        if !(0.0..=3600.0).contains(&self.backoff_s)
            || !(0.0..=86400.0).contains(&self.backoff_max_s)
        {
            return bad("backoff_s and backoff_max_s must be 0 to 3600 and 0 to 86400");
        }
        if self.concurrency.values().any(|n| *n > 256) {
            return bad("concurrency must be at most 256 per type");
        }
        if self.import_timeout_s == 0 || self.import_idle_timeout_s == 0 {
            return bad("import timeouts must be positive");
        }
        Ok(())
    }

    pub fn config(&self) -> JobsConfig {
        let mut c = JobsConfig {
            poll: Duration::from_millis(self.poll_ms),
            lease: Duration::from_secs_f64(self.lease_s),
            max_attempts: self.max_attempts,
            backoff_base: Duration::from_secs_f64(self.backoff_s),
            backoff_max: Duration::from_secs_f64(self.backoff_max_s),
            import: ImportLimits {
                total_timeout: Duration::from_secs(self.import_timeout_s),
                idle_timeout: Duration::from_secs(self.import_idle_timeout_s),
                max_redirects: self.import_max_redirects,
                ..Default::default()
            },
            ..Default::default()
        };
        c.concurrency.extend(self.concurrency.clone());
        c
    }
}

impl OutboundSettings {
    pub fn config(&self) -> OutboundConfig {
        OutboundConfig {
            allow_private: self.allow_private,
        }
    }
}

/// `vela worker`'s flags.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// State directory (local media cache, search index) [default: ./vela-data]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// TOML configuration file ([jobs], [outbound], [storage], [vod], [database])
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL (postgres://...), shared with the `vela serve` nodes
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

/// Runs `vela worker`.
pub fn run(args: WorkerArgs) -> ExitCode {
    let file = match args.config.as_deref().map(config::load_file).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("vela: {e}");
            return ExitCode::from(2);
        }
    };
    let checked = file
        .jobs
        .validate()
        .and_then(|_| file.vod.validate())
        .and_then(|_| file.storage.validate());
    if let Err(e) = checked {
        eprintln!("vela: {e}");
        return ExitCode::from(2);
    }
    let database = args.database.clone().or_else(|| file.database.url.clone());
    if !database
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    {
        eprintln!("vela: vela worker needs --database postgres://… (the database the vela serve nodes share)");
        return ExitCode::from(2);
    }
    let data = args
        .data
        .or_else(|| file.data.clone())
        .unwrap_or_else(|| PathBuf::from("./vela-data"));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vela: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(work(data, database, file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vela: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn work(data: PathBuf, database: Option<String>, file: FileConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    let store = crate::recording::media_store(&data, &file.storage)
        .await
        .context("[storage]")?;
    let cp = ControlPlane::open(ControlPlaneConfig {
        data_dir: data.clone(),
        database_url: database,
        publish_mode: Default::default(),
        public_http_base: "http://localhost:8080".into(),
        public_rtmp_base: "rtmp://localhost:1935/live".into(),
        media: vela_control_plane::content::MediaConfig {
            max_upload_bytes: file.vod.max_upload_bytes,
            inspector: Some(crate::media::inspector(crate::serve::vod_limits_index(
                &file.vod,
            ))),
            store,
            ..Default::default()
        },
    })
    .await
    .context("control plane")?;
    cp.set_outbound(file.outbound.config());
    let workers = cp.start_workers(file.jobs.config(), HashMap::new());
    tracing::info!(worker = %workers.id, data = %data.display(), "vela {} worker running (no listeners)", env!("CARGO_PKG_VERSION"));
    crate::serve::shutdown_signal().await;
    tracing::info!("stopping: no new jobs; waiting for running ones");
    workers.stop(Duration::from_secs(5)).await;
    tracing::info!("stopped");
    Ok(())
}
