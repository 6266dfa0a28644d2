//! Compressed variants made by the server itself, for files with no sidecars: Brotli, zstd
//! and gzip, made once in the background and served from memory. Real clients (curl,
//! Python, headless Chromium) decode them to the exact bytes of the files; each variant
//! has its own validators, ranges and conditionals; every response of a compressible
//! resource carries `Vary: Accept-Encoding`; an edited file switches to its new variants;
//! and a flood of first requests never delays another client. A missing client fails the
//! test: it is never skipped.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::support::*;

const MTIME: u64 = 1_700_000_000;
const JS_TYPE: &str = "text/javascript; charset=utf-8";
const CODINGS: [&str; 3] = ["br", "zstd", "gzip"];
/// How long a test waits for the background pool to finish a file (it runs at nice 19
/// beside the rest of the suite).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// JavaScript-like text: compressible, every line different.
fn js(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "export function f{seed}_{i}(x) {{ return x * {} + {i}; }}\n",
                i % 97
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn json(len: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{{\"id\":{i},\"name\":\"item {i}\",\"score\":{}}},",
                i * 7 % 1000
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.extend_from_slice(b"{}]");
    out
}

fn app_js() -> Vec<u8> {
    js(150 * 1024, 1)
}

fn style_css() -> Vec<u8> {
    (0..2000)
        .flat_map(|i| format!(".c{i} {{ margin: {i}px; color: #{:06x} }}\n", i * 31).into_bytes())
        .collect()
}

fn data_json() -> Vec<u8> {
    json(600 * 1024)
}

const INDEX_HTML: &str = r#"<!doctype html>
<html><head><link rel="stylesheet" href="/style.css"><script src="/app.js" type="module"></script></head>
<body><p id="out">pending</p>
<script>
fetch('/data.json').then(r => r.arrayBuffer().then(b => {
  const u = new Uint8Array(b);
  let h = 0x811c9dc5;
  for (let i = 0; i < u.length; i++) { h ^= u[i]; h = Math.imul(h, 16777619) >>> 0; }
  document.getElementById('out').textContent =
    'len=' + u.length + ' fnv=' + h.toString(16) + ' enc=' + r.headers.get('content-encoding');
}));
</script></body></html>
"#;

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(16_777_619);
    }
    h
}

fn site(root: &Path) {
    for (name, bytes) in [
        ("index.html", INDEX_HTML.as_bytes().to_vec()),
        ("app.js", app_js()),
        ("style.css", style_css()),
        ("data.json", data_json()),
        ("logo.png", pattern_bytes(50_000, 3)),
        ("tiny.js", b"console.log(1);\n".to_vec()),
    ] {
        let p = write(root, name, bytes);
        set_mtime(&p, MTIME, 0);
    }
}

fn server() -> TestServer {
    TestServer::with(site, |_| {})
}

fn ae(v: &str) -> String {
    format!("Accept-Encoding: {v}")
}

/// The bytes `body` decodes to under `coding`.
fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "br" => brotli::BrotliDecompress(&mut &body[..], &mut out).expect("valid brotli"),
        "zstd" => out = zstd::stream::decode_all(body).expect("valid zstd"),
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("valid gzip");
        }
        other => panic!("no decoder for {other}"),
    }
    out
}

