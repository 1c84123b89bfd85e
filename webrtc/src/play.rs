//! The sans-IO WHEP viewer feed: a live stream's media events in, H.264
//! pictures to send out (Annex B, 90 kHz RTP time), forwarded without
//! re-encoding.
//!
//! Per viewer: it waits for a keyframe before the first picture and again
//! whenever that viewer lost its place (it asked for a keyframe with PLI/FIR,
//! its feed lagged behind the hub, or the source had a discontinuity), so a
//! slow viewer skips to the next keyframe on its own while the others go on.
//! Keyframes carry the parameter sets in-band (the avcC's SPS and PPS).
//! Timestamps stay increasing across a discontinuity (the new timeline is
//! placed one frame after the old one).
//!
//! WebRTC carries no B-frames (browsers play pictures in arrival order), so
//! a source whose pictures need reordering (a non-zero composition offset)
//! ends the feed with [`Refused::BFrames`].

use bytes::Bytes;
use vela_media::{CodecConfig, Frame, MediaEvent, Track, VideoCodec};

/// The RTP clock of H.264.
const RTP_CLOCK: i128 = 90_000;
/// Where the next timeline goes after a discontinuity: one 30 fps frame on.
const DISCONTINUITY_STEP: i64 = 3000;
/// Most parameter sets taken from an avcC.
const MAX_PARAMETER_SETS: usize = 32;

/// Why a stream cannot be forwarded to a WebRTC viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the stream has no H.264 video track (WHEP forwards H.264 without re-encoding)")]
    NoH264,
    #[error("the stream's video has B-frames, which WebRTC cannot carry; publish without B-frames (x264: -bf 0, or a baseline profile)")]
    BFrames,
    #[error("the stream's H.264 configuration (avcC) is malformed")]
    BadConfig,
}

/// One picture to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// 90 kHz, increasing.
    pub rtp_time: u64,
    pub keyframe: bool,
    /// Annex B NAL units.
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct VideoTrack {
    id: u32,
    timescale: u32,
    nalu_length_size: usize,
    /// SPS and PPS with start codes, sent before each keyframe.
    parameter_sets: Vec<u8>,
}

/// The state of one viewer's feed.
#[derive(Debug, Default)]
pub struct ViewerFeed {
    video: Option<VideoTrack>,
    waiting_keyframe: bool,
    /// Added to each picture's 90 kHz time.
    offset: i64,
    last_out: Option<i64>,
    rebase: bool,
    /// Pictures skipped while waiting for a keyframe.
    pub skipped: u64,
}

impl ViewerFeed {
    pub fn new() -> Self {
        ViewerFeed {
            waiting_keyframe: true,
            ..Default::default()
        }
    }

    /// The viewer asked for a keyframe, or lost its place: skip to the next one.
    pub fn resync(&mut self) {
        self.waiting_keyframe = true;
    }

    /// Takes one event of the stream; a picture to send, if any.
    pub fn on_event(&mut self, ev: &MediaEvent) -> Result<Option<Picture>, Refused> {
        match ev {
            MediaEvent::Tracks(tracks) => {
                self.set_tracks(tracks)?;
                Ok(None)
            }
            MediaEvent::Frame(f) => self.on_frame(f),
            MediaEvent::Discontinuity => {
                self.rebase = true;
                self.waiting_keyframe = true;
                Ok(None)
            }
            MediaEvent::End => Ok(None),
        }
    }

    fn set_tracks(&mut self, tracks: &[Track]) -> Result<(), Refused> {
        let t = tracks
            .iter()
            .find(|t| {
                matches!(
                    t.config,
                    CodecConfig::Video {
                        codec: VideoCodec::H264,
                        ..
                    }
                )
            })
            .ok_or(Refused::NoH264)?;
        let CodecConfig::Video { record, .. } = &t.config else {
            return Err(Refused::NoH264);
        };
        let (nalu_length_size, parameter_sets) = parse_avcc(record).ok_or(Refused::BadConfig)?;
        if t.timescale == 0 {
            return Err(Refused::BadConfig);
        }
        self.video = Some(VideoTrack {
            id: t.id,
            timescale: t.timescale,
            nalu_length_size,
            parameter_sets,
        });
        Ok(())
    }

    fn on_frame(&mut self, f: &Frame) -> Result<Option<Picture>, Refused> {
        let Some(v) = &self.video else {
            return Ok(None);
        };
        if f.track_id != v.id {
            return Ok(None);
        }
        if f.cts_offset != 0 {
            return Err(Refused::BFrames);
        }
        if self.waiting_keyframe && !f.keyframe {
            self.skipped += 1;
            return Ok(None);
        }
        let pts = (i128::from(f.pts()) * RTP_CLOCK / i128::from(v.timescale)) as i64;
        if self.rebase || self.last_out.is_none() {
            let next = self.last_out.map_or(0, |l| l + DISCONTINUITY_STEP);
            self.offset = next - pts;
            self.rebase = false;
        }
        let mut t = pts + self.offset;
        if let Some(l) = self.last_out {
            t = t.max(l + 1);
        }
        let mut data = Vec::with_capacity(f.data.len() + v.parameter_sets.len() + 16);
        if f.keyframe {
            data.extend_from_slice(&v.parameter_sets);
        }
        if !to_annex_b(&f.data, v.nalu_length_size, &mut data) {
            // A sample Vela's own ingest produced cannot be malformed; skip it if it is.
            self.waiting_keyframe = true;
            return Ok(None);
        }
        self.waiting_keyframe = false;
        self.last_out = Some(t);
        Ok(Some(Picture {
            rtp_time: t.max(0) as u64,
            keyframe: f.keyframe,
            data,
        }))
    }
}

