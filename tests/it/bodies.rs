//! Bodies come back byte-exact: small (cached) and large (sendfile) files,
//! repeated on one connection, concurrently on two, read slowly; edited files
//! are served fresh.

use std::path::Path;
use std::time::Duration;

use super::support::*;

const SMALL_LEN: usize = 1024;
const LARGE_LEN: usize = 3 * 1024 * 1024 + 123; // above the 128 KiB cache limit
const EDGE_LEN: usize = 131_072; // exactly the cache limit

fn small() -> Vec<u8> {
    pattern_bytes(SMALL_LEN, 11)
}
fn large() -> Vec<u8> {
    pattern_bytes(LARGE_LEN, 42)
}

fn files(root: &Path) {
    write(root, "small.bin", small());
    write(root, "large.bin", large());
    write(root, "edge.bin", pattern_bytes(EDGE_LEN, 5));
    write(root, "edge1.bin", pattern_bytes(EDGE_LEN + 1, 6));
    write(root, "note.txt", "first version\n");
}

#[test]
fn pattern_is_non_repeating() {
    let l = large();
    assert_eq!(l.len(), LARGE_LEN);
    // No 64 KiB block equals the first one, so shifted or repeated chunks are caught.
    let first = &l[..65536];
    assert!(l[1..].windows(65536).step_by(4093).all(|w| w != first));
    assert_ne!(small()[..], l[..SMALL_LEN]);
}

#[test]
fn small_file_is_byte_exact() {
    let t = TestServer::with(files, |_| {});
    let r = t.get("/small.bin");
    r.assert_status(200);
    assert_eq!(r.header("Content-Length"), Some("1024"));
    assert_body_eq(&r.body, &small(), "small.bin");
}

#[test]
fn large_file_is_byte_exact() {
    let t = TestServer::with(files, |_| {});
    let r = t.get("/large.bin");
    r.assert_status(200);
    assert_eq!(
        r.header("Content-Length"),
        Some(LARGE_LEN.to_string().as_str())
    );
    assert_body_eq(&r.body, &large(), "large.bin");
}

#[test]
fn files_at_the_cache_limit_are_byte_exact() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    for _ in 0..2 {
        assert_body_eq(
            &c.get("/edge.bin").assert_status(200).body,
            &pattern_bytes(EDGE_LEN, 5),
            "edge.bin",
        );
        assert_body_eq(
            &c.get("/edge1.bin").assert_status(200).body,
            &pattern_bytes(EDGE_LEN + 1, 6),
            "edge1.bin",
        );
    }
}

#[test]
fn repeated_on_one_keepalive_connection() {
    let t = TestServer::with(files, |_| {});
    let (s, l) = (small(), large());
    let mut c = t.connect();
    for i in 0..3 {
        assert_body_eq(
            &c.get("/large.bin").assert_status(200).body,
            &l,
            &format!("large #{i}"),
        );
        assert_body_eq(
            &c.get("/small.bin").assert_status(200).body,
            &s,
            &format!("small #{i}"),
        );
        let h = c.head("/large.bin");
        h.assert_status(200);
        assert_eq!(
            h.header("Content-Length"),
            Some(LARGE_LEN.to_string().as_str())
        );
    }
}