/// Asks for `path` in `coding` until the server has made that variant; returns the 200.
#[track_caller]
fn wait_for(t: &TestServer, path: &str, coding: &str) -> Response {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let r = t.get_h(path, &[&ae(coding)]);
        r.assert_status(200);
        if r.header("Content-Encoding") == Some(coding) {
            return r;
        }
        assert!(
            r.header("Content-Encoding").is_none(),
            "asked for {coding} only\n{}",
            r.describe()
        );
        assert!(
            Instant::now() < deadline,
            "{path}: no {coding} variant within {READY_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The identity's tag with the coding added: `"abc"` → `"abc-br"`.
fn variant_etag(identity: &str, coding: &str) -> String {
    format!("{}-{coding}\"", identity.strip_suffix('"').unwrap())
}

#[track_caller]
fn assert_vary(r: &Response, what: &str) {
    assert_eq!(
        r.header_all("Vary"),
        ["Accept-Encoding"],
        "{what}: Vary\n{}",
        r.describe()
    );
}

#[test]
fn the_first_request_gets_identity_at_once_and_later_ones_each_variant() {
    let t = server();
    let first = t.get_h("/app.js", &[&ae("br, zstd, gzip")]);
    first.assert_whole(&app_js());
    assert_eq!(
        first.header("Content-Encoding"),
        None,
        "{}",
        first.describe()
    );
    assert_vary(&first, "identity before the variants are ready");
    let identity_etag = first.expect_header("ETag").to_string();
    for coding in CODINGS {
        let r = wait_for(&t, "/app.js", coding);
        assert_eq!(
            decode(coding, &r.body),
            app_js(),
            "{coding} decodes to the file"
        );
        assert!(
            r.body.len() < app_js().len() / 4,
            "{coding}: {} bytes",
            r.body.len()
        );
        assert_eq!(
            r.header("Content-Length"),
            Some(r.body.len().to_string().as_str())
        );
        assert_eq!(r.header("Content-Type"), Some(JS_TYPE));
        assert_eq!(r.header("Last-Modified"), first.header("Last-Modified"));
        assert_eq!(
            r.header("ETag"),
            Some(variant_etag(&identity_etag, coding).as_str()),
            "{coding}: its own strong ETag"
        );
        assert_vary(&r, coding);
    }
    // The client's weights decide; br first on a tie; q=0 refuses; none accepted: identity.
    let pick = |field: &str| {
        let r = t.get_h("/app.js", &[&ae(field)]);
        r.header("Content-Encoding").map(str::to_string)
    };
    assert_eq!(pick("gzip, deflate, br, zstd").as_deref(), Some("br"));
    assert_eq!(pick("br;q=0.5, zstd").as_deref(), Some("zstd"));
    assert_eq!(pick("*, br;q=0").as_deref(), Some("zstd"));
    assert_eq!(pick("deflate").as_deref(), None);
    assert_eq!(t.get("/app.js").header("Content-Encoding"), None);
}

#[test]
fn ranges_and_conditionals_apply_to_each_variant() {
    let t = server();
    let identity = t.get("/app.js");
    let identity_etag = identity.expect_header("ETag").to_string();
    let last_modified = identity.expect_header("Last-Modified").to_string();
    for coding in CODINGS {
        let full = wait_for(&t, "/app.js", coding);
        let bytes = full.body.clone();
        let etag = full.expect_header("ETag").to_string();
        let len = bytes.len() as u64;
        let with = |extra: &[&str]| {
            let mut fields = vec![ae(coding)];
            fields.extend(extra.iter().map(|s| s.to_string()));
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            t.get_h("/app.js", &refs)
        };
        // A range of a variant is a range of its bytes.
        let r = with(&["Range: bytes=10-99"]);
        r.assert_partial(10, 99, len, &bytes[10..100]);
        assert_eq!(r.header("Content-Encoding"), Some(coding));
        assert_eq!(r.header("ETag"), Some(etag.as_str()));
        assert_vary(&r, "206");
        let r = with(&["Range: bytes=0-9,50-59"]);
        r.assert_status(206);
        let parts = r.byteranges();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].body, bytes[50..60]);
        let r = with(&[&format!("Range: bytes={len}-")]);
        r.assert_status(416);
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes */{len}").as_str())
        );
        assert_vary(&r, "416");
        // Conditionals compare the variant's own validators.
        let r = with(&[&format!("If-None-Match: {etag}")]);
        r.assert_not_modified(&etag, &last_modified);
        assert_vary(&r, "304");
        let r = with(&[&format!("If-None-Match: {identity_etag}")]);
        r.assert_whole(&bytes);
        let r = with(&["If-Match: \"something-else\""]);
        r.assert_status(412);
        assert_vary(&r, "412");
        let r = with(&[&format!("If-Match: {etag}")]);
        r.assert_whole(&bytes);
        let r = with(&[&format!("If-Range: {etag}"), "Range: bytes=5-9"]);
        r.assert_partial(5, 9, len, &bytes[5..10]);
        let r = with(&[&format!("If-Range: {identity_etag}"), "Range: bytes=5-9"]);
        r.assert_whole(&bytes);
        // HEAD gets the head a GET would.
        let fields = [ae(coding)];
        let h = t.req("HEAD", "/app.js", &[&fields[0]]);
        h.assert_status(200);
        assert!(h.body.is_empty());
        for name in [
            "Content-Length",
            "Content-Encoding",
            "Content-Type",
            "ETag",
            "Last-Modified",
            "Vary",
        ] {
            assert_eq!(h.header(name), full.header(name), "HEAD {coding}: {name}");
        }
    }
}

