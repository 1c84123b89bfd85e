//! The server certificate of `vela serve`'s TLS listeners (RTMPS, HTTPS,
//! HTTP/3): the `[tls]` files, or the self-signed one kept in `DATA/tls/`
//! when HTTPS or HTTP/3 is on without `[tls]` (docs/https.md); reloaded on
//! SIGHUP.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use vela_net::tls::CertStore;

use crate::config::TlsConfig;

/// The certificate store, or `None` when no listener needs one.
pub async fn certificates(
    data: &Path,
    tls: Option<&TlsConfig>,
    wanted: bool,
) -> anyhow::Result<Option<Arc<CertStore>>> {
    let store = match tls {
        Some(t) => {
            let (cert, key) = (t.cert.clone(), t.key.clone());
            let store = tokio::task::spawn_blocking(move || CertStore::from_files(&cert, &key))
                .await?
                .context("[tls] certificate")?;
            tracing::info!(
                cert = %t.cert.display(),
                spki_sha256 = store.spki_sha256().unwrap_or_default(),
                "TLS certificate loaded (reloaded on SIGHUP)"
            );
            store
        }
        None if wanted => {
            let dir = data.join("tls");
            let d = dir.clone();
            let (store, generated) =
                tokio::task::spawn_blocking(move || CertStore::self_signed(&d))
                    .await?
                    .with_context(|| format!("self-signed certificate in {}", dir.display()))?;
            tracing::info!(
                cert = %store.paths().0.display(),
                spki_sha256 = store.spki_sha256().unwrap_or_default(),
                "no [tls] certificate: HTTPS and HTTP/3 use the self-signed one {} (browsers reject it; pin it by this SPKI hash, or configure [tls])",
                if generated { "generated now" } else { "kept in the data directory" },
            );
            store
        }
        None => return Ok(None),
    };
    Ok(Some(store))
}

/// Rereads the certificate on every SIGHUP; a certificate that does not load
/// leaves the one in force, with one error line.
pub fn spawn_reload_on_sighup(store: Arc<CertStore>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; certificates will not be reloaded");
                return;
            }
        };
        while hup.recv().await.is_some() {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.reload()).await {
                Ok(Ok(())) => tracing::info!(
                    spki_sha256 = store.spki_sha256().unwrap_or_default(),
                    "SIGHUP: TLS certificate reloaded"
                ),
                Ok(Err(e)) => tracing::error!(
                    error = %e,
                    "SIGHUP: the new TLS certificate does not load; keeping the one in force"
                ),
                Err(e) => tracing::error!(error = %e, "SIGHUP: certificate reload failed"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = store;
}
