//! Error responses: 400, 404, 405 (and OPTIONS, 204), 411, 413, 414, 431, 505; request bodies
//! read and discarded; which errors close the connection.

use std::path::Path;

use super::support::*;

fn files(root: &Path) {
    write(root, "index.html", "<h1>home</h1>\n");
    write(root, "a.txt", "alpha\n");
    write(root, "b.txt", "bravo\n");
}

fn server() -> TestServer {
    TestServer::with(files, |_| {})
}

/// Send `raw` on a fresh connection, expect error `code` with
/// `Connection: close`, and the server closing the connection.
#[track_caller]
fn expect_error_and_close(t: &TestServer, raw: &[u8], code: u16) -> Response {
    let (mut c, r) = t.raw(raw, false);
    r.assert_error(code);
    r.assert_connection_close();
    c.assert_closed();
    r
}

// ----- 400 ---------------------------------------------------------------

#[test]
fn malformed_request_line_is_400_and_closes() {
    let t = server();
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x01\x02\x03 / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let (mut c, r) = t.raw(raw, false);
        assert_eq!(
            r.status,
            400,
            "request {:?}\n{}",
            String::from_utf8_lossy(raw),
            r.describe()
        );
        r.assert_error(400).assert_connection_close();
        c.assert_closed();
    }
}

#[test]
fn bad_header_line_is_400_and_closes() {
    let t = server();
    expect_error_and_close(
        &t,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nFoo bar\r\n\r\n",
        400,
    );
    expect_error_and_close(
        &t,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",
        400,
    );
}

#[test]
fn http11_without_host_is_400_and_closes() {
    let t = server();
    expect_error_and_close(&t, b"GET /a.txt HTTP/1.1\r\n\r\n", 400);
    expect_error_and_close(&t, b"GET /a.txt HTTP/1.1\r\nAccept: */*\r\n\r\n", 400);
}

#[test]
fn bad_percent_escapes_are_400_and_close() {
    let t = server();
    for target in ["/%zz", "/%4", "/a%4", "/%", "/a%g1.txt"] {
        let (mut c, r) = t.raw(request("GET", target, &[]), false);
        assert_eq!(r.status, 400, "GET {target}\n{}", r.describe());
        r.assert_error(400).assert_connection_close();
        c.assert_closed();
    }
}

#[test]
fn nul_in_path_is_400_and_closes() {
    let t = server();
    for target in ["/a%00b", "/a.txt%00", "/%00"] {
        let (mut c, r) = t.raw(request("GET", target, &[]), false);
        assert_eq!(r.status, 400, "GET {target}\n{}", r.describe());
        r.assert_error(400).assert_connection_close();
        c.assert_closed();
    }
}

#[test]
fn a_400_ends_a_pipeline() {
    // After a 400 the server closes; the pipelined request behind it is not answered.
    let t = server();
    let mut c = t.connect();
    c.send(format!(
        "{}{}{}",
        request("GET", "/a.txt", &[]),
        request("GET", "/%zz", &[]),
        request("GET", "/b.txt", &[])
    ));
    assert_eq!(c.read_response().text(), "alpha\n");
    c.read_response()
        .assert_error(400)
        .assert_connection_close();
    c.assert_closed();
}

// ----- 404 ---------------------------------------------------------------

#[test]
fn missing_file_is_404_and_keeps_the_connection() {
    let t = server();
    let mut c = t.connect();
    let r = c.get("/does-not-exist.txt");
    r.assert_error(404).assert_not_closing();
    assert_eq!(r.status_line, "HTTP/1.1 404 Not Found");
    c.get("/missing/deeper/file.txt").assert_error(404);
    let h = c.head("/does-not-exist.txt");
    h.assert_status(404);
    assert_eq!(
        h.header("Content-Length"),
        r.header("Content-Length"),
        "HEAD 404 Content-Length"
    );
    assert_eq!(c.get("/a.txt").text(), "alpha\n");
}

// ----- 405 ---------------------------------------------------------------

#[test]
fn other_methods_are_405_with_allow() {
    let t = server();
    let mut c = t.connect();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        c.send(request(method, "/a.txt", &[]));
        let r = c.read_response();
        assert_eq!(r.status, 405, "{method}\n{}", r.describe());
        r.assert_error(405);
        assert_eq!(r.header("Allow"), Some("GET, HEAD, OPTIONS"), "{method}");
        // No body was sent, so the connection stays usable.
        r.assert_not_closing();
        let g = c.get("/a.txt");
        g.assert_status(200);
        assert_eq!(g.text(), "alpha\n", "GET after {method}");
    }
}