#[test]
fn vary_is_on_every_response_of_a_compressible_resource_and_only_there() {
    let t = server();
    let identity = t.get("/style.css");
    let etag = identity.expect_header("ETag").to_string();
    let mut responses = vec![("identity, first", identity)];
    responses.push((
        "identity, br refused",
        t.get_h("/style.css", &[&ae("br;q=0")]),
    ));
    responses.push((
        "identity 304",
        t.get_h("/style.css", &[&format!("If-None-Match: {etag}")]),
    ));
    responses.push(("identity HEAD", t.req("HEAD", "/style.css", &[])));
    responses.push(("identity 206", t.get_h("/style.css", &["Range: bytes=0-3"])));
    let br = wait_for(&t, "/style.css", "br");
    let br_etag = br.expect_header("ETag").to_string();
    responses.push(("br 200", br));
    responses.push((
        "br 304",
        t.get_h(
            "/style.css",
            &[&ae("br"), &format!("If-None-Match: {br_etag}")],
        ),
    ));
    responses.push((
        "br 206",
        t.get_h("/style.css", &[&ae("br"), "Range: bytes=0-3"]),
    ));
    responses.push(("br HEAD", t.req("HEAD", "/style.css", &[&ae("br")])));
    for (what, r) in &responses {
        assert_vary(r, what);
    }
    // An image is never compressed, and a file below --compress-min is not: no Vary.
    for path in ["/logo.png", "/tiny.js"] {
        for _ in 0..3 {
            let r = t.get_h(path, &[&ae("br, gzip, zstd")]);
            r.assert_status(200);
            assert_eq!(r.header("Content-Encoding"), None, "{path}");
            assert_eq!(r.header("Vary"), None, "{path}\n{}", r.describe());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn the_spa_fallback_and_the_404_page_are_compressed_too() {
    let page = js(20 * 1024, 5);
    let t = TestServer::with(
        |root| {
            write(root, "index.html", &page);
            write(root, "404.html", &page);
        },
        |c| c.spa = Some("index.html".into()),
    );
    let html = "Accept: text/html";
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let r = t.get_h("/some/route", &[html, &ae("br")]);
        r.assert_status(200);
        assert_eq!(r.header_all("Vary"), ["Accept", "Accept-Encoding"]);
        if r.header("Content-Encoding") == Some("br") {
            assert_eq!(decode("br", &r.body), page);
            break;
        }
        r.assert_whole(&page);
        assert!(Instant::now() < deadline, "no br for the SPA fallback");
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let r = t.get_h("/missing.png", &["Accept: image/png", &ae("gzip")]);
        r.assert_status(404);
        if r.header("Content-Encoding") == Some("gzip") {
            assert_eq!(decode("gzip", &r.body), page);
            break;
        }
        assert_eq!(r.body, page);
        assert!(Instant::now() < deadline, "no gzip for the 404 page");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn compress_off_serves_identity_alone() {
    let t = TestServer::with(site, |c| c.compress = false);
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        let r = t.get_h("/app.js", &[&ae("br, zstd, gzip")]);
        r.assert_whole(&app_js());
        assert_eq!(r.header("Content-Encoding"), None);
        assert_eq!(r.header("Vary"), None, "{}", r.describe());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sidecars_win_over_compressed_variants() {
    let t = TestServer::with(
        |root| {
            site(root);
            write(root, "app.js.gz", b"GZ-SIDECAR: the author's own bytes");
        },
        |_| {},
    );
    let r = t.get_h("/app.js", &[&ae("gzip")]);
    r.assert_whole(b"GZ-SIDECAR: the author's own bytes");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    // No variant is made for a file its author compressed: other codings get identity.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        let r = t.get_h("/app.js", &[&ae("br, zstd")]);
        r.assert_whole(&app_js());
        assert_eq!(r.header("Content-Encoding"), None);
        assert_vary(&r, "identity beside a sidecar");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_file_too_large_for_the_memory_cache_still_gets_variants_from_memory() {
    let _heavy = heavy_lock();
    let big = js(1024 * 1024 + 17, 9);
    let t = TestServer::with(
        |root| {
            write(root, "bundle.js", &big);
        },
        |c| c.cache_max_file_bytes = 64 * 1024,
    );
    let r = t.get("/bundle.js");
    r.assert_whole(&big);
    assert_vary(&r, "identity from disk");
    for coding in CODINGS {
        let r = wait_for(&t, "/bundle.js", coding);
        assert_eq!(decode(coding, &r.body), big, "{coding}");
        let r = t.get_h("/bundle.js", &[&ae(coding), "Range: bytes=100-199"]);
        r.assert_status(206);
        assert_eq!(r.header("Content-Encoding"), Some(coding));
    }
    // Identity still comes whole from the file.
    t.get("/bundle.js").assert_whole(&big);
}

/// One response seen under load: when, its Content-Encoding, its ETag, its decoded body.
type Seen = (Instant, Option<String>, String, Vec<u8>);

#[test]
fn an_edited_file_switches_to_its_new_variants() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let old = js(40 * 1024, 1);
    let new = js(41 * 1024, 2);
    let t = TestServer::with(|root| drop(write(root, "app.js", &old)), |_| {});
    wait_for(&t, "/app.js", "br");
    // Load: a client asking for br as fast as it can, recording what it got and when.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let load = {
        let (stop, seen, addr) = (stop.clone(), seen.clone(), t.addr);
        std::thread::spawn(move || {
            let mut c = Conn::open(addr);
            while !stop.load(Ordering::SeqCst) {
                let r = c.get_h("/app.js", &["Accept-Encoding: br"]);
                r.assert_status(200);
                let coding = r.header("Content-Encoding").map(str::to_string);
                let body = match &coding {
                    Some(cd) => decode(cd, &r.body),
                    None => r.body.clone(),
                };
                let etag = r.expect_header("ETag").to_string();
                seen.lock()
                    .unwrap()
                    .push((Instant::now(), coding, etag, body));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    write(&t.root, "app.js", &new);
    let edited = Instant::now();
    let deadline = edited + Duration::from_secs(10);
    let switched = loop {
        let got = seen
            .lock()
            .unwrap()
            .iter()
            .find_map(|(at, coding, _, body)| {
                (coding.as_deref() == Some("br") && *body == new).then_some(*at)
            });
        if let Some(at) = got {
            break at;
        }
        assert!(Instant::now() < deadline, "no new br variant within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    load.join().expect("the load thread");
    let seen = seen.lock().unwrap();
    // Every response is the old file or the new one, whole; its tag names one version;
    // once the new version shows, the old never comes back; and the old one is not
    // served beyond the revalidation interval (a second) after the edit.
    let mut tags = std::collections::HashMap::new();
    let mut new_seen = false;
    for (at, coding, etag, body) in seen.iter() {
        let is_new = *body == new;
        assert!(is_new || *body == old, "a response that is neither version");
        assert_eq!(
            *tags.entry(etag.clone()).or_insert(is_new),
            is_new,
            "{etag} named both versions"
        );
        if is_new {
            new_seen = true;
        } else {
            assert!(!new_seen, "the old version came back ({coding:?})");
            assert!(
                at.saturating_duration_since(edited) < Duration::from_millis(1100),
                "the old version served {:?} after the edit",
                at.saturating_duration_since(edited)
            );
        }
    }
    // The new variants follow the new identity as soon as they are made (a few ms
    // for this file), not a revalidation later.
    assert!(
        switched.saturating_duration_since(edited) < Duration::from_secs(3),
        "new br variant only {:?} after the edit",
        switched.saturating_duration_since(edited)
    );
}

#[test]
fn a_flood_of_first_requests_does_not_delay_another_client() {
    let _heavy = heavy_lock();
    const FILES: usize = 1000;
    /// Each attempt floods a fresh set of files (first requests); the test passes when one
    /// attempt keeps the probe's p99 within the limit. A shared 2-core machine has bursts
    /// of its own that no server can hide, but work done on the request path (a compression
    /// in line) shows in every attempt: hundreds of milliseconds.
    const ATTEMPTS: usize = 5;
    let t = TestServer::with(
        |root| {
            write(root, "probe.txt", b"probe\n");
            for a in 0..ATTEMPTS {
                for i in 0..FILES {
                    write(
                        root,
                        &format!("f{a}/{i}.js"),
                        js(4 * 1024, (a * FILES + i) as u64),
                    );
                }
            }
        },
        |_| {},
    );
    let mut seen = Vec::new();
    for attempt in 0..ATTEMPTS {
        // The same probe first without the flood: what this machine gives now.
        let quiet = Probe::quiet(t.addr, "/probe.txt", b"probe\n", Duration::from_millis(10));
        let limit = stall_limit(&quiet);
        let probe = Probe::start(t.addr, "/probe.txt", b"probe\n", Duration::from_millis(10));
        // A client asks for every file once, as fast as it can: each file is queued for
        // the background pool, and each request is answered at once with identity. (One
        // client: on a 2-core machine, more would measure the clients' own CPU.)
        let flood: Vec<_> = (0..1)
            .map(|k| {
                let addr = t.addr;
                std::thread::spawn(move || {
                    let mut c = Conn::open(addr);
                    for i in (k..FILES).step_by(1) {
                        let r = c.get_h(
                            &format!("/f{attempt}/{i}.js"),
                            &["Accept-Encoding: br, gzip, zstd"],
                        );
                        r.assert_status(200);
                        assert_eq!(r.header("Content-Encoding"), None, "first request");
                    }
                })
            })
            .collect();
        for f in flood {
            f.join().expect("a flood client");
        }
        // The pool is busy with a thousand files for a while yet: keep probing beside it.
        std::thread::sleep(Duration::from_secs(2));
        let stats = probe.finish();
        assert!(stats.failures.is_empty(), "{:?}", stats.failures.first());
        assert!(stats.ok() >= 20, "only {} probe answers", stats.ok());
        let line = format!(
            "attempt {attempt}: without the flood {}; beside the flood and the pool {}; \
             limit {limit:?}",
            probe_summary(&quiet),
            probe_summary(&stats)
        );
        eprintln!("{line}");
        seen.push(line);
        if stats.percentile(99) < limit {
            // And the pool does its work meanwhile: a file gets its variants.
            wait_for(&t, &format!("/f{attempt}/0.js"), "br");
            return;
        }
    }
    panic!(
        "the probe's p99 beside the flood stayed at its limit or over in every attempt:\n{}",
        seen.join("\n")
    );
}

// --- real clients ----------------------------------------------------------------------

fn url(t: &TestServer, path: &str) -> String {
    format!("http://{}{path}", t.addr)
}

/// Fails (never skips) when `tool` cannot be run.
#[track_caller]
fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} is required by this test but cannot be run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Waits for every variant of the site (a few seconds of Brotli 11 in the background pool:
/// callers hold the heavy lock, so that this work is never beside a latency test).
fn warm(t: &TestServer) {
    for path in ["/app.js", "/style.css", "/data.json", "/index.html"] {
        for coding in CODINGS {
            wait_for(t, path, coding);
        }
    }
}

#[test]
fn curl_compressed_decodes_each_coding_to_the_exact_bytes() {
    let _heavy = heavy_lock();
    let version = String::from_utf8(run(Command::new("curl").arg("-V"), "curl")).unwrap();
    let features = version
        .lines()
        .find_map(|l| l.strip_prefix("Features:"))
        .unwrap_or("");
    for f in ["libz", "brotli", "zstd"] {
        assert!(
            features.split_whitespace().any(|x| x == f),
            "this curl lacks {f} ({features}); install a curl built with libz, brotli and zstd"
        );
    }
    let t = server();
    warm(&t);
    let dir = tempfile::tempdir().unwrap();
    for coding in CODINGS {
        for (path, bytes) in [
            ("/app.js", app_js()),
            ("/style.css", style_css()),
            ("/data.json", data_json()),
        ] {
            let headers = dir.path().join("h");
            let body = run(
                Command::new("curl")
                    .args(["-sS", "--max-time", "20", "--noproxy", "*", "--compressed"])
                    .args(["-H", &ae(coding), "-D"])
                    .arg(&headers)
                    .arg(url(&t, path))
                    .env("HOME", "/nonexistent"),
                "curl",
            );
            let head = std::fs::read_to_string(&headers)
                .unwrap()
                .to_ascii_lowercase();
            assert!(
                head.contains(&format!("content-encoding: {coding}\r\n")),
                "curl {coding} {path}: {head}"
            );
            assert_body_eq(&body, &bytes, &format!("curl --compressed {coding} {path}"));
        }
    }
}

const PYTHON_CLIENT: &str = r#"
import gzip, sys, urllib.request
import brotli, zstandard
url, coding, out = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, headers={"Accept-Encoding": coding})
with urllib.request.urlopen(req, timeout=20) as r:
    got = r.headers.get("Content-Encoding")
    body = r.read()
if got != coding:
    sys.exit("asked for %s, got Content-Encoding %r" % (coding, got))
if coding == "br":
    body = brotli.decompress(body)
elif coding == "zstd":
    body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
else:
    body = gzip.decompress(body)
open(out, "wb").write(body)
"#;

#[test]
fn python_decodes_each_coding_to_the_exact_bytes() {
    let _heavy = heavy_lock();
    let t = server();
    warm(&t);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for coding in CODINGS {
        for (path, bytes) in [("/app.js", app_js()), ("/data.json", data_json())] {
            run(
                Command::new("python3")
                    .args(["-c", PYTHON_CLIENT, &url(&t, path), coding])
                    .arg(&out),
                "python3 with the brotli and zstandard packages (pip install brotli zstandard)",
            );
            let got = std::fs::read(&out).unwrap();
            assert_body_eq(&got, &bytes, &format!("python {coding} {path}"));
        }
    }
}

#[test]
fn headless_chromium_decodes_a_compressed_data_file_to_its_checksum() {
    // A browser is a heavy neighbour: not beside the latency tests.
    let _heavy = heavy_lock();
    let t = server();
    warm(&t);
    let profile = tempfile::tempdir().unwrap();
    let dom = run(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--virtual-time-budget=20000",
                "--timeout=30000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(url(&t, "/index.html")),
        "chromium (apt-get install chromium)",
    );
    let dom = String::from_utf8_lossy(&dom);
    let data = data_json();
    let want = format!("len={} fnv={:x} enc=", data.len(), fnv1a(&data));
    let line = dom
        .lines()
        .find(|l| l.contains("id=\"out\""))
        .unwrap_or_else(|| panic!("no output paragraph in the DOM: {dom}"));
    assert!(line.contains(&want), "want {want:?} in {line:?}");
    assert!(
        line.contains("enc=br") || line.contains("enc=zstd"),
        "Chromium got no compressed response: {line:?}"
    );
}
