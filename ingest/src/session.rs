//! The sans-IO RTMP session core: bytes and the current time in, events out.
//!
//! Modelled on rml_rtmp's `ServerSession::handle_input`, str0m and quinn-proto:
//! [`RtmpSession::handle_input`] and [`RtmpSession::handle_timeout`] take the
//! time as an argument (the core never reads a clock), and the driver drains
//! [`RtmpSession::poll_event`] and sleeps until [`RtmpSession::poll_timeout`].
//!
//! Layers, bottom up:
//! 1. rml_rtmp's `Handshake` (C0/C1/C2 ↔ S0/S1/S2).
//! 2. [`crate::chunk::ChunkReader`], a hardened chunk-stream reader with
//!    caps on message size and buffered bytes.
//! 3. Per message type: protocol control (chunk size, abort, window
//!    acknowledgement size) is handled here; commands are checked with the
//!    bounded [`crate::amf0`] decoder and then re-chunked into rml_rtmp's
//!    `ServerSession`, which answers connect/createStream/publish/ping; media
//!    and metadata go straight to the [`MediaAssembler`] once a publish is
//!    accepted. `ServerSession` never sees raw network bytes because its
//!    deserializer and rml_amf0 can panic or recurse without bound on hostile
//!    input (see [`crate::chunk`] and [`crate::amf0`]).
//! 4. Acknowledgements: rml_rtmp acknowledges with the bytes since the last
//!    acknowledgement instead of the running total, so the session sends its
//!    own (on chunk stream [`ACK_CSID`], which rml_rtmp never uses, so its
//!    header compression state is untouched).
//!
//! The [`MediaAssembler`] turns FLV tag bodies into [`MediaEvent`]s: it
//! announces the track set once it is known (both configurations that
//! onMetaData promised, or whatever has arrived when a bounded buffer of
//! early frames fills up or a second has passed), unwraps RTMP's 32-bit
//! millisecond timestamps into per-track 64-bit timelines in the track's
//! timescale, re-bases jumps larger than [`SessionConfig::max_timestamp_jump`],
//! and keeps decode timestamps monotonic.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::MessagePayload;
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use rml_rtmp::time::RtmpTimestamp;
use vela_media::{Frame, MediaEvent, MediaKind, Track, VideoCodec};

use crate::amf0::{self, Amf0};
use crate::chunk::{
    ChunkError, ChunkLimits, ChunkReader, RawMessage, ReadOutcome, MAX_EFFECTIVE_CHUNK_SIZE,
};
use crate::flv::{self, AudioConfig, AudioTag, FlvError, VideoConfig, VideoTag};
#[cfg(test)]
use vela_media::CodecConfig;

/// The chunk stream id of the session's own Acknowledgement messages.
pub const ACK_CSID: u32 = 7;
/// Commands larger than this are not commands.
pub const MAX_COMMAND_LEN: usize = 64 * 1024;
/// Metadata larger than this is dropped.
pub const MAX_DATA_LEN: usize = 256 * 1024;
/// createStream requests allowed per connection (each one costs rml_rtmp a map entry).
pub const MAX_CREATE_STREAMS: u32 = 32;
/// The status code for every refused publish.
pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";

/// Tunables of one session; the defaults suit OBS, ffmpeg and hardware encoders.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The only RTMP application accepted by connect.
    pub app: String,
    pub chunk_limits: ChunkLimits,
    /// How long early frames wait for the other announced track's configuration.
    pub track_wait: Duration,
    /// How many early frames wait at most (bounded buffer) ...
    pub max_pending_frames: usize,
    /// ... and how many bytes they may hold together.
    pub max_pending_bytes: usize,
    /// Media without any usable codec configuration for this long fails the session.
    pub header_timeout: Duration,
    /// A timestamp step larger than this (either way) is re-based.
    pub max_timestamp_jump: Duration,
    /// A publisher is alive while media flows: no audio or video message
    /// for this long (from the accepted publish or the last one) ends the
    /// session, which frees the stream name.
    pub media_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            app: "live".to_string(),
            chunk_limits: ChunkLimits::default(),
            track_wait: Duration::from_secs(1),
            max_pending_frames: 64,
            max_pending_bytes: 32 << 20,
            header_timeout: Duration::from_secs(10),
            max_timestamp_jump: Duration::from_secs(10),
            media_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a session ended badly. Every variant names the stream key when one is known ("-" before publish).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("stream {stream_key}: chunk stream error: {source}")]
    Chunk {
        stream_key: String,
        source: ChunkError,
    },
    #[error("stream {stream_key}: malformed {message} message: {reason}")]
    Malformed {
        stream_key: String,
        message: &'static str,
        reason: String,
    },
    #[error("stream {stream_key}: rml_rtmp session error: {reason}")]
    Rtmp { stream_key: String, reason: String },
    #[error("connect to application {app:?} refused (only {expected:?} is served)")]
    AppRefused { app: String, expected: String },
    #[error("stream {stream_key}: RTMP playback requested; Vela does not serve RTMP playback")]
    PlaybackRefused { stream_key: String },
    #[error("stream {stream_key}: publish refused: {reason}")]
    PublishRefused { stream_key: String, reason: String },
    #[error("stream {stream_key}: no usable codec configuration {waited_s} s after the first media ({detail})")]
    NoCodecHeaders {
        stream_key: String,
        waited_s: u64,
        detail: String,
    },
    #[error("stream {stream_key}: too many createStream requests")]
    TooManyStreams { stream_key: String },
    #[error("stream {stream_key}: no audio or video for {waited_s} s; the publisher is gone")]
    MediaTimeout { stream_key: String, waited_s: u64 },
}

