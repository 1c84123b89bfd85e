//! Synthetic MP4 files for unit tests: any number of samples with full
//! sample tables, the media data either real (small files) or virtual zeros
//! (a 2-hour asset without 2 GB of memory).

use bytes::Bytes;
use vela_media::{AudioCodec, CodecConfig, Track, VideoCodec};
use vela_packager::boxes::{init_segment, BoxWriter};

use crate::ReadAt;

pub struct SynthTrack {
    pub id: u32,
    pub video: bool,
    pub timescale: u32,
    pub delta: u32,
    pub sizes: Vec<u32>,
    /// Per-sample composition offsets (video with B-frames).
    pub ctts: Option<Vec<i32>>,
    /// A sync sample every n samples (video).
    pub sync_every: Option<u32>,
    pub chunk_len: u32,
    pub language: &'static str,
    /// (empty edit in movie ticks, media time)
    pub edit: Option<(u64, u64)>,
    pub co64: bool,
    /// Write `stsz` with one size for every sample (no table).
    pub uniform_size: bool,
}

impl SynthTrack {
    pub fn video(id: u32, samples: usize, size: impl Fn(usize) -> u32) -> Self {
        SynthTrack {
            id,
            video: true,
            timescale: 15360,
            delta: 512,
            sizes: (0..samples).map(size).collect(),
            // I P B B pattern: 2 frames of composition delay.
            ctts: Some(
                (0..samples)
                    .map(|i| [1024, 2560, 512, 1024][i % 4])
                    .collect(),
            ),
            sync_every: Some(60),
            chunk_len: 15,
            language: "und",
            edit: Some((0, 1024)),
            co64: false,
            uniform_size: false,
        }
    }

    pub fn audio(id: u32, samples: usize, language: &'static str) -> Self {
        SynthTrack {
            id,
            video: false,
            timescale: 48000,
            delta: 1024,
            sizes: (0..samples).map(|i| 200 + (i % 97) as u32).collect(),
            ctts: None,
            sync_every: None,
            chunk_len: 23,
            language,
            edit: Some((0, 1024)),
            co64: true,
            uniform_size: false,
        }
    }

    fn config(&self) -> Track {
        let config = if self.video {
            CodecConfig::Video {
                codec: VideoCodec::H264,
                width: 1920,
                height: 1080,
                frame_rate: None,
                record: Bytes::from_static(&[1, 0x64, 0, 0x28, 0xff, 0xe0, 0]),
            }
        } else {
            CodecConfig::Audio {
                codec: AudioCodec::Aac,
                sample_rate: 48000,
                channels: 2,
                specific_config: Bytes::from_static(&[0x11, 0x90]),
            }
        };
        Track {
            id: self.id,
            timescale: self.timescale,
            config,
            bitrate: None,
        }
    }
}

/// A file whose bytes are given in pieces, zeros elsewhere.
pub struct SparseFile {
    pub len: u64,
    pub pieces: Vec<(u64, Vec<u8>)>,
}

impl ReadAt for SparseFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let end = offset + buf.len() as u64;
        if end > self.len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.fill(0);
        for (at, data) in &self.pieces {
            let (a, b) = (*at, at + data.len() as u64);
            let (lo, hi) = (a.max(offset), b.min(end));
            if lo < hi {
                buf[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&data[(lo - a) as usize..(hi - a) as usize]);
            }
        }
        Ok(())
    }

    fn size(&self) -> std::io::Result<u64> {
        Ok(self.len)
    }
}

/// The byte a synthetic sample is filled with.
pub fn fill_byte(track: u32, sample: usize) -> u8 {
    (track as usize * 31 + sample * 7) as u8
}

/// Lays out the tracks' chunks round-robin after an `mdat` header and puts
/// the `moov` at the end. With `materialize`, sample bytes are real.
pub fn build(tracks: &[SynthTrack], materialize: bool) -> SparseFile {
    let mut head = BoxWriter::with_capacity(64);
    head.begin(b"ftyp");
    head.extend_from_slice(b"isom\0\0\0\0isomavc1");
    head.end();
    let head = head.finish().to_vec();
    let data_start = head.len() as u64 + 16;

    // Chunk offsets per track, interleaved.
    let mut chunk_offsets: Vec<Vec<u64>> = tracks.iter().map(|_| Vec::new()).collect();
    let mut next_sample: Vec<usize> = vec![0; tracks.len()];
    let mut pos = data_start;
    let mut data = Vec::new();
    loop {
        let mut any = false;
        for (k, t) in tracks.iter().enumerate() {
            let from = next_sample[k];
            if from >= t.sizes.len() {
                continue;
            }
            any = true;
            let to = (from + t.chunk_len as usize).min(t.sizes.len());
            chunk_offsets[k].push(pos);
            for i in from..to {
                let n = t.sizes[i] as usize;
                if materialize {
                    data.extend(std::iter::repeat_n(fill_byte(t.id, i), n));
                }
                pos += n as u64;
            }
            next_sample[k] = to;
        }
        if !any {
            break;
        }
    }
    let mdat_len = pos - data_start + 16;
    let mut mdat_head = Vec::new();
    mdat_head.extend_from_slice(&1u32.to_be_bytes());
    mdat_head.extend_from_slice(b"mdat");
    mdat_head.extend_from_slice(&mdat_len.to_be_bytes());

    let mut w = BoxWriter::with_capacity(1 << 20);
    w.begin(b"moov");
    w.begin_full(b"mvhd", 0, 0);
    w.extend_from_slice(&[0; 8]);
    w.extend_from_slice(&1000u32.to_be_bytes());
    w.extend_from_slice(&[0; 4 + 4 + 2 + 10 + 36 + 24]);
    w.extend_from_slice(&100u32.to_be_bytes());
    w.end();
    for (k, t) in tracks.iter().enumerate() {
        write_trak(&mut w, t, &chunk_offsets[k]);
    }
    w.end();
    let moov = w.finish().to_vec();

    let mut pieces = vec![(0, head), (data_start - 16, mdat_head)];
    if materialize {
        pieces.push((data_start, data));
    }
    let len = pos + moov.len() as u64;
    pieces.push((pos, moov));
    SparseFile { len, pieces }
}

