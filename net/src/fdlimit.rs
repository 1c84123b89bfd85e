//! Raising the soft `RLIMIT_NOFILE` to the hard limit at start-up.
//!
//! A public server holds one descriptor per connection; the common default
//! soft limit (1024) is far below what the connection limits allow.

/// The descriptor limits after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimits {
    /// Soft limit before the raise.
    pub before: u64,
    /// Soft limit now (what the process may open).
    pub soft: u64,
    /// Hard limit (`None`: unlimited).
    pub hard: Option<u64>,
}

/// Raises the soft limit of open files to the hard limit (capped at
/// 1,048,576 when the hard limit is unlimited) and reports the result.
#[cfg(unix)]
pub fn raise_nofile_limit() -> std::io::Result<FdLimits> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let before = cur.current.unwrap_or(u64::MAX);
    let target = cur.maximum.unwrap_or(1 << 20);
    if cur.current.is_some_and(|c| c < target) {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: cur.maximum,
            },
        )
        .map_err(std::io::Error::from)?;
    }
    let now = getrlimit(Resource::Nofile);
    Ok(FdLimits {
        before,
        soft: now.current.unwrap_or(u64::MAX),
        hard: now.maximum,
    })
}

#[cfg(not(unix))]
pub fn raise_nofile_limit() -> std::io::Result<FdLimits> {
    Err(std::io::Error::other("not supported on this platform"))
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn raise_is_idempotent_and_reaches_the_hard_limit() {
        let a = super::raise_nofile_limit().unwrap();
        let b = super::raise_nofile_limit().unwrap();
        assert_eq!(a.soft, b.soft);
        assert_eq!(b.before, b.soft);
        if let Some(h) = a.hard {
            assert_eq!(a.soft, h);
        }
    }
}