impl SessionError {
    /// A short, fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Handshake(_) => "handshake",
            SessionError::Chunk { .. } => "chunk",
            SessionError::Malformed { .. } => "malformed",
            SessionError::Rtmp { .. } => "rtmp",
            SessionError::AppRefused { .. } => "app_refused",
            SessionError::PlaybackRefused { .. } => "playback_refused",
            SessionError::PublishRefused { .. } => "publish_refused",
            SessionError::NoCodecHeaders { .. } => "no_codec_headers",
            SessionError::TooManyStreams { .. } => "too_many_streams",
            SessionError::MediaTimeout { .. } => "media_timeout",
        }
    }
}

/// What the driver must act on, in order.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// Bytes to write to the peer, in order, none dropped.
    Transmit(Bytes),
    /// The peer asks to publish; answer with [`RtmpSession::accept_publish`]
    /// or [`RtmpSession::reject_publish`]. Input may be fed meanwhile.
    PublishRequested {
        app: String,
        stream_key: String,
    },
    Media(MediaEvent),
    /// deleteStream / closeStream / FCUnpublish: a clean end of the publish.
    PublishFinished,
    /// The session is over; write what was queued before, then close.
    Failed(SessionError),
}

enum Phase {
    Handshaking(Box<Handshake>),
    Active(Box<Active>),
    Closed,
}

struct Active {
    server: ServerSession,
    /// Re-chunks checked messages for `server`.
    feed: ChunkSerializer,
    reader: ChunkReader,
    create_streams: u32,
}

struct PendingPublish {
    request_id: u32,
    stream_key: String,
    message_stream_id: u32,
}

struct Publishing {
    message_stream_id: u32,
    media: MediaAssembler,
    /// The last audio/video message (or, before one, the first moment the
    /// session saw the time after the publish was accepted).
    last_media: Option<Instant>,
}

/// One RTMP connection's protocol state. See the module docs.
pub struct RtmpSession {
    config: SessionConfig,
    phase: Phase,
    input: Vec<u8>,
    events: VecDeque<SessionEvent>,
    stream_key: String,
    pending_publish: Option<PendingPublish>,
    publishing: Option<Publishing>,
    /// Message stream id of the command being fed to `ServerSession`.
    current_message_stream_id: u32,
    bytes_received: u64,
    ack_window: Option<u32>,
    last_ack_at: u64,
    /// The latest time the driver gave (input or timeout).
    now: Option<Instant>,
}

/// The application part of a connect's `app`: "live?token=..." and "live/" are "live".
fn normalize_app(app: &str) -> &str {
    app.split('?')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
}

/// A stream key as logs may show it before it is known to be a public name:
/// keys are credentials in key mode.
pub fn redact(key: &str) -> String {
    let shown: String = key.chars().take(4).collect();
    if shown.len() < key.len() {
        format!("{shown}***")
    } else {
        key.to_string()
    }
}

