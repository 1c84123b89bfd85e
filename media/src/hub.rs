//! The stream hub: one live channel per stream name, fanned out to consumers.
//!
//! A publisher owns the sending side of its stream's channel; consumers each
//! hold a `tokio::sync::broadcast` receiver. Events are cloned per consumer,
//! and cloning a [`Frame`](crate::Frame) clones a `Bytes` handle, never the
//! payload. The channel is bounded: a consumer that falls behind by more than
//! its capacity gets `RecvError::Lagged` and must resynchronise (for a
//! packager, at the next keyframe), so a slow consumer never stalls the
//! publisher or the other consumers.
//!
//! One publisher per stream name at a time. A publisher that finishes cleanly
//! ends the stream; one that vanishes (socket error, timeout) leaves the
//! stream *interrupted* for a grace period, during which a new publisher on the
//! same name continues it after a [`MediaEvent::Discontinuity`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::MediaEvent;

/// Events buffered per consumer before it is considered lagging: about 14 s
/// of a 30 fps video + AAC stream.
pub const DEFAULT_CAPACITY: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("stream {0:?} already has a publisher")]
    AlreadyPublishing(String),
}

/// What a consumer factory is told when a stream starts.
pub struct StreamStart {
    pub name: String,
    pub events: broadcast::Receiver<MediaEvent>,
}

type OnStart = Box<dyn Fn(StreamStart) + Send + Sync>;

struct Channel {
    sender: broadcast::Sender<MediaEvent>,
    /// Bumped by every publish, so a stale grace timer knows it lost.
    generation: u64,
    publishing: bool,
}

struct Inner {
    streams: HashMap<String, Channel>,
    on_start: Vec<OnStart>,
}

/// The registry of live streams. Cheap to clone.
#[derive(Clone)]
pub struct StreamHub {
    inner: Arc<Mutex<Inner>>,
    capacity: usize,
    reconnect_grace: Duration,
}

impl StreamHub {
    pub fn new(capacity: usize, reconnect_grace: Duration) -> Self {
        StreamHub {
            inner: Arc::new(Mutex::new(Inner {
                streams: HashMap::new(),
                on_start: Vec::new(),
            })),
            capacity: capacity.max(16),
            reconnect_grace,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every critical section is a single insert/update), so recover.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a consumer factory, called (synchronously, under the hub's
    /// lock: keep it short, e.g. spawn a task) for each stream that starts,
    /// with a receiver subscribed before the first event is sent.
    pub fn on_stream_start(&self, f: impl Fn(StreamStart) + Send + Sync + 'static) {
        self.lock().on_start.push(Box::new(f));
    }

    /// Claims `name` for a new publisher. Continues an interrupted stream of
    /// the same name (sending a discontinuity) or starts a new one.
    pub fn publish(&self, name: &str) -> Result<Publisher, PublishError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(ch) = inner.streams.get_mut(name) {
            if ch.publishing {
                return Err(PublishError::AlreadyPublishing(name.to_string()));
            }
            ch.publishing = true;
            ch.generation += 1;
            let _ = ch.sender.send(MediaEvent::Discontinuity);
            return Ok(Publisher {
                hub: self.clone(),
                name: name.to_string(),
                sender: ch.sender.clone(),
                generation: ch.generation,
                finished: false,
            });
        }
        let (sender, _) = broadcast::channel(self.capacity);
        for f in &inner.on_start {
            f(StreamStart {
                name: name.to_string(),
                events: sender.subscribe(),
            });
        }
        inner.streams.insert(
            name.to_string(),
            Channel {
                sender: sender.clone(),
                generation: 0,
                publishing: true,
            },
        );
        Ok(Publisher {
            hub: self.clone(),
            name: name.to_string(),
            sender,
            generation: 0,
            finished: false,
        })
    }

    /// A new receiver on a running stream (late-joining consumers, e.g. a
    /// thumbnailer); `None` when the stream is not live.
    pub fn subscribe(&self, name: &str) -> Option<broadcast::Receiver<MediaEvent>> {
        self.lock().streams.get(name).map(|c| c.sender.subscribe())
    }

    /// Names of the streams that currently have a publisher.
    pub fn publishing(&self) -> Vec<String> {
        let inner = self.lock();
        let mut names: Vec<String> = inner
            .streams
            .iter()
            .filter(|(_, c)| c.publishing)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    pub fn is_publishing(&self, name: &str) -> bool {
        self.lock().streams.get(name).is_some_and(|c| c.publishing)
    }

    fn release(&self, name: &str, generation: u64, clean: bool) {
        let mut inner = self.lock();
        let Some(ch) = inner.streams.get_mut(name) else {
            return;
        };
        if ch.generation != generation {
            return;
        }
        ch.publishing = false;
        if clean || self.reconnect_grace.is_zero() {
            let _ = ch.sender.send(MediaEvent::End);
            inner.streams.remove(name);
            return;
        }
        drop(inner);
        // Interrupted: wait for a reconnect before ending the stream.
        let hub = self.clone();
        let name = name.to_string();
        let grace = self.reconnect_grace;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(grace).await;
                    hub.end_if_idle(&name, generation);
                });
            }
            Err(_) => self.end_if_idle(&name, generation),
        }
    }

    fn end_if_idle(&self, name: &str, generation: u64) {
        let mut inner = self.lock();
        if let Some(ch) = inner.streams.get(name) {
            if ch.generation == generation && !ch.publishing {
                tracing::info!(stream = name, "publisher did not come back; stream ended");
                let _ = ch.sender.send(MediaEvent::End);
                inner.streams.remove(name);
            }
        }
    }
}

