//! End-to-end: the tokio driver on 127.0.0.1:0, real publishers (the `ffmpeg`
//! binary; rml_rtmp's client for what ffmpeg cannot send), the hub's output checked.
//!
//! ffmpeg is required: without it these tests fail with a message saying so.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::{broadcast, mpsc};
use vela_ingest::server::{serve_rtmp, IngestContext, IngestLimits};
use vela_ingest::OpenAuthorizer;
use vela_media::hub::StreamHub;
use vela_media::{CodecConfig, Frame, MediaEvent, TrackSet};

struct Server {
    port: u16,
    hub: StreamHub,
    ctx: Arc<IngestContext>,
    starts: mpsc::UnboundedReceiver<(String, broadcast::Receiver<MediaEvent>)>,
}

async fn start_server(limits: IngestLimits, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
    let hub = StreamHub::new(8192, Duration::from_secs(2));
    let (tx, starts) = mpsc::unbounded_channel();
    hub.on_stream_start(move |st| {
        let _ = tx.send((st.name, st.events));
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ctx = Arc::new(IngestContext::new(
        hub.clone(),
        Arc::new(OpenAuthorizer),
        limits,
    ));
    tokio::spawn(serve_rtmp(listener, tls, ctx.clone()));
    Server {
        port,
        hub,
        ctx,
        starts,
    }
}

/// The installed ffmpeg's (major, minor) version; fails the test if there is none.
fn ffmpeg_version() -> (u32, u32) {
    let out = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .expect("this test needs the `ffmpeg` binary on PATH (apt-get install -y ffmpeg)");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split_whitespace().nth(2).unwrap_or("0.0");
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// x264 with a fixed GOP (no scene-cut keyframes), so the cadence is checkable.
const X264: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-sc_threshold",
    "0",
];

fn ffmpeg_publish(url: &str, seconds: u32, extra_video: &[&str]) -> Command {
    ffmpeg_version();
    ffmpeg_publish_with("ffmpeg", url, seconds, extra_video)
}

fn ffmpeg_publish_with(bin: &str, url: &str, seconds: u32, extra_video: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(extra_video)
        .args(["-g", "30", "-c:a", "aac", "-b:a", "96k"])
        .args(["-t", &seconds.to_string(), "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// An ffmpeg whose FLV muxer speaks Enhanced RTMP (>= 6.1): `VELA_FFMPEG_HEVC`,
/// else the one the imageio-ffmpeg PyPI package ships (scripts/setup installs
/// it), else the system ffmpeg when it is recent enough.
fn enhanced_rtmp_ffmpeg() -> Option<String> {
    if let Ok(p) = std::env::var("VELA_FFMPEG_HEVC") {
        return Some(p);
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
        ])
        .output();
    if let Ok(out) = out {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && std::path::Path::new(&path).exists() {
            return Some(path);
        }
    }
    (ffmpeg_version() >= (6, 1)).then(|| "ffmpeg".to_string())
}

#[derive(Default, Debug)]
struct Collected {
    tracks: Vec<TrackSet>,
    frames: Vec<Frame>,
    ended: bool,
    discontinuities: usize,
}

async fn collect(mut rx: broadcast::Receiver<MediaEvent>, limit: Duration) -> Collected {
    let mut c = Collected::default();
    let _ = tokio::time::timeout(limit, async {
        loop {
            match rx.recv().await {
                Ok(MediaEvent::Tracks(t)) => c.tracks.push(t),
                Ok(MediaEvent::Frame(f)) => c.frames.push(f),
                Ok(MediaEvent::Discontinuity) => c.discontinuities += 1,
                Ok(MediaEvent::End) => {
                    c.ended = true;
                    return;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("consumer lagged by {n}"),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
    .await;
    c
}

fn check_h264_aac(c: &Collected, seconds: i64) {
    assert!(c.ended, "the stream must End after ffmpeg exits");
    assert_eq!(c.tracks.len(), 1, "one track announcement: {:?}", c.tracks);
    let tracks = &c.tracks[0];
    assert_eq!(tracks.len(), 2);
    let (v, a) = (&tracks[0], &tracks[1]);
    assert_eq!((v.id, v.timescale), (1, 90_000));
    assert!(
        v.config.codec_string().starts_with("avc1."),
        "{}",
        v.config.codec_string()
    );
    assert!(
        matches!(
            v.config,
            CodecConfig::Video {
                width: 640,
                height: 360,
                ..
            }
        ),
        "{:?}",
        v.config
    );
    assert_eq!((a.id, a.timescale), (2, 48_000));
    assert_eq!(a.config.codec_string(), "mp4a.40.2");

    let video: Vec<&Frame> = c.frames.iter().filter(|f| f.track_id == 1).collect();
    let audio: Vec<&Frame> = c.frames.iter().filter(|f| f.track_id == 2).collect();
    let expected = (30 * seconds) as usize;
    assert!(
        (expected - 2..=expected + 1).contains(&video.len()),
        "{} video frames, expected ~{expected}",
        video.len()
    );
    assert!(
        video.windows(2).all(|w| w[1].dts > w[0].dts),
        "video dts strictly increasing"
    );
    assert!(
        audio.windows(2).all(|w| w[1].dts >= w[0].dts),
        "audio dts never going back"
    );
    let span = video.last().unwrap().dts - video[0].dts;
    assert!(
        (span - (seconds * 90_000 - 3000)).abs() < 3000,
        "video spans ~{seconds} s: {span}"
    );
    // -g 30: a keyframe every 30 frames, starting with the first.
    let keys: Vec<usize> = video
        .iter()
        .enumerate()
        .filter(|(_, f)| f.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keys.first(), Some(&0));
    assert!(
        keys.iter().all(|i| i % 30 == 0),
        "keyframe cadence {keys:?}"
    );
    assert!(keys.len() >= seconds as usize, "{keys:?}");
    // Samples are 4-byte length-prefixed NAL units that tile the payload.
    for f in &video {
        let mut pos = 0;
        while pos < f.data.len() {
            let len = u32::from_be_bytes([
                f.data[pos],
                f.data[pos + 1],
                f.data[pos + 2],
                f.data[pos + 3],
            ]) as usize;
            pos += 4 + len;
        }
        assert_eq!(pos, f.data.len());
    }
    let audio_span = audio.last().unwrap().dts - audio[0].dts;
    assert!(
        (audio_span - seconds * 48_000).abs() < 4800,
        "audio spans ~{seconds} s: {audio_span}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_h264_aac_publish_reaches_the_hub() {
    let mut server = start_server(IngestLimits::default(), None).await;
    let url = format!("rtmp://127.0.0.1:{}/live/test", server.port);
    let mut ffmpeg = ffmpeg_publish(&url, 3, X264).spawn().unwrap();
    let (name, rx) = tokio::time::timeout(Duration::from_secs(15), server.starts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name, "test");
    let collected = tokio::spawn(collect(rx, Duration::from_secs(30)));
    let out = ffmpeg.wait_with_output_status().await;
    assert!(out.0.success(), "ffmpeg failed: {}", out.1);
    let c = collected.await.unwrap();
    check_h264_aac(&c, 3);
    assert!(!server.hub.is_publishing("test"));
}

/// `Child::wait` plus its stderr, for failure messages.
trait WaitWithStderr {
    async fn wait_with_output_status(&mut self) -> (std::process::ExitStatus, String);
}

impl WaitWithStderr for tokio::process::Child {
    async fn wait_with_output_status(&mut self) -> (std::process::ExitStatus, String) {
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut err).await;
        }
        (self.wait().await.unwrap(), err)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publisher_on_a_live_key_is_refused() {
    let mut server = start_server(IngestLimits::default(), None).await;
    let url = format!("rtmp://127.0.0.1:{}/live/dup", server.port);
    let mut first = ffmpeg_publish(&url, 4, X264).spawn().unwrap();
    let (_, rx) = tokio::time::timeout(Duration::from_secs(15), server.starts.recv())
        .await
        .unwrap()
        .unwrap();
    let collected = tokio::spawn(collect(rx, Duration::from_secs(30)));
    assert!(server.hub.is_publishing("dup"));
    let refused_before = refused("already_publishing");
    let mut second = ffmpeg_publish(&url, 1, X264).spawn().unwrap();
    let (status, stderr) =
        tokio::time::timeout(Duration::from_secs(15), second.wait_with_output_status())
            .await
            .unwrap();
    assert!(!status.success(), "the second publisher must be refused");
    assert!(
        stderr.contains("already has a publisher"),
        "ffmpeg shows the server's reason: {stderr}"
    );
    assert_eq!(refused("already_publishing"), refused_before + 1);
    let (status, stderr) = first.wait_with_output_status().await;
    assert!(
        status.success(),
        "the first publisher is unaffected: {stderr}"
    );
    let c = collected.await.unwrap();
    check_h264_aac(&c, 4);
}

fn refused(reason: &str) -> u64 {
    vela_ingest::metrics::PUBLISH_REFUSED
        .with_label_values(&[reason])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_key_gets_bad_name_and_is_counted() {
    let server = start_server(IngestLimits::default(), None).await;
    let before = refused("bad_key");
    // '!' is not allowed in open-mode keys.
    let url = format!("rtmp://127.0.0.1:{}/live/bad!key", server.port);
    let (status, _) = ffmpeg_publish(&url, 1, &["-c:v", "libx264"])
        .spawn()
        .unwrap()
        .wait_with_output_status()
        .await;
    assert!(!status.success());
    assert_eq!(refused("bad_key"), before + 1);
    assert!(server.hub.publishing().is_empty());
}

async fn publish_with_modern_ffmpeg(video: &[&str], key: &str) -> Option<Collected> {
    let Some(bin) = enhanced_rtmp_ffmpeg() else {
        eprintln!("no ffmpeg >= 6.1 found (set VELA_FFMPEG_HEVC or run scripts/setup); using hand-built tags only");
        return None;
    };
    let mut server = start_server(IngestLimits::default(), None).await;
    let url = format!("rtmp://127.0.0.1:{}/live/{key}", server.port);
    let mut ffmpeg = ffmpeg_publish_with(&bin, &url, 2, video).spawn().unwrap();
    let (_, rx) = tokio::time::timeout(Duration::from_secs(20), server.starts.recv())
        .await
        .expect("the publish starts")
        .unwrap();
    let collected = tokio::spawn(collect(rx, Duration::from_secs(60)));
    let (status, stderr) = ffmpeg.wait_with_output_status().await;
    assert!(status.success(), "{bin}: {stderr}");
    Some(collected.await.unwrap())
}

fn check_enhanced(c: &Collected, prefix: &str) {
    assert!(c.ended);
    let tracks = &c.tracks[0];
    let v = &tracks[0];
    assert!(
        v.config.codec_string().starts_with(prefix),
        "{}",
        v.config.codec_string()
    );
    assert!(
        matches!(
            v.config,
            CodecConfig::Video {
                width: 640,
                height: 360,
                ..
            }
        ),
        "{:?}",
        v.config
    );
    assert_eq!(tracks[1].config.codec_string(), "mp4a.40.2");
    let video: Vec<&Frame> = c.frames.iter().filter(|f| f.track_id == 1).collect();
    assert!((58..=61).contains(&video.len()), "{} frames", video.len());
    assert!(video[0].keyframe);
    assert!(video.windows(2).all(|w| w[1].dts > w[0].dts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_publish_from_an_enhanced_rtmp_ffmpeg() {
    // ffmpeg >= 6.1 sends HEVC over FLV/RTMP with the Enhanced RTMP FourCC hvc1.
    let video = [
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
    ];
    if let Some(c) = publish_with_modern_ffmpeg(&video, "hevc").await {
        check_enhanced(&c, "hvc1.");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av1_publish_from_an_enhanced_rtmp_ffmpeg() {
    let video = [
        "-c:v",
        "libsvtav1",
        "-preset",
        "12",
        "-svtav1-params",
        "lp=2",
    ];
    if let Some(c) = publish_with_modern_ffmpeg(&video, "av1").await {
        check_enhanced(&c, "av01.");
        // Samples are temporal units without temporal delimiters.
        let first = c.frames.iter().find(|f| f.track_id == 1).unwrap();
        assert_ne!(
            (first.data[0] >> 3) & 0x0f,
            2,
            "temporal delimiter left in the sample"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_hand_built_enhanced_tags_over_tcp() {
    // Whatever ffmpeg is installed: publish hand-built Enhanced RTMP tags (an x265
    // hvcC record) over a real connection with rml_rtmp's client.
    let mut server = start_server(IngestLimits::default(), None).await;
    let c = publish_with_rml_client(server.port, "hevc", &mut server).await;
    assert!(c.ended);
    let v = &c.tracks[0][0];
    assert!(
        v.config.codec_string().starts_with("hvc1.1.6.L"),
        "{}",
        v.config.codec_string()
    );
    assert!(matches!(
        v.config,
        CodecConfig::Video {
            width: 426,
            height: 240,
            ..
        }
    ));
    let frames: Vec<&Frame> = c.frames.iter().filter(|f| f.track_id == 1).collect();
    assert_eq!(frames.len(), 60);
    assert!(frames[0].keyframe && frames[30].keyframe && !frames[1].keyframe);
    assert_eq!(frames[1].cts_offset, 33 * 90);
    assert!(frames.windows(2).all(|w| w[1].dts > w[0].dts));
}

/// Publishes 60 Enhanced-RTMP HEVC frames (plus AAC) with rml_rtmp's client over TCP.
async fn publish_with_rml_client(port: u16, key: &str, server: &mut Server) -> Collected {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    };
    use rml_rtmp::time::RtmpTimestamp;

    let mut sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut hs = Handshake::new(PeerType::Client);
    sock.write_all(&hs.generate_outbound_p0_and_p1().unwrap())
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let leftover = loop {
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0);
        match hs.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).await.unwrap()
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                sock.write_all(&response_bytes).await.unwrap();
                break remaining_bytes;
            }
        }
    };
    let (mut client, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    let mut events = Vec::new();
    async fn send(
        sock: &mut TcpStream,
        results: Vec<ClientSessionResult>,
        events: &mut Vec<ClientSessionEvent>,
    ) {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => sock.write_all(&p.bytes).await.unwrap(),
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                _ => {}
            }
        }
    }
    let r = client.handle_input(&leftover).unwrap();
    send(&mut sock, r, &mut events).await;
    let r = client.request_connection("live".into()).unwrap();
    send(&mut sock, vec![r], &mut events).await;
    let mut published = false;
    while !published {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "server closed: {events:?}");
        let r = client.handle_input(&buf[..n]).unwrap();
        send(&mut sock, r, &mut events).await;
        if events.contains(&ClientSessionEvent::ConnectionRequestAccepted) {
            events.retain(|e| *e != ClientSessionEvent::ConnectionRequestAccepted);
            let r = client
                .request_publishing(key.into(), PublishRequestType::Live)
                .unwrap();
            send(&mut sock, vec![r], &mut events).await;
        }
        published = events.contains(&ClientSessionEvent::PublishRequestAccepted);
    }
    let (_, rx) = tokio::time::timeout(Duration::from_secs(5), server.starts.recv())
        .await
        .unwrap()
        .unwrap();
    let collected = tokio::spawn(collect(rx, Duration::from_secs(10)));

    let hvcc: &[u8] = include_bytes!("../fixtures/ffmpeg-x265-426x240.hvcC");
    let mut seq = vec![0x90]; // enhanced, key frame, SequenceStart
    seq.extend_from_slice(b"hvc1");
    seq.extend_from_slice(hvcc);
    let r = client
        .publish_video_data(Bytes::from(seq), RtmpTimestamp::new(0), false)
        .unwrap();
    send(&mut sock, vec![r], &mut events).await;
    let r = client
        .publish_audio_data(
            Bytes::from_static(&[0xaf, 0, 0x11, 0x90]),
            RtmpTimestamp::new(0),
            false,
        )
        .unwrap();
    send(&mut sock, vec![r], &mut events).await;
    for i in 0..60u32 {
        let key = i % 30 == 0;
        // CodedFrames with a composition time of 33 ms (one B-frame of delay).
        let mut tag = vec![0x80 | if key { 0x10 } else { 0x20 } | 1];
        tag.extend_from_slice(b"hvc1");
        tag.extend_from_slice(&[0, 0, 33]);
        tag.extend_from_slice(&[0, 0, 0, 3, if key { 0x26 } else { 0x02 }, 0x01, 0xaf]);
        let r = client
            .publish_video_data(Bytes::from(tag), RtmpTimestamp::new(i * 33), false)
            .unwrap();
        send(&mut sock, vec![r], &mut events).await;
        let r = client
            .publish_audio_data(
                Bytes::from_static(&[0xaf, 1, 0x21, 0x10, 0x04]),
                RtmpTimestamp::new(i * 33),
                false,
            )
            .unwrap();
        send(&mut sock, vec![r], &mut events).await;
    }
    let r = client.stop_publishing().unwrap();
    send(&mut sock, r, &mut events).await;
    sock.flush().await.unwrap();
    let c = collected.await.unwrap();
    drop(sock);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_the_cap_refuses_extra_ones() {
    let limits = IngestLimits {
        max_connections: 2,
        handshake_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..IngestLimits::default()
    };
    let server = start_server(limits, None).await;
    let mut a = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut b = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Over the cap: closed at once.
    let mut c = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut one = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_millis(200), c.read(&mut one))
        .await
        .expect("closed at once");
    assert!(matches!(n, Ok(0) | Err(_)));
    // Silent through the handshake deadline: closed.
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), a.read(&mut one))
        .await
        .expect("closed by the server");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(started.elapsed() >= Duration::from_millis(150));
    let _ = tokio::time::timeout(Duration::from_secs(3), b.read(&mut one))
        .await
        .expect("closed by the server");
    // The slots are free again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut d = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    d.write_all(&[3]).await.unwrap();
    // Accepted this time: the server answers C0 with S0/S1.
    let n = tokio::time::timeout(Duration::from_secs(1), d.read(&mut one))
        .await
        .expect("an answer");
    assert_eq!(n.unwrap(), 1);
    assert_eq!(one[0], 3, "S0 carries RTMP version 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmps_publish_with_ffmpeg() {
    ffmpeg_version();
    let dir = std::env::temp_dir().join(format!("vela-ingest-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("this test needs the `openssl` binary to make a certificate");
    assert!(ok.success());
    let tls = vela_ingest::tls::load_tls_config(&cert, &key).unwrap();
    let mut server = start_server(IngestLimits::default(), Some(tls)).await;
    let url = format!("rtmps://127.0.0.1:{}/live/secure", server.port);
    let mut ffmpeg = ffmpeg_publish(&url, 2, X264).spawn().unwrap();
    let (name, rx) = tokio::time::timeout(Duration::from_secs(15), server.starts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name, "secure");
    let collected = tokio::spawn(collect(rx, Duration::from_secs(30)));
    let (status, stderr) = ffmpeg.wait_with_output_status().await;
    assert!(status.success(), "{stderr}");
    check_h264_aac(&collected.await.unwrap(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_publishes_cleanly() {
    let mut server = start_server(IngestLimits::default(), None).await;
    let url = format!("rtmp://127.0.0.1:{}/live/bye", server.port);
    let mut ffmpeg = ffmpeg_publish(&url, 20, X264).spawn().unwrap();
    let (_, mut rx) = tokio::time::timeout(Duration::from_secs(15), server.starts.recv())
        .await
        .unwrap()
        .unwrap();
    // Wait for media, then shut down.
    loop {
        if let Ok(MediaEvent::Frame(_)) = rx.recv().await {
            break;
        }
    }
    assert_eq!(server.ctx.connections(), 1);
    server.ctx.shutdown();
    let c = collect(rx, Duration::from_secs(5)).await;
    assert!(c.ended, "consumers get End on shutdown");
    tokio::time::timeout(Duration::from_secs(5), server.ctx.wait_closed())
        .await
        .expect("connections closed");
    assert!(!server.hub.is_publishing("bye"));
    let _ = ffmpeg.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_publishes_is_closed() {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    let limits = IngestLimits {
        publish_timeout: Duration::from_millis(400),
        ..IngestLimits::default()
    };
    let server = start_server(limits, None).await;
    let mut sock = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut hs = Handshake::new(PeerType::Client);
    sock.write_all(&hs.generate_outbound_p0_and_p1().unwrap())
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = sock.read(&mut buf).await.unwrap();
        if let HandshakeProcessResult::Completed { response_bytes, .. } =
            hs.process_bytes(&buf[..n]).unwrap()
        {
            sock.write_all(&response_bytes).await.unwrap();
            break;
        }
    }
    let started = std::time::Instant::now();
    // Handshake done, nothing else: the server gives up after the publish timeout,
    // well before its 30 s idle timeout.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "closed by the server");
    assert!(started.elapsed() >= Duration::from_millis(200));
}