fn put32(w: &mut BoxWriter, v: u32) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn write_trak(w: &mut BoxWriter, t: &SynthTrack, chunks: &[u64]) {
    let init = init_segment(&t.config());
    let at = init.windows(4).position(|x| x == b"stsd").expect("stsd") - 4;
    let size = u32::from_be_bytes(init[at..at + 4].try_into().unwrap()) as usize;
    let stsd = &init[at..at + size];

    w.begin(b"trak");
    w.begin_full(b"tkhd", 0, 3);
    put32(w, 0);
    put32(w, 0);
    put32(w, t.id);
    w.extend_from_slice(&[0; 4 + 4 + 8 + 8 + 36 + 8]);
    w.end();
    if let Some((empty, media)) = t.edit {
        w.begin(b"edts");
        w.begin_full(b"elst", 0, 0);
        let n = if empty > 0 { 2 } else { 1 };
        put32(w, n);
        if empty > 0 {
            put32(w, empty as u32);
            put32(w, u32::MAX);
            put32(w, 0x0001_0000);
        }
        put32(w, 0);
        put32(w, media as u32);
        put32(w, 0x0001_0000);
        w.end();
        w.end();
    }
    w.begin(b"mdia");
    w.begin_full(b"mdhd", 0, 0);
    put32(w, 0);
    put32(w, 0);
    put32(w, t.timescale);
    put32(w, 0);
    let l = t.language.as_bytes();
    let code =
        (u16::from(l[0] - 0x60) << 10) | (u16::from(l[1] - 0x60) << 5) | u16::from(l[2] - 0x60);
    w.extend_from_slice(&code.to_be_bytes());
    w.extend_from_slice(&[0, 0]);
    w.end();
    w.begin_full(b"hdlr", 0, 0);
    put32(w, 0);
    w.extend_from_slice(if t.video { b"vide" } else { b"soun" });
    w.extend_from_slice(&[0; 12]);
    w.extend_from_slice(b"synth\0");
    w.end();
    w.begin(b"minf");
    w.begin(b"stbl");
    w.extend_from_slice(stsd);
    let n = t.sizes.len() as u32;
    w.begin_full(b"stts", 0, 0);
    put32(w, 1);
    put32(w, n);
    put32(w, t.delta);
    w.end();
    if let Some(ctts) = &t.ctts {
        w.begin_full(b"ctts", 0, 0);
        put32(w, n);
        for &c in ctts {
            put32(w, 1);
            put32(w, c as u32);
        }
        w.end();
    }
    if let Some(every) = t.sync_every {
        w.begin_full(b"stss", 0, 0);
        let syncs: Vec<u32> = (0..n).step_by(every as usize).map(|i| i + 1).collect();
        put32(w, syncs.len() as u32);
        for s in syncs {
            put32(w, s);
        }
        w.end();
    }
    w.begin_full(b"stsc", 0, 0);
    let last = n % t.chunk_len;
    put32(w, if last == 0 || chunks.len() < 2 { 1 } else { 2 });
    put32(w, 1);
    put32(
        w,
        if chunks.len() == 1 && last != 0 {
            last
        } else {
            t.chunk_len
        },
    );
    put32(w, 1);
    if last != 0 && chunks.len() >= 2 {
        put32(w, chunks.len() as u32);
        put32(w, last);
        put32(w, 1);
    }
    w.end();
    w.begin_full(b"stsz", 0, 0);
    if t.uniform_size {
        put32(w, t.sizes[0]);
        put32(w, n);
    } else {
        put32(w, 0);
        put32(w, n);
        for &s in &t.sizes {
            put32(w, s);
        }
    }
    w.end();
    if t.co64 {
        w.begin_full(b"co64", 0, 0);
        put32(w, chunks.len() as u32);
        for &c in chunks {
            w.extend_from_slice(&c.to_be_bytes());
        }
    } else {
        w.begin_full(b"stco", 0, 0);
        put32(w, chunks.len() as u32);
        for &c in chunks {
            put32(w, c as u32);
        }
    }
    w.end();
    w.end(); // stbl
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak
}

/// A small file (10 s of video at 30 fps and of 48 kHz AAC) with real bytes.
pub fn small_file() -> Vec<u8> {
    let f = build(
        &[
            SynthTrack::video(1, 300, |i| 100 + (i % 13) as u32 * 10),
            SynthTrack::audio(2, 469, "eng"),
        ],
        true,
    );
    let mut v = vec![0u8; f.len as usize];
    f.read_exact_at(&mut v, 0).unwrap();
    v
}
