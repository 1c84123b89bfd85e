//! One upstream response shared by every request that wants it (request
//! collapsing): the first request starts the fetch, later ones attach to it,
//! and each reads the head and then every body chunk from the start, as the
//! chunks arrive (a chunked LL-DASH segment or a blocking playlist reload
//! reaches all its readers as it reaches the node).

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use tokio::sync::watch;

use super::PullError;

/// Status and headers of an upstream response.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

#[derive(Default)]
struct State {
    head: Option<Result<Head, PullError>>,
    chunks: Vec<Bytes>,
    bytes: usize,
    /// `Some(true)`: the body is complete; `Some(false)`: it broke off.
    end: Option<bool>,
}

/// A response being fetched (or fetched), shared by its readers.
pub struct Flight {
    state: Mutex<State>,
    /// Bumped at every change of `state`.
    signal: watch::Sender<u64>,
}

impl Flight {
    pub fn new() -> Arc<Flight> {
        Arc::new(Flight {
            state: Mutex::new(State::default()),
            signal: watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn set_head(&self, head: Result<Head, PullError>) {
        let mut s = self.lock();
        if s.head.is_none() {
            s.head = Some(head);
        }
        drop(s);
        self.changed();
    }

    /// Appends a body chunk; false when the body has grown past `max` bytes.
    pub fn push(&self, chunk: Bytes, max: usize) -> bool {
        let mut s = self.lock();
        s.bytes += chunk.len();
        if s.bytes > max {
            return false;
        }
        s.chunks.push(chunk);
        drop(s);
        self.changed();
        true
    }

    pub fn finish(&self, complete: bool) {
        let mut s = self.lock();
        if s.head.is_none() {
            s.head = Some(Err(PullError::Unavailable));
        }
        s.end.get_or_insert(complete);
        drop(s);
        self.changed();
    }

    /// The whole body when it is complete (for the media cache).
    pub fn complete_body(&self) -> Option<(Head, Bytes)> {
        let s = self.lock();
        let head = s.head.as_ref()?.as_ref().ok()?.clone();
        if s.end != Some(true) {
            return None;
        }
        let mut body = bytes::BytesMut::with_capacity(s.bytes);
        for c in &s.chunks {
            body.extend_from_slice(c);
        }
        Some((head, body.freeze()))
    }

    /// Waits for the head.
    pub async fn head(&self) -> Result<Head, PullError> {
        let mut rx = self.signal.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(h) = &self.lock().head {
                return h.clone();
            }
            if rx.changed().await.is_err() {
                return Err(PullError::Unavailable);
            }
        }
    }

    /// The body as a stream of chunks from the first, following the fetch.
    pub fn body(
        self: Arc<Self>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let rx = self.signal.subscribe();
        futures_util::stream::unfold((self, rx, 0usize), |(f, mut rx, idx)| async move {
            if idx == usize::MAX {
                return None; // after an error
            }
            loop {
                rx.borrow_and_update();
                {
                    let s = f.lock();
                    if let Some(c) = s.chunks.get(idx) {
                        let c = c.clone();
                        drop(s);
                        return Some((Ok(c), (f, rx, idx + 1)));
                    }
                    match s.end {
                        Some(true) => return None,
                        Some(false) => {
                            drop(s);
                            let e = std::io::Error::other("upstream response broke off");
                            return Some((Err(e), (f, rx, usize::MAX)));
                        }
                        None => {}
                    }
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn readers_that_join_late_get_the_whole_body() {
        let f = Flight::new();
        let early = tokio::spawn(f.clone().body().collect::<Vec<_>>());
        f.set_head(Ok(Head {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        }));
        assert!(f.push(Bytes::from_static(b"ab"), 100));
        let late = f.clone().body();
        assert!(f.push(Bytes::from_static(b"cd"), 100));
        f.finish(true);
        let join = |v: Vec<Result<Bytes, std::io::Error>>| {
            v.into_iter()
                .map(|c| c.unwrap())
                .fold(Vec::new(), |mut a, c| {
                    a.extend_from_slice(&c);
                    a
                })
        };
        assert_eq!(join(early.await.unwrap()), b"abcd");
        assert_eq!(join(late.collect().await), b"abcd");
        assert_eq!(f.head().await.unwrap().status, StatusCode::OK);
        assert_eq!(&f.complete_body().unwrap().1[..], b"abcd");
        assert!(!f.push(Bytes::from(vec![0u8; 200]), 100), "over the cap");
    }

    #[tokio::test]
    async fn a_broken_body_ends_its_readers_with_an_error() {
        let f = Flight::new();
        f.set_head(Ok(Head {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        }));
        f.push(Bytes::from_static(b"ab"), 100);
        f.finish(false);
        let items: Vec<_> = f.clone().body().collect().await;
        assert!(items.last().unwrap().is_err());
        assert!(f.complete_body().is_none());
    }
}
