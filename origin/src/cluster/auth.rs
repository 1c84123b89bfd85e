//! Authentication of requests between cluster nodes.
//!
//! A node that pulls from a peer signs the request with a key that every
//! node derives from the server key in the shared database:
//! `x-vela-cluster: NODE:UNIX_MS:HMAC`, where HMAC is the hex HMAC-SHA256 of
//! `NODE:UNIX_MS:METHOD:PATH_AND_QUERY`. A peer serves a signed request from
//! its own streams only (never pulls it on: no loops), and refuses a header
//! that does not verify, so nobody without the key can pass as a node.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "x-vela-cluster";

/// How far a signature's time may be from the verifier's clock, milliseconds.
const SKEW_MS: i64 = 30_000;

/// Why a signed request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed cluster signature")]
    Malformed,
    #[error("cluster signature out of its time window")]
    Stale,
    #[error("cluster signature does not verify")]
    Invalid,
}

fn mac(key: &[u8; 32], node: &str, ts: i64, method: &str, path: &str) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(format!("{node}:{ts}:{method}:{path}").as_bytes());
    m
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The header value for a request by `node` at `now_ms`.
pub fn sign(key: &[u8; 32], node: &str, now_ms: i64, method: &str, path: &str) -> String {
    let tag = mac(key, node, now_ms, method, path).finalize().into_bytes();
    format!("{node}:{now_ms}:{}", hex(&tag))
}

/// Checks a header value; returns the signing node's id.
pub fn verify<'v>(
    key: &[u8; 32],
    value: &'v str,
    now_ms: i64,
    method: &str,
    path: &str,
) -> Result<&'v str, AuthError> {
    let mut it = value.rsplitn(3, ':');
    let (tag, ts, node) = match (it.next(), it.next(), it.next()) {
        (Some(t), Some(ts), Some(n)) if !n.is_empty() && n.len() <= 64 => (t, ts, n),
        _ => return Err(AuthError::Malformed),
    };
    let ts: i64 = ts.parse().map_err(|_| AuthError::Malformed)?;
    let tag = unhex(tag).ok_or(AuthError::Malformed)?;
    if (now_ms - ts).abs() > SKEW_MS {
        return Err(AuthError::Stale);
    }
    mac(key, node, ts, method, path)
        .verify_slice(&tag)
        .map_err(|_| AuthError::Invalid)?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_request_and_key() {
        let key = [7u8; 32];
        let v = sign(
            &key,
            "node-a",
            1_000_000,
            "GET",
            "/live/s/v1/index.m3u8?_HLS_msn=3",
        );
        assert_eq!(
            verify(
                &key,
                &v,
                1_000_500,
                "GET",
                "/live/s/v1/index.m3u8?_HLS_msn=3"
            ),
            Ok("node-a")
        );
        assert_eq!(
            verify(
                &key,
                &v,
                1_000_500,
                "GET",
                "/live/s/v1/index.m3u8?_HLS_msn=4"
            ),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            verify(
                &[8u8; 32],
                &v,
                1_000_500,
                "GET",
                "/live/s/v1/index.m3u8?_HLS_msn=3"
            ),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            verify(
                &key,
                &v,
                1_100_000,
                "GET",
                "/live/s/v1/index.m3u8?_HLS_msn=3"
            ),
            Err(AuthError::Stale)
        );
        for bad in ["", "x", "a:b:c", "a:1:zz", ":1:00"] {
            assert_eq!(
                verify(&key, bad, 1_000_000, "GET", "/"),
                Err(AuthError::Malformed),
                "{bad}"
            );
        }
    }
}
