//! Range requests (RFC 9110 §14): single ranges, suffix and open-ended ranges,
//! multipart/byteranges, coalescing, the amplification guard, 416, ignored
//! Range fields, If-Range; small (cached) and large (streamed) files.

use std::path::Path;

use super::support::*;

const SMALL_LEN: usize = 1000;
const SMALL_MTIME: u64 = 1_700_000_000;
const BIG_LEN: usize = 3 * 1024 * 1024; // 3145728
const BIG_MTIME: u64 = 1_600_000_000;

fn small() -> Vec<u8> {
    text_bytes(SMALL_LEN)
}

fn big() -> Vec<u8> {
    pattern_bytes(BIG_LEN, 42)
}

fn files(root: &Path) {
    let p = write(root, "small.txt", small());
    set_mtime(&p, SMALL_MTIME, 0);
    let p = write(root, "big.bin", big());
    set_mtime(&p, BIG_MTIME, 0);
    write(root, "index.html", "<h1>home</h1>\n");
    write(root, "empty.txt", "");
}

fn server() -> TestServer {
    TestServer::with(files, |_| {})
}

fn range(spec: &str) -> String {
    format!("Range: {spec}")
}

/// Assert a multipart/byteranges 206 whose parts are exactly `expected`
/// (inclusive ranges, in file order), each with `content_type` and the bytes of
/// `file`. Parts may come in any order; returns them as sent.
#[track_caller]
fn assert_multipart(
    r: &Response,
    file: &[u8],
    content_type: &str,
    expected: &[(u64, u64)],
) -> Vec<Part> {
    r.assert_line(206);
    assert!(
        r.header("Content-Range").is_none(),
        "a multipart 206 has no top-level Content-Range\n{}",
        r.describe()
    );
    let parts = r.byteranges();
    let len = file.len() as u64;
    let mut seen: Vec<(u64, u64)> = Vec::new();
    for p in &parts {
        assert_eq!(
            p.header("Content-Type"),
            Some(content_type),
            "part {:?}",
            p.headers
        );
        let (first, last, complete) = p.range();
        assert_eq!(complete, len, "part complete-length");
        assert!(first <= last && last < len, "bad part range {first}-{last}");
        assert_body_eq(
            &p.body,
            &file[first as usize..=last as usize],
            &format!("part {first}-{last}"),
        );
        seen.push((first, last));
    }
    seen.sort();
    assert_eq!(seen, expected, "the set of parts\n{}", r.describe());
    parts
}

// ----- Accept-Ranges -----------------------------------------------------

#[test]
fn every_200_for_a_file_has_accept_ranges_bytes() {
    let t = server();
    let mut c = t.connect();
    for target in ["/small.txt", "/big.bin", "/index.html", "/", "/empty.txt"] {
        let r = c.get(target);
        r.assert_line(200);
        assert_eq!(
            r.header("Accept-Ranges"),
            Some("bytes"),
            "GET {target}\n{}",
            r.describe()
        );
        let h = c.head(target);
        h.assert_line(200);
        assert_eq!(
            h.header("Accept-Ranges"),
            Some("bytes"),
            "HEAD {target}\n{}",
            h.describe()
        );
    }
}

// ----- Single ranges -----------------------------------------------------

#[test]
fn first_hundred_bytes_is_206() {
    let t = server();
    let file = small();
    let ok = t.get("/small.txt");
    let r = t.get_h("/small.txt", &[&range("bytes=0-99")]);
    r.assert_partial(0, 99, 1000, &file[..100]);
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("ETag"), ok.header("ETag"), "206 ETag");
    assert_eq!(r.header("ETag"), Some(content_etag(&file).as_str()));
    assert_eq!(r.header("Last-Modified"), ok.header("Last-Modified"));
    assert!(r.header("Date").is_some());
    r.assert_not_closing();
}

