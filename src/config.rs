//! The server's settings, with their defaults and bounds, in two steps:
//! - [`Config`]: the builder, as given (by `cli` from the flags, or by tests and embedders
//!   with [`Config::new`]); every default comes from the constants below.
//! - [`Settings`]: the same values checked and resolved once, before any thread starts,
//!   with every derived value (worker count, each worker's share of connections and cache,
//!   the site header bytes, the defer-accept seconds) computed here and nowhere else.
//!
//! A value that makes no sense is a [`ConfigError`] naming the flag, one line: the cause
//! and the fix. This module knows nothing of clap and reads no environment.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_PORT: u16 = 8080;
/// Every IPv4 interface.
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
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
/// The largest cached file may take at most this fraction of the cache (1/4): a cache that
/// holds fewer than four files churns on every miss.
pub const CACHE_MAX_FILE_DIVISOR: u64 = 4;
/// Most worker threads.
pub const MAX_THREADS: usize = 1024;
/// Open files a worker may hold beside its connections (held-open large files, its ring,
/// listener and runtime), for the open-file budget checked at start-up.
pub const FILES_PER_WORKER: u64 = 1024;
/// Open files the process needs beside the workers' (stdio, the root, the admin side).
pub const FILES_SLACK: u64 = 64;
/// After SIGTERM, how long fserve keeps accepting (while `/readyz` says 503) before it
/// stops listening: 0, as before; behind a load balancer, longer than its endpoint updates.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::ZERO;

pub use crate::accesslog::client::Cidr;
pub use crate::accesslog::{Format as LogFormat, Sink as LogSink};

/// Compressed variants (`--compress`): the smallest file compressed. Measured on ~1,300
/// small real text files (JS, CSS, JSON, HTML, SVG, Python, Markdown), the saving per
/// response net of the `Content-Encoding` line: 128–256 B files save 16–45 B and a third
/// of them nothing at all with gzip; 256–512 B save 90–210 B; 512–768 B save 270–330 B,
/// every file and every coding gaining. Below 512 B the whole response fits one TCP
/// segment either way, and the three variants' heads a worker holds outweigh the saving.
pub const DEFAULT_COMPRESS_MIN_BYTES: u64 = 512;
/// The largest file compressed: real front-end bundles reach tens of MiB.
pub const DEFAULT_COMPRESS_MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Most `--compress-max-file` may be: the background pool reads a whole file into memory.
pub const MAX_COMPRESS_MAX_FILE_BYTES: u64 = 1024 * 1024 * 1024;
/// Memory for finished variants, for the whole process (every worker shares them).
pub const DEFAULT_COMPRESS_CACHE_BYTES: u64 = 128 * 1024 * 1024;
/// Default levels: the top of each encoder's range (or near it), since each file is
/// compressed once per process, in the background. Brotli 11 is capped lower for large
/// files (see `compress`).
pub const DEFAULT_BROTLI_LEVEL: u32 = 11;
pub const DEFAULT_ZSTD_LEVEL: i32 = 19;
pub const DEFAULT_GZIP_LEVEL: u32 = 9;
/// Most background compression threads (one per four workers, at least one).
pub const MAX_COMPRESS_THREADS: usize = 4;

/// Header fields `--header` may not set: framing and connection management belong to the
/// server (RFC 9112 §6, RFC 9110 §7.6.1), and a second Date or Server field would
/// contradict the server's own. `Host` is a request field.
pub const FORBIDDEN_SITE_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "host",
    "date",
    "server",
    "content-range",
];

