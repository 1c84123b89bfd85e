//! The origin cluster: several nodes share one database, and a live stream
//! published to any of them is playable from every one.
//!
//! Each node registers in the database (the binary's heartbeat task) with
//! the HTTP address its peers reach it at, and records the live streams it
//! holds. A request for `/live/STREAM/…` that this node cannot answer from
//! its own streams is pulled from the node that holds the stream, found
//! through the [`Directory`] (the database) and remembered briefly:
//!
//! - only ever from a registered, live member's advertised address, never
//!   from anything the request names;
//! - signed ([`auth`]) with a key derived from the server key, so a peer
//!   knows the request is a node's and answers it from its own streams only
//!   (a signed request is never pulled on: no loops), and refuses forged ones;
//! - collapsed: one upstream request per URL in flight, whose head and body
//!   chunks reach every waiting viewer as they arrive ([`flight`]), which
//!   keeps LL-HLS blocking reloads (`_HLS_msn`/`_HLS_part` are part of the
//!   URL) and chunked parts and segments working through the pull;
//! - immutable media (segments, parts, init segments) is kept in a small
//!   bounded cache keyed by the stream's instance, so a republished stream
//!   never gets its predecessor's files.
//!
//! A peer that does not answer makes the request a 503 JSON error, logged
//! once per incident (and once when it answers again) and counted in
//! `vela_cluster_pull_errors_total`; its location is forgotten at once, so
//! a stream that moved is found at the next request. HLS keys
//! (`/drm/keys/KID`) that this node does not have are asked of the other
//! members in turn.

pub mod auth;
mod flight;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::OnceCell;

use crate::live::{now_ms, LiveRegistry};
use crate::metrics;
use crate::protect::Protection;
use flight::{Flight, Head};

/// A live cluster node as registered in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// `http://host:port` (no trailing slash).
    pub advertise: String,
}

/// Where a live stream is: the node that holds it and the instance there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub member: Member,
    pub instance: u64,
}

/// The cluster's directory (the shared database).
pub trait Directory: Send + Sync + 'static {
    /// The live member that holds `stream`, if any.
    fn locate(&self, stream: &str) -> BoxFuture<'static, Result<Option<Location>, String>>;
    /// Every live member.
    fn members(&self) -> BoxFuture<'static, Result<Vec<Member>, String>>;
}

/// Why a pull failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    #[error("the cluster node that holds this stream does not answer")]
    Unavailable,
    #[error("the cluster directory cannot be read")]
    Directory,
}

impl PullError {
    fn code(self) -> &'static str {
        match self {
            PullError::Unavailable => "upstream_unavailable",
            PullError::Directory => "cluster_directory_unavailable",
        }
    }
}

impl IntoResponse for PullError {
    fn into_response(self) -> Response {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            self.code(),
            &self.to_string(),
        )
    }
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Settings of a node's cluster role.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id in the directory.
    pub node_id: String,
    /// Signs and verifies requests between nodes.
    pub key: [u8; 32],
    /// How long a stream's location is remembered.
    pub location_ttl: Duration,
    /// Memory for pulled immutable media, bytes.
    pub media_cache_bytes: usize,
    /// The largest response pulled, bytes.
    pub max_response_bytes: usize,
}

impl ClusterConfig {
    pub fn new(node_id: String, key: [u8; 32]) -> Self {
        ClusterConfig {
            node_id,
            key,
            location_ttl: Duration::from_secs(1),
            media_cache_bytes: 64 << 20,
            max_response_bytes: 64 << 20,
        }
    }
}

/// How long a peer may take to send a response's head: longer than any
/// blocking playlist reload or part wait it may hold.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may pause within a response body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds the location map against floods of made-up stream names.
const MAX_LOCATIONS: usize = 10_000;

type Cell<T> = Arc<OnceCell<Result<T, PullError>>>;
/// Stream name -> (when looked up, the lookup).
type Locations = HashMap<String, (Instant, Cell<Option<Location>>)>;

/// A node's cluster role: the pull middleware ([`layer`]) and its state.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ClusterConfig,
    directory: Arc<dyn Directory>,
    live: LiveRegistry,
    protection: Option<Arc<Protection>>,
    client: Client<HttpConnector, Empty<Bytes>>,
    locations: Mutex<Locations>,
    members: Mutex<Option<(Instant, Cell<Vec<Member>>)>>,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    cache: Mutex<MediaCache>,
    /// Peers in a failure incident (logged when it starts and ends).
    failing: Mutex<HashSet<String>>,
    /// When a refused signature or a directory error was last logged.
    last_auth_log: AtomicI64,
    last_directory_log: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether to log an event of a kind last logged at `last` (at most once a minute).
