//! The sans-IO WHIP media assembler: depacketised pictures in, media-model
//! events out, plus the decision of when to ask the sender for a keyframe.
//!
//! Input is what str0m's receive path hands over once its jitter buffer has
//! put the RTP packets of a picture in order (and asked for the missing
//! ones with NACK): the Annex B picture, its extended 90 kHz RTP time, and
//! whether it follows the previous picture without a gap. Output is
//! [`MediaEvent`]s: the track set (again whenever the parameter sets
//! change) and frames with timestamps re-based to start at zero.
//!
//! Keyframes: browsers send an IDR only every few seconds (or less often),
//! but the packager cuts segments on keyframes at the configured target
//! duration, so [`VideoAssembler::keyframe_request`] asks for one (PLI)
//! once the current GOP is close to the target, and after packets were lost
//! for good (pictures are kept: a hole in the timeline would stall players). Requests are repeated at most every
//! [`REQUEST_REPEAT`], since a PLI can be lost too. Time is passed in, never read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vela_media::{CodecConfig, Frame, MediaEvent, Track, VideoCodec};

use crate::avc::{AvcError, AvcTracker};

/// RTP clock of H.264 (RFC 6184).
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// The video track's id in the media model.
pub const VIDEO_TRACK: u32 = 1;
/// Shortest time between two keyframe requests.
pub const REQUEST_REPEAT: Duration = Duration::from_millis(300);
/// Ask for the next keyframe when the GOP reaches this share of the segment
/// target: the IDR then lands after the packager's cut point (0.9) and
/// before the target.
const REQUEST_AT: f64 = 0.93;

/// Counters of what the assembler dropped (for metrics and logs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Pictures that could not be converted (see [`AvcError`]).
    pub bad: u64,
    /// Pictures dropped while waiting for a keyframe after a gap.
    pub waiting: u64,
}

/// One H.264 video track of a WHIP publish.
#[derive(Debug)]
pub struct VideoAssembler {
    avc: AvcTracker,
    /// RTP time of the first emitted frame.
    base: Option<u64>,
    last_dts: Option<i64>,
    /// dts of the last keyframe emitted.
    last_key_dts: Option<i64>,
    /// At the start only a keyframe can be decoded.
    need_keyframe: bool,
    /// Packets were lost: a keyframe would repair the picture.
    want_keyframe: bool,
    segment_target: Duration,
    last_request: Option<Instant>,
    pub dropped: Dropped,
}

impl VideoAssembler {
    pub fn new(segment_target: Duration) -> Self {
        VideoAssembler {
            avc: AvcTracker::new(),
            base: None,
            last_dts: None,
            last_key_dts: None,
            need_keyframe: true,
            want_keyframe: false,
            segment_target,
            last_request: None,
            dropped: Dropped::default(),
        }
    }

    /// Takes one depacketised picture; appends the resulting events to `out`.
    pub fn push(
        &mut self,
        rtp_time: u64,
        contiguous: bool,
        annex_b: &[u8],
        out: &mut Vec<MediaEvent>,
    ) {
        if !contiguous {
            // Packets were lost for good: ask for a keyframe, but keep the
            // pictures (a decoder shows artifacts until it comes; dropping
            // them would leave holes in the timeline that stall players).
            self.want_keyframe = true;
        }
        let unit = match self.avc.push(annex_b) {
            Ok(u) => u,
            Err(e) => {
                self.dropped.bad += 1;
                if !matches!(e, AvcError::Empty) {
                    self.want_keyframe = true;
                }
                return;
            }
        };
        if let Some(config) = unit.new_config {
            out.push(MediaEvent::Tracks(Arc::new(vec![Track {
                id: VIDEO_TRACK,
                timescale: VIDEO_TIMESCALE,
                config: CodecConfig::Video {
                    codec: VideoCodec::H264,
                    width: config.width,
                    height: config.height,
                    frame_rate: None,
                    record: config.record,
                },
                bitrate: None,
            }])));
        }
        if unit.sample.is_empty() {
            return; // parameter sets only
        }
        if self.need_keyframe && !unit.keyframe {
            self.dropped.waiting += 1;
            return;
        }
        self.need_keyframe = false;
        if unit.keyframe {
            self.want_keyframe = false;
        }
        let base = *self.base.get_or_insert(rtp_time);
        // Extended RTP time: far from overflowing i64; a sender that jumps
        // back (a new SSRC) is clamped so decode order stays increasing.
        let mut dts = i64::try_from(rtp_time.wrapping_sub(base)).unwrap_or(i64::MAX / 2);
        if rtp_time < base {
            dts = 0;
        }
        if let Some(last) = self.last_dts {
            if dts <= last {
                dts = last + 1;
            }
        }
        self.last_dts = Some(dts);
        if unit.keyframe {
            self.last_key_dts = Some(dts);
        }
        out.push(MediaEvent::Frame(Frame {
            track_id: VIDEO_TRACK,
            dts,
            cts_offset: 0,
            keyframe: unit.keyframe,
            data: unit.sample,
        }));
    }