fn rml_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl RtmpSession {
    pub fn new(config: SessionConfig) -> Self {
        RtmpSession {
            config,
            phase: Phase::Handshaking(Box::new(Handshake::new(PeerType::Server))),
            input: Vec::new(),
            events: VecDeque::new(),
            stream_key: "-".to_string(),
            pending_publish: None,
            publishing: None,
            current_message_stream_id: 0,
            bytes_received: 0,
            ack_window: None,
            last_ack_at: 0,
            now: None,
        }
    }

    pub fn is_handshaking(&self) -> bool {
        matches!(self.phase, Phase::Handshaking(_))
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// The stream key of the current or last publish request ("-" before one).
    pub fn stream_key(&self) -> &str {
        &self.stream_key
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When [`RtmpSession::handle_timeout`] should next be called, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let p = self.publishing.as_ref()?;
        let liveness = p.last_media.map(|t| t + self.config.media_timeout);
        match (p.media.next_deadline(&self.config), liveness) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        self.check_media_timers(now);
    }

    fn fail(&mut self, e: SessionError) {
        if !self.is_closed() {
            self.phase = Phase::Closed;
            self.events.push_back(SessionEvent::Failed(e));
        }
    }

    /// Feeds bytes received from the peer.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.now = Some(now);
        match &mut self.phase {
            Phase::Closed => return,
            Phase::Handshaking(hs) => match hs.process_bytes(bytes) {
                Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                    if !response_bytes.is_empty() {
                        self.events
                            .push_back(SessionEvent::Transmit(Bytes::from(response_bytes)));
                    }
                    return;
                }
                Ok(HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                }) => {
                    if !response_bytes.is_empty() {
                        self.events
                            .push_back(SessionEvent::Transmit(Bytes::from(response_bytes)));
                    }
                    if let Err(e) = self.start_session() {
                        self.fail(e);
                        return;
                    }
                    self.input.extend_from_slice(&remaining_bytes);
                    self.bytes_received += remaining_bytes.len() as u64;
                }
                Err(e) => {
                    self.fail(SessionError::Handshake(e.to_string()));
                    return;
                }
            },
            Phase::Active(_) => {
                self.input.extend_from_slice(bytes);
                self.bytes_received += bytes.len() as u64;
            }
        }
        self.process_input(now);
        self.maybe_acknowledge();
        self.check_media_timers(now);
    }

    fn start_session(&mut self) -> Result<(), SessionError> {
        let cfg = ServerSessionConfig::new();
        let (mut server, initial) = ServerSession::new(cfg).map_err(|e| SessionError::Rtmp {
            stream_key: "-".into(),
            reason: rml_err(e),
        })?;
        self.push_results(initial);
        // Tell the inner session the chunk size its input will use: never split.
        let mut feed = ChunkSerializer::new();
        let packet = feed
            .set_max_chunk_size(MAX_EFFECTIVE_CHUNK_SIZE, RtmpTimestamp::new(0))
            .map_err(|e| SessionError::Rtmp {
                stream_key: "-".into(),
                reason: rml_err(e),
            })?;
        let results = server
            .handle_input(&packet.bytes)
            .map_err(|e| SessionError::Rtmp {
                stream_key: "-".into(),
                reason: rml_err(e),
            })?;
        self.phase = Phase::Active(Box::new(Active {
            server,
            feed,
            reader: ChunkReader::new(self.config.chunk_limits),
            create_streams: 0,
        }));
        self.push_results(results);
        Ok(())
    }

    fn push_results(&mut self, results: Vec<ServerSessionResult>) {
        for r in results {
            match r {
                ServerSessionResult::OutboundResponse(p) => self
                    .events
                    .push_back(SessionEvent::Transmit(Bytes::from(p.bytes))),
                ServerSessionResult::RaisedEvent(e) => self.handle_server_event(e),
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
    }

    fn process_input(&mut self, now: Instant) {
        let mut offset = 0;
        while let Phase::Active(active) = &mut self.phase {
            match active.reader.read(&self.input[offset..]) {
                Ok(ReadOutcome::NeedMore) => break,
                Ok(ReadOutcome::Chunk { consumed, message }) => {
                    offset += consumed;
                    if let Some(m) = message {
                        self.handle_message(now, m);
                    }
                }
                Err(source) => {
                    let stream_key = self.stream_key.clone();
                    self.fail(SessionError::Chunk { stream_key, source });
                    break;
                }
            }
        }
        self.input.drain(..offset);
    }

    fn maybe_acknowledge(&mut self) {
        let Some(window) = self.ack_window else {
            return;
        };
        if self.is_closed() || self.bytes_received - self.last_ack_at < u64::from(window) {
            return;
        }
        self.last_ack_at = self.bytes_received;
        // A type-0 chunk: csid, timestamp 0, length 4, type 3 (Acknowledgement), stream 0, sequence number.
        let mut chunk = vec![ACK_CSID as u8, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0];
        chunk.extend_from_slice(&(self.bytes_received as u32).to_be_bytes());
        self.events
            .push_back(SessionEvent::Transmit(Bytes::from(chunk)));
    }

    fn malformed(&mut self, message: &'static str, reason: impl Into<String>) {
        let stream_key = self.stream_key.clone();
        self.fail(SessionError::Malformed {
            stream_key,
            message,
            reason: reason.into(),
        });
    }

    fn handle_message(&mut self, now: Instant, m: RawMessage) {
        let u32_at = |d: &[u8]| {
            d.get(0..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match m.type_id {
            1 => match u32_at(&m.data) {
                Some(size) => {
                    if let Phase::Active(a) = &mut self.phase {
                        if let Err(source) = a.reader.set_chunk_size(size) {
                            let stream_key = self.stream_key.clone();
                            self.fail(SessionError::Chunk { stream_key, source });
                        }
                    }
                }
                None => self.malformed("Set Chunk Size", "shorter than 4 bytes"),
            },
            2 => match u32_at(&m.data) {
                Some(csid) => {
                    if let Phase::Active(a) = &mut self.phase {
                        a.reader.abort(csid);
                    }
                }
                None => self.malformed("Abort", "shorter than 4 bytes"),
            },
            3 | 6 => {} // Acknowledgement, Set Peer Bandwidth: nothing to do for an ingest.
            4 => {
                // User control: only well-formed events reach rml_rtmp (it answers pings).
                let ok = match m.data.get(0..2).map(|b| u16::from_be_bytes([b[0], b[1]])) {
                    Some(3) => m.data.len() >= 10,
                    Some(0..=4 | 6 | 7 | 31 | 32) => m.data.len() >= 6,
                    _ => false,
                };
                if ok {
                    self.feed_server(&m);
                }
            }
            5 => match u32_at(&m.data) {
                Some(0) | None => self.malformed("Window Acknowledgement Size", "missing or zero"),
                Some(w) => self.ack_window = Some(w),
            },
            8 | 9 => self.handle_media(now, m.type_id, m.message_stream_id, m.timestamp, m.data),
            15 | 18 => {
                let body = if m.type_id == 15 {
                    m.data.slice(1.min(m.data.len())..)
                } else {
                    m.data.clone()
                };
                self.handle_data(m.message_stream_id, &body);
            }
            17 | 20 => {
                let body = if m.type_id == 17 {
                    m.data.slice(1.min(m.data.len())..)
                } else {
                    m.data.clone()
                };
                self.handle_command(m, body);
            }
            22 => self.handle_aggregate(now, m),
            other => {
                tracing::debug!(stream = %self.stream_key, message_type = other, "ignoring RTMP message")
            }
        }
    }

    fn handle_aggregate(&mut self, now: Instant, m: RawMessage) {
        // FLV tags back to back: type(1) size(3) timestamp(3+1) stream id(3) body previous-size(4).
        let data = m.data;
        let mut pos = 0;
        let mut first_ts: Option<u32> = None;
        while pos + 11 <= data.len() {
            let ty = data[pos] & 0x1f;
            let size =
                u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
            let ts =
                u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
            let Some(body) = data.get(pos + 11..pos + 11 + size) else {
                tracing::warn!(stream = %self.stream_key, "truncated aggregate message; rest dropped");
                return;
            };
            let base = *first_ts.get_or_insert(ts);
            let timestamp = m.timestamp.wrapping_add(ts.wrapping_sub(base));
            let body = data.slice_ref(body);
            match ty {
                8 | 9 => self.handle_media(now, ty, m.message_stream_id, timestamp, body),
                18 => self.handle_data(m.message_stream_id, &body),
                _ => {}
            }
            pos += 11 + size + 4;
        }
    }

    fn handle_data(&mut self, message_stream_id: u32, body: &Bytes) {
        if body.len() > MAX_DATA_LEN {
            tracing::warn!(stream = %self.stream_key, len = body.len(), "oversized data message dropped");
            return;
        }
        let decoded = match amf0::decode_all(body) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(stream = %self.stream_key, error = %e, "malformed AMF0 data message dropped");
                return;
            }
        };
        let mut values = decoded.values.iter();
        let mut first = values.next().and_then(Amf0::as_str);
        if first == Some("@setDataFrame") {
            first = values.next().and_then(Amf0::as_str);
        }
        if first != Some("onMetaData") {
            return;
        }
        let Some(props) = values.next() else { return };
        if let Some(p) = self
            .publishing
            .as_mut()
            .filter(|p| p.message_stream_id == message_stream_id)
        {
            p.media.set_metadata(Metadata::from_amf(props));
        }
    }

    fn handle_command(&mut self, m: RawMessage, body: Bytes) {
        if body.len() > MAX_COMMAND_LEN {
            return self.malformed(
                "AMF0 command",
                format!("{} bytes, over {MAX_COMMAND_LEN}", body.len()),
            );
        }
        let decoded = match amf0::decode_all(&body) {
            Ok(d) => d,
            Err(e) => return self.malformed("AMF0 command", e.to_string()),
        };
        let v = &decoded.values;
        if v.len() < 3 || v[0].as_str().is_none() || v[1].as_f64().is_none() {
            return self.malformed(
                "AMF0 command",
                "needs a name, a transaction id and a command object",
            );
        }
        if !decoded.rml_compatible {
            return self.malformed("AMF0 command", "uses AMF0 types rml_rtmp does not decode");
        }
        let name = v[0].as_str().unwrap_or_default();
        if name == "createStream" {
            if let Phase::Active(a) = &mut self.phase {
                a.create_streams += 1;
                if a.create_streams > MAX_CREATE_STREAMS {
                    let stream_key = self.stream_key.clone();
                    return self.fail(SessionError::TooManyStreams { stream_key });
                }
            }
        }
        let as_command = RawMessage {
            type_id: 20,
            data: body,
            ..m
        };
        self.feed_server(&as_command);
    }

    /// Re-chunks one checked message into rml_rtmp's ServerSession.
    fn feed_server(&mut self, m: &RawMessage) {
        let Phase::Active(a) = &mut self.phase else {
            return;
        };
        let payload = MessagePayload {
            timestamp: RtmpTimestamp::new(m.timestamp),
            type_id: m.type_id,
            message_stream_id: m.message_stream_id,
            data: m.data.clone(),
        };
        let result = a
            .feed
            .serialize(&payload, true, false)
            .map_err(rml_err)
            .and_then(|p| a.server.handle_input(&p.bytes).map_err(rml_err));
        match result {
            Ok(results) => {
                self.current_message_stream_id = m.message_stream_id;
                self.push_results(results);
            }
            Err(reason) => {
                let stream_key = self.stream_key.clone();
                self.fail(SessionError::Rtmp { stream_key, reason });
            }
        }
    }

    fn server_call(
        &mut self,
        f: impl FnOnce(
            &mut ServerSession,
        )
            -> Result<Vec<ServerSessionResult>, rml_rtmp::sessions::ServerSessionError>,
    ) {
        let Phase::Active(a) = &mut self.phase else {
            return;
        };
        match f(&mut a.server) {
            Ok(results) => self.push_results(results),
            Err(e) => {
                let stream_key = self.stream_key.clone();
                self.fail(SessionError::Rtmp {
                    stream_key,
                    reason: e.to_string(),
                });
            }
        }
    }

    fn handle_server_event(&mut self, e: ServerSessionEvent) {
        match e {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                // "live?token=..." and "live/" name the same application.
                let app = normalize_app(&app_name).to_string();
                if app == self.config.app {
                    self.server_call(|s| s.accept_request(request_id));
                } else {
                    let description = format!("application {app:?} does not exist");
                    self.server_call(|s| {
                        s.reject_request(request_id, "NetConnection.Connect.Rejected", &description)
                    });
                    let expected = self.config.app.clone();
                    self.fail(SessionError::AppRefused {
                        app: app_name,
                        expected,
                    });
                }
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                ..
            } => {
                if self.pending_publish.is_some() || self.publishing.is_some() {
                    tracing::warn!(stream = %self.stream_key, requested = %redact(&stream_key), "second publish on one connection refused");
                    self.server_call(|s| {
                        s.reject_request(
                            request_id,
                            PUBLISH_BAD_NAME,
                            "this connection is already publishing",
                        )
                    });
                    return;
                }
                self.stream_key = redact(&stream_key);
                self.pending_publish = Some(PendingPublish {
                    request_id,
                    stream_key: stream_key.clone(),
                    message_stream_id: self.current_message_stream_id,
                });
                self.events.push_back(SessionEvent::PublishRequested {
                    app: normalize_app(&app_name).to_string(),
                    stream_key,
                });
            }
            ServerSessionEvent::PublishStreamFinished { .. } => self.finish_publish(),
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                if command_name == "FCUnpublish" {
                    self.finish_publish();
                } else {
                    tracing::debug!(stream = %self.stream_key, command = %command_name, "command ignored");
                }
            }
            ServerSessionEvent::PlayStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                self.server_call(|s| {
                    s.reject_request(
                        request_id,
                        "NetStream.Play.Failed",
                        "Vela does not serve RTMP playback; use HLS or DASH",
                    )
                });
                self.fail(SessionError::PlaybackRefused { stream_key });
            }
            _ => {}
        }
    }

    /// Accepts the pending publish request (after the driver authorised it and
    /// claimed the stream). From here on, logs and errors name the stream by
    /// `stream_name`, not by its key, which in key mode is a secret.
    pub fn accept_publish(&mut self, stream_name: &str) {
        let Some(mut p) = self.pending_publish.take() else {
            return;
        };
        self.stream_key = stream_name.to_string();
        p.stream_key = stream_name.to_string();
        self.server_call(|s| s.accept_request(p.request_id));
        if self.is_closed() {
            return;
        }
        self.publishing = Some(Publishing {
            message_stream_id: p.message_stream_id,
            media: MediaAssembler::new(p.stream_key),
            last_media: self.now,
        });
    }

    /// Refuses the pending publish request with `NetStream.Publish.BadName`; the session then ends.
    pub fn reject_publish(&mut self, reason: &str) {
        let Some(p) = self.pending_publish.take() else {
            return;
        };
        self.server_call(|s| s.reject_request(p.request_id, PUBLISH_BAD_NAME, reason));
        self.fail(SessionError::PublishRefused {
            stream_key: redact(&p.stream_key),
            reason: reason.to_string(),
        });
    }

    fn finish_publish(&mut self) {
        if let Some(mut p) = self.publishing.take() {
            p.media.flush(&mut self.events);
            self.events.push_back(SessionEvent::PublishFinished);
        }
    }

    fn handle_media(
        &mut self,
        now: Instant,
        type_id: u8,
        message_stream_id: u32,
        timestamp: u32,
        data: Bytes,
    ) {
        let Some(p) = self.publishing.as_mut() else {
            return;
        };
        if p.message_stream_id != message_stream_id {
            return;
        }
        p.last_media = Some(now);
        if type_id == 9 {
            p.media
                .video(&self.config, now, timestamp, &data, &mut self.events);
        } else {
            p.media
                .audio(&self.config, now, timestamp, &data, &mut self.events);
        }
    }

    fn check_media_timers(&mut self, now: Instant) {
        let Some(p) = self.publishing.as_mut() else {
            return;
        };
        let last = *p.last_media.get_or_insert(now);
        if now.saturating_duration_since(last) >= self.config.media_timeout {
            let e = SessionError::MediaTimeout {
                stream_key: self.stream_key.clone(),
                waited_s: self.config.media_timeout.as_secs(),
            };
            self.fail(e);
            return;
        }
        if let Err(e) = p.media.on_time(&self.config, now, &mut self.events) {
            self.fail(e);
        }
    }
}

