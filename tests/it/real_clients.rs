//! Real clients against the in-process server: curl (ranges, time conditions,
//! --compressed with a real gzip sidecar, resuming a download) and Python's
//! http.client (a Range and an If-None-Match round trip on one connection).
//! A missing curl, gzip or python3 fails the test: it is never skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::support::*;

const MTIME: u64 = 1_700_000_000; // Tue, 14 Nov 2023 22:13:20 GMT
const BIG_LEN: usize = 3 * 1024 * 1024;

fn small() -> Vec<u8> {
    text_bytes(1000)
}

fn big() -> Vec<u8> {
    pattern_bytes(BIG_LEN, 77)
}

fn files(root: &Path) {
    let p = write(root, "small.txt", small());
    set_mtime(&p, MTIME, 0);
    let p = write(root, "big.bin", big());
    set_mtime(&p, MTIME, 0);
}

/// Fails (never skips) when `tool` cannot be run.
#[track_caller]
fn require(tool: &str) {
    match Command::new(tool).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`{tool} --version` failed ({}): {}; this test needs a working {tool}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "`{tool}` is required by this test but cannot be run ({e}); install it (e.g. apt-get install {tool})"
        ),
    }
}

/// Run curl with `args` (plus -sS, a time limit, no proxy); it must succeed.
#[track_caller]
fn curl(args: &[&str]) -> Output {
    require("curl");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--noproxy", "*"])
        .args(args)
        .env_remove("CURL_HOME")
        .env("HOME", "/nonexistent") // no ~/.curlrc
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn url(t: &TestServer, path: &str) -> String {
    format!("http://{}{path}", t.addr)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn curl_range() {
    let t = TestServer::with(files, |_| {});
    let out = curl(&["--range", "10-19", &url(&t, "/small.txt")]);
    assert_eq!(out.stdout, &small()[10..20]);
    let out = curl(&["--range", "2000000-2000099", &url(&t, "/big.bin")]);
    assert_body_eq(
        &out.stdout,
        &big()[2_000_000..2_000_100],
        "curl --range on big.bin",
    );
    let out = curl(&[
        "--range",
        "-5",
        "-w",
        "|%{http_code}",
        &url(&t, "/small.txt"),
    ]);
    let mut want = small()[995..].to_vec();
    want.extend_from_slice(b"|206");
    assert_eq!(out.stdout, want);
}

#[test]
fn curl_time_conditions() {
    let t = TestServer::with(files, |_| {});
    // A local file with the same mtime as the served one: If-Modified-Since → 304.
    let local = t.tmp.path().join("local-copy.txt");
    std::fs::write(&local, small()).unwrap();
    set_mtime(&local, MTIME, 0);
    let local = local.to_str().unwrap();
    let code = |args: &[&str]| -> String {
        let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        all.extend_from_slice(args);
        let u = url(&t, "/small.txt");
        all.push(&u);
        String::from_utf8(curl(&all).stdout).unwrap()
    };
    assert_eq!(
        code(&["-z", local]),
        "304",
        "curl -z <file with the same mtime>"
    );
    assert_eq!(
        code(&["-z", "Tue, 14 Nov 2023 22:13:20 GMT"]),
        "304",
        "curl -z <Last-Modified>"
    );
    assert_eq!(
        code(&["-z", "Wed, 15 Nov 2023 00:00:00 GMT"]),
        "304",
        "curl -z <later date>"
    );
    assert_eq!(
        code(&["-z", "Mon, 13 Nov 2023 00:00:00 GMT"]),
        "200",
        "curl -z <earlier date>"
    );
    // `-z -date`: If-Unmodified-Since.
    assert_eq!(
        code(&["-z", "-Mon, 13 Nov 2023 00:00:00 GMT"]),
        "412",
        "curl -z -<earlier date>"
    );
    assert_eq!(
        code(&["-z", "-Wed, 15 Nov 2023 00:00:00 GMT"]),
        "200",
        "curl -z -<later date>"
    );
}

#[test]
fn curl_compressed_decodes_a_real_gzip_sidecar() {
    require("gzip");
    let original = text_bytes(50_000);
    let t = TestServer::with(
        |root| {
            let p = write(root, "page.txt", &original);
            let out = Command::new("gzip")
                .args(["-9", "-n", "-c"])
                .arg(&p)
                .output()
                .expect("run gzip");
            assert!(out.status.success(), "gzip failed");
            assert!(
                out.stdout.len() < original.len() / 2,
                "gzip did not compress"
            );
            write(root, "page.txt.gz", &out.stdout);
        },
        |_| {},
    );
    let headers: PathBuf = t.tmp.path().join("headers.txt");
    let out = curl(&[
        "--compressed",
        "-D",
        headers.to_str().unwrap(),
        &url(&t, "/page.txt"),
    ]);
    assert_body_eq(&out.stdout, &original, "curl --compressed");
    let head = std::fs::read_to_string(&headers)
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        head.contains("\r\ncontent-encoding: gzip\r\n"),
        "the gzip sidecar was not sent:\n{head}"
    );
    assert!(
        head.contains("\r\nvary: accept-encoding\r\n"),
        "no Vary:\n{head}"
    );
    // Without --compressed: the identity bytes, no Content-Encoding.
    let out = curl(&["-D", headers.to_str().unwrap(), &url(&t, "/page.txt")]);
    assert_body_eq(&out.stdout, &original, "curl without --compressed");
    let head = std::fs::read_to_string(&headers)
        .unwrap()
        .to_ascii_lowercase();
    assert!(!head.contains("content-encoding"), "{head}");
}

#[test]
fn curl_resumes_a_download() {
    let t = TestServer::with(files, |_| {});
    let file = big();
    let local = t.tmp.path().join("download.bin");
    std::fs::write(&local, &file[..BIG_LEN / 2]).unwrap();
    let out = curl(&[
        "-C",
        "-",
        "-o",
        local.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &url(&t, "/big.bin"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "206", "resume status");
    let got = std::fs::read(&local).unwrap();
    assert_body_eq(&got, &file, "resumed download");
}

const PY_SCRIPT: &str = r#"
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
c.request("GET", "/small.txt", headers={"Range": "bytes=10-19"})
r = c.getresponse(); b = r.read()
print(r.status, r.reason, r.getheader("Content-Range"), r.getheader("Content-Length"), b.hex())
c.request("GET", "/small.txt")
r = c.getresponse(); b = r.read(); etag = r.getheader("ETag")
print(r.status, r.reason, len(b), etag, r.getheader("Accept-Ranges"))
c.request("GET", "/small.txt", headers={"If-None-Match": etag})
r = c.getresponse(); b = r.read()
print(r.status, r.reason, len(b), r.getheader("ETag") == etag)
c.request("GET", "/big.bin", headers={"Range": "bytes=-4"})
r = c.getresponse(); b = r.read()
print(r.status, r.getheader("Content-Range"), b.hex())
c.close()
"#;

#[test]
fn python_http_client_range_and_if_none_match() {
    require("python3");
    let t = TestServer::with(files, |_| {});
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY_SCRIPT)
        .arg(t.addr.ip().to_string())
        .arg(t.addr.port().to_string())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let etag = content_etag(&small());
    let want = format!(
        "206 Partial Content bytes 10-19/1000 10 {}\n\
         200 OK 1000 {etag} bytes\n\
         304 Not Modified 0 True\n\
         206 bytes 3145724-3145727/3145728 {}\n",
        hex(&small()[10..20]),
        hex(&big()[BIG_LEN - 4..]),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}
