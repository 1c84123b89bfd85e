//! The ETL's core: folds one session's raw events, in sequence order, into its
//! view fact (sans-IO: events in, state out; no clock, no database).
//!
//! Time is the player's own clock (`t` of each event): only differences
//! between consecutive events of one session are used, each capped at
//! [`MAX_GAP_MS`] so that a sleeping tab or a lost beacon does not count as
//! viewing. Time in `playing` is viewing time; time in `buffering` after the
//! first `play` is rebuffering (before it, it is startup).

use super::beacon::EventKind;

/// The longest gap between two events that still counts (the plugin sends a
/// heartbeat every 10 s).
pub const MAX_GAP_MS: i64 = 30_000;

/// The player state a view is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayState {
    Idle,
    Playing,
    Paused,
    Buffering,
    Ended,
}

impl PlayState {
    pub fn as_str(self) -> &'static str {
        match self {
            PlayState::Idle => "idle",
            PlayState::Playing => "playing",
            PlayState::Paused => "paused",
            PlayState::Buffering => "buffering",
            PlayState::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> PlayState {
        match s {
            "playing" => PlayState::Playing,
            "paused" => PlayState::Paused,
            "buffering" => PlayState::Buffering,
            "ended" => PlayState::Ended,
            _ => PlayState::Idle,
        }
    }
}

/// One raw event as the ETL reads it back.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    pub kind: EventKind,
    pub seq: i64,
    pub client_ms: i64,
    pub server_ms: i64,
    pub position_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub bitrate_kbps: Option<i64>,
    pub value_ms: Option<i64>,
}

/// The measures of one view (a playback session), as the fact table holds them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ViewFacts {
    /// Server time of the first and the latest event, ms.
    pub started_ms: i64,
    pub last_ms: i64,
    pub state: Option<PlayState>,
    /// Client time of the latest event, ms (0 before any).
    pub state_at: i64,
    /// Client time of `view_start`, ms (0 if none came).
    pub view_start_at: i64,
    pub played: bool,
    pub ended: bool,
    pub watched_ms: i64,
    /// -1 until the first `play`.
    pub startup_ms: i64,
    pub rebuffer_ms: i64,
    pub rebuffer_count: i64,
    pub bitrate_sum: i64,
    pub bitrate_n: i64,
    pub errors: i64,
    pub seeks: i64,
    pub max_position_s: f64,
    pub duration_s: f64,
}

impl ViewFacts {
    /// A view with no events yet.
    pub fn new() -> ViewFacts {
        ViewFacts {
            startup_ms: -1,
            ..Default::default()
        }
    }

    /// Applies one event (events of a session in `seq` order).
    pub fn apply(&mut self, e: &RawEvent) {
        if self.started_ms == 0 || e.server_ms < self.started_ms {
            self.started_ms = e.server_ms;
        }
        self.last_ms = self.last_ms.max(e.server_ms);
        let state = self.state.unwrap_or(PlayState::Idle);
        if self.state_at > 0 {
            let gap = (e.client_ms - self.state_at).clamp(0, MAX_GAP_MS);
            match state {
                PlayState::Playing => self.watched_ms += gap,
                PlayState::Buffering if self.played => self.rebuffer_ms += gap,
                _ => {}
            }
        }
        self.state_at = self.state_at.max(e.client_ms);
        let next = match e.kind {
            EventKind::ViewStart => {
                if self.view_start_at == 0 {
                    self.view_start_at = e.client_ms;
                }
                state
            }
            EventKind::Play => {
                if !self.played {
                    self.played = true;
                    self.startup_ms = e.value_ms.unwrap_or(if self.view_start_at > 0 {
                        (e.client_ms - self.view_start_at).max(0)
                    } else {
                        0
                    });
                }
                PlayState::Playing
            }
            EventKind::Pause => PlayState::Paused,
            EventKind::Seek => {
                self.seeks += 1;
                state
            }
            EventKind::BufferStart => {
                if self.played && state != PlayState::Buffering {
                    self.rebuffer_count += 1;
                }
                PlayState::Buffering
            }
            EventKind::BufferEnd => {
                if state == PlayState::Buffering {
                    if self.played {
                        PlayState::Playing
                    } else {
                        PlayState::Idle
                    }
                } else {
                    state
                }
            }
            EventKind::Error => {
                self.errors += 1;
                state
            }
            EventKind::Rendition | EventKind::Heartbeat => state,
            EventKind::End => {
                self.ended = true;
                PlayState::Ended
            }
        };
        self.state = Some(next);
        if let Some(p) = e.position_s {
            self.max_position_s = self.max_position_s.max(p);
        }
        if let Some(d) = e.duration_s.filter(|d| *d > 0.0) {
            self.duration_s = d;
        }
        if let Some(b) = e.bitrate_kbps.filter(|b| *b > 0) {
            if self.state == Some(PlayState::Playing) || e.kind == EventKind::Rendition {
                self.bitrate_sum += b;
                self.bitrate_n += 1;
            }
        }
    }

