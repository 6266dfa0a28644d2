//! Cached files of 8 KiB and more live in the worker's memory file and go out by sendfile,
//! the head written before the body there: they come back byte-exact whole and in ranges,
//! on every kind of connection and across the second at which the head is rewritten; an
//! edit shows; the memory is bounded by the cache and comes back when the cache lets go.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::support::*;

/// Sizes around the memory file's range: just below it (heap), its first size, between
/// pages, past the socket's first segments, and the cache limit itself.
const SIZES: [usize; 5] = [8191, 8192, 20_000, 65_543, 131_072];

fn name(len: usize) -> String {
    format!("/f{len}.bin")
}

fn files(root: &Path) {
    for (i, len) in SIZES.iter().enumerate() {
        write(root, &name(*len)[1..], pattern_bytes(*len, 100 + i as u64));
    }
}

fn expected(len: usize) -> Vec<u8> {
    let i = SIZES.iter().position(|&l| l == len).unwrap();
    pattern_bytes(len, 100 + i as u64)
}

#[test]
fn every_kind_of_connection_gets_the_exact_bytes() {
    let t = TestServer::with(files, |_| {});
    for len in SIZES {
        let path = name(len);
        let want = expected(len);
        // HTTP/1.1 keep-alive, several times: the first writes the head, the rest find it.
        let mut c = t.connect();
        for round in 0..3 {
            let r = c.get(&path);
            r.assert_status(200).assert_not_closing();
            assert_eq!(r.header("Content-Length"), Some(len.to_string().as_str()));
            assert_body_eq(&r.body, &want, &format!("{path}, keep-alive round {round}"));
        }
        // HTTP/1.0 keep-alive, then HTTP/1.1 again: heads that differ from the one written.
        let r = c.req("GET", &path, &["Connection: keep-alive"]);
        r.assert_status(200);
        assert_body_eq(&r.body, &want, &format!("{path} after an HTTP/1.1 head"));
        let mut old = t.connect();
        old.send(format!(
            "GET {path} HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n"
        ));
        let r = old.read_response();
        r.assert_status(200);
        assert_eq!(r.header("Connection"), Some("keep-alive"));
        assert_body_eq(&r.body, &want, &format!("{path}, HTTP/1.0 keep-alive"));
        assert_body_eq(
            &c.get(&path).body,
            &want,
            &format!("{path}, HTTP/1.1 again"),
        );
        // Three pipelined in one write, between two other files.
        let mut p = t.connect();
        let other = name(SIZES[(SIZES.iter().position(|&l| l == len).unwrap() + 1) % 5]);
        p.send(format!(
            "{}{}{}",
            request("GET", &path, &[]),
            request("GET", &other, &[]),
            request("GET", &path, &[])
        ));
        for what in [&path, &other, &path] {
            let r = p.read_response();
            r.assert_status(200);
            let len: usize = what[2..what.len() - 4].parse().unwrap();
            assert_body_eq(&r.body, &expected(len), &format!("pipelined {what}"));
        }
        // HEAD has no body; a matching If-None-Match is a 304.
        let h = c.head(&path);
        h.assert_status(200);
        assert!(h.body.is_empty());
        let etag = h.expect_header("ETag").to_string();
        let r = c.req("GET", &path, &[&format!("If-None-Match: {etag}")]);
        r.assert_status(304);
        assert!(r.body.is_empty());
        // Connection: close.
        let r = c.req("GET", &path, &["Connection: close"]);
        r.assert_status(200).assert_connection_close();
        assert_body_eq(&r.body, &want, &format!("{path}, closing"));
    }
}

