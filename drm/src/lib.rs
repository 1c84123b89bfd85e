//! Content protection for Vela's CMAF output.
//!
//! Sans-IO except for the key store: every function takes bytes that Vela's
//! packager wrote (`vela_packager::boxes`) and returns protected bytes, so the
//! origin can encrypt on the way out and keep one clear copy of each segment.
//!
//! | module | what |
//! | --- | --- |
//! | [`keystore`] | content keys per stream (and per track kind), CSPRNG-made, persisted 0600, with optional rotation every N segments |
//! | [`hls`] | HLS `METHOD=AES-128`: whole segments/parts in AES-128-CBC + PKCS#7 and the IV rule |
//! | [`cenc`] | ISO/IEC 23001-7 common encryption of fragments (`cenc` AES-CTR, `cbcs` AES-CBC 1:9 pattern) and of init segments (`encv`/`enca` + `sinf`, `pssh`) |
//! | [`pssh`] | PSSH boxes for W3C ClearKey, Widevine, PlayReady, and the manifest values derived from them |
//! | [`clearkey`] | the W3C ClearKey license exchange (JSON in, JSON out) |
//! | [`crypt`] | the AES building blocks (AES-NI detected at run time: CTR on Vela's own 8-block AES-NI loop, the rest on the `aes` crate) |
//!
//! # How the origin uses this
//!
//! ```no_run
//! # fn demo(init: &[u8], frag: &[u8], seg: &[u8], cfg: &vela_media::CodecConfig) -> Result<(), vela_drm::DrmError> {
//! use vela_drm::{cenc, clearkey, hls, pssh, KeyScope, KeyStore, Scheme, SystemId};
//! use vela_media::MediaKind;
//!
//! // Once, at start-up: keys live in DATA/keys/, one JSON file per stream.
//! let keys = KeyStore::open("vela-data/keys", None)?; // or Some(n): rotate every n segments
//!
//! // HLS AES-128: EXT-X-KEY:METHOD=AES-128,URI="<key route>" with no IV
//! // attribute; the origin serves `key.key` (16 raw bytes) at the key route.
//! // One live instance of "stream1" (its timeline); segments from 30 on are listed.
//! let scope = KeyScope { stream: "stream1", timeline: 1_764_000_000_000, oldest_msn: 30 };
//! let key = keys.key(scope, None, 42)?;
//! let enc_segment = hls::encrypt_segment(&key, 42, seg); // also for each part of segment 42
//!
//! // DASH / MSS common encryption: one key per track kind is the usual choice.
//! let vkey = keys.key(scope, Some(MediaKind::Video), 42)?;
//! let systems = [SystemId::ClearKey, SystemId::Widevine, SystemId::PlayReady];
//! let enc_init = cenc::protect_init(init, Scheme::Cenc, &vkey, &systems)?;
//! // `iv_seed` must differ for every fragment under one key: see cenc::protect_fragment.
//! let iv_seed = cenc::iv_seed(1, 42, 0);
//! let enc_frag = cenc::protect_fragment(frag, Scheme::Cenc, &vkey, cfg, iv_seed)?;
//!
//! // Manifest values:
//! let default_kid = pssh::uuid_string(&vkey.kid); // cenc:default_KID
//! let cenc_pssh = pssh::pssh_base64(SystemId::Widevine, Scheme::Cenc, &[vkey.kid]); // <cenc:pssh>
//! let pro = pssh::playready_pro_base64(Scheme::Cenc, &[vkey.kid], None); // <mspr:pro>
//! let (system_id, header) = pssh::smooth_protection_header(&[vkey.kid], None); // MSS
//!
//! // POST /drm/clearkey/license
//! # let body = b"{}";
//! let response = clearkey::license_response(body, |kid| keys.find_by_kid(kid).map(|k| k.key));
//! // Ok(json) -> 200 application/json; Err(e) -> e.status() with e.to_json()
//! # let _ = (enc_segment, enc_init, enc_frag, default_kid, cenc_pssh, pro, system_id, header, response);
//! # Ok(()) }
//! ```
//!
//! HLS `METHOD=SAMPLE-AES` over fMP4 is [`Scheme::Cbcs`] applied with
//! [`cenc::protect_init`] / [`cenc::protect_fragment`], the playlist naming
//! the key with `KEYFORMAT="identity"` and `IV=0x` + the key's constant IV
//! ([`ContentKey::iv`]).
//!
//! Keys never reach a log: [`ContentKey`]'s `Debug` prints the key id only.

mod bmff;
pub mod cenc;
pub mod clearkey;
pub mod crypt;
pub mod fuzzing;
pub mod hls;
pub mod keystore;
pub mod pssh;

pub use keystore::{KeyScope, KeyStore};
pub use pssh::SystemId;

/// Which ISO/IEC 23001-7 protection scheme a CMAF track uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// AES-128-CTR, per-sample 8-byte IVs, full subsample encryption of
    /// video slice data. DASH's default; Widevine/PlayReady everywhere.
    Cenc,
    /// AES-128-CBC with a constant IV, 1:9 pattern on video, whole blocks on
    /// audio. What FairPlay and HLS `METHOD=SAMPLE-AES` over fMP4 use, and
    /// what recent Widevine/PlayReady clients accept too.
    Cbcs,
}

impl Scheme {
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            Scheme::Cenc => *b"cenc",
            Scheme::Cbcs => *b"cbcs",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Cenc => "cenc",
            Scheme::Cbcs => "cbcs",
        }
    }
}

/// A content key with its id, as the key store hands it out.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey {
    /// The key period this key belongs to (0 without rotation).
    pub period: u64,
    pub kid: [u8; 16],
    pub key: [u8; 16],
    /// Random per key: the 'cbcs' constant IV, and the base from which
    /// 'cenc' per-sample IVs are derived.
    pub iv: [u8; 16],
}

impl std::fmt::Debug for ContentKey {
    // Hand-written so that the key and IV can never be logged by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentKey")
            .field("period", &self.period)
            .field("kid", &pssh::uuid_string(&self.kid))
            .field("key", &"<redacted>")
            .field("iv", &"<redacted>")
            .finish()
    }
}

/// What can go wrong when protecting media or handling keys.
#[derive(Debug, thiserror::Error)]
pub enum DrmError {
    #[error("malformed input: {what} (at byte {offset})")]
    Malformed { what: &'static str, offset: usize },
    #[error("missing box '{what}' in '{parent}'")]
    MissingBox {
        what: &'static str,
        parent: &'static str,
    },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("the input is already protected ({0})")]
    AlreadyProtected(&'static str),
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge { what: &'static str, limit: usize },
    #[error("sample data lies outside the mdat: {0}")]
    SampleRange(String),
    #[error("key store I/O on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} is invalid: {reason}")]
    KeyFile {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("no key for stream {stream:?} timeline {timeline} key period {period}: a newer timeline or the window replaced it")]
    KeyRetired {
        stream: String,
        timeline: u64,
        period: u64,
    },
    #[error("stream name {0:?} is not usable as a key store name")]
    BadStreamName(String),
    #[error("internal: {0}")]
    Internal(&'static str),
}