/// What onMetaData announced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    pub has_video: Option<bool>,
    pub has_audio: Option<bool>,
    pub width: Option<f64>,
    pub height: Option<f64>,
    pub frame_rate: Option<f64>,
    pub video_kbps: Option<f64>,
    pub audio_kbps: Option<f64>,
}

impl Metadata {
    fn from_amf(props: &Amf0) -> Self {
        let num = |k: &str| {
            props
                .get(k)
                .and_then(Amf0::as_f64)
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        let flag = |k: &str| match props.get(k) {
            Some(Amf0::Bool(b)) => Some(*b),
            _ => None,
        };
        // videocodecid / audiocodecid may be numbers (7, 10, or a FourCC as a number) or strings.
        let present = |k: &str| {
            props
                .get(k)
                .is_some_and(|v| !matches!(v, Amf0::Null | Amf0::Undefined))
        };
        Metadata {
            has_video: flag("hasVideo").or(present("videocodecid").then_some(true)),
            has_audio: flag("hasAudio").or(present("audiocodecid").then_some(true)),
            width: num("width"),
            height: num("height"),
            frame_rate: num("framerate").or_else(|| num("fps")),
            video_kbps: num("videodatarate"),
            audio_kbps: num("audiodatarate"),
        }
    }

    fn expects(&self, kind: MediaKind) -> bool {
        match kind {
            MediaKind::Video => self.has_video.unwrap_or(false),
            MediaKind::Audio => self.has_audio.unwrap_or(false),
        }
    }
}

/// Unwraps one track's 32-bit millisecond timestamps and re-bases jumps.
#[derive(Debug, Default)]
struct Timeline {
    last_raw: Option<u32>,
    unwrapped: i64,
    offset: i64,
    last_out: Option<i64>,
    /// The last ordinary step, used to place a re-based timestamp.
    last_step: i64,
}

impl Timeline {
    /// The next timestamp in milliseconds on a continuous 64-bit timeline.
    fn next(&mut self, raw: u32, max_jump_ms: i64, stream_key: &str, kind: MediaKind) -> i64 {
        match self.last_raw {
            None => self.unwrapped = i64::from(raw),
            // The signed 32-bit difference is right across a wrap of the 32-bit clock.
            Some(prev) => self.unwrapped += i64::from(raw.wrapping_sub(prev) as i32),
        }
        self.last_raw = Some(raw);
        let mut out = self.unwrapped + self.offset;
        if let Some(last) = self.last_out {
            let step = out - last;
            if step.abs() > max_jump_ms {
                let target = last + self.last_step.clamp(1, 1000);
                tracing::warn!(
                    stream = stream_key,
                    track = kind.as_str(),
                    jump_ms = step,
                    "timestamp jump; re-basing the timeline"
                );
                self.offset += target - out;
                out = target;
            } else if step > 0 {
                self.last_step = step;
            }
        }
        self.last_out = Some(out);
        out
    }
}

struct PendingFrame {
    kind: MediaKind,
    dts_ms: i64,
    cts_ms: i32,
    keyframe: bool,
    data: Bytes,
}

/// Per-track output state once a track is announced.
#[derive(Debug, Default)]
struct Output {
    track_id: Option<u32>,
    last_dts: Option<i64>,
}

/// Rate-limits a repeated warning: logs the 1st, then every 500th.
#[derive(Debug, Default)]
struct DropCounter(u64);

impl DropCounter {
    fn hit(&mut self) -> Option<u64> {
        self.0 += 1;
        (self.0 == 1 || self.0.is_multiple_of(500)).then_some(self.0)
    }
}

/// Turns FLV tag bodies of one publish into media events. See the module docs.
pub struct MediaAssembler {
    stream_key: String,
    metadata: Option<Metadata>,
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    announced: bool,
    pending: VecDeque<PendingFrame>,
    pending_bytes: usize,
    first_pending_at: Option<Instant>,
    /// When media first arrived, until some configuration is known.
    media_without_config_since: Option<Instant>,
    last_media_error: Option<String>,
    video_clock: Timeline,
    audio_clock: Timeline,
    video_out: Output,
    audio_out: Output,
    dropped: DropCounter,
}

impl MediaAssembler {
    pub fn new(stream_key: String) -> Self {
        MediaAssembler {
            stream_key,
            metadata: None,
            video: None,
            audio: None,
            announced: false,
            pending: VecDeque::new(),
            pending_bytes: 0,
            first_pending_at: None,
            media_without_config_since: None,
            last_media_error: None,
            video_clock: Timeline::default(),
            audio_clock: Timeline::default(),
            video_out: Output::default(),
            audio_out: Output::default(),
            dropped: DropCounter::default(),
        }
    }

