//! The admin listener (`--admin ADDR:PORT`): `/metrics`, `/healthz` and `/readyz`, served
//! from a small thread of its own so that a scrape never runs on a worker's core.
//!
//! - `/healthz`: 200 while the process runs (liveness).
//! - `/readyz`: 200 once every worker accepts, 503 from the moment a shutdown begins
//!   (readiness: a load balancer stops routing here before the listeners close).
//! - `/metrics`: the Prometheus text format (see [`crate::metrics`]).
//! - anything else is 404; methods other than GET and HEAD are 405.
//!
//! One request per connection (`Connection: close`). Bounded like the public side: a head of
//! at most [`MAX_HEAD`] bytes within [`IO_TIMEOUT`], at most [`MAX_CONCURRENT`] connections
//! served at once (each on a short-lived thread), so one slow client cannot hold the others.
//! It never touches the workers' state except to read their counters.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::metrics::{Metrics, Process};

/// Longest request head the admin listener reads.
const MAX_HEAD: usize = 8 * 1024;
/// Read and write timeout per connection, and the deadline for the whole request head.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; more are answered 503 and closed.
const MAX_CONCURRENT: usize = 16;

/// A running admin listener; stopping it (or dropping it) closes the listener and joins.
pub(crate) struct Admin {
    addr: SocketAddr,
    listener: Arc<TcpListener>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    /// Binds `addr` (no SO_REUSEPORT: a second process on the same port is an error) and
    /// starts serving.
    pub(crate) fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<Admin> {
        let listener = Arc::new(TcpListener::bind(addr)?);
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let listener = listener.clone();
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name("fserve-admin".into())
                .spawn(move || accept_loop(&listener, &metrics, &stopping))?
        };
        Ok(Admin {
            addr,
            listener,
            stopping,
            thread: Some(thread),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn stop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        // Wakes the blocked accept with an error (Linux), and refuses new connections.
        let _ = rustix::net::shutdown(&*self.listener, rustix::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, metrics: &Arc<Metrics>, stopping: &AtomicBool) {
    let busy = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) if stopping.load(Ordering::Relaxed) => return,
            Err(_) => {
                // Out of fds or similar: do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if stopping.load(Ordering::Relaxed) {
            return;
        }
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONCURRENT {
            busy.fetch_sub(1, Ordering::AcqRel);
            let mut stream = stream;
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = write_response(&mut stream, false, 503, "text/plain", b"busy\n");
            continue;
        }
        let metrics = metrics.clone();
        let busy_done = busy.clone();
        let spawned = std::thread::Builder::new()
            .name("fserve-admin-conn".into())
            .spawn(move || {
                serve(stream, &metrics);
                busy_done.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Answers one request on `stream`, then closes it.
fn serve(mut stream: TcpStream, metrics: &Metrics) {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let deadline = Instant::now() + IO_TIMEOUT;
    let (method, path) = loop {
        if len == buf.len() {
            let _ = write_response(&mut stream, false, 431, "text/plain", b"head too large\n");
            return;
        }
        if Instant::now() >= deadline {
            return;
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("").to_owned();
                let path = req.path.unwrap_or("").to_owned();
                break (method, path);
            }
            Ok(httparse::Status::Partial) => continue,
            Err(_) => {
                let _ = write_response(&mut stream, false, 400, "text/plain", b"bad request\n");
                return;
            }
        }
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = write_response(&mut stream, false, 405, "text/plain", b"GET or HEAD only\n");
        return;
    }
    let path = path.split('?').next().unwrap_or("");
    let _ = match path {
        "/healthz" => write_response(&mut stream, head_only, 200, "text/plain", b"ok\n"),
        "/readyz" if metrics.is_ready() => {
            write_response(&mut stream, head_only, 200, "text/plain", b"ready\n")
        }
        "/readyz" => write_response(&mut stream, head_only, 503, "text/plain", b"not ready\n"),
        "/metrics" => {
            let mut text = String::with_capacity(8 * 1024);
            metrics.render(&mut text, &Process::read());
            write_response(
                &mut stream,
                head_only,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                text.as_bytes(),
            )
        }
        _ => write_response(&mut stream, head_only, 404, "text/plain", b"not found\n"),
    };
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn write_response(
    stream: &mut TcpStream,
    head_only: bool,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    )
    .into_bytes();
    if status == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    stream.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn get(addr: SocketAddr, raw: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn start() -> (Admin, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(2, "epoll"));
        let admin = Admin::start(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            metrics.clone(),
        )
        .unwrap();
        (admin, metrics)
    }

    #[test]
    fn health_readiness_metrics_and_404() {
        let (admin, metrics) = start();
        let a = admin.local_addr();
        let req = |p: &str| get(a, &format!("GET {p} HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(req("/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(req("/readyz").starts_with("HTTP/1.1 503 "));
        metrics.set_ready(true);
        assert!(req("/readyz").starts_with("HTTP/1.1 200 OK\r\n"));
        let m = req("/metrics?x=1");
        assert!(m.starts_with("HTTP/1.1 200 OK\r\n"), "{m}");
        assert!(m.contains("text/plain; version=0.0.4"));
        assert!(m.contains("\r\n\r\n# HELP fserve_http_requests_total "));
        assert!(m.contains("fserve_workers 2\n"));
        assert!(req("/").starts_with("HTTP/1.1 404 "));
        let post = get(a, "POST /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"));
        let head = get(a, "HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 3\r\n"));
        assert!(get(a, "GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400 "));
    }

    #[test]
    fn a_silent_client_does_not_hold_the_others() {
        let (admin, _) = start();
        let a = admin.local_addr();
        let _silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(a).unwrap()).collect();
        let started = Instant::now();
        assert!(get(a, "GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
        assert!(started.elapsed() < IO_TIMEOUT);
    }

    #[test]
    fn stop_closes_the_listener() {
        let (admin, _) = start();
        let a = admin.local_addr();
        drop(admin);
        assert!(TcpStream::connect(a).is_err());
    }
}