#[test]
fn post_with_empty_body_is_405_and_keeps_the_connection() {
    let t = server();
    let mut c = t.connect();
    c.send(request("POST", "/a.txt", &["Content-Length: 0"]));
    let r = c.read_response();
    r.assert_error(405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(c.get("/b.txt").text(), "bravo\n");
}

// ----- 414 ---------------------------------------------------------------

/// A target of exactly `len` bytes made of short segments (so no single
/// name is too long for the file system).
fn long_target(len: usize) -> String {
    let mut s = String::with_capacity(len);
    while s.len() < len {
        s.push_str("/abcdefghij");
    }
    s.truncate(len);
    s
}

#[test]
fn target_over_8k_is_414() {
    let t = server();
    let target = long_target(8193);
    assert_eq!(target.len(), 8193);
    let (_c, r) = t.raw(request("GET", &target, &[]), false);
    r.assert_error(414);
}

#[test]
fn target_of_exactly_8k_is_not_414() {
    let t = server();
    let target = long_target(8192);
    let (_c, r) = t.raw(request("GET", &target, &[]), false);
    r.assert_error(404);
}

// ----- 431 ---------------------------------------------------------------

#[test]
fn head_over_max_header_bytes_is_431() {
    let t = TestServer::with(files, |cfg| cfg.max_header_bytes = 4096);
    let big = format!("X-Big: {}", "a".repeat(5000));
    let (_c, r) = t.raw(request("GET", "/a.txt", &[&big]), false);
    r.assert_error(431);
    // Well under the limit is fine.
    let ok = format!("X-Big: {}", "a".repeat(3000));
    let (_c, r) = t.raw(request("GET", "/a.txt", &[&ok]), false);
    r.assert_status(200);
    assert_eq!(r.text(), "alpha\n");
}

#[test]
fn head_over_default_16k_is_431() {
    let t = server();
    let big = format!("X-Big: {}", "b".repeat(20 * 1024));
    let (_c, r) = t.raw(request("GET", "/a.txt", &[&big]), false);
    r.assert_error(431);
    let ok = format!("X-Big: {}", "b".repeat(10 * 1024));
    let (_c, r) = t.raw(request("GET", "/a.txt", &[&ok]), false);
    r.assert_status(200);
}

#[test]
fn many_small_headers_over_the_limit_are_431() {
    let t = TestServer::with(files, |cfg| cfg.max_header_bytes = 4096);
    let lines: Vec<String> = (0..300).map(|i| format!("X-H{i}: value-{i}")).collect();
    let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
    let raw = request("GET", "/a.txt", &refs);
    assert!(raw.len() > 4096);
    let (_c, r) = t.raw(raw, false);
    r.assert_error(431);
}

// ----- 505 ---------------------------------------------------------------

#[test]
fn unsupported_versions_are_505() {
    let t = server();
    for version in ["HTTP/2.0", "HTTP/1.2"] {
        let (_c, r) = t.raw(format!("GET /a.txt {version}\r\nHost: x\r\n\r\n"), false);
        assert_eq!(r.status, 505, "{version}\n{}", r.describe());
        r.assert_error(505);
    }
}

// ----- request bodies ----------------------------------------------------

#[test]
fn request_body_is_discarded_and_pipelining_continues() {
    let t = server();
    let mut c = t.connect();
    c.send(format!(
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello{}",
        request("GET", "/b.txt", &[])
    ));
    let r = c.read_response();
    r.assert_status(200);
    assert_eq!(r.text(), "alpha\n");
    let r = c.read_response();
    r.assert_status(200);
    assert_eq!(r.text(), "bravo\n");
}

#[test]
fn request_body_arriving_late_is_discarded() {
    let t = server();
    let mut c = t.connect();
    c.send("GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhel");
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send("lo world");
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send(request("GET", "/b.txt", &[]));
    let r = c.read_response();
    assert_eq!(r.text(), "alpha\n");
    let r = c.read_response();
    r.assert_status(200);
    assert_eq!(r.text(), "bravo\n");
}

#[test]
fn body_of_exactly_64k_is_discarded() {
    let t = server();
    let mut c = t.connect();
    let mut raw = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'z', 65536));
    raw.extend_from_slice(request("GET", "/b.txt", &[]).as_bytes());
    c.send(raw);
    assert_eq!(c.read_response().assert_status(200).body, b"alpha\n");
    assert_eq!(c.read_response().assert_status(200).body, b"bravo\n");
}

#[test]
fn body_over_64k_is_413_and_closes() {
    let t = server();
    let r = expect_error_and_close(
        &t,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n",
        413,
    );
    assert_eq!(r.status, 413);
    expect_error_and_close(
        &t,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n",
        413,
    );
}

#[test]
fn chunked_request_is_411_and_closes() {
    let t = server();
    expect_error_and_close(
        &t,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        411,
    );
}

#[test]
fn invalid_content_length_is_400_and_closes() {
    let t = server();
    for cl in ["abc", "-1", "5, 6"] {
        let raw = format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: {cl}\r\n\r\n");
        let (mut c, r) = t.raw(raw, false);
        assert_eq!(r.status, 400, "Content-Length: {cl}\n{}", r.describe());
        r.assert_connection_close();
        c.assert_closed();
    }
}

#[test]
fn options_is_204_with_allow() {
    let t = server();
    let mut c = t.connect();
    for target in ["/a.txt", "*"] {
        c.send(format!("OPTIONS {target} HTTP/1.1\r\nHost: x\r\n\r\n"));
        let r = c.read_response();
        r.assert_line(204);
        assert_eq!(
            r.header("Allow"),
            Some("GET, HEAD, OPTIONS"),
            "OPTIONS {target}"
        );
        r.assert_not_closing();
        assert_eq!(c.get("/a.txt").text(), "alpha\n");
    }
}

#[test]
fn post_with_a_small_body_is_405_and_the_body_is_skipped() {
    let t = server();
    let mut c = t.connect();
    c.send(format!(
        "POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nGET /b.txt {}",
        request("GET", "/b.txt", &[])
    ));
    c.read_response().assert_error(405);
    let r = c.read_response();
    r.assert_status(200);
    assert_eq!(r.text(), "bravo\n");
}
