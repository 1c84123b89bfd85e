//! vela-storage against a real S3 server: SeaweedFS, started by
//! scripts/s3-test-server (scripts/setup installs it). Skipped, with a
//! message, only when `weed` is not installed and VELA_REQUIRE_S3 is unset.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vela_storage::{Backend, Key, S3Config, Storage};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/s3-test-server")
}

struct Server {
    endpoint: String,
    bucket: String,
    access_key: String,
    secret_key: String,
    dir: PathBuf,
}

impl Server {
    /// Starts (or restarts, with `dir`) the server; it dies with this process.
    fn start(dir: Option<&Path>) -> Server {
        let mut cmd = Command::new("bash");
        cmd.arg(script()).arg("start");
        if let Some(dir) = dir {
            cmd.arg("--dir").arg(dir);
        }
        cmd.arg("--owner-pid").arg(std::process::id().to_string());
        let out = cmd.output().expect("run scripts/s3-test-server");
        assert!(
            out.status.success(),
            "s3-test-server start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 5, "unexpected output: {line:?}");
        Server {
            endpoint: f[0].into(),
            bucket: f[1].into(),
            access_key: f[2].into(),
            secret_key: f[3].into(),
            dir: f[4].into(),
        }
    }

    fn stop(&self) {
        let st = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn config(&self) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            bucket: self.bucket.clone(),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
            request_timeout: Duration::from_secs(10),
            max_retries: 3,
            ..S3Config::default()
        }
    }
}

/// Removes the server and its data when the test ends, passed or not.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("remove")
            .arg(&self.0)
            .status();
    }
}

