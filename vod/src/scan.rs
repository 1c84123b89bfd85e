//! Box headers: the top-level scan of the file (finds `moov`, seeks over
//! `mdat`) and the child walk inside the `moov` bytes.

use crate::{ReadAt, VodError};

/// The largest `moov` read into memory. A 2-hour asset's is a few MB; the
/// cap keeps a forged size from sizing an allocation.
pub const MAX_MOOV: u64 = 256 << 20;

/// A box found in a buffer: positions are relative to that buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxRef {
    pub kind: [u8; 4],
    /// Offset of the header.
    pub start: usize,
    /// Offset of the body (after size, type and any 64-bit size).
    pub body: usize,
    /// One past the last byte.
    pub end: usize,
}

/// The `moov` of a file: its bytes and where they are.
pub struct MoovBytes {
    /// File offset of the `moov` body's first byte.
    pub body_offset: u64,
    pub body: Vec<u8>,
    pub file_len: u64,
}

fn read<R: ReadAt + ?Sized>(
    src: &R,
    buf: &mut [u8],
    offset: u64,
    what: &'static str,
) -> Result<(), VodError> {
    src.read_exact_at(buf, offset)
        .map_err(|source| VodError::Io {
            what,
            offset,
            source,
        })
}

/// Walks the top-level boxes and reads the `moov` body.
pub fn find_moov<R: ReadAt + ?Sized>(src: &R) -> Result<MoovBytes, VodError> {
    let file_len = src.size().map_err(|source| VodError::Io {
        what: "file length",
        offset: 0,
        source,
    })?;
    let mut offset = 0u64;
    while file_len.saturating_sub(offset) >= 8 {
        let mut hdr = [0u8; 16];
        let avail = (file_len - offset).min(16) as usize;
        read(src, &mut hdr[..avail], offset, "box header")?;
        let size32 = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let kind = [hdr[4], hdr[5], hdr[6], hdr[7]];
        let (size, header_len) = match size32 {
            0 => (file_len - offset, 8u64),
            1 => {
                if avail < 16 {
                    return Err(VodError::bad_box(&kind, offset, "64-bit size past EOF"));
                }
                let large = u64::from_be_bytes(hdr[8..16].try_into().expect("8 bytes"));
                (large, 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header_len {
            return Err(VodError::bad_box(
                &kind,
                offset,
                format!("size {size} is smaller than its header"),
            ));
        }
        let end = offset.checked_add(size);
        if &kind == b"moov" {
            if end.is_none_or(|e| e > file_len) {
                return Err(VodError::MoovPastEof {
                    offset,
                    size,
                    file_len,
                });
            }
            let body_len = size - header_len;
            if body_len > MAX_MOOV {
                return Err(VodError::TooLarge {
                    what: "moov",
                    size: body_len,
                    limit: MAX_MOOV,
                });
            }
            let mut body = vec![0u8; body_len as usize];
            read(src, &mut body, offset + header_len, "moov")?;
            return Ok(MoovBytes {
                body_offset: offset + header_len,
                body,
                file_len,
            });
        }
        match end {
            // A box (a truncated mdat) that runs past the end: nothing after it.
            Some(e) if e <= file_len => offset = e,
            _ => break,
        }
    }
    Err(VodError::NoMoov)
}

/// The child boxes of `buf[range]`; `base` is the file offset of `buf[0]`, for
/// error messages.
pub fn children(buf: &[u8], from: usize, to: usize, base: u64) -> Result<Vec<BoxRef>, VodError> {
    let mut out = Vec::new();
    let mut pos = from;
    while to.saturating_sub(pos) >= 8 {
        let size32 = u32::from_be_bytes(buf[pos..pos + 4].try_into().expect("4 bytes"));
        let kind: [u8; 4] = buf[pos + 4..pos + 8].try_into().expect("4 bytes");
        let at = base + pos as u64;
        let (size, header_len) = match size32 {
            0 => ((to - pos) as u64, 8usize),
            1 => {
                if to - pos < 16 {
                    return Err(VodError::bad_box(&kind, at, "64-bit size past its parent"));
                }
                let large = u64::from_be_bytes(buf[pos + 8..pos + 16].try_into().expect("8"));
                (large, 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header_len as u64 || size > (to - pos) as u64 {
            return Err(VodError::bad_box(
                &kind,
                at,
                format!(
                    "size {size} does not fit its parent ({} bytes left)",
                    to - pos
                ),
            ));
        }
        let end = pos + size as usize;
        out.push(BoxRef {
            kind,
            start: pos,
            body: pos + header_len,
            end,
        });
        // Capped: a moov of 256 MiB holds at most 32 Mi boxes of 8 bytes.
        pos = end;
    }
    Ok(out)
}

/// The first child of `parent` of a kind.
pub fn child(
    buf: &[u8],
    parent: &BoxRef,
    kind: &[u8; 4],
    base: u64,
) -> Result<Option<BoxRef>, VodError> {
    Ok(children(buf, parent.body, parent.end, base)?
        .into_iter()
        .find(|b| &b.kind == kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn moov_after_mdat_is_found() {
        let mut f = boxed(b"ftyp", b"isom\0\0\0\0");
        f.extend(boxed(b"mdat", &[7u8; 1000]));
        f.extend(boxed(b"moov", b"abcd"));
        let m = find_moov(&f).unwrap();
        assert_eq!(m.body, b"abcd");
        assert_eq!(m.body_offset, f.len() as u64 - 4);
    }

    #[test]
    fn moov_size_past_eof() {
        let mut f = boxed(b"ftyp", b"isom\0\0\0\0");
        let mut moov = boxed(b"moov", b"abcd");
        moov[..4].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        f.extend(moov);
        assert!(matches!(find_moov(&f), Err(VodError::MoovPastEof { .. })));
    }

    #[test]
    fn no_moov() {
        let f = boxed(b"mdat", &[0u8; 64]);
        assert!(matches!(find_moov(&f), Err(VodError::NoMoov)));
        assert!(matches!(find_moov(&[0u8; 3][..]), Err(VodError::NoMoov)));
    }

    #[test]
    fn child_overrunning_its_parent() {
        let mut inner = boxed(b"trak", b"xyz");
        inner[..4].copy_from_slice(&100u32.to_be_bytes());
        assert!(children(&inner, 0, inner.len(), 0).is_err());
    }
}
