//! Simulated-time tests of the session core against rml_rtmp's client side.

use super::*;
use crate::flv::tests::{flv_tags_with_time, X264_FLV};
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};

pub(crate) struct Harness {
    pub server: RtmpSession,
    pub client: ClientSession,
    pub now: Instant,
    /// Server events other than Transmit, in order.
    pub events: Vec<SessionEvent>,
    pub client_events: Vec<ClientSessionEvent>,
    /// Raw bytes the server sent after the handshake (to look for acknowledgements).
    pub sent: Vec<u8>,
}

impl Harness {
    /// Handshake done, client session created (not yet connected).
    pub(crate) fn new(config: SessionConfig) -> Self {
        let now = Instant::now();
        let mut server = RtmpSession::new(config);
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs.generate_outbound_p0_and_p1().unwrap();
        server.handle_input(now, &c0c1);
        let s012 = match server.poll_event() {
            Some(SessionEvent::Transmit(b)) => b,
            other => panic!("expected S0/S1/S2, got {other:?}"),
        };
        let c2 = match hs.process_bytes(&s012).unwrap() {
            HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
            HandshakeProcessResult::InProgress { .. } => panic!("client handshake incomplete"),
        };
        let (client, initial) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        assert!(initial.is_empty());
        let mut h = Harness {
            server,
            client,
            now,
            events: Vec::new(),
            client_events: Vec::new(),
            sent: Vec::new(),
        };
        h.send_to_server(&c2);
        assert!(!h.server.is_handshaking());
        h
    }

    pub(crate) fn send_to_server(&mut self, bytes: &[u8]) {
        self.server.handle_input(self.now, bytes);
        self.pump();
    }

    fn client_results(&mut self, results: Vec<ClientSessionResult>) {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => {
                    self.server.handle_input(self.now, &p.bytes)
                }
                ClientSessionResult::RaisedEvent(e) => self.client_events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
    }

    pub(crate) fn pump(&mut self) {
        while let Some(ev) = self.server.poll_event() {
            match ev {
                SessionEvent::Transmit(b) => {
                    self.sent.extend_from_slice(&b);
                    if let Ok(results) = self.client.handle_input(&b) {
                        self.client_results(results);
                    }
                }
                other => self.events.push(other),
            }
        }
    }

    pub(crate) fn client_send(
        &mut self,
        r: Result<ClientSessionResult, rml_rtmp::sessions::ClientSessionError>,
    ) {
        self.client_results(vec![r.unwrap()]);
        self.pump();
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.server.handle_timeout(self.now);
        self.pump();
    }

    /// Connects to `live` and asks to publish `key`; the driver's decision is left to the test.
    pub(crate) fn request_publish(&mut self, key: &str) {
        let r = self.client.request_connection("live".into());
        self.client_send(r);
        assert!(
            self.client_events
                .contains(&ClientSessionEvent::ConnectionRequestAccepted),
            "{:?}",
            self.client_events
        );
        let r = self
            .client
            .request_publishing(key.into(), PublishRequestType::Live);
        self.client_send(r);
    }

    pub(crate) fn publish(&mut self, key: &str) {
        self.request_publish(key);
        assert!(
            matches!(self.events.pop(), Some(SessionEvent::PublishRequested { ref stream_key, .. }) if stream_key == key)
        );
        self.server.accept_publish(key);
        self.pump();
        assert!(
            self.client_events
                .contains(&ClientSessionEvent::PublishRequestAccepted),
            "{:?}",
            self.client_events
        );
    }

    pub(crate) fn video(&mut self, ts: u32, body: &[u8]) {
        let r = self.client.publish_video_data(
            Bytes::copy_from_slice(body),
            RtmpTimestamp::new(ts),
            false,
        );
        self.client_send(r);
    }

    pub(crate) fn audio(&mut self, ts: u32, body: &[u8]) {
        let r = self.client.publish_audio_data(
            Bytes::copy_from_slice(body),
            RtmpTimestamp::new(ts),
            false,
        );
        self.client_send(r);
    }

    pub(crate) fn media(&self) -> Vec<&MediaEvent> {
        self.events
            .iter()
            .filter_map(|e| {
                if let SessionEvent::Media(m) = e {
                    Some(m)
                } else {
                    None
                }
            })
            .collect()
    }

