//! The tokio driver of every WebRTC session: one UDP socket for all of them.
//!
//! One task owns the socket and every session's [`Rtc`] (str0m's sans-IO
//! peer connection) and its [`VideoAssembler`]. It reads datagrams, routes
//! each to its session (by source address once known; STUN binding
//! requests by their ICE username, which names the session), feeds the
//! current time in, sends what the session wants sent, and sleeps until
//! the earliest session timer. Sends are non-blocking (`try_send_to`): a
//! datagram the kernel cannot take is dropped as UDP would, so no session
//! ever waits on another. HTTP handlers talk to the task through
//! [`Command`]s; nothing here blocks or awaits per session.
//!
//! Lifecycle: a session is made by a WHIP `POST` (its stream already
//! claimed in the hub), must finish ICE and DTLS within
//! [`WebRtcLimits::ice_timeout`], and then ends on `DELETE` (the stream
//! ends cleanly), on ICE disconnection or when no media arrives for
//! [`WebRtcLimits::media_timeout`] (the publisher is dropped: the hub keeps
//! the stream for the reconnect grace, as for a lost RTMP connection), or on
//! shutdown (clean end). Every end is logged and counted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};
use vela_media::hub::Publisher;
use vela_media::MediaEvent;

use crate::assemble::VideoAssembler;
use crate::metrics;
use crate::play::ViewerFeed;
use vela_ingest::PublishAuthorizer;
use vela_media::hub::StreamHub;

/// Limits of the WebRTC listener.
#[derive(Debug, Clone)]
pub struct WebRtcLimits {
    /// Open sessions in total; a WHIP `POST` beyond it answers 503.
    pub max_sessions: usize,
    /// Sessions that have not finished ICE/DTLS yet (the unauthenticated
    /// budget of a flood of offers); beyond it a `POST` answers 503.
    pub max_connecting: usize,
    /// From the answer to a connected DTLS session.
    pub ice_timeout: Duration,
    /// Longest time without media from a connected publisher.
    pub media_timeout: Duration,
}

impl Default for WebRtcLimits {
    fn default() -> Self {
        WebRtcLimits {
            max_sessions: 1000,
            max_connecting: 100,
            ice_timeout: Duration::from_secs(15),
            media_timeout: Duration::from_secs(20),
        }
    }
}

/// Where the WebRTC listener is and what it advertises.
#[derive(Clone)]
pub struct WebRtcConfig {
    /// The UDP socket address every session shares.
    pub bind: SocketAddr,
    /// The address put in the host candidate (the address peers reach);
    /// default: the bound address, or 127.0.0.1 when that is unspecified.
    pub public_ip: Option<IpAddr>,
    /// The packager's segment target of a stream: the keyframe cadence
    /// asked of its publisher.
    pub segment_target: SegmentTarget,
    pub limits: WebRtcLimits,
}

/// A stream's segment target, by stream name.
pub type SegmentTarget = Arc<dyn Fn(&str) -> Duration + Send + Sync>;

