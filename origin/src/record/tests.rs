//! The recorder driver against a real hub and real files, with an in-memory
//! catalog: pieces cut at keyframes, every frame in exactly one piece, the
//! finished files complete MP4s; a stream that does not record; a piece whose
//! files cannot be created; recovery of a piece left on disk.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use vela_media::{AudioCodec, CodecConfig, Frame, Track, VideoCodec};

use super::*;

#[derive(Default)]
struct Catalog {
    records: bool,
    begun: Mutex<Vec<(String, u32)>>,
    /// entry -> (samples, file length) of its finished MP4.
    done: Mutex<HashMap<String, (usize, u64)>>,
    failed: Mutex<Vec<String>>,
    changed: tokio::sync::Notify,
}

impl RecordingCatalog for Catalog {
    fn begin<'a>(&'a self, stream: &'a str, piece: u32) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            if !self.records {
                return None;
            }
            let id = format!("0_{stream}{piece}");
            self.begun.lock().unwrap().push((id.clone(), piece));
            Some(id)
        })
    }

    fn complete<'a>(
        &'a self,
        entry: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<(), CompleteError>> {
        Box::pin(async move {
            let data = std::fs::read(file).unwrap();
            let head = &data[..data.len().min(64)];
            assert!(
                vela_vod::record::is_finished_mp4(head, data.len() as u64),
                "{entry}: not a finished MP4"
            );
            let index = vela_vod::MediaIndex::open(
                &std::fs::File::open(file).unwrap(),
                &vela_vod::IndexOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{entry}: {e}"));
            let samples: usize = index.tracks().map(|t| t.sample_count as usize).sum();
            self.done
                .lock()
                .unwrap()
                .insert(entry.to_string(), (samples, data.len() as u64));
            std::fs::remove_file(file).unwrap();
            self.changed.notify_waiters();
            Ok(())
        })
    }

    fn fail<'a>(&'a self, entry: &'a str, _reason: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.failed.lock().unwrap().push(entry.to_string());
            self.changed.notify_waiters();
        })
    }
}

/// The avcC of an x264 640x360 High profile stream.
fn avcc() -> Bytes {
    let sps: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
    ];
    let pps: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    let mut rec = vec![1, 0x64, 0x00, 0x1e, 0xff, 0xe1];
    rec.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    rec.extend_from_slice(sps);
    rec.push(1);
    rec.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    rec.extend_from_slice(pps);
    Bytes::from(rec)
}

fn tracks() -> TrackSet {
    Arc::new(vec![
        Track {
            id: 1,
            timescale: 1000,
            config: CodecConfig::Video {
                codec: VideoCodec::H264,
                width: 640,
                height: 360,
                frame_rate: Some(25.0),
                record: avcc(),
            },
            bitrate: None,
        },
        Track {
            id: 2,
            timescale: 1000,
            config: CodecConfig::Audio {
                codec: AudioCodec::Aac,
                sample_rate: 48000,
                channels: 2,
                specific_config: Bytes::from_static(&[0x11, 0x90]),
            },
            bitrate: None,
        },
    ])
}

/// `seconds` of 25 fps video (a keyframe every second) and AAC-like audio.
fn publish(p: &vela_media::hub::Publisher, seconds: u32) -> usize {
    p.send(MediaEvent::Tracks(tracks()));
    let mut frames = 0;
    for i in 0..seconds * 25 {
        let t = i64::from(i) * 40;
        p.send(MediaEvent::Frame(Frame {
            track_id: 1,
            dts: t,
            cts_offset: 0,
            keyframe: i % 25 == 0,
            data: Bytes::from(vec![0, 0, 0, 3, 0x65, 0x88, (i % 251) as u8]),
        }));
        p.send(MediaEvent::Frame(Frame {
            track_id: 2,
            dts: t + 5,
            cts_offset: 0,
            keyframe: true,
            data: Bytes::from_static(&[0x21, 0x10, 0x04]),
        }));
        frames += 2;
    }
    frames
}

