//! One walk over a track's sample tables, used twice: while indexing (tables
//! decoded in memory, every sample checked) and while building a fragment
//! (tables re-read from the file, a window at a time, from a cursor saved in
//! the index).
//!
//! [`Pos`] is the whole walk state before a sample; the index saves one per
//! segment and track, which is what lets it drop the per-sample tables.

use crate::moov::{Sizes, TableLocs, Tables};
use crate::{ReadAt, VodError};

/// The walk state before sample `sample` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub sample: u32,
    /// Source decode time of the sample.
    pub dts: u64,
    pub stts_entry: u32,
    /// Samples of `stts_entry` already walked.
    pub stts_used: u32,
    pub ctts_entry: u32,
    pub ctts_used: u32,
    pub stsc_entry: u32,
    /// The current chunk (0-based); `u32::MAX` before the first sample.
    pub chunk: u32,
    pub chunk_used: u32,
    pub chunk_samples: u32,
    /// Where the next sample of the current chunk starts.
    pub offset: u64,
    /// First `stss` entry not below this sample.
    pub stss_entry: u32,
}

impl Pos {
    pub fn start() -> Pos {
        Pos {
            chunk: u32::MAX,
            ..Pos::default()
        }
    }
}

/// One sample as the tables describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRef {
    pub dts: u64,
    pub duration: u32,
    pub cts: i32,
    pub size: u32,
    pub offset: u64,
    pub sync: bool,
}

/// Table access by entry index; errors name the table.
pub trait Source {
    fn track(&self) -> u32;
    fn sample_count(&self) -> u32;
    fn stts(&mut self, i: u32) -> Result<Option<(u32, u32)>, VodError>;
    /// `Ok(None)`: no ctts box at all; an error past its end.
    fn ctts(&mut self, i: u32) -> Result<Option<(u32, i32)>, VodError>;
    fn has_ctts(&self) -> bool;
    fn stsc(&mut self, i: u32) -> Result<Option<(u32, u32)>, VodError>;
    fn size(&mut self, sample: u32) -> Result<u32, VodError>;
    fn chunk(&mut self, i: u32) -> Result<Option<u64>, VodError>;
    fn has_stss(&self) -> bool;
    fn stss(&mut self, i: u32) -> Result<Option<u32>, VodError>;
}

/// Walks samples from a [`Pos`].
pub struct Walker<S> {
    pub src: S,
    pub pos: Pos,
    file_len: u64,
}

impl<S: Source> Walker<S> {
    pub fn new(src: S, pos: Pos, file_len: u64) -> Self {
        Walker { src, pos, file_len }
    }

    fn err(&self, kind: &'static str, reason: impl Into<String>) -> VodError {
        VodError::table(self.src.track(), kind, reason)
    }

