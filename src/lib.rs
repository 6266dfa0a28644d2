//! fserve: a static file server for Linux. HTTP/1.1 from one io_uring ring per CPU core.
//!
//! Layers (a layer may use those below it, never those above):
//! - [`server`]: listeners, workers, connections, timeouts, shutdown; maps I/O to statuses.
//! - [`http`]: pure HTTP/1.1 parsing and encoding. [`fs`]: path policy, files, cache.
//! - `engine`: the runtime and the I/O engine a worker runs on: io_uring (the only module
//!   that names tokio-uring or io-uring, and the only one allowed `unsafe` code) or epoll
//!   (the fallback where io_uring is refused). Crate-private: server/ alone uses it.
//!
//! Beside them, [`config`] (settings, resolved once), [`cli`] (the flags) and
//! [`healthcheck`]: the `fserve healthcheck` client (std only, no server code). For running
//! it: `accesslog` (the per-worker log buffers and their writer thread), `metrics` (per-worker
//! counters, rendered for Prometheus), `admin` (the `/metrics`, `/healthz`, `/readyz`
//! listener) and [`diag`] (stderr diagnostics in one format).
//!
//! Public modules are those that the binary, the tests, the benchmarks and the fuzz targets
//! use; everything else is crate-private.

mod accesslog;
mod admin;
pub mod cli;
mod compress;
pub mod config;
pub mod diag;
mod engine;
pub mod fs;
pub mod healthcheck;
pub mod http;
mod metrics;
pub mod server;
pub mod systemd;

pub use config::Config;
pub use server::{Server, StartError};
