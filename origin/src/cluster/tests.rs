//! The pull middleware against a real peer: an HTTP server on loopback that
//! counts what reaches it, in front of a node whose directory points there.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use vela_media::hub::StreamHub;
use vela_packager::PackagerConfig;

use super::*;

const KEY: [u8; 32] = [3u8; 32];

/// A directory that says the peer at `addr` holds stream "show" (instance 1).
struct OnePeer {
    addr: String,
}

impl Directory for OnePeer {
    fn locate(&self, stream: &str) -> BoxFuture<'static, Result<Option<Location>, String>> {
        let found = (stream == "show").then(|| Location {
            member: Member {
                id: "peer".into(),
                advertise: self.addr.clone(),
            },
            instance: 1,
        });
        Box::pin(async move { Ok(found) })
    }
    fn members(&self) -> BoxFuture<'static, Result<Vec<Member>, String>> {
        let m = vec![Member {
            id: "peer".into(),
            advertise: self.addr.clone(),
        }];
        Box::pin(async move { Ok(m) })
    }
}

/// The peer: a blocking playlist that answers after a moment, a media
/// file, and a check of the signature that every request must carry.
async fn peer(hits: Arc<AtomicUsize>) -> String {
    let key_ok = |h: &HeaderMap, pq: &str| {
        h.get(auth::HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| auth::verify(&KEY, v, now_ms(), "GET", pq).is_ok())
    };
    let h1 = hits.clone();
    let h2 = hits.clone();
    let app = Router::new()
        .route(
            "/live/show/v1/index.m3u8",
            get(move |headers: HeaderMap, uri: axum::http::Uri| {
                let hits = h1.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if !key_ok(&headers, uri.path_and_query().unwrap().as_str()) {
                        return (StatusCode::FORBIDDEN, "unsigned").into_response();
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    (
                        [(header::CACHE_CONTROL, "public, max-age=0, s-maxage=1")],
                        "#EXTM3U\n",
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/live/show/v1/seg-1.m4s",
            get(move |headers: HeaderMap| {
                let hits = h2.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if !key_ok(&headers, "/live/show/v1/seg-1.m4s") {
                        return (StatusCode::FORBIDDEN, "unsigned").into_response();
                    }
                    (
                        [
                            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                            (header::ETAG, "\"s1\""),
                        ],
                        vec![7u8; 1000],
                    )
                        .into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn node(addr: String) -> (Router, Cluster) {
    let hub = StreamHub::new(64, Duration::from_secs(1));
    let live = LiveRegistry::attach(&hub, Arc::new(|_: &str| PackagerConfig::default()));
    let cluster = Cluster::new(
        ClusterConfig::new("me".into(), KEY),
        Arc::new(OnePeer { addr }),
        live,
        None,
    );
    let app = Router::new()
        .route("/live/{s}/{r}/{f}", get(|| async { StatusCode::NOT_FOUND }))
        .layer(axum::middleware::from_fn_with_state(cluster.clone(), layer));
    (app, cluster)
}

async fn get_req(
    app: &Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut b = http::Request::get(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn concurrent_requests_for_one_url_make_one_upstream_request() {
    let hits = Arc::new(AtomicUsize::new(0));
    let (app, _) = node(peer(hits.clone()).await);
    let uri = "/live/show/v1/index.m3u8?_HLS_msn=5&_HLS_part=1";
    let reqs: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { get_req(&app, uri, &[]).await })
        })
        .collect();
    for r in reqs {
        let (status, _, body) = r.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"#EXTM3U\n");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one upstream request for 50 viewers"
    );
    // Another blocking request is another URL: a new upstream request.
    get_req(&app, "/live/show/v1/index.m3u8?_HLS_msn=5&_HLS_part=2", &[]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn immutable_media_is_cached_and_revalidated_locally() {
    let hits = Arc::new(AtomicUsize::new(0));
    let (app, _) = node(peer(hits.clone()).await);
    let (status, headers, body) = get_req(&app, "/live/show/v1/seg-1.m4s", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), 1000);
    assert_eq!(headers[header::ETAG], "\"s1\"");
    let (status, _, body) = get_req(&app, "/live/show/v1/seg-1.m4s", &[]).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 1000));
    let (status, _, _) = get_req(
        &app,
        "/live/show/v1/seg-1.m4s",
        &[("if-none-match", "\"s1\"")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "served from the cache after the first pull"
    );
}

#[tokio::test]
async fn unknown_streams_stay_local_and_dead_peers_are_a_503() {
    let (app, _) = node("http://127.0.0.1:9".into());
    // Nobody holds it: the local handler answers.
    let (status, _, _) = get_req(&app, "/live/other/v1/seg-1.m4s", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The holder does not answer: a JSON 503.
    let (status, headers, body) = get_req(&app, "/live/show/v1/seg-1.m4s", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert!(String::from_utf8_lossy(&body).contains("upstream_unavailable"));
}

#[tokio::test]
async fn signed_requests_are_served_locally_and_forged_ones_refused() {
    let hits = Arc::new(AtomicUsize::new(0));
    let (app, _) = node(peer(hits.clone()).await);
    let pq = "/live/show/v1/seg-1.m4s";
    let good = auth::sign(&KEY, "peer", now_ms(), "GET", pq);
    // A peer's request is never pulled on (here: the local 404).
    let (status, _, _) = get_req(&app, pq, &[(auth::HEADER, &good)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let forged = auth::sign(&[9u8; 32], "peer", now_ms(), "GET", pq);
    let (status, _, body) = get_req(&app, pq, &[(auth::HEADER, &forged)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("cluster_auth"));
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}
