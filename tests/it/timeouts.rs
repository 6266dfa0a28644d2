//! Timeouts: idle keep-alive connections, the request-head deadline (no
//! slowloris), and a reader that stops reading a large response.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::support::*;

fn files(root: &Path) {
    write(root, "a.txt", "alpha\n");
}

/// After a close, the server may have said why: if anything arrived, it must
/// be one complete 408 response with `Connection: close`.
fn assert_nothing_or_408(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "unexpected bytes before close: {text:?}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "408 without Connection: close: {text:?}"
    );
}

#[test]
fn keepalive_timeout_closes_idle_connections() {
    let t = TestServer::with(files, |cfg| {
        cfg.keepalive_timeout = Duration::from_millis(300);
    });
    let mut c = t.connect();
    c.get("/a.txt").assert_status(200);
    let start = Instant::now();
    let rest = c.read_until_closed();
    assert!(
        rest.is_empty(),
        "an idle close sends nothing, got {:?}",
        String::from_utf8_lossy(&rest)
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "closed too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2000),
        "closed too late: {took:?}"
    );
}

#[test]
fn keepalive_timeout_restarts_with_each_request() {
    let t = TestServer::with(files, |cfg| {
        cfg.keepalive_timeout = Duration::from_millis(600);
    });
    let mut c = t.connect();
    // Requests 350 ms apart: each is within the idle timeout of the previous one.
    for _ in 0..4 {
        c.get("/a.txt").assert_status(200);
        std::thread::sleep(Duration::from_millis(350));
    }
    c.get("/a.txt").assert_status(200);
}

#[test]
fn parked_connections_each_close_at_their_own_deadline() {
    // Past a short hot wait an idle connection parks, and the worker's sweeper closes it
    // at its own keep-alive deadline. Two connections idle from different moments close
    // at different times; one that keeps asking (parking and waking in between) stays.
    let keepalive = Duration::from_millis(900);
    let t = TestServer::with(files, |cfg| {
        cfg.threads = 1;
        cfg.keepalive_timeout = keepalive;
    });
    let idle_from = |delay: Duration| {
        let mut c = t.connect();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            c.get("/a.txt").assert_status(200);
            let last = Instant::now();
            assert!(c.read_until_closed().is_empty());
            last.elapsed()
        })
    };
    let early = idle_from(Duration::ZERO);
    let late = idle_from(Duration::from_millis(500));
    let mut busy = t.connect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2400) {
        busy.get("/a.txt").assert_status(200);
        std::thread::sleep(Duration::from_millis(400));
    }
    busy.get("/a.txt").assert_status(200);
    for (name, waiter) in [("early", early), ("late", late)] {
        let idle = waiter.join().unwrap();
        assert!(
            idle >= keepalive - Duration::from_millis(100) && idle < keepalive * 2,
            "the {name} connection closed after {idle:?} idle (keep-alive {keepalive:?})"
        );
    }
}

#[test]
fn dribbled_request_head_hits_the_header_deadline() {
    // header_timeout is a deadline for the whole head, not an idle timer: a
    // client sending a byte every 100 ms never gets to keep the connection.
    let t = TestServer::with(files, |cfg| {
        cfg.header_timeout = Duration::from_millis(500);
    });
    let mut c = t.connect();
    let start = Instant::now();
    let drip = b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for b in drip.iter().take(12) {
        // Writes may fail once the server has given up: that is the point.
        let _ = c.stream.write_all(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = c.read_until_closed();
    assert_nothing_or_408(&got);
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "slow head closed only after {took:?}"
    );
}

#[test]
fn silent_new_connection_hits_the_header_deadline() {
    // A client that connects and sends nothing must not hold the connection
    // for the (long) keep-alive timeout: the first head is due within
    // header_timeout of the accept.
    let t = TestServer::with(files, |cfg| {
        cfg.header_timeout = Duration::from_millis(300);
        cfg.keepalive_timeout = Duration::from_secs(30);
    });
    let mut c = t.connect();
    let start = Instant::now();
    let got = c.read_until_closed();
    assert_nothing_or_408(&got);
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "closed after {:?}",
        start.elapsed()
    );
}

#[test]
fn partial_head_then_completion_within_deadline_is_served() {
    let t = TestServer::with(files, |cfg| {
        cfg.header_timeout = Duration::from_millis(1500);
    });
    let mut c = t.connect();
    c.send("GET /a.txt HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(300));
    c.send("Host: localhost\r\n\r\n");
    let r = c.read_response();
    r.assert_status(200);
    assert_eq!(r.text(), "alpha\n");
}

#[test]
fn stalled_reader_is_dropped_after_send_timeout() {
    const LEN: usize = 24 * 1024 * 1024;
    let t = TestServer::with(
        |root| {
            files(root);
            write(root, "huge.bin", pattern_bytes(LEN, 123));
        },
        |cfg| cfg.send_timeout = Duration::from_millis(300),
    );
    let mut c = t.connect();
    // A small receive buffer so the response cannot fit in flight.
    set_rcvbuf(&c.stream, 16 * 1024);
    c.send(request("GET", "/huge.bin", &[]));
    std::thread::sleep(Duration::from_millis(1300));
    // The server meanwhile serves others.
    assert_eq!(t.get("/a.txt").text(), "alpha\n");
    let got = c.read_until_closed();
    let head_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let body = &got[head_end..];
    assert!(
        body.len() < LEN,
        "the whole {LEN}-byte body arrived although the reader stalled past send_timeout"
    );
    let want = pattern_bytes(LEN, 123);
    assert_body_eq(
        body,
        &want[..body.len()],
        "prefix received before the abort",
    );
}
