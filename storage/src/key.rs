//! Object keys: `a/b/c`, validated so that one names the same object on
//! every backend and can never leave the local root (no `..`, no absolute
//! paths, no separators or NULs inside a segment).

use std::fmt;

use crate::StorageError;

/// Longest segment, in bytes (all characters allowed are ASCII).
pub const MAX_SEGMENT_LEN: usize = 128;
/// Most segments in one key: keeps local paths well under PATH_MAX.
pub const MAX_SEGMENTS: usize = 16;

/// A validated object key: `/`-separated segments of 1..=128 characters of
/// `[A-Za-z0-9._-]`, none starting with `.` (so neither `.` nor `..`, and no
/// hidden names: the local backend keeps its temporary files under names
/// starting with `.`, which no key can reach).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Key(String);

fn invalid(key: &str, reason: &'static str) -> StorageError {
    // Show at most a bounded, escaped part of a bad key in messages and logs.
    let mut shown: String = key
        .chars()
        .take(80)
        .flat_map(char::escape_default)
        .collect();
    if key.chars().count() > 80 {
        shown.push('…');
    }
    StorageError::InvalidKey { key: shown, reason }
}

fn check_segment(whole: &str, segment: &str) -> Result<(), StorageError> {
    if segment.is_empty() {
        return Err(invalid(whole, "empty segment"));
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return Err(invalid(whole, "segment longer than 128 characters"));
    }
    if segment.starts_with('.') {
        return Err(invalid(whole, "segment starts with '.'"));
    }
    if !segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            whole,
            "segment has a character outside [A-Za-z0-9._-]",
        ));
    }
    Ok(())
}

impl Key {
    /// A key from its segments, each checked.
    pub fn new(segments: &[&str]) -> Result<Key, StorageError> {
        let joined = segments.join("/");
        if segments.is_empty() {
            return Err(invalid(&joined, "no segments"));
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(invalid(&joined, "more than 16 segments"));
        }
        for s in segments {
            check_segment(&joined, s)?;
        }
        Ok(Key(joined))
    }

    /// Parses `a/b/c`: no leading, trailing or doubled `/`.
    pub fn parse(s: &str) -> Result<Key, StorageError> {
        if s.is_empty() {
            return Err(invalid(s, "empty key"));
        }
        // Bound the work before splitting arbitrary input.
        if s.len() > MAX_SEGMENTS * (MAX_SEGMENT_LEN + 1) {
            return Err(invalid(s, "key too long"));
        }
        let mut n = 0;
        for segment in s.split('/') {
            n += 1;
            if n > MAX_SEGMENTS {
                return Err(invalid(s, "more than 16 segments"));
            }
            check_segment(s, segment)?;
        }
        Ok(Key(s.to_owned()))
    }

    /// The key as `a/b/c`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This key with one more segment.
    pub fn child(&self, segment: &str) -> Result<Key, StorageError> {
        let joined = format!("{}/{}", self.0, segment);
        if self.segments().count() >= MAX_SEGMENTS {
            return Err(invalid(&joined, "more than 16 segments"));
        }
        check_segment(&joined, segment)?;
        Ok(Key(joined))
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_keys() {
        let k = Key::parse("vod/asset-1/seg_0001.m4s").unwrap();
        assert_eq!(k.as_str(), "vod/asset-1/seg_0001.m4s");
        assert_eq!(k.to_string(), "vod/asset-1/seg_0001.m4s");
        assert_eq!(Key::new(&["vod", "asset-1", "seg_0001.m4s"]).unwrap(), k);
        assert_eq!(
            Key::parse("vod").unwrap().child("a.b").unwrap().as_str(),
            "vod/a.b"
        );
        assert!(Key::parse(&"a".repeat(128)).is_ok());
        assert_eq!(k.segments().count(), 3);
    }

    #[test]
    fn rejects_traversal_and_odd_input() {
        let bad = [
            "", ".", "..", "a/../b", "a/./b", "../a", "a/..", "/abs", "/", "a/", "a//b", "a\\b",
            "..\\a", "a\0b", "\0", ".hidden", "a/.tmp-1", "a b", "a:b", "é", "a/b\n", "%2e%2e",
        ];
        for s in bad {
            let e = Key::parse(s).expect_err(s);
            assert_eq!(e.kind(), "invalid_key", "{s:?}");
        }
        assert!(Key::parse(&"a".repeat(129)).is_err());
        assert!(Key::parse("a/".repeat(16).trim_end_matches('/')).is_ok());
        assert!(Key::parse("a/".repeat(17).trim_end_matches('/')).is_err());
        assert!(Key::parse(&"x".repeat(1 << 20)).is_err());
        assert!(Key::new(&[]).is_err());
        assert!(Key::new(&["a", ".."]).is_err());
        assert!(Key::new(&["a/b"]).is_err());
        assert!(Key::new(&[""]).is_err());
        let k = Key::parse("a").unwrap();
        for s in ["..", ".", "", "b/c", "/", "b\0"] {
            assert!(k.child(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        // A cheap deterministic fuzz: every byte string of a small alphabet
        // rich in separators, dots and multi-byte characters.
        let alphabet = ["a", ".", "/", "\\", "\0", "é", "-", "€", "\u{10FFFF}"];
        let mut stack = vec![String::new()];
        while let Some(s) = stack.pop() {
            let r = Key::parse(&s);
            if let Ok(k) = &r {
                assert_eq!(&Key::parse(k.as_str()).unwrap(), k);
                assert!(k.segments().all(|seg| seg != "." && seg != ".."));
            } else if let Err(e) = r {
                let _ = e.to_string();
            }
            if s.chars().count() < 5 {
                for c in alphabet {
                    stack.push(format!("{s}{c}"));
                }
            }
        }
    }
}
