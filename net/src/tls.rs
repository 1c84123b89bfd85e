//! Server certificates for every TLS listener (RTMPS, HTTPS, HTTP/3), and
//! their reload.
//!
//! One [`CertStore`] holds the certificate in force behind an `Arc` that a
//! reload swaps; it is the rustls certificate resolver of every listener's
//! [`ServerConfig`] ([`CertStore::server_config`]), so a reload (SIGHUP)
//! reaches RTMPS, HTTPS and HTTP/3 at once, and connections that are already
//! open keep the certificate they started with. A new certificate that does
//! not load (unreadable, no key, key not matching) leaves the old one in
//! force: [`CertStore::reload`] returns the error and changes nothing.
//!
//! Without a configured certificate, [`CertStore::self_signed`] keeps one in
//! a directory (the data directory's `tls/`): generated once (ECDSA P-256,
//! for `localhost`, `127.0.0.1` and `::1`), then loaded from there at every
//! start, so its SPKI hash ([`CertStore::spki_sha256`], what Chromium's
//! `--ignore-certificate-errors-spki-list` takes) stays the same.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest as _, Sha256};

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
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Where the certificate comes from, and so what a reload reads.
#[derive(Debug, Clone)]
enum Source {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned { dir: PathBuf },
}

/// The certificate in force, swappable; see the module doc.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    source: Source,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a PEM certificate chain and private key and checks that they match.
pub fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
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
    Ok(CertifiedKey::from_der(certs, key, &provider())?)
}

const SELF_SIGNED_CERT: &str = "self-signed.crt";
const SELF_SIGNED_KEY: &str = "self-signed.key";

/// Writes a new self-signed certificate and key into `dir` (key file mode 0600).
fn generate_self_signed(dir: &Path) -> Result<(), TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Vela self-signed");
    // Long-lived: it is pinned by its SPKI hash, not trusted through a CA.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let cert = params.self_signed(&key)?;
    let key_path = dir.join(SELF_SIGNED_KEY);
    let cert_path = dir.join(SELF_SIGNED_CERT);
    // The key first, created private; the certificate's presence marks a
    // complete pair.
    {
        use std::io::Write as _;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&key_path).map_err(io(&key_path))?;
        f.write_all(key.serialize_pem().as_bytes())
            .map_err(io(&key_path))?;
    }
    std::fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
    Ok(())
}

impl CertStore {
    /// A store serving the PEM files `cert` and `key` (reread on reload).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let ck = load_certified_key(cert, key)?;
        Ok(Arc::new(CertStore {
            current: RwLock::new(Arc::new(ck)),
            source: Source::Files {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
        }))
    }

    /// A store serving the self-signed certificate kept in `dir`, generated
    /// there first if it is not there yet. Returns whether it was generated.
    pub fn self_signed(dir: &Path) -> Result<(Arc<Self>, bool), TlsError> {
        let (cert, key) = (dir.join(SELF_SIGNED_CERT), dir.join(SELF_SIGNED_KEY));
        let generated = !cert.exists();
        if generated {
            generate_self_signed(dir)?;
        }
        let ck = load_certified_key(&cert, &key)?;
        Ok((
            Arc::new(CertStore {
                current: RwLock::new(Arc::new(ck)),
                source: Source::SelfSigned {
                    dir: dir.to_path_buf(),
                },
            }),
            generated,
        ))
    }

    /// Whether this is the self-signed certificate of the data directory.
    pub fn is_self_signed(&self) -> bool {
        matches!(self.source, Source::SelfSigned { .. })
    }

    /// The files a reload reads.
    pub fn paths(&self) -> (PathBuf, PathBuf) {
        match &self.source {
            Source::Files { cert, key } => (cert.clone(), key.clone()),
            Source::SelfSigned { dir } => (dir.join(SELF_SIGNED_CERT), dir.join(SELF_SIGNED_KEY)),
        }
    }

    /// The certificate in force.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock still holds a valid Arc.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Rereads the certificate files; on error the certificate in force is
    /// kept. Blocking file I/O: call it from a blocking context.
    pub fn reload(&self) -> Result<(), TlsError> {
        let (cert, key) = self.paths();
        let ck = load_certified_key(&cert, &key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
        Ok(())
    }

    /// Base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo (the
    /// form of Chromium's `--ignore-certificate-errors-spki-list`).
    pub fn spki_sha256(&self) -> Option<String> {
        let current = self.current();
        let spki = current.key.public_key()?;
        Some(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki.as_ref())))
    }

    /// A rustls server configuration (ring, no client authentication)
    /// resolving to this store's certificate, offering `alpn`. `tls13_only`
    /// for QUIC.
    pub fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        tls13_only: bool,
    ) -> Result<ServerConfig, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider());
        let builder = if tls13_only {
            builder.with_protocol_versions(&[&rustls::version::TLS13])?
        } else {
            builder.with_safe_default_protocol_versions()?
        };
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(label: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vela-net-tls-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn self_signed_is_generated_once_and_kept() {
        let dir = temp("self");
        let (a, generated) = CertStore::self_signed(&dir).unwrap();
        assert!(generated);
        let (b, generated) = CertStore::self_signed(&dir).unwrap();
        assert!(!generated);
        let (ha, hb) = (a.spki_sha256().unwrap(), b.spki_sha256().unwrap());
        assert_eq!(ha, hb);
        assert_eq!(ha.len(), 44, "{ha}");
        assert!(a.is_self_signed());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bad_reload_keeps_the_certificate_in_force() {
        let dir = temp("reload");
        let (gen, _) = CertStore::self_signed(&dir).unwrap();
        let (cert, key) = gen.paths();
        let store = CertStore::from_files(&cert, &key).unwrap();
        let before = store.spki_sha256().unwrap();
        std::fs::write(&cert, "garbage\n").unwrap();
        assert!(matches!(store.reload(), Err(TlsError::NoCertificate(_))));
        assert_eq!(store.spki_sha256().unwrap(), before);
        // A new pair replaces it.
        std::fs::remove_file(&cert).unwrap();
        let (fresh, generated) = CertStore::self_signed(&dir).unwrap();
        assert!(generated);
        store.reload().unwrap();
        assert_eq!(store.spki_sha256(), fresh.spki_sha256());
        assert_ne!(store.spki_sha256().unwrap(), before);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (d1, d2) = (temp("k1"), temp("k2"));
        let (s1, _) = CertStore::self_signed(&d1).unwrap();
        let (s2, _) = CertStore::self_signed(&d2).unwrap();
        let (cert, _) = s1.paths();
        let (_, key) = s2.paths();
        assert!(matches!(
            CertStore::from_files(&cert, &key),
            Err(TlsError::Rustls(_))
        ));
        let _ = std::fs::remove_dir_all(&d1);
        let _ = std::fs::remove_dir_all(&d2);
    }

    #[test]
    fn missing_and_empty_pem_files_are_named_errors() {
        let dir = temp("pem");
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a pem file\n").unwrap();
        let missing = dir.join("missing.pem");
        assert!(
            matches!(CertStore::from_files(&missing, &empty), Err(TlsError::Io { path, .. }) if path == missing)
        );
        assert!(
            matches!(CertStore::from_files(&empty, &empty), Err(TlsError::NoCertificate(p)) if p == empty)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
