//! A bounded AMF0 decoder for commands and metadata.
//!
//! rml_amf0 decodes nested objects recursively without a depth limit (a
//! deeply nested object overflows the stack) and rml_rtmp indexes decoded
//! values without checking their count. So every AMF0 message is decoded
//! here first, with a nesting limit, and only messages that decode cleanly
//! *and* use nothing rml_amf0 rejects are passed on to rml_rtmp
//! ([`Decoded::rml_compatible`]).

#[derive(Debug, Clone, PartialEq)]
pub enum Amf0 {
    Number(f64),
    Bool(bool),
    String(String),
    Object(Vec<(String, Amf0)>),
    Null,
    Undefined,
    StrictArray(Vec<Amf0>),
    Date(f64),
}

impl Amf0 {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A property of an object (or ECMA array, which decodes to an object).
    pub fn get(&self, key: &str) -> Option<&Amf0> {
        match self {
            Amf0::Object(props) => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Amf0Error {
    #[error("AMF0 value truncated at byte {0}")]
    Truncated(usize),
    #[error("AMF0 nesting deeper than {0}")]
    TooDeep(usize),
    #[error("unsupported AMF0 marker {marker:#04x} at byte {offset}")]
    UnsupportedMarker { marker: u8, offset: usize },
    #[error("AMF0 string is not UTF-8 at byte {0}")]
    NotUtf8(usize),
    #[error("malformed AMF0 object end at byte {0}")]
    BadObjectEnd(usize),
}

pub const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub values: Vec<Amf0>,
    /// Only markers rml_amf0 understands were used (no Date, long string,
    /// reference, typed object or AMF3 switch), so rml_rtmp will decode this too.
    pub rml_compatible: bool,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    rml_compatible: bool,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Amf0Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(Amf0Error::Truncated(self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        let b = self.take(8)?;
        Ok(f64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    fn string(&mut self, len: usize) -> Result<String, Amf0Error> {
        let at = self.pos;
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| Amf0Error::NotUtf8(at))
    }

    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            let len = usize::from(self.u16()?);
            if len == 0 {
                let at = self.pos;
                if self.u8()? != 0x09 {
                    return Err(Amf0Error::BadObjectEnd(at));
                }
                return Ok(props);
            }
            let key = self.string(len)?;
            let marker_at = self.pos;
            let marker = self.u8()?;
            if marker == 0x09 {
                return Err(Amf0Error::BadObjectEnd(marker_at));
            }
            let value = self.value(marker, marker_at, depth)?;
            props.push((key, value));
        }
    }

    fn value(&mut self, marker: u8, at: usize, depth: usize) -> Result<Amf0, Amf0Error> {
        if depth > MAX_DEPTH {
            return Err(Amf0Error::TooDeep(MAX_DEPTH));
        }
        Ok(match marker {
            0x00 => Amf0::Number(self.f64()?),
            0x01 => Amf0::Bool(self.u8()? != 0),
            0x02 => {
                let len = usize::from(self.u16()?);
                Amf0::String(self.string(len)?)
            }
            0x03 => Amf0::Object(self.properties(depth + 1)?),
            0x05 => Amf0::Null,
            0x06 => Amf0::Undefined,
            0x08 => {
                self.u32()?; // the associative count is advisory; the object end marker ends it
                Amf0::Object(self.properties(depth + 1)?)
            }
            0x0a => {
                let count = self.u32()?;
                // No preallocation from the count: each element is at least one byte.
                let mut items = Vec::new();
                for _ in 0..count {
                    let item_at = self.pos;
                    let m = self.u8()?;
                    if m == 0x09 {
                        return Err(Amf0Error::BadObjectEnd(item_at));
                    }
                    items.push(self.value(m, item_at, depth + 1)?);
                }
                Amf0::StrictArray(items)
            }
            0x0b => {
                self.rml_compatible = false;
                let ms = self.f64()?;
                self.take(2)?; // time zone, reserved
                Amf0::Date(ms)
            }
            0x0c => {
                self.rml_compatible = false;
                let len = self.u32()? as usize;
                Amf0::String(self.string(len)?)
            }
            other => {
                return Err(Amf0Error::UnsupportedMarker {
                    marker: other,
                    offset: at,
                })
            }
        })
    }
}

/// Decodes a sequence of AMF0 values (a command or data message body).
/// A top-level object-end marker ends the sequence, as in rml_amf0.
pub fn decode_all(data: &[u8]) -> Result<Decoded, Amf0Error> {
    let mut r = Reader {
        data,
        pos: 0,
        rml_compatible: true,
    };
    let mut values = Vec::new();
    while r.pos < data.len() {
        let at = r.pos;
        let marker = r.u8()?;
        if marker == 0x09 {
            break;
        }
        values.push(r.value(marker, at, 0)?);
    }
    Ok(Decoded {
        values,
        rml_compatible: r.rml_compatible,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::rml_amf0::{serialize, Amf0Value};
    use std::collections::HashMap;

    #[test]
    fn decodes_what_rml_amf0_encodes() {
        let mut props = HashMap::new();
        props.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        props.insert("n".to_string(), Amf0Value::Number(2.5));
        let bytes = serialize(&vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(props),
            Amf0Value::Null,
            Amf0Value::Boolean(true),
        ])
        .unwrap();
        let d = decode_all(&bytes).unwrap();
        assert!(d.rml_compatible);
        assert_eq!(d.values[0].as_str(), Some("connect"));
        assert_eq!(d.values[2].get("app").and_then(Amf0::as_str), Some("live"));
        assert_eq!(d.values[2].get("n").and_then(Amf0::as_f64), Some(2.5));
        assert_eq!(d.values[4], Amf0::Bool(true));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_far() {
        let mut bytes = Vec::new();
        for _ in 0..100_000 {
            bytes.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
        }
        assert_eq!(decode_all(&bytes), Err(Amf0Error::TooDeep(MAX_DEPTH)));
    }

    #[test]
    fn truncation_and_lying_counts_are_errors() {
        assert_eq!(
            decode_all(&[0x02, 0x00, 0x05, b'a']),
            Err(Amf0Error::Truncated(3))
        );
        assert!(decode_all(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x05]).is_err());
        assert!(decode_all(&[0x03, 0x00, 0x00, 0x07]).is_err());
        assert!(matches!(
            decode_all(&[0x11]),
            Err(Amf0Error::UnsupportedMarker { .. })
        ));
    }

    #[test]
    fn dates_decode_but_are_not_passed_to_rml() {
        let mut b = vec![0x0b];
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        let d = decode_all(&b).unwrap();
        assert_eq!(d.values, vec![Amf0::Date(1.0)]);
        assert!(!d.rml_compatible);
    }
}
