//! Outbound HTTP(S) GETs that a user aims (imports): hyper-util's client over
//! hyper-rustls (the stack the S3 store uses), with the outbound guard.
//!
//! The guard refuses loopback, link-local, private, shared (CGNAT), multicast and
//! unspecified addresses unless `[outbound] allow_private`. It runs where the address
//! is known: in the connector's resolver (every name lookup, so a name that resolves to
//! a private address is refused after resolution, not before) and on IP-literal URLs
//! (which skip the resolver). Redirects are followed here, one request each, so every
//! hop is checked again.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL: {0}")]
    Url(String),
    #[error("refused: {0} is a loopback, link-local or private address (outbound requests to them are off)")]
    Private(IpAddr),
    #[error("too many redirects (more than {0})")]
    Redirects(usize),
    #[error("the server answered {0}")]
    Status(u16),
    #[error("no response within {0} s")]
    Timeout(u64),
    #[error("request failed: {0}")]
    Transport(String),
}

impl FetchError {
    /// Whether another attempt might succeed.
    pub fn transient(&self) -> bool {
        match self {
            FetchError::Timeout(_) | FetchError::Transport(_) => true,
            FetchError::Status(s) => *s >= 500 || *s == 429 || *s == 408,
            _ => false,
        }
    }
}

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                // 100.64.0.0/10 (carrier-grade NAT), 192.0.0.0/24 (protocol assignments),
                // 198.18.0.0/15 (benchmarking), 240.0.0.0/4 (reserved).
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                // 64:ff9b::/96 NAT64 of a private v4 address.
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] && !is_public(IpAddr::V4(std::net::Ipv4Addr::new(
                    (s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8)))))
        }
    }
}

/// A resolver that drops refused addresses; if none is left the lookup fails
/// naming the first one.
#[derive(Clone)]
struct GuardedResolver {
    allow_private: bool,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| allow || is_public(a.ip()))
                .collect();
            match (ok.is_empty(), addrs.first()) {
                (true, Some(a)) => Err(std::io::Error::other(FetchError::Private(a.ip()))),
                (true, None) => Err(std::io::Error::other("the name has no address")),
                _ => Ok(ok.into_iter()),
            }
        })
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// An HTTP(S) client for user-aimed URLs.
#[derive(Clone)]
pub struct Fetcher {
    client: Client<Connector, Full<Bytes>>,
    allow_private: bool,
    head_timeout: Duration,
    max_redirects: usize,
}

/// A response after redirects: status 2xx.
pub struct Fetched {
    pub response: http::Response<hyper::body::Incoming>,
    /// The URL that answered (after redirects).
    pub url: url::Url,
}

impl Fetcher {
    pub fn new(
        allow_private: bool,
        connect_timeout: Duration,
        head_timeout: Duration,
        max_redirects: usize,
    ) -> Result<Fetcher, String> {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { allow_private });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| format!("TLS configuration: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(15))
            .build(https);
        Ok(Fetcher {
            client,
            allow_private,
            head_timeout,
            max_redirects,
        })
    }

    /// Checks a URL as the fetch will (scheme, host, IP literal).
    pub fn check_url(&self, u: &url::Url) -> Result<(), FetchError> {
        check_url(u, self.allow_private)
    }

    /// GETs `url`, following up to `max_redirects` redirects.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut url = url::Url::parse(url).map_err(|e| FetchError::Url(e.to_string()))?;
        for _ in 0..=self.max_redirects {
            self.check_url(&url)?;
            let req = http::Request::get(url.as_str())
                .header(http::header::USER_AGENT, "vela-import/1")
                .header(http::header::ACCEPT, "*/*")
                .body(Full::default())
                .map_err(|e| FetchError::Url(e.to_string()))?;
            let resp = tokio::time::timeout(self.head_timeout, self.client.request(req))
                .await
                .map_err(|_| FetchError::Timeout(self.head_timeout.as_secs()))?
                .map_err(|e| transport(&e))?;
            let status = resp.status();
            if status.is_redirection() {
                let loc = resp
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(FetchError::Status(status.as_u16()))?;
                url = url
                    .join(loc)
                    .map_err(|e| FetchError::Url(format!("redirect to {loc:?}: {e}")))?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            return Ok(Fetched {
                response: resp,
                url,
            });
        }
        Err(FetchError::Redirects(self.max_redirects))
    }
}

impl Fetcher {
    /// Sends one request (no redirects followed: a 3xx is an answer like any other);
    /// returns the status once the response head has arrived.
    pub async fn send(&self, req: http::Request<Full<Bytes>>) -> Result<u16, FetchError> {
        let url =
            url::Url::parse(&req.uri().to_string()).map_err(|e| FetchError::Url(e.to_string()))?;
        self.check_url(&url)?;
        let resp = tokio::time::timeout(self.head_timeout, self.client.request(req))
            .await
            .map_err(|_| FetchError::Timeout(self.head_timeout.as_secs()))?
            .map_err(|e| transport(&e))?;
        Ok(resp.status().as_u16())
    }
}

/// The error's innermost cause (a refused address says so; others in a few words).
fn transport(e: &hyper_util::client::legacy::Error) -> FetchError {
    use std::error::Error as _;
    let mut src = e.source();
    while let Some(s) = src {
        // The resolver's refusal travels inside an io::Error.
        let inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<FetchError>());
        if let Some(FetchError::Private(ip)) = inner {
            return FetchError::Private(*ip);
        }
        if s.source().is_none() {
            return FetchError::Transport(s.to_string().chars().take(200).collect());
        }
        src = s.source();
    }
    FetchError::Transport(e.to_string())
}

pub(crate) fn check_url(u: &url::Url, allow_private: bool) -> Result<(), FetchError> {
    if !matches!(u.scheme(), "http" | "https") {
        return Err(FetchError::Url(
            "only http and https URLs are fetched".into(),
        ));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(FetchError::Url(
            "URLs with credentials are not fetched".into(),
        ));
    }
    let ip = match u.host() {
        None => return Err(FetchError::Url("the URL has no host".into())),
        Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        Some(url::Host::Domain(_)) => None,
    };
    match ip {
        Some(ip) if !allow_private && !is_public(ip) => Err(FetchError::Private(ip)),
        _ => Ok(()),
    }
}
