//! `fserve healthcheck [URL]`: a tiny blocking HTTP/1.1 client for container health checks.
//!
//! A `FROM scratch` image has no shell, curl or wget, so the binary checks itself: one `GET`
//! with `Connection: close`, and the status line decides. 2xx and 3xx are healthy (exit 0);
//! anything else, including a refused connection or a timeout, is unhealthy (exit 1) with one
//! line on stderr. Exit code 2 is never used: Docker reserves it for health checks.
//!
//! Only `std::net`: no TLS (`https://` is refused), no redirects followed, no body read.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::DEFAULT_PORT;

/// Connect, write and read timeouts, each; the whole status line must also arrive within it.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The status line is read no further than this.
const MAX_STATUS_LINE: usize = 1024;

/// An `http://host:port/path` URL, split for connecting and for the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    pub port: u16,
    /// The `Host` header: the authority as written (`[::1]:8080`, `example.com`).
    pub authority: String,
    /// The request target: path and query, never empty (`/` when the URL has no path).
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// Resolved at check time with [`ToSocketAddrs`].
    Name(String),
}

/// The URL checked when none is given: `http://127.0.0.1:<port>/`, the port taken from
/// `FSERVE_PORT` (the same variable the server reads) when it is set, else 8080.
pub fn default_url(fserve_port: Option<&str>) -> Result<String, String> {
    let port = match fserve_port.map(str::trim) {
        None | Some("") => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(0) => return Err("FSERVE_PORT is 0: pass the server's URL instead".into()),
            Ok(n) => n,
            Err(_) => return Err(format!("FSERVE_PORT `{p}` is not a port number")),
        },
    };
    Ok(format!("http://127.0.0.1:{port}/"))
}

/// With the admin listener on (`FSERVE_ADMIN`, the variable the server reads), the URL
/// checked when none is given is its `/healthz`: on 127.0.0.1 (or ::1) when it listens on
/// every address. `None` when `FSERVE_ADMIN` is unset or empty.
pub fn admin_url(fserve_admin: Option<&str>) -> Option<Result<String, String>> {
    let text = fserve_admin.map(str::trim).filter(|a| !a.is_empty())?;
    let Ok(mut addr) = text.parse::<SocketAddr>() else {
        return Some(Err(format!("FSERVE_ADMIN `{text}` is not ADDR:PORT")));
    };
    if addr.port() == 0 {
        return Some(Err(
            "FSERVE_ADMIN has port 0: pass the admin URL instead".into()
        ));
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Some(Ok(format!("http://{addr}/healthz")))
}

/// Parses `http://host[:port][/path][?query][#fragment]`. The host is an IPv4 address, an
/// IPv6 address in brackets, or a name; the port defaults to 80; the fragment is dropped.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err("https is not supported; check the plain-HTTP port".into());
        }
        Some((scheme, _)) => return Err(format!("unsupported scheme `{scheme}` (use http://)")),
        None => return Err("not a URL (expected http://host:port/path)".into()),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err("user information in the URL is not supported".into());
    }
    let (host_text, port_text) = if let Some(after) = authority.strip_prefix('[') {
        let (v6, after) = after
            .split_once(']')
            .ok_or("an IPv6 address must end with `]`")?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("junk after the IPv6 address")?,
            ),
        };
        let ip: Ipv6Addr = v6
            .parse()
            .map_err(|_| format!("`{v6}` is not an IPv6 address"))?;
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (name, port) = match authority.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (authority, None),
        };
        if name.is_empty() {
            return Err("the URL has no host".into());
        }
        if name.contains(':') {
            return Err(
                "an IPv6 address must be written in brackets, e.g. http://[::1]:8080/".into(),
            );
        }
        let host = match name.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_)
                if name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) =>
            {
                Host::Name(name.to_string())
            }
            Err(_) => return Err(format!("`{name}` is not a host name")),
        };
        (host, port)
    };
    let port = match port_text {
        None | Some("") => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("`{p}` is not a port (1-65535)")),
        },
    };
    let tail = tail.split('#').next().unwrap_or("");
    if tail.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("the path contains spaces or control characters; percent-encode them".into());
    }
    let path = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    Ok(Target {
        host: host_text,
        port,
        authority: authority.to_string(),
        path,
    })
}