    pub(crate) fn failure(&self) -> Option<&SessionError> {
        self.events.iter().find_map(|e| {
            if let SessionEvent::Failed(f) = e {
                Some(f)
            } else {
                None
            }
        })
    }
}

fn metadata(video: bool, audio: bool) -> StreamMetadata {
    let mut m = StreamMetadata::new();
    if video {
        m.video_codec_id = Some(7);
        m.video_width = Some(640);
        m.video_height = Some(360);
        m.video_frame_rate = Some(30.0);
        m.video_bitrate_kbps = Some(1000);
    }
    if audio {
        m.audio_codec_id = Some(10);
        m.audio_bitrate_kbps = Some(128);
    }
    m
}

fn frames_of(h: &Harness, track_id: u32) -> Vec<Frame> {
    h.media()
        .into_iter()
        .filter_map(|m| match m {
            MediaEvent::Frame(f) if f.track_id == track_id => Some(f.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn ffmpeg_flv_published_through_the_session_becomes_tracks_and_frames() {
    let mut h = Harness::new(SessionConfig::default());
    h.publish("show");
    let r = h.client.publish_metadata(&metadata(true, true));
    h.client_send(r);
    for (ty, ts, body) in flv_tags_with_time(X264_FLV) {
        match ty {
            9 => h.video(ts, &body),
            8 => h.audio(ts, &body),
            _ => {}
        }
    }
    let r = h.client.stop_publishing();
    h.client_results(r.unwrap());
    h.pump();
    assert!(h.failure().is_none(), "{:?}", h.failure());

    let media = h.media();
    let MediaEvent::Tracks(tracks) = media[0] else {
        panic!("first media event must be Tracks: {:?}", media[0])
    };
    assert_eq!(tracks.len(), 2);
    assert_eq!((tracks[0].id, tracks[0].timescale), (1, 90_000));
    assert!(tracks[0].config.codec_string().starts_with("avc1.64"));
    assert!(
        matches!(tracks[0].config, CodecConfig::Video { width: 640, height: 360, frame_rate: Some(f), .. } if f == 30.0)
    );
    assert_eq!(tracks[0].bitrate, Some(1_000_000));
    assert_eq!((tracks[1].id, tracks[1].timescale), (2, 44_100));
    assert_eq!(tracks[1].config.codec_string(), "mp4a.40.2");
    assert_eq!(
        media
            .iter()
            .filter(|m| matches!(m, MediaEvent::Tracks(_)))
            .count(),
        1
    );

    let video = frames_of(&h, 1);
    assert_eq!(video.len(), 30);
    assert!(video[0].keyframe);
    assert!(
        video.windows(2).all(|w| w[1].dts > w[0].dts),
        "video dts strictly increasing"
    );
    // 30 fps at 90 kHz, from millisecond timestamps: 3000 or 3060/2970 ticks.
    assert!(video
        .windows(2)
        .all(|w| (2900..=3100).contains(&(w[1].dts - w[0].dts))));
    assert!(
        video.iter().any(|f| f.cts_offset > 0),
        "B-frames keep their composition offsets"
    );
    let audio = frames_of(&h, 2);
    assert!(audio.len() >= 40);
    assert!(audio.windows(2).all(|w| w[1].dts >= w[0].dts));
    assert!(matches!(
        h.events.last(),
        Some(SessionEvent::PublishFinished)
    ));
}

type Tag = (u8, u32, Vec<u8>);

fn fixture_headers() -> (Vec<u8>, Vec<u8>, Vec<Tag>) {
    let tags = flv_tags_with_time(X264_FLV);
    let vh = tags
        .iter()
        .find(|t| t.0 == 9 && t.2[1] == 0)
        .unwrap()
        .2
        .clone();
    let ah = tags
        .iter()
        .find(|t| t.0 == 8 && t.2[1] == 0)
        .unwrap()
        .2
        .clone();
    let frames = tags
        .into_iter()
        .filter(|t| (t.0 == 9 || t.0 == 8) && t.2[1] == 1)
        .collect();
    (vh, ah, frames)
}

#[test]
fn without_metadata_the_tracks_wait_for_both_headers() {
    let (vh, ah, _) = fixture_headers();
    let mut h = Harness::new(SessionConfig::default());
    h.publish("k");
    h.video(0, &vh);
    assert!(
        h.media().is_empty(),
        "one header alone is not the whole set yet"
    );
    h.audio(0, &ah);
    let MediaEvent::Tracks(t) = h.media()[0] else {
        panic!()
    };
    assert_eq!(t.len(), 2);
}

#[test]
fn audio_only_is_announced_as_track_1_after_the_wait() {
    let (_, ah, frames) = fixture_headers();
    let mut h = Harness::new(SessionConfig::default());
    h.publish("radio");
    h.audio(0, &ah);
    for (ty, ts, body) in frames.iter().filter(|f| f.0 == 8).take(5) {
        assert_eq!(*ty, 8);
        h.audio(*ts, body);
    }
    assert!(h.media().is_empty(), "early frames are buffered");
    h.advance(Duration::from_millis(1100));
    let MediaEvent::Tracks(t) = h.media()[0] else {
        panic!()
    };
    assert_eq!((t.len(), t[0].id, t[0].timescale), (1, 1, 44_100));
    assert_eq!(
        frames_of(&h, 1).len(),
        5,
        "buffered frames follow the announcement"
    );
}

#[test]
fn metadata_promising_audio_waits_then_announces_video_and_adds_audio_later() {
    let (vh, ah, frames) = fixture_headers();
    let mut h = Harness::new(SessionConfig::default());
    h.publish("k");
    let r = h.client.publish_metadata(&metadata(true, true));
    h.client_send(r);
    h.video(0, &vh);
    let _ = frames;
    let mut sent = 0;
    for i in 0..100u32 {
        h.video(i * 33, &[0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41]);
        sent += 1;
        if !h.media().is_empty() {
            break;
        }
    }
    // ~1 s of 30 fps video is buffered before giving up on the audio.
    assert!((31..=33).contains(&sent), "announced after {sent} frames");
    assert_eq!(
        frames_of(&h, 1).len(),
        sent,
        "the buffered frames follow the announcement"
    );
    let MediaEvent::Tracks(t) = h.media()[0] else {
        panic!()
    };
    assert_eq!(t.len(), 1);
    h.audio(1000, &ah);
    let tracks: Vec<_> = h
        .media()
        .into_iter()
        .filter_map(|m| {
            if let MediaEvent::Tracks(t) = m {
                Some(t.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(tracks.len(), 2);
    assert_eq!(
        tracks[1].iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn changed_sequence_header_re_announces() {
    let (vh, ah, _) = fixture_headers();
    let mut h = Harness::new(SessionConfig::default());
    h.publish("k");
    h.video(0, &vh);
    h.audio(0, &ah);
    h.video(10, &vh); // same header again: nothing new
    let mut hevc = vec![0x90]; // enhanced, SequenceStart
    hevc.extend_from_slice(b"hvc1");
    hevc.extend_from_slice(crate::flv::hevc::tests::X265_426X240);
    h.video(20, &hevc);
    let tracks: Vec<_> = h
        .media()
        .into_iter()
        .filter_map(|m| {
            if let MediaEvent::Tracks(t) = m {
                Some(t.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(tracks.len(), 2);
    assert!(tracks[1][0].config.codec_string().starts_with("hvc1"));
    assert!(matches!(
        tracks[1][0].config,
        CodecConfig::Video {
            width: 426,
            height: 240,
            ..
        }
    ));
}

/// For tests of other timers: media liveness (10 s by default) out of the way.
fn without_liveness_limit() -> SessionConfig {
    SessionConfig {
        media_timeout: Duration::from_secs(3600),
        ..SessionConfig::default()
    }
}

#[test]
fn frames_without_headers_are_dropped_then_the_session_fails() {
    let (_, _, frames) = fixture_headers();
    let mut h = Harness::new(without_liveness_limit());
    h.publish("k");
    for (ty, ts, body) in frames.iter().take(20) {
        if *ty == 9 {
            h.video(*ts, body);
        } else {
            h.audio(*ts, body);
        }
    }
    assert!(h.media().is_empty() && h.failure().is_none());
    h.advance(Duration::from_secs(5));
    assert!(h.failure().is_none());
    h.advance(Duration::from_secs(6));
    assert!(
        matches!(h.failure(), Some(SessionError::NoCodecHeaders { stream_key, .. }) if stream_key == "k"),
        "{:?}",
        h.events
    );
}

#[test]
fn late_header_rescues_a_headerless_start() {
    let (vh, ah, frames) = fixture_headers();
    let mut h = Harness::new(without_liveness_limit());
    h.publish("k");
    h.video(0, &frames.iter().find(|f| f.0 == 9).unwrap().2);
    h.advance(Duration::from_secs(3));
    h.video(100, &vh);
    h.audio(100, &ah);
    h.advance(Duration::from_secs(20));
    assert!(h.failure().is_none());
    assert!(matches!(h.media()[0], MediaEvent::Tracks(_)));
}

#[test]
fn timestamps_unwrap_across_32_bits_and_jumps_are_re_based() {
    let (vh, ah, _) = fixture_headers();
    let frame = [0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65];
    let mut h = Harness::new(SessionConfig::default());
    h.publish("k");
    h.video(u32::MAX - 100, &vh);
    h.audio(u32::MAX - 100, &ah);
    let mut ts = u32::MAX - 66;
    for _ in 0..6 {
        h.video(ts, &frame);
        ts = ts.wrapping_add(33);
    }
    // A small step back (clamped), then a jump of an hour ahead (re-based).
    h.video(0, &frame);
    h.video(33, &frame);
    h.video(3_600_000, &frame);
    h.video(3_600_033, &frame);
    let v = frames_of(&h, 1);
    assert_eq!(v.len(), 10);
    assert!(
        v.windows(2).all(|w| w[1].dts > w[0].dts),
        "{:?}",
        v.iter().map(|f| f.dts).collect::<Vec<_>>()
    );
    assert!(
        v.windows(2).all(|w| w[1].dts - w[0].dts <= 33 * 90 + 90),
        "no step larger than a frame or so"
    );
    assert!(
        v[0].dts > i64::from(u32::MAX - 100) * 90,
        "unwrapped, not reset"
    );
}

#[test]
fn publish_can_be_rejected_with_bad_name() {
    let mut h = Harness::new(SessionConfig::default());
    h.request_publish("taken");
    assert!(matches!(
        h.events.last(),
        Some(SessionEvent::PublishRequested { .. })
    ));
    h.server
        .reject_publish("stream \"taken\" already has a publisher");
    h.pump();
    assert!(matches!(
        h.failure(),
        Some(SessionError::PublishRefused { .. })
    ));
    assert!(
        h.sent
            .windows(PUBLISH_BAD_NAME.len())
            .any(|w| w == PUBLISH_BAD_NAME.as_bytes()),
        "BadName status sent"
    );
}

#[test]
fn other_applications_are_refused() {
    let mut h = Harness::new(SessionConfig::default());
    let r = h.client.request_connection("vod".into());
    h.client_send(r);
    assert!(matches!(h.failure(), Some(SessionError::AppRefused { app, .. }) if app == "vod"));
    let status = b"NetConnection.Connect.Rejected";
    assert!(h.sent.windows(status.len()).any(|w| w == status));
}

#[test]
fn playback_is_refused() {
    let mut h = Harness::new(SessionConfig::default());
    let r = h.client.request_connection("live".into());
    h.client_send(r);
    let r = h.client.request_playback("show".into());
    h.client_send(r);
    assert!(
        matches!(h.failure(), Some(SessionError::PlaybackRefused { .. })),
        "{:?}",
        h.events
    );
}

#[test]
fn finish_via_fcunpublish() {
    let (vh, ah, _) = fixture_headers();
    let mut h = Harness::new(SessionConfig::default());
    h.publish("k");
    h.video(0, &vh);
    h.audio(0, &ah);
    let mut ser = ChunkSerializer::new();
    let cmd = rml_rtmp::rml_amf0::serialize(&vec![
        rml_rtmp::rml_amf0::Amf0Value::Utf8String("FCUnpublish".into()),
        rml_rtmp::rml_amf0::Amf0Value::Number(5.0),
        rml_rtmp::rml_amf0::Amf0Value::Null,
        rml_rtmp::rml_amf0::Amf0Value::Utf8String("k".into()),
    ])
    .unwrap();
    let p = MessagePayload {
        timestamp: RtmpTimestamp::new(0),
        type_id: 20,
        message_stream_id: 0,
        data: Bytes::from(cmd),
    };
    h.send_to_server(&ser.serialize(&p, true, false).unwrap().bytes);
    assert!(matches!(
        h.events.last(),
        Some(SessionEvent::PublishFinished)
    ));
}

/// Raw messages on csid 20+ through a private serializer (never mixed with the client's csids).
fn raw(ser: &mut ChunkSerializer, type_id: u8, msid: u32, data: Vec<u8>) -> Vec<u8> {
    let p = MessagePayload {
        timestamp: RtmpTimestamp::new(0),
        type_id,
        message_stream_id: msid,
        data: Bytes::from(data),
    };
    ser.serialize(&p, true, false).unwrap().bytes
}

#[test]
fn acknowledgements_carry_the_running_byte_count() {
    let (vh, _, frames) = fixture_headers();
    let mut h = Harness::new(SessionConfig::default());
    h.publish("k");
    let mut ser = ChunkSerializer::new();
    h.send_to_server(&raw(&mut ser, 5, 0, 5000u32.to_be_bytes().to_vec()));
    h.sent.clear();
    h.video(0, &vh);
    for (_, ts, body) in frames.iter().filter(|f| f.0 == 9).take(10) {
        h.video(*ts, body);
    }
    // Find our acknowledgement chunks: csid 7, type 3.
    let mut acks = Vec::new();
    let s = &h.sent;
    for i in 0..s.len().saturating_sub(16) {
        if s[i] == ACK_CSID as u8
            && s[i + 4..i + 8] == [0, 0, 4, 3]
            && s[i + 8..i + 12] == [0, 0, 0, 0]
        {
            acks.push(u32::from_be_bytes([
                s[i + 12],
                s[i + 13],
                s[i + 14],
                s[i + 15],
            ]));
        }
    }
    assert!(acks.len() >= 2, "{acks:?}");
    assert!(
        acks.windows(2).all(|w| w[1] > w[0] + 4000),
        "running totals: {acks:?}"
    );
}

#[test]
fn hostile_amf0_fails_cleanly_instead_of_panicking() {
    // Data message "@setDataFrame" alone panics rml_rtmp's ServerSession; a command
    // with fewer than three values panics its decoder. Neither reaches it.
    let mut h = Harness::new(SessionConfig::default());
    h.publish("k");
    let mut ser = ChunkSerializer::new();
    h.send_to_server(&raw(
        &mut ser,
        18,
        1,
        vec![
            0x02, 0x00, 0x0d, b'@', b's', b'e', b't', b'D', b'a', b't', b'a', b'F', b'r', b'a',
            b'm', b'e',
        ],
    ));
    assert!(h.failure().is_none());
    h.send_to_server(&raw(&mut ser, 20, 0, vec![0x02, 0x00, 0x01, b'x']));
    assert!(matches!(h.failure(), Some(SessionError::Malformed { .. })));

    let mut h = Harness::new(SessionConfig::default());
    let mut deep = Vec::new();
    deep.extend_from_slice(&[0x02, 0x00, 0x07]);
    deep.extend_from_slice(b"connect");
    deep.push(0x00);
    deep.extend_from_slice(&1f64.to_be_bytes());
    for _ in 0..10_000 {
        deep.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    h.send_to_server(&raw(&mut ser, 20, 0, deep));
    assert!(
        matches!(h.failure(), Some(SessionError::Malformed { .. })),
        "{:?}",
        h.events
    );
}

#[test]
fn absurd_chunk_size_and_garbage_handshake_fail() {
    let mut h = Harness::new(SessionConfig::default());
    let mut ser = ChunkSerializer::new();
    h.send_to_server(&raw(&mut ser, 1, 0, 0x8000_0000u32.to_be_bytes().to_vec()));
    assert!(matches!(
        h.failure(),
        Some(SessionError::Chunk {
            source: ChunkError::InvalidChunkSize(_),
            ..
        })
    ));

    let mut s = RtmpSession::new(SessionConfig::default());
    s.handle_input(Instant::now(), b"GET / HTTP/1.1\r\n\r\n");
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Failed(SessionError::Handshake(_)))
    ));
    assert!(s.is_closed());
}

/// What an encoder sends after publish is accepted (message stream 1):
/// chunk size, onMetaData, both sequence headers and 40 frames, chunked by rml_rtmp.
pub(crate) fn recorded_publish_wire() -> Vec<u8> {
    let (vh, ah, frames) = fixture_headers();
    let mut ser = ChunkSerializer::new();
    let mut wire = Vec::new();
    let tag = |ty: u8, ts: u32, body: &[u8]| MessagePayload {
        timestamp: RtmpTimestamp::new(ts),
        type_id: ty,
        message_stream_id: 1,
        data: Bytes::copy_from_slice(body),
    };
    use rml_rtmp::rml_amf0::{serialize, Amf0Value};
    let mut props = std::collections::HashMap::new();
    props.insert("videocodecid".to_string(), Amf0Value::Number(7.0));
    props.insert("audiocodecid".to_string(), Amf0Value::Number(10.0));
    props.insert("framerate".to_string(), Amf0Value::Number(30.0));
    let meta = serialize(&vec![
        Amf0Value::Utf8String("@setDataFrame".into()),
        Amf0Value::Utf8String("onMetaData".into()),
        Amf0Value::Object(props),
    ])
    .unwrap();
    wire.extend(
        ser.set_max_chunk_size(1000, RtmpTimestamp::new(0))
            .unwrap()
            .bytes,
    );
    wire.extend(
        ser.serialize(&tag(18, 0, &meta), false, false)
            .unwrap()
            .bytes,
    );
    wire.extend(ser.serialize(&tag(9, 0, &vh), false, false).unwrap().bytes);
    wire.extend(ser.serialize(&tag(8, 0, &ah), false, false).unwrap().bytes);
    for (ty, ts, body) in frames.iter().take(40) {
        wire.extend(
            ser.serialize(&tag(*ty, *ts, body), false, false)
                .unwrap()
                .bytes,
        );
    }
    wire
}

#[test]
fn byte_at_a_time_input_is_the_same_as_one_buffer() {
    let wire = recorded_publish_wire();
    let run = |step: usize| {
        let mut h = Harness::new(SessionConfig::default());
        h.publish("k");
        for c in wire.chunks(step) {
            h.send_to_server(c);
        }
        assert!(h.failure().is_none(), "{:?}", h.failure());
        h.media()
            .into_iter()
            .map(|m| format!("{m:?}"))
            .collect::<Vec<_>>()
    };
    let whole = run(wire.len());
    assert!(whole.len() > 40);
    assert!(whole[0].starts_with("Tracks"));
    assert_eq!(run(1), whole);
    assert_eq!(run(777), whole);
}

#[test]
fn aggregate_messages_are_unpacked() {
    let (vh, ah, _) = fixture_headers();
    let frame = [0x17u8, 1, 0, 0, 0, 0, 0, 0, 1, 0x65];
    let mut agg = Vec::new();
    for (ty, ts, body) in [
        (9u8, 1000u32, &vh[..]),
        (8, 1000, &ah[..]),
        (9, 1000, &frame[..]),
        (9, 1040, &frame[..]),
    ] {
        let size = body.len() as u32;
        agg.push(ty);
        agg.extend_from_slice(&size.to_be_bytes()[1..]);
        agg.extend_from_slice(&ts.to_be_bytes()[1..]);
        agg.push((ts >> 24) as u8);
        agg.extend_from_slice(&[0, 0, 0]);
        agg.extend_from_slice(body);
        agg.extend_from_slice(&(size + 11).to_be_bytes());
    }
    let mut h = Harness::new(SessionConfig::default());
    h.publish("k");
    let mut ser = ChunkSerializer::new();
    let size = ser
        .set_max_chunk_size(65536, RtmpTimestamp::new(0))
        .unwrap();
    h.send_to_server(&size.bytes);
    // The aggregate's own timestamp (5000) replaces the first tag's (1000).
    let p = MessagePayload {
        timestamp: RtmpTimestamp::new(5000),
        type_id: 22,
        message_stream_id: 1,
        data: Bytes::from(agg),
    };
    h.send_to_server(&ser.serialize(&p, true, false).unwrap().bytes);
    let v = frames_of(&h, 1);
    assert_eq!(
        v.iter().map(|f| f.dts).collect::<Vec<_>>(),
        vec![5000 * 90, 5040 * 90],
        "{:?}",
        h.events
    );
}

#[test]
fn a_large_backward_jump_keeps_audio_from_going_back() {
    let (_, ah, _) = fixture_headers();
    let mut h = Harness::new(SessionConfig::default());
    h.publish("radio");
    h.audio(100_000, &ah);
    let frame = [0xaf, 1, 0x21, 0x10, 0x04];
    for ts in [100_000, 100_023, 100_046, 20, 43, 66] {
        h.audio(ts, &frame);
    }
    h.advance(Duration::from_secs(2));
    let a = frames_of(&h, 1);
    assert_eq!(a.len(), 6);
    assert!(
        a.windows(2).all(|w| w[1].dts > w[0].dts),
        "{:?}",
        a.iter().map(|f| f.dts).collect::<Vec<_>>()
    );
    // After the re-base the 23 ms cadence continues (1014 ticks at 44.1 kHz, give or take rounding).
    assert!((1000..1030).contains(&(a[4].dts - a[3].dts)));
}

#[test]
fn app_with_query_or_slash_is_the_live_app() {
    for app in ["live?token=abc", "live/"] {
        let mut h = Harness::new(SessionConfig::default());
        let r = h.client.request_connection(app.into());
        h.client_send(r);
        assert!(
            h.client_events
                .contains(&ClientSessionEvent::ConnectionRequestAccepted),
            "{app}"
        );
        let r = h
            .client
            .request_publishing("k".into(), PublishRequestType::Live);
        h.client_send(r);
        assert!(
            matches!(h.events.last(), Some(SessionEvent::PublishRequested { app, .. }) if app == "live"),
            "{:?}",
            h.events
        );
    }
}

#[test]
fn the_early_frame_buffer_is_bounded_in_bytes_too() {
    let (vh, _, _) = fixture_headers();
    let config = SessionConfig {
        max_pending_bytes: 100_000,
        ..SessionConfig::default()
    };
    let mut h = Harness::new(config);
    h.publish("k");
    let r = h.client.publish_metadata(&metadata(true, true));
    h.client_send(r);
    h.video(0, &vh);
    // 30 KB frames, 1 ms apart: neither the frame count nor the media span nor the
    // wall clock would announce yet; the byte bound does, at the fourth frame.
    let mut big = vec![0x27, 1, 0, 0, 0];
    big.extend_from_slice(&(30_000u32 - 4).to_be_bytes());
    big.resize(5 + 30_000, 0x41);
    for i in 0..4 {
        assert!(h.media().is_empty(), "announced after {i} frames");
        h.video(i, &big);
    }
    assert!(matches!(h.media()[0], MediaEvent::Tracks(_)));
    assert_eq!(frames_of(&h, 1).len(), 4);
}

#[test]
fn a_publisher_without_media_is_closed_and_media_keeps_it_alive() {
    let (vh, _, frames) = fixture_headers();
    let config = SessionConfig {
        media_timeout: Duration::from_secs(10),
        ..SessionConfig::default()
    };
    // Media every second: alive for a minute.
    let mut h = Harness::new(config.clone());
    h.publish("live-one");
    h.video(0, &vh);
    for (i, (_, ts, body)) in frames.iter().filter(|f| f.0 == 9).take(60).enumerate() {
        h.advance(Duration::from_secs(1));
        h.video(*ts, body);
        assert!(
            h.failure().is_none(),
            "failed after {i} s: {:?}",
            h.failure()
        );
    }
    // A squatter: publishes, then only acknowledges and pings.
    let mut h = Harness::new(config);
    h.publish("squat");
    let mut ser = ChunkSerializer::new();
    for _ in 0..4 {
        h.advance(Duration::from_secs(2));
        h.send_to_server(&raw(&mut ser, 3, 0, 1234u32.to_be_bytes().to_vec()));
        assert!(h.failure().is_none());
    }
    // The session asks to be woken at the liveness deadline ...
    let wake = h.server.poll_timeout().expect("a liveness timer");
    assert!(wake <= h.now + Duration::from_secs(10));
    h.advance(Duration::from_secs(2));
    h.send_to_server(&raw(&mut ser, 3, 0, 1234u32.to_be_bytes().to_vec()));
    assert!(
        matches!(h.failure(), Some(SessionError::MediaTimeout { stream_key, .. }) if stream_key == "squat"),
        "{:?}",
        h.failure()
    );
    assert_eq!(h.failure().unwrap().kind(), "media_timeout");
}