/// Which I/O engine to run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// Where the access log goes (`--access-log`); none by default.
    pub access_log: Option<LogSink>,
    /// The access log's line format, and the diagnostics' (`json` makes both JSON).
    pub log_format: LogFormat,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client in the access log.
    pub trusted_proxies: Vec<Cidr>,
    /// The admin listener's address (`/metrics`, `/healthz`, `/readyz`); none by default.
    pub admin: Option<SocketAddr>,
    /// After SIGTERM: keep accepting this long with `/readyz` at 503, then drain.
    pub shutdown_delay: Duration,
    /// Compress text files once, in the background, and serve br/zstd/gzip from memory.
    pub compress: bool,
    /// Files from this size up to `compress_max_file_bytes` are compressed.
    pub compress_min_bytes: u64,
    pub compress_max_file_bytes: u64,
    /// Memory for compressed variants, for the whole process.
    pub compress_cache_bytes: u64,
    /// Brotli quality (0–11), zstd level (1–22), gzip level (1–9).
    pub brotli_level: u32,
    pub zstd_level: i32,
    pub gzip_level: u32,
}

impl Config {
    /// Every default, serving `root`.
    pub fn new(root: impl Into<PathBuf>) -> Config {
        Config {
            root: root.into(),
            bind: DEFAULT_BIND,
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
            access_log: None,
            log_format: LogFormat::Combined,
            trusted_proxies: Vec::new(),
            admin: None,
            shutdown_delay: DEFAULT_SHUTDOWN_DELAY,
            compress: true,
            compress_min_bytes: DEFAULT_COMPRESS_MIN_BYTES,
            compress_max_file_bytes: DEFAULT_COMPRESS_MAX_FILE_BYTES,
            compress_cache_bytes: DEFAULT_COMPRESS_CACHE_BYTES,
            brotli_level: DEFAULT_BROTLI_LEVEL,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            gzip_level: DEFAULT_GZIP_LEVEL,
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

    /// Checks the bounds; the error names the flag and says what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |flag, message: String| Err(ConfigError { flag, message });
        if !(MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            return err(
                "--max-header-bytes",
                format!(
                    "--max-header-bytes {} is out of range; use {MIN_MAX_HEADER_BYTES} to {MAX_MAX_HEADER_BYTES}",
                    self.max_header_bytes
                ),
            );
        }
        if self.threads > MAX_THREADS {
            return err(
                "--threads",
                format!(
                    "--threads {} is too many; use 1 to {MAX_THREADS} (0 = one per CPU)",
                    self.threads
                ),
            );
        }
        if self.max_connections < self.workers() {
            return err(
                "--max-connections",
                format!(
                    "--max-connections {} is below the worker count {}; allow at least one per worker",
                    self.max_connections,
                    self.workers()
                ),
            );
        }
        for (flag, d) in [
            ("--header-timeout", self.header_timeout),
            ("--keepalive-timeout", self.keepalive_timeout),
            ("--send-timeout", self.send_timeout),
        ] {
            if d.is_zero() {
                return err(flag, format!("{flag} must be above zero (for example 10s)"));
            }
        }
        if self.cache_bytes == 0 {
            return err(
                "--cache-size",
                "--cache-size 0 leaves no memory for cached files; give at least 4 times --cache-max-file (default 64MiB)".into(),
            );
        }
        if self.cache_max_file_bytes > self.cache_bytes / CACHE_MAX_FILE_DIVISOR {
            return err(
                "--cache-max-file",
                format!(
                    "--cache-max-file {} is above a quarter of --cache-size {}; lower it to at most {} or raise --cache-size",
                    self.cache_max_file_bytes,
                    self.cache_bytes,
                    self.cache_bytes / CACHE_MAX_FILE_DIVISOR
                ),
            );
        }
        self.validate_compression()?;
        for (name, value) in &self.headers {
            check_site_header(name, value)?;
        }
        // SECURITY: the admin side exposes what the server does; it never shares the
        // public port, so opening one never opens the other.
        if let Some(admin) = self.admin {
            if admin.port() != 0 && admin.port() == self.port {
                return err(
                    "--admin",
                    format!(
                        "--admin {admin}: that is the public port (--port {}); give the admin listener a port of its own (e.g. 127.0.0.1:9090)",
                        self.port
                    ),
                );
            }
        }
        if let Some(LogSink::File(path)) = &self.access_log {
            if path.as_os_str().is_empty() || path.is_dir() {
                return err(
                    "--access-log",
                    format!(
                        "--access-log {}: give a file path (appended to, created if missing) or - for standard output",
                        path.display()
                    ),
                );
            }
        }
        if let Some(cc) = &self.cache_control {
            if cc.bytes().any(is_forbidden_value_byte) {
                return err(
                    "--cache-control",
                    "--cache-control: the value must be one line of visible characters (no control bytes)".into(),
                );
            }
        }
        if let Some(spa) = &self.spa {
            if spa.is_absolute()
                || spa
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return err(
                    "--spa",
                    format!(
                        "--spa {}: give a file inside the root, relative to it (e.g. --spa index.html)",
                        spa.display()
                    ),
                );
            }
        }
        Ok(())
    }

