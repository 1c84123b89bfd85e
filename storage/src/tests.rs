//! The local backend, on a temporary directory.

use super::*;

async fn local() -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(Backend::Local {
        root: dir.path().join("data"),
    })
    .await
    .unwrap();
    (dir, s)
}

fn k(s: &str) -> Key {
    Key::parse(s).unwrap()
}

#[tokio::test]
async fn put_get_head_delete() {
    let (_dir, s) = local().await;
    assert!(s.is_local());
    assert!(s.describe().starts_with("local /"), "{}", s.describe());
    let key = k("vod/a1/init.mp4");
    assert!(s.head(&key).await.unwrap().is_none());
    let e = s.get(&key).await.unwrap_err();
    assert_eq!(e.kind(), "not_found");
    assert!(e.to_string().contains("vod/a1/init.mp4"), "{e}");
    assert!(!e.is_retryable());

    s.put(&key, Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(s.get(&key).await.unwrap(), &b"hello"[..]);
    let path = s.local_path(&key).unwrap();
    assert!(path.ends_with("data/vod/a1/init.mp4"), "{path:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    let info = s.head(&key).await.unwrap().unwrap();
    assert_eq!((info.key.clone(), info.size), (key.clone(), 5));
    assert!(info.last_modified.is_some() && info.e_tag.is_some());

    // Overwrite replaces, and leaves no temporary file.
    s.put(&key, Bytes::from_static(b"bye")).await.unwrap();
    assert_eq!(s.get(&key).await.unwrap(), &b"bye"[..]);
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("init.mp4")]);

    s.delete(&key).await.unwrap();
    s.delete(&key).await.unwrap(); // missing: fine
    assert!(s.head(&key).await.unwrap().is_none());
    // Empty directories are pruned, the root stays.
    assert!(!path.parent().unwrap().exists());
    assert!(s.local_path(&k("x")).unwrap().parent().unwrap().exists());
}

#[tokio::test]
async fn put_is_atomic_for_concurrent_readers() {
    let (_dir, s) = local().await;
    let key = k("live/seg");
    let a = Bytes::from(vec![b'a'; 1 << 20]);
    let b = Bytes::from(vec![b'b'; 1 << 20]);
    s.put(&key, a.clone()).await.unwrap();
    let writer = {
        let (s, key, a, b) = (s.clone(), key.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            for i in 0..40 {
                s.put(&key, if i % 2 == 0 { b.clone() } else { a.clone() })
                    .await
                    .unwrap();
            }
        })
    };
    for _ in 0..40 {
        let got = s.get(&key).await.unwrap();
        assert!(got == a || got == b, "torn read");
    }
    writer.await.unwrap();
}

#[tokio::test]
async fn open_removes_stale_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/b/.vela-tmp-0123"), b"half").unwrap();
    std::fs::write(root.join("a/b/obj"), b"whole").unwrap();
    let s = Storage::open(Backend::Local { root: root.clone() })
        .await
        .unwrap();
    assert!(!root.join("a/b/.vela-tmp-0123").exists());
    assert_eq!(s.get(&k("a/b/obj")).await.unwrap(), &b"whole"[..]);
    // Never listed either.
    std::fs::write(root.join("a/b/.vela-tmp-4567"), b"half").unwrap();
    let keys: Vec<_> = s
        .list(&k("a"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec![k("a/b/obj")]);
}

#[tokio::test]
async fn put_file_get_range_get_to_file() {
    let (dir, s) = local().await;
    let src = dir.path().join("src.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let key = k("rec/r1/file.mp4");
    assert_eq!(s.put_file(&key, &src).await.unwrap(), data.len() as u64);
    assert_eq!(s.get(&key).await.unwrap(), &data[..]);

    assert_eq!(s.get_range(&key, 10..20).await.unwrap(), &data[10..20]);
    assert_eq!(
        s.get_range(&key, 2_999_990..3_000_000).await.unwrap(),
        &data[2_999_990..]
    );
    assert!(s.get_range(&key, 5..5).await.unwrap().is_empty());
    // Past the end: cut at the end.
    assert_eq!(
        s.get_range(&key, 2_999_999..4_000_000).await.unwrap(),
        &data[2_999_999..]
    );
    assert_eq!(
        s.get_range(&k("rec/none"), 0..1).await.unwrap_err().kind(),
        "not_found"
    );

    let out = dir.path().join("out/copy.mp4");
    assert_eq!(s.get_to_file(&key, &out).await.unwrap(), data.len() as u64);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // A failed download leaves the old file and no temporary file.
    let e = s.get_to_file(&k("rec/none"), &out).await.unwrap_err();
    assert_eq!(e.kind(), "not_found");
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 1);

    let e = s
        .put_file(&k("rec/x"), &dir.path().join("missing"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "not_found");
}

#[tokio::test]
async fn list_usage_delete_prefix() {
    let (_dir, s) = local().await;
    for (key, n) in [
        ("vod/a/1", 10),
        ("vod/a/2", 20),
        ("vod/a/sub/3", 30),
        ("vod/ab/4", 40),
        ("vod/b/5", 50),
    ] {
        s.put(&k(key), Bytes::from(vec![0; n])).await.unwrap();
    }
    let list = s.list(&k("vod/a")).await.unwrap();
    let keys: Vec<_> = list.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["vod/a/1", "vod/a/2", "vod/a/sub/3"]);
    assert_eq!(list[2].size, 30);
    assert_eq!(s.usage(&k("vod/a")).await.unwrap(), 60);
    assert_eq!(s.usage(&k("vod")).await.unwrap(), 150);
    assert_eq!(s.usage(&k("nothing")).await.unwrap(), 0);
    assert!(s.list(&k("nothing")).await.unwrap().is_empty());

    assert_eq!(s.delete_prefix(&k("vod/a")).await.unwrap(), 3);
    assert_eq!(s.delete_prefix(&k("vod/a")).await.unwrap(), 0);
    assert!(!s.local_path(&k("vod/a")).unwrap().exists());
    let keys: Vec<_> = s
        .list(&k("vod"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect();
    assert_eq!(keys, ["vod/ab/4", "vod/b/5"]);
}

#[tokio::test]
async fn errors_have_kinds() {
    let e = StorageError::Unavailable {
        key: "a".into(),
        backend: "s3 x".into(),
        message: "down".into(),
    };
    assert_eq!((e.kind(), e.is_retryable()), ("unavailable", true));
    let full = StorageError::from_io("a", "local /x", std::io::Error::from_raw_os_error(28));
    assert_eq!(full.kind(), "full");
    let quota = StorageError::from_io("a", "local /x", std::io::Error::from_raw_os_error(122));
    assert_eq!(quota.kind(), "full");
    let denied = StorageError::from_io("a", "local /x", std::io::Error::from_raw_os_error(13));
    assert_eq!(denied.kind(), "denied");
    assert_eq!(Key::parse("..").unwrap_err().kind(), "invalid_key");
}

#[test]
fn s3_config_debug_hides_credentials() {
    let c = S3Config {
        access_key_id: Some("AKIDEXAMPLE".into()),
        secret_access_key: Some("SECRETEXAMPLE".into()),
        ..S3Config::default()
    };
    let d = format!("{c:?}");
    assert!(
        !d.contains("SECRETEXAMPLE") && !d.contains("AKIDEXAMPLE"),
        "{d}"
    );
    assert_eq!(c.region, "us-east-1");
    assert_eq!(c.max_retries, 5);
    assert!(!c.virtual_hosted);
}
