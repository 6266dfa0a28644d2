//! The worker's view of time: read once per batch of requests from the coarse clocks (a
//! vDSO read, no syscall), and the Date header formatted at most once a second.

use std::cell::Cell;

use rustix::time::{ClockId, clock_gettime};

use crate::http::HttpDate;

#[derive(Clone, Copy, Debug)]
pub(super) struct Now {
    /// Wall-clock seconds since the Unix epoch, for Date.
    pub unix_secs: i64,
    /// Monotonic milliseconds, for cache revalidation.
    pub mono_ms: u64,
}

impl Now {
    pub(super) fn read() -> Now {
        let wall = clock_gettime(ClockId::RealtimeCoarse);
        let mono = clock_gettime(ClockId::MonotonicCoarse);
        Now {
            unix_secs: wall.tv_sec,
            mono_ms: mono.tv_sec as u64 * 1000 + mono.tv_nsec as u64 / 1_000_000,
        }
    }
}

/// The Date header's value, formatted again only when the second changes.
pub(super) struct DateCache {
    cached: Cell<(i64, HttpDate)>,
}

impl DateCache {
    pub(super) fn new() -> DateCache {
        DateCache {
            cached: Cell::new((0, HttpDate::from_unix(0))),
        }
    }

    pub(super) fn get(&self, now: Now) -> HttpDate {
        let (secs, date) = self.cached.get();
        if secs == now.unix_secs {
            return date;
        }
        let date = HttpDate::from_unix(now.unix_secs);
        self.cached.set((now.unix_secs, date));
        date
    }
}