    fn validate_compression(&self) -> Result<(), ConfigError> {
        let err = |flag, message: String| Err(ConfigError { flag, message });
        if self.compress_max_file_bytes > MAX_COMPRESS_MAX_FILE_BYTES {
            return err(
                "--compress-max-file",
                format!(
                    "--compress-max-file {} is above {MAX_COMPRESS_MAX_FILE_BYTES} (1GiB); lower it (default 32MiB)",
                    self.compress_max_file_bytes
                ),
            );
        }
        if self.compress_min_bytes > self.compress_max_file_bytes {
            return err(
                "--compress-min",
                format!(
                    "--compress-min {} is above --compress-max-file {}; lower it (default 512) or raise --compress-max-file",
                    self.compress_min_bytes, self.compress_max_file_bytes
                ),
            );
        }
        if self.compress && self.compress_cache_bytes == 0 {
            return err(
                "--compress-cache-size",
                "--compress-cache-size 0 leaves no memory for compressed files; give some (default 128MiB) or use --compress off".into(),
            );
        }
        if self.brotli_level > 11
            || !(1..=22).contains(&self.zstd_level)
            || !(1..=9).contains(&self.gzip_level)
        {
            return err(
                "--compress-level",
                format!(
                    "--compress-level br={},zstd={},gzip={} is out of range; use br 0-11, zstd 1-22, gzip 1-9",
                    self.brotli_level, self.zstd_level, self.gzip_level
                ),
            );
        }
        Ok(())
    }

    /// Checks every value and computes every derived one, once. `root` is the directory to
    /// serve, already resolved to an absolute path by the caller (which reports a missing
    /// root as its own error); it replaces `self.root`.
    pub fn resolve(mut self, root: PathBuf) -> Result<Settings, ConfigError> {
        self.validate()?;
        self.root = root;
        if let Some(spa) = &self.spa {
            if !self.root.join(spa).is_file() {
                return Err(ConfigError {
                    flag: "--spa",
                    message: format!(
                        "--spa {}: no such file under {}; give a file that exists there, relative to it (e.g. --spa index.html)",
                        spa.display(),
                        self.root.display()
                    ),
                });
            }
        }
        let workers = self.workers();
        let mut site_fields = Vec::new();
        for (name, value) in &self.headers {
            site_fields.extend_from_slice(name.as_bytes());
            site_fields.extend_from_slice(b": ");
            site_fields.extend_from_slice(value.as_bytes());
            site_fields.extend_from_slice(b"\r\n");
        }
        if self.cors {
            site_fields.extend_from_slice(CORS_FIELDS);
        }
        Ok(Settings {
            worker_count: workers,
            max_conns_per_worker: self.max_connections.div_ceil(workers).max(1),
            cache_bytes_per_worker: usize::try_from(self.cache_bytes).unwrap_or(usize::MAX),
            cache_max_file: usize::try_from(self.cache_max_file_bytes).unwrap_or(usize::MAX),
            site_fields,
            defer_accept_secs: u32::try_from(self.header_timeout.as_secs().max(1))
                .unwrap_or(u32::MAX),
            compression: self.compress.then(|| crate::compress::Settings {
                min_bytes: self.compress_min_bytes,
                max_file_bytes: self.compress_max_file_bytes,
                cache_bytes: self.compress_cache_bytes,
                brotli_level: self.brotli_level,
                zstd_level: self.zstd_level,
                gzip_level: self.gzip_level,
                threads: (workers / 4).clamp(1, MAX_COMPRESS_THREADS),
            }),
            open_files_needed: (self.max_connections as u64)
                .saturating_add(FILES_PER_WORKER.saturating_mul(workers as u64))
                .saturating_add(FILES_SLACK),
            cfg: self,
        })
    }
}