/// The head before the body carries the Date: the first response of a new second writes a
/// new one, and neither the head nor the body may show a byte of the old.
#[test]
fn a_new_second_writes_a_new_head_and_the_bytes_stay_exact() {
    let t = TestServer::with(files, |_| {});
    let path = name(20_000);
    let want = expected(20_000);
    let mut c = t.connect();
    let first = c.get(&path);
    assert_body_eq(&first.body, &want, "first");
    let date = first.expect_header("Date").to_string();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen_new = 0;
    while seen_new < 3 {
        assert!(
            Instant::now() < deadline,
            "the Date did not change within 3 s"
        );
        let r = c.get(&path);
        r.assert_status(200);
        assert_eq!(r.header("Content-Length"), Some("20000"));
        assert_body_eq(&r.body, &want, "across the second");
        if r.expect_header("Date") != date {
            assert!(parse_imf_fixdate(r.expect_header("Date")).is_some());
            seen_new += 1;
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn ranges_come_from_the_bytes_in_memory() {
    let t = TestServer::with(files, |_| {});
    let len = 65_543;
    let path = name(len);
    let want = expected(len);
    let mut c = t.connect();
    // A short range (copied) and a long one (sent from the memory file).
    for (first, last) in [(100, 199), (5, 60_000), (0, len as u64 - 1)] {
        let r = c.get_h(&path, &[&format!("Range: bytes={first}-{last}")]);
        r.assert_status(206);
        r.assert_partial(
            first,
            last,
            len as u64,
            &want[first as usize..=last as usize],
        );
    }
    // A suffix, and three parts at once.
    let r = c.get_h(&path, &["Range: bytes=-10"]);
    r.assert_partial(
        len as u64 - 10,
        len as u64 - 1,
        len as u64,
        &want[len - 10..],
    );
    let r = c.get_h(&path, &["Range: bytes=0-9,30000-50000,65540-"]);
    r.assert_status(206);
    let parts = r.byteranges();
    assert_eq!(parts.len(), 3);
    for (part, (first, last)) in parts
        .iter()
        .zip([(0, 9), (30_000, 50_000), (65_540, 65_542)])
    {
        assert_eq!(part.range(), (first, last, len as u64));
        assert_body_eq(&part.body, &want[first as usize..=last as usize], "a part");
    }
    // And the whole again on the same connection.
    assert_body_eq(&c.get(&path).body, &want, "whole after ranges");
}

#[test]
fn an_edited_file_is_served_fresh() {
    let t = TestServer::with(files, |_| {});
    let path = name(20_000);
    let mut c = t.connect();
    let r = c.get(&path);
    let etag = r.expect_header("ETag").to_string();
    let edited = pattern_bytes(20_000, 999);
    write(&t.root, &path[1..], &edited);
    std::thread::sleep(Duration::from_millis(1200));
    let r = c.get(&path);
    assert_body_eq(&r.body, &edited, "after the edit");
    assert_ne!(r.expect_header("ETag"), etag);
    let shorter = pattern_bytes(12_345, 7);
    write(&t.root, &path[1..], &shorter);
    std::thread::sleep(Duration::from_millis(1200));
    let r = t.get(&path);
    assert_eq!(r.header("Content-Length"), Some("12345"));
    assert_body_eq(&r.body, &shorter, "after a shorter edit");
}

/// Bytes the server's memory files hold (the pages they take), found through its fds: each
/// file once (a thread of the server briefly holds a second descriptor of one while it
/// makes huge pages of it).
fn memory_file_bytes(srv: &BinServer) -> (usize, u64) {
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0;
    for entry in std::fs::read_dir(format!("/proc/{}/fd", srv.pid())).unwrap() {
        let path = entry.unwrap().path();
        let Ok(target) = std::fs::read_link(&path) else {
            continue;
        };
        if target.to_string_lossy().starts_with("/memfd:fserve-cache") {
            // Closed since it was listed: that thread's descriptor.
            let Ok(st) = rustix::fs::stat(&path) else {
                continue;
            };
            if seen.insert(st.st_ino) {
                bytes += st.st_blocks as u64 * 512;
            }
        }
    }
    (seen.len(), bytes)
}

#[test]
fn the_memory_is_bounded_by_the_cache_and_comes_back_when_it_lets_go() {
    const FILES: usize = 120;
    const LEN: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..FILES {
        write(
            dir.path(),
            &format!("m{i}.bin"),
            pattern_bytes(LEN, i as u64),
        );
    }
    let srv = BinServer::start(dir.path(), &["-t", "1", "--cache-size", "1MiB"]);
    // The start-up line comes from the main thread; the worker makes its memory file as it
    // starts, which a loaded machine may schedule a little later.
    poll_until(Duration::from_secs(5), || memory_file_bytes(&srv).0 > 0);
    let (files, bytes) = memory_file_bytes(&srv);
    assert_eq!(files, 1, "one memory file per worker");
    assert!(
        bytes <= 2 * 1024 * 1024,
        "{bytes} bytes held at first: at most the run made ready"
    );
    let mut c = Conn::open(srv.addr);
    for round in 0..2 {
        for i in 0..FILES {
            let r = c.get(&format!("/m{i}.bin"));
            assert_body_eq(
                &r.body,
                &pattern_bytes(LEN, i as u64),
                &format!("m{i}, round {round}"),
            );
            let (_, bytes) = memory_file_bytes(&srv);
            // Runs of 2 MiB, freed whole: at most twice the cache.
            assert!(
                bytes <= 2 * 1024 * 1024,
                "{bytes} bytes held, over twice --cache-size 1MiB"
            );
        }
    }
    let (_, held) = memory_file_bytes(&srv);
    assert!(
        held >= 20 * LEN as u64,
        "the cache holds the last files read: {held} bytes"
    );
    // SIGHUP drops the cache: every page comes back once no response is using it.
    srv.signal(Signal::HUP);
    let gone = poll_until(Duration::from_secs(5), || memory_file_bytes(&srv).1 == 0);
    assert!(
        gone.is_some(),
        "{} bytes still held",
        memory_file_bytes(&srv).1
    );
    assert_body_eq(
        &c.get("/m0.bin").body,
        &pattern_bytes(LEN, 0),
        "after SIGHUP",
    );
}

/// The memory file's runs are 2 MiB huge pages even when a client holds the pages of what
/// it is sent: the kernel will not collapse pages a socket still holds, so each run is made
/// a huge page before anything is written to it. A client that reads nothing keeps the
/// first response's pages in its socket's queue from the first request on; the run the
/// body went to and the run made ready after it are still one huge page each, and the
/// bytes are the same.
#[test]
fn runs_are_huge_pages_even_while_a_client_holds_what_it_was_sent() {
    const LEN: usize = 65_536;
    const MIB2: u64 = 2 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "h.bin", pattern_bytes(LEN, 9));
    let srv = BinServer::start(dir.path(), &["-t", "1"]);
    let ready = poll_until(Duration::from_secs(10), || {
        memory_file_bytes(&srv) == (1, MIB2)
    });
    assert!(
        ready.is_some(),
        "{:?} (memory files, bytes): not one run made ready as a 2 MiB huge page before \
         any request (needs transparent huge pages)",
        memory_file_bytes(&srv)
    );
    // Twenty responses asked for at once and none read: the socket's queue holds pages of
    // the body's run from the first send on.
    let mut stalled = Conn::open(srv.addr);
    stalled.send("GET /h.bin HTTP/1.1\r\nHost: t\r\n\r\n".repeat(20));
    let mut c = Conn::open(srv.addr);
    assert_body_eq(&c.get("/h.bin").body, &pattern_bytes(LEN, 9), "first");
    let huge = poll_until(Duration::from_secs(10), || {
        memory_file_bytes(&srv) == (1, 2 * MIB2)
    });
    assert!(
        huge.is_some(),
        "{:?} (memory files, bytes): not two runs of one 2 MiB huge page each, the body's \
         and the next",
        memory_file_bytes(&srv)
    );
    for round in 0..20 {
        let r = stalled.read_response();
        r.assert_status(200);
        assert_body_eq(
            &r.body,
            &pattern_bytes(LEN, 9),
            &format!("held by the stalled client, response {round}"),
        );
    }
    for round in 0..3 {
        assert_body_eq(
            &c.get("/h.bin").body,
            &pattern_bytes(LEN, 9),
            &format!("from the huge page, round {round}"),
        );
    }
}
