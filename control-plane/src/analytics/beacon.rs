//! The beacon's wire format: one JSON batch of player events for one playback
//! session, parsed once into typed values and checked (sans-IO: bytes in,
//! [`Batch`] or [`BeaconError`] out).
//!
//! Beacons come from anyone's browser, so nothing here is trusted: the body
//! is bounded by the caller, the event count by [`MAX_EVENTS`], every string
//! by its own limit; unknown fields are ignored (newer plugins keep working
//! against older servers) and numbers outside their ranges refuse the batch.
//! The partner is never read from the client: the server derives it from
//! the entry.

use serde::Deserialize;
use utoipa::ToSchema;

/// At most this many events in one batch.
pub const MAX_EVENTS: usize = 500;
/// Limits of the free-text fields (characters).
const MAX_ID: usize = 64;
const MAX_LABEL: usize = 32;
const MAX_DETAIL: usize = 256;

/// What a player reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ViewStart,
    Play,
    Pause,
    Seek,
    BufferStart,
    BufferEnd,
    Rendition,
    Error,
    Heartbeat,
    End,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ViewStart => "view_start",
            EventKind::Play => "play",
            EventKind::Pause => "pause",
            EventKind::Seek => "seek",
            EventKind::BufferStart => "buffer_start",
            EventKind::BufferEnd => "buffer_end",
            EventKind::Rendition => "rendition",
            EventKind::Error => "error",
            EventKind::Heartbeat => "heartbeat",
            EventKind::End => "end",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// One batch, as sent by `/sdk/vela-analytics.js` (unknown fields ignored).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct BeaconBody {
    /// The entry played (`0_xxxxxxxx`); its partner is the report's partner.
    pub entry_id: String,
    /// A random id of this playback session (1 to 64 of `A-Za-z0-9_-`).
    pub session_id: String,
    /// A random id kept by the browser across sessions (unique viewers).
    #[serde(default)]
    pub viewer_id: Option<String>,
    /// `hls.js`, `dash.js`, `shaka`, `video`, … (up to 32 characters).
    #[serde(default)]
    pub player: Option<String>,
    /// `hls`, `dash`, `mss`, `mp4`, … (up to 32 characters).
    #[serde(default)]
    pub format: Option<String>,
    /// Whether the player plays the live stream.
    #[serde(default)]
    pub live: bool,
    #[schema(max_items = 500)]
    pub events: Vec<BeaconEvent>,
}

/// One player event.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct BeaconEvent {
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Increasing per session from 0: a resent event is stored once.
    #[schema(minimum = 0)]
    pub seq: i64,
    /// The client's clock, unix milliseconds (only its differences are used).
    #[schema(minimum = 0)]
    pub t: i64,
    /// Playback position, seconds.
    #[serde(default)]
    pub position: Option<f64>,
    /// Media duration, seconds (absent or 0 for live).
    #[serde(default)]
    pub duration: Option<f64>,
    /// The current rendition's bitrate, kbit/s.
    #[serde(default)]
    pub bitrate_kbps: Option<i64>,
    /// A duration measured by the player (startup time of `play`), ms.
    #[serde(default)]
    pub value_ms: Option<i64>,
    /// Error message or rendition label.
    #[serde(default)]
    pub detail: Option<String>,
}

/// A checked batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub entry_id: String,
    pub session_id: String,
    pub viewer_id: String,
    pub player: String,
    pub format: String,
    pub live: bool,
    pub events: Vec<Event>,
}

/// A checked event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub seq: i64,
    pub client_ms: i64,
    pub position_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub bitrate_kbps: Option<i64>,
    pub value_ms: Option<i64>,
    pub detail: Option<String>,
}

/// Why a batch is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BeaconError {
    #[error("malformed beacon: {0}")]
    Malformed(String),
    #[error("invalid beacon: {0}")]
    Invalid(String),
}

fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn label(field: &str, v: Option<String>, default: &str) -> Result<String, BeaconError> {
    match v {
        None => Ok(default.to_string()),
        Some(s)
            if !s.is_empty()
                && s.chars().count() <= MAX_LABEL
                && s.chars().all(|c| !c.is_control()) =>
        {
            Ok(s)
        }
        Some(_) => Err(BeaconError::Invalid(format!(
            "{field} must have 1 to {MAX_LABEL} printable characters"
        ))),
    }
}

fn finite(field: &str, v: Option<f64>, max: f64) -> Result<Option<f64>, BeaconError> {
    match v {
        Some(x) if !(x.is_finite() && (0.0..=max).contains(&x)) => Err(BeaconError::Invalid(
            format!("{field} must be a number from 0 to {max}"),
        )),
        v => Ok(v),
    }
}

fn ranged(field: &str, v: Option<i64>, max: i64) -> Result<Option<i64>, BeaconError> {
    match v {
        Some(x) if !(0..=max).contains(&x) => Err(BeaconError::Invalid(format!(
            "{field} must be from 0 to {max}"
        ))),
        v => Ok(v),
    }
}

