//! Response headers on a 200: Date, Server, Content-Type, Content-Length,
//! Last-Modified (the file's mtime) and ETag (a content hash for files held in memory, nginx's
//! mtime-size for files sent from disk); HEAD = GET minus body.

use std::path::Path;

use super::support::*;

/// 784111777 s = Sun, 06 Nov 1994 08:49:37 GMT (the RFC example), hex 2ebc98a1.
const RFC_MTIME: u64 = 784_111_777;

fn files(root: &Path) {
    let p = write(root, "page.txt", "hello headers\n"); // 14 bytes
    set_mtime(&p, RFC_MTIME, 0);
    let p = write(root, "frac.txt", "x".repeat(300)); // 300 = 0x12c
    set_mtime(&p, 1_700_000_000, 750_000_000); // fraction must be truncated
    let p = write(root, "big.bin", pattern_bytes(1024 * 1024 + 17, 3)); // above the cache limit
    set_mtime(&p, 1_600_000_000, 0);
    let p = write(root, "empty.txt", "");
    set_mtime(&p, RFC_MTIME, 0);
}

#[test]
fn date_header_is_a_current_imf_fixdate() {
    let t = TestServer::with(files, |_| {});
    let before = now_secs();
    let r = t.get("/page.txt");
    let after = now_secs();
    r.assert_status(200);
    let date = r.expect_header("Date");
    assert_eq!(date.len(), 29, "Date {date:?} is not 29 characters");
    let secs =
        parse_imf_fixdate(date).unwrap_or_else(|| panic!("Date {date:?} is not an IMF-fixdate"));
    assert!(
        secs + 2 >= before && secs <= after + 1,
        "Date {date:?} ({secs}) is not now ({before}..={after})"
    );
    assert_eq!(r.header_all("Date").len(), 1, "exactly one Date header");
}

#[test]
fn server_type_and_length_headers() {
    let t = TestServer::with(files, |_| {});
    let r = t.get("/page.txt");
    r.assert_status(200);
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.header("Server"), Some("fserve"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("Content-Length"), Some("14"));
    assert_eq!(
        r.header_all("Content-Length").len(),
        1,
        "exactly one Content-Length"
    );
    assert_eq!(r.text(), "hello headers\n");
}

