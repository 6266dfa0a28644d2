//! Faults the unit tests inject, to prove what a panic does where no input can cause one,
//! and to hold a worker still inside a race window too narrow to hit by timing alone.
//! Compiled into test builds only.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(super) enum Fault {
    None = 0,
    /// A request for [`PANIC_PATH`] panics inside its connection's task.
    PanicInConnection = 1,
    /// The next accepted connection panics the worker's accept loop.
    PanicInAcceptLoop = 2,
    /// A worker told to stop while its accept is pending holds its thread ([`stall`])
    /// before it cancels that accept, so that a connection made meanwhile races the cancel.
    StallStoppingAccept = 3,
}

pub(super) const PANIC_PATH: &str = "/injected-panic";

/// The longest a [`stall`] holds its thread when nobody calls [`release`].
const STALL_LIMIT: Duration = Duration::from_secs(5);
/// How often a stalled thread, or one waiting for a stall, looks again.
const STALL_POLL: Duration = Duration::from_millis(1);

static ARMED: AtomicU8 = AtomicU8::new(Fault::None as u8);
static STALLED: AtomicBool = AtomicBool::new(false);
static RELEASED: AtomicBool = AtomicBool::new(false);

pub(super) fn arm(f: Fault) {
    STALLED.store(false, Ordering::SeqCst);
    RELEASED.store(false, Ordering::SeqCst);
    ARMED.store(f as u8, Ordering::SeqCst);
}

pub(super) fn armed(f: Fault) -> bool {
    ARMED.load(Ordering::SeqCst) == f as u8
}

/// Blocks the calling (worker) thread until [`release`], or for at most [`STALL_LIMIT`].
pub(super) fn stall() {
    STALLED.store(true, Ordering::SeqCst);
    let until = Instant::now() + STALL_LIMIT;
    while !RELEASED.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(STALL_POLL);
    }
}

/// Waits until a thread is in [`stall`], for at most `limit`; returns whether one is.
pub(super) fn wait_stalled(limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while !STALLED.load(Ordering::SeqCst) {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(STALL_POLL);
    }
    true
}

/// Lets a stalled thread go on.
pub(super) fn release() {
    RELEASED.store(true, Ordering::SeqCst);
}