fn log_now(last: &AtomicI64) -> bool {
    let now = now_ms();
    let before = last.load(Ordering::Relaxed);
    now - before >= 60_000
        && last
            .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// The stream a `/live/STREAM/…` path names.
fn live_stream_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/live/")?;
    let (stream, rest) = rest.split_once('/')?;
    (!stream.is_empty() && !rest.is_empty()).then_some(stream)
}

/// Headers that belong to one connection, not to the response.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

impl Cluster {
    pub fn new(
        cfg: ClusterConfig,
        directory: Arc<dyn Directory>,
        live: LiveRegistry,
        protection: Option<Arc<Protection>>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let cache = MediaCache::new(cfg.media_cache_bytes);
        Cluster {
            inner: Arc::new(Inner {
                cfg,
                directory,
                live,
                protection,
                client,
                locations: Mutex::new(HashMap::new()),
                members: Mutex::new(None),
                flights: Mutex::new(HashMap::new()),
                cache: Mutex::new(cache),
                failing: Mutex::new(HashSet::new()),
                last_auth_log: AtomicI64::new(i64::MIN / 2),
                last_directory_log: AtomicI64::new(i64::MIN / 2),
            }),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.inner.cfg.node_id
    }

    async fn handle(&self, req: Request, next: Next) -> Response {
        if let Some(v) = req.headers().get(auth::HEADER) {
            return self.peer_request(v.clone(), req, next).await;
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return next.run(req).await;
        }
        let path = req.uri().path();
        if let Some(stream) = live_stream_of(path) {
            if self.inner.live.get_live(stream).is_some() {
                return next.run(req).await;
            }
            let stream = stream.to_string();
            return match self.locate(&stream).await {
                Ok(Some(loc)) if loc.member.id != self.inner.cfg.node_id => {
                    self.pull(loc.member, Some((stream, loc.instance)), req)
                        .await
                }
                // Nobody else holds it: an ended stream's window here, or a 404.
                Ok(_) => next.run(req).await,
                Err(e) => e.into_response(),
            };
        }
        if let Some(kid) = path.strip_prefix("/drm/keys/") {
            let local = self.inner.protection.as_ref().is_none_or(|p| {
                crate::protect::parse_kid(kid).is_none_or(|k| p.keys.find_with_stream(&k).is_some())
            });
            if !local {
                let want = Want::of(&req);
                if let Some(res) = self.pull_key(want).await {
                    return res;
                }
            }
        }
        next.run(req).await
    }

    /// A request signed by a peer: served from this node's own streams.
    async fn peer_request(&self, value: HeaderValue, req: Request, next: Next) -> Response {
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let verdict = value
            .to_str()
            .map_err(|_| auth::AuthError::Malformed)
            .and_then(|v| {
                auth::verify(&self.inner.cfg.key, v, now_ms(), req.method().as_str(), &pq)
                    .map(|_| ())
            });
        match verdict {
            Ok(()) => {
                metrics::CLUSTER_PEER_REQUESTS.inc();
                next.run(req).await
            }
            Err(e) => {
                metrics::CLUSTER_AUTH_REFUSED.inc();
                if log_now(&self.inner.last_auth_log) {
                    tracing::warn!(error = %e, path = pq, "refused a request with a bad cluster signature (logged once a minute; counted in vela_cluster_auth_refused_total)");
                }
                json_error(StatusCode::FORBIDDEN, "cluster_auth", &e.to_string())
            }
        }
    }

    /// The location of `stream`, from the directory, remembered for the TTL;
    /// concurrent lookups of one stream share one query.
    async fn locate(&self, stream: &str) -> Result<Option<Location>, PullError> {
        let ttl = self.inner.cfg.location_ttl;
        let cell = {
            let mut map = lock(&self.inner.locations);
            let now = Instant::now();
            if map.len() > MAX_LOCATIONS {
                map.retain(|_, (t, _)| now.duration_since(*t) < ttl);
            }
            match map.get(stream) {
                Some((t, c)) if now.duration_since(*t) < ttl => c.clone(),
                _ => {
                    let c: Cell<Option<Location>> = Arc::new(OnceCell::new());
                    map.insert(stream.to_string(), (now, c.clone()));
                    c
                }
            }
        };
        cell.get_or_init(|| async {
            self.inner
                .directory
                .locate(stream)
                .await
                .map_err(|e| self.directory_failed(&e))
        })
        .await
        .clone()
    }

    fn directory_failed(&self, e: &str) -> PullError {
        metrics::CLUSTER_PULL_ERRORS
            .with_label_values(&["directory"])
            .inc();
        if log_now(&self.inner.last_directory_log) {
            tracing::warn!(
                error = e,
                "cannot read the cluster directory (logged once a minute)"
            );
        }
        PullError::Directory
    }

    fn forget_location(&self, stream: &str) {
        lock(&self.inner.locations).remove(stream);
    }

    async fn members(&self) -> Result<Vec<Member>, PullError> {
        let ttl = self.inner.cfg.location_ttl;
        let cell = {
            let mut m = lock(&self.inner.members);
            match &*m {
                Some((t, c)) if t.elapsed() < ttl => c.clone(),
                _ => {
                    let c: Cell<Vec<Member>> = Arc::new(OnceCell::new());
                    *m = Some((Instant::now(), c.clone()));
                    c
                }
            }
        };
        cell.get_or_init(|| async {
            self.inner
                .directory
                .members()
                .await
                .map_err(|e| self.directory_failed(&e))
        })
        .await
        .clone()
    }

    /// An HLS key this node does not have: asked of the other members in
    /// turn; `None` when none has it (the local handler answers 404).
    async fn pull_key(&self, want: Want) -> Option<Response> {
        let members = self.members().await.ok()?;
        for m in members
            .into_iter()
            .filter(|m| m.id != self.inner.cfg.node_id)
        {
            let res = self.fetch_shared(m, None, want.clone()).await;
            if res.status() == StatusCode::OK {
                return Some(res);
            }
        }
        None
    }

    /// Serves `req` from `member`, whose stream (name, instance) it is.
    async fn pull(&self, member: Member, stream: Option<(String, u64)>, req: Request) -> Response {
        let want = Want::of(&req);
        drop(req);
        let res = self.fetch_shared(member, stream.clone(), want).await;
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            if let Some((s, _)) = &stream {
                // It may have moved (a publisher that reconnected elsewhere).
                self.forget_location(s);
            }
        }
        res
    }

