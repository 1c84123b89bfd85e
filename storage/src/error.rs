//! Errors, with a stable `kind()` for metric labels. Messages name the key and
//! the backend (as `Storage::describe` does), never credentials.

use std::io;

/// What went wrong with a storage operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key (or segment) is not a valid [`Key`](crate::Key).
    #[error("invalid storage key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// No object at that key.
    #[error("{backend}: no object {key}")]
    NotFound { key: String, backend: String },
    /// Refused: HTTP 401/403 (wrong or missing credentials, no permission)
    /// or a local permission error.
    #[error("{backend}: access to {key} denied: {message}")]
    Denied {
        key: String,
        backend: String,
        message: String,
    },
    /// The backend cannot be reached or keeps failing: connection refused,
    /// timeouts, 5xx after the retries.
    #[error("{backend}: unavailable for {key}: {message}")]
    Unavailable {
        key: String,
        backend: String,
        message: String,
    },
    /// Out of space: ENOSPC/EDQUOT locally, a quota on S3.
    #[error("{backend}: no space for {key}: {message}")]
    Full {
        key: String,
        backend: String,
        message: String,
    },
    /// Any other local I/O error.
    #[error("{backend}: I/O error on {key}: {source}")]
    Io {
        key: String,
        backend: String,
        #[source]
        source: io::Error,
    },
    /// Anything else (a malformed response, a configuration error, ...).
    #[error("{backend}: {key}: {message}")]
    Other {
        key: String,
        backend: String,
        message: String,
    },
}

impl StorageError {
    /// A short label for metrics: `invalid_key`, `not_found`, `denied`,
    /// `unavailable`, `full`, `io` or `other`.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageError::InvalidKey { .. } => "invalid_key",
            StorageError::NotFound { .. } => "not_found",
            StorageError::Denied { .. } => "denied",
            StorageError::Unavailable { .. } => "unavailable",
            StorageError::Full { .. } => "full",
            StorageError::Io { .. } => "io",
            StorageError::Other { .. } => "other",
        }
    }

    /// Whether trying again later may succeed (the backend was down or
    /// overloaded, or the I/O error was transient). The S3 backend has
    /// already retried with backoff before returning such an error.
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Unavailable { .. } => true,
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::ResourceBusy
            ),
            _ => false,
        }
    }

    /// Maps a local I/O error on `key`.
    pub(crate) fn from_io(key: &str, backend: &str, e: io::Error) -> StorageError {
        let (key, backend) = (key.to_owned(), backend.to_owned());
        match e.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound { key, backend },
            io::ErrorKind::PermissionDenied => StorageError::Denied {
                key,
                backend,
                message: e.to_string(),
            },
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StorageError::Full {
                key,
                backend,
                message: e.to_string(),
            },
            _ => StorageError::Io {
                key,
                backend,
                source: e,
            },
        }
    }
}
