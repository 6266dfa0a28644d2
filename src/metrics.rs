//! What the server counts, for `/metrics` on the admin listener.
//!
//! Each worker writes only its own [`WorkerMetrics`] block: one writer per block, so a count
//! is a relaxed load and store (no locked instruction), and blocks are 128-byte aligned so no
//! two workers ever write the same cache line. A scrape, on the admin thread, reads every
//! block, sums them and renders the Prometheus text exposition format (0.0.4). Every label
//! set is bounded: status codes outside the ones fserve sends fold into `other`, methods into
//! GET, HEAD, OPTIONS and `other`.
//!
//! This module never does I/O on a worker's behalf and never allocates on the request path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The status codes fserve answers with; any other folds into `other`.
const STATUSES: [u16; 17] = [
    200, 204, 206, 301, 304, 400, 403, 404, 405, 408, 412, 414, 416, 431, 500, 501, 505,
];
const STATUS_LABELS: usize = STATUSES.len() + 1;

/// The request method, as a bounded label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MethodLabel {
    Get,
    Head,
    Options,
    Other,
}

const METHODS: [(MethodLabel, &str); 4] = [
    (MethodLabel::Get, "GET"),
    (MethodLabel::Head, "HEAD"),
    (MethodLabel::Options, "OPTIONS"),
    (MethodLabel::Other, "other"),
];

/// Upper bounds of the request-duration histogram, in microseconds (50 µs to 10 s).
const DURATION_BUCKETS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client closed or reset it.
    Client,
    /// Idle past `--keepalive-timeout`.
    KeepaliveTimeout,
    /// A request head did not arrive within `--header-timeout`.
    HeaderTimeout,
    /// A response made no progress for `--send-timeout`.
    SendTimeout,
    /// The server closed it after an answer that ends the connection (a request over a
    /// limit, a malformed request, `Connection: close`, HTTP/1.0).
    Limit,
    /// An I/O error other than the client leaving.
    Error,
    /// Shutdown closed it.
    Shutdown,
}

const REASONS: [(CloseReason, &str); 7] = [
    (CloseReason::Client, "client"),
    (CloseReason::KeepaliveTimeout, "keepalive_timeout"),
    (CloseReason::HeaderTimeout, "header_timeout"),
    (CloseReason::SendTimeout, "send_timeout"),
    (CloseReason::Limit, "limit"),
    (CloseReason::Error, "error"),
    (CloseReason::Shutdown, "shutdown"),
];

/// A count with one writer (its worker's thread): relaxed load and store, no lock prefix.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub(crate) fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One worker's counts. Aligned to 128 bytes (two cache lines: the adjacent-line prefetcher
/// pairs them) so that two workers' blocks never share a line.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct WorkerMetrics {
    requests: [[Counter; STATUS_LABELS]; METHODS.len()],
    body_bytes: Counter,
    /// Per bucket, not cumulative (the scrape accumulates); the last one is +Inf.
    duration: [Counter; DURATION_BUCKETS_US.len() + 1],
    duration_sum_us: Counter,
    pub(crate) accepted: Counter,
    closed: [Counter; REASONS.len()],
    pub(crate) cache_entries: Counter,
    pub(crate) cache_bytes: Counter,
    pub(crate) cache_hits: Counter,
    pub(crate) cache_misses: Counter,
    pub(crate) cache_evictions: Counter,
    pub(crate) open_files: Counter,
    pub(crate) log_lines: Counter,
    pub(crate) log_dropped: Counter,
}

impl WorkerMetrics {
    /// Counts one answered request: its method, status, body bytes sent and the time from
    /// the first byte of its head to the last byte handed to the kernel.
    #[inline]
    pub(crate) fn request(&self, method: MethodLabel, status: u16, body: u64, took: Duration) {
        let s = STATUSES
            .iter()
            .position(|&c| c == status)
            .unwrap_or(STATUSES.len());
        self.requests[method as usize][s].add(1);
        self.body_bytes.add(body);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let b = DURATION_BUCKETS_US.partition_point(|&le| le < us);
        self.duration[b].add(1);
        self.duration_sum_us.add(us);
    }