fn weed_installed() -> bool {
    Command::new("bash")
        .arg(script())
        .arg("which")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn k(s: &str) -> Key {
    Key::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaweedfs() {
    if !weed_installed() {
        if std::env::var_os("VELA_REQUIRE_S3").is_some() {
            panic!("VELA_REQUIRE_S3 is set but weed is not installed (run scripts/setup)");
        }
        println!(
            "skipping the S3 tests: weed (SeaweedFS) is not installed; scripts/setup installs it"
        );
        return;
    }
    let server = Server::start(None);
    let _cleanup = Cleanup(server.dir.clone());
    let s = Storage::open(Backend::S3(server.config())).await.unwrap();
    assert!(!s.is_local());
    assert_eq!(s.local_path(&k("a")), None);
    assert_eq!(s.describe(), format!("s3 {}/vela", server.endpoint));
    assert!(!s.describe().contains(&server.secret_key));

    // put / get / head / delete.
    let key = k("t/small/hello.txt");
    assert!(s.head(&key).await.unwrap().is_none());
    assert_eq!(s.get(&key).await.unwrap_err().kind(), "not_found");
    s.put(&key, Bytes::from_static(b"hello s3")).await.unwrap();
    assert_eq!(s.get(&key).await.unwrap(), &b"hello s3"[..]);
    let info = s.head(&key).await.unwrap().unwrap();
    assert_eq!(info.size, 8);
    assert!(info.last_modified.is_some());
    assert_eq!(s.get_range(&key, 6..8).await.unwrap(), &b"s3"[..]);
    s.put(&key, Bytes::from_static(b"replaced")).await.unwrap();
    assert_eq!(s.get(&key).await.unwrap(), &b"replaced"[..]);
    s.delete(&key).await.unwrap();
    s.delete(&key).await.unwrap();
    assert!(s.head(&key).await.unwrap().is_none());

    // A 40 MiB file: multipart (3 parts of 16 MiB), read back whole and in ranges.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("big.bin");
    let data: Vec<u8> = (0..40u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let big = k("t/big/rec.mp4");
    let t = Instant::now();
    assert_eq!(s.put_file(&big, &src).await.unwrap(), data.len() as u64);
    println!("put_file 40 MiB: {:?}", t.elapsed());
    let info = s.head(&big).await.unwrap().unwrap();
    assert_eq!(info.size, data.len() as u64);
    // A multipart ETag ends in "-PARTS".
    assert!(
        info.e_tag.as_deref().unwrap_or("").contains("-3"),
        "{info:?}"
    );
    let out = tmp.path().join("down/rec.mp4");
    assert_eq!(s.get_to_file(&big, &out).await.unwrap(), data.len() as u64);
    assert!(
        std::fs::read(&out).unwrap() == data,
        "downloaded file differs"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join("down")).unwrap().count(),
        1
    );
    for r in [
        0..1,
        1000..5000,
        16 * 1024 * 1024 - 10..16 * 1024 * 1024 + 10,
        40 * 1024 * 1024 - 7..40 * 1024 * 1024,
    ] {
        let got = s.get_range(&big, r.clone()).await.unwrap();
        assert!(
            got[..] == data[r.start as usize..r.end as usize],
            "range {r:?}"
        );
    }

    // list / usage / delete_prefix.
    for (name, n) in [
        ("t/l/a/1", 100),
        ("t/l/a/2", 200),
        ("t/l/a/x/3", 300),
        ("t/l/ab/4", 400),
    ] {
        s.put(&k(name), Bytes::from(vec![7; n])).await.unwrap();
    }
    let keys: Vec<String> = s
        .list(&k("t/l/a"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect();
    assert_eq!(keys, ["t/l/a/1", "t/l/a/2", "t/l/a/x/3"]);
    assert_eq!(s.usage(&k("t/l/a")).await.unwrap(), 600);
    assert_eq!(s.usage(&k("t/l")).await.unwrap(), 1000);
    assert_eq!(s.delete_prefix(&k("t/l/a")).await.unwrap(), 3);
    assert!(s.list(&k("t/l/a")).await.unwrap().is_empty());
    assert_eq!(s.usage(&k("t/l")).await.unwrap(), 400);

    // Wrong credentials: denied, not retried.
    let mut bad = server.config();
    bad.secret_access_key = Some("wrong-secret".into());
    let denied = Storage::open(Backend::S3(bad)).await.unwrap();
    let e = denied.get(&big).await.unwrap_err();
    assert_eq!(e.kind(), "denied", "{e}");
    assert!(!e.is_retryable());
    assert!(!e.to_string().contains("wrong-secret"), "{e}");
    let mut bad = server.config();
    bad.access_key_id = Some("NOSUCHKEY".into());
    let denied = Storage::open(Backend::S3(bad)).await.unwrap();
    let e = denied
        .put(&k("t/denied"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "denied", "{e}");

    // The server goes down: unavailable, quickly with a short timeout.
    server.stop();
    let mut quick = server.config();
    quick.request_timeout = Duration::from_secs(2);
    quick.max_retries = 1;
    let quick = Storage::open(Backend::S3(quick)).await.unwrap();
    let t = Instant::now();
    let e = quick.get(&big).await.unwrap_err();
    assert_eq!(e.kind(), "unavailable", "{e}");
    assert!(e.is_retryable());
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(
        quick
            .put(&k("t/down"), Bytes::from_static(b"x"))
            .await
            .unwrap_err()
            .kind(),
        "unavailable"
    );
    assert!(!e.to_string().contains(&server.secret_key));

    // Back up on the same port: the old handle works again, data intact.
    let again = Server::start(Some(&server.dir));
    assert_eq!(again.endpoint, server.endpoint);
    assert_eq!(s.head(&big).await.unwrap().unwrap().size, data.len() as u64);
    assert!(s.get(&big).await.unwrap()[..] == data[..]);
    assert_eq!(s.usage(&k("t/l")).await.unwrap(), 400);
    s.put(&k("t/after"), Bytes::from_static(b"up"))
        .await
        .unwrap();
    assert_eq!(quick.get(&k("t/after")).await.unwrap(), &b"up"[..]);
}