#[test]
fn suffix_open_ended_and_clamped_ranges() {
    let t = server();
    let file = small();
    let mut c = t.connect();
    let cases: &[(&str, u64, u64)] = &[
        ("bytes=-100", 900, 999),
        ("bytes=100-", 100, 999),
        ("bytes=0-", 0, 999),
        ("bytes=900-5000", 900, 999),
        ("bytes=999-999", 999, 999),
        ("bytes=999-", 999, 999),
        ("bytes=-1", 999, 999),
        ("bytes=-5000", 0, 999),
        ("bytes=0-0", 0, 0),
        ("bytes=500-99999999999999999999999", 500, 999),
        ("bytes=10-19", 10, 19),
        ("BYTES=10-19", 10, 19),
    ];
    for &(spec, first, last) in cases {
        let r = c.get_h("/small.txt", &[&range(spec)]);
        assert_eq!(r.status, 206, "Range: {spec}\n{}", r.describe());
        r.assert_partial(first, last, 1000, &file[first as usize..=last as usize]);
    }
}

#[test]
fn several_ranges_are_multipart_byteranges() {
    let t = server();
    let file = small();
    let r = t.get_h("/small.txt", &[&range("bytes=0-9,100-199,-10")]);
    assert_eq!(r.status, 206, "{}", r.describe());
    let parts = assert_multipart(
        &r,
        &file,
        "text/plain; charset=utf-8",
        &[(0, 9), (100, 199), (990, 999)],
    );
    assert_eq!(parts.len(), 3);
    assert_eq!(r.header("ETag"), Some(content_etag(&file).as_str()));
    // Content-Length is the exact multipart length: the body parsed to its close
    // delimiter above, and the connection carries on cleanly.
}

#[test]
fn multipart_in_any_requested_order_and_with_whitespace() {
    let t = server();
    let file = small();
    let r = t.get_h("/small.txt", &[&range("bytes=500-509 , 0-9,\t-5")]);
    assert_multipart(
        &r,
        &file,
        "text/plain; charset=utf-8",
        &[(0, 9), (500, 509), (995, 999)],
    );
}

#[test]
fn overlapping_and_adjacent_ranges_are_merged_into_a_plain_206() {
    let t = server();
    let file = small();
    let mut c = t.connect();
    for (spec, first, last) in [
        ("bytes=0-9,5-19,20-29", 0u64, 29u64),
        ("bytes=10-19,0-9", 0, 19),
        ("bytes=0-99,50-60", 0, 99),
        ("bytes=-10,990-", 990, 999),
        ("bytes=100-199,150-", 100, 999),
        // Adding up to exactly the length is not amplification.
        ("bytes=0-499,500-999", 0, 999),
    ] {
        let r = c.get_h("/small.txt", &[&range(spec)]);
        assert_eq!(r.status, 206, "Range: {spec}\n{}", r.describe());
        assert_eq!(
            r.header("Content-Type"),
            Some("text/plain; charset=utf-8"),
            "Range: {spec}: a merged single range is a plain 206\n{}",
            r.describe()
        );
        r.assert_partial(first, last, 1000, &file[first as usize..=last as usize]);
    }
}

#[test]
fn partly_overlapping_ranges_merge_into_fewer_parts() {
    let t = server();
    let file = small();
    let r = t.get_h("/small.txt", &[&range("bytes=0-9,5-14,100-109,110-119")]);
    assert_multipart(
        &r,
        &file,
        "text/plain; charset=utf-8",
        &[(0, 14), (100, 119)],
    );
}

#[test]
fn sixteen_ranges_are_served_seventeen_are_ignored() {
    let t = server();
    let file = small();
    let specs = |n: u64| -> String {
        let v: Vec<String> = (0..n)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
            .collect();
        format!("bytes={}", v.join(","))
    };
    let r = t.get_h("/small.txt", &[&range(&specs(16))]);
    let expected: Vec<(u64, u64)> = (0..16).map(|i| (i * 10, i * 10 + 1)).collect();
    assert_multipart(&r, &file, "text/plain; charset=utf-8", &expected);
    let r = t.get_h("/small.txt", &[&range(&specs(17))]);
    assert_eq!(r.status, 200, "17 ranges\n{}", r.describe());
    r.assert_whole(&file);
}