/// Why a check failed; displayed as the cause in `fserve healthcheck: <url>: <cause>`.
#[derive(Debug)]
pub enum Failure {
    Resolve(String, io::Error),
    Connect(SocketAddr, io::Error),
    Io(&'static str, io::Error),
    /// The server closed the connection before a whole status line arrived.
    Closed,
    NotHttp(String),
    /// A well-formed status line with a status that is not 2xx or 3xx.
    Status(u16, String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Resolve(host, e) => write!(f, "cannot resolve {host}: {e}"),
            Failure::Connect(addr, e) if is_timeout(e) => {
                write!(f, "cannot connect to {addr}: timed out")
            }
            Failure::Connect(addr, e) => write!(f, "cannot connect to {addr}: {e}"),
            Failure::Io(what, e) if is_timeout(e) => write!(f, "timed out {what}"),
            Failure::Io(what, e) => write!(f, "error {what}: {e}"),
            Failure::Closed => f.write_str("the connection closed before a status line"),
            Failure::NotHttp(line) => write!(f, "not an HTTP response: {line:?}"),
            Failure::Status(_, line) => write!(f, "unhealthy status: {line}"),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Healthy statuses: 2xx and 3xx (a redirect means the server is up and answering).
pub fn healthy(status: u16) -> bool {
    (200..400).contains(&status)
}

/// Sends one `GET` and returns the status when it is healthy. `timeout` bounds the connect
/// (per address), each write, and the whole wait for the status line.
pub fn check(target: &Target, timeout: Duration) -> Result<u16, Failure> {
    let addrs: Vec<SocketAddr> = match &target.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
        Host::Name(name) => (name.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| Failure::Resolve(name.clone(), e))?
            .collect(),
    };
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(Failure::Connect(addr, e)),
        }
    }
    let mut stream = match stream {
        Some(s) => s,
        None => {
            return Err(last.unwrap_or_else(|| {
                Failure::Resolve(
                    target.authority.clone(),
                    io::Error::new(io::ErrorKind::NotFound, "no addresses"),
                )
            }));
        }
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: fserve-healthcheck\r\n\r\n",
        target.path, target.authority
    );
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| Failure::Io("sending the request", e))?;
    let line = read_status_line(&mut stream, Instant::now() + timeout)?;
    let status = parse_status_line(&line).ok_or_else(|| Failure::NotHttp(line.clone()))?;
    if healthy(status) {
        Ok(status)
    } else {
        Err(Failure::Status(status, line))
    }
}

/// Reads up to the first CRLF (or LF), within `deadline`.
fn read_status_line(stream: &mut TcpStream, deadline: Instant) -> Result<String, Failure> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if buf.len() > MAX_STATUS_LINE {
            buf.truncate(64);
            return Err(Failure::NotHttp(String::from_utf8_lossy(&buf).into_owned()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Io(
                "waiting for the status line",
                io::ErrorKind::TimedOut.into(),
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| Failure::Io("waiting for the status line", e))?;
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(Failure::Closed),
            Ok(0) => return Err(Failure::NotHttp(String::from_utf8_lossy(&buf).into_owned())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Io("waiting for the status line", e)),
        }
    }
}

