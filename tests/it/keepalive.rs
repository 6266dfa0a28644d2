//! Persistent connections: HTTP/1.1 default keep-alive, HTTP/1.0 opt-in,
//! `Connection: close`, and many concurrent connections.

use std::path::Path;

use super::support::*;

fn files(root: &Path) {
    write(root, "index.html", "<h1>home</h1>\n");
    write(root, "a.txt", "alpha\n");
    write(root, "b.txt", "bravo bravo\n");
}

#[test]
fn http11_serves_several_sequential_requests_on_one_connection() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    for i in 0..6 {
        let (target, body) = match i % 3 {
            0 => ("/a.txt", "alpha\n"),
            1 => ("/b.txt", "bravo bravo\n"),
            _ => ("/index.html", "<h1>home</h1>\n"),
        };
        let r = c.get(target);
        r.assert_status(200).assert_not_closing();
        assert_eq!(r.text(), body, "request {i} ({target})");
    }
    // A 404 in between does not end the connection either.
    c.get("/nope.txt").assert_error(404).assert_not_closing();
    let r = c.get("/a.txt");
    r.assert_status(200);
    assert_eq!(r.text(), "alpha\n");
}

#[test]
fn http10_without_keepalive_gets_close_and_is_closed() {
    let t = TestServer::with(files, |_| {});
    let (mut c, r) = t.raw("GET /a.txt HTTP/1.0\r\nHost: localhost\r\n\r\n", false);
    r.assert_status(200).assert_connection_close();
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.text(), "alpha\n");
    c.assert_closed();
}

#[test]
fn http10_without_host_or_keepalive_is_served_and_closed() {
    let t = TestServer::with(files, |_| {});
    let (mut c, r) = t.raw("GET /b.txt HTTP/1.0\r\n\r\n", false);
    r.assert_status(200).assert_connection_close();
    assert_eq!(r.text(), "bravo bravo\n");
    c.assert_closed();
}

#[test]
fn http10_with_keepalive_stays_open() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    for (target, body) in [
        ("/a.txt", "alpha\n"),
        ("/b.txt", "bravo bravo\n"),
        ("/a.txt", "alpha\n"),
    ] {
        c.send(format!(
            "GET {target} HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"
        ));
        let r = c.read_response();
        r.assert_status(200);
        assert_eq!(
            r.header("Connection").map(|v| v.to_ascii_lowercase()),
            Some("keep-alive".to_string()),
            "HTTP/1.0 keep-alive must be confirmed\n{}",
            r.describe()
        );
        assert_eq!(r.text(), body);
    }
    // Then a plain HTTP/1.0 request on the same connection ends it.
    c.send("GET /a.txt HTTP/1.0\r\nHost: localhost\r\n\r\n");
    c.read_response()
        .assert_status(200)
        .assert_connection_close();
    c.assert_closed();
}

#[test]
fn http10_keepalive_token_is_case_insensitive() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    c.send("GET /a.txt HTTP/1.0\r\nHost: localhost\r\nconnection: Keep-Alive\r\n\r\n");
    let r = c.read_response();
    r.assert_status(200);
    assert_eq!(
        r.header("Connection")
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Some("keep-alive")
    );
    c.send("GET /b.txt HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().text(), "bravo bravo\n");
}

#[test]
fn http11_connection_close_gets_close_and_is_closed() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    c.get("/a.txt").assert_status(200);
    c.send(request("GET", "/b.txt", &["Connection: close"]));
    let r = c.read_response();
    r.assert_status(200).assert_connection_close();
    assert_eq!(r.text(), "bravo bravo\n");
    c.assert_closed();
}

#[test]
fn http11_connection_close_is_case_insensitive() {
    let t = TestServer::with(files, |_| {});
    let (mut c, r) = t.raw(request("GET", "/a.txt", &["connection: Close"]), false);
    r.assert_status(200).assert_connection_close();
    c.assert_closed();
}

#[test]
fn http11_connection_close_on_head_and_404() {
    let t = TestServer::with(files, |_| {});
    let (mut c, r) = t.raw(request("HEAD", "/a.txt", &["Connection: close"]), true);
    r.assert_status(200).assert_connection_close();
    c.assert_closed();
    let (mut c, r) = t.raw(request("GET", "/missing", &["Connection: close"]), false);
    r.assert_error(404).assert_connection_close();
    c.assert_closed();
}

#[test]
fn requests_after_close_are_not_answered() {
    // A request pipelined behind `Connection: close` must not be answered.
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    let mut raw = request("GET", "/a.txt", &["Connection: close"]);
    raw.push_str(&request("GET", "/b.txt", &[]));
    c.send(raw);
    let r = c.read_response();
    r.assert_status(200).assert_connection_close();
    assert_eq!(r.text(), "alpha\n");
    c.assert_closed();
}

#[test]
fn idle_keepalive_connection_stays_open_briefly() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    c.get("/a.txt").assert_status(200);
    c.assert_silent_for(std::time::Duration::from_millis(700));
    c.get("/b.txt").assert_status(200);
}

#[test]
fn many_concurrent_connections_are_all_served() {
    let t = TestServer::with(files, |_| {});
    let addr = t.addr;
    // Open them all first so they really are concurrent.
    let mut conns: Vec<Conn> = (0..40).map(|_| Conn::open(addr)).collect();
    for c in conns.iter_mut() {
        c.send(request("GET", "/a.txt", &[]));
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let r = c.read_response();
        r.assert_status(200);
        assert_eq!(r.text(), "alpha\n", "connection {i}");
    }
    for c in conns.iter_mut() {
        assert_eq!(c.get("/b.txt").text(), "bravo bravo\n");
    }
}

#[test]
fn a_connection_idle_past_the_hot_window_is_served_again() {
    // After 250 ms without a request a connection gives back its buffers and waits in a
    // task of its own; its next requests must be served as before, on the same socket.
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    for _ in 0..3 {
        c.get("/a.txt").assert_status(200);
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    c.send(request("GET", "/a.txt", &[]).repeat(3));
    for _ in 0..3 {
        c.read_response().assert_status(200);
    }
}