/// The CORS fields every response carries with `--cors` (preflight answers add their own).
pub const CORS_FIELDS: &[u8] = b"Access-Control-Allow-Origin: *\r\n\
      Access-Control-Expose-Headers: Content-Length, Content-Range, Accept-Ranges, ETag\r\n";

/// The settings a running server reads: a validated [`Config`] (its fields, through
/// `Deref`, are the flags as given, defaults filled in) plus every value derived from it.
/// Built once by [`Config::resolve`] before any thread starts; read-only afterwards.
#[derive(Clone, Debug)]
pub struct Settings {
    cfg: Config,
    /// Worker threads (`--threads`, or one per CPU this process may use).
    pub worker_count: usize,
    /// Each worker's share of `--max-connections` (at least 1).
    pub max_conns_per_worker: usize,
    /// Each worker's cache budget in bytes (`--cache-size`).
    pub cache_bytes_per_worker: usize,
    /// The largest file held in memory, in bytes (`--cache-max-file`).
    pub cache_max_file: usize,
    /// Field lines every response carries: `--header`s, and CORS with `--cors`.
    pub site_fields: Vec<u8>,
    /// TCP_DEFER_ACCEPT seconds: the header timeout, at least 1.
    pub defer_accept_secs: u32,
    /// The compressor's settings, unless `--compress off`.
    pub compression: Option<crate::compress::Settings>,
    /// Open files the flags may need at once: every connection, what each worker holds
    /// beside them ([`FILES_PER_WORKER`]) and [`FILES_SLACK`].
    pub open_files_needed: u64,
}

impl std::ops::Deref for Settings {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.cfg
    }
}

impl Settings {
    /// The worker count (as [`Config::workers`], resolved once).
    pub fn workers(&self) -> usize {
        self.worker_count
    }
}

/// A setting that makes no sense. Its `Display` is one line: the cause and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag at fault, e.g. `--cache-size`.
    pub flag: &'static str,
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A `--header` field: a token name that the server does not own, and a value of visible
/// characters, spaces and tabs only (RFC 9110 §5.5: no CR, LF, NUL or other control byte).
fn check_site_header(name: &str, value: &str) -> Result<(), ConfigError> {
    let err = |message: String| {
        Err(ConfigError {
            flag: "--header",
            message,
        })
    };
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return err(format!(
            "--header {name:?}: the name must be a token (letters, digits, -)"
        ));
    }
    if FORBIDDEN_SITE_HEADERS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
    {
        return err(format!(
            "--header {name}: fserve sets {name} itself (framing, connection and date fields are the server's); remove this --header"
        ));
    }
    if value.bytes().any(is_forbidden_value_byte) {
        return err(format!(
            "--header {name}: the value has a control byte (CR, LF, NUL…); give one line of visible characters"
        ));
    }
    Ok(())
}

