//! A hardened reader of the RTMP chunk stream (RTMP 1.0 section 5.3): bytes
//! from the network in, complete messages out.
//!
//! rml_rtmp's own `ChunkDeserializer` trusts its input (a message header
//! shorter than the bytes already buffered underflows, one shared reassembly
//! buffer breaks on interleaved chunk streams), so the session core reads
//! the peer's chunks here and hands rml_rtmp's `ServerSession` only messages
//! it has checked, re-chunked by rml_rtmp's own serializer.
//!
//! The reader is incremental and leaves the caller's buffer alone on partial
//! input: [`ChunkReader::read`] parses one whole chunk from the front of the
//! slice or reports that more bytes are needed, and only then changes state.
//!
//! Limits, all enforced before memory is committed:
//! - a message may be at most [`ChunkLimits::max_message_len`] bytes
//!   (the protocol allows 16 MiB - 1; the default is 8 MiB, several times
//!   the largest keyframe of a 4K stream);
//! - the peer's chunk size must be 1..=2^31-1 (the top bit is reserved);
//!   anything above 16 MiB is treated as 16 MiB, which is the same thing
//!   since no message is longer;
//! - at most [`ChunkLimits::max_partial_streams`] chunk streams may hold a
//!   partly received message at once, and together they may buffer at most
//!   [`ChunkLimits::max_partial_bytes`].

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

/// The chunk size every RTMP connection starts with.
pub const INITIAL_CHUNK_SIZE: u32 = 128;
/// Chunk sizes above this are equivalent to it (message lengths are 24-bit).
pub const MAX_EFFECTIVE_CHUNK_SIZE: u32 = 1 << 24;

#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    pub max_message_len: u32,
    pub max_partial_streams: usize,
    pub max_partial_bytes: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_len: 8 << 20,
            max_partial_streams: 64,
            max_partial_bytes: 32 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk stream {csid}: header format {fmt} without a previous header on that stream")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("chunk stream {csid}: new message header while a message of type {message_type} is incomplete")]
    InterruptedMessage { csid: u32, message_type: u8 },
    #[error("message of type {message_type} on chunk stream {csid} is {length} bytes, over the {limit}-byte limit")]
    MessageTooLong {
        csid: u32,
        message_type: u8,
        length: u32,
        limit: u32,
    },
    #[error("too many chunk streams with incomplete messages (limit {0})")]
    TooManyPartialStreams(usize),
    #[error("incomplete messages exceed {0} buffered bytes")]
    TooManyPartialBytes(usize),
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
}

/// One complete RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub csid: u32,
    /// Absolute timestamp in milliseconds, wrapping at 2^32.
    pub timestamp: u32,
    pub type_id: u8,
    pub message_stream_id: u32,
    pub data: Bytes,
}

#[derive(Debug, Clone, Default)]
struct StreamState {
    timestamp: u32,
    /// The last timestamp field (absolute for format 0, else a delta): what a
    /// format-3 header starting a new message adds again (as ffmpeg and nginx-rtmp do).
    timestamp_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    message_stream_id: u32,
    /// The message being reassembled, when one is incomplete.
    partial: Option<BytesMut>,
}

/// What one call to [`ChunkReader::read`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Not a whole chunk at the front of the input; nothing consumed.
    NeedMore,
    /// One chunk consumed; it completed a message or not.
    Chunk {
        consumed: usize,
        message: Option<RawMessage>,
    },
}

pub struct ChunkReader {
    limits: ChunkLimits,
    chunk_size: u32,
    streams: HashMap<u32, StreamState>,
    partial_bytes: usize,
}

struct ParsedHeader {
    fmt: u8,
    csid: u32,
    header_len: usize,
    timestamp_field: Option<u32>,
    extended: bool,
    length: Option<u32>,
    type_id: Option<u8>,
    message_stream_id: Option<u32>,
}