/// Why a session could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("too many WebRTC sessions; retry later")]
    Busy,
    #[error("the SDP offer was not accepted: {0}")]
    Offer(String),
    #[error("the offer has no usable codec: {0}")]
    NoCodec(&'static str),
    #[error("the WebRTC listener is stopping")]
    Stopping,
    #[error("the stream cannot be played over WebRTC: {0}")]
    Unplayable(#[from] crate::play::Refused),
}

/// A made session, for the HTTP answer.
#[derive(Debug)]
pub struct Created {
    pub id: String,
    pub answer: String,
    /// Entity tag of the ICE session (its local ufrag).
    pub etag: String,
}

/// What trickle ICE `PATCH` asks of a session.
#[derive(Debug)]
pub enum PatchOutcome {
    Applied,
    NotFound,
    /// The If-Match did not name the current ICE session.
    Mismatch,
}

/// Requests from the HTTP side to the driver.
pub enum Command {
    Publish {
        offer: SdpOffer,
        name: String,
        publisher: Publisher,
        reply: oneshot::Sender<Result<Created, CreateError>>,
    },
    /// A WHEP viewer of a live stream (`events`: subscribed in the hub).
    Play {
        offer: SdpOffer,
        stream: String,
        /// The stream's tracks as announced before the subscription.
        tracks: Option<Vec<vela_media::Track>>,
        events: broadcast::Receiver<MediaEvent>,
        reply: oneshot::Sender<Result<Created, CreateError>>,
    },
    Delete {
        id: String,
        reply: oneshot::Sender<bool>,
    },
    Trickle {
        id: String,
        etag: Option<String>,
        candidates: Vec<Candidate>,
        reply: oneshot::Sender<PatchOutcome>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// The handle HTTP handlers use.
#[derive(Clone)]
pub struct WebRtcHandle {
    tx: mpsc::Sender<Command>,
    /// The address and port put in host candidates.
    pub local_addr: SocketAddr,
    pub(crate) authorizer: Arc<dyn PublishAuthorizer>,
    pub(crate) hub: StreamHub,
}

impl WebRtcHandle {
    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        rx.await.ok()
    }

    /// Ends every session (publishes end cleanly) and stops the driver.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }
}

/// Binds the UDP socket and starts the driver task.
pub async fn start(
    config: WebRtcConfig,
    hub: StreamHub,
    authorizer: Arc<dyn PublishAuthorizer>,
) -> std::io::Result<WebRtcHandle> {
    let socket = UdpSocket::bind(config.bind).await?;
    let bound = socket.local_addr()?;
    let ip = config.public_ip.unwrap_or(if bound.ip().is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        bound.ip()
    });
    let advertised = SocketAddr::new(ip, bound.port());
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .ok_or_else(|| std::io::Error::other("cannot generate the DTLS certificate"))?;
    let (tx, rx) = mpsc::channel(256);
    let (feed_tx, feed_rx) = mpsc::channel(1024);
    let driver = Driver {
        socket,
        advertised,
        cert,
        segment_target: config.segment_target,
        limits: config.limits,
        sessions: HashMap::new(),
        by_source: HashMap::new(),
        authorizer: authorizer.clone(),
        reap_pending: false,
        feed_tx,
    };
    tokio::spawn(driver.run(rx, feed_rx));
    Ok(WebRtcHandle {
        tx,
        local_addr: advertised,
        authorizer,
        hub,
    })
}

/// A WHEP viewer's side of a session.
struct Viewer {
    feed: ViewerFeed,
    /// The H.264 payload type negotiated with the viewer.
    pt: Option<Pt>,
    /// The task moving the hub's events to the driver.
    forward: tokio::task::AbortHandle,
}

/// What a viewer's forwarding task hands the driver.
enum FeedItem {
    Event(MediaEvent),
    /// The viewer's subscription fell behind the hub: skip to a keyframe.
    Lagged,
    /// The stream is gone.
    Closed,
}

struct Session {
    rtc: Rtc,
    /// Set for WHEP viewers; publishers have `publisher`.
    viewer: Option<Viewer>,
    name: String,
    /// None once the publish has ended.
    publisher: Option<Publisher>,
    video: Option<Mid>,
    video_asm: VideoAssembler,
    created: Instant,
    connected: bool,
    last_media: Instant,
    /// str0m's next timer.
    next: Instant,
    etag: String,
    sources: Vec<SocketAddr>,
    ended: Option<&'static str>,
    events: Vec<MediaEvent>,
}

struct Driver {
    socket: UdpSocket,
    advertised: SocketAddr,
    cert: DtlsCert,
    segment_target: SegmentTarget,
    limits: WebRtcLimits,
    sessions: HashMap<String, Session>,
    by_source: HashMap<SocketAddr, String>,
    authorizer: Arc<dyn PublishAuthorizer>,
    /// A command changed sessions: walk them before sleeping again.
    reap_pending: bool,
    feed_tx: mpsc::Sender<(String, FeedItem)>,
}

/// Largest datagram read (WebRTC keeps packets under the path MTU).
const MAX_DATAGRAM: usize = 2048;

impl Driver {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut feed_rx: mpsc::Receiver<(String, FeedItem)>,
    ) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let wake = self.next_wake();
            let mut timers_due = false;
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => self.receive(source, &buf[..n]),
                    // ICMP errors of earlier sends (a peer gone) surface here; keep serving.
                    Err(e) => debug!(error = %e, "WebRTC socket receive error"),
                },
                cmd = rx.recv() => match cmd {
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown();
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => {
                        self.command(cmd);
                        self.reap_pending = true;
                    }
                    None => {
                        self.shutdown();
                        return;
                    }
                },
                Some((id, item)) = feed_rx.recv() => self.feed(&id, item),
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => timers_due = true,
            }
            // A datagram only drives its own session (in `receive`); the
            // walk over every session is for timers and commands.
            let now = Instant::now();
            if timers_due || now >= wake || self.reap_pending {
                self.reap_pending = false;
                self.tick(now);
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(1);
        self.sessions
            .values()
            .map(|s| s.next)
            .min()
            .map_or(far, |t| t.min(far))
    }

    fn receive(&mut self, source: SocketAddr, data: &[u8]) {
        metrics::DATAGRAMS_IN.inc();
        metrics::BYTES_IN.inc_by(data.len() as u64);
        let now = Instant::now();
        let Ok(recv) = Receive::new(Protocol::Udp, source, self.advertised, data) else {
            metrics::DATAGRAMS_UNMATCHED.inc();
            return;
        };
        let input = Input::Receive(now, recv);
        let id = match self.by_source.get(&source) {
            Some(id) if self.sessions.get(id).is_some_and(|s| s.rtc.accepts(&input)) => id.clone(),
            _ => {
                let Some((id, _)) = self.sessions.iter().find(|(_, s)| s.rtc.accepts(&input))
                else {
                    metrics::DATAGRAMS_UNMATCHED.inc();
                    return;
                };
                let id = id.clone();
                self.by_source.insert(source, id.clone());
                if let Some(s) = self.sessions.get_mut(&id) {
                    if !s.sources.contains(&source) && s.sources.len() < 16 {
                        s.sources.push(source);
                    }
                }
                id
            }
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if let Err(e) = s.rtc.handle_input(input) {
            debug!(session = %id, stream = %s.name, error = %e, "WebRTC input refused");
        }
        drive(&self.socket, &id, s, now);
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish {
                offer,
                name,
                publisher,
                reply,
            } => {
                let r = self.publish(offer, name, publisher);
                let _ = reply.send(r);
            }
            Command::Play {
                offer,
                stream,
                tracks,
                events,
                reply,
            } => {
                let r = self.play(offer, stream, tracks, events);
                let _ = reply.send(r);
            }
            Command::Delete { id, reply } => {
                let found = match self.sessions.get_mut(&id) {
                    Some(s) => {
                        s.rtc.disconnect();
                        s.ended = Some("delete");
                        true
                    }
                    None => false,
                };
                let _ = reply.send(found);
            }
            Command::Trickle {
                id,
                etag,
                candidates,
                reply,
            } => {
                let outcome = match self.sessions.get_mut(&id) {
                    None => PatchOutcome::NotFound,
                    Some(s) if etag.as_ref().is_some_and(|e| *e != s.etag && e != "*") => {
                        PatchOutcome::Mismatch
                    }
                    Some(s) => {
                        for c in candidates {
                            s.rtc.add_remote_candidate(c);
                        }
                        PatchOutcome::Applied
                    }
                };
                let _ = reply.send(outcome);
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn publish(
        &mut self,
        offer: SdpOffer,
        name: String,
        publisher: Publisher,
    ) -> Result<Created, CreateError> {
        let connecting = self.sessions.values().filter(|s| !s.connected).count();
        if self.sessions.len() >= self.limits.max_sessions
            || connecting >= self.limits.max_connecting
        {
            metrics::REQUESTS_REFUSED.with_label_values(&["busy"]).inc();
            publisher.finish();
            return Err(CreateError::Busy);
        }
        let now = Instant::now();
        // ICE-lite: the server only answers the publisher's checks on its
        // one public address; it never probes. H.264 only for now (Opus is
        // negotiated so browsers keep their audio m-line; it is not yet
        // carried: docs/webrtc.md).
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .set_dtls_cert(self.cert.clone())
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(now);
        let candidate = Candidate::host(self.advertised, "udp")
            .map_err(|e| CreateError::Offer(format!("bad host candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer: SdpAnswer = match rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                metrics::REQUESTS_REFUSED
                    .with_label_values(&["bad_sdp"])
                    .inc();
                publisher.finish();
                return Err(CreateError::Offer(e.to_string()));
            }
        };
        let answer = answer.to_sdp_string();
        if !has_h264(&answer) {
            metrics::REQUESTS_REFUSED
                .with_label_values(&["no_codec"])
                .inc();
            publisher.finish();
            return Err(CreateError::NoCodec(
                "WHIP needs H.264 video (packetization-mode 1); the offer has none",
            ));
        }
        let etag = rtc.direct_api().local_ice_credentials().ufrag;
        let id = new_session_id();
        let target = (self.segment_target)(&name);
        let mut s = Session {
            rtc,
            viewer: None,
            name,
            publisher: Some(publisher),
            video: None,
            video_asm: VideoAssembler::new(target),
            created: now,
            connected: false,
            last_media: now,
            next: now,
            etag: etag.clone(),
            sources: Vec::new(),
            ended: None,
            events: Vec::new(),
        };
        metrics::connecting().inc();
        drive(&self.socket, &id, &mut s, now);
        info!(session = %id, stream = %s.name, "WHIP session made; waiting for ICE");
        self.sessions.insert(id.clone(), s);
        Ok(Created { id, answer, etag })
    }

    fn play(
        &mut self,
        offer: SdpOffer,
        stream: String,
        tracks: Option<Vec<vela_media::Track>>,
        mut events: broadcast::Receiver<MediaEvent>,
    ) -> Result<Created, CreateError> {
        let mut feed = ViewerFeed::new();
        if let Some(t) = tracks {
            feed.on_event(&MediaEvent::Tracks(Arc::new(t)))?;
        }
        let connecting = self.sessions.values().filter(|s| !s.connected).count();
        if self.sessions.len() >= self.limits.max_sessions
            || connecting >= self.limits.max_connecting
        {
            metrics::REQUESTS_REFUSED.with_label_values(&["busy"]).inc();
            return Err(CreateError::Busy);
        }
        let now = Instant::now();
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .set_dtls_cert(self.cert.clone())
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(now);
        let candidate = Candidate::host(self.advertised, "udp")
            .map_err(|e| CreateError::Offer(format!("bad host candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer = match rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a.to_sdp_string(),
            Err(e) => {
                metrics::REQUESTS_REFUSED
                    .with_label_values(&["bad_sdp"])
                    .inc();
                return Err(CreateError::Offer(e.to_string()));
            }
        };
        if !has_h264(&answer) {
            metrics::REQUESTS_REFUSED
                .with_label_values(&["no_codec"])
                .inc();
            return Err(CreateError::NoCodec(
                "WHEP sends H.264 video (packetization-mode 1); the offer cannot receive it",
            ));
        }
        let etag = rtc.direct_api().local_ice_credentials().ufrag;
        let id = new_session_id();
        let tx = self.feed_tx.clone();
        let fid = id.clone();
        let forward = tokio::spawn(async move {
            loop {
                let item = match events.recv().await {
                    Ok(ev) => FeedItem::Event(ev),
                    Err(broadcast::error::RecvError::Lagged(_)) => FeedItem::Lagged,
                    Err(broadcast::error::RecvError::Closed) => FeedItem::Closed,
                };
                let closed = matches!(item, FeedItem::Closed);
                if tx.send((fid.clone(), item)).await.is_err() || closed {
                    return;
                }
            }
        })
        .abort_handle();
        let mut s = Session {
            rtc,
            viewer: Some(Viewer {
                feed,
                pt: None,
                forward,
            }),
            name: stream,
            publisher: None,
            video: None,
            video_asm: VideoAssembler::new(Duration::from_secs(2)),
            created: now,
            connected: false,
            last_media: now,
            next: now,
            etag: etag.clone(),
            sources: Vec::new(),
            ended: None,
            events: Vec::new(),
        };
        metrics::connecting().inc();
        drive(&self.socket, &id, &mut s, now);
        info!(session = %id, stream = %s.name, "WHEP session made; waiting for ICE");
        self.sessions.insert(id.clone(), s);
        Ok(Created { id, answer, etag })
    }

    /// One event of a viewer's stream: forwarded as a picture when it makes one.
    fn feed(&mut self, id: &str, item: FeedItem) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let now = Instant::now();
        let Some(v) = s.viewer.as_mut() else {
            return;
        };
        let ev = match item {
            FeedItem::Event(MediaEvent::End) | FeedItem::Closed => {
                s.ended.get_or_insert("source_ended");
                self.reap_pending = true;
                return;
            }
            FeedItem::Lagged => {
                v.feed.resync();
                return;
            }
            FeedItem::Event(ev) => ev,
        };
        let picture = match v.feed.on_event(&ev) {
            Ok(p) => p,
            Err(refused) => {
                warn!(session = %id, stream = %s.name, "WHEP viewer refused: {refused}");
                s.ended.get_or_insert("unplayable");
                self.reap_pending = true;
                return;
            }
        };
        let Some(picture) = picture else { return };
        let (Some(mid), true) = (s.video, s.connected) else {
            // Not connected yet: start with a keyframe once it is.
            v.feed.resync();
            return;
        };
        let Some(w) = s.rtc.writer(mid) else { return };
        let pt = match v.pt {
            Some(pt) => pt,
            None => {
                let pick = |mode: Option<u8>| {
                    w.payload_params()
                        .find(|p| {
                            let spec = p.spec();
                            spec.codec == Codec::H264
                                && (mode.is_none() || spec.format.packetization_mode == mode)
                        })
                        .map(|p| p.pt())
                };
                let Some(pt) = pick(Some(1)).or_else(|| pick(None)) else {
                    s.ended.get_or_insert("unplayable");
                    return;
                };
                v.pt = Some(pt);
                pt
            }
        };
        let time = MediaTime::new(picture.rtp_time, Frequency::NINETY_KHZ);
        if let Err(e) = w.write(pt, now, time, picture.data) {
            debug!(session = %id, error = %e, "WHEP write refused");
            v.feed.resync();
        }
        drive(&self.socket, id, s, now);
    }

    /// Timers, keyframe requests and time limits of every session; reaps ended ones.
    fn tick(&mut self, now: Instant) {
        for (id, s) in self.sessions.iter_mut() {
            if s.next <= now {
                if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                    debug!(session = %id, error = %e, "WebRTC timeout input refused");
                }
                drive(&self.socket, id, s, now);
            }
            if s.ended.is_none() {
                if !s.connected && now.duration_since(s.created) > self.limits.ice_timeout {
                    s.ended = Some("ice_timeout");
                } else if s.connected
                    && s.viewer.is_none()
                    && now.duration_since(s.last_media) > self.limits.media_timeout
                {
                    s.ended = Some("media_timeout");
                } else if !s.rtc.is_alive() {
                    s.ended = Some("failed");
                }
            }
        }
        let ended: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.ended.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            if let Some(s) = self.sessions.remove(&id) {
                self.end(&id, s);
            }
        }
    }

    fn end(&mut self, id: &str, mut s: Session) {
        for src in &s.sources {
            if self.by_source.get(src).is_some_and(|v| v == id) {
                self.by_source.remove(src);
            }
        }
        let cause = s.ended.unwrap_or("failed");
        metrics::SESSIONS_ENDED.with_label_values(&[cause]).inc();
        if s.connected {
            metrics::connected().dec();
        } else {
            metrics::connecting().dec();
        }
        s.rtc.disconnect();
        if let Some(v) = s.viewer.take() {
            v.forward.abort();
            info!(session = %id, stream = %s.name, cause, skipped = v.feed.skipped, "WHEP viewer ended");
            return;
        }
        let Some(publisher) = s.publisher.take() else {
            return;
        };
        vela_ingest::metrics::PUBLISHERS.dec();
        match cause {
            // Nothing was ever received, or the publisher asked to stop:
            // a clean end.
            "delete" | "shutdown" | "ice_timeout" => {
                info!(session = %id, stream = %s.name, cause, "WHIP publish finished");
                publisher.finish();
            }
            // Lost: the hub keeps the stream for a reconnect.
            _ => {
                warn!(session = %id, stream = %s.name, cause, "WHIP publisher lost");
                drop(publisher);
            }
        }
        if cause == "ice_timeout" {
            vela_net::metrics::TIMED_OUT
                .with_label_values(&["webrtc", "ice"])
                .inc();
        }
        self.authorizer.publish_stopped(&s.name);
    }

    fn shutdown(&mut self) {
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            if let Some(mut s) = self.sessions.remove(&id) {
                s.ended = Some("shutdown");
                drive(&self.socket, &id, &mut s, Instant::now());
                self.end(&id, s);
            }
        }
    }
}

/// Polls one session until it wants to wait: sends its datagrams and acts on its events.
fn drive(socket: &UdpSocket, id: &str, s: &mut Session, now: Instant) {
    loop {
        match s.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                s.next = t;
                break;
            }
            Ok(Output::Transmit(t)) => {
                // Non-blocking: a full socket buffer drops, as UDP may.
                let _ = socket.try_send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(ev)) => on_event(id, s, ev, now),
            Err(e) => {
                debug!(session = %id, stream = %s.name, error = %e, "WebRTC session failed");
                s.ended.get_or_insert("failed");
                s.next = now + Duration::from_secs(1);
                break;
            }
        }
    }
    if let Some(mid) = s.video {
        if s.connected && s.viewer.is_none() && s.video_asm.keyframe_request(now) {
            if let Some(mut w) = s.rtc.writer(mid) {
                if w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok() {
                    metrics::KEYFRAME_REQUESTS.inc();
                }
            }
        }
    }
}

