//! Admission control of one listener: a cap on open connections in total, a
//! cap per client address, and a budget for connections that have not yet
//! proved useful (authenticated, published, or sent a first complete request).
//!
//! [`ConnectionLimiter::admit`] is called right after `accept`; it either
//! returns a [`ConnectionGuard`] (RAII: dropping it gives the slots back) or
//! a [`Refused`] reason, which the caller turns into the cheapest possible
//! answer (close, or a canned `503` with `Retry-After`). The guard carries a
//! [`PreAuth`] slot of the budget until [`ConnectionGuard::authenticated`] is
//! called, so thousands of sockets that never say anything useful can only
//! take the budget, never the whole listener.
//!
//! Addresses: IPv4 addresses count one by one; IPv6 ones by their /64 prefix
//! (one host commonly owns a whole /64). IPv4-mapped IPv6 counts as IPv4.
//!
//! Refusals are counted in `vela_connections_refused_total{listener,reason}`
//! and logged by a [`RefusalLog`]: one line when an incident starts, then at
//! most one line per [`RefusalLog::INTERVAL`] with the count since the last
//! line, never one line per connection.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics;

/// The admission limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Open connections in total.
    pub max_connections: usize,
    /// Open connections from one client address (IPv6: one /64).
    pub per_address: usize,
    /// Open connections that have not authenticated yet (see [`PreAuth`]).
    pub pre_auth: usize,
}

/// Why a connection was refused; `as_str` is its metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// The listener is at [`AdmissionLimits::max_connections`].
    Total,
    /// The client address is at [`AdmissionLimits::per_address`].
    PerAddress,
    /// The budget of unauthenticated connections is spent.
    PreAuth,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::PerAddress => "per_address",
            Refused::PreAuth => "pre_auth",
        }
    }
}

/// The address key a client is counted under.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

struct Shared {
    listener: &'static str,
    limits: AdmissionLimits,
    open: AtomicUsize,
    pre_auth: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// Admission control of one listener; cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct ConnectionLimiter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ConnectionLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimiter")
            .field("listener", &self.shared.listener)
            .field("limits", &self.shared.limits)
            .field("open", &self.open())
            .finish()
    }
}

impl ConnectionLimiter {
    /// `listener` names the listener in metrics and logs (`http`, `rtmp`, ...).
    pub fn new(listener: &'static str, limits: AdmissionLimits) -> Self {
        let limits = AdmissionLimits {
            max_connections: limits.max_connections.max(1),
            per_address: limits.per_address.max(1),
            pre_auth: limits.pre_auth.max(1),
        };
        ConnectionLimiter {
            shared: Arc::new(Shared {
                listener,
                limits,
                open: AtomicUsize::new(0),
                pre_auth: AtomicUsize::new(0),
                per_address: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn listener(&self) -> &'static str {
        self.shared.listener
    }

    pub fn limits(&self) -> AdmissionLimits {
        self.shared.limits
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Open connections that have not authenticated yet.
    pub fn pre_auth(&self) -> usize {
        self.shared.pre_auth.load(Ordering::Relaxed)
    }

    /// Admits a connection from `ip`, or says why not. Counted in metrics
    /// either way; the caller logs refusals through a [`RefusalLog`].
    pub fn admit(&self, ip: IpAddr) -> Result<ConnectionGuard, Refused> {
        let s = &self.shared;
        let refuse = |r: Refused| {
            metrics::REFUSED
                .with_label_values(&[s.listener, r.as_str()])
                .inc();
            Err(r)
        };
        if !try_take(&s.open, s.limits.max_connections) {
            return refuse(Refused::Total);
        }
        if !try_take(&s.pre_auth, s.limits.pre_auth) {
            s.open.fetch_sub(1, Ordering::Relaxed);
            return refuse(Refused::PreAuth);
        }
        let key = address_key(ip);
        {
            let mut map = s.per_address.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(key).or_insert(0);
            if *n >= s.limits.per_address {
                drop(map);
                s.open.fetch_sub(1, Ordering::Relaxed);
                s.pre_auth.fetch_sub(1, Ordering::Relaxed);
                return refuse(Refused::PerAddress);
            }
            *n += 1;
        }
        metrics::OPEN.with_label_values(&[s.listener]).inc();
        metrics::PRE_AUTH.with_label_values(&[s.listener]).inc();
        Ok(ConnectionGuard {
            shared: self.shared.clone(),
            key,
            pre_auth: Some(PreAuth {
                shared: self.shared.clone(),
            }),
        })
    }

    /// Waits (polling, bounded by the caller) until no connection is open.
    pub async fn wait_idle(&self) {
        while self.open() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Takes one unit of `counter` unless it is at `cap`.
fn try_take(counter: &AtomicUsize, cap: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
            (n < cap).then_some(n + 1)
        })
        .is_ok()
}

/// One admitted connection; dropping it gives its slots back.
pub struct ConnectionGuard {
    shared: Arc<Shared>,
    key: IpAddr,
    pre_auth: Option<PreAuth>,
}

impl std::fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionGuard")
            .field("listener", &self.shared.listener)
            .field("address", &self.key)
            .field("authenticated", &self.pre_auth.is_none())
            .finish()
    }
}

impl ConnectionGuard {
    /// The connection proved useful (published, authenticated, sent a
    /// request): it no longer counts against the pre-auth budget.
    pub fn authenticated(&mut self) {
        self.pre_auth = None;
    }

    /// Moves the pre-auth slot out, for code that releases it elsewhere
    /// (e.g. inside an HTTP service); `None` once authenticated.
    pub fn take_pre_auth(&mut self) -> Option<PreAuth> {
        self.pre_auth.take()
    }

    pub fn is_authenticated(&self) -> bool {
        self.pre_auth.is_none()
    }

    /// The client's address (what admission counts by).
    pub fn address(&self) -> IpAddr {
        self.key
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.pre_auth = None;
        let s = &self.shared;
        {
            let mut map = s.per_address.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.key);
                }
            }
        }
        s.open.fetch_sub(1, Ordering::Relaxed);
        metrics::OPEN.with_label_values(&[s.listener]).dec();
    }
}

