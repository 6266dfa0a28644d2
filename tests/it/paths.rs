//! Request targets: query strings ignored, absolute-form, percent-decoding.

use std::path::Path;

use super::support::*;

fn files(root: &Path) {
    write(root, "index.html", "<h1>home</h1>\n");
    write(root, "with space.txt", "spaced out\n");
    write(root, "café.txt", "utf-8 name\n");
    write(root, "a+b.txt", "plus sign\n");
    write(root, "sub/page.html", "<p>sub page</p>\n");
    write(root, "%41.txt", "literal percent name\n");
}

#[test]
fn query_string_is_ignored() {
    let t = TestServer::with(files, |_| {});
    let plain = t.get("/index.html");
    plain.assert_status(200);
    for target in [
        "/index.html?v=3",
        "/index.html?",
        "/index.html?a=1&b=%zz",
        "/?x=y",
    ] {
        let r = t.get(target);
        r.assert_status(200);
        assert_eq!(r.body, plain.body, "{target}");
        assert_eq!(
            r.header("Content-Type"),
            Some("text/html; charset=utf-8"),
            "{target}"
        );
    }
}

#[test]
fn absolute_form_target_is_served() {
    let t = TestServer::with(files, |_| {});
    let (_c, r) = t.raw(
        "GET http://example.com/index.html HTTP/1.1\r\nHost: example.com\r\n\r\n",
        false,
    );
    r.assert_status(200);
    assert_eq!(r.text(), "<h1>home</h1>\n");
    let (_c, r) = t.raw(
        "GET http://example.com/sub/page.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        false,
    );
    r.assert_status(200);
    assert_eq!(r.text(), "<p>sub page</p>\n");
}

#[test]
fn percent_encoded_names_are_decoded() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    let r = c.get("/with%20space.txt");
    r.assert_status(200);
    assert_eq!(r.text(), "spaced out\n");
    let r = c.get("/caf%C3%A9.txt");
    r.assert_status(200);
    assert_eq!(r.text(), "utf-8 name\n");
    let r = c.get("/caf%c3%a9.txt");
    r.assert_status(200);
    assert_eq!(r.text(), "utf-8 name\n");
    // Encoded letters and slashes-free segments decode to the same file.
    let r = c.get("/%69ndex.html");
    r.assert_status(200);
    assert_eq!(r.text(), "<h1>home</h1>\n");
    let r = c.get("/sub/%70age.html");
    assert_eq!(r.text(), "<p>sub page</p>\n");
}

#[test]
fn plus_is_not_a_space_in_paths() {
    let t = TestServer::with(files, |_| {});
    let r = t.get("/a+b.txt");
    r.assert_status(200);
    assert_eq!(r.text(), "plus sign\n");
    t.get("/a%2Bb.txt").assert_status(200);
}

#[test]
fn percent_decoding_happens_exactly_once() {
    let t = TestServer::with(files, |_| {});
    // %2541 decodes once to "%41" — the file literally named %41.txt.
    let r = t.get("/%2541.txt");
    r.assert_status(200);
    assert_eq!(r.text(), "literal percent name\n");
    // Decoding twice would give "A.txt", which does not exist either way.
    t.get("/A.txt").assert_error(404);
}

#[test]
fn dot_segments_inside_the_root_are_resolved() {
    let t = TestServer::with(files, |_| {});
    let r = t.get("/sub/../index.html");
    r.assert_status(200);
    assert_eq!(r.text(), "<h1>home</h1>\n");
    let r = t.get("/sub/./page.html");
    r.assert_status(200);
    assert_eq!(r.text(), "<p>sub page</p>\n");
}

#[test]
fn fifo_is_not_served_and_does_not_hang() {
    let t = TestServer::with(files, |_| {});
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        t.root.join("pipe.txt"),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .expect("mkfifo");
    let mut c = t.connect();
    c.get("/pipe.txt").assert_error(404);
    // The worker is not stuck on it.
    assert_eq!(c.get("/index.html").text(), "<h1>home</h1>\n");
}
