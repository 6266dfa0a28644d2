//! Shared helpers: a per-test server over a fresh temporary root, a raw
//! HTTP/1.1 connection with a careful response reader, file and date helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// The signals the tests send to the real binary (`Signal::TERM`, `Signal::INT`).
pub use rustix::process::Signal;

/// Read/write timeout on every client socket: a hang fails instead of stalling.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest response head the reader accepts before failing.
const MAX_HEAD: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Server under test
// ---------------------------------------------------------------------------

/// The default configuration used by the tests: loopback, port 0, 2 workers,
/// a short grace period so that teardown never stalls a test for long.
///
/// The engine is io_uring (`--io uring`, so a refusal fails the test instead of
/// falling back quietly), or the one named by `FSERVE_TEST_IO` (`uring`,
/// `epoll`): CI runs the whole suite once per engine.
pub fn test_config(root: &Path) -> fserve::Config {
    let mut cfg = fserve::Config::new(root.to_path_buf());
    cfg.bind = IpAddr::from([127, 0, 0, 1]);
    cfg.port = 0;
    cfg.threads = 2;
    cfg.grace = Duration::from_secs(2);
    cfg.io = test_engine();
    cfg
}

/// The engine the suite runs against (see [`test_config`]).
pub fn test_engine() -> fserve::config::Io {
    match std::env::var("FSERVE_TEST_IO").as_deref() {
        Err(_) | Ok("") | Ok("uring") => fserve::config::Io::Uring,
        Ok("epoll") => fserve::config::Io::Epoll,
        Ok(other) => panic!("FSERVE_TEST_IO={other:?}: use uring or epoll"),
    }
}

/// A running server over `<tmp>/root`. `<tmp>` itself is free for content that
/// must lie outside the served root.
pub struct TestServer {
    server: Option<fserve::Server>,
    pub addr: SocketAddr,
    /// The served root directory (`<tmp>/root`).
    pub root: PathBuf,
    /// The temporary directory holding `root` (removed on drop).
    pub tmp: TempDir,
}

impl TestServer {
    /// An empty root with the default test configuration.
    pub fn new() -> TestServer {
        TestServer::with(|_| {}, |_| {})
    }

    /// The engine the server runs on ("io_uring" or "epoll").
    pub fn engine(&self) -> &'static str {
        self.server.as_ref().expect("server running").engine()
    }

    /// Why `--io auto` fell back to epoll, if it did.
    pub fn fallback_reason(&self) -> Option<String> {
        self.server
            .as_ref()
            .expect("server running")
            .fallback_reason()
            .map(str::to_string)
    }

    /// Populate the root with `setup(root)`, then start with the default test
    /// configuration as changed by `tweak`.
    pub fn with(setup: impl FnOnce(&Path), tweak: impl FnOnce(&mut fserve::Config)) -> TestServer {
        let tmp = tempfile::Builder::new()
            .prefix("fserve-it-")
            .tempdir()
            .expect("create temporary directory");
        let root = tmp.path().join("root");
        fs::create_dir(&root).expect("create root directory");
        setup(&root);
        let mut cfg = test_config(&root);
        tweak(&mut cfg);
        TestServer::start_in(tmp, root, cfg)
    }

    /// Start the server with `cfg` over an already prepared `root` inside `tmp`.
    pub fn start_in(tmp: TempDir, root: PathBuf, cfg: fserve::Config) -> TestServer {
        let server = match fserve::Server::start(cfg) {
            Ok(s) => s,
            Err(e) => panic!("fserve::Server::start failed (io_uring refused?): {e}"),
        };
        let addr = server.local_addr();
        assert_eq!(addr.ip(), IpAddr::from([127, 0, 0, 1]), "local_addr ip");
        assert_ne!(
            addr.port(),
            0,
            "local_addr must report the real port, not 0"
        );
        TestServer {
            server: Some(server),
            addr,
            root,
            tmp,
        }
    }

    /// A new raw connection to the server.
    pub fn connect(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// One GET on a new connection (HTTP/1.1, Host: localhost).
    pub fn get(&self, target: &str) -> Response {
        let mut c = self.connect();
        c.get(target)
    }

    /// One HEAD on a new connection.
    pub fn head(&self, target: &str) -> Response {
        let mut c = self.connect();
        c.head(target)
    }

    /// Send `raw` bytes on a new connection and read one response
    /// (`head`: the request was a HEAD, so no body follows).
    pub fn raw(&self, raw: impl AsRef<[u8]>, head: bool) -> (Conn, Response) {
        let mut c = self.connect();
        c.send(raw);
        let r = c.read_response_for(head);
        (c, r)
    }

    /// Take the server out (it is then no longer shut down on drop).
    pub fn take_server(&mut self) -> fserve::Server {
        self.server.take().expect("server already shut down")
    }

    /// Graceful shutdown; returns how long it took. Fails if it takes more
    /// than `limit`.
    pub fn shutdown_within(&mut self, limit: Duration) -> Duration {
        let server = self.server.take().expect("server already shut down");
        shutdown_with_timeout(server, limit)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Never let a stuck shutdown hang the test binary.
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                server.shutdown();
                let _ = tx.send(());
            });
            if rx.recv_timeout(Duration::from_secs(15)).is_err() && !std::thread::panicking() {
                panic!("Server::shutdown did not return within 15 s (in TestServer::drop)");
            }
        }
    }
}

