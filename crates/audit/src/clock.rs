//! The source of time. Every timestamp Confidant writes (audit entries,
//! records' `lastUpdated`, sessions, alerts) comes from a [`Clock`] that is
//! injected, so that tests control it. Reading the operating system's clock
//! anywhere else is refused by clippy (`disallowed-methods` in clippy.toml).

/// The source of time. Injected, so that tests control it.
pub trait Clock: Send + Sync {
    /// Unix time in milliseconds.
    fn now_millis(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "the one place the operating system's clock is read")]
    fn now_millis(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}