#[test]
fn ranges_adding_up_to_more_than_the_file_get_the_whole_file() {
    let t = server();
    let mut c = t.connect();
    for (target, file) in [("/small.txt", small()), ("/big.bin", big())] {
        for spec in ["bytes=0-,0-", "bytes=0-,-1", "bytes=-1000000000,0-0"] {
            let r = c.get_h(target, &[&range(spec)]);
            assert_eq!(r.status, 200, "{target} Range: {spec}\n{}", r.describe());
            r.assert_whole(&file);
        }
    }
    // Four overlapping halves of small.txt: 2000 bytes asked of a 1000-byte file.
    let r = c.get_h("/small.txt", &[&range("bytes=0-499,0-499,500-999,500-999")]);
    r.assert_whole(&small());
}

// ----- 416 ---------------------------------------------------------------

#[test]
fn unsatisfiable_ranges_are_416_with_the_length() {
    let t = server();
    let mut c = t.connect();
    for spec in [
        "bytes=1000-",
        "bytes=-0",
        "bytes=5000-6000",
        "bytes=1000-1000,2000-",
    ] {
        let r = c.get_h("/small.txt", &[&range(spec)]);
        assert_eq!(r.status, 416, "Range: {spec}\n{}", r.describe());
        r.assert_line(416);
        assert_eq!(
            r.header("Content-Range"),
            Some("bytes */1000"),
            "Range: {spec}"
        );
        r.assert_not_closing();
    }
    let r = c.get_h("/big.bin", &[&range("bytes=3145728-")]);
    r.assert_line(416);
    assert_eq!(r.header("Content-Range"), Some("bytes */3145728"));
    // An empty file has no satisfiable byte range of the form first-.
    let r = c.get_h("/empty.txt", &[&range("bytes=0-")]);
    r.assert_line(416);
    assert_eq!(r.header("Content-Range"), Some("bytes */0"));
    // The connection is still usable.
    c.get("/small.txt").assert_whole(&small());
}

#[test]
fn one_satisfiable_range_among_unsatisfiable_ones_is_served() {
    let t = server();
    let file = small();
    let r = t.get_h("/small.txt", &[&range("bytes=5000-,10-19")]);
    r.assert_partial(10, 19, 1000, &file[10..20]);
}

// ----- Ignored Range fields ----------------------------------------------

#[test]
fn other_units_and_malformed_ranges_get_the_whole_file() {
    let t = server();
    let file = small();
    let mut c = t.connect();
    for spec in [
        "items=0-1",
        "bytes=5-1",
        "bytes=abc",
        "bytes=",
        "bytes=1-2-3",
        "bytes 0-9",
        "bytes=0-9,5-1",
        "bytes=--5",
        "bytes=0x10-0x20",
    ] {
        let r = c.get_h("/small.txt", &[&range(spec)]);
        assert_eq!(r.status, 200, "Range: {spec}\n{}", r.describe());
        r.assert_whole(&file);
        assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
    }
}

#[test]
fn head_ignores_range() {
    let t = server();
    let mut c = t.connect();
    for target in ["/small.txt", "/big.bin"] {
        let h = c.req("HEAD", target, &[&range("bytes=0-99")]);
        h.assert_line(200);
        assert!(h.header("Content-Range").is_none(), "{}", h.describe());
        let len = if target == "/small.txt" {
            SMALL_LEN
        } else {
            BIG_LEN
        };
        assert_eq!(h.header("Content-Length"), Some(len.to_string().as_str()));
        let h = c.req("HEAD", target, &[&range("bytes=99999999-")]);
        h.assert_line(200);
    }
    c.get("/small.txt").assert_whole(&small());
}

// ----- If-Range ----------------------------------------------------------