/// Bytes a field value may not hold: controls other than HTAB, and DEL (RFC 9110 §5.5).
fn is_forbidden_value_byte(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// RFC 9110 §5.6.2 tchar.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The compressor's settings with every flag at its default (here, beside the defaults,
/// so that the compressor needs nothing from this module).
impl Default for crate::compress::Settings {
    fn default() -> crate::compress::Settings {
        crate::compress::Settings {
            min_bytes: DEFAULT_COMPRESS_MIN_BYTES,
            max_file_bytes: DEFAULT_COMPRESS_MAX_FILE_BYTES,
            cache_bytes: DEFAULT_COMPRESS_CACHE_BYTES,
            brotli_level: DEFAULT_BROTLI_LEVEL,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            gzip_level: DEFAULT_GZIP_LEVEL,
            threads: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Config)) -> Result<(), ConfigError> {
        let mut c = Config::new(".");
        f(&mut c);
        c.validate()
    }

    #[test]
    fn each_bad_value_names_its_flag() {
        type Edit = Box<dyn FnOnce(&mut Config)>;
        let cases: [(&str, Edit); 16] = [
            (
                "--admin",
                Box::new(|c| c.admin = Some(SocketAddr::from(([127, 0, 0, 1], c.port)))),
            ),
            (
                "--access-log",
                Box::new(|c| c.access_log = Some(LogSink::File(std::env::temp_dir()))),
            ),
            (
                "--compress-min",
                Box::new(|c| c.compress_min_bytes = 1 << 30),
            ),
            (
                "--compress-max-file",
                Box::new(|c| c.compress_max_file_bytes = 2 << 30),
            ),
            (
                "--compress-cache-size",
                Box::new(|c| c.compress_cache_bytes = 0),
            ),
            ("--compress-level", Box::new(|c| c.brotli_level = 12)),
            ("--compress-level", Box::new(|c| c.zstd_level = 0)),
            ("--cache-size", Box::new(|c| c.cache_bytes = 0)),
            (
                "--cache-max-file",
                Box::new(|c| {
                    c.cache_bytes = 1 << 20;
                    c.cache_max_file_bytes = (1 << 18) + 1;
                }),
            ),
            ("--max-header-bytes", Box::new(|c| c.max_header_bytes = 10)),
            ("--threads", Box::new(|c| c.threads = MAX_THREADS + 1)),
            (
                "--send-timeout",
                Box::new(|c| c.send_timeout = Duration::ZERO),
            ),
            (
                "--header",
                Box::new(|c| c.headers = vec![("Transfer-Encoding".into(), "chunked".into())]),
            ),
            (
                "--header",
                Box::new(|c| c.headers = vec![("X-A".into(), "a\rb".into())]),
            ),
            (
                "--header",
                Box::new(|c| c.headers = vec![("X-A".into(), "a\u{1}b".into())]),
            ),
            ("--spa", Box::new(|c| c.spa = Some("../x.html".into()))),
        ];
        for (flag, f) in cases {
            let e = with(f).expect_err(flag);
            assert_eq!(e.flag, flag, "{e}");
            assert!(e.to_string().starts_with(flag), "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_refused_in_any_case() {
        for name in FORBIDDEN_SITE_HEADERS {
            for n in [name.to_string(), name.to_ascii_uppercase()] {
                let e = with(|c| c.headers = vec![(n.clone(), "x".into())]).expect_err(&n);
                assert_eq!(e.flag, "--header");
            }
        }
        with(|c| c.headers = vec![("X-Frame-Options".into(), "DENY\tx".into())]).unwrap();
    }

    #[test]
    fn a_quarter_of_the_cache_is_the_largest_cached_file() {
        with(|c| {
            c.cache_bytes = 1 << 20;
            c.cache_max_file_bytes = 1 << 18;
        })
        .unwrap();
        with(|_| {}).unwrap();
    }

    #[test]
    fn derived_values_are_computed_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "x").unwrap();
        let mut c = Config::new(dir.path());
        c.threads = 3;
        c.max_connections = 10;
        c.cors = true;
        c.headers = vec![("X-A".into(), "1".into())];
        c.spa = Some("index.html".into());
        let s = c.clone().resolve(dir.path().to_path_buf()).unwrap();
        assert_eq!((s.workers(), s.max_conns_per_worker), (3, 4));
        assert!(
            s.site_fields
                .starts_with(b"X-A: 1\r\nAccess-Control-Allow-Origin: *\r\n")
        );
        assert_eq!(s.defer_accept_secs, 10);
        assert_eq!(s.hidden, c.hidden);
        c.spa = Some("missing.html".into());
        let e = c.resolve(dir.path().to_path_buf()).unwrap_err();
        assert_eq!(e.flag, "--spa");
    }
}