/// A hub with a recorder in `dir/recordings`, pieces of 10 s.
fn recorder(dir: &Path, records: bool) -> (StreamHub, Arc<Catalog>, Recordings) {
    let hub = StreamHub::new(1 << 16, Duration::from_secs(5));
    let catalog = Arc::new(Catalog {
        records,
        ..Default::default()
    });
    let rec = Recordings::attach(
        &hub,
        catalog.clone(),
        RecordingConfig {
            dir: dir.join("recordings"),
            piece: Duration::from_secs(10),
        },
    );
    (hub, catalog, rec)
}

async fn until(catalog: &Catalog, mut ready: impl FnMut(&Catalog) -> bool) {
    for _ in 0..2000 {
        let notified = catalog.changed.notified();
        if ready(catalog) {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
    }
    panic!("the recorder never got there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_is_recorded_in_pieces_with_every_frame_once() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, catalog, rec) = recorder(dir.path(), true);
    let p = hub.publish("cam").unwrap();
    let sent = publish(&p, 25);
    p.finish();
    until(&catalog, |c| c.done.lock().unwrap().len() == 3).await;
    assert!(rec.wait_idle(Duration::from_secs(30)).await);
    let done = catalog.done.lock().unwrap().clone();
    let total: usize = done.values().map(|(n, _)| n).sum();
    assert_eq!(total, sent, "every frame in exactly one piece: {done:?}");
    let begun = catalog.begun.lock().unwrap().clone();
    assert_eq!(begun.iter().map(|b| b.1).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(catalog.failed.lock().unwrap().is_empty());
    // The working directories are gone.
    let left = std::fs::read_dir(dir.path().join("recordings"))
        .unwrap()
        .count();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_does_not_record_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, catalog, rec) = recorder(dir.path(), false);
    let p = hub.publish("quiet").unwrap();
    publish(&p, 2);
    p.finish();
    assert!(rec.wait_idle(Duration::from_secs(30)).await);
    assert!(catalog.done.lock().unwrap().is_empty());
    assert!(!dir.path().join("recordings").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piece_that_cannot_be_written_fails_and_costs_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the recordings directory should be: nothing can be created.
    std::fs::write(dir.path().join("recordings"), b"in the way").unwrap();
    let (hub, catalog, rec) = recorder(dir.path(), true);
    let p = hub.publish("disk").unwrap();
    publish(&p, 3);
    p.finish();
    until(&catalog, |c| !c.failed.lock().unwrap().is_empty()).await;
    assert!(rec.wait_idle(Duration::from_secs(30)).await);
    assert!(catalog.done.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piece_left_on_disk_is_recovered_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = dir.path().join("recordings");
    // What a killed server leaves: the growing files of a piece, the last
    // sample's journal record torn.
    let piece = recordings.join("0_left1.0");
    let (mut writer, first) = RecordingWriter::start(&tracks()).unwrap();
    let mut media = first.media.to_vec();
    let mut journal = first.journal.to_vec();
    let mut samples = 0;
    for i in 0..50u32 {
        let e = MediaEvent::Frame(Frame {
            track_id: 1,
            dts: i64::from(i) * 40,
            cts_offset: 0,
            keyframe: i % 25 == 0,
            data: Bytes::from(vec![0, 0, 0, 2, 0x65, i as u8]),
        });
        if let Push::Appended(a) = writer.push(&e).unwrap() {
            media.extend_from_slice(&a.media);
            journal.extend_from_slice(&a.journal);
            samples += 1;
        }
    }
    journal.truncate(journal.len() - 3);
    std::fs::create_dir_all(&piece).unwrap();
    std::fs::write(piece.join(file::MEDIA), &media).unwrap();
    std::fs::write(piece.join(file::JOURNAL), &journal).unwrap();

    let (_hub, catalog, rec) = recorder(dir.path(), true);
    assert_eq!(rec.recover().await, 1);
    let done = catalog.done.lock().unwrap().clone();
    assert_eq!(
        done.get("0_left1").map(|d| d.0),
        Some(samples - 1),
        "{done:?}"
    );
    assert!(!piece.exists());
}