impl ChunkReader {
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkReader {
            limits,
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: HashMap::new(),
            partial_bytes: 0,
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Applies the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > 0x7fff_ffff {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size.min(MAX_EFFECTIVE_CHUNK_SIZE);
        Ok(())
    }

    /// Drops the incomplete message on `csid` (the peer's Abort message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(p) = self.streams.get_mut(&csid).and_then(|s| s.partial.take()) {
            self.partial_bytes -= p.len();
        }
    }

    fn parse_header(&self, buf: &[u8]) -> Result<Option<ParsedHeader>, ChunkError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match buf.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(None),
            },
            c => (u32::from(c), 1),
        };
        let prev = self.streams.get(&csid);
        if fmt != 0 && prev.is_none() {
            return Err(ChunkError::NoPreviousHeader { csid, fmt });
        }
        let msg_header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(h) = buf.get(pos..pos + msg_header_len) else {
            return Ok(None);
        };
        let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let mut parsed = ParsedHeader {
            fmt,
            csid,
            header_len: 0,
            timestamp_field: None,
            extended: false,
            length: None,
            type_id: None,
            message_stream_id: None,
        };
        if fmt <= 2 {
            parsed.timestamp_field = Some(u24(&h[0..3]));
        }
        if fmt <= 1 {
            parsed.length = Some(u24(&h[3..6]));
            parsed.type_id = Some(h[6]);
        }
        if fmt == 0 {
            parsed.message_stream_id = Some(u32::from_le_bytes([h[7], h[8], h[9], h[10]]));
        }
        pos += msg_header_len;
        parsed.extended = match parsed.timestamp_field {
            Some(f) => f == 0x00ff_ffff,
            None => prev.is_some_and(|p| p.extended),
        };
        if parsed.extended {
            let Some(e) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            let ext = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            // For format 3 the extended field repeats the previous one; keep the header's value.
            if parsed.timestamp_field.is_some() {
                parsed.timestamp_field = Some(ext);
            }
            pos += 4;
        }
        parsed.header_len = pos;
        Ok(Some(parsed))
    }

    /// Reads one chunk from the front of `buf`.
    pub fn read(&mut self, buf: &[u8]) -> Result<ReadOutcome, ChunkError> {
        let Some(h) = self.parse_header(buf)? else {
            return Ok(ReadOutcome::NeedMore);
        };
        let (continuing, have, prev_length, prev_type) = match self.streams.get(&h.csid) {
            Some(s) => (
                s.partial.is_some(),
                s.partial.as_ref().map_or(0, |p| p.len()),
                s.length,
                s.type_id,
            ),
            None => {
                if self.streams.len() >= 4 * self.limits.max_partial_streams {
                    // Headers of every chunk stream seen are kept for compression; bound them too.
                    return Err(ChunkError::TooManyPartialStreams(
                        self.limits.max_partial_streams,
                    ));
                }
                (false, 0, 0, 0)
            }
        };
        if continuing && h.fmt != 3 {
            // Some senders (rml_rtmp's serializer among them) repeat a full header on
            // continuation chunks; accept that when it describes the same message.
            let prev_msid = self.streams.get(&h.csid).map_or(0, |s| s.message_stream_id);
            let same = h.length.is_none_or(|l| l == prev_length)
                && h.type_id.is_none_or(|t| t == prev_type)
                && h.message_stream_id.is_none_or(|m| m == prev_msid);
            if !same {
                return Err(ChunkError::InterruptedMessage {
                    csid: h.csid,
                    message_type: prev_type,
                });
            }
        }
        let length = h.length.unwrap_or(prev_length);
        let type_id = h.type_id.unwrap_or(prev_type);
        if length > self.limits.max_message_len {
            return Err(ChunkError::MessageTooLong {
                csid: h.csid,
                message_type: type_id,
                length,
                limit: self.limits.max_message_len,
            });
        }
        let take = (length as usize - have).min(self.chunk_size as usize);
        let Some(payload) = buf.get(h.header_len..h.header_len + take) else {
            return Ok(ReadOutcome::NeedMore);
        };
        let complete = have + take == length as usize;
        if !complete {
            if !continuing {
                let open = self
                    .streams
                    .values()
                    .filter(|s| s.partial.is_some())
                    .count();
                if open >= self.limits.max_partial_streams {
                    return Err(ChunkError::TooManyPartialStreams(
                        self.limits.max_partial_streams,
                    ));
                }
            }
            if self.partial_bytes + take > self.limits.max_partial_bytes {
                return Err(ChunkError::TooManyPartialBytes(
                    self.limits.max_partial_bytes,
                ));
            }
        }

        // The whole chunk is here and acceptable: commit.
        let state = self.streams.entry(h.csid).or_default();
        if !continuing {
            match h.fmt {
                0 => {
                    state.timestamp = h.timestamp_field.unwrap_or(0);
                    state.timestamp_field = state.timestamp;
                }
                1 | 2 => {
                    let delta = h.timestamp_field.unwrap_or(0);
                    state.timestamp = state.timestamp.wrapping_add(delta);
                    state.timestamp_field = delta;
                }
                _ => state.timestamp = state.timestamp.wrapping_add(state.timestamp_field),
            }
            state.extended = h.extended;
            state.length = length;
            state.type_id = type_id;
            if let Some(id) = h.message_stream_id {
                state.message_stream_id = id;
            }
        }
        let message = if complete {
            let data = match state.partial.take() {
                Some(mut p) => {
                    self.partial_bytes -= p.len();
                    p.extend_from_slice(payload);
                    p.freeze()
                }
                None => Bytes::copy_from_slice(payload),
            };
            Some(RawMessage {
                csid: h.csid,
                timestamp: state.timestamp,
                type_id: state.type_id,
                message_stream_id: state.message_stream_id,
                data,
            })
        } else {
            self.partial_bytes += take;
            // Capacity grows with the bytes that actually arrived, never with the announced length.
            state
                .partial
                .get_or_insert_with(BytesMut::new)
                .extend_from_slice(payload);
            None
        };
        Ok(ReadOutcome::Chunk {
            consumed: h.header_len + take,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::MessagePayload;
    use rml_rtmp::time::RtmpTimestamp;

    fn read_all(reader: &mut ChunkReader, mut buf: &[u8]) -> Result<Vec<RawMessage>, ChunkError> {
        let mut out = Vec::new();
        loop {
            match reader.read(buf)? {
                ReadOutcome::NeedMore => return Ok(out),
                ReadOutcome::Chunk { consumed, message } => {
                    buf = &buf[consumed..];
                    out.extend(message);
                }
            }
        }
    }

    fn payload(ts: u32, type_id: u8, len: usize) -> MessagePayload {
        MessagePayload {
            timestamp: RtmpTimestamp::new(ts),
            type_id,
            message_stream_id: 1,
            data: Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>()),
        }
    }

    #[test]
    fn reads_what_rml_rtmp_serializes_including_split_and_compressed_headers() {
        let mut ser = ChunkSerializer::new();
        let mut wire = Vec::new();
        let inputs = [
            payload(0, 9, 1000),
            payload(33, 9, 300),
            payload(66, 8, 10),
            payload(0x0100_0000, 9, 200),
            payload(0x0100_0021, 9, 5),
        ];
        for p in &inputs {
            wire.extend(ser.serialize(p, false, false).unwrap().bytes);
        }
        let mut reader = ChunkReader::new(ChunkLimits::default());
        let got = read_all(&mut reader, &wire).unwrap();
        assert_eq!(got.len(), inputs.len());
        for (g, p) in got.iter().zip(&inputs) {
            assert_eq!(
                (g.timestamp, g.type_id, g.message_stream_id, &g.data),
                (p.timestamp.value, p.type_id, 1, &p.data)
            );
        }
    }

    #[test]
    fn partial_input_consumes_nothing() {
        let mut ser = ChunkSerializer::new();
        let wire = ser
            .serialize(&payload(5, 9, 100), false, false)
            .unwrap()
            .bytes;
        let mut reader = ChunkReader::new(ChunkLimits::default());
        for n in 0..wire.len() {
            assert_eq!(
                reader.read(&wire[..n]).unwrap(),
                ReadOutcome::NeedMore,
                "prefix {n}"
            );
        }
        assert!(matches!(
            reader.read(&wire).unwrap(),
            ReadOutcome::Chunk {
                message: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn interleaved_chunk_streams_reassemble_separately() {
        // Two 200-byte messages on csid 4 and 5, chunks alternating (chunk size 128).
        let mut wire = Vec::new();
        let header0 = |csid: u8, ty: u8| vec![csid, 0, 0, 10, 0, 0, 200, ty, 1, 0, 0, 0];
        wire.extend(header0(4, 9));
        wire.extend([0xaa; 128]);
        wire.extend(header0(5, 8));
        wire.extend([0xbb; 128]);
        wire.push(0xc4);
        wire.extend([0xaa; 72]);
        wire.push(0xc5);
        wire.extend([0xbb; 72]);
        let mut reader = ChunkReader::new(ChunkLimits::default());
        let got = read_all(&mut reader, &wire).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].data.iter().all(|&b| b == 0xaa) && got[0].data.len() == 200);
        assert!(got[1].data.iter().all(|&b| b == 0xbb) && got[1].data.len() == 200);
    }

    #[test]
    fn hostile_headers_are_errors() {
        let mut reader = ChunkReader::new(ChunkLimits::default());
        assert_eq!(
            reader.read(&[0x43, 0, 0, 0]),
            Err(ChunkError::NoPreviousHeader { csid: 3, fmt: 1 })
        );
        let big = [0x03, 0, 0, 0, 0xff, 0xff, 0xff, 9, 0, 0, 0, 0];
        assert!(matches!(
            reader.read(&big),
            Err(ChunkError::MessageTooLong { .. })
        ));
        assert_eq!(
            reader.set_chunk_size(0),
            Err(ChunkError::InvalidChunkSize(0))
        );
        assert_eq!(
            reader.set_chunk_size(0x8000_0000),
            Err(ChunkError::InvalidChunkSize(0x8000_0000))
        );
        reader.set_chunk_size(0x7fff_ffff).unwrap();
        assert_eq!(reader.chunk_size(), MAX_EFFECTIVE_CHUNK_SIZE);
    }

    #[test]
    fn new_header_mid_message_is_an_error_and_partials_are_bounded() {
        let limits = ChunkLimits {
            max_message_len: 1000,
            max_partial_streams: 2,
            max_partial_bytes: 1 << 20,
        };
        let mut reader = ChunkReader::new(limits);
        let start = |csid: u8| {
            let mut v = vec![csid, 0, 0, 0, 0, 3, 0xe8, 9, 1, 0, 0, 0];
            v.extend([0u8; 128]);
            v
        };
        assert!(read_all(&mut reader, &start(4)).unwrap().is_empty());
        // The same header again continues the message (a quirk some senders have) ...
        assert!(read_all(&mut reader, &start(4)).unwrap().is_empty());
        // ... a different message does not.
        let mut other = start(4);
        other[7] = 8;
        assert!(matches!(
            reader.read(&other),
            Err(ChunkError::InterruptedMessage { .. })
        ));
        assert!(read_all(&mut reader, &start(5)).unwrap().is_empty());
        assert_eq!(
            reader.read(&start(6)),
            Err(ChunkError::TooManyPartialStreams(2))
        );
        reader.abort(5);
        assert!(read_all(&mut reader, &start(6)).unwrap().is_empty());
    }
}
