//! Raw HTTP/1.1 on a client socket: [`request`], the connection [`Conn`] with a careful
//! response reader, and [`Response`] with its assertions.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::*;

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

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
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