#[test]
fn if_range_with_the_current_strong_etag_applies_the_range() {
    let t = server();
    let file = small();
    let etag = content_etag(&file);
    let mut c = t.connect();
    let r = c.get_h(
        "/small.txt",
        &[&format!("If-Range: {etag}"), &range("bytes=0-99")],
    );
    r.assert_partial(0, 99, 1000, &file[..100]);
    for other in [
        format!("W/{etag}"),
        // The nginx-form tag of the same file, and the tag of other content.
        etag_of(SMALL_MTIME, 1000),
        content_etag(&file[1..]),
        "\"other\"".to_string(),
        "garbage".to_string(),
    ] {
        let r = c.get_h(
            "/small.txt",
            &[&format!("If-Range: {other}"), &range("bytes=0-99")],
        );
        assert_eq!(r.status, 200, "If-Range: {other}\n{}", r.describe());
        r.assert_whole(&file);
    }
}

#[test]
fn if_range_with_exactly_the_last_modified_date_applies_the_range() {
    let t = server();
    let file = small();
    let mut c = t.connect();
    let lm = imf_fixdate(SMALL_MTIME);
    let r = c.get_h(
        "/small.txt",
        &[&format!("If-Range: {lm}"), &range("bytes=-10")],
    );
    r.assert_partial(990, 999, 1000, &file[990..]);
    for other in [imf_fixdate(SMALL_MTIME + 1), imf_fixdate(SMALL_MTIME - 1)] {
        let r = c.get_h(
            "/small.txt",
            &[&format!("If-Range: {other}"), &range("bytes=-10")],
        );
        assert_eq!(r.status, 200, "If-Range: {other}\n{}", r.describe());
        r.assert_whole(&file);
    }
}

#[test]
fn if_range_on_the_big_file() {
    let t = server();
    let file = big();
    let etag = etag_of(BIG_MTIME, BIG_LEN as u64);
    let r = t.get_h(
        "/big.bin",
        &[
            &format!("If-Range: {etag}"),
            &range("bytes=1000000-1000099"),
        ],
    );
    r.assert_partial(
        1_000_000,
        1_000_099,
        BIG_LEN as u64,
        &file[1_000_000..1_000_100],
    );
    let r = t.get_h(
        "/big.bin",
        &["If-Range: \"stale-1\"", &range("bytes=1000000-1000099")],
    );
    r.assert_whole(&file);
}

// ----- The big file --------------------------------------------------------

#[test]
fn big_file_single_range_deep_inside() {
    let t = server();
    let file = big();
    let r = t.get_h("/big.bin", &[&range("bytes=2000000-2065535")]);
    r.assert_partial(2_000_000, 2_065_535, 3_145_728, &file[2_000_000..2_065_536]);
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    assert_eq!(r.header("ETag"), Some("\"5f5e1000-300000\""));
    let r = t.get_h("/big.bin", &[&range("bytes=1048577-1048577")]);
    r.assert_partial(1_048_577, 1_048_577, 3_145_728, &file[1_048_577..1_048_578]);
}

#[test]
fn big_file_suffix_and_open_ended_ranges() {
    let t = server();
    let file = big();
    let mut c = t.connect();
    let r = c.get_h("/big.bin", &[&range("bytes=-1000")]);
    r.assert_partial(3_144_728, 3_145_727, 3_145_728, &file[3_144_728..]);
    let r = c.get_h("/big.bin", &[&range("bytes=3000000-")]);
    r.assert_partial(3_000_000, 3_145_727, 3_145_728, &file[3_000_000..]);
    let r = c.get_h("/big.bin", &[&range("bytes=0-")]);
    r.assert_partial(0, 3_145_727, 3_145_728, &file);
    c.get("/small.txt").assert_whole(&small());
}

#[test]
fn big_file_multipart_with_three_ranges() {
    let t = server();
    let file = big();
    let r = t.get_h("/big.bin", &[&range("bytes=0-99,1048576-1114111,3100000-")]);
    assert_eq!(r.status, 206, "{}", r.describe());
    assert_multipart(
        &r,
        &file,
        "application/octet-stream",
        &[(0, 99), (1_048_576, 1_114_111), (3_100_000, 3_145_727)],
    );
}