fn on_event(id: &str, s: &mut Session, ev: Event, now: Instant) {
    match ev {
        Event::Connected if !s.connected => {
            s.connected = true;
            s.last_media = now;
            metrics::connecting().dec();
            metrics::connected().inc();
            let what = if s.viewer.is_some() { "WHEP" } else { "WHIP" };
            info!(session = %id, stream = %s.name, "{what} session connected (ICE + DTLS)");
        }
        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
            s.ended.get_or_insert("disconnected");
        }
        Event::MediaAdded(m) if m.kind == MediaKind::Video && s.video.is_none() => {
            s.video = Some(m.mid);
        }
        Event::KeyframeRequest(_) => {
            if let Some(v) = s.viewer.as_mut() {
                v.feed.resync();
            }
        }
        Event::MediaData(d) => {
            if s.viewer.is_some() {
                return;
            }
            s.last_media = now;
            if Some(d.mid) != s.video {
                return; // audio: not carried yet
            }
            let before = s.video_asm.dropped;
            s.video_asm.push(
                d.time.rebase(Frequency::NINETY_KHZ).numer(),
                d.contiguous,
                &d.data,
                &mut s.events,
            );
            let after = s.video_asm.dropped;
            if after.bad > before.bad {
                metrics::PICTURES_DROPPED.with_label_values(&["bad"]).inc();
            }
            if after.waiting > before.waiting {
                metrics::PICTURES_DROPPED
                    .with_label_values(&["waiting"])
                    .inc();
            }
            if let Some(p) = &s.publisher {
                for e in s.events.drain(..) {
                    p.send(e);
                }
            } else {
                s.events.clear();
            }
        }
        _ => {}
    }
}

/// The answer accepted H.264 video.
fn has_h264(answer: &str) -> bool {
    answer
        .lines()
        .any(|l| l.starts_with("a=rtpmap:") && l.to_ascii_uppercase().contains(" H264/90000"))
}

fn new_session_id() -> String {
    let v: u128 = rand::random();
    format!("{v:032x}")
}
