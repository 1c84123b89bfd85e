//! Entry points shared by the cargo-fuzz targets (`/fuzz`) and the seeded
//! no-panic tests below, so stable CI exercises the same code paths.
//!
//! Each entry point must return normally for every input: a panic is a bug.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionResult, PublishRequestType,
};

use crate::flv;
use crate::session::{RtmpSession, SessionConfig, SessionEvent};

/// One FLV tag body: the first byte picks video or audio and the NAL length size.
pub fn flv_tag(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    if selector & 1 == 0 {
        if let Ok(flv::VideoTag::Frame(f)) = flv::parse_video_tag(&body) {
            let size = [1u8, 2, 4, 3][usize::from(selector >> 1) & 3];
            let _ = flv::normalize_nal_lengths(&f.data, size);
        }
    } else {
        let _ = flv::parse_audio_tag(&body);
    }
}

/// Where [`rtmp_session`] starts before the fuzz input.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The input is the first byte the server sees (handshake included).
    Raw,
    /// A valid handshake is done.
    Handshaken,
    /// Connected to `live` and publishing (accepted), as a real encoder would be.
    Publishing,
}

fn drain(s: &mut RtmpSession, client: Option<&mut ClientSession>) -> (bool, Vec<u8>) {
    let mut out = Vec::new();
    let mut publish_requested = false;
    while let Some(ev) = s.poll_event() {
        match ev {
            SessionEvent::Transmit(b) => out.extend_from_slice(&b),
            SessionEvent::PublishRequested { .. } => publish_requested = true,
            _ => {}
        }
    }
    if let Some(c) = client {
        if !out.is_empty() {
            let _ = c.handle_input(&out);
        }
    }
    (publish_requested, out)
}

/// Builds a session in the given start state (what the fuzz input continues).
pub fn session_at(start: Start, now: Instant) -> RtmpSession {
    let mut s = RtmpSession::new(SessionConfig::default());
    if matches!(start, Start::Raw) {
        return s;
    }
    let mut hs = Handshake::new(PeerType::Client);
    let Ok(c0c1) = hs.generate_outbound_p0_and_p1() else {
        return s;
    };
    s.handle_input(now, &c0c1);
    let (_, s012) = drain(&mut s, None);
    let c2 = match hs.process_bytes(&s012) {
        Ok(HandshakeProcessResult::Completed { response_bytes, .. }) => response_bytes,
        _ => return s,
    };
    s.handle_input(now, &c2);
    if matches!(start, Start::Handshaken) {
        return s;
    }
    let Ok((mut client, _)) = ClientSession::new(ClientSessionConfig::new()) else {
        return s;
    };
    drain(&mut s, Some(&mut client));
    let send = |s: &mut RtmpSession, r: Result<ClientSessionResult, _>| {
        if let Ok(ClientSessionResult::OutboundResponse(p)) = r {
            s.handle_input(now, &p.bytes);
        }
    };
    let r = client.request_connection("live".into());
    send(&mut s, r);
    let (_, replies) = drain(&mut s, None);
    // createStream and publish follow the connect result.
    if let Ok(results) = client.handle_input(&replies) {
        for r in results {
            send(&mut s, Ok(r));
        }
    }
    let r = client.request_publishing("fuzz".into(), PublishRequestType::Live);
    send(&mut s, r);
    let (requested, replies) = drain(&mut s, None);
    if let Ok(results) = client.handle_input(&replies) {
        for r in results {
            send(&mut s, Ok(r));
        }
    }
    let (requested_late, _) = drain(&mut s, None);
    if requested || requested_late {
        s.accept_publish("fuzz");
        drain(&mut s, None);
    }
    s
}

/// Arbitrary bytes into the session core. The first byte picks the start state
/// and how the rest is cut into reads; time advances between reads.
pub fn rtmp_session(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let start = match selector % 3 {
        0 => Start::Raw,
        1 => Start::Handshaken,
        _ => Start::Publishing,
    };
    let mut now = Instant::now();
    let mut s = session_at(start, now);
    let step = 1 + usize::from(selector >> 2) * 7;
    for piece in rest.chunks(step) {
        s.handle_input(now, piece);
        while s.poll_event().is_some() {}
        now += Duration::from_millis(u64::from(piece[0]) * 10);
        s.handle_timeout(now);
        while s.poll_event().is_some() {}
        if s.is_closed() {
            break;
        }
    }
}