/// Run `server.shutdown()` on another thread; panic if it takes longer than `limit`.
pub fn shutdown_with_timeout(server: fserve::Server, limit: Duration) -> Duration {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let all_ended = server.shutdown();
        let _ = tx.send(all_ended);
    });
    match rx.recv_timeout(limit) {
        Ok(all_ended) => {
            assert!(
                all_ended,
                "Server::shutdown reports that not every worker ended in time"
            );
            start.elapsed()
        }
        Err(_) => panic!("Server::shutdown did not return within {limit:?}"),
    }
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// Write `content` to `base/rel`, creating parent directories.
pub fn write(base: &Path, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = base.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Set a file's modification time to `secs` seconds (+ `nanos`) after the epoch.
pub fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    let f = fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_modified(UNIX_EPOCH + Duration::new(secs, nanos))
        .unwrap_or_else(|e| panic!("set_modified {}: {e}", path.display()));
}

/// Deterministic, non-repeating pseudo-random bytes (xorshift64*).
pub fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------

/// A simple HTTP/1.1 request with `Host: localhost` and `extra` header lines
/// (each given without CRLF).
pub fn request(method: &str, target: &str, extra: &[&str]) -> String {
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n");
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s
}

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status_line: String,
    pub status: u16,
    pub reason: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (case-insensitive). Panics if the header is
    /// repeated with different values.
    pub fn header(&self, name: &str) -> Option<&str> {
        let vals = self.header_all(name);
        if vals.len() > 1 {
            assert!(
                vals.iter().all(|v| *v == vals[0]),
                "header {name} repeated with different values: {vals:?}\n{}",
                self.describe()
            );
        }
        vals.first().copied()
    }

    /// All values of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of header `name`, which must be present.
    pub fn expect_header(&self, name: &str) -> &str {
        match self.header(name) {
            Some(v) => v,
            None => panic!("missing header {name}\n{}", self.describe()),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Status line, headers and the start of the body, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!("{}\n", self.status_line);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\n"));
        }
        let shown = &self.body[..self.body.len().min(300)];
        s.push_str(&format!(
            "<body: {} bytes> {:?}",
            self.body.len(),
            String::from_utf8_lossy(shown)
        ));
        s
    }

    /// Assert the status code (and that the reason phrase is the standard one).
    #[track_caller]
    pub fn assert_status(&self, code: u16) -> &Self {
        assert_eq!(self.status, code, "unexpected status\n{}", self.describe());
        let reasons = standard_reasons(code);
        if !reasons.is_empty() {
            assert!(
                reasons.contains(&self.reason.as_str()),
                "status {code}: reason {:?} is not one of {reasons:?}",
                self.reason
            );
        }
        self
    }

    /// Assert an error response: status, `text/html; charset=utf-8`, a small
    /// body mentioning the status code.
    #[track_caller]
    pub fn assert_error(&self, code: u16) -> &Self {
        self.assert_status(code);
        assert_eq!(
            self.header("Content-Type"),
            Some("text/html; charset=utf-8"),
            "error Content-Type\n{}",
            self.describe()
        );
        assert!(
            self.header("Content-Length").is_some(),
            "error response without Content-Length\n{}",
            self.describe()
        );
        assert!(
            !self.body.is_empty(),
            "error response with an empty body\n{}",
            self.describe()
        );
        assert!(
            self.body.len() <= 4096,
            "error body unexpectedly large\n{}",
            self.describe()
        );
        assert!(
            self.text().contains(&code.to_string()),
            "error body does not mention {code}\n{}",
            self.describe()
        );
        self
    }

    /// Assert a `Connection: close` header.
    #[track_caller]
    pub fn assert_connection_close(&self) -> &Self {
        assert_eq!(
            self.header("Connection").map(|v| v.to_ascii_lowercase()),
            Some("close".to_string()),
            "expected Connection: close\n{}",
            self.describe()
        );
        self
    }

    /// Assert the response does not announce a close.
    #[track_caller]
    pub fn assert_not_closing(&self) -> &Self {
        if let Some(v) = self.header("Connection") {
            assert!(
                !v.to_ascii_lowercase().contains("close"),
                "unexpected Connection: {v}\n{}",
                self.describe()
            );
        }
        self
    }
}

