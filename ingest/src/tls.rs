//! RTMPS: loading the server certificate chain and key for tokio-rustls.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no certificate found in the PEM file")]
    NoCertificate(PathBuf),
    #[error("{0}: no private key (PKCS#8, PKCS#1 or SEC1) found in the PEM file")]
    NoKey(PathBuf),
    #[error("certificate and key do not form a valid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads a PEM certificate chain and private key into a rustls server
/// configuration (ring provider, TLS 1.2 and 1.3, no client authentication).
pub fn load_tls_config(
    cert_path: impl AsRef<Path>,
    key_path: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_path = cert_path.as_ref();
    let key_path = key_path.as_ref();
    let open = |p: &Path| {
        File::open(p)
            .map(BufReader::new)
            .map_err(|source| TlsError::Io {
                path: p.to_path_buf(),
                source,
            })
    };
    let certs = rustls_pemfile::certs(&mut open(cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Io {
            path: cert_path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    }
    let key = rustls_pemfile::private_key(&mut open(key_path)?)
        .map_err(|source| TlsError::Io {
            path: key_path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(key_path.to_path_buf()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_pem_files_are_named_errors() {
        let dir = std::env::temp_dir().join(format!("vela-ingest-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a pem file\n").unwrap();
        let missing = dir.join("missing.pem");
        assert!(
            matches!(load_tls_config(&missing, &empty), Err(TlsError::Io { path, .. }) if path == missing)
        );
        assert!(
            matches!(load_tls_config(&empty, &empty), Err(TlsError::NoCertificate(p)) if p == empty)
        );
        let msg = load_tls_config(&empty, &empty).unwrap_err().to_string();
        assert!(msg.contains("empty.pem"), "{msg}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
