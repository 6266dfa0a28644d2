//! Hostile clients and resource counts: a lock for load-heavy tests, reading to close,
//! latency probes, open-fd and socket counts, socket options, the fd limit.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

/// Serialises the load-heavy tests (hostile clients, drains) with each other,
/// so that one test's storm does not distort another's latency or fd counts.
pub fn heavy_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a read-until-close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Orderly EOF.
    Eof,
    /// ECONNRESET (or EPIPE): the server closed with data unread, or aborted.
    Reset,
    /// Nothing more arrived and the connection stayed open for the whole wait.
    Hung,
}

/// Read everything until the peer closes or `wait` passes without a byte
/// arriving; returns the bytes and how it ended (never panics on errors).
pub fn read_to_close(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, Ending) {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut out = Vec::new();
    let mut tmp = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut tmp) {
            Ok(0) => return (out, Ending::Eof),
            Ok(n) => out.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (out, Ending::Hung);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                return (out, Ending::Reset);
            }
            Err(e) => panic!("unexpected read error while waiting for a close: {e}"),
        }
    }
}

/// A response head split off raw bytes: status code, header fields (names
/// lower-cased), and the bytes after the head.
pub type SplitHead<'a> = (u16, Vec<(String, String)>, &'a [u8]);

/// Split raw bytes into one response head and the rest; `None` if there is no
/// complete head.
pub fn split_head(bytes: &[u8]) -> Option<SplitHead<'_>> {
    let end = find(bytes, b"\r\n\r\n")?;
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let code: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((code, headers, &bytes[end + 4..]))
}

/// Assert that `bytes` (all a connection received before it closed) is either
/// nothing, or exactly one complete error response with `Connection: close`
/// whose status is in `allowed`. Returns the status (0 for nothing).
#[track_caller]
pub fn assert_nothing_or_one_closing_error(bytes: &[u8], allowed: &[u16], what: &str) -> u16 {
    if bytes.is_empty() {
        return 0;
    }
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
    let Some((code, headers, rest)) = split_head(bytes) else {
        panic!("{what}: bytes before the close are not one response head: {shown:?}");
    };
    assert!(
        allowed.contains(&code),
        "{what}: status {code} is not one of {allowed:?}: {shown:?}"
    );
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        get("connection").map(str::to_ascii_lowercase).as_deref(),
        Some("close"),
        "{what}: a closing error response without Connection: close: {shown:?}"
    );
    let len: usize = get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: error response without a Content-Length: {shown:?}"));
    assert_eq!(
        rest.len(),
        len,
        "{what}: the body is not exactly Content-Length bytes (or more followed): {shown:?}"
    );
    code
}

/// Non-panicking GET on `stream` (the probe must record failures, not die):
/// returns (status, body, whether the server announced a close).
pub fn try_get(stream: &mut TcpStream, target: &str) -> Result<(u16, Vec<u8>, bool), String> {
    stream
        .write_all(request("GET", target, &[]).as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16 * 1024];
    loop {
        if let Some((code, headers, rest)) = split_head(&buf) {
            let len: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .ok_or("no Content-Length")?;
            let closing = headers
                .iter()
                .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
            let mut body = rest.to_vec();
            while body.len() < len {
                match stream.read(&mut tmp) {
                    Ok(0) => {
                        return Err(format!("closed after {} of {len} body bytes", body.len()));
                    }
                    Ok(n) => body.extend_from_slice(&tmp[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("reading the body: {e}")),
                }
            }
            if body.len() != len {
                return Err(format!(
                    "{} bytes after a {len}-byte body",
                    body.len() - len
                ));
            }
            return Ok((code, body, closing));
        }
        if buf.len() > MAX_HEAD {
            return Err("response head too long".into());
        }
        match stream.read(&mut tmp) {
            Ok(0) => {
                return Err(format!(
                    "closed before a response head ({} bytes)",
                    buf.len()
                ));
            }
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the head: {e}")),
        }
    }
}

/// What a [`Probe`] saw.
#[derive(Debug, Default)]
pub struct ProbeStats {
    pub latencies: Vec<Duration>,
    pub failures: Vec<String>,
}

impl ProbeStats {
    pub fn ok(&self) -> usize {
        self.latencies.len()
    }

    pub fn max(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }

    /// The `p`-th percentile (0..=100) of the successful requests' latencies.
    pub fn percentile(&self, p: usize) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        v[((v.len() - 1) * p / 100).min(v.len() - 1)]
    }

    /// No failures, at least `min_ok` answers, every one within `limit`.
    #[track_caller]
    pub fn assert_healthy(&self, min_ok: usize, limit: Duration, what: &str) {
        assert!(
            self.failures.is_empty(),
            "{what}: the normal client failed {} time(s), first: {:?} ({} ok)",
            self.failures.len(),
            self.failures.first(),
            self.ok()
        );
        assert!(
            self.ok() >= min_ok,
            "{what}: the normal client got only {} answers (expected at least {min_ok})",
            self.ok()
        );
        assert!(
            self.max() < limit,
            "{what}: a normal request took {:?} (p50 {:?}, p99 {:?}, {} requests); limit {limit:?}",
            self.max(),
            self.percentile(50),
            self.percentile(99),
            self.ok()
        );
    }
}

