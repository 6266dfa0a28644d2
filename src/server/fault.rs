//! Faults the unit tests inject, to prove what a panic does where no input can cause one.
//! Compiled into test builds only.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(super) enum Fault {
    None = 0,
    /// A request for [`PANIC_PATH`] panics inside its connection's task.
    PanicInConnection = 1,
    /// The next accepted connection panics the worker's accept loop.
    PanicInAcceptLoop = 2,
}

pub(super) const PANIC_PATH: &str = "/injected-panic";

static ARMED: AtomicU8 = AtomicU8::new(Fault::None as u8);

pub(super) fn arm(f: Fault) {
    ARMED.store(f as u8, Ordering::SeqCst);
}

pub(super) fn armed(f: Fault) -> bool {
    ARMED.load(Ordering::SeqCst) == f as u8
}
