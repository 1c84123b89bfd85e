//! Playback authorisation: streams that require a signed, expiring token.
//!
//! A viewer gets a token from the control plane and opens the manifest with
//! `?token=T`. The manifest then hands the token on in every URL it writes:
//! media playlists and segments live under `/live/S/t/T/…` (so the relative
//! URIs inside an HLS media playlist, the MPD's `BaseURL` and Smooth's URL
//! template all carry it without rewriting), and key and licence URLs get
//! `?token=T`. Every request for a protected stream's media, keys or
//! licences is checked; the check itself (signature, expiry, stream) is the
//! [`PlaybackGate`]'s, which the binary answers with the control plane's key.

use std::sync::Arc;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this stream needs a playback token")]
    Missing,
    #[error("malformed playback token")]
    Malformed,
    #[error("playback token not valid for this stream")]
    Invalid,
    #[error("playback token expired")]
    Expired,
}

impl Denied {
    /// The machine-readable code of the JSON error.
    pub fn code(self) -> &'static str {
        match self {
            Denied::Missing => "token_required",
            Denied::Malformed => "token_malformed",
            Denied::Invalid => "token_invalid",
            Denied::Expired => "token_expired",
        }
    }
}

/// Which streams need a token, and whether a token opens a stream.
pub trait PlaybackGate: Send + Sync {
    /// Whether playing `stream` needs a token.
    fn requires_token(&self, stream: &str) -> bool;
    /// Checks `token` for `stream` at `now_s` (unix seconds).
    fn verify(&self, stream: &str, token: &str, now_s: i64) -> Result<(), Denied>;
}

/// The gate as the origin holds it.
pub type SharedGate = Arc<dyn PlaybackGate>;

/// The token a request carries as `token=` in its query, if any.
pub fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|t| !t.is_empty())
}

/// Whether a token may appear in a path segment and a query unescaped: the
/// control plane's tokens are digits, a dot and base64url.
pub fn is_token_shaped(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Checks a request for `stream`: `Ok(None)` when the stream needs no token,
/// `Ok(Some(token))` when it needs one and `token` opens it (the manifests
/// then hand it on).
pub fn check<'t>(
    gate: Option<&SharedGate>,
    stream: &str,
    token: Option<&'t str>,
    now_s: i64,
) -> Result<Option<&'t str>, Denied> {
    let Some(gate) = gate.filter(|g| g.requires_token(stream)) else {
        return Ok(None);
    };
    let token = token.ok_or(Denied::Missing)?;
    if !is_token_shaped(token) {
        return Err(Denied::Malformed);
    }
    gate.verify(stream, token, now_s)?;
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gate for tests: stream "paid" needs token "good.<stream>", which
    /// expires at 100.
    struct Gate;

    impl PlaybackGate for Gate {
        fn requires_token(&self, stream: &str) -> bool {
            stream == "paid"
        }
        fn verify(&self, stream: &str, token: &str, now_s: i64) -> Result<(), Denied> {
            if token != format!("good.{stream}") {
                return Err(Denied::Invalid);
            }
            if now_s >= 100 {
                return Err(Denied::Expired);
            }
            Ok(())
        }
    }

    #[test]
    fn only_streams_that_require_a_token_are_checked() {
        let gate: SharedGate = Arc::new(Gate);
        let g = Some(&gate);
        assert_eq!(check(g, "free", None, 0), Ok(None));
        assert_eq!(check(None, "paid", None, 0), Ok(None));
        assert_eq!(check(g, "paid", None, 0), Err(Denied::Missing));
        assert_eq!(
            check(g, "paid", Some("good.paid"), 5),
            Ok(Some("good.paid"))
        );
        assert_eq!(check(g, "paid", Some("good.free"), 5), Err(Denied::Invalid));
        assert_eq!(
            check(g, "paid", Some("good.paid"), 100),
            Err(Denied::Expired)
        );
        assert_eq!(check(g, "paid", Some("a/b"), 5), Err(Denied::Malformed));
    }

    #[test]
    fn the_token_is_read_from_the_query() {
        assert_eq!(query_token(Some("token=abc")), Some("abc"));
        assert_eq!(
            query_token(Some("_HLS_msn=3&token=1.x_y&_HLS_part=0")),
            Some("1.x_y")
        );
        assert_eq!(query_token(Some("token=")), None);
        assert_eq!(query_token(Some("xtoken=abc")), None);
        assert_eq!(query_token(None), None);
    }
}
