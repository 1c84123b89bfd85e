//! The HTTP client object_store's S3 implementation sends its requests
//! through: hyper-util's pooled client over hyper-rustls (ring, Mozilla's
//! roots), so the crate needs neither reqwest nor aws-lc-rs. Plain `http://`
//! endpoints (SeaweedFS, MinIO on loopback) work too.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    HttpClient, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::ClientOptions;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Builds [`HyperService`]s for object_store.
#[derive(Debug, Clone)]
pub(crate) struct HyperConnector {
    service: HyperService,
}

#[derive(Debug, Clone)]
pub(crate) struct HyperService {
    client: Client<Connector, HttpRequestBody>,
    /// Until the response head has arrived (a stalled body is bounded by the
    /// per-read timeout below).
    timeout: Duration,
}

impl HyperConnector {
    pub(crate) fn new(timeout: Duration) -> Result<HyperConnector, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout.min(Duration::from_secs(10))));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| format!("TLS configuration: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            // S3 closes idle connections after ~20 s; drop ours before that
            // so a request rarely meets a connection closed under it.
            .pool_idle_timeout(Duration::from_secs(15))
            .build(https);
        Ok(HyperConnector {
            service: HyperService { client, timeout },
        })
    }
}

impl object_store::client::HttpConnector for HyperConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.service.clone()))
    }
}

/// Classifies a hyper-util error like object_store's reqwest client does, so
/// its retry logic retries what is worth retrying.
fn classify(e: &hyper_util::client::legacy::Error) -> HttpErrorKind {
    if e.is_connect() {
        return HttpErrorKind::Connect;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_closed() || h.is_incomplete_message() || h.is_body_write_aborted() {
                return HttpErrorKind::Request;
            }
            if h.is_timeout() {
                return HttpErrorKind::Timeout;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::TimedOut => return HttpErrorKind::Timeout,
                K::ConnectionRefused => return HttpErrorKind::Connect,
                K::ConnectionAborted | K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof => {
                    return HttpErrorKind::Interrupted
                }
                _ => {}
            }
        }
        source = s.source();
    }
    HttpErrorKind::Request
}

#[derive(Debug, thiserror::Error)]
#[error("no response within {0:?}")]
struct TimedOut(Duration);

#[async_trait::async_trait]
impl HttpService for HyperService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| HttpError::new(HttpErrorKind::Timeout, TimedOut(self.timeout)))?
            .map_err(|e| HttpError::new(classify(&e), e))?;
        let timeout = self.timeout;
        Ok(response.map(|body| {
            HttpResponseBody::new(TimeoutBody::new(
                body.map_err(|e| {
                    let kind = if e.is_timeout() {
                        HttpErrorKind::Timeout
                    } else {
                        HttpErrorKind::Interrupted
                    };
                    HttpError::new(kind, e)
                }),
                timeout,
            ))
        }))
    }
}

/// A response body whose every frame must arrive within `timeout`: a server
/// that stalls mid-body fails the read instead of hanging it.
struct TimeoutBody<B> {
    inner: std::pin::Pin<Box<B>>,
    timeout: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<B> TimeoutBody<B> {
    fn new(inner: B, timeout: Duration) -> Self {
        TimeoutBody {
            inner: Box::pin(inner),
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl<B> hyper::body::Body for TimeoutBody<B>
where
    B: hyper::body::Body<Data = bytes::Bytes, Error = HttpError>,
{
    type Data = bytes::Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, HttpError>>> {
        use std::task::Poll;
        let this = &mut *self;
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + this.timeout;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::new(
                    HttpErrorKind::Timeout,
                    TimedOut(this.timeout),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