/// The sending side of one publish. Dropping it without [`Publisher::finish`]
/// marks the stream interrupted.
pub struct Publisher {
    hub: StreamHub,
    name: String,
    sender: broadcast::Sender<MediaEvent>,
    generation: u64,
    finished: bool,
}

impl Publisher {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends one event to every consumer; never waits.
    pub fn send(&self, event: MediaEvent) {
        // No receivers is fine: nobody is consuming right now.
        let _ = self.sender.send(event);
    }

    /// A clean end of publishing (RTMP deleteStream/FCUnpublish, WHIP DELETE).
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.hub.release(&self.name, self.generation, self.finished);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frame;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn frame(dts: i64) -> MediaEvent {
        MediaEvent::Frame(Frame {
            track_id: 1,
            dts,
            cts_offset: 0,
            keyframe: true,
            data: Bytes::from_static(b"x"),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn second_publisher_is_refused_and_clean_finish_ends() {
        let hub = StreamHub::new(64, Duration::from_secs(5));
        let starts = Arc::new(AtomicUsize::new(0));
        let s = starts.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        hub.on_stream_start(move |st| {
            s.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(st.events);
        });
        let p = hub.publish("show").unwrap();
        assert_eq!(
            hub.publish("show").err(),
            Some(PublishError::AlreadyPublishing("show".into()))
        );
        let mut events = rx.recv().await.unwrap();
        p.send(frame(0));
        p.finish();
        assert!(matches!(events.recv().await.unwrap(), MediaEvent::Frame(_)));
        assert!(matches!(events.recv().await.unwrap(), MediaEvent::End));
        assert!(!hub.is_publishing("show"));
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn reconnect_within_grace_continues_with_discontinuity() {
        let hub = StreamHub::new(64, Duration::from_secs(5));
        let p = hub.publish("show").unwrap();
        let mut events = hub.subscribe("show").unwrap();
        drop(p); // vanished, not finished
        tokio::time::sleep(Duration::from_secs(2)).await;
        let p2 = hub.publish("show").unwrap();
        assert!(matches!(
            events.recv().await.unwrap(),
            MediaEvent::Discontinuity
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            hub.is_publishing("show"),
            "stale grace timer must not end the new publish"
        );
        p2.finish();
        assert!(matches!(events.recv().await.unwrap(), MediaEvent::End));
    }

    #[tokio::test(start_paused = true)]
    async fn vanished_publisher_ends_after_grace() {
        let hub = StreamHub::new(64, Duration::from_secs(5));
        let p = hub.publish("show").unwrap();
        let mut events = hub.subscribe("show").unwrap();
        drop(p);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(matches!(events.recv().await.unwrap(), MediaEvent::End));
        assert!(hub.subscribe("show").is_none());
    }

    #[tokio::test]
    async fn slow_consumer_lags_without_stalling_publisher() {
        let hub = StreamHub::new(16, Duration::ZERO);
        let p = hub.publish("show").unwrap();
        let mut slow = hub.subscribe("show").unwrap();
        for i in 0..100 {
            p.send(frame(i)); // never blocks
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}