#[test]
fn ranges_pipelined_in_one_write() {
    let t = server();
    let (s, b) = (small(), big());
    let mut c = t.connect();
    c.send(format!(
        "{}{}{}{}{}",
        request("GET", "/small.txt", &[&range("bytes=0-9,20-29")]),
        request("GET", "/big.bin", &[&range("bytes=10-19")]),
        request("GET", "/small.txt", &[&range("bytes=2000-")]),
        request("GET", "/big.bin", &[&range("bytes=0-0,-1")]),
        request("GET", "/small.txt", &[]),
    ));
    assert_multipart(
        &c.read_response(),
        &s,
        "text/plain; charset=utf-8",
        &[(0, 9), (20, 29)],
    );
    c.read_response()
        .assert_partial(10, 19, BIG_LEN as u64, &b[10..20]);
    c.read_response().assert_line(416);
    assert_multipart(
        &c.read_response(),
        &b,
        "application/octet-stream",
        &[(0, 0), (3_145_727, 3_145_727)],
    );
    c.read_response().assert_whole(&s);
    c.assert_silent_for(std::time::Duration::from_millis(100));
}

#[test]
fn multipart_boundary_is_not_in_the_content() {
    let t = server();
    let r = t.get_h("/small.txt", &[&range("bytes=0-9,900-909")]);
    let boundary = r.multipart_boundary();
    let file = small();
    assert!(
        !file
            .windows(boundary.len())
            .any(|w| w == boundary.as_bytes()),
        "boundary {boundary:?} occurs in the file"
    );
    let parts = r.byteranges();
    assert_eq!(parts.len(), 2);
}

#[test]
fn a_directory_index_takes_ranges_too() {
    let t = server();
    let r = t.get_h("/", &[&range("bytes=4-7")]);
    r.assert_partial(4, 7, 14, b"home");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
}

#[test]
fn a_range_over_http_1_0_is_honoured() {
    let t = server();
    let file = small();
    let (_c, r) = t.raw("GET /small.txt HTTP/1.0\r\nRange: bytes=0-4\r\n\r\n", false);
    r.assert_partial(0, 4, 1000, &file[..5]);
}

#[test]
fn ranges_at_the_cache_size_limit() {
    // 128 KiB is the largest cached file; one byte more is streamed with sendfile.
    let sizes = [128 * 1024 - 1, 128 * 1024, 128 * 1024 + 1];
    let t = TestServer::with(
        |root| {
            for (i, n) in sizes.iter().enumerate() {
                write(
                    root,
                    &format!("edge{i}.bin"),
                    pattern_bytes(*n, 100 + i as u64),
                );
            }
        },
        |_| {},
    );
    let mut c = t.connect();
    for (i, &n) in sizes.iter().enumerate() {
        let file = pattern_bytes(n, 100 + i as u64);
        let target = format!("/edge{i}.bin");
        let len = n as u64;
        let r = c.get_h(&target, &[&range("bytes=-1")]);
        r.assert_partial(len - 1, len - 1, len, &file[n - 1..]);
        let r = c.get_h(&target, &[&range(&format!("bytes={}-", n - 100))]);
        r.assert_partial(len - 100, len - 1, len, &file[n - 100..]);
        // Sixteen parts spread over the file.
        let specs: Vec<String> = (0..16u64)
            .map(|k| {
                let a = k * (len / 16);
                format!("{a}-{}", a + 9)
            })
            .collect();
        let r = c.get_h(&target, &[&range(&format!("bytes={}", specs.join(",")))]);
        let expected: Vec<(u64, u64)> = (0..16u64)
            .map(|k| (k * (len / 16), k * (len / 16) + 9))
            .collect();
        assert_multipart(&r, &file, "application/octet-stream", &expected);
        c.get(&target).assert_whole(&file);
        let r = c.get_h(&target, &[&range(&format!("bytes={n}-"))]);
        r.assert_line(416);
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes */{n}").as_str())
        );
    }
}
