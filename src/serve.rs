//! `vela serve`: wires the hub, the RTMP ingest, the packagers and the HTTP
//! origin together, and owns start-up and shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use vela_control_plane::{ControlPlane, ControlPlaneConfig, PublishMode as CpPublishMode};
use vela_ingest::server::{serve_rtmp, IngestContext};
use vela_media::hub::{StreamHub, DEFAULT_CAPACITY};
use vela_origin::protect::Protection;
use vela_origin::thumb::ThumbState;
use vela_origin::vod::{VodLimits, VodState};
use vela_origin::{LiveRegistry, OriginState};

use crate::config::{self, ConfigError, FileConfig, LiveConfig, PublishMode};
use crate::control::{ControlPlaneAuthorizer, EntrySettings};
use crate::ServeArgs;

/// Everything `serve` needs, resolved from defaults, file and flags.
struct Settings {
    data: PathBuf,
    rtmp: SocketAddr,
    rtmps: Option<SocketAddr>,
    http: SocketAddr,
    https: Option<SocketAddr>,
    h3: Option<SocketAddr>,
    webrtc: Option<SocketAddr>,
    /// The WebRTC address was configured (not the default).
    webrtc_explicit: bool,
    webrtc_public: Option<std::net::IpAddr>,
    database: Option<String>,
    /// The address advertised to cluster peers, with `[cluster]`.
    advertise: Option<String>,
    file: FileConfig,
}

fn resolve(args: ServeArgs) -> Result<Settings, ConfigError> {
    let file = match &args.config {
        Some(path) => config::load_file(path)?,
        None => FileConfig::default(),
    };
    file.live.validate()?;
    file.limits.validate()?;
    file.vod.validate()?;
    file.storage.validate()?;
    file.recording.validate()?;
    file.jobs.validate()?;
    file.analytics.config().map_err(ConfigError::Invalid)?;
    file.webrtc.validate()?;
    if let Some(drm) = &file.drm {
        drm.validate()?;
    }
    let pick = |flag: &Option<String>, file: &Option<String>, default: &str| {
        flag.clone()
            .or_else(|| file.clone())
            .unwrap_or_else(|| default.to_string())
    };
    let rtmp = config::parse_addr(
        "--rtmp",
        &pick(&args.rtmp, &file.listen.rtmp, "0.0.0.0:1935"),
    )?;
    let http = config::parse_addr(
        "--http",
        &pick(&args.http, &file.listen.http, "0.0.0.0:8080"),
    )?;
    let h3 = pick(&args.h3, &file.listen.h3, "0.0.0.0:8443");
    let h3 = if h3 == "off" {
        None
    } else {
        Some(config::parse_addr("--h3", &h3)?)
    };
    let webrtc_explicit = args.webrtc.is_some() || file.listen.webrtc.is_some();
    let webrtc = pick(&args.webrtc, &file.listen.webrtc, "0.0.0.0:8189");
    let webrtc = if webrtc == "off" {
        None
    } else {
        Some(config::parse_addr("--webrtc", &webrtc)?)
    };
    let webrtc_public = file
        .listen
        .webrtc_public
        .as_deref()
        .map(crate::webrtc::parse_public_ip)
        .transpose()?;
    // HTTPS is on by default only with a configured certificate; asked for
    // explicitly without one, it uses the self-signed one (docs/https.md).
    let https = match args.https.as_ref().or(file.listen.https.as_ref()) {
        Some(v) if v == "off" => None,
        Some(v) => Some(config::parse_addr("--https", v)?),
        None if file.tls.is_some() => Some(config::parse_addr("--https", "0.0.0.0:8443")?),
        None => None,
    };
    let rtmps = file
        .listen
        .rtmps
        .as_deref()
        .map(|a| config::parse_addr("listen.rtmps", a))
        .transpose()?;
    if rtmps.is_some() && file.tls.is_none() {
        return Err(ConfigError::Invalid(
            "listen.rtmps needs a [tls] table with cert and key".into(),
        ));
    }
    let database = args.database.clone().or_else(|| file.database.url.clone());
    if let Some(url) = &database {
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(ConfigError::Invalid(
                "--database: expected a postgres:// URL".into(),
            ));
        }
    }
    let advertise = file
        .cluster
        .as_ref()
        .map(|c| c.resolve(http, database.as_deref()))
        .transpose()?;
    let data = args
        .data
        .or_else(|| file.data.clone())
        .unwrap_or_else(|| PathBuf::from("./vela-data"));
    Ok(Settings {
        data,
        rtmp,
        rtmps,
        http,
        https,
        h3,
        webrtc,
        webrtc_explicit,
        webrtc_public,
        database,
        advertise,
        file,
    })
}

