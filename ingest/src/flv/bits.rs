//! A bounds-checked MSB-first bit reader for parameter sets, and the removal
//! of emulation-prevention bytes from H.264/H.265 NAL units.

use super::FlvError;

/// Reads bits MSB first; every read past the end is an error, never a panic.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
    /// What is being parsed, for error messages.
    what: &'static str,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        BitReader { data, pos: 0, what }
    }

    fn err(&self, reason: &'static str) -> FlvError {
        FlvError::Bitstream {
            what: self.what,
            reason,
        }
    }

    pub(crate) fn bit(&mut self) -> Result<bool, FlvError> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| self.err("ends early"))?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(b == 1)
    }

    /// Up to 32 bits as an unsigned value.
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32, FlvError> {
        debug_assert!(n <= 32);
        let mut v: u32 = 0;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Ok(v)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), FlvError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.err("ends early"))?;
        if end > self.data.len() * 8 {
            return Err(self.err("ends early"));
        }
        self.pos = end;
        Ok(())
    }

    /// Unsigned exp-Golomb (`ue(v)`), limited to 32-bit values.
    pub(crate) fn ue(&mut self) -> Result<u32, FlvError> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(self.err("exp-Golomb code longer than 32 bits"));
            }
        }
        let rest = self.bits(zeros)?;
        // 2^zeros - 1 + rest fits u32 because zeros <= 31.
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    /// Signed exp-Golomb (`se(v)`).
    pub(crate) fn se(&mut self) -> Result<i32, FlvError> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }

    /// AV1 `uvlc()`.
    pub(crate) fn uvlc(&mut self) -> Result<u32, FlvError> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros >= 32 {
                return Err(self.err("uvlc longer than 32 bits"));
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }
}

/// The RBSP of a NAL unit: `00 00 03` loses its `03`.
pub(crate) fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0usize;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        if b == 0 {
            zeros += 1;
        } else {
            zeros = 0;
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_values() {
        // 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3 ; se: 010 -> +1, 011 -> -1
        let data = [0b1010_0110, 0b0100_0000];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.ue().unwrap(), 0);
        assert_eq!(r.ue().unwrap(), 1);
        assert_eq!(r.ue().unwrap(), 2);
        assert_eq!(r.ue().unwrap(), 3);
        let data = [0b0100_1100];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.se().unwrap(), 1);
        assert_eq!(r.se().unwrap(), -1);
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let mut r = BitReader::new(&[0, 0, 0, 0, 0], "test");
        assert!(r.ue().is_err());
        let mut r = BitReader::new(&[0xff], "test");
        assert!(r.bits(9).is_err());
        assert!(r.skip(usize::MAX).is_err());
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
    }
}
