//! A minimal ISO BMFF box reader and writer, for exactly what the rewriters
//! touch. Reading borrows from the input and never trusts a size field: every
//! box must lie inside its parent, and a malformed one is an error, not a
//! panic. Writing appends to a `Vec` and back-patches sizes on close.

use crate::DrmError;

/// One box as found in a buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawBox<'a> {
    pub kind: [u8; 4],
    /// The whole box, header included.
    pub bytes: &'a [u8],
    /// The body (after the size/type header, and after any largesize).
    pub body: &'a [u8],
    /// Offset of the box within the buffer it was read from.
    pub offset: usize,
}

pub(crate) fn fourcc_str(k: &[u8; 4]) -> String {
    k.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Iterates over the boxes of `buf`, which must be an exact sequence of them.
pub(crate) struct Boxes<'a> {
    buf: &'a [u8],
    at: usize,
    failed: bool,
}

pub(crate) fn boxes(buf: &[u8]) -> Boxes<'_> {
    Boxes {
        buf,
        at: 0,
        failed: false,
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<RawBox<'a>, DrmError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.at..];
        let r = parse_box(rest, self.at);
        match &r {
            Ok(b) => self.at += b.bytes.len(),
            Err(_) => self.failed = true,
        }
        Some(r)
    }
}

fn parse_box(rest: &[u8], offset: usize) -> Result<RawBox<'_>, DrmError> {
    let malformed = |why: &'static str| DrmError::Malformed { what: why, offset };
    if rest.len() < 8 {
        return Err(malformed("box header truncated"));
    }
    let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let kind = [rest[4], rest[5], rest[6], rest[7]];
    let (size, header) = match size32 {
        0 => (rest.len(), 8),
        1 => {
            if rest.len() < 16 {
                return Err(malformed("box largesize truncated"));
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&rest[8..16]);
            let s = u64::from_be_bytes(b);
            (usize::try_from(s).unwrap_or(usize::MAX), 16)
        }
        s => (s as usize, 8),
    };
    if size < header {
        return Err(malformed("box size smaller than its header"));
    }
    if size > rest.len() {
        return Err(malformed("box extends past its parent"));
    }
    Ok(RawBox {
        kind,
        bytes: &rest[..size],
        body: &rest[header..size],
        offset,
    })
}

/// A bounds-checked big-endian reader over a box body.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, at: 0, what }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DrmError> {
        if self.remaining() < n {
            return Err(DrmError::Malformed {
                what: self.what,
                offset: self.at,
            });
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    pub fn u32(&mut self) -> Result<u32, DrmError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Appends boxes to a `Vec<u8>`, back-patching each size when it is closed.
pub(crate) struct Writer {
    pub buf: Vec<u8>,
    open: Vec<usize>,
}

impl Writer {
    pub fn with_capacity(cap: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(cap),
            open: Vec::new(),
        }
    }

    pub fn begin(&mut self, kind: &[u8; 4]) {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(kind);
    }

    pub fn begin_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) {
        self.begin(kind);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
    }

    /// Closes the innermost open box. Sizes above 4 GiB cannot happen for
    /// what Vela writes (a fragment is a few MB), so a 32-bit size suffices.
    pub fn end(&mut self) -> Result<(), DrmError> {
        let start = self
            .open
            .pop()
            .ok_or(DrmError::Internal("unbalanced box"))?;
        let size = u32::try_from(self.buf.len() - start).map_err(|_| DrmError::TooLarge {
            what: "box",
            limit: u32::MAX as usize,
        })?;
        self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
        Ok(())
    }

    pub fn pos(&self) -> usize {
        self.buf.len()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_boxes_past_their_parent() {
        let bad = [0, 0, 0, 20, b'f', b'r', b'e', b'e', 0, 0];
        let r: Vec<_> = boxes(&bad).collect();
        assert!(matches!(r[0], Err(DrmError::Malformed { .. })));
        let tiny = [0, 0, 0, 4, b'f', b'r', b'e', b'e'];
        assert!(boxes(&tiny).next().unwrap().is_err());
        let ok = [
            0, 0, 0, 8, b'f', b'r', b'e', b'e', 0, 0, 0, 0, b'm', b'd', b'a', b't',
        ];
        let r: Vec<_> = boxes(&ok).map(|b| b.unwrap().kind).collect();
        assert_eq!(r, vec![*b"free", *b"mdat"]);
    }

    #[test]
    fn writer_back_patches_nested_sizes() {
        let mut w = Writer::with_capacity(64);
        w.begin(b"moof");
        w.begin_full(b"mfhd", 0, 0);
        w.u32(5);
        w.end().unwrap();
        w.end().unwrap();
        assert_eq!(&w.buf[0..4], &24u32.to_be_bytes());
        assert_eq!(&w.buf[8..12], &16u32.to_be_bytes());
    }
}
