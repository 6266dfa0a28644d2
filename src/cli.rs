//! The command line: raw flags (clap), turned into a [`Config`]. Parsing only: every
//! default comes from the constants in `config`, and every check of a value's sense
//! happens there ([`Config::resolve`]), not here.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Cidr, Config, Io, LogFormat, LogSink};

/// `--log-format`'s values.
impl ValueEnum for LogFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[LogFormat::Combined, LogFormat::Common, LogFormat::Json]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            LogFormat::Combined => PossibleValue::new("combined")
                .help("nginx's combined: common plus referer and user agent"),
            LogFormat::Common => PossibleValue::new("common").help("the Common Log Format"),
            LogFormat::Json => PossibleValue::new("json")
                .help("one JSON object per line (diagnostics on stderr too)"),
        })
    }
}

/// `--io`'s values (clap stays out of `config`).
impl ValueEnum for Io {
    fn value_variants<'a>() -> &'a [Self] {
        &[Io::Auto, Io::Uring, Io::Epoll]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Io::Auto => PossibleValue::new("auto")
                .help("io_uring when the kernel allows it, else epoll (saying why, once)"),
            Io::Uring => PossibleValue::new("uring")
                .help("io_uring or nothing: a refusal is a start-up error"),
            Io::Epoll => PossibleValue::new("epoll").help("epoll, even where io_uring works"),
        })
    }
}

/// A duration flag's value; shown as it is written (`10s`, `500ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// A size flag's value; shown as it is written (`128KiB`, `64MiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n != 0 && n % (1 << shift) == 0 {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

fn dur(s: &str) -> Result<Dur, String> {
    parse_duration(s).map(Dur)
}

fn size(s: &str) -> Result<Size, String> {
    parse_bytes(s).map(Size)
}