    async fn fetch_shared(
        &self,
        member: Member,
        stream: Option<(String, u64)>,
        want: Want,
    ) -> Response {
        let Want {
            pq,
            host,
            proto,
            range,
            inm,
        } = want;
        // Host and scheme are part of the key: the MPD writes absolute URLs.
        let key = format!(
            "{}|{}|{}|{}|{}|{pq}",
            member.id,
            stream.as_ref().map_or(0, |s| s.1),
            host.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
            proto.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
            range.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
        );
        if range.is_none() {
            let hit = lock(&self.inner.cache).get(&key);
            if let Some(hit) = hit {
                metrics::CLUSTER_PULLS.with_label_values(&["cache"]).inc();
                return respond(&hit.0, Body::from(hit.1.clone()), inm.as_ref());
            }
        }
        let (flight, leader) = {
            let mut flights = lock(&self.inner.flights);
            match flights.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Flight::new();
                    flights.insert(key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        if leader {
            metrics::CLUSTER_PULLS
                .with_label_values(&["upstream"])
                .inc();
            let this = self.clone();
            let f = flight.clone();
            let cacheable = range.is_none() && stream.is_some();
            tokio::spawn(async move {
                this.fetch(member, pq, [host, proto], range, &f).await;
                if cacheable {
                    if let Some((head, body)) = f.complete_body().filter(|(h, _)| immutable(h)) {
                        lock(&this.inner.cache).insert(key.clone(), head, body);
                    }
                }
                let mut flights = lock(&this.inner.flights);
                if flights.get(&key).is_some_and(|g| Arc::ptr_eq(g, &f)) {
                    flights.remove(&key);
                }
            });
        } else {
            metrics::CLUSTER_PULLS
                .with_label_values(&["collapsed"])
                .inc();
        }
        match flight.head().await {
            Ok(head) => {
                let body = Body::from_stream(flight.clone().body());
                respond(&head, body, inm.as_ref())
            }
            Err(e) => e.into_response(),
        }
    }

    /// One upstream request, its head and body written into `flight`.
    async fn fetch(
        &self,
        member: Member,
        pq: String,
        [host, proto]: [Option<HeaderValue>; 2],
        range: Option<HeaderValue>,
        flight: &Flight,
    ) {
        let uri = format!("{}{pq}", member.advertise.trim_end_matches('/'));
        let signature = auth::sign(
            &self.inner.cfg.key,
            &self.inner.cfg.node_id,
            now_ms(),
            "GET",
            &pq,
        );
        let mut b = http::Request::get(&uri).header(auth::HEADER, signature);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        if let Some(p) = proto {
            b = b.header(crate::http::FORWARDED_PROTO, p);
        }
        if let Some(r) = range {
            b = b.header(header::RANGE, r);
        }
        let req = match b.body(Empty::<Bytes>::new()) {
            Ok(r) => r,
            Err(e) => {
                self.failed(&member, "request", &e.to_string());
                flight.finish(false);
                return;
            }
        };
        let res = match tokio::time::timeout(HEAD_TIMEOUT, self.inner.client.request(req)).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => {
                self.failed(&member, "connect", &e.to_string());
                flight.finish(false);
                return;
            }
            Err(_) => {
                self.failed(&member, "timeout", "no response head in time");
                flight.finish(false);
                return;
            }
        };
        self.recovered(&member);
        let (parts, mut body) = res.into_parts();
        let mut headers = parts.headers;
        let names: Vec<HeaderName> = headers.keys().filter(|n| hop_by_hop(n)).cloned().collect();
        for n in names {
            headers.remove(n);
        }
        flight.set_head(Ok(Head {
            status: parts.status,
            headers,
        }));
        loop {
            match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if !flight.push(data, self.inner.cfg.max_response_bytes) {
                            self.failed(&member, "too_large", "response over the pull limit");
                            flight.finish(false);
                            return;
                        }
                    }
                }
                Ok(None) => {
                    flight.finish(true);
                    return;
                }
                Ok(Some(Err(e))) => {
                    self.failed(&member, "body", &e.to_string());
                    flight.finish(false);
                    return;
                }
                Err(_) => {
                    self.failed(&member, "timeout", "response body stalled");
                    flight.finish(false);
                    return;
                }
            }
        }
    }

    fn failed(&self, m: &Member, what: &str, error: &str) {
        metrics::CLUSTER_PULL_ERRORS
            .with_label_values(&[what])
            .inc();
        if lock(&self.inner.failing).insert(m.id.clone()) {
            tracing::warn!(
                node = m.id,
                addr = m.advertise,
                what,
                error,
                "a cluster peer fails to answer pulls; logged once until it answers again (vela_cluster_pull_errors_total counts each)"
            );
        }
    }

    fn recovered(&self, m: &Member) {
        if lock(&self.inner.failing).remove(&m.id) {
            tracing::info!(
                node = m.id,
                addr = m.advertise,
                "a cluster peer answers pulls again"
            );
        }
    }
}