/// Accepted reason phrases for the codes the tests meet (RFC 9110 names,
/// plus the older RFC 7231 ones where they differ).
pub fn standard_reasons(code: u16) -> &'static [&'static str] {
    match code {
        200 => &["OK"],
        301 => &["Moved Permanently"],
        304 => &["Not Modified"],
        400 => &["Bad Request"],
        403 => &["Forbidden"],
        404 => &["Not Found"],
        405 => &["Method Not Allowed"],
        408 => &["Request Timeout"],
        411 => &["Length Required"],
        413 => &["Content Too Large", "Payload Too Large"],
        414 => &["URI Too Long", "Request-URI Too Long"],
        431 => &["Request Header Fields Too Large"],
        500 => &["Internal Server Error"],
        505 => &["HTTP Version Not Supported"],
        _ => &[],
    }
}

/// A raw client connection with a buffer, so pipelined responses can be read
/// one after another.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .expect("write request");
    }

    /// Send `bytes` one byte per write, sleeping `pause` between writes.
    pub fn send_slowly(&mut self, bytes: impl AsRef<[u8]>, pause: Duration) {
        for b in bytes.as_ref() {
            self.stream
                .write_all(std::slice::from_ref(b))
                .expect("write request byte");
            std::thread::sleep(pause);
        }
    }

    pub fn get(&mut self, target: &str) -> Response {
        self.send(request("GET", target, &[]));
        self.read_response()
    }

    pub fn head(&mut self, target: &str) -> Response {
        self.send(request("HEAD", target, &[]));
        self.read_head_response()
    }

    /// Read a response that carries a body (if its status allows one).
    pub fn read_response(&mut self) -> Response {
        self.read_response_for(false)
    }

    /// Read the response to a HEAD request: never a body.
    pub fn read_head_response(&mut self) -> Response {
        self.read_response_for(true)
    }

    /// Bytes already received but not yet consumed by a response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Read more bytes into the buffer; returns how many (0 at EOF).
    fn fill(&mut self, what: &str) -> usize {
        let mut tmp = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "timed out after {IO_TIMEOUT:?} waiting for {what}; have {} bytes: {:?}",
                        self.buf.len(),
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)])
                    )
                }
                Err(e) => panic!(
                    "read error while waiting for {what}: {e}; have {} bytes: {:?}",
                    self.buf.len(),
                    String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)])
                ),
            }
        }
    }

    /// Read one response. `head`: the request was HEAD (no body follows).
    /// The body is read by Content-Length; 1xx, 204 and 304 have none.
    pub fn read_response_for(&mut self, head: bool) -> Response {
        // Head: up to and including CRLFCRLF.
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            assert!(
                self.buf.len() <= MAX_HEAD,
                "response head longer than {MAX_HEAD} bytes without CRLFCRLF"
            );
            if self.fill("a response head") == 0 {
                panic!(
                    "connection closed before a complete response head; got {} bytes: {:?}",
                    self.buf.len(),
                    String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)])
                );
            }
        };
        let head_bytes: Vec<u8> = self.buf.drain(..head_end + 4).collect();
        let head_text = std::str::from_utf8(&head_bytes[..head_end])
            .unwrap_or_else(|_| panic!("response head is not UTF-8: {head_bytes:?}"));
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap().to_string();
        let (status, reason) = parse_status_line(&status_line);
        let mut headers = Vec::new();
        for line in lines {
            assert!(
                !line.contains('\n'),
                "bare LF in response head: {head_text:?}"
            );
            let colon = line
                .find(':')
                .unwrap_or_else(|| panic!("malformed header line {line:?} in {head_text:?}"));
            let name = &line[..colon];
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
                "bad header name {name:?} in {head_text:?}"
            );
            let value = line[colon + 1..].trim_matches(|c| c == ' ' || c == '\t');
            headers.push((name.to_string(), value.to_string()));
        }
        let mut resp = Response {
            status_line,
            status,
            reason,
            headers,
            body: Vec::new(),
        };

        assert!(
            resp.header("Transfer-Encoding").is_none(),
            "unexpected Transfer-Encoding\n{}",
            resp.describe()
        );
        let no_body = head || (100..200).contains(&status) || status == 204 || status == 304;
        if no_body {
            return resp;
        }
        let len: usize = match resp.header("Content-Length") {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length {v:?}\n{}", resp.describe())),
            None => panic!("response without Content-Length\n{}", resp.describe()),
        };
        while self.buf.len() < len {
            if self.fill("a response body") == 0 {
                panic!(
                    "connection closed after {} of {len} body bytes\n{}",
                    self.buf.len(),
                    resp.describe()
                );
            }
        }
        resp.body = self.buf.drain(..len).collect();
        resp
    }

    /// Assert that the server closes the connection: nothing more is buffered,
    /// and a read returns EOF (or ECONNRESET) within the timeout.
    #[track_caller]
    pub fn assert_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "stray bytes after the last response: {:?}",
            String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)])
        );
        let mut tmp = [0u8; 4096];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "expected the server to close, got {n} more bytes: {:?}",
                    String::from_utf8_lossy(&tmp[..n.min(300)])
                ),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("the server did not close the connection within {IO_TIMEOUT:?}")
                }
                Err(e) => panic!("unexpected read error while expecting close: {e}"),
            }
        }
    }

    /// Everything the server still sends until it closes (EOF or ECONNRESET),
    /// including bytes already buffered. Panics if it does not close in time.
    pub fn read_until_closed(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        let mut tmp = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "the server did not close the connection within {IO_TIMEOUT:?} (got {} bytes)",
                        out.len()
                    )
                }
                Err(e) => panic!("unexpected read error while waiting for close: {e}"),
            }
        }
    }

    /// Assert that nothing arrives (and the connection is not closed) within `wait`.
    #[track_caller]
    pub fn assert_silent_for(&mut self, wait: Duration) {
        assert!(
            self.buf.is_empty(),
            "stray bytes buffered: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let deadline = Instant::now() + wait;
        let mut tmp = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut tmp) {
                Ok(0) => panic!("the server closed the connection unexpectedly"),
                Ok(n) => panic!(
                    "unexpected {n} bytes: {:?}",
                    String::from_utf8_lossy(&tmp[..n])
                ),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => panic!("unexpected read error: {e}"),
            }
        }
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    }

    /// Read some bytes straight from the socket (retrying on EINTR); 0 at EOF.
    pub fn read_raw(&mut self, out: &mut [u8]) -> usize {
        if !self.buf.is_empty() {
            let n = self.buf.len().min(out.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            return n;
        }
        loop {
            match self.stream.read(out) {
                Ok(n) => return n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("read error: {e}"),
            }
        }
    }

    /// Half-close our side (no more requests).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.1 <3 digits> <reason>`: the version must be exactly HTTP/1.1.
fn parse_status_line(line: &str) -> (u16, String) {
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .unwrap_or_else(|| panic!("status line does not start with 'HTTP/1.1 ': {line:?}"));
    let code = rest
        .get(..3)
        .unwrap_or_else(|| panic!("short status line {line:?}"));
    assert!(
        code.bytes().all(|b| b.is_ascii_digit()),
        "bad status code in {line:?}"
    );
    assert_eq!(
        rest.as_bytes().get(3),
        Some(&b' '),
        "no space after status code in {line:?}"
    );
    let reason = &rest[4..];
    assert!(!reason.is_empty(), "empty reason phrase in {line:?}");
    (code.parse().unwrap(), reason.to_string())
}

/// Assert that `body` equals `expected` without dumping megabytes on failure.
#[track_caller]
pub fn assert_body_eq(body: &[u8], expected: &[u8], what: &str) {
    if body != expected {
        let first_diff = body.iter().zip(expected).position(|(a, b)| a != b);
        panic!(
            "{what}: body differs: got {} bytes, expected {}; first difference at {:?}",
            body.len(),
            expected.len(),
            first_diff
        );
    }
}

// ---------------------------------------------------------------------------
// Dates (IMF-fixdate, RFC 9110 §5.6.7)
// ---------------------------------------------------------------------------

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31). (Howard Hinnant's algorithm.)
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Format seconds since the epoch as an IMF-fixdate.
pub fn imf_fixdate(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parse a strict IMF-fixdate; checks the weekday too.
pub fn parse_imf_fixdate(s: &str) -> Option<u64> {
    if s.len() != 29 || !s.is_ascii() {
        return None;
    }
    let b = s.as_bytes();
    if &s[3..5] != ", " || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || &s[25..] != " GMT" {
        return None;
    }
    if b[19] != b':' || b[22] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let t = &s[r];
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let day = num(5..7)? as u32;
    let month = MONTHS.iter().position(|m| *m == &s[8..11])? as u32 + 1;
    let year = num(12..16)? as i64;
    let (hh, mm, ss) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if hh > 23 || mm > 59 || ss > 60 || day == 0 || day > 31 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if days < 0 || DAYS[(days % 7) as usize] != &s[..3] {
        return None;
    }
    let (y2, m2, d2) = civil_from_days(days);
    if (y2, m2, d2) != (year, month, day) {
        return None;
    }
    Some(days as u64 * 86_400 + hh * 3600 + mm * 60 + ss)
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn imf_fixdate_helpers_agree_with_rfc_example() {
    assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(
        parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(imf_fixdate(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
    assert_eq!(imf_fixdate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(imf_fixdate(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(
        parse_imf_fixdate("Mon, 06 Nov 1994 08:49:37 GMT"),
        None,
        "wrong weekday"
    );
    assert_eq!(parse_imf_fixdate("Sun, 6 Nov 1994 08:49:37 GMT"), None);
    for s in [0u64, 86_399, 951_782_400, 1_700_000_000, 4_102_444_800] {
        assert_eq!(parse_imf_fixdate(&imf_fixdate(s)), Some(s));
    }
}

// ---------------------------------------------------------------------------
// Added for conditionals, ranges, encodings and site options
// ---------------------------------------------------------------------------

/// The RFC 9110 reason phrase fserve sends for `code`.
pub fn exact_reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        _ => panic!("exact_reason: no reason phrase recorded for {code}"),
    }
}

/// The ETag fserve sends for a file: `"<mtime hex>-<size hex>"`.
pub fn etag_of(mtime: u64, len: u64) -> String {
    format!("\"{mtime:x}-{len:x}\"")
}

/// `bytes first-last/complete` → (first, last, complete).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.strip_prefix("bytes ")?;
    let (range, complete) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some((
        first.parse().ok()?,
        last.parse().ok()?,
        complete.parse().ok()?,
    ))
}

/// One body part of a multipart/byteranges response.
#[derive(Debug, Clone)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The part's Content-Range, which must be a satisfied `bytes a-b/len`.
    pub fn range(&self) -> (u64, u64, u64) {
        let v = self
            .header("Content-Range")
            .unwrap_or_else(|| panic!("part without Content-Range: {:?}", self.headers));
        parse_content_range(v).unwrap_or_else(|| panic!("bad part Content-Range {v:?}"))
    }
}

impl Response {
    /// Assert the exact status line `HTTP/1.1 <code> <RFC 9110 reason>`.
    #[track_caller]
    pub fn assert_line(&self, code: u16) -> &Self {
        assert_eq!(
            self.status_line,
            format!("HTTP/1.1 {code} {}", exact_reason(code)),
            "unexpected status line\n{}",
            self.describe()
        );
        self
    }

    /// Assert a 304 with the validators `etag` and `last_modified`, a Date, no
    /// Content-Length and (as read) no body.
    #[track_caller]
    pub fn assert_not_modified(&self, etag: &str, last_modified: &str) -> &Self {
        self.assert_line(304);
        assert_eq!(
            self.header("ETag"),
            Some(etag),
            "304 ETag\n{}",
            self.describe()
        );
        assert_eq!(
            self.header("Last-Modified"),
            Some(last_modified),
            "304 Last-Modified\n{}",
            self.describe()
        );
        assert!(
            self.header("Date")
                .is_some_and(|d| parse_imf_fixdate(d).is_some()),
            "304 without a valid Date\n{}",
            self.describe()
        );
        assert!(
            self.header("Content-Length").is_none(),
            "304 with a Content-Length\n{}",
            self.describe()
        );
        assert!(self.body.is_empty());
        self
    }

    /// Assert a plain 206 with `Content-Range: bytes first-last/complete`, a
    /// matching Content-Length, and `expected` as the body.
    #[track_caller]
    pub fn assert_partial(&self, first: u64, last: u64, complete: u64, expected: &[u8]) -> &Self {
        self.assert_line(206);
        assert_eq!(
            self.header("Content-Range"),
            Some(format!("bytes {first}-{last}/{complete}").as_str()),
            "Content-Range\n{}",
            self.describe()
        );
        assert_eq!(
            self.header("Content-Length"),
            Some((last - first + 1).to_string().as_str()),
            "206 Content-Length\n{}",
            self.describe()
        );
        assert!(
            !self
                .header("Content-Type")
                .unwrap_or("")
                .starts_with("multipart/"),
            "a single range must not be multipart\n{}",
            self.describe()
        );
        assert_body_eq(&self.body, expected, &format!("206 bytes {first}-{last}"));
        self
    }

    /// Assert a 200 with the whole of `expected` and no Content-Range.
    #[track_caller]
    pub fn assert_whole(&self, expected: &[u8]) -> &Self {
        self.assert_line(200);
        assert!(
            self.header("Content-Range").is_none(),
            "Content-Range on a 200\n{}",
            self.describe()
        );
        assert_eq!(
            self.header("Content-Length"),
            Some(expected.len().to_string().as_str()),
            "200 Content-Length\n{}",
            self.describe()
        );
        assert_body_eq(&self.body, expected, "whole body");
        self
    }

    /// The boundary of a `multipart/byteranges` response.
    #[track_caller]
    pub fn multipart_boundary(&self) -> String {
        let ct = self.expect_header("Content-Type");
        let (kind, params) = ct.split_once(';').unwrap_or((ct, ""));
        assert_eq!(
            kind.trim(),
            "multipart/byteranges",
            "Content-Type\n{}",
            self.describe()
        );
        let boundary = params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("multipart without a boundary\n{}", self.describe()));
        assert!(
            !boundary.is_empty() && boundary.len() <= 70,
            "bad boundary {boundary:?}"
        );
        boundary
    }

    /// Parse a `multipart/byteranges` body (RFC 2046 §5.1.1) into its parts.
    #[track_caller]
    pub fn byteranges(&self) -> Vec<Part> {
        let boundary = self.multipart_boundary();
        parse_multipart(&self.body, &boundary)
            .unwrap_or_else(|e| panic!("bad multipart body: {e}\n{}", self.describe()))
    }
}

/// Parse a multipart body with `boundary`: optional preamble, parts, close
/// delimiter, optional CRLF + epilogue.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let dash = format!("--{boundary}").into_bytes();
    let delim = format!("\r\n--{boundary}").into_bytes();
    // The first dash-boundary: at the very start, or after the preamble's CRLF.
    let mut pos = if body.starts_with(&dash) {
        dash.len()
    } else {
        find(body, &delim).ok_or("no first delimiter")? + delim.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            let after = &rest[2..];
            if !after.is_empty() && !after.starts_with(b"\r\n") {
                return Err(format!(
                    "bytes after the close delimiter: {:?}",
                    String::from_utf8_lossy(after)
                ));
            }
            return if parts.is_empty() {
                Err("no parts".into())
            } else {
                Ok(parts)
            };
        }
        if !rest.starts_with(b"\r\n") {
            return Err(format!("no CRLF after a delimiter at {pos}"));
        }
        pos += 2;
        let head_end = find(&body[pos..], b"\r\n\r\n").ok_or("part head without CRLFCRLF")?;
        let head = std::str::from_utf8(&body[pos..pos + head_end])
            .map_err(|_| "part head is not UTF-8")?;
        let mut headers = Vec::new();
        for line in head.split("\r\n") {
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| format!("bad part header line {line:?}"))?;
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let start = pos + head_end + 4;
        let len = find(&body[start..], &delim).ok_or("part without a following delimiter")?;
        parts.push(Part {
            headers,
            body: body[start..start + len].to_vec(),
        });
        pos = start + len + delim.len();
    }
}

impl Conn {
    /// Send `method target` with `extra` header lines and read the response
    /// (without a body for HEAD).
    pub fn req(&mut self, method: &str, target: &str, extra: &[&str]) -> Response {
        self.send(request(method, target, extra));
        self.read_response_for(method == "HEAD")
    }

    /// GET with `extra` header lines.
    pub fn get_h(&mut self, target: &str, extra: &[&str]) -> Response {
        self.req("GET", target, extra)
    }
}

impl TestServer {
    /// One request with `extra` header lines on a new connection.
    pub fn req(&self, method: &str, target: &str, extra: &[&str]) -> Response {
        self.connect().req(method, target, extra)
    }

    /// One GET with `extra` header lines on a new connection.
    pub fn get_h(&self, target: &str, extra: &[&str]) -> Response {
        self.req("GET", target, extra)
    }
}

/// Text whose every line differs (so that any misplaced range shows), `len` bytes.
pub fn text_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("line {i:07} of the text\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn multipart_parser_accepts_rfc_bodies_and_rejects_bad_ones() {
    let ok = b"\r\n--B1\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\nab\r\n--B1\r\nContent-Range: bytes 5-5/10\r\n\r\nf\r\n--B1--\r\n";
    let parts = parse_multipart(ok, "B1").unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].body, b"ab");
    assert_eq!(parts[0].range(), (0, 1, 10));
    assert_eq!(parts[0].header("content-type"), Some("text/plain"));
    assert_eq!(parts[1].body, b"f");
    assert_eq!(parts[1].range(), (5, 5, 10));
    // Starting with the dash-boundary itself, a preamble, an epilogue.
    assert!(parse_multipart(b"--B1\r\nX: y\r\n\r\nab\r\n--B1--", "B1").is_ok());
    assert!(parse_multipart(b"pre\r\n--B1\r\nX: y\r\n\r\nab\r\n--B1--\r\nepi", "B1").is_ok());
    // Missing close delimiter, garbage after it, wrong boundary, no parts.
    assert!(parse_multipart(b"\r\n--B1\r\nX: y\r\n\r\nab", "B1").is_err());
    assert!(parse_multipart(b"\r\n--B1\r\nX: y\r\n\r\nab\r\n--B1--junk", "B1").is_err());
    assert!(parse_multipart(ok, "B2").is_err());
    assert!(parse_multipart(b"\r\n--B1--\r\n", "B1").is_err());
    assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 99, 1000)));
    assert_eq!(parse_content_range("bytes */1000"), None);
    assert_eq!(etag_of(0x2ebc98a1, 14), "\"2ebc98a1-e\"");
}