    #[inline]
    pub(crate) fn closed(&self, why: CloseReason) {
        self.closed[why as usize].add(1);
    }
}

/// Everything `/metrics` reports: the workers' blocks and the process's constants.
pub(crate) struct Metrics {
    workers: Box<[WorkerMetrics]>,
    engine: &'static str,
    start_unix_secs: f64,
    /// Set once every worker accepts; cleared when a shutdown begins (`/readyz`).
    ready: AtomicBool,
}

impl Metrics {
    pub(crate) fn new(workers: usize, engine: &'static str) -> Metrics {
        let start_unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Metrics {
            workers: (0..workers).map(|_| WorkerMetrics::default()).collect(),
            engine,
            start_unix_secs,
            ready: AtomicBool::new(false),
        }
    }

    /// Worker `id`'s block (its thread is the only writer).
    pub(crate) fn worker(&self, id: usize) -> &WorkerMetrics {
        &self.workers[id]
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Relaxed);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    fn sum(&self, f: impl Fn(&WorkerMetrics) -> &Counter) -> u64 {
        self.workers
            .iter()
            .fold(0u64, |acc, w| acc.wrapping_add(f(w).get()))
    }

    /// Renders the text exposition format into `out`.
    pub(crate) fn render(&self, out: &mut String, process: &Process) {
        let m = self;
        family(
            out,
            "fserve_http_requests_total",
            "counter",
            "Requests answered, by method and status code.",
        );
        for (mi, (_, method)) in METHODS.iter().enumerate() {
            for si in 0..STATUS_LABELS {
                let n = m.sum(|w| &w.requests[mi][si]);
                if n == 0 {
                    continue;
                }
                let _ = match STATUSES.get(si) {
                    Some(code) => writeln!(
                        out,
                        "fserve_http_requests_total{{method=\"{method}\",code=\"{code}\"}} {n}"
                    ),
                    None => writeln!(
                        out,
                        "fserve_http_requests_total{{method=\"{method}\",code=\"other\"}} {n}"
                    ),
                };
            }
        }
        scalar(
            out,
            "fserve_http_response_body_bytes_total",
            "counter",
            "Response body bytes handed to the kernel.",
            m.sum(|w| &w.body_bytes),
        );
        family(
            out,
            "fserve_http_request_duration_seconds",
            "histogram",
            "Time from the first byte of a request head to the last byte of its answer handed to the kernel.",
        );
        let mut cumulative = 0u64;
        for (i, le) in DURATION_BUCKETS_US.iter().enumerate() {
            cumulative += m.sum(|w| &w.duration[i]);
            let _ = writeln!(
                out,
                "fserve_http_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
                seconds(*le)
            );
        }
        cumulative += m.sum(|w| &w.duration[DURATION_BUCKETS_US.len()]);
        let _ = writeln!(
            out,
            "fserve_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "fserve_http_request_duration_seconds_sum {}",
            seconds(m.sum(|w| &w.duration_sum_us))
        );
        let _ = writeln!(
            out,
            "fserve_http_request_duration_seconds_count {cumulative}"
        );
        let accepted = m.sum(|w| &w.accepted);
        let closed: u64 = (0..REASONS.len()).map(|i| m.sum(|w| &w.closed[i])).sum();
        scalar(
            out,
            "fserve_connections_open",
            "gauge",
            "Connections open now.",
            accepted.saturating_sub(closed),
        );
        scalar(
            out,
            "fserve_connections_accepted_total",
            "counter",
            "Connections accepted.",
            accepted,
        );
        family(
            out,
            "fserve_connections_closed_total",
            "counter",
            "Connections closed, by reason.",
        );
        for (i, (_, reason)) in REASONS.iter().enumerate() {
            let n = m.sum(|w| &w.closed[i]);
            let _ = writeln!(
                out,
                "fserve_connections_closed_total{{reason=\"{reason}\"}} {n}"
            );
        }
        for (name, kind, help, f) in [
            (
                "fserve_cache_entries",
                "gauge",
                "Files in the workers' caches.",
                (|w: &WorkerMetrics| &w.cache_entries) as fn(&WorkerMetrics) -> &Counter,
            ),
            (
                "fserve_cache_bytes",
                "gauge",
                "Bytes the workers' caches account for.",
                |w| &w.cache_bytes,
            ),
            (
                "fserve_cache_hits_total",
                "counter",
                "Lookups answered from a cache.",
                |w| &w.cache_hits,
            ),
            (
                "fserve_cache_misses_total",
                "counter",
                "Lookups that went to the file system.",
                |w| &w.cache_misses,
            ),
            (
                "fserve_cache_evictions_total",
                "counter",
                "Entries evicted to stay within the cache budget.",
                |w| &w.cache_evictions,
            ),
            (
                "fserve_cache_open_files",
                "gauge",
                "Large files held open by the caches.",
                |w| &w.open_files,
            ),
            (
                "fserve_access_log_lines_total",
                "counter",
                "Access log lines written.",
                |w| &w.log_lines,
            ),
            (
                "fserve_access_log_dropped_lines_total",
                "counter",
                "Access log lines dropped because the log could not keep up.",
                |w| &w.log_dropped,
            ),
        ] {
            scalar(out, name, kind, help, m.sum(f));
        }
        family(
            out,
            "fserve_memory_file_huge_page_runs_total",
            "counter",
            "2 MiB runs of the workers' memory files the kernel was asked to make huge pages, \
             by result: made, or refused (left in 4 KiB pages).",
        );
        let (made, refused) = crate::engine::huge_page_runs();
        for (result, n) in [("made", made), ("refused", refused)] {
            let _ = writeln!(
                out,
                "fserve_memory_file_huge_page_runs_total{{result=\"{result}\"}} {n}"
            );
        }
        family(
            out,
            "fserve_build_info",
            "gauge",
            "Always 1; the labels say which build and engine serve.",
        );
        let _ = writeln!(
            out,
            "fserve_build_info{{version=\"{}\",engine=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            m.engine
        );
        scalar(
            out,
            "fserve_workers",
            "gauge",
            "Worker threads, each with its own listener.",
            m.workers.len() as u64,
        );
        scalar(
            out,
            "fserve_ready",
            "gauge",
            "1 while every worker accepts and no shutdown has begun (/readyz).",
            u64::from(m.is_ready()),
        );
        process.render(out, m.start_unix_secs);
    }
}