#[test]
fn last_modified_is_the_exact_mtime() {
    let t = TestServer::with(files, |_| {});
    let r = t.get("/page.txt");
    r.assert_status(200);
    assert_eq!(
        r.header("Last-Modified"),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
    let r = t.get("/frac.txt");
    assert_eq!(
        r.header("Last-Modified"),
        Some("Tue, 14 Nov 2023 22:13:20 GMT")
    );
    let r = t.get("/big.bin");
    assert_eq!(
        r.header("Last-Modified"),
        Some(imf_fixdate(1_600_000_000).as_str())
    );
    assert_eq!(
        r.header("Last-Modified"),
        Some("Sun, 13 Sep 2020 12:26:40 GMT")
    );
}

#[test]
fn etag_of_a_file_held_in_memory_is_a_hash_of_its_content() {
    let t = TestServer::with(files, |_| {});
    for (target, bytes) in [
        ("/page.txt", b"hello headers\n".to_vec()),
        ("/frac.txt", "x".repeat(300).into_bytes()),
        ("/empty.txt", Vec::new()),
    ] {
        let r = t.get(target);
        r.assert_whole(&bytes);
        let etag = r.expect_header("ETag");
        assert_eq!(etag, content_etag(&bytes), "{target}");
        // `"` + 16 lowercase hex digits + `"`: never nginx's mtime-size form.
        let hex = etag.trim_matches('"');
        assert!(
            hex.len() == 16
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{target}: ETag {etag:?}"
        );
    }
    let r = t.get("/empty.txt");
    assert_eq!(r.header("Content-Length"), Some("0"));
    assert!(r.body.is_empty());
}

#[test]
fn etag_of_a_file_sent_from_disk_is_hex_mtime_dash_hex_size() {
    let t = TestServer::with(files, |_| {});
    let r = t.get("/big.bin");
    r.assert_status(200);
    assert_eq!(
        r.header("ETag"),
        Some(format!("\"{:x}-{:x}\"", 1_600_000_000u64, 1024 * 1024 + 17).as_str())
    );
    assert_eq!(r.header("ETag"), Some("\"5f5e1000-100011\""));
}

#[test]
fn a_touched_file_held_in_memory_keeps_its_etag_and_changes_last_modified() {
    let t = TestServer::with(files, |_| {});
    let etag = content_etag(b"hello headers\n");
    let r = t.get("/page.txt");
    assert_eq!(r.header("ETag"), Some(etag.as_str()));
    assert_eq!(
        r.header("Last-Modified"),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
    set_mtime(&t.root.join("page.txt"), 1_700_000_000, 0);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let r = t.get("/page.txt");
    r.assert_whole(b"hello headers\n");
    // The same bytes: a cache holding them may keep them.
    assert_eq!(r.header("ETag"), Some(etag.as_str()));
    assert_eq!(
        r.header("Last-Modified"),
        Some("Tue, 14 Nov 2023 22:13:20 GMT")
    );
    let r = t.get_h("/page.txt", &[&format!("If-None-Match: {etag}")]);
    r.assert_not_modified(&etag, "Tue, 14 Nov 2023 22:13:20 GMT");
}

#[test]
fn a_touched_file_sent_from_disk_gets_a_new_etag_and_last_modified() {
    let t = TestServer::with(files, |_| {});
    let r = t.get("/big.bin");
    assert_eq!(r.header("ETag"), Some("\"5f5e1000-100011\""));
    set_mtime(&t.root.join("big.bin"), 1_700_000_000, 0);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let r = t.get("/big.bin");
    r.assert_status(200);
    assert_eq!(r.header("ETag"), Some("\"6553f100-100011\""));
    assert_eq!(
        r.header("Last-Modified"),
        Some("Tue, 14 Nov 2023 22:13:20 GMT")
    );
    let r = t.get_h("/big.bin", &["If-None-Match: \"5f5e1000-100011\""]);
    r.assert_status(200);
}

#[test]
fn two_contents_with_the_same_size_and_mtime_get_different_etags() {
    // Two releases built reproducibly: same length, mtime 0 (SOURCE_DATE_EPOCH), other bytes.
    const RELEASE_1: &[u8] = b"release 1\n";
    const RELEASE_2: &[u8] = b"release 2\n";
    let t = TestServer::with(
        |root| {
            for (name, bytes) in [("one.js", RELEASE_1), ("two.js", RELEASE_2)] {
                let p = write(root, name, bytes);
                set_mtime(&p, 0, 0);
            }
        },
        |_| {},
    );
    let one = t.get("/one.js");
    let two = t.get("/two.js");
    one.assert_whole(RELEASE_1);
    two.assert_whole(RELEASE_2);
    assert_eq!(one.header("Last-Modified"), two.header("Last-Modified"));
    assert_ne!(one.header("ETag"), two.header("ETag"));
    assert_eq!(one.header("ETag"), Some(content_etag(RELEASE_1).as_str()));
    assert_eq!(two.header("ETag"), Some(content_etag(RELEASE_2).as_str()));

    // The deploy: release 2 renamed over release 1, same size, same mtime. A client holding
    // release 1's tag gets the new bytes, not a 304.
    let old = content_etag(RELEASE_1);
    std::fs::rename(t.root.join("two.js"), t.root.join("one.js")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let r = t.get_h("/one.js", &[&format!("If-None-Match: {old}")]);
    assert_eq!(r.status, 200, "stale ETag still matches\n{}", r.describe());
    r.assert_whole(RELEASE_2);
    assert_eq!(r.header("ETag"), Some(content_etag(RELEASE_2).as_str()));
}

#[test]
fn replicas_serving_the_same_bytes_agree_on_the_etag() {
    // Two instances, as behind a load balancer: the copies were made at different times.
    let bytes = text_bytes(5000);
    let a = TestServer::with(
        |root| set_mtime(&write(root, "app.js", &bytes), 1_700_000_000, 0),
        |_| {},
    );
    let b = TestServer::with(
        |root| set_mtime(&write(root, "app.js", &bytes), 1_700_000_123, 0),
        |_| {},
    );
    let ra = a.get("/app.js");
    let rb = b.get("/app.js");
    ra.assert_whole(&bytes);
    rb.assert_whole(&bytes);
    let etag = content_etag(&bytes);
    assert_eq!(ra.header("ETag"), Some(etag.as_str()));
    assert_eq!(rb.header("ETag"), Some(etag.as_str()));
    // A tag one replica gave is honoured by the other.
    let r = b.get_h("/app.js", &[&format!("If-None-Match: {etag}")]);
    r.assert_status(304);
}

#[test]
fn head_has_the_same_headers_as_get_and_no_body() {
    let t = TestServer::with(files, |_| {});
    for target in ["/page.txt", "/big.bin", "/empty.txt"] {
        let mut c = t.connect();
        let g = c.get(target);
        let h = c.head(target);
        g.assert_status(200);
        h.assert_status(200);
        for name in [
            "Server",
            "Content-Type",
            "Content-Length",
            "Last-Modified",
            "ETag",
        ] {
            assert_eq!(
                h.header(name),
                g.header(name),
                "{target}: header {name} differs between HEAD and GET"
            );
        }
        assert_eq!(
            h.header("Content-Length"),
            Some(g.body.len().to_string().as_str()),
            "{target}"
        );
        assert!(h.header("Date").is_some(), "HEAD {target} without Date");
        // No stray body bytes: the next request on the connection is answered correctly.
        let r = c.get("/page.txt");
        r.assert_status(200);
        assert_eq!(r.text(), "hello headers\n", "request after HEAD {target}");
        assert!(c.buffered().is_empty());
    }
}

#[test]
fn head_then_get_pipelined_in_one_write() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    c.send(format!(
        "{}{}",
        request("HEAD", "/big.bin", &[]),
        request("GET", "/page.txt", &[])
    ));
    let h = c.read_head_response();
    h.assert_status(200);
    assert_eq!(h.header("Content-Length"), Some("1048593"));
    let g = c.read_response();
    g.assert_status(200);
    assert_eq!(g.text(), "hello headers\n");
    c.assert_silent_for(std::time::Duration::from_millis(200));
}
