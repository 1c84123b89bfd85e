//! `[storage]` and `[recording]`: where content is kept (the data directory, or an
//! S3-compatible bucket shared by every node), and the glue that lets the media
//! side's recorder create and complete media entries through the control plane.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use vela_control_plane::recording::RecordingError;
use vela_control_plane::ControlPlane;
use vela_origin::record::{CompleteError, RecordingCatalog};

use crate::config::ConfigError;

/// `[storage]`: where media entries' content (uploads and recordings) is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `local` (the data directory) or `s3` (an S3-compatible bucket shared by
    /// every node; the data directory then holds a cache).
    pub backend: String,
    /// S3 endpoint URL (`http://127.0.0.1:8333`); absent for AWS.
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub region: String,
    /// Credentials; absent: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Virtual-host addressing (`BUCKET.host`); default path-style (`host/BUCKET`).
    pub virtual_hosted: bool,
    /// Attempts per request before giving up (with exponential backoff).
    pub max_retries: usize,
    pub request_timeout_s: f64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: "local".into(),
            endpoint: None,
            bucket: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            virtual_hosted: false,
            max_retries: 5,
            request_timeout_s: 30.0,
        }
    }
}

impl StorageConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.backend.as_str() {
            "local" => Ok(()),
            "s3" if self.bucket.as_deref().is_some_and(|b| !b.is_empty()) => {
                if !(0.5..=600.0).contains(&self.request_timeout_s) {
                    return Err(ConfigError::Invalid(
                        "storage.request_timeout_s must be between 0.5 and 600".into(),
                    ));
                }
                Ok(())
            }
            "s3" => Err(ConfigError::Invalid(
                "storage.backend = \"s3\" needs storage.bucket".into(),
            )),
            other => Err(ConfigError::Invalid(format!(
                "storage.backend: expected \"local\" or \"s3\", got {other:?}"
            ))),
        }
    }

    /// The shared backend, if any (`None`: local only).
    pub fn shared_backend(&self) -> Option<vela_storage::Backend> {
        (self.backend == "s3").then(|| {
            vela_storage::Backend::S3(vela_storage::S3Config {
                endpoint: self.endpoint.clone(),
                bucket: self.bucket.clone().unwrap_or_default(),
                region: self.region.clone(),
                access_key_id: self.access_key_id.clone(),
                secret_access_key: self.secret_access_key.clone(),
                virtual_hosted: self.virtual_hosted,
                max_retries: self.max_retries,
                request_timeout: Duration::from_secs_f64(self.request_timeout_s),
            })
        })
    }
}

/// `[recording]`: live-to-VOD.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingSettings {
    /// Record open-mode streams too (live entries record when their `recording` is on).
    pub open_streams: bool,
    /// The partner that owns recordings of open-mode streams.
    pub open_partner_id: i64,
    /// A long stream is recorded in pieces of at most this many seconds, each its own
    /// media entry (cut at a keyframe).
    pub piece_s: f64,
    /// Recordings are deleted this many days after they complete (absent: kept).
    pub retention_days: Option<f64>,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        RecordingSettings {
            open_streams: false,
            open_partner_id: 1,
            piece_s: 4.0 * 3600.0,
            retention_days: None,
        }
    }
}

impl RecordingSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(10.0..=7.0 * 86_400.0).contains(&self.piece_s) {
            return Err(ConfigError::Invalid(
                "recording.piece_s must be between 10 and 604800".into(),
            ));
        }
        if let Some(d) = self.retention_days {
            if !(0.0001..=36_500.0).contains(&d) {
                return Err(ConfigError::Invalid(
                    "recording.retention_days must be between 0.0001 and 36500".into(),
                ));
            }
        }
        if self.open_partner_id < 1 {
            return Err(ConfigError::Invalid(
                "recording.open_partner_id must be a partner id".into(),
            ));
        }
        Ok(())
    }

    pub fn config(&self, data: &Path) -> vela_origin::record::RecordingConfig {
        vela_origin::record::RecordingConfig {
            dir: recordings_dir(data),
            piece: Duration::from_secs_f64(self.piece_s),
        }
    }
}

/// Pieces being recorded: `DATA/recordings/ENTRY.N/`.
pub fn recordings_dir(data: &Path) -> PathBuf {
    data.join("recordings")
}

/// The recorder's catalog: media entries of the control plane.
pub struct EntryRecordings {
    pub cp: ControlPlane,
    pub settings: RecordingSettings,
}

impl RecordingCatalog for EntryRecordings {
    fn begin<'a>(&'a self, stream: &'a str, piece: u32) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let open = self
                .settings
                .open_streams
                .then_some(self.settings.open_partner_id);
            match self.cp.begin_recording(stream, piece, open).await {
                Ok(id) => id,
                Err(e) => {
                    tracing::error!(stream, error = %e, "cannot create the recording's entry; not recording");
                    None
                }
            }
        })
    }

    fn complete<'a>(
        &'a self,
        entry: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<(), CompleteError>> {
        Box::pin(async move {
            let retention = self
                .settings
                .retention_days
                .map(|d| Duration::from_secs_f64(d * 86_400.0));
            self.cp
                .complete_recording(entry, file, retention)
                .await
                .map_err(|e| CompleteError {
                    retry: matches!(e, RecordingError::Db { .. } | RecordingError::Store { .. }),
                    reason: e.to_string(),
                })
        })
    }

    fn fail<'a>(&'a self, entry: &'a str, reason: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.cp.fail_recording(entry, reason))
    }
}

/// The shared media store of `[storage]`, if it names one.
pub async fn media_store(
    data: &Path,
    storage: &StorageConfig,
) -> anyhow::Result<Option<Arc<dyn vela_control_plane::MediaStore>>> {
    let Some(backend) = storage.shared_backend() else {
        return Ok(None);
    };
    let shared = vela_storage::Storage::open(backend).await?;
    tracing::info!(
        storage = shared.describe(),
        "media content is shared through object storage"
    );
    let store =
        vela_control_plane::shared_store::SharedMediaStore::open(data.join("media"), shared)
            .await?;
    Ok(Some(Arc::new(store)))
}
