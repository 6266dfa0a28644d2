//! Shared helpers for the integration tests, by concern (each module says what it holds).
//! Everything is re-exported here, so a test module needs only `use super::support::*;`.

mod dates;
mod files;
mod http;
mod multipart;
mod probes;
mod reasons;
mod server;

pub use dates::*;
pub use files::*;
pub use http::*;
pub use multipart::*;
pub use probes::*;
pub use reasons::*;
pub use server::*;

/// The signals the tests send to the real binary (`Signal::TERM`, `Signal::INT`).
pub use rustix::process::Signal;

use std::time::Duration;

/// Read/write timeout on every client socket: a hang fails instead of stalling.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest response head the reader accepts before failing.
const MAX_HEAD: usize = 64 * 1024;
