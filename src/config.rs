//! The server's settings, with their defaults and bounds. Built from the command line by
//! `cli`, or directly by tests and embedders; checked by [`Config::validate`] before use.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Longest request head (request line and header fields); longer is 431.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MIN_MAX_HEADER_BYTES: usize = 1024;
pub const MAX_MAX_HEADER_BYTES: usize = 1024 * 1024;
/// The whole request head must arrive within this (a deadline, not an idle timer).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle persistent connection is closed after this.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// A response that makes no progress for this long is abandoned.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Open connections for the whole server; split evenly over the workers.
pub const DEFAULT_MAX_CONNECTIONS: usize = 65_536;
/// Files at most this large are kept in memory with their head pre-rendered.
pub const DEFAULT_CACHE_MAX_FILE_BYTES: u64 = 128 * 1024;
/// Memory for cached files, per worker.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Which I/O engine to run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Io {
    /// io_uring when the kernel allows it, else epoll (saying why, once).
    #[default]
    Auto,
    /// io_uring or nothing: a refusal is a start-up error.
    Uring,
    /// epoll, even where io_uring works.
    Epoll,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The directory to serve.
    pub root: PathBuf,
    pub bind: IpAddr,
    /// 0 picks a free port (all workers share it).
    pub port: u16,
    /// Worker threads, each with its own ring and listener; 0 means one per available CPU.
    pub threads: usize,
    pub io: Io,
    /// How long in-flight responses may take to finish after SIGINT/SIGTERM.
    pub grace: Duration,
    pub max_header_bytes: usize,
    /// Serve dotfiles too (they are 404 by default, except under /.well-known/).
    pub hidden: bool,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
    pub cache_max_file_bytes: u64,
    pub cache_bytes: u64,
    /// Cache-Control for everything but HTML (which always gets `no-cache`).
    pub cache_control: Option<String>,
    /// Fingerprinted file names (`app.3f9a1c.js`) get a year-long immutable Cache-Control.
    pub immutable: bool,
    /// A file (relative to the root) served with 200 for GET/HEAD of a path that matches no
    /// file, to clients that accept HTML: single-page applications.
    pub spa: Option<PathBuf>,
    /// `/about` serves `about.html` when `/about` does not exist.
    pub pretty_urls: bool,
    /// Directories without index.html are listed (HTML, or JSON on request).
    pub listing: bool,
    /// Extra header fields on every response.
    pub headers: Vec<(String, String)>,
    /// `Access-Control-Allow-Origin: *` on every response, and CORS preflight answers.
    pub cors: bool,
}

impl Config {
    /// Every default, serving `root`.
    pub fn new(root: impl Into<PathBuf>) -> Config {
        Config {
            root: root.into(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_PORT,
            threads: 0,
            io: Io::Auto,
            grace: DEFAULT_GRACE,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            hidden: false,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            cache_max_file_bytes: DEFAULT_CACHE_MAX_FILE_BYTES,
            cache_bytes: DEFAULT_CACHE_BYTES,
            cache_control: None,
            immutable: false,
            spa: None,
            pretty_urls: false,
            listing: false,
            headers: Vec::new(),
            cors: false,
        }
    }

    /// The worker count: `threads`, or the CPUs this process may run on (affinity and cgroup
    /// quota aware).
    pub fn workers(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// Checks the bounds; the error says which setting and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            return Err(format!(
                "--max-header-bytes {} is out of range; use {MIN_MAX_HEADER_BYTES} to {MAX_MAX_HEADER_BYTES}",
                self.max_header_bytes
            ));
        }
        if self.threads > 1024 {
            return Err(format!(
                "--threads {} is too many; use 1 to 1024 (0 = one per CPU)",
                self.threads
            ));
        }
        if self.max_connections < self.workers() {
            return Err(format!(
                "--max-connections {} is below the worker count {}; allow at least one per worker",
                self.max_connections,
                self.workers()
            ));
        }
        for (name, d) in [
            ("--header-timeout", self.header_timeout),
            ("--keepalive-timeout", self.keepalive_timeout),
            ("--send-timeout", self.send_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be above zero (for example 10s)"));
            }
        }
        for (name, value) in &self.headers {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!(
                    "--header {name:?}: the name must be a token (letters, digits, -)"
                ));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!("--header {name}: the value must be one line"));
            }
        }
        if let Some(cc) = &self.cache_control {
            if cc.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err("--cache-control: the value must be one line".into());
            }
        }
        if let Some(spa) = &self.spa {
            if spa.is_absolute()
                || spa
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(format!(
                    "--spa {}: give a file inside the root, relative to it (e.g. --spa index.html)",
                    spa.display()
                ));
            }
        }
        Ok(())
    }
}

/// RFC 9110 §5.6.2 tchar.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
