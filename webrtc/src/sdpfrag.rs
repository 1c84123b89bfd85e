//! The trickle ICE SDP fragment (RFC 8840, `application/trickle-ice-sdpfrag`)
//! of a WHIP `PATCH`: the candidates a publisher found after its offer.
//!
//! Only what Vela uses is read: `a=ice-ufrag`, `a=ice-pwd` (kept to tell an
//! ICE restart apart) and `a=candidate` lines, each parsed by str0m's ICE
//! candidate parser. Everything else (`m=`, `a=mid`, `a=end-of-candidates`)
//! is skipped. Counts and lengths are capped: the body is already at most
//! [`crate::whip::MAX_OFFER`] bytes, and at most [`MAX_CANDIDATES`] are kept.

use str0m::Candidate;

/// Most candidates taken from one fragment.
pub const MAX_CANDIDATES: usize = 64;

/// A parsed fragment.
#[derive(Debug, Default)]
pub struct Fragment {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("line {line}: not an SDP line")]
    NotSdp { line: usize },
    #[error("line {line}: bad candidate: {reason}")]
    BadCandidate { line: usize, reason: String },
    #[error("more than {MAX_CANDIDATES} candidates")]
    TooManyCandidates,
}

/// Parses a trickle ICE fragment.
pub fn parse(text: &str) -> Result<Fragment, FragmentError> {
    let mut f = Fragment::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(FragmentError::NotSdp { line: i + 1 });
        }
        if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            f.ufrag = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
            f.pwd = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("a=") {
            if v.starts_with("candidate:") {
                if f.candidates.len() >= MAX_CANDIDATES {
                    return Err(FragmentError::TooManyCandidates);
                }
                let c = Candidate::from_sdp_string(v).map_err(|e| FragmentError::BadCandidate {
                    line: i + 1,
                    reason: e.to_string(),
                })?;
                f.candidates.push(c);
            }
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_candidates_and_credentials() {
        let frag = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
                    a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n\
                    a=candidate:3471623853 1 udp 2122194687 198.51.100.1 61765 typ host generation 0 ufrag EsAw network-id 2\r\n\
                    a=end-of-candidates\r\n";
        let f = parse(frag).unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.pwd.as_deref(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        assert_eq!(f.candidates.len(), 2);
        assert_eq!(f.candidates[1].addr().to_string(), "198.51.100.1:61765");
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(
            parse("hello"),
            Err(FragmentError::NotSdp { line: 1 })
        ));
        assert!(matches!(
            parse("a=candidate:1 1 udp nonsense"),
            Err(FragmentError::BadCandidate { line: 1, .. })
        ));
        let many =
            "a=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\n".repeat(MAX_CANDIDATES + 1);
        assert_eq!(parse(&many).unwrap_err(), FragmentError::TooManyCandidates);
        assert!(parse("").unwrap().candidates.is_empty());
    }
}