/// A static file server for Linux: HTTP/1.1, one io_uring ring per CPU core.
#[derive(Parser, Debug)]
#[command(name = "fserve", about, long_about = None)]
#[command(version = env!("FSERVE_VERSION"))]
#[command(long_version = include_str!(concat!(env!("OUT_DIR"), "/long-version.txt")))]
#[command(args_conflicts_with_subcommands = true)]
#[command(
    after_help = "`fserve healthcheck [URL]` checks a running server (for container health checks). \
                  A directory literally named `healthcheck` must be written `./healthcheck`."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Directory to serve (a directory named `healthcheck`: write `./healthcheck`)
    #[arg(default_value = ".", env = "FSERVE_ROOT")]
    pub root: PathBuf,

    /// Port to listen on (0 picks a free one)
    #[arg(short, long, default_value_t = config::DEFAULT_PORT, env = "FSERVE_PORT")]
    pub port: u16,

    /// Address to listen on
    #[arg(short, long, default_value_t = config::DEFAULT_BIND, env = "FSERVE_BIND")]
    pub bind: IpAddr,

    /// Worker threads, each with its own io_uring ring [default: CPUs available to this process]
    #[arg(short, long, env = "FSERVE_THREADS")]
    pub threads: Option<usize>,

    /// I/O engine: io_uring where the kernel allows it, else epoll (auto); or force one
    #[arg(long, value_enum, default_value_t = Io::default(), env = "FSERVE_IO")]
    pub io: Io,

    /// Time in-flight responses get to finish after SIGINT/SIGTERM
    #[arg(long, default_value_t = Dur(config::DEFAULT_GRACE), value_parser = dur, env = "FSERVE_GRACE")]
    pub grace: Dur,

    /// Serve dotfiles (hidden with 404 by default, except /.well-known/)
    #[arg(long, env = "FSERVE_HIDDEN")]
    pub hidden: bool,

    /// Longest request head in bytes; longer gets 431
    #[arg(long, default_value_t = config::DEFAULT_MAX_HEADER_BYTES, env = "FSERVE_MAX_HEADER_BYTES")]
    pub max_header_bytes: usize,

    /// Deadline for a whole request head to arrive
    #[arg(long, default_value_t = Dur(config::DEFAULT_HEADER_TIMEOUT), value_parser = dur, env = "FSERVE_HEADER_TIMEOUT")]
    pub header_timeout: Dur,

    /// Idle time after which a persistent connection is closed
    #[arg(long, default_value_t = Dur(config::DEFAULT_KEEPALIVE_TIMEOUT), value_parser = dur, env = "FSERVE_KEEPALIVE_TIMEOUT")]
    pub keepalive_timeout: Dur,

    /// Time a response may go without progress before it is abandoned
    #[arg(long, default_value_t = Dur(config::DEFAULT_SEND_TIMEOUT), value_parser = dur, env = "FSERVE_SEND_TIMEOUT")]
    pub send_timeout: Dur,

    /// Open connections for the whole server (split over workers); beyond it, new ones wait in the kernel's backlog
    #[arg(long, default_value_t = config::DEFAULT_MAX_CONNECTIONS, env = "FSERVE_MAX_CONNECTIONS")]
    pub max_connections: usize,

    /// Files up to this size are served from memory (e.g. 128KiB; at most a quarter of --cache-size)
    #[arg(long, default_value_t = Size(config::DEFAULT_CACHE_MAX_FILE_BYTES), value_parser = size, env = "FSERVE_CACHE_MAX_FILE")]
    pub cache_max_file: Size,

    /// Cache-Control for every file but HTML (HTML always gets `no-cache`), e.g. "public, max-age=3600"
    #[arg(long, value_name = "VALUE", env = "FSERVE_CACHE_CONTROL")]
    pub cache_control: Option<String>,

    /// Mark fingerprinted files (app.3f9a1c.js, index-BdR4xq2J.js) `public, max-age=31536000, immutable`
    #[arg(long, env = "FSERVE_IMMUTABLE")]
    pub immutable: bool,

    /// Serve FILE (relative to ROOT) for paths that match no file, to clients that accept HTML
    #[arg(long, value_name = "FILE", env = "FSERVE_SPA")]
    pub spa: Option<PathBuf>,

    /// Serve /about from about.html when /about does not exist
    #[arg(long, env = "FSERVE_PRETTY_URLS")]
    pub pretty_urls: bool,

    /// List directories that have no index.html (HTML, or JSON for Accept: application/json)
    #[arg(long, env = "FSERVE_LISTING")]
    pub listing: bool,

    /// Add a header field to every response, "Name: value" (repeatable)
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// Allow cross-origin requests: Access-Control-Allow-Origin: * and preflight answers
    #[arg(long, env = "FSERVE_CORS")]
    pub cors: bool,

    /// Memory for cached files, per worker (e.g. 64MiB)
    #[arg(long, default_value_t = Size(config::DEFAULT_CACHE_BYTES), value_parser = size, env = "FSERVE_CACHE_SIZE")]
    pub cache_size: Size,

    /// Write an access log line per request to PATH (appended; reopened on SIGUSR1/SIGHUP), or - for stdout
    #[arg(long, value_name = "PATH|-", env = "FSERVE_ACCESS_LOG")]
    pub access_log: Option<String>,

    /// Access log format; json also makes the diagnostics on stderr JSON
    #[arg(long, value_enum, default_value_t = LogFormat::Combined, env = "FSERVE_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Take the client address from Forwarded / X-Forwarded-For only from peers in CIDR (repeatable)
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = Cidr::parse, env = "FSERVE_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,

    /// Serve /metrics, /healthz and /readyz on ADDR:PORT (never the public port), e.g. 127.0.0.1:9090
    #[arg(long, value_name = "ADDR:PORT", env = "FSERVE_ADMIN")]
    pub admin: Option<std::net::SocketAddr>,

    /// After SIGTERM, keep serving this long with /readyz at 503 before draining (e.g. 5s behind a load balancer)
    #[arg(long, default_value_t = Dur(config::DEFAULT_SHUTDOWN_DELAY), value_parser = dur, env = "FSERVE_SHUTDOWN_DELAY")]
    pub shutdown_delay: Dur,
    /// Compress text files (br, zstd, gzip) once, in the background, and serve them from memory; sidecars (.br, .zst, .gz) always win
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set, env = "FSERVE_COMPRESS")]
    pub compress: bool,

    /// Smallest file compressed
    #[arg(long, default_value_t = Size(config::DEFAULT_COMPRESS_MIN_BYTES), value_parser = size, env = "FSERVE_COMPRESS_MIN")]
    pub compress_min: Size,

    /// Largest file compressed
    #[arg(long, default_value_t = Size(config::DEFAULT_COMPRESS_MAX_FILE_BYTES), value_parser = size, env = "FSERVE_COMPRESS_MAX_FILE")]
    pub compress_max_file: Size,

    /// Memory for compressed files, for the whole process (least recently used go first)
    #[arg(long, default_value_t = Size(config::DEFAULT_COMPRESS_CACHE_BYTES), value_parser = size, env = "FSERVE_COMPRESS_CACHE_SIZE")]
    pub compress_cache_size: Size,

    /// Compression levels, any of br=0-11, zstd=1-22, gzip=1-9 [default: br=11,zstd=19,gzip=9]
    #[arg(long, value_name = "CODING=N,…", value_parser = parse_levels, env = "FSERVE_COMPRESS_LEVEL")]
    pub compress_level: Option<Levels>,
}

/// `--compress-level`'s value: the levels given (the others keep their defaults).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Levels {
    pub br: Option<u32>,
    pub zstd: Option<i32>,
    pub gzip: Option<u32>,
}