/// Length-prefixed NAL units to Annex B; false if the lengths do not fit.
fn to_annex_b(sample: &Bytes, size: usize, out: &mut Vec<u8>) -> bool {
    let mut rest = &sample[..];
    while !rest.is_empty() {
        if rest.len() < size {
            return false;
        }
        let len = rest[..size]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        rest = &rest[size..];
        if len > rest.len() {
            return false;
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
    }
    true
}

/// The NAL length size and the Annex B parameter sets of an avcC record.
pub fn parse_avcc(r: &[u8]) -> Option<(usize, Vec<u8>)> {
    if r.len() < 7 || r[0] != 1 {
        return None;
    }
    let size = usize::from(r[4] & 3) + 1;
    if size == 3 {
        return None;
    }
    let mut out = Vec::new();
    let mut pos = 5;
    let sets = |count: usize, pos: &mut usize, out: &mut Vec<u8>| -> Option<()> {
        for _ in 0..count.min(MAX_PARAMETER_SETS) {
            let len = usize::from(u16::from_be_bytes([*r.get(*pos)?, *r.get(*pos + 1)?]));
            let nal = r.get(*pos + 2..*pos + 2 + len)?;
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
            *pos += 2 + len;
        }
        Some(())
    };
    let sps = usize::from(r[pos] & 0x1f);
    pos += 1;
    sets(sps, &mut pos, &mut out)?;
    let pps = usize::from(*r.get(pos)?);
    pos += 1;
    sets(pps, &mut pos, &mut out)?;
    Some((size, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avc::build_config;
    use crate::avc::tests::{PPS, SPS};
    use std::sync::Arc;

    fn tracks(timescale: u32) -> MediaEvent {
        let c = build_config(SPS, PPS).unwrap();
        MediaEvent::Tracks(Arc::new(vec![Track {
            id: 1,
            timescale,
            config: CodecConfig::Video {
                codec: VideoCodec::H264,
                width: c.width,
                height: c.height,
                frame_rate: None,
                record: c.record,
            },
            bitrate: None,
        }]))
    }

    fn frame(dts: i64, keyframe: bool, cts: i32) -> MediaEvent {
        MediaEvent::Frame(Frame {
            track_id: 1,
            dts,
            cts_offset: cts,
            keyframe,
            data: Bytes::from_static(&[0, 0, 0, 2, 0x41, 0x9a]),
        })
    }

    #[test]
    fn waits_for_a_keyframe_and_sends_parameter_sets_with_it() {
        let mut f = ViewerFeed::new();
        f.on_event(&tracks(1000)).unwrap();
        assert_eq!(f.on_event(&frame(0, false, 0)).unwrap(), None);
        let p = f.on_event(&frame(40, true, 0)).unwrap().unwrap();
        assert_eq!(p.rtp_time, 0);
        let mut want = vec![0, 0, 0, 1];
        want.extend_from_slice(SPS);
        want.extend_from_slice(&[0, 0, 0, 1]);
        want.extend_from_slice(PPS);
        want.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9a]);
        assert_eq!(p.data, want);
        let p = f.on_event(&frame(73, false, 0)).unwrap().unwrap();
        assert_eq!(p.rtp_time, 33 * 90);
        assert_eq!(p.data, vec![0, 0, 0, 1, 0x41, 0x9a]);
        // A PLI: deltas are skipped until the next keyframe.
        f.resync();
        assert_eq!(f.on_event(&frame(106, false, 0)).unwrap(), None);
        assert!(f.on_event(&frame(140, true, 0)).unwrap().unwrap().keyframe);
        assert_eq!(f.skipped, 2);
    }

    #[test]
    fn timestamps_continue_across_a_discontinuity() {
        let mut f = ViewerFeed::new();
        f.on_event(&tracks(90_000)).unwrap();
        f.on_event(&frame(900_000, true, 0)).unwrap();
        let last = f
            .on_event(&frame(903_000, false, 0))
            .unwrap()
            .unwrap()
            .rtp_time;
        f.on_event(&MediaEvent::Discontinuity).unwrap();
        let p = f.on_event(&frame(0, true, 0)).unwrap().unwrap();
        assert_eq!(p.rtp_time, last + 3000);
    }

    #[test]
    fn b_frames_and_non_h264_are_refused() {
        let mut f = ViewerFeed::new();
        f.on_event(&tracks(90_000)).unwrap();
        assert_eq!(f.on_event(&frame(0, true, 3000)), Err(Refused::BFrames));
        let audio_only = MediaEvent::Tracks(Arc::new(vec![Track {
            id: 1,
            timescale: 48_000,
            config: CodecConfig::Audio {
                codec: vela_media::AudioCodec::Aac,
                sample_rate: 48_000,
                channels: 2,
                specific_config: Bytes::from_static(&[0x11, 0x90]),
            },
            bitrate: None,
        }]));
        assert_eq!(
            ViewerFeed::new().on_event(&audio_only),
            Err(Refused::NoH264)
        );
    }

    #[test]
    fn malformed_records_and_samples_do_not_panic() {
        let c = build_config(SPS, PPS).unwrap().record;
        for n in 0..c.len() {
            let _ = parse_avcc(&c[..n]);
        }
        let mut out = Vec::new();
        assert!(!to_annex_b(
            &Bytes::from_static(&[0, 0, 0, 9, 1]),
            4,
            &mut out
        ));
        assert!(!to_annex_b(&Bytes::from_static(&[0, 0]), 4, &mut out));
    }
}