    fn next_deadline(&self, cfg: &SessionConfig) -> Option<Instant> {
        let a = self.first_pending_at.map(|t| t + cfg.track_wait);
        let b = self
            .media_without_config_since
            .map(|t| t + cfg.header_timeout);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set_metadata(&mut self, m: Metadata) {
        tracing::debug!(stream = %self.stream_key, metadata = ?m, "onMetaData");
        if !self.announced {
            self.metadata = Some(m);
        }
    }

    fn drop_frame(&mut self, kind: MediaKind, now: Instant, why: &str) {
        if self.video.is_none() && self.audio.is_none() && self.media_without_config_since.is_none()
        {
            self.media_without_config_since = Some(now);
        }
        if let Some(n) = self.dropped.hit() {
            tracing::warn!(stream = %self.stream_key, track = kind.as_str(), dropped = n, "dropping media: {why}");
        }
    }

    fn video(
        &mut self,
        cfg: &SessionConfig,
        now: Instant,
        ts: u32,
        data: &Bytes,
        out: &mut VecDeque<SessionEvent>,
    ) {
        let tag = match flv::parse_video_tag(data) {
            Ok(t) => t,
            Err(e) => return self.media_error(MediaKind::Video, now, e),
        };
        match tag {
            VideoTag::SequenceStart(c) => {
                if self.video.as_ref() != Some(&c) {
                    tracing::info!(stream = %self.stream_key, codec = ?c.codec, width = c.width, height = c.height, "video configuration");
                    self.video = Some(c);
                    self.media_without_config_since = None;
                    self.config_changed(cfg, now, out);
                }
            }
            VideoTag::Frame(f) => {
                let Some(c) = &self.video else {
                    return self.drop_frame(
                        MediaKind::Video,
                        now,
                        "video before its sequence header",
                    );
                };
                if c.codec != f.codec {
                    return self.drop_frame(
                        MediaKind::Video,
                        now,
                        "video frame of another codec than the sequence header",
                    );
                }
                let payload = if c.codec == VideoCodec::Av1 {
                    flv::av1::strip_temporal_delimiters(&f.data)
                } else {
                    match flv::normalize_nal_lengths(&f.data, c.nalu_length_size) {
                        Ok(p) => p,
                        Err(e) => return self.media_error(MediaKind::Video, now, e),
                    }
                };
                if payload.is_empty() {
                    return;
                }
                let dts_ms = self.video_clock.next(
                    ts,
                    cfg.max_timestamp_jump.as_millis() as i64,
                    &self.stream_key,
                    MediaKind::Video,
                );
                self.push(
                    cfg,
                    now,
                    PendingFrame {
                        kind: MediaKind::Video,
                        dts_ms,
                        cts_ms: f.cts_ms,
                        keyframe: f.keyframe,
                        data: payload,
                    },
                    out,
                );
            }
            VideoTag::SequenceEnd(_) | VideoTag::Ignored(_) => {}
        }
    }

    fn audio(
        &mut self,
        cfg: &SessionConfig,
        now: Instant,
        ts: u32,
        data: &Bytes,
        out: &mut VecDeque<SessionEvent>,
    ) {
        let tag = match flv::parse_audio_tag(data) {
            Ok(t) => t,
            Err(e) => return self.media_error(MediaKind::Audio, now, e),
        };
        match tag {
            AudioTag::SequenceStart(c) => {
                if self.audio.as_ref() != Some(&c) {
                    tracing::info!(stream = %self.stream_key, sample_rate = c.sample_rate, channels = c.channels, "audio configuration");
                    self.audio = Some(c);
                    self.media_without_config_since = None;
                    self.config_changed(cfg, now, out);
                }
            }
            AudioTag::Frame(payload) => {
                if self.audio.is_none() {
                    return self.drop_frame(
                        MediaKind::Audio,
                        now,
                        "audio before its sequence header",
                    );
                }
                let dts_ms = self.audio_clock.next(
                    ts,
                    cfg.max_timestamp_jump.as_millis() as i64,
                    &self.stream_key,
                    MediaKind::Audio,
                );
                self.push(
                    cfg,
                    now,
                    PendingFrame {
                        kind: MediaKind::Audio,
                        dts_ms,
                        cts_ms: 0,
                        keyframe: true,
                        data: payload,
                    },
                    out,
                );
            }
            AudioTag::SequenceEnd | AudioTag::Ignored(_) => {}
        }
    }

    fn media_error(&mut self, kind: MediaKind, now: Instant, e: FlvError) {
        let why = e.to_string();
        self.last_media_error = Some(why.clone());
        self.drop_frame(kind, now, &why);
    }

    fn config_changed(
        &mut self,
        cfg: &SessionConfig,
        now: Instant,
        out: &mut VecDeque<SessionEvent>,
    ) {
        if self.announced {
            // A new sequence header mid-stream (resolution change, encoder restart) or a late track.
            self.announce(out);
        } else {
            self.maybe_announce(cfg, now, out);
        }
    }

    fn push(
        &mut self,
        cfg: &SessionConfig,
        now: Instant,
        f: PendingFrame,
        out: &mut VecDeque<SessionEvent>,
    ) {
        if self.announced {
            return self.emit(f, out);
        }
        self.first_pending_at.get_or_insert(now);
        self.pending_bytes += f.data.len();
        self.pending.push_back(f);
        self.maybe_announce(cfg, now, out);
    }

    fn pending_span_ms(&self) -> i64 {
        let mut span = 0;
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let mut it = self
                .pending
                .iter()
                .filter(|f| f.kind == kind)
                .map(|f| f.dts_ms);
            if let Some(first) = it.next() {
                let last = it.last().unwrap_or(first);
                span = span.max(last - first);
            }
        }
        span
    }