/// A tiny deterministic generator (xorshift64*) for the seeded tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// Flips, overwrites, inserts or truncates a few bytes of `seed`.
    pub fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(8) {
            if v.is_empty() {
                v.push(self.next_u64() as u8);
                continue;
            }
            let i = self.below(v.len());
            match self.below(5) {
                0 => v[i] ^= 1 << self.below(8),
                1 => v[i] = self.next_u64() as u8,
                2 => v[i] = [0, 0xff, 0x7f, 0x80][self.below(4)],
                3 => v.insert(i, self.next_u64() as u8),
                _ => v.truncate(i),
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::tests::{flv_tags, X264_FLV};

    /// Iterations of the seeded tests: `VELA_FUZZ_ITERS` scales them up for a longer local run.
    fn iterations(default: usize) -> usize {
        std::env::var("VELA_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    #[test]
    fn flv_tag_never_panics_on_random_and_mutated_bodies() {
        let mut rng = Rng::new(
            std::env::var("VELA_FUZZ_SEED")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0x5eed_f1f0),
        );
        let mut seeds: Vec<Vec<u8>> = flv_tags(X264_FLV)
            .into_iter()
            .filter(|(ty, _)| *ty == 8 || *ty == 9)
            .map(|(ty, body)| {
                let mut v = vec![if ty == 9 { 4 } else { 1 }];
                v.extend(body.into_iter().take(600));
                v
            })
            .collect();
        let mut hevc = vec![0, 0x90];
        hevc.extend_from_slice(b"hvc1");
        hevc.extend_from_slice(crate::flv::hevc::tests::X265_426X240);
        seeds.push(hevc);
        let mut av1 = vec![0, 0x90];
        av1.extend_from_slice(b"av01");
        av1.extend_from_slice(crate::flv::av1::tests::LIBAOM_320X240);
        seeds.push(av1);
        for i in 0..iterations(4000) {
            if i % 4 == 0 {
                let len = rng.below(64);
                flv_tag(&rng.bytes(len));
            } else {
                let seed = &seeds[rng.below(seeds.len())];
                flv_tag(&rng.mutate(seed));
            }
        }
    }

    #[test]
    fn the_publishing_start_state_really_publishes() {
        let now = Instant::now();
        let mut s = session_at(Start::Publishing, now);
        s.handle_input(now, &crate::session::tests::recorded_publish_wire());
        let mut tracks = 0;
        let mut frames = 0;
        while let Some(ev) = s.poll_event() {
            match ev {
                SessionEvent::Media(vela_media::MediaEvent::Tracks(_)) => tracks += 1,
                SessionEvent::Media(vela_media::MediaEvent::Frame(_)) => frames += 1,
                SessionEvent::Failed(e) => panic!("{e}"),
                _ => {}
            }
        }
        assert_eq!((tracks, frames), (1, 40));
    }

    #[test]
    fn rtmp_session_never_panics_on_random_and_mutated_input() {
        let mut rng = Rng::new(
            std::env::var("VELA_FUZZ_SEED")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0xdead_beef),
        );
        // A valid publish recording (after the handshake) to mutate.
        let wire = crate::session::tests::recorded_publish_wire();
        for i in 0..iterations(3000) {
            let input = match i % 3 {
                0 => {
                    let len = rng.below(512);
                    rng.bytes(len)
                }
                1 => {
                    let mut v = vec![(rng.below(64) as u8) * 3 + 2]; // Publishing, varied read sizes
                    let start = rng.below(wire.len());
                    let end = (start + 1 + rng.below(2048)).min(wire.len());
                    v.extend(rng.mutate(&wire[start..end]));
                    v
                }
                _ => {
                    let mut v = vec![(rng.below(64) as u8) * 3 + 2];
                    v.extend(rng.mutate(&wire[..wire.len().min(4096)]));
                    v
                }
            };
            rtmp_session(&input);
        }
    }

    fn random_amf(rng: &mut Rng, depth: usize) -> rml_rtmp::rml_amf0::Amf0Value {
        use rml_rtmp::rml_amf0::Amf0Value as V;
        let words = [
            "live", "app", "", "fuzz", "live/", "live?x=1", "0", "-1", "publish",
        ];
        match rng.below(if depth > 2 { 4 } else { 6 }) {
            0 => V::Number([0.0, 1.0, -1.0, 1e300, f64::NAN, 4294967296.0][rng.below(6)]),
            1 => V::Utf8String(words[rng.below(words.len())].to_string()),
            2 => V::Null,
            3 => V::Boolean(rng.below(2) == 1),
            4 => {
                let mut m = std::collections::HashMap::new();
                for _ in 0..rng.below(4) {
                    let k = ["app", "tcUrl", "objectEncoding", "type", "x"][rng.below(5)];
                    m.insert(k.to_string(), random_amf(rng, depth + 1));
                }
                V::Object(m)
            }
            _ => V::StrictArray(
                (0..rng.below(3))
                    .map(|_| random_amf(rng, depth + 1))
                    .collect(),
            ),
        }
    }

    #[test]
    fn random_but_well_formed_commands_never_panic() {
        use rml_rtmp::chunk_io::ChunkSerializer;
        use rml_rtmp::messages::MessagePayload;
        use rml_rtmp::rml_amf0::{serialize, Amf0Value as V};
        use rml_rtmp::time::RtmpTimestamp;
        let names = [
            "connect",
            "createStream",
            "publish",
            "play",
            "deleteStream",
            "closeStream",
            "FCUnpublish",
            "releaseStream",
            "FCPublish",
            "play2",
            "_checkbw",
            "@setDataFrame",
            "onMetaData",
        ];
        let mut rng = Rng::new(0xc0ffee);
        for _ in 0..iterations(300) {
            let now = Instant::now();
            let start = [Start::Handshaken, Start::Publishing][rng.below(2)];
            let mut s = session_at(start, now);
            let mut ser = ChunkSerializer::new();
            let mut wire = ser
                .set_max_chunk_size(65536, RtmpTimestamp::new(0))
                .unwrap()
                .bytes;
            for _ in 0..1 + rng.below(12) {
                let mut values = vec![V::Utf8String(names[rng.below(names.len())].to_string())];
                for _ in 0..rng.below(6) {
                    values.push(random_amf(&mut rng, 0));
                }
                if rng.below(3) > 0 && values.len() > 1 {
                    values[1] = V::Number(rng.below(5) as f64);
                }
                let data = serialize(&values).unwrap();
                let type_id = [20u8, 18, 17, 15][rng.below(4)];
                let mut payload = data;
                if type_id == 17 || type_id == 15 {
                    payload.insert(0, 0);
                }
                let p = MessagePayload {
                    timestamp: RtmpTimestamp::new(0),
                    type_id,
                    message_stream_id: rng.below(3) as u32,
                    data: Bytes::from(payload),
                };
                wire.extend(ser.serialize(&p, false, false).unwrap().bytes);
            }
            s.handle_input(now, &wire);
            while let Some(ev) = s.poll_event() {
                if let SessionEvent::PublishRequested { .. } = ev {
                    s.accept_publish("fuzz");
                }
            }
        }
    }
}
