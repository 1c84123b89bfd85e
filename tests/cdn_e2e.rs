//! Vela behind a CDN edge: nginx and Varnish (Debian's) with the
//! configurations that docs/cdn.md ships (docs/cdn-nginx.conf,
//! docs/cdn-varnish.vcl), 200 concurrent LL-HLS clients (threads doing
//! blocking playlist reloads and part downloads, as players do), and Vela's
//! own request counters: the origin sees a few requests per part and per
//! playlist version, not one per client.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const CLIENTS: usize = 200;

fn route_requests(server: &Server, route: &str) -> f64 {
    let text = server.get_ok(&server.url("/metrics")).text();
    let label = format!("route=\"{route}\"");
    text.lines()
        .filter(|l| l.starts_with("vela_http_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An edge cache process (nginx's master, Varnish's manager).
struct Edge {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Edge {
    fn drop(&mut self) {
        // SIGTERM: the master (manager) stops its workers (child); SIGKILL
        // would orphan them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(origin: std::net::SocketAddr) -> Edge {
    let nginx = require_tool("nginx");
    let dir = TempDir::new("nginx");
    let port = free_port();
    let cache = dir.path.join("cache");
    let temp = dir.path.join("temp");
    for d in [&cache, &temp] {
        std::fs::create_dir_all(d).unwrap();
    }
    // Workers run as an unprivileged user when started as root.
    let _ = Command::new("chmod")
        .args(["-R", "0777"])
        .arg(&dir.path)
        .status();
    let snippet = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cdn-nginx.conf"),
    )
    .unwrap()
    .replace("ORIGIN", &origin.to_string())
    .replace("LISTEN", &format!("127.0.0.1:{port}"))
    .replace("CACHE_DIR", &cache.display().to_string());
    let t = temp.display();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\naccess_log off;\nclient_body_temp_path {t}/body;\nproxy_temp_path {t}/proxy;\n\
         fastcgi_temp_path {t}/fcgi;\nuwsgi_temp_path {t}/uwsgi;\nscgi_temp_path {t}/scgi;\n{snippet}\n}}\n",
        d = dir.path.display()
    );
    let conf_path = dir.path.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(&dir.path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let log = dir.path.join("error.log");
    wait_listening("nginx", child, port, dir, &log, 100)
}

fn start_varnish(origin: std::net::SocketAddr) -> Edge {
    let varnishd = require_tool_with("varnishd", "-V");
    let dir = TempDir::new("varnish");
    let port = free_port();
    let vcl = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cdn-varnish.vcl"),
    )
    .unwrap()
    .replace("ORIGIN_HOST", &origin.ip().to_string())
    .replace("ORIGIN_PORT", &origin.port().to_string());
    let vcl_path = dir.path.join("vela.vcl");
    std::fs::write(&vcl_path, vcl).unwrap();
    let log = dir.path.join("varnishd.log");
    // -F: in the foreground; -j none: no privilege separation (tests may run
    // as root, and the work directory is the test's own); -n: the instance's
    // work directory, apart from a system Varnish.
    let child = Command::new(varnishd)
        .args(["-F", "-j", "none", "-s", "malloc,64m", "-a"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-n")
        .arg(dir.path.join("work"))
        .arg("-f")
        .arg(&vcl_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("varnishd starts");
    wait_listening("varnishd", child, port, dir, &log, 200)
}

/// Waits (`tries` × 100 ms) until the edge started as `child` accepts on
/// `port`; fails with its log when it exits or never listens.
fn wait_listening(
    name: &str,
    mut child: Child,
    port: u16,
    dir: TempDir,
    log: &std::path::Path,
    tries: u32,
) -> Edge {
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    for _ in 0..tries {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Edge {
                child,
                port,
                _dir: dir,
            };
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{name} exited ({st}): {}", log_text());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = log_text();
    // Dropping the edge stops it (SIGTERM, then SIGKILL).
    drop(Edge {
        child,
        port,
        _dir: dir,
    });
    panic!("{name} did not listen: {text}");
}

/// One LL-HLS client: blocking reloads for the next part, then the part,
/// for `run`. Returns (playlist URLs, part URLs) it asked for.
fn ll_hls_client(playlist: &str, run: Duration) -> (Vec<String>, Vec<String>, usize) {
    let started = Instant::now();
    let (mut lists, mut parts, mut errors) = (Vec::new(), Vec::new(), 0);
    let Ok(first) = http_get(playlist) else {
        return (lists, parts, 1);
    };
    let scan = scan_media_playlist(&first.text());
    let (mut msn, mut idx) = (scan.next_msn(), scan.trailing_parts().len() as u64);
    while started.elapsed() < run {
        let url = format!("{playlist}?_HLS_msn={msn}&_HLS_part={idx}");
        let r = match http_get(&url) {
            Ok(r) if r.status == 200 => r,
            _ => {
                errors += 1;
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        lists.push(url);
        let scan = scan_media_playlist(&r.text());
        let Some(part) = scan.parts.iter().find(|p| p.msn == msn && p.index == idx) else {
            // The segment closed at this part: go on with the next segment.
            msn += 1;
            idx = 0;
            continue;
        };
        let part_url = resolve(playlist, &part.uri);
        match http_get(&part_url) {
            Ok(r) if r.status == 200 => parts.push(part_url),
            _ => errors += 1,
        }
        idx += 1;
    }
    (lists, parts, errors)
}

#[test]
fn nginx_in_front_collapses_200_ll_hls_clients() {
    edge_collapses_200_ll_hls_clients("nginx", start_nginx);
}

#[test]
fn varnish_in_front_collapses_200_ll_hls_clients() {
    edge_collapses_200_ll_hls_clients("varnish", start_varnish);
}

fn edge_collapses_200_ll_hls_clients(name: &str, start: fn(std::net::SocketAddr) -> Edge) {
    let ffmpeg = require_tool("ffmpeg");
    let vela = Server::start();
    let mut spec = PublishSpec::new(Some(VideoCodec::H264 { bframes: 0 }), false, 60.0);
    spec.width = 640;
    spec.height = 360;
    let mut publisher = Publisher::spawn(&ffmpeg, &vela.rtmp_url("edge"), &spec, &vela.dir.path);
    vela.poll("the stream", 300, Duration::from_millis(100), || {
        (vela.get("/live/edge/master.m3u8").status == 200).then_some(())
    });
    let cache = start(vela.http);
    let edge = format!("http://127.0.0.1:{}", cache.port);
    let master = http_get(&format!("{edge}/live/edge/master.m3u8")).unwrap();
    assert_eq!(master.status, 200, "{}", master.text());
    let media = master
        .text()
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap()
        .to_string();
    let playlist = resolve(&format!("{edge}/live/edge/master.m3u8"), &media);

    let lists_before = route_requests(&vela, "/live/{stream}/{rendition}/index.m3u8");
    let files_before = route_requests(&vela, "/live/{stream}/{rendition}/{file}");
    let all_lists: Arc<Mutex<Vec<String>>> = Arc::default();
    let all_parts: Arc<Mutex<Vec<String>>> = Arc::default();
    let errors: Arc<Mutex<usize>> = Arc::default();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (playlist, l, p, e) = (
                playlist.clone(),
                all_lists.clone(),
                all_parts.clone(),
                errors.clone(),
            );
            std::thread::spawn(move || {
                let (lists, parts, errs) = ll_hls_client(&playlist, Duration::from_secs(8));
                l.lock().unwrap().extend(lists);
                p.lock().unwrap().extend(parts);
                *e.lock().unwrap() += errs;
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let lists = all_lists.lock().unwrap().clone();
    let parts = all_parts.lock().unwrap().clone();
    let distinct_lists: HashSet<&String> = lists.iter().collect();
    let distinct_parts: HashSet<&String> = parts.iter().collect();
    let origin_lists =
        route_requests(&vela, "/live/{stream}/{rendition}/index.m3u8") - lists_before;
    let origin_files = route_requests(&vela, "/live/{stream}/{rendition}/{file}") - files_before;
    eprintln!(
        "{name}: clients: {} playlist and {} part requests ({} and {} distinct URLs), {} errors; \
         Vela saw {origin_lists} playlist and {origin_files} media requests",
        lists.len(),
        parts.len(),
        distinct_lists.len(),
        distinct_parts.len(),
        errors.lock().unwrap()
    );
    assert!(
        parts.len() >= CLIENTS * 5,
        "the clients got parts: {}",
        parts.len()
    );
    // A few per distinct URL (the non-blocking first loads add one each second).
    assert!(
        origin_lists <= 3.0 * distinct_lists.len() as f64 + 10.0,
        "Vela saw {origin_lists} playlist requests for {} playlist versions",
        distinct_lists.len()
    );
    assert!(
        origin_files <= 3.0 * distinct_parts.len() as f64,
        "Vela saw {origin_files} part requests for {} parts",
        distinct_parts.len()
    );
    publisher.kill_hard();
}