    fn maybe_announce(
        &mut self,
        cfg: &SessionConfig,
        now: Instant,
        out: &mut VecDeque<SessionEvent>,
    ) {
        if self.announced || (self.video.is_none() && self.audio.is_none()) {
            return;
        }
        let complete = match &self.metadata {
            Some(m) => {
                (!m.expects(MediaKind::Video) || self.video.is_some())
                    && (!m.expects(MediaKind::Audio) || self.audio.is_some())
            }
            None => self.video.is_some() && self.audio.is_some(),
        };
        let buffer_full = self.pending.len() >= cfg.max_pending_frames
            || self.pending_bytes >= cfg.max_pending_bytes
            || self.pending_span_ms() >= cfg.track_wait.as_millis() as i64
            || self
                .first_pending_at
                .is_some_and(|t| now.saturating_duration_since(t) >= cfg.track_wait);
        if complete || buffer_full {
            if !complete {
                tracing::info!(
                    stream = %self.stream_key,
                    video = self.video.is_some(),
                    audio = self.audio.is_some(),
                    "announcing tracks without waiting longer for the rest"
                );
            }
            self.announce(out);
        }
    }

    fn announce(&mut self, out: &mut VecDeque<SessionEvent>) {
        // Ids: video 1 and audio 2, or audio 1 when it is alone; a late track takes the next id.
        let first_time = !self.announced;
        if first_time {
            if self.video.is_some() {
                self.video_out.track_id = Some(1);
            }
            if self.audio.is_some() {
                self.audio_out.track_id = Some(if self.video.is_some() { 2 } else { 1 });
            }
        } else {
            let next = 1 + self
                .video_out
                .track_id
                .unwrap_or(0)
                .max(self.audio_out.track_id.unwrap_or(0));
            if self.video.is_some() && self.video_out.track_id.is_none() {
                self.video_out.track_id = Some(next);
            } else if self.audio.is_some() && self.audio_out.track_id.is_none() {
                self.audio_out.track_id = Some(next);
            }
        }
        let meta = self.metadata.clone().unwrap_or_default();
        let kbps = |k: Option<f64>| k.map(|k| (k * 1000.0).min(f64::from(u32::MAX)) as u32);
        let mut tracks = Vec::new();
        if let (Some(c), Some(id)) = (&self.video, self.video_out.track_id) {
            tracks.push(Track {
                id,
                timescale: 90_000,
                config: c.to_codec_config(meta.frame_rate),
                bitrate: kbps(meta.video_kbps),
            });
        }
        if let (Some(c), Some(id)) = (&self.audio, self.audio_out.track_id) {
            tracks.push(Track {
                id,
                timescale: c.sample_rate,
                config: c.to_codec_config(),
                bitrate: kbps(meta.audio_kbps),
            });
        }
        tracks.sort_by_key(|t| t.id);
        tracing::info!(stream = %self.stream_key, tracks = ?tracks.iter().map(|t| t.config.codec_string()).collect::<Vec<_>>(), "tracks announced");
        out.push_back(SessionEvent::Media(MediaEvent::Tracks(Arc::new(tracks))));
        self.announced = true;
        self.first_pending_at = None;
        self.pending_bytes = 0;
        while let Some(f) = self.pending.pop_front() {
            self.emit(f, out);
        }
    }