/// What a pull takes from the viewer's request.
#[derive(Clone)]
struct Want {
    pq: String,
    host: Option<HeaderValue>,
    /// `X-Forwarded-Proto`: the scheme the viewer used, for the peer's URLs.
    proto: Option<HeaderValue>,
    range: Option<HeaderValue>,
    inm: Option<HeaderValue>,
}

impl Want {
    fn of(req: &Request) -> Want {
        let h = req.headers();
        Want {
            pq: req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            host: h.get(header::HOST).cloned(),
            proto: h.get(crate::http::FORWARDED_PROTO).cloned(),
            range: h.get(header::RANGE).cloned(),
            inm: h.get(header::IF_NONE_MATCH).cloned(),
        }
    }
}

/// Whether a pulled response may be kept: complete media that never changes.
fn immutable(h: &Head) -> bool {
    h.status == StatusCode::OK
        && h.headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("immutable"))
}

/// The client's response from a pulled head and body (304 when the
/// client's `If-None-Match` names the ETag).
fn respond(head: &Head, body: Body, inm: Option<&HeaderValue>) -> Response {
    if head.status == StatusCode::OK {
        if let (Some(etag), Some(inm)) = (
            head.headers.get(header::ETAG).and_then(|v| v.to_str().ok()),
            inm.and_then(|v| v.to_str().ok()),
        ) {
            if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
                let mut h = HeaderMap::new();
                for n in [header::ETAG, header::CACHE_CONTROL, header::VARY] {
                    if let Some(v) = head.headers.get(&n) {
                        h.insert(n, v.clone());
                    }
                }
                return (StatusCode::NOT_MODIFIED, h).into_response();
            }
        }
    }
    let mut res = Response::new(body);
    *res.status_mut() = head.status;
    *res.headers_mut() = head.headers.clone();
    res
}

/// The middleware (`axum::middleware::from_fn_with_state(cluster, layer)`):
/// serves what this node holds, pulls the rest from the node that holds it.
pub async fn layer(State(cluster): State<Cluster>, req: Request, next: Next) -> Response {
    cluster.handle(req, next).await
}

/// Pulled immutable media, bounded in bytes, oldest out first.
struct MediaCache {
    map: HashMap<String, Arc<(Head, Bytes)>>,
    order: VecDeque<String>,
    bytes: usize,
    cap: usize,
}

impl MediaCache {
    fn new(cap: usize) -> Self {
        MediaCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            cap,
        }
    }

    fn get(&self, key: &str) -> Option<Arc<(Head, Bytes)>> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: String, head: Head, body: Bytes) {
        if body.len() > self.cap / 4 || self.map.contains_key(&key) {
            return;
        }
        while self.bytes + body.len() > self.cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(e) = self.map.remove(&old) {
                self.bytes -= e.1.len();
            }
        }
        self.bytes += body.len();
        self.order.push_back(key.clone());
        self.map.insert(key, Arc::new((head, body)));
    }
}

#[cfg(test)]
mod tests;