/// `HTTP/1.1 200 OK` → 200. Any `HTTP/<digit>.<digit>` version, a three-digit status.
pub fn parse_status_line(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("HTTP/")?;
    let (version, rest) = rest.split_once(' ')?;
    let v = version.as_bytes();
    if !(v.len() == 3 && v[0].is_ascii_digit() && v[1] == b'.' && v[2].is_ascii_digit()) {
        return None;
    }
    let code = rest.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit())
        || !matches!(rest.as_bytes().get(3), None | Some(b' '))
    {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

/// The subcommand: checks `url` (or [`admin_url`], else [`default_url`]) and returns the
/// process exit code.
pub fn run(url: Option<&str>) -> ExitCode {
    let url = match url {
        Some(u) => u.to_string(),
        None => match admin_url(std::env::var("FSERVE_ADMIN").ok().as_deref())
            .unwrap_or_else(|| default_url(std::env::var("FSERVE_PORT").ok().as_deref()))
        {
            Ok(u) => u,
            Err(e) => {
                eprintln!("fserve healthcheck: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let result = parse_url(&url).and_then(|t| check(&t, TIMEOUT).map_err(|f| f.to_string()));
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(cause) => {
            eprintln!("fserve healthcheck: {url}: {cause}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};
    use std::thread::JoinHandle;

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn urls() {
        let name = |s: &str| Host::Name(s.to_string());
        let cases: Vec<(&str, Host, u16, &str, &str)> = vec![
            (
                "http://127.0.0.1:8080/",
                ip("127.0.0.1"),
                8080,
                "127.0.0.1:8080",
                "/",
            ),
            (
                "http://127.0.0.1:8080",
                ip("127.0.0.1"),
                8080,
                "127.0.0.1:8080",
                "/",
            ),
            ("http://127.0.0.1", ip("127.0.0.1"), 80, "127.0.0.1", "/"),
            ("http://127.0.0.1:", ip("127.0.0.1"), 80, "127.0.0.1:", "/"),
            ("HTTP://10.0.0.1:1/x", ip("10.0.0.1"), 1, "10.0.0.1:1", "/x"),
            (
                "http://[::1]:8080/healthz",
                ip("::1"),
                8080,
                "[::1]:8080",
                "/healthz",
            ),
            ("http://[::1]/", ip("::1"), 80, "[::1]", "/"),
            (
                "http://[2001:db8::5]:65535",
                ip("2001:db8::5"),
                65535,
                "[2001:db8::5]:65535",
                "/",
            ),
            (
                "http://[::ffff:127.0.0.1]:9",
                ip("::ffff:127.0.0.1"),
                9,
                "[::ffff:127.0.0.1]:9",
                "/",
            ),
            (
                "http://localhost:8080/a/b?c=d",
                name("localhost"),
                8080,
                "localhost:8080",
                "/a/b?c=d",
            ),
            (
                "http://example.com",
                name("example.com"),
                80,
                "example.com",
                "/",
            ),
            (
                "http://my-host.internal_1:81/#frag",
                name("my-host.internal_1"),
                81,
                "my-host.internal_1:81",
                "/",
            ),
            ("http://h:8080?q=1", name("h"), 8080, "h:8080", "/?q=1"),
            ("http://h/p%20q#f", name("h"), 80, "h", "/p%20q"),
        ];
        for (url, host, port, authority, path) in cases {
            let t = parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                t,
                Target {
                    host,
                    port,
                    authority: authority.to_string(),
                    path: path.to_string()
                },
                "{url}"
            );
        }
    }

    #[test]
    fn bad_urls() {
        let cases = [
            ("127.0.0.1:8080", "not a URL"),
            ("https://127.0.0.1/", "https"),
            ("ftp://127.0.0.1/", "scheme"),
            ("http://", "no host"),
            ("http:///path", "no host"),
            ("http://:8080/", "no host"),
            ("http://127.0.0.1:0/", "port"),
            ("http://127.0.0.1:65536/", "port"),
            ("http://127.0.0.1:+80/", "port"),
            ("http://127.0.0.1:http/", "port"),
            ("http://::1:8080/", "brackets"),
            ("http://[::1:8080/", "]"),
            ("http://[::1]x/", "junk"),
            ("http://[fe80::1%eth0]/", "IPv6"),
            ("http://[127.0.0.1]/", "IPv6"),
            ("http://user:pw@h/", "user"),
            ("http://h/a b", "spaces"),
            ("http://h/a\r\nX: y", "control"),
            ("http://ho st/", "host name"),
        ];
        for (url, needle) in cases {
            match parse_url(url) {
                Ok(t) => panic!("{url} parsed as {t:?}"),
                Err(e) => assert!(e.contains(needle), "{url}: {e:?} lacks {needle:?}"),
            }
        }
    }

    #[test]
    fn the_admin_listener_is_checked_on_healthz_when_on() {
        assert_eq!(admin_url(None), None);
        assert_eq!(admin_url(Some(" ")), None);
        assert_eq!(
            admin_url(Some("0.0.0.0:9090")),
            Some(Ok("http://127.0.0.1:9090/healthz".into()))
        );
        assert_eq!(
            admin_url(Some("[::]:9090")),
            Some(Ok("http://[::1]:9090/healthz".into()))
        );
        assert_eq!(
            admin_url(Some("10.0.0.5:9090")),
            Some(Ok("http://10.0.0.5:9090/healthz".into()))
        );
        for bad in ["9090", "x:1", "127.0.0.1:0"] {
            assert!(matches!(admin_url(Some(bad)), Some(Err(_))), "{bad}");
        }
    }

    #[test]
    fn default_url_follows_fserve_port() {
        assert_eq!(default_url(None).unwrap(), "http://127.0.0.1:8080/");
        assert_eq!(default_url(Some("")).unwrap(), "http://127.0.0.1:8080/");
        assert_eq!(default_url(Some("9000")).unwrap(), "http://127.0.0.1:9000/");
        assert_eq!(default_url(Some(" 81 ")).unwrap(), "http://127.0.0.1:81/");
        for bad in ["0", "x", "65536", "-1"] {
            assert!(default_url(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines() {
        let cases = [
            ("HTTP/1.1 200 OK", Some(200)),
            ("HTTP/1.0 301 Moved Permanently", Some(301)),
            ("HTTP/1.1 204", Some(204)),
            ("HTTP/1.1 503 Service Unavailable", Some(503)),
            ("HTTP/2.0 404 Not Found", Some(404)),
            ("HTTP/1.1 2000 OK", None),
            ("HTTP/1.1 20 OK", None),
            ("HTTP/1.1 099 Low", None),
            ("HTTP/1.1 OK", None),
            ("HTTP/11 200 OK", None),
            ("SSH-2.0-OpenSSH_9.2", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_status_line(line), want, "{line:?}");
        }
        for (status, ok) in [
            (199, false),
            (200, true),
            (204, true),
            (304, true),
            (399, true),
        ] {
            assert_eq!(healthy(status), ok, "{status}");
        }
        for status in [400, 404, 500, 503] {
            assert!(!healthy(status), "{status}");
        }
    }

    /// A one-connection server on 127.0.0.1:0 that reads the request head, answers `reply`
    /// and closes; the thread returns the request head it read.
    fn canned(reply: &'static [u8]) -> (Target, JoinHandle<String>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 512];
            while !head.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                assert!(n > 0, "client closed before its request head ended");
                head.extend_from_slice(&b[..n]);
            }
            s.write_all(reply).unwrap();
            String::from_utf8(head).unwrap()
        });
        let url = format!("http://127.0.0.1:{port}/health?x=1");
        (parse_url(&url).unwrap(), server)
    }

    #[test]
    fn healthy_on_200_and_sends_a_well_formed_request() {
        let (target, server) =
            canned(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        assert_eq!(check(&target, TIMEOUT).unwrap(), 200);
        let head = server.join().unwrap();
        assert_eq!(
            head,
            format!(
                "GET /health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
                 User-Agent: fserve-healthcheck\r\n\r\n",
                target.port
            )
        );
    }

    #[test]
    fn healthy_on_a_redirect() {
        let (target, server) = canned(b"HTTP/1.1 301 Moved Permanently\r\nLocation: docs/\r\n\r\n");
        assert_eq!(check(&target, TIMEOUT).unwrap(), 301);
        server.join().unwrap();
    }

    #[test]
    fn unhealthy_on_503() {
        let (target, server) =
            canned(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        let err = check(&target, TIMEOUT).unwrap_err();
        assert!(matches!(err, Failure::Status(503, _)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "unhealthy status: HTTP/1.1 503 Service Unavailable"
        );
        server.join().unwrap();
    }

    #[test]
    fn unhealthy_on_garbage_and_on_an_early_close() {
        let (target, server) = canned(b"SSH-2.0-OpenSSH_9.2\r\n");
        let err = check(&target, TIMEOUT).unwrap_err();
        assert!(matches!(err, Failure::NotHttp(_)), "{err:?}");
        server.join().unwrap();

        let (target, server) = canned(b"");
        let err = check(&target, TIMEOUT).unwrap_err();
        assert!(matches!(err, Failure::Closed), "{err:?}");
        server.join().unwrap();
    }

    #[test]
    fn unhealthy_when_refused() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let target = parse_url(&format!("http://127.0.0.1:{port}/")).unwrap();
        let err = check(&target, TIMEOUT).unwrap_err();
        assert!(
            matches!(&err, Failure::Connect(_, e) if e.kind() == io::ErrorKind::ConnectionRefused),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("cannot connect to 127.0.0.1:"),
            "{err}"
        );
    }

    #[test]
    fn unhealthy_when_the_server_never_answers() {
        // Accepted by the kernel (backlog) but never answered: the status-line deadline.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = parse_url(&format!("http://127.0.0.1:{port}/")).unwrap();
        let started = Instant::now();
        let err = check(&target, Duration::from_millis(300)).unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(&err, Failure::Io(_, e) if is_timeout(e)),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "timed out waiting for the status line");
        assert!(took < Duration::from_secs(2), "took {took:?}");
        drop(listener);
    }

    #[test]
    fn resolves_names() {
        let (mut target, server) = canned(b"HTTP/1.0 204 No Content\r\n\r\n");
        target.host = Host::Name("localhost".into());
        // localhost may resolve to ::1 first; the canned server listens on IPv4 only, so
        // this also checks that every resolved address is tried.
        assert_eq!(check(&target, TIMEOUT).unwrap(), 204);
        server.join().unwrap();
    }
}
