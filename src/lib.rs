//! fserve: a static file server for Linux. HTTP/1.1 from one io_uring ring per CPU core.
//!
//! Layers (a layer may use those below it, never those above):
//! - [`server`]: listeners, workers, connections, timeouts, shutdown; maps I/O to statuses.
//! - [`http`]: pure HTTP/1.1 parsing and encoding. [`fs`]: path policy, files, cache.
//! - [`engine`]: the I/O engine a worker runs on: [`uring`] (io_uring, the only module that
//!   names tokio-uring or io-uring) or [`epoll`] (the fallback where io_uring is refused).
//!
//! Beside them, [`healthcheck`]: the `fserve healthcheck` client (std only, no server code).

mod accesslog;
mod admin;
pub mod cli;
pub mod config;
pub mod diag;
pub mod engine;
pub mod epoll;
pub mod fs;
pub mod healthcheck;
pub mod http;
mod metrics;
pub mod server;
pub mod uring;

pub use config::Config;
pub use server::{Server, StartError};