/// `br=11,zstd=19,gzip=9`, or any of them.
pub fn parse_levels(s: &str) -> Result<Levels, String> {
    let mut l = Levels::default();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = || format!("`{item}` is not a level (try br=11,zstd=19,gzip=9)");
        let (coding, n) = item.split_once('=').ok_or_else(bad)?;
        let n = n.trim();
        match coding.trim().to_ascii_lowercase().as_str() {
            "br" | "brotli" => l.br = Some(n.parse().map_err(|_| bad())?),
            "zstd" => l.zstd = Some(n.parse().map_err(|_| bad())?),
            "gzip" => l.gzip = Some(n.parse().map_err(|_| bad())?),
            _ => return Err(format!("`{item}`: unknown coding (use br, zstd or gzip)")),
        }
    }
    Ok(l)
}

/// `on` or `off` (also true/false, yes/no, 1/0).
fn on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("`{s}` is neither on nor off")),
    }
}

/// Subcommands; without one, fserve serves ROOT.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum Command {
    /// Check a running server: GET the URL, exit 0 on 2xx/3xx, 1 otherwise (one line on stderr)
    Healthcheck {
        /// URL to check [default: http://127.0.0.1:$FSERVE_PORT/, port 8080 when unset]
        url: Option<String>,
    },
}

impl Args {
    pub fn into_config(self) -> Config {
        let mut c = Config::new(self.root);
        c.port = self.port;
        c.bind = self.bind;
        c.threads = self.threads.unwrap_or(0);
        c.io = self.io;
        c.grace = self.grace.0;
        c.hidden = self.hidden;
        c.max_header_bytes = self.max_header_bytes;
        c.header_timeout = self.header_timeout.0;
        c.keepalive_timeout = self.keepalive_timeout.0;
        c.send_timeout = self.send_timeout.0;
        c.max_connections = self.max_connections;
        c.cache_max_file_bytes = self.cache_max_file.0;
        c.cache_bytes = self.cache_size.0;
        c.cache_control = self.cache_control;
        c.immutable = self.immutable;
        c.spa = self.spa;
        c.pretty_urls = self.pretty_urls;
        c.listing = self.listing;
        c.headers = self.headers;
        c.cors = self.cors;
        c.access_log = self
            .access_log
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(LogSink::parse);
        c.log_format = self.log_format;
        c.trusted_proxies = self.trusted_proxies;
        c.admin = self.admin;
        c.shutdown_delay = self.shutdown_delay.0;
        c.compress = self.compress;
        c.compress_min_bytes = self.compress_min.0;
        c.compress_max_file_bytes = self.compress_max_file.0;
        c.compress_cache_bytes = self.compress_cache_size.0;
        if let Some(l) = self.compress_level {
            c.brotli_level = l.br.unwrap_or(c.brotli_level);
            c.zstd_level = l.zstd.unwrap_or(c.zstd_level);
            c.gzip_level = l.gzip.unwrap_or(c.gzip_level);
        }
        c
    }
}

/// `Name: value` for `--header`.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not a header field (try \"X-Frame-Options: DENY\")"))?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 10s or 500ms)"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("`{s}` has an unknown unit (use ms, s, m or h)")),
    };
    Ok(d)
}