    /// The share of the media this view reached (0 for live or unknown).
    pub fn reached(&self) -> f64 {
        if self.ended && self.duration_s > 0.0 {
            return 1.0;
        }
        if self.duration_s > 0.0 {
            (self.max_position_s / self.duration_s).min(1.0)
        } else {
            0.0
        }
    }
}

/// The hour (unix ms) that `ms` falls in.
pub fn hour_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(3_600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_000_000_000;

    fn ev(kind: EventKind, seq: i64, dt_ms: i64, pos: f64) -> RawEvent {
        RawEvent {
            kind,
            seq,
            client_ms: T0 + dt_ms,
            server_ms: T0 + dt_ms + 40,
            position_s: Some(pos),
            duration_s: Some(100.0),
            bitrate_kbps: Some(800),
            value_ms: None,
        }
    }

    #[test]
    fn a_view_with_a_stall_and_a_pause() {
        use EventKind::*;
        let mut v = ViewFacts::new();
        for e in [
            ev(ViewStart, 0, 0, 0.0),
            ev(Play, 1, 500, 0.0),
            ev(Heartbeat, 2, 10_500, 10.0),
            ev(BufferStart, 3, 12_500, 12.0),
            ev(BufferEnd, 4, 15_500, 12.0),
            ev(Pause, 5, 20_500, 17.0),
            ev(Play, 6, 60_500, 17.0),
            ev(Seek, 7, 61_500, 80.0),
            ev(End, 8, 81_500, 100.0),
        ] {
            v.apply(&e);
        }
        assert_eq!(v.startup_ms, 500);
        // 12 s, then 5 s, then 1 s + 20 s of playing.
        assert_eq!(v.watched_ms, 12_000 + 5_000 + 21_000);
        assert_eq!(v.rebuffer_ms, 3_000);
        assert_eq!(v.rebuffer_count, 1);
        assert_eq!(v.seeks, 1);
        assert_eq!(v.reached(), 1.0);
        assert_eq!(v.state, Some(PlayState::Ended));
        assert_eq!(v.started_ms, T0 + 40);
    }

    #[test]
    fn gaps_are_capped_and_startup_buffering_is_not_rebuffering() {
        use EventKind::*;
        let mut v = ViewFacts::new();
        v.apply(&ev(BufferStart, 0, 0, 0.0));
        v.apply(&ev(BufferEnd, 1, 2_000, 0.0));
        v.apply(&ev(Play, 2, 2_100, 0.0));
        v.apply(&ev(Heartbeat, 3, 3_600_000, 50.0));
        assert_eq!(v.rebuffer_ms, 0);
        assert_eq!(v.rebuffer_count, 0);
        assert_eq!(v.watched_ms, MAX_GAP_MS);
        assert!((v.reached() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn folding_in_two_runs_equals_one() {
        use EventKind::*;
        let evs = [
            ev(ViewStart, 0, 0, 0.0),
            ev(Play, 1, 700, 0.0),
            ev(Heartbeat, 2, 10_700, 10.0),
            ev(Heartbeat, 3, 20_700, 20.0),
        ];
        let mut a = ViewFacts::new();
        evs.iter().for_each(|e| a.apply(e));
        let mut b = ViewFacts::new();
        evs[..2].iter().for_each(|e| b.apply(e));
        let mut b2 = b.clone();
        evs[2..].iter().for_each(|e| b2.apply(e));
        assert_eq!(a, b2);
        assert_eq!(hour_of(T0 + 5), T0 - T0 % 3_600_000);
    }
}
