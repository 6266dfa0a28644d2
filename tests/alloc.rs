//! A warm keep-alive request for a cached file allocates nothing.
//!
//! This is its own test binary (not a module of tests/tests.rs) because it installs a
//! counting global allocator: it must see no allocation but the server's and this client's,
//! and the client below allocates nothing while it measures.
//!
//! A global allocator is an `unsafe` trait: this test binary is the one place outside the
//! io_uring engine allowed unsafe code, each block under `// SAFETY:`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUEST: &[u8] =
    b"GET /page.html HTTP/1.1\r\nHost: localhost\r\nUser-Agent: alloc-test\r\nAccept: */*\r\n\r\n";
const BODY_LEN: usize = 1024;

/// Sends one request and reads the whole response into `buf` (no allocation).
fn round_trip(stream: &mut TcpStream, buf: &mut [u8]) -> usize {
    stream.write_all(REQUEST).unwrap();
    let mut got = 0;
    loop {
        let n = stream.read(&mut buf[got..]).unwrap();
        assert!(n > 0, "server closed the connection");
        got += n;
        if let Some(end) = buf[..got].windows(4).position(|w| w == b"\r\n\r\n") {
            if got >= end + 4 + BODY_LEN {
                assert_eq!(got, end + 4 + BODY_LEN, "more bytes than one response");
                return got;
            }
        }
    }
}

/// Asks for the page in gzip on a connection of its own until it comes compressed.
fn wait_for_variants(addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    loop {
        stream
            .write_all(
                b"GET /page.html HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n",
            )
            .unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_end, len) = loop {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "server closed the connection");
            got.extend_from_slice(&chunk[..n]);
            let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a Content-Length")
                .trim()
                .parse()
                .unwrap();
            break (end + 4, len);
        };
        while got.len() < head_end + len {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "server closed the connection");
            got.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
        if head.contains("\r\ncontent-encoding: gzip\r\n") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no gzip variant within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn warm_cached_request_allocates_nothing() {
    warm_requests_allocate_nothing(None);
}

/// With an access log the worker's buffers are reused: lines are formatted into one,
/// handed to the writer, and the writer hands them back emptied.
#[test]
fn warm_cached_request_with_an_access_log_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    warm_requests_allocate_nothing(Some(fserve::config::LogSink::File(log.clone())));
    let lines = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(lines > 200, "only {lines} lines were logged");
}

// Both tests count every allocation in the process: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn warm_requests_allocate_nothing(access_log: Option<fserve::config::LogSink>) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("page.html"), vec![b'x'; BODY_LEN]).unwrap();
    let mut cfg = fserve::Config::new(dir.path());
    cfg.bind = IpAddr::from([127, 0, 0, 1]);
    cfg.port = 0;
    cfg.threads = 1;
    cfg.access_log = access_log;
    let server = fserve::Server::start(cfg).expect("server starts (io_uring must be available)");
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 8192];
    // The file is compressible: its first request queued it for the background pool, which
    // allocates as it compresses. Wait until its variants are made (and this worker holds
    // them), so that the measurement sees the request path alone.
    round_trip(&mut stream, &mut buf);
    wait_for_variants(server.local_addr());
    // Warm up: cache the file, grow the connection's buffers, format today's Date.
    for _ in 0..200 {
        let n = round_trip(&mut stream, &mut buf);
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
    // Measure over 1.2 s, so the span crosses a Date change and a cache revalidation too.
    let start = std::time::Instant::now();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut requests = 0;
    while start.elapsed() < Duration::from_millis(1200) {
        round_trip(&mut stream, &mut buf);
        requests += 1;
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    assert_eq!(allocations, 0, "allocations in {requests} warm requests");
    drop(stream);
    server.shutdown();
}