/// The standard `process_*` figures, read from /proc at scrape time.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Process {
    pub(crate) cpu_seconds: f64,
    pub(crate) resident_bytes: u64,
    pub(crate) virtual_bytes: u64,
    pub(crate) open_fds: u64,
    pub(crate) max_fds: u64,
}

impl Process {
    /// Reads this process's figures; a figure that cannot be read is 0.
    pub(crate) fn read() -> Process {
        let mut p = Process::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            p.parse_stat(&stat);
        }
        p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        p.max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        p
    }

    /// Fields of /proc/self/stat after the command name (which may hold spaces and
    /// parentheses, so it is skipped up to its last `)`): utime and stime in clock ticks,
    /// vsize in bytes, rss in pages.
    fn parse_stat(&mut self, stat: &str) {
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return;
        };
        // After ")": field 3 (state) is index 0, so field N is index N - 3.
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
        self.cpu_seconds = (num(14 - 3) + num(15 - 3)) as f64 / ticks;
        self.virtual_bytes = num(23 - 3);
        self.resident_bytes = num(24 - 3).saturating_mul(rustix::param::page_size() as u64);
    }

    fn render(&self, out: &mut String, start_unix_secs: f64) {
        family(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {}", self.cpu_seconds);
        scalar(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_bytes,
        );
        scalar(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            self.virtual_bytes,
        );
        scalar(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            self.open_fds,
        );
        scalar(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            self.max_fds,
        );
        family(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        );
        let _ = writeln!(out, "process_start_time_seconds {start_unix_secs:.3}");
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Microseconds as seconds, exactly (no float rounding in bucket bounds).
fn seconds(us: u64) -> String {
    let (s, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        format!("{s}")
    } else {
        let digits = format!("{frac:06}");
        format!("{s}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(m: &Metrics) -> String {
        let mut out = String::new();
        m.render(&mut out, &Process::default());
        out
    }

    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
    }

    #[test]
    fn blocks_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<WorkerMetrics>(), 128);
        assert_eq!(std::mem::size_of::<WorkerMetrics>() % 128, 0);
    }

    #[test]
    fn requests_sum_over_workers_by_method_and_code() {
        let m = Metrics::new(2, "io_uring");
        let ms = Duration::from_millis(1);
        m.worker(0).request(MethodLabel::Get, 200, 100, ms);
        m.worker(1).request(MethodLabel::Get, 200, 50, ms);
        m.worker(1).request(MethodLabel::Head, 404, 0, ms);
        m.worker(0).request(MethodLabel::Other, 299, 0, ms);
        let t = rendered(&m);
        assert_eq!(
            value(&t, r#"fserve_http_requests_total{method="GET",code="200"}"#).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(
                &t,
                r#"fserve_http_requests_total{method="HEAD",code="404"}"#
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            value(
                &t,
                r#"fserve_http_requests_total{method="other",code="other"}"#
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&t, "fserve_http_response_body_bytes_total").as_deref(),
            Some("150")
        );
    }

    #[test]
    fn histogram_is_cumulative_with_exact_bounds() {
        let m = Metrics::new(1, "epoll");
        let w = m.worker(0);
        for us in [10, 50, 51, 999_999, 20_000_000] {
            w.request(MethodLabel::Get, 200, 0, Duration::from_micros(us));
        }
        let t = rendered(&m);
        let bucket = |le: &str| {
            value(
                &t,
                &format!("fserve_http_request_duration_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.00005").as_deref(), Some("2"), "{t}");
        assert_eq!(bucket("0.0001").as_deref(), Some("3"));
        assert_eq!(bucket("1").as_deref(), Some("4"));
        assert_eq!(bucket("10").as_deref(), Some("4"));
        assert_eq!(bucket("+Inf").as_deref(), Some("5"));
        assert_eq!(
            value(&t, "fserve_http_request_duration_seconds_count").as_deref(),
            Some("5")
        );
        assert_eq!(
            value(&t, "fserve_http_request_duration_seconds_sum").as_deref(),
            Some("21.00011")
        );
    }

    #[test]
    fn connections_open_is_accepted_minus_closed() {
        let m = Metrics::new(2, "io_uring");
        for _ in 0..5 {
            m.worker(0).accepted.add(1);
        }
        m.worker(1).accepted.add(1);
        m.worker(0).closed(CloseReason::Client);
        m.worker(1).closed(CloseReason::KeepaliveTimeout);
        let t = rendered(&m);
        assert_eq!(value(&t, "fserve_connections_open").as_deref(), Some("4"));
        assert_eq!(
            value(&t, r#"fserve_connections_closed_total{reason="client"}"#).as_deref(),
            Some("1")
        );
        assert_eq!(
            value(
                &t,
                r#"fserve_connections_closed_total{reason="keepalive_timeout"}"#
            )
            .as_deref(),
            Some("1")
        );
    }

    #[test]
    fn every_family_has_help_and_type_once() {
        let m = Metrics::new(1, "io_uring");
        m.worker(0)
            .request(MethodLabel::Get, 200, 1, Duration::from_micros(5));
        let t = rendered(&m);
        let mut seen = std::collections::HashSet::new();
        for line in t.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(seen.insert(name.to_owned()), "TYPE twice for {name}");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| seen.contains(*b))
                    .unwrap_or(name);
                assert!(seen.contains(base), "{name} has no TYPE line before it");
            }
        }
        assert!(t.contains("fserve_build_info{version=\""));
        assert!(t.ends_with('\n'));
    }

    #[test]
    fn process_stat_parses_names_with_spaces_and_parens() {
        let mut p = Process::default();
        // Fields 3.. of a real line, with a hostile command name.
        let line = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 \
                    5000 123456789 300 18446744073709551615";
        p.parse_stat(line);
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        assert_eq!(p.cpu_seconds, 400.0 / ticks);
        assert_eq!(p.virtual_bytes, 123_456_789);
        assert_eq!(p.resident_bytes, 300 * rustix::param::page_size() as u64);
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(50), "0.00005");
        assert_eq!(seconds(2_500_000), "2.5");
        assert_eq!(seconds(10_000_000), "10");
        assert_eq!(seconds(0), "0");
    }
}
