//! Pipelining: many requests in one write, answered in order; a request
//! dribbled in byte by byte.

use std::path::Path;
use std::time::Duration;

use super::support::*;

fn files(root: &Path) {
    write(root, "index.html", "<h1>home</h1>\n");
    write(root, "a.txt", "alpha\n");
    write(root, "b.css", "body { color: red }\n");
    write(root, "c.json", "{\"c\": 3}\n");
    write(root, "big.bin", pattern_bytes(300 * 1024, 7));
}

#[test]
fn ten_pipelined_requests_in_one_write_are_answered_in_order() {
    let t = TestServer::with(files, |_| {});
    // (method, target, status, body or None for HEAD / don't care)
    let plan: &[(&str, &str, u16, Option<&str>)] = &[
        ("GET", "/a.txt", 200, Some("alpha\n")),
        ("HEAD", "/a.txt", 200, None),
        ("GET", "/missing.txt", 404, None),
        ("GET", "/b.css", 200, Some("body { color: red }\n")),
        ("HEAD", "/missing.txt", 404, None),
        ("GET", "/c.json", 200, Some("{\"c\": 3}\n")),
        ("HEAD", "/index.html", 200, None),
        ("GET", "/index.html", 200, Some("<h1>home</h1>\n")),
        ("GET", "/nope/", 404, None),
        ("GET", "/a.txt", 200, Some("alpha\n")),
    ];
    let mut raw = String::new();
    for (m, target, _, _) in plan {
        raw.push_str(&request(m, target, &[]));
    }
    let mut c = t.connect();
    c.send(&raw);
    for (i, (m, target, status, body)) in plan.iter().enumerate() {
        let r = c.read_response_for(*m == "HEAD");
        assert_eq!(
            r.status,
            *status,
            "response {i} to {m} {target}\n{}",
            r.describe()
        );
        r.assert_not_closing();
        if *m == "HEAD" {
            let get_len = match *target {
                "/a.txt" => "alpha\n".len(),
                "/index.html" => "<h1>home</h1>\n".len(),
                _ => continue,
            };
            assert_eq!(
                r.header("Content-Length"),
                Some(get_len.to_string().as_str()),
                "HEAD {target}"
            );
        }
        if let Some(b) = body {
            assert_eq!(r.text(), *b, "response {i} to {m} {target}");
        }
        if *status == 404 && *m == "GET" {
            r.assert_error(404);
        }
    }
    // Nothing extra, and the connection is still usable.
    assert!(
        c.buffered().is_empty(),
        "stray bytes: {:?}",
        String::from_utf8_lossy(c.buffered())
    );
    assert_eq!(c.get("/a.txt").text(), "alpha\n");
}

#[test]
fn pipelined_large_and_small_bodies_stay_in_order() {
    let t = TestServer::with(files, |_| {});
    let big = pattern_bytes(300 * 1024, 7);
    let mut raw = String::new();
    for target in ["/big.bin", "/a.txt", "/big.bin", "/b.css"] {
        raw.push_str(&request("GET", target, &[]));
    }
    let mut c = t.connect();
    c.send(raw);
    assert_body_eq(
        &c.read_response().assert_status(200).body,
        &big,
        "first big",
    );
    assert_eq!(c.read_response().text(), "alpha\n");
    assert_body_eq(
        &c.read_response().assert_status(200).body,
        &big,
        "second big",
    );
    assert_eq!(c.read_response().text(), "body { color: red }\n");
}

#[test]
fn fifty_pipelined_requests() {
    let t = TestServer::with(files, |_| {});
    let mut raw = String::new();
    for i in 0..50 {
        let target = if i % 2 == 0 { "/a.txt" } else { "/c.json" };
        raw.push_str(&request("GET", target, &[]));
    }
    let mut c = t.connect();
    c.send(raw);
    for i in 0..50 {
        let r = c.read_response();
        r.assert_status(200);
        let want = if i % 2 == 0 {
            "alpha\n"
        } else {
            "{\"c\": 3}\n"
        };
        assert_eq!(r.text(), want, "response {i}");
    }
}

#[test]
fn request_split_byte_by_byte_still_works() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    c.send_slowly(
        request("GET", "/a.txt", &["Accept: */*"]),
        Duration::from_millis(3),
    );
    let r = c.read_response();
    r.assert_status(200);
    assert_eq!(r.text(), "alpha\n");
    // And the connection keeps working afterwards, also for a split HEAD.
    c.send_slowly(request("HEAD", "/b.css", &[]), Duration::from_millis(2));
    let r = c.read_head_response();
    r.assert_status(200);
    assert_eq!(r.header("Content-Length"), Some("20"));
    assert_eq!(c.get("/c.json").text(), "{\"c\": 3}\n");
}

#[test]
fn pipelined_requests_split_at_odd_boundaries() {
    let t = TestServer::with(files, |_| {});
    let mut raw = String::new();
    for target in ["/a.txt", "/b.css", "/c.json"] {
        raw.push_str(&request("GET", target, &[]));
    }
    let bytes = raw.as_bytes();
    let mut c = t.connect();
    // Chunks that cut through the request line, a header and the CRLFCRLF.
    let cuts = [5, 17, 40, 41, 42, 60, 90, 91];
    let mut prev = 0;
    for cut in cuts.iter().copied().chain(std::iter::once(bytes.len())) {
        let cut = cut.min(bytes.len());
        c.send(&bytes[prev..cut]);
        prev = cut;
        std::thread::sleep(Duration::from_millis(15));
    }
    assert_eq!(c.read_response().text(), "alpha\n");
    assert_eq!(c.read_response().text(), "body { color: red }\n");
    assert_eq!(c.read_response().text(), "{\"c\": 3}\n");
}

#[test]
fn empty_line_before_a_request_is_tolerated() {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before
    // the request line (some clients send CRLF after a body).
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    c.send(format!(
        "{}\r\n{}",
        request("GET", "/a.txt", &[]),
        request("GET", "/c.json", &[])
    ));
    assert_eq!(c.read_response().text(), "alpha\n");
    let r = c.read_response();
    r.assert_status(200);
    assert_eq!(r.text(), "{\"c\": 3}\n");
}