    fn emit(&mut self, f: PendingFrame, out: &mut VecDeque<SessionEvent>) {
        let (timescale, output) = match f.kind {
            MediaKind::Video => (90_000i64, &mut self.video_out),
            MediaKind::Audio => (
                self.audio
                    .as_ref()
                    .map_or(1000, |c| i64::from(c.sample_rate)),
                &mut self.audio_out,
            ),
        };
        let Some(track_id) = output.track_id else {
            return;
        };
        let to_ticks = |ms: i64| (ms * timescale + 500) / 1000;
        let pts = to_ticks(f.dts_ms + i64::from(f.cts_ms));
        let mut dts = to_ticks(f.dts_ms);
        if let Some(last) = output.last_dts {
            // Video decode times must strictly increase, audio ones must not go back.
            let min = if f.kind == MediaKind::Video {
                last + 1
            } else {
                last
            };
            dts = dts.max(min);
        }
        output.last_dts = Some(dts);
        let cts_offset = (pts - dts).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        out.push_back(SessionEvent::Media(MediaEvent::Frame(Frame {
            track_id,
            dts,
            cts_offset,
            keyframe: f.keyframe,
            data: f.data,
        })));
    }

    /// Emits whatever is buffered (the publish ends).
    fn flush(&mut self, out: &mut VecDeque<SessionEvent>) {
        if !self.announced && (self.video.is_some() || self.audio.is_some()) {
            self.announce(out);
        }
    }

    fn on_time(
        &mut self,
        cfg: &SessionConfig,
        now: Instant,
        out: &mut VecDeque<SessionEvent>,
    ) -> Result<(), SessionError> {
        if let Some(since) = self.media_without_config_since {
            let waited = now.saturating_duration_since(since);
            if waited >= cfg.header_timeout && self.video.is_none() && self.audio.is_none() {
                return Err(SessionError::NoCodecHeaders {
                    stream_key: self.stream_key.clone(),
                    waited_s: waited.as_secs(),
                    detail: self
                        .last_media_error
                        .clone()
                        .unwrap_or_else(|| "no sequence header received".to_string()),
                });
            }
        }
        if !self.announced && self.first_pending_at.is_some() {
            self.maybe_announce(cfg, now, out);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