#[test]
fn two_connections_concurrently() {
    let t = TestServer::with(files, |_| {});
    let addr = t.addr;
    // Both requests are in flight before either response is read.
    let mut a = Conn::open(addr);
    let mut b = Conn::open(addr);
    let two = format!(
        "{}{}",
        request("GET", "/large.bin", &[]),
        request("GET", "/small.bin", &[])
    );
    a.send(&two);
    b.send(&two);
    let handles: Vec<_> = [a, b]
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            std::thread::spawn(move || {
                let (s, l) = (small(), large());
                assert_body_eq(
                    &c.read_response().assert_status(200).body,
                    &l,
                    &format!("conn {i} large"),
                );
                assert_body_eq(
                    &c.read_response().assert_status(200).body,
                    &s,
                    &format!("conn {i} small"),
                );
                assert_body_eq(
                    &c.get("/large.bin").assert_status(200).body,
                    &l,
                    &format!("conn {i} large again"),
                );
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread panicked");
    }
}

#[test]
fn large_file_read_slowly_is_byte_exact() {
    // The client reads in small chunks with pauses, so the server's socket
    // buffer fills and sends complete partially.
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    c.send(request("GET", "/large.bin", &[]));
    std::thread::sleep(Duration::from_millis(200));
    let mut got = Vec::with_capacity(LARGE_LEN + 1024);
    let mut chunk = [0u8; 32 * 1024];
    let head_end = loop {
        let n = c.read_raw(&mut chunk);
        assert!(n > 0, "closed early after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let mut reads = 0;
    while got.len() < head_end + LARGE_LEN {
        let n = c.read_raw(&mut chunk);
        assert!(
            n > 0,
            "closed early after {} body bytes",
            got.len() - head_end
        );
        got.extend_from_slice(&chunk[..n]);
        reads += 1;
        if reads % 8 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_body_eq(&got[head_end..], &large(), "slowly read large.bin");
    // And the connection is still in sync.
    assert_body_eq(
        &c.get("/small.bin").assert_status(200).body,
        &small(),
        "small after slow large",
    );
}

#[test]
fn edited_small_file_is_served_fresh() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    let r = c.get("/note.txt");
    assert_eq!(r.text(), "first version\n");
    let etag1 = r.expect_header("ETag").to_string();
    write(&t.root, "note.txt", "the second, longer version\n");
    std::thread::sleep(Duration::from_millis(1200));
    let r = c.get("/note.txt");
    r.assert_status(200);
    assert_eq!(r.text(), "the second, longer version\n");
    assert_eq!(r.header("Content-Length"), Some("27"));
    assert_ne!(r.expect_header("ETag"), etag1);
    // Also on a new connection (possibly another worker).
    assert_eq!(t.get("/note.txt").text(), "the second, longer version\n");
}

#[test]
fn deleted_file_becomes_404() {
    let t = TestServer::with(files, |_| {});
    assert_eq!(t.get("/note.txt").text(), "first version\n");
    std::fs::remove_file(t.root.join("note.txt")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    t.get("/note.txt").assert_error(404);
}

#[test]
fn new_file_is_served_after_creation() {
    let t = TestServer::with(files, |_| {});
    t.get("/later.txt").assert_error(404);
    write(&t.root, "later.txt", "now here\n");
    std::thread::sleep(Duration::from_millis(1200));
    let r = t.get("/later.txt");
    r.assert_status(200);
    assert_eq!(r.text(), "now here\n");
}

#[test]
fn edited_large_file_is_served_fresh() {
    let t = TestServer::with(files, |_| {});
    assert_body_eq(&t.get("/large.bin").body, &large(), "large before");
    let replacement = pattern_bytes(LARGE_LEN - 1000, 99);
    write(&t.root, "large.bin", &replacement);
    std::thread::sleep(Duration::from_millis(1200));
    assert_body_eq(
        &t.get("/large.bin").assert_status(200).body,
        &replacement,
        "large after",
    );
}

#[test]
fn large_file_rewritten_in_place_is_served_fresh_at_once() {
    // `cp` over a file rewrites it in place: the same inode, held open by the cache. The
    // next request must carry the new length and bytes, not the old length over new bytes.
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    assert_body_eq(&c.get("/large.bin").body, &large(), "before");
    for (seed, len) in [(50, LARGE_LEN + 4096), (51, LARGE_LEN - 4096)] {
        let next = pattern_bytes(len, seed);
        write(&t.root, "large.bin", &next);
        let r = c.get("/large.bin");
        r.assert_status(200);
        assert_body_eq(&r.body, &next, &format!("rewritten to {len} bytes"));
    }
}

#[test]
fn same_size_edit_is_served_fresh() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    assert_eq!(c.get("/note.txt").text(), "first version\n");
    // Same length, different bytes, rewritten in place.
    write(&t.root, "note.txt", "FIRST VERSION\n");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(c.get("/note.txt").text(), "FIRST VERSION\n");
}

#[test]
fn file_replaced_by_rename_is_served_fresh() {
    // Deploy tools write a new file and rename it over the old one.
    let t = TestServer::with(files, |_| {});
    assert_eq!(t.get("/note.txt").text(), "first version\n");
    write(&t.root, "note.txt.tmp", "renamed in\n");
    std::fs::rename(t.root.join("note.txt.tmp"), t.root.join("note.txt")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(t.get("/note.txt").text(), "renamed in\n");
}