/// One slot of the pre-auth budget; dropping it gives the slot back.
pub struct PreAuth {
    shared: Arc<Shared>,
}

impl Drop for PreAuth {
    fn drop(&mut self) {
        self.shared.pre_auth.fetch_sub(1, Ordering::Relaxed);
        metrics::PRE_AUTH
            .with_label_values(&[self.shared.listener])
            .dec();
    }
}

/// Logs refusals (or any repeated event) once per incident with a count.
///
/// The first event after a quiet [`RefusalLog::INTERVAL`] is logged at once;
/// later ones are counted and summed into at most one line per interval.
/// (A count that is still pending when the incident stops is reported with
/// the next incident's first line.)
#[derive(Debug)]
pub struct RefusalLog {
    what: &'static str,
    state: Mutex<LogState>,
}

#[derive(Debug, Default)]
struct LogState {
    last_line: Option<Instant>,
    pending: u64,
}

impl RefusalLog {
    pub const INTERVAL: Duration = Duration::from_secs(10);

    /// `what` names the listener or loop in the log lines.
    pub fn new(what: &'static str) -> Self {
        RefusalLog {
            what,
            state: Mutex::new(LogState::default()),
        }
    }

    /// Records one event; logs a warning if a line is due.
    pub fn record(&self, reason: &str, detail: &dyn std::fmt::Display) {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.pending += 1;
        let due = st
            .last_line
            .is_none_or(|t| now.duration_since(t) >= Self::INTERVAL);
        if due {
            let count = std::mem::take(&mut st.pending);
            st.last_line = Some(now);
            drop(st);
            tracing::warn!(
                listener = self.what,
                reason,
                count,
                "refusing connections ({detail}); {count} refused since the last report, next report in {} s at the earliest",
                Self::INTERVAL.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn total_per_address_and_pre_auth_caps() {
        let l = ConnectionLimiter::new(
            "test",
            AdmissionLimits {
                max_connections: 4,
                per_address: 2,
                pre_auth: 3,
            },
        );
        let mut a1 = l.admit(ip("10.0.0.1")).unwrap();
        let a2 = l.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(l.admit(ip("10.0.0.1")).unwrap_err(), Refused::PerAddress);
        let b1 = l.admit(ip("10.0.0.2")).unwrap();
        // Three unauthenticated: the budget is spent.
        assert_eq!(l.admit(ip("10.0.0.3")).unwrap_err(), Refused::PreAuth);
        a1.authenticated();
        assert_eq!(l.pre_auth(), 2);
        let c1 = l.admit(ip("10.0.0.3")).unwrap();
        assert_eq!(l.open(), 4);
        assert_eq!(l.admit(ip("10.0.0.4")).unwrap_err(), Refused::Total);
        drop((a2, b1, c1));
        assert_eq!((l.open(), l.pre_auth()), (1, 0));
        drop(a1);
        assert_eq!(l.open(), 0);
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        let l = ConnectionLimiter::new(
            "test6",
            AdmissionLimits {
                max_connections: 10,
                per_address: 1,
                pre_auth: 10,
            },
        );
        let _g = l.admit(ip("2001:db8::1")).unwrap();
        assert_eq!(l.admit(ip("2001:db8::2")).unwrap_err(), Refused::PerAddress);
        assert!(l.admit(ip("2001:db8:0:1::2")).is_ok());
    }

    #[test]
    fn pre_auth_slot_can_be_released_elsewhere() {
        let l = ConnectionLimiter::new(
            "test-take",
            AdmissionLimits {
                max_connections: 10,
                per_address: 10,
                pre_auth: 1,
            },
        );
        let mut g = l.admit(ip("10.0.0.1")).unwrap();
        let slot = g.take_pre_auth().unwrap();
        assert!(g.is_authenticated());
        assert_eq!(l.pre_auth(), 1);
        drop(slot);
        assert_eq!(l.pre_auth(), 0);
        assert!(l.admit(ip("10.0.0.1")).is_ok());
    }
}