    /// Whether to send a keyframe request (PLI) now. Call after each push and
    /// on timers; it records the request when it says yes.
    pub fn keyframe_request(&mut self, now: Instant) -> bool {
        if let Some(t) = self.last_request {
            if now.saturating_duration_since(t) < REQUEST_REPEAT {
                return false;
            }
        }
        let gop_due = match (self.last_key_dts, self.last_dts) {
            (Some(k), Some(d)) => {
                let gop = (d - k) as f64 / f64::from(VIDEO_TIMESCALE);
                gop >= self.segment_target.as_secs_f64() * REQUEST_AT
            }
            _ => false,
        };
        if self.need_keyframe || self.want_keyframe || gop_due {
            self.last_request = Some(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avc::tests::{annex_b, PPS, SPS};

    const IDR: &[u8] = &[0x65, 0x88, 0x84];
    const P: &[u8] = &[0x41, 0x9a];

    fn frames(out: &[MediaEvent]) -> Vec<(i64, bool)> {
        out.iter()
            .filter_map(|e| match e {
                MediaEvent::Frame(f) => Some((f.dts, f.keyframe)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn waits_for_a_keyframe_then_rebases_time() {
        let mut a = VideoAssembler::new(Duration::from_secs(2));
        let mut out = Vec::new();
        // Parameter sets but no IDR yet: a config, no frame.
        a.push(1000, true, &annex_b(&[SPS, PPS, P]), &mut out);
        assert!(matches!(out[0], MediaEvent::Tracks(_)));
        assert!(frames(&out).is_empty());
        assert_eq!(a.dropped.waiting, 1);
        a.push(4000, true, &annex_b(&[SPS, PPS, IDR]), &mut out);
        a.push(7000, true, &annex_b(&[P]), &mut out);
        assert_eq!(frames(&out), vec![(0, true), (3000, false)]);
        // A gap: pictures are kept (no hole in the timeline), a keyframe is asked for.
        a.push(16000, false, &annex_b(&[P]), &mut out);
        assert_eq!(frames(&out).last(), Some(&(12000, false)));
        assert!(a.keyframe_request(Instant::now()));
        a.push(19000, true, &annex_b(&[SPS, PPS, IDR]), &mut out);
        assert_eq!(frames(&out).last(), Some(&(15000, true)));
        assert_eq!(a.dropped.waiting, 1);
    }

    #[test]
    fn keyframes_are_requested_at_the_segment_cadence_and_after_gaps() {
        let t0 = Instant::now();
        let mut a = VideoAssembler::new(Duration::from_secs(2));
        let mut out = Vec::new();
        // At the start nothing decodable has come: ask.
        assert!(a.keyframe_request(t0));
        assert!(!a.keyframe_request(t0 + Duration::from_millis(100)));
        a.push(0, true, &annex_b(&[SPS, PPS, IDR]), &mut out);
        let mut t = t0 + Duration::from_secs(1);
        let mut asked_at = None;
        for i in 1..=60u64 {
            a.push(i * 3000, true, &annex_b(&[P]), &mut out);
            t += Duration::from_millis(33);
            if a.keyframe_request(t) && asked_at.is_none() {
                asked_at = Some(i * 3000);
            }
        }
        // 0.93 x 2 s = 1.86 s = 167400 ticks: the first frame at or after it.
        assert_eq!(asked_at, Some(168_000));
        // The IDR resets the GOP: no request right after it.
        a.push(61 * 3000, true, &annex_b(&[IDR]), &mut out);
        assert!(!a.keyframe_request(t + Duration::from_secs(1)));
        // A gap asks again (once per REQUEST_REPEAT).
        a.push(62 * 3000, false, &annex_b(&[P]), &mut out);
        let t = t + Duration::from_secs(2);
        assert!(a.keyframe_request(t));
        assert!(!a.keyframe_request(t + Duration::from_millis(10)));
        assert!(a.keyframe_request(t + REQUEST_REPEAT));
    }

    #[test]
    fn decode_order_never_goes_back() {
        let mut a = VideoAssembler::new(Duration::from_secs(2));
        let mut out = Vec::new();
        a.push(90_000, true, &annex_b(&[SPS, PPS, IDR]), &mut out);
        a.push(50, true, &annex_b(&[P]), &mut out);
        a.push(90_000, true, &annex_b(&[P]), &mut out);
        assert_eq!(frames(&out), vec![(0, true), (1, false), (2, false)]);
    }
}