/// The p99 a probe beside some load must stay under: 10 ms, or twice the p99 the same probe
/// saw just before with nothing else asked of the server (`quiet`) where the machine itself
/// is that slow (a shared host, other tests running beside); never more than 40 ms. What the
/// tests using it catch (a worker waiting for a disk, a compression or a log write on the
/// request path) costs 50 ms to seconds.
pub fn stall_limit(quiet: &ProbeStats) -> Duration {
    (quiet.percentile(99) * 2).clamp(Duration::from_millis(10), Duration::from_millis(40))
}

/// One line on a probe's figures, for a test's output and its failure message.
pub fn probe_summary(s: &ProbeStats) -> String {
    format!(
        "{} requests, p50 {:?}, p99 {:?}, max {:?}",
        s.ok(),
        s.percentile(50),
        s.percentile(99),
        s.max()
    )
}

/// A normal client running beside an attack: every `interval` it sends one GET
/// on its keep-alive connection and one on a fresh connection, and records how
/// long each took (a fresh one from the start of connect) and any failure.
pub struct Probe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<ProbeStats>>,
}

impl Probe {
    pub fn start(addr: SocketAddr, target: &str, expected: &[u8], interval: Duration) -> Probe {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let target = target.to_string();
        let expected = expected.to_vec();
        let handle = std::thread::spawn(move || {
            let mut stats = ProbeStats::default();
            let connect = |stats: &mut ProbeStats| -> Option<TcpStream> {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                    Ok(s) => {
                        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                        s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
                        s.set_nodelay(true).unwrap();
                        Some(s)
                    }
                    Err(e) => {
                        stats.failures.push(format!("connect: {e}"));
                        None
                    }
                }
            };
            let check = |stats: &mut ProbeStats,
                         started: Instant,
                         got: Result<(u16, Vec<u8>, bool), String>|
             -> bool {
                match got {
                    Ok((200, body, closing)) if body == expected => {
                        stats.latencies.push(started.elapsed());
                        !closing
                    }
                    Ok((code, body, _)) => {
                        stats
                            .failures
                            .push(format!("status {code} with a {}-byte body", body.len()));
                        false
                    }
                    Err(e) => {
                        stats.failures.push(e);
                        false
                    }
                }
            };
            let mut kept = connect(&mut stats);
            while !flag.load(Ordering::SeqCst) {
                let round = Instant::now();
                if let Some(s) = kept.as_mut() {
                    let started = Instant::now();
                    let got = try_get(s, &target);
                    if !check(&mut stats, started, got) {
                        kept = None;
                    }
                }
                if kept.is_none() {
                    kept = connect(&mut stats);
                }
                let started = Instant::now();
                if let Some(mut s) = connect(&mut stats) {
                    let got = try_get(&mut s, &target);
                    check(&mut stats, started, got);
                }
                let spent = round.elapsed();
                if spent < interval {
                    std::thread::sleep(interval - spent);
                }
            }
            stats
        });
        Probe {
            stop,
            handle: Some(handle),
        }
    }

    /// The same probe for a second with nothing else asked of the server: what this machine
    /// gives it now, the baseline for [`stall_limit`].
    pub fn quiet(
        addr: SocketAddr,
        target: &str,
        expected: &[u8],
        interval: Duration,
    ) -> ProbeStats {
        let probe = Probe::start(addr, target, expected, interval);
        std::thread::sleep(Duration::from_secs(1));
        probe.finish()
    }

    /// Stop and return what it saw.
    pub fn finish(mut self) -> ProbeStats {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("probe thread panicked")
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Entries in this process's /proc/self/fd (the server is in-process).
pub fn open_fd_count() -> usize {
    fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Open fds of this process that name a file under `dir`.
pub fn fds_under(dir: &Path) -> usize {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok())
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

/// Connected TCP sockets whose local port is `port` (the server's side of its
/// connections) that some process still holds open: listeners, sockets already
/// closed by their owner (orphans, inode 0) and TIME_WAIT are not counted.
pub fn server_held_sockets(port: u16) -> usize {
    let mut n = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 {
                continue;
            }
            let local_port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let listening = cols[3] == "0A";
            let inode: u64 = cols[9].parse().unwrap_or(0);
            if local_port == Some(port) && !listening && inode != 0 {
                n += 1;
            }
        }
    }
    n
}

/// Poll `cond` every 50 ms until it holds or `limit` passes; returns how long
/// it took, or `None` if it never held.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A small receive buffer, so a large response cannot sit in flight.
pub fn set_rcvbuf(stream: &TcpStream, bytes: usize) {
    socket2::SockRef::from(stream)
        .set_recv_buffer_size(bytes)
        .unwrap_or_else(|e| panic!("setsockopt(SO_RCVBUF, {bytes}): {e}"));
}

/// SO_LINGER {on, 0}: closing the socket then sends a RST instead of a FIN.
pub fn set_linger_zero(stream: &TcpStream) {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap_or_else(|e| panic!("setsockopt(SO_LINGER): {e}"));
}

/// Raise the soft open-file limit to at least `want` (capped at the hard limit);
/// returns the soft limit in force afterwards.
pub fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    // `None` is RLIM_INFINITY.
    let cur = lim.current.unwrap_or(u64::MAX);
    if cur >= want {
        return cur;
    }
    let new = want.min(lim.maximum.unwrap_or(u64::MAX));
    lim.current = Some(new);
    setrlimit(Resource::Nofile, lim).unwrap_or_else(|e| panic!("setrlimit: {e}"));
    new
}
