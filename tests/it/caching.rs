//! Caching policy: `Cache-Control: no-cache` on HTML, nothing by default on
//! other files, `--cache-control` for non-HTML, `--immutable` for fingerprinted
//! names; validators even for a file whose mtime is the epoch.

use std::path::Path;
use std::time::UNIX_EPOCH;

use super::support::*;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const CUSTOM: &str = "public, max-age=3600";

fn files(root: &Path) {
    write(root, "index.html", "<h1>home</h1>\n");
    write(root, "page.html", "<p>page</p>\n");
    write(root, "old.htm", "<p>old</p>\n");
    write(root, "docs/index.html", "<h1>docs</h1>\n");
    write(root, "style.css", "body{}\n");
    write(root, "app.js", "let a = 1;\n");
    write(root, "notes.txt", "notes\n");
    write(root, "logo.png", b"\x89PNG fake\n");
    write(root, "report-20240115.pdf", "%PDF fake\n");
    write(root, "app.3f9a1c.js", "fingerprinted 1\n");
    write(root, "index-BdR4xq2J.js", "fingerprinted 2\n");
    write(root, "main.3f9a1c2b.css", "fingerprinted 3\n");
    write(root, "big.bin", pattern_bytes(300 * 1024, 9));
    write(root, "big.html", text_bytes(300 * 1024));
    write(root, "big.5e8c1a9f.bin", pattern_bytes(200 * 1024, 10));
}

/// Fetch `target` (GET and HEAD) and assert its Cache-Control is `want`.
#[track_caller]
fn assert_cache_control(t: &TestServer, target: &str, want: Option<&str>) {
    let mut c = t.connect();
    let r = c.get(target);
    r.assert_line(200);
    assert_eq!(
        r.header("Cache-Control"),
        want,
        "GET {target}: Cache-Control\n{}",
        r.describe()
    );
    let h = c.head(target);
    assert_eq!(
        h.header("Cache-Control"),
        want,
        "HEAD {target}: Cache-Control"
    );
}

#[test]
fn html_is_no_cache_and_other_files_have_no_cache_control_by_default() {
    let t = TestServer::with(files, |_| {});
    for target in [
        "/index.html",
        "/",
        "/page.html",
        "/old.htm",
        "/docs/",
        "/big.html",
    ] {
        assert_cache_control(&t, target, Some("no-cache"));
    }
    for target in [
        "/style.css",
        "/app.js",
        "/notes.txt",
        "/logo.png",
        "/report-20240115.pdf",
        "/app.3f9a1c.js",
        "/big.bin",
    ] {
        assert_cache_control(&t, target, None);
    }
}

#[test]
fn custom_cache_control_applies_to_non_html_only() {
    let t = TestServer::with(files, |cfg| cfg.cache_control = Some(CUSTOM.into()));
    for target in [
        "/style.css",
        "/app.js",
        "/logo.png",
        "/app.3f9a1c.js",
        "/big.bin",
    ] {
        assert_cache_control(&t, target, Some(CUSTOM));
    }
    for target in ["/index.html", "/", "/page.html", "/big.html"] {
        assert_cache_control(&t, target, Some("no-cache"));
    }
}

#[test]
fn immutable_marks_fingerprinted_names_only() {
    let t = TestServer::with(files, |cfg| cfg.immutable = true);
    for target in [
        "/app.3f9a1c.js",
        "/index-BdR4xq2J.js",
        "/main.3f9a1c2b.css",
        "/big.5e8c1a9f.bin",
    ] {
        assert_cache_control(&t, target, Some(IMMUTABLE));
    }
    for target in [
        "/app.js",
        "/report-20240115.pdf",
        "/logo.png",
        "/style.css",
        "/big.bin",
    ] {
        assert_cache_control(&t, target, None);
    }
    assert_cache_control(&t, "/index.html", Some("no-cache"));
}