/// Parses and checks one beacon body.
pub fn parse(bytes: &[u8]) -> Result<Batch, BeaconError> {
    let body: BeaconBody = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            BeaconError::Malformed(e.to_string())
        } else {
            BeaconError::Invalid(e.to_string())
        }
    })?;
    check(body)
}

/// Checks a deserialised body.
pub fn check(body: BeaconBody) -> Result<Batch, BeaconError> {
    if !crate::auth::is_entry_id(&body.entry_id) {
        return Err(BeaconError::Invalid("entry_id is not an entry id".into()));
    }
    if !id_ok(&body.session_id) {
        return Err(BeaconError::Invalid(
            "session_id must be 1 to 64 of A-Z a-z 0-9 _ -".into(),
        ));
    }
    let viewer_id = match body.viewer_id {
        Some(v) if id_ok(&v) => v,
        Some(_) => {
            return Err(BeaconError::Invalid(
                "viewer_id must be 1 to 64 of A-Z a-z 0-9 _ -".into(),
            ))
        }
        // Without a viewer id, the session is its own viewer.
        None => body.session_id.clone(),
    };
    if body.events.is_empty() || body.events.len() > MAX_EVENTS {
        return Err(BeaconError::Invalid(format!(
            "events must hold 1 to {MAX_EVENTS} events"
        )));
    }
    let mut events = Vec::with_capacity(body.events.len());
    for e in body.events {
        if !(0..=i64::from(u32::MAX)).contains(&e.seq) {
            return Err(BeaconError::Invalid("seq out of range".into()));
        }
        // Year 2001 to 2200: a clock, not a counter.
        if !(1_000_000_000_000..=7_258_118_400_000).contains(&e.t) {
            return Err(BeaconError::Invalid("t must be unix milliseconds".into()));
        }
        let detail = e.detail.map(|d| {
            d.chars()
                .filter(|c| !c.is_control())
                .take(MAX_DETAIL)
                .collect()
        });
        events.push(Event {
            kind: e.kind,
            seq: e.seq,
            client_ms: e.t,
            position_s: finite("position", e.position, 1e7)?,
            duration_s: finite("duration", e.duration, 1e7)?,
            bitrate_kbps: ranged("bitrate_kbps", e.bitrate_kbps, 10_000_000)?,
            value_ms: ranged("value_ms", e.value_ms, 86_400_000)?,
            detail,
        });
    }
    Ok(Batch {
        entry_id: body.entry_id,
        session_id: body.session_id,
        viewer_id,
        player: label("player", body.player, "unknown")?,
        format: label("format", body.format, "unknown")?,
        live: body.live,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_764_000_000_000;

    fn body(events: &str) -> String {
        format!(
            r#"{{"entry_id":"0_abcd1234","session_id":"s1","player":"hls.js","format":"hls",
               "partner_id":99,"future_field":{{"x":1}},"events":[{events}]}}"#
        )
    }

    #[test]
    fn parses_and_ignores_unknown_fields() {
        let b = parse(
            body(&format!(
                r#"{{"type":"play","seq":0,"t":{T},"position":1.5,"extra":true}}"#
            ))
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(b.entry_id, "0_abcd1234");
        assert_eq!(b.viewer_id, "s1");
        assert_eq!(b.events[0].kind, EventKind::Play);
        assert_eq!(b.events[0].position_s, Some(1.5));
    }

    #[test]
    fn refuses_bad_input() {
        assert!(matches!(parse(b"{"), Err(BeaconError::Malformed(_))));
        assert!(matches!(parse(b"[]"), Err(BeaconError::Invalid(_))));
        for ev in [
            format!(r#"{{"type":"teleport","seq":0,"t":{T}}}"#),
            format!(r#"{{"type":"play","seq":-1,"t":{T}}}"#),
            r#"{"type":"play","seq":0,"t":5}"#.to_string(),
            format!(r#"{{"type":"play","seq":0,"t":{T},"position":-3}}"#),
            format!(r#"{{"type":"play","seq":0,"t":{T},"bitrate_kbps":-3}}"#),
        ] {
            assert!(parse(body(&ev).as_bytes()).is_err(), "{ev}");
        }
        assert!(parse(body("").as_bytes()).is_err(), "no events");
        let bad_entry =
            body(&format!(r#"{{"type":"play","seq":0,"t":{T}}}"#)).replace("0_abcd1234", "../etc");
        assert!(parse(bad_entry.as_bytes()).is_err());
        let bad_session = body(&format!(r#"{{"type":"play","seq":0,"t":{T}}}"#))
            .replace("\"s1\"", "\"<script>\"");
        assert!(parse(bad_session.as_bytes()).is_err());
    }

    #[test]
    fn caps_the_event_count() {
        let one = format!(r#"{{"type":"heartbeat","seq":0,"t":{T}}}"#);
        let many = vec![one; MAX_EVENTS + 1].join(",");
        assert!(parse(body(&many).as_bytes()).is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for k in ["view_start", "buffer_end", "end"] {
            assert_eq!(EventKind::parse(k).unwrap().as_str(), k);
        }
    }
}