    /// The next sample, or `None` after the last.
    pub fn next_sample(&mut self) -> Result<Option<SampleRef>, VodError> {
        let p = &mut self.pos;
        if p.sample >= self.src.sample_count() {
            return Ok(None);
        }
        // Durations (entries with a zero count are skipped).
        let delta = loop {
            match self.src.stts(p.stts_entry)? {
                Some((count, delta)) if p.stts_used < count => {
                    p.stts_used += 1;
                    break delta;
                }
                Some(_) => {
                    p.stts_entry += 1;
                    p.stts_used = 0;
                }
                None => {
                    let s = p.sample;
                    return Err(self.err("stts", format!("covers {s} samples, fewer than stsz")));
                }
            }
        };
        let cts = if self.src.has_ctts() {
            loop {
                match self.src.ctts(p.ctts_entry)? {
                    Some((count, off)) if p.ctts_used < count => {
                        p.ctts_used += 1;
                        break off;
                    }
                    Some(_) => {
                        p.ctts_entry += 1;
                        p.ctts_used = 0;
                    }
                    None => {
                        let s = p.sample;
                        return Err(
                            self.err("ctts", format!("covers {s} samples, fewer than stsz"))
                        );
                    }
                }
            }
        } else {
            0
        };
        // Chunks: move on when the current one is used up (skipping empty ones).
        while p.chunk == u32::MAX || p.chunk_used >= p.chunk_samples {
            let next = p.chunk.wrapping_add(1);
            let Some(offset) = self.src.chunk(next)? else {
                let s = p.sample;
                return Err(VodError::table(
                    self.src.track(),
                    "stco",
                    format!("too few chunks for {s}+ samples"),
                ));
            };
            // The stsc entry that covers chunk `next` (1-based first_chunk).
            while let Some((first, _)) = self.src.stsc(p.stsc_entry + 1)? {
                if u64::from(first) <= u64::from(next) + 1 {
                    p.stsc_entry += 1;
                } else {
                    break;
                }
            }
            let Some((first, per_chunk)) = self.src.stsc(p.stsc_entry)? else {
                return Err(VodError::table(self.src.track(), "stsc", "empty"));
            };
            if u64::from(first) > u64::from(next) + 1 {
                return Err(VodError::table(
                    self.src.track(),
                    "stsc",
                    "does not start at chunk 1",
                ));
            }
            p.chunk = next;
            p.chunk_used = 0;
            p.chunk_samples = per_chunk;
            p.offset = offset;
        }
        let size = self.src.size(p.sample)?;
        let offset = p.offset;
        let end = offset
            .checked_add(u64::from(size))
            .filter(|&e| e <= self.file_len);
        let Some(end) = end else {
            let s = p.sample;
            return Err(VodError::table(
                self.src.track(),
                "stco",
                format!("sample {s} ({size} bytes at {offset}) ends past the end of the file"),
            ));
        };
        p.offset = end;
        p.chunk_used += 1;
        let sync = if self.src.has_stss() {
            let number = p.sample + 1;
            loop {
                match self.src.stss(p.stss_entry)? {
                    Some(n) if n < number => p.stss_entry += 1,
                    Some(n) => break n == number,
                    None => break false,
                }
            }
        } else {
            true
        };
        let dts = p.dts;
        p.dts = dts
            .checked_add(u64::from(delta))
            .ok_or_else(|| VodError::table(self.src.track(), "stts", "decode time overflows"))?;
        p.sample += 1;
        Ok(Some(SampleRef {
            dts,
            duration: delta,
            cts,
            size,
            offset,
            sync,
        }))
    }
}

/// The tables decoded in memory (indexing).
pub struct MemSource<'a> {
    pub track: u32,
    pub tables: &'a Tables,
}

impl Source for MemSource<'_> {
    fn track(&self) -> u32 {
        self.track
    }
    fn sample_count(&self) -> u32 {
        self.tables.sizes.count()
    }
    fn stts(&mut self, i: u32) -> Result<Option<(u32, u32)>, VodError> {
        Ok(self.tables.stts.get(i as usize).copied())
    }
    fn ctts(&mut self, i: u32) -> Result<Option<(u32, i32)>, VodError> {
        Ok(self
            .tables
            .ctts
            .as_ref()
            .and_then(|c| c.get(i as usize).copied()))
    }
    fn has_ctts(&self) -> bool {
        self.tables.ctts.is_some()
    }
    fn stsc(&mut self, i: u32) -> Result<Option<(u32, u32)>, VodError> {
        Ok(self.tables.stsc.get(i as usize).copied())
    }
    fn size(&mut self, sample: u32) -> Result<u32, VodError> {
        Ok(self.tables.sizes.get(sample as usize))
    }
    fn chunk(&mut self, i: u32) -> Result<Option<u64>, VodError> {
        Ok(self.tables.chunks.get(i as usize).copied())
    }
    fn has_stss(&self) -> bool {
        self.tables.stss.is_some()
    }
    fn stss(&mut self, i: u32) -> Result<Option<u32>, VodError> {
        Ok(self
            .tables
            .stss
            .as_ref()
            .and_then(|s| s.get(i as usize).copied()))
    }
}

/// Entries read from the file a window at a time.
struct FileTable {
    kind: &'static str,
    at: u64,
    count: u32,
    entry: usize,
    first: u32,
    buf: Vec<u8>,
}

/// Entries per read: small enough to bound memory, large enough that a
/// 4-second segment takes one read per table.
const WINDOW: u32 = 512;

impl FileTable {
    fn new(kind: &'static str, at: u64, count: u32, entry: usize) -> Self {
        FileTable {
            kind,
            at,
            count,
            entry,
            first: 0,
            buf: Vec::new(),
        }
    }