// ---------------------------------------------------------------------------
// Hostile clients, resource counts and the real binary (hostile.rs, drain.rs)
// ---------------------------------------------------------------------------

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

/// The real binary, started with `-p 0 -b 127.0.0.1 --io <engine>`, its port
/// read from the start line on stderr. Killed on drop if still running.
pub struct BinServer {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Every stderr line so far (the start line included).
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl BinServer {
    pub const BIN: &'static str = env!("CARGO_BIN_EXE_fserve");

    /// Start `fserve -p 0 -b 127.0.0.1 --io <engine> ARGS ROOT`, wait for the
    /// start line and parse the port from it.
    pub fn start(root: &Path, args: &[&str]) -> BinServer {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let engine = match test_engine() {
            fserve::config::Io::Epoll => "epoll",
            _ => "uring",
        };
        let mut cmd = Command::new(Self::BIN);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FSERVE_") {
                cmd.env_remove(&k);
            }
        }
        cmd.args(["-p", "0", "-b", "127.0.0.1", "--io", engine])
            .args(args)
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn fserve");
        let stderr = child.stderr.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut server = BinServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: lines,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no start line from fserve within 10 s: {e:?}"));
        // `fserve: serving ROOT at http://127.0.0.1:PORT/ (N workers, ENGINE)`
        let prefix = format!(
            "fserve: serving {} at http://127.0.0.1:",
            fs::canonicalize(root).unwrap().display()
        );
        let rest = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("start line {line:?} does not start with {prefix:?}"));
        let (port, tail) = rest
            .split_once("/ (")
            .unwrap_or_else(|| panic!("no port in start line {line:?}"));
        let want_engine = if engine == "epoll" {
            "epoll)"
        } else {
            "io_uring)"
        };
        assert!(
            tail.ends_with(want_engine),
            "start line {line:?} does not name the {engine} engine"
        );
        let port: u16 = port
            .parse()
            .unwrap_or_else(|_| panic!("bad port {port:?} in start line {line:?}"));
        assert_ne!(port, 0, "the start line must show the real port");
        server.addr.set_port(port);
        server
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    pub fn signal(&self, sig: Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), sig)
            .unwrap_or_else(|e| panic!("kill({}, {sig:?}) failed: {e}", self.pid()));
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Wait for the exit; panics (after killing it) if it takes longer than `within`.
    pub fn wait_within(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "fserve did not exit within {within:?}; stderr: {:?}",
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A `VmRSS`/`VmHWM`-style field of /proc/PID/status, in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
    }

    /// Open fds of the server process.
    pub fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .count()
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