#[test]
fn immutable_with_custom_cache_control() {
    let t = TestServer::with(files, |cfg| {
        cfg.immutable = true;
        cfg.cache_control = Some(CUSTOM.into());
    });
    assert_cache_control(&t, "/app.3f9a1c.js", Some(IMMUTABLE));
    assert_cache_control(&t, "/main.3f9a1c2b.css", Some(IMMUTABLE));
    assert_cache_control(&t, "/app.js", Some(CUSTOM));
    assert_cache_control(&t, "/report-20240115.pdf", Some(CUSTOM));
    assert_cache_control(&t, "/index.html", Some("no-cache"));
}

#[test]
fn a_missing_fingerprinted_name_is_not_cached_as_immutable() {
    let t = TestServer::with(files, |cfg| cfg.immutable = true);
    let r = t.get("/app.deadbeef.js");
    r.assert_error(404);
    assert!(
        !r.header("Cache-Control")
            .unwrap_or("")
            .contains("immutable"),
        "a 404 marked immutable\n{}",
        r.describe()
    );
}

#[test]
fn cache_control_on_304_and_206() {
    let t = TestServer::with(files, |cfg| {
        cfg.immutable = true;
        cfg.cache_control = Some(CUSTOM.into());
    });
    let mut c = t.connect();
    for (target, want) in [
        ("/app.3f9a1c.js", IMMUTABLE),
        ("/app.js", CUSTOM),
        ("/page.html", "no-cache"),
        ("/big.bin", CUSTOM),
    ] {
        let ok = c.get(target);
        let etag = ok.expect_header("ETag").to_string();
        let lm = ok.expect_header("Last-Modified").to_string();
        let r = c.get_h(target, &[&format!("If-None-Match: {etag}")]);
        r.assert_not_modified(&etag, &lm);
        assert_eq!(
            r.header("Cache-Control"),
            Some(want),
            "304 {target}\n{}",
            r.describe()
        );
        let r = c.get_h(target, &["Range: bytes=0-3"]);
        r.assert_line(206);
        assert_eq!(
            r.header("Cache-Control"),
            Some(want),
            "206 {target}\n{}",
            r.describe()
        );
        assert_eq!(r.body, &ok.body[..4]);
    }
}

#[test]
fn validators_are_sent_for_an_mtime_of_zero() {
    let small = b"from the epoch\n".to_vec();
    // Held in memory: its content decides; sent from disk: "0-<size hex>" (204800 = 0x32000).
    let small_etag = content_etag(&small);
    let t = TestServer::with(
        move |root| {
            for (name, bytes) in [
                ("epoch.txt", small),
                ("epoch.bin", pattern_bytes(200 * 1024, 1)),
            ] {
                let p = write(root, name, bytes);
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(UNIX_EPOCH)
                    .unwrap();
            }
        },
        |_| {},
    );
    let mut c = t.connect();
    for (target, etag) in [
        ("/epoch.txt", small_etag.as_str()),
        ("/epoch.bin", "\"0-32000\""),
    ] {
        let r = c.get(target);
        r.assert_line(200);
        assert_eq!(r.header("ETag"), Some(etag), "{target}\n{}", r.describe());
        assert_eq!(
            r.header("Last-Modified"),
            Some("Thu, 01 Jan 1970 00:00:00 GMT"),
            "{target}\n{}",
            r.describe()
        );
        let r = c.get_h(target, &[&format!("If-None-Match: {etag}")]);
        r.assert_not_modified(etag, "Thu, 01 Jan 1970 00:00:00 GMT");
        let r = c.get_h(
            target,
            &["If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"],
        );
        r.assert_not_modified(etag, "Thu, 01 Jan 1970 00:00:00 GMT");
        let r = c.get_h(
            target,
            &[
                "If-Range: Thu, 01 Jan 1970 00:00:00 GMT",
                "Range: bytes=0-1",
            ],
        );
        r.assert_line(206);
    }
}
