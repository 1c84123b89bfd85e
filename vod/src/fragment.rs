//! Building init segments and fragments from the source.
//!
//! A fragment re-walks its segment's slice of the sample tables from the
//! cursor the index saved (reading table windows from the file), reads the
//! sample data with as few reads as the file's layout allows (samples that
//! follow each other in the file are read together), and hands the samples to
//! the packager's `moof`+`mdat` writer. Sample data is read once, into one
//! buffer the samples share.

use bytes::{Bytes, BytesMut};
use vela_packager::boxes::{self, Sample};

use crate::index::{TrackIndex, TrackInfo};
use crate::tables::{FileSource, SampleRef, Walker};
use crate::{ReadAt, VodError};

/// The largest fragment payload built (a keyframe interval of a very
/// high-bitrate file stays well below).
pub const MAX_FRAGMENT_PAYLOAD: u64 = 1 << 30;

/// The init segment: the packager's, with the source's `mdhd` language.
pub(crate) fn init(info: &TrackInfo) -> Bytes {
    let init = boxes::init_segment(&info.track);
    let mut out = BytesMut::from(&init[..]);
    // The packager writes "und"; mdhd is version 0 and unique in an init
    // segment: language follows version/flags and four 32-bit fields.
    if let Some(at) = out.windows(4).position(|w| w == b"mdhd") {
        let lang = at + 4 + 4 + 16;
        if out.get(at + 4) == Some(&0) && lang + 2 <= out.len() {
            out[lang..lang + 2].copy_from_slice(&info.language_code.to_be_bytes());
        }
    }
    out.freeze()
}

pub(crate) fn build<R: ReadAt + ?Sized>(
    src: &R,
    t: &TrackIndex,
    number: u32,
    file_len: u64,
) -> Result<Bytes, VodError> {
    let id = t.info.id();
    let seg = t.segment(number).ok_or(VodError::UnknownSegment {
        track: id,
        segment: number,
        count: t.plan.segs.len() as u32,
    })?;
    if seg.bytes > MAX_FRAGMENT_PAYLOAD {
        return Err(VodError::TooLarge {
            what: "fragment payload",
            size: seg.bytes,
            limit: MAX_FRAGMENT_PAYLOAD,
        });
    }
    let start = t.plan.segs[number as usize].pos;
    let file = FileSource::new(src, id, t.info.sample_count, t.uniform_size, &t.locs);
    let mut walker = Walker::new(file, start, file_len);
    // The count comes from our own walk of the tables, not from the file.
    let mut refs: Vec<SampleRef> = Vec::with_capacity(seg.sample_count as usize);
    let mut total = 0u64;
    for _ in 0..seg.sample_count {
        let s = walker
            .next_sample()?
            .ok_or_else(|| VodError::table(id, "stsz", "fewer samples than indexed"))?;
        total += u64::from(s.size);
        refs.push(s);
    }
    if total != seg.bytes {
        return Err(VodError::table(
            id,
            "stsz",
            "sample sizes changed since indexing",
        ));
    }

    // Read runs of samples that are contiguous in the file in one go.
    let mut data = vec![0u8; total as usize];
    let mut at = 0usize;
    let mut i = 0;
    while i < refs.len() {
        let run_start = refs[i].offset;
        let mut len = refs[i].size as usize;
        let mut j = i + 1;
        while j < refs.len() && refs[j].offset == run_start + len as u64 {
            len += refs[j].size as usize;
            j += 1;
        }
        src.read_exact_at(&mut data[at..at + len], run_start)
            .map_err(|source| VodError::Io {
                what: "sample data",
                offset: run_start,
                source,
            })?;
        at += len;
        i = j;
    }
    let data = Bytes::from(data);

    let cts_add = t.info.edit.cts_add();
    let mut samples = Vec::with_capacity(refs.len());
    let mut at = 0usize;
    for s in &refs {
        let cts = i32::try_from(i64::from(s.cts) + cts_add)
            .map_err(|_| VodError::table(id, "ctts", "composition offset out of range"))?;
        samples.push(Sample {
            duration: s.duration,
            cts_offset: cts,
            keyframe: s.sync,
            data: data.slice(at..at + s.size as usize),
        });
        at += s.size as usize;
    }
    Ok(boxes::fragment(number + 1, id, seg.start, &samples))
}