/// Runs the server; the exit code follows INTERFACE.md (2 for a bad flag,
/// config file or busy port).
pub fn run(args: ServeArgs) -> ExitCode {
    let settings = match resolve(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vela: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vela: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vela: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// How uploads are indexed: as the VOD origin will serve them.
pub(crate) fn vod_limits_index(vod: &config::VodConfig) -> vela_vod::IndexOptions {
    vela_vod::IndexOptions {
        segment_target: Duration::from_secs_f64(vod.segment_target_s),
    }
}

async fn bind(what: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

async fn serve(s: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&s.data)
        .with_context(|| format!("cannot create data directory {}", s.data.display()))?;
    // Bind everything first, so a busy port fails start-up as a whole.
    let rtmp_listener = bind("RTMP", s.rtmp).await?;
    let rtmps_listener = match s.rtmps {
        Some(a) => Some(bind("RTMPS", a).await?),
        None => None,
    };
    let http_listener = bind("HTTP", s.http).await?;
    let https_listener = match s.https {
        Some(a) => Some(bind("HTTPS", a).await?),
        None => None,
    };
    let certs = crate::tls::certificates(
        &s.data,
        s.file.tls.as_ref(),
        s.https.is_some() || s.h3.is_some(),
    )
    .await?;
    let (limits, http_limits) = crate::limits::listener_limits(&s.file.limits);
    let h3_limits = vela_net::h3::H3Limits {
        http: http_limits,
        ..Default::default()
    };
    let h3_listener = match (s.h3, &certs) {
        (Some(a), Some(c)) => {
            let tls = c
                .server_config(&vela_net::h3::ALPN, true)
                .context("HTTP/3 TLS configuration")?;
            Some(vela_net::h3::H3Listener::bind(a, tls, &h3_limits)?)
        }
        _ => None,
    };
    let rtmps_tls = match &certs {
        Some(c) if rtmps_listener.is_some() => Some(Arc::new(
            c.server_config(&[], false)
                .context("RTMPS TLS configuration")?,
        )),
        _ => None,
    };

    let shared_store = crate::recording::media_store(&s.data, &s.file.storage)
        .await
        .context("[storage]")?;
    let host_of = |a: SocketAddr| {
        if a.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            a.ip().to_string()
        }
    };
    let public = &s.file.public;
    let cp = ControlPlane::open(ControlPlaneConfig {
        data_dir: s.data.clone(),
        database_url: s.database.clone(),
        publish_mode: match s.file.auth.publish {
            PublishMode::Auto => CpPublishMode::Auto,
            PublishMode::Open => CpPublishMode::Open,
            PublishMode::Keys => CpPublishMode::Keys,
        },
        public_http_base: public
            .http_base
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", host_of(s.http), s.http.port())),
        public_rtmp_base: public
            .rtmp_base
            .clone()
            .unwrap_or_else(|| format!("rtmp://{}:{}/live", host_of(s.rtmp), s.rtmp.port())),
        media: vela_control_plane::content::MediaConfig {
            max_upload_bytes: s.file.vod.max_upload_bytes,
            inspector: Some(crate::media::inspector(vod_limits_index(&s.file.vod))),
            store: shared_store,
            ..Default::default()
        },
    })
    .await
    .context("control plane")?;

    let live_config: LiveConfig = s.file.live.clone();
    let hub = StreamHub::new(
        DEFAULT_CAPACITY,
        Duration::from_secs_f64(live_config.reconnect_grace_s),
    );
    let recordings = vela_origin::record::Recordings::attach(
        &hub,
        Arc::new(crate::recording::EntryRecordings {
            cp: cp.clone(),
            settings: s.file.recording.clone(),
        }),
        s.file.recording.config(&s.data),
    );
    {
        let recordings = recordings.clone();
        tokio::spawn(async move {
            let n = recordings.recover().await;
            if n > 0 {
                tracing::info!(
                    recordings = n,
                    "recordings left by a stopped server are ready"
                );
            }
        });
    }
    cp.spawn_retention(Duration::from_secs(30));
    cp.set_outbound(s.file.outbound.config());
    let workers = s
        .file
        .jobs
        .run_in_serve
        .then(|| cp.start_workers(s.file.jobs.config(), Default::default()));
    let entry_settings = EntrySettings::default();
    let settings_cfg = live_config.clone();
    let per_entry = entry_settings.clone();
    // The older part of every DVR window lives on disk (`[live]
    // dvr_memory_s`); what a previous run left there is cleared. Its hot
    // segments are cached in memory (`dvr_cache_mib`).
    let spool = vela_origin::dvr::Spool::open(
        s.data.join("dvr"),
        u64::from(live_config.dvr_cache_mib) << 20,
    )
    .await
    .context("DVR spool")?;
    let registry = LiveRegistry::attach_with_spool(
        &hub,
        Arc::new(move |name: &str| {
            let mut c = settings_cfg.for_stream(name);
            if let Some(w) = per_entry.dvr_window(name) {
                c.dvr_window = w;
            }
            c
        }),
        Some(spool),
    );
    let mut origin = OriginState::new(registry.clone());
    origin.dash_target_latency_ms = live_config.dash_target_latency_ms;
    let drm = s.file.drm.clone().unwrap_or_default();
    let open_policy = drm.policy()?;
    // Keys derived from the cluster's server key: every node on one
    // database encrypts the same content under the same keys.
    let keys = vela_drm::KeyStore::open_shared(
        s.data.join("keys"),
        drm.rotate_every,
        cp.content_key_secret(),
    )
    .context("key store")?;
    let per_entry_drm = entry_settings.clone();
    origin.protection = Some(Arc::new(Protection::new(
        keys,
        Arc::new(move |stream: &str| per_entry_drm.drm(stream).unwrap_or(open_policy)),
    )));

    origin.access = Some(Arc::new(crate::control::TokenGate {
        cp: cp.clone(),
        default: s.file.playback.require_token,
        streams: live_config
            .streams
            .iter()
            .filter_map(|(name, o)| Some((name.clone(), o.require_token?)))
            .collect(),
    }));

    let vod = VodState::new(
        Arc::new(crate::media::EntryCatalog { cp: cp.clone() }),
        origin.access.clone(),
        origin.protection.clone(),
        VodLimits {
            index_cache_bytes: s.file.vod.index_cache_mb << 20,
            fragment_cache_bytes: s.file.vod.fragment_cache_mb << 20,
            segment_target: Duration::from_secs_f64(s.file.vod.segment_target_s),
        },
    );
    let cluster = match (&s.file.cluster, &s.advertise) {
        (Some(settings), Some(advertise)) => {
            let node = crate::cluster::new_node_id();
            let puller = crate::cluster::puller(
                node.clone(),
                cp.cluster_key(),
                settings,
                cp.db().clone(),
                registry.clone(),
                origin.protection.clone(),
            );
            Some((node, advertise.clone(), settings.clone(), puller))
        }
        _ => None,
    };
    let thumbs = ThumbState::new(registry.clone(), vod.clone());
    // One authoriser for RTMP and WHIP: a key publishes the same way on both.
    let authorizer: Arc<dyn vela_ingest::PublishAuthorizer> = Arc::new(ControlPlaneAuthorizer {
        cp: cp.clone(),
        settings: entry_settings,
    });
    let analytics = vela_control_plane::analytics::Analytics::start(
        cp.clone(),
        s.file.analytics.config().map_err(anyhow::Error::msg)?,
    );
    let mut app = vela_origin::router(origin)
        .merge(vela_origin::vod::router(vod))
        .merge(vela_origin::thumb::router(thumbs))
        // The access log notes media requests per session (non-blocking).
        .layer(axum::middleware::from_fn_with_state(
            analytics.access_log(),
            vela_control_plane::analytics::access::layer,
        ))
        .merge(cp.router())
        .merge(analytics.router())
        .merge(vela_control_plane::web::router(cp.clone()));
    let webrtc = match s.webrtc {
        Some(bind) => {
            let live = live_config.clone();
            let target: vela_webrtc::server::SegmentTarget = Arc::new(move |name: &str| {
                Duration::from_secs_f64(live.for_stream(name).segment_target)
            });
            let config = s.file.webrtc.config(bind, s.webrtc_public, target);
            let handle = match vela_webrtc::start(config.clone(), hub.clone(), authorizer.clone()).await {
                Ok(h) => Ok(h),
                // The default port taken (another server on this host): WHIP
                // still works on a port of the system's choosing.
                Err(e) if !s.webrtc_explicit => {
                    tracing::warn!(webrtc = %bind, error = %e, "default WebRTC port unavailable; using an ephemeral UDP port (set [listen] webrtc)");
                    let config = vela_webrtc::WebRtcConfig {
                        bind: SocketAddr::new(bind.ip(), 0),
                        ..config
                    };
                    vela_webrtc::start(config, hub.clone(), authorizer.clone()).await
                }
                Err(e) => Err(e),
            }
            .with_context(|| format!("cannot listen for WebRTC on UDP {bind}"))?;
            tracing::info!(webrtc = %bind, candidate = %handle.local_addr, "WHIP: POST http://HOST:PORT/whip/KEY; media on this UDP port");
            let live = registry.clone();
            let state = vela_webrtc::whip::WhipState {
                rtc: handle.clone(),
                ice_links: s.file.webrtc.ice_links(),
                tracks_of: Arc::new(move |name: &str| {
                    let stream = live.get(name)?;
                    let p = stream.presentation();
                    Some(p.renditions().iter().map(|r| r.track.clone()).collect())
                }),
            };
            app = app
                .merge(vela_webrtc::whip::router(state.clone()))
                .merge(vela_webrtc::whep::router(state));
            Some(handle)
        }
        None => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut membership = None;
    if let Some((node, advertise, settings, puller)) = cluster {
        app = app.layer(axum::middleware::from_fn_with_state(
            puller,
            vela_origin::cluster::layer,
        ));
        membership = Some(tokio::spawn(crate::cluster::run_membership(
            cp.db().clone(),
            node,
            advertise,
            settings,
            registry.clone(),
            stop_rx.clone(),
        )));
    }
    let mut app = app
        .layer(axum::middleware::from_fn(
            vela_net::json_errors::json_errors,
        ))
        .layer(axum::middleware::from_fn(
            vela_origin::http::cors_and_metrics,
        ));

    let ingest = Arc::new(IngestContext::new(hub.clone(), authorizer, limits));

    tracing::info!(
        data = %s.data.display(),
        rtmp = %s.rtmp,
        http = %s.http,
        "vela {} serving: publish to rtmp://HOST:{}/live/KEY, play http://HOST:{}/live/KEY/master.m3u8",
        env!("CARGO_PKG_VERSION"),
        s.rtmp.port(),
        s.http.port()
    );
    if s.https.is_none() && s.file.tls.is_none() {
        tracing::info!("HTTPS is off: [tls] names no certificate (pass --https ADDR to serve HTTPS with the self-signed certificate)");
    }

    vela_net::metrics::spawn_runtime_sampler();
    let rtmp_task = tokio::spawn(serve_rtmp(rtmp_listener, None, ingest.clone()));
    let rtmps_task = rtmps_listener.map(|l| tokio::spawn(serve_rtmp(l, rtmps_tls, ingest.clone())));
    if let Some(c) = &certs {
        crate::tls::spawn_reload_on_sighup(c.clone());
    }

    let h3_task = match h3_listener {
        Some(l) => {
            let addr = l.local_addr()?;
            tracing::info!(h3 = %addr, "serving HTTP/3 (QUIC, UDP); TCP responses announce it with Alt-Svc");
            let task = tokio::spawn(vela_net::h3::serve_h3(
                l,
                "h3",
                app.clone()
                    .layer(axum::middleware::map_request(vela_origin::http::mark_tls)),
                h3_limits,
                stop_rx.clone(),
            ));
            // Browsers learn of HTTP/3 from the TCP listeners' answers.
            let alt_svc = vela_net::h3::alt_svc(addr.port());
            app = app.layer(axum::middleware::map_response(
                move |mut r: axum::response::Response| {
                    let v = alt_svc.clone();
                    async move {
                        r.headers_mut()
                            .entry(axum::http::header::ALT_SVC)
                            .or_insert(v);
                        r
                    }
                },
            ));
            Some(task)
        }
        None => None,
    };
    let https_task = match (https_listener, &certs) {
        (Some(l), Some(c)) => {
            let tls = c
                .server_config(&vela_net::https::ALPN, false)
                .context("HTTPS TLS configuration")?;
            tracing::info!(https = %l.local_addr()?, "serving HTTPS (HTTP/1.1 and HTTP/2)");
            Some(tokio::spawn(vela_net::https::serve_https(
                l,
                "https",
                app.clone()
                    .layer(axum::middleware::map_request(vela_origin::http::mark_tls)),
                http_limits,
                Arc::new(tls),
                stop_rx.clone(),
            )))
        }
        _ => None,
    };
    let http_task = tokio::spawn(vela_net::http::serve_http(
        http_listener,
        "http",
        app,
        http_limits,
        stop_rx.clone(),
    ));

    shutdown_signal().await;
    tracing::info!("shutting down: no new connections; ending publishes cleanly");
    rtmp_task.abort();
    if let Some(t) = rtmps_task {
        t.abort();
    }
    // Publishers are told to stop and their streams end cleanly (playlists get
    // EXT-X-ENDLIST), rather than looking interrupted.
    ingest.shutdown();
    if let Some(w) = &webrtc {
        w.shutdown().await;
    }
    if tokio::time::timeout(Duration::from_secs(3), ingest.wait_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open = ingest.connections(),
            "some RTMP connections did not close in time"
        );
    }
    // Let the packagers take in the streams' ends before HTTP stops, and the
    // recorders finish their pieces (what does not finish is recovered at the next start).
    tokio::time::sleep(Duration::from_millis(100)).await;
    if !recordings.wait_idle(Duration::from_secs(4)).await {
        tracing::warn!(
            "some recordings were still finishing at shutdown; they complete at the next start"
        );
    }
    let _ = stop_tx.send(true);
    if let Some(w) = workers {
        w.stop(Duration::from_secs(2)).await;
    }
    if let Some(m) = membership {
        // Leaves the cluster (its streams have ended above).
        let _ = tokio::time::timeout(Duration::from_secs(2), m).await;
    }
    // Open requests (blocked playlist reloads, streamed segments) get a few
    // seconds; INTERFACE.md promises exit within 10 s.
    let listeners = async {
        let _ = http_task.await;
        if let Some(t) = https_task {
            let _ = t.await;
        }
        if let Some(t) = h3_task {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), listeners)
        .await
        .is_err()
    {
        tracing::warn!("some HTTP requests were still open at shutdown");
    }
    tracing::info!("stopped");
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