/// `131072`, `128KiB`, `64MiB`, `1GiB` (also `k`, `KB`, `M`, `MB`, …: all powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 128KiB or 64MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("`{s}` has an unknown unit (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("10s", 10_000),
            ("10", 10_000),
            ("500ms", 500),
            ("2m", 120_000),
            ("1h", 3_600_000),
        ];
        for (s, ms) in cases {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for bad in ["", "s", "10x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        let cases = [
            ("131072", 131_072),
            ("128KiB", 131_072),
            ("128k", 131_072),
            ("64MiB", 64 << 20),
            ("1GiB", 1 << 30),
        ];
        for (s, n) in cases {
            assert_eq!(parse_bytes(s), Ok(n), "{s}");
        }
        for bad in ["", "KiB", "12 parsecs", "99999999999999999999GiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn healthcheck_is_a_subcommand_and_serving_still_takes_a_root() {
        let hc = |url: Option<&str>| {
            Some(Command::Healthcheck {
                url: url.map(String::from),
            })
        };
        let cases: [(&[&str], Option<Command>, &str); 5] = [
            (&["fserve"], None, "."),
            (&["fserve", "./public"], None, "./public"),
            (&["fserve", "./healthcheck"], None, "./healthcheck"),
            (&["fserve", "healthcheck"], hc(None), "."),
            (
                &["fserve", "healthcheck", "http://[::1]:9/"],
                hc(Some("http://[::1]:9/")),
                ".",
            ),
        ];
        for (argv, command, root) in cases {
            let args = Args::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert_eq!(args.command, command, "{argv:?}");
            assert_eq!(args.root, PathBuf::from(root), "{argv:?}");
        }
        let args = Args::try_parse_from(["fserve", "-p", "9000", "./public"]).unwrap();
        assert_eq!((args.command, args.port), (None, 9000));
        // After a server flag, a bare `healthcheck` is the directory to serve.
        let args = Args::try_parse_from(["fserve", "-p", "9000", "healthcheck"]).unwrap();
        assert_eq!(args.command, None);
        assert_eq!(args.root, PathBuf::from("healthcheck"));
        assert!(Args::try_parse_from(["fserve", "healthcheck", "a", "b"]).is_err());
    }

    #[test]
    fn compression_flags() {
        let c = Args::try_parse_from(["fserve"]).unwrap().into_config();
        let d = Config::new(".");
        assert!(c.compress);
        assert_eq!(
            (
                c.compress_min_bytes,
                c.compress_max_file_bytes,
                c.compress_cache_bytes
            ),
            (
                d.compress_min_bytes,
                d.compress_max_file_bytes,
                d.compress_cache_bytes
            )
        );
        assert_eq!(
            (c.brotli_level, c.zstd_level, c.gzip_level),
            (d.brotli_level, d.zstd_level, d.gzip_level)
        );
        let c = Args::try_parse_from([
            "fserve",
            "--compress",
            "off",
            "--compress-min",
            "1KiB",
            "--compress-level",
            "zstd=3, br=5",
        ])
        .unwrap()
        .into_config();
        assert!(!c.compress);
        assert_eq!(c.compress_min_bytes, 1024);
        assert_eq!((c.brotli_level, c.zstd_level, c.gzip_level), (5, 3, 9));
        for bad in ["br", "br=x", "lz4=1", "br=-1"] {
            assert!(parse_levels(bad).is_err(), "{bad}");
        }
        assert!(Args::try_parse_from(["fserve", "--compress", "maybe"]).is_err());
    }

    #[test]
    fn shown_defaults_parse_back_to_themselves() {
        for d in [
            Dur(Duration::from_secs(10)),
            Dur(Duration::from_millis(1500)),
        ] {
            assert_eq!(dur(&d.to_string()), Ok(d));
        }
        for n in [
            Size(128 << 10),
            Size(64 << 20),
            Size(1 << 30),
            Size(1000),
            Size(0),
        ] {
            assert_eq!(size(&n.to_string()), Ok(n));
        }
    }

    #[test]
    fn cli_defaults_match_config_defaults() {
        let args = Args::try_parse_from(["fserve"]).unwrap();
        let c = args.into_config();
        let d = Config::new(".");
        assert_eq!(
            (
                c.port,
                c.bind,
                c.threads,
                c.grace,
                c.max_header_bytes,
                c.header_timeout
            ),
            (
                d.port,
                d.bind,
                d.threads,
                d.grace,
                d.max_header_bytes,
                d.header_timeout
            )
        );
        assert_eq!(
            (
                c.keepalive_timeout,
                c.send_timeout,
                c.max_connections,
                c.cache_max_file_bytes,
                c.cache_bytes
            ),
            (
                d.keepalive_timeout,
                d.send_timeout,
                d.max_connections,
                d.cache_max_file_bytes,
                d.cache_bytes
            )
        );
        assert_eq!(
            (
                &c.access_log,
                c.log_format,
                &c.trusted_proxies,
                c.admin,
                c.shutdown_delay
            ),
            (
                &d.access_log,
                d.log_format,
                &d.trusted_proxies,
                d.admin,
                d.shutdown_delay
            )
        );
    }

    #[test]
    fn observability_flags_reach_the_config() {
        let args = Args::try_parse_from([
            "fserve",
            "--access-log",
            "-",
            "--log-format",
            "json",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "192.0.2.1",
            "--admin",
            "127.0.0.1:9090",
            "--shutdown-delay",
            "5s",
        ])
        .unwrap();
        let c = args.into_config();
        assert_eq!(c.access_log, Some(LogSink::Stdout));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.admin, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(c.shutdown_delay, Duration::from_secs(5));
        let c = Args::try_parse_from(["fserve", "--access-log", ""])
            .unwrap()
            .into_config();
        assert_eq!(
            c.access_log, None,
            "an empty path (FSERVE_ACCESS_LOG=) is off"
        );
        assert!(Args::try_parse_from(["fserve", "--trusted-proxy", "10.0.0.0/33"]).is_err());
        assert!(Args::try_parse_from(["fserve", "--log-format", "xml"]).is_err());
    }
}
