//! RTMPS: the server certificate for tokio-rustls. Loading (and reloading)
//! lives in [`vela_net::tls`], shared with HTTPS and HTTP/3; `vela serve`
//! builds RTMPS's configuration from its [`vela_net::tls::CertStore`] so a
//! SIGHUP reload reaches RTMPS too.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
pub use vela_net::tls::TlsError;

/// Loads a PEM certificate chain and private key into a rustls server
/// configuration (ring provider, TLS 1.2 and 1.3, no client authentication).
pub fn load_tls_config(
    cert_path: impl AsRef<Path>,
    key_path: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let store = vela_net::tls::CertStore::from_files(cert_path.as_ref(), key_path.as_ref())?;
    Ok(Arc::new(store.server_config(&[], false)?))
}