    fn get<R: ReadAt + ?Sized>(&mut self, src: &R, i: u32) -> Result<Option<&[u8]>, VodError> {
        if i >= self.count {
            return Ok(None);
        }
        let loaded = (self.buf.len() / self.entry) as u32;
        if i < self.first || i >= self.first + loaded {
            let n = (self.count - i).min(WINDOW) as usize;
            self.buf.resize(n * self.entry, 0);
            let offset = self.at + u64::from(i) * self.entry as u64;
            src.read_exact_at(&mut self.buf, offset)
                .map_err(|source| VodError::Io {
                    what: self.kind,
                    offset,
                    source,
                })?;
            self.first = i;
        }
        let k = (i - self.first) as usize * self.entry;
        Ok(Some(&self.buf[k..k + self.entry]))
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The tables re-read from the file (fragment building).
pub struct FileSource<'a, R: ?Sized> {
    src: &'a R,
    track: u32,
    samples: u32,
    uniform_size: u32,
    has_ctts: bool,
    has_stss: bool,
    stts: FileTable,
    ctts: FileTable,
    stsc: FileTable,
    stsz: FileTable,
    chunks: FileTable,
    stss: FileTable,
}

impl<'a, R: ReadAt + ?Sized> FileSource<'a, R> {
    pub fn new(src: &'a R, track: u32, samples: u32, uniform_size: u32, locs: &TableLocs) -> Self {
        FileSource {
            src,
            track,
            samples,
            uniform_size,
            has_ctts: locs.ctts.is_some(),
            has_stss: locs.stss.is_some(),
            stts: FileTable::new("stts", locs.stts, locs.stts_count, 8),
            ctts: FileTable::new("ctts", locs.ctts.unwrap_or(0), locs.ctts_count, 8),
            stsc: FileTable::new("stsc", locs.stsc, locs.stsc_count, 12),
            stsz: FileTable::new(
                "stsz",
                locs.stsz.unwrap_or(0),
                if locs.stsz.is_some() { samples } else { 0 },
                4,
            ),
            chunks: FileTable::new(
                "stco",
                locs.chunks,
                locs.chunk_count,
                if locs.co64 { 8 } else { 4 },
            ),
            stss: FileTable::new("stss", locs.stss.unwrap_or(0), locs.stss_count, 4),
        }
    }
}

impl<R: ReadAt + ?Sized> Source for FileSource<'_, R> {
    fn track(&self) -> u32 {
        self.track
    }
    fn sample_count(&self) -> u32 {
        self.samples
    }
    fn stts(&mut self, i: u32) -> Result<Option<(u32, u32)>, VodError> {
        Ok(self
            .stts
            .get(self.src, i)?
            .map(|b| (be32(b, 0), be32(b, 4))))
    }
    fn ctts(&mut self, i: u32) -> Result<Option<(u32, i32)>, VodError> {
        Ok(self
            .ctts
            .get(self.src, i)?
            .map(|b| (be32(b, 0), be32(b, 4) as i32)))
    }
    fn has_ctts(&self) -> bool {
        self.has_ctts
    }
    fn stsc(&mut self, i: u32) -> Result<Option<(u32, u32)>, VodError> {
        Ok(self
            .stsc
            .get(self.src, i)?
            .map(|b| (be32(b, 0), be32(b, 4))))
    }
    fn size(&mut self, sample: u32) -> Result<u32, VodError> {
        if self.stsz.count == 0 {
            return Ok(self.uniform_size);
        }
        match self.stsz.get(self.src, sample)? {
            Some(b) => Ok(be32(b, 0)),
            None => Err(VodError::table(self.track, "stsz", "sample past the table")),
        }
    }
    fn chunk(&mut self, i: u32) -> Result<Option<u64>, VodError> {
        let wide = self.chunks.entry == 8;
        Ok(self.chunks.get(self.src, i)?.map(|b| {
            if wide {
                u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
            } else {
                u64::from(be32(b, 0))
            }
        }))
    }
    fn has_stss(&self) -> bool {
        self.has_stss
    }
    fn stss(&mut self, i: u32) -> Result<Option<u32>, VodError> {
        Ok(self.stss.get(self.src, i)?.map(|b| be32(b, 0)))
    }
}

/// The uniform sample size, or 0 when sizes are a table.
pub fn uniform_size(sizes: &Sizes) -> u32 {
    match sizes {
        Sizes::Uniform { size, .. } => *size,
        Sizes::Table(_) => 0,
    }
}
