//! Precompressed sidecars: `name.br`, `name.zst`, `name.gz` next to `name`,
//! chosen by Accept-Encoding (br, then zstd, then gzip on equal weights), with
//! the original's Content-Type, their own ETag, Vary: Accept-Encoding, and
//! conditionals and ranges applied to the chosen representation. The server
//! never decompresses: the sidecars hold distinct fake bytes.

use std::path::Path;

use super::support::*;

const MTIME: u64 = 1_700_000_000;
const JS_TYPE: &str = "text/javascript; charset=utf-8";

const APP_JS: &[u8] = b"console.log('the identity representation of app.js');\n";
const APP_BR: &[u8] = b"BR-DATA: not really brotli";
const APP_ZST: &[u8] = b"ZSTD-DATA: not really zstandard, longer";
const APP_GZ: &[u8] = b"GZ-DATA: not really gzip";

fn big_identity() -> Vec<u8> {
    text_bytes(300 * 1024)
}

fn big_br() -> Vec<u8> {
    pattern_bytes(200 * 1024, 5)
}

fn files(root: &Path) {
    for (name, bytes) in [
        ("app.js", APP_JS),
        ("app.js.br", APP_BR),
        ("app.js.zst", APP_ZST),
        ("app.js.gz", APP_GZ),
        ("plain.js", b"console.log('no sidecars');\n".as_slice()),
        ("style.css", b"body { color: red }\n".as_slice()),
        ("style.css.gz", b"GZ-CSS".as_slice()),
        ("index.html", b"<h1>home</h1>\n".as_slice()),
        ("index.html.gz", b"GZ-INDEX-HTML".as_slice()),
    ] {
        let p = write(root, name, bytes);
        set_mtime(&p, MTIME, 0);
    }
    let p = write(root, "big.txt", big_identity());
    set_mtime(&p, MTIME, 0);
    let p = write(root, "big.txt.br", big_br());
    set_mtime(&p, MTIME, 0);
}

fn server() -> TestServer {
    TestServer::with(files, |_| {})
}

fn ae(v: &str) -> String {
    format!("Accept-Encoding: {v}")
}

/// Assert a 200 carrying the sidecar `bytes` with Content-Encoding `coding`.
#[track_caller]
fn assert_encoded(r: &Response, coding: &str, bytes: &[u8], content_type: &str) {
    r.assert_line(200);
    assert_eq!(
        r.header("Content-Encoding"),
        Some(coding),
        "Content-Encoding\n{}",
        r.describe()
    );
    assert_eq!(
        r.header("Content-Type"),
        Some(content_type),
        "Content-Type\n{}",
        r.describe()
    );
    assert_eq!(
        r.header("Vary"),
        Some("Accept-Encoding"),
        "Vary\n{}",
        r.describe()
    );
    r.assert_whole(bytes);
}

/// Assert a 200 carrying the identity representation (with Vary, since the
/// resource has sidecars).
#[track_caller]
fn assert_identity_with_vary(r: &Response, bytes: &[u8]) {
    r.assert_line(200);
    assert_eq!(
        r.header("Content-Encoding"),
        None,
        "unexpected Content-Encoding\n{}",
        r.describe()
    );
    assert_eq!(
        r.header("Vary"),
        Some("Accept-Encoding"),
        "Vary\n{}",
        r.describe()
    );
    r.assert_whole(bytes);
}

#[test]
fn br_is_chosen_and_served_as_is() {
    let t = server();
    let identity = t.get("/app.js");
    let r = t.get_h("/app.js", &[&ae("gzip, br, zstd")]);
    assert_encoded(&r, "br", APP_BR, JS_TYPE);
    assert_eq!(
        r.header("Content-Length"),
        Some(APP_BR.len().to_string().as_str())
    );
    let etag = r.expect_header("ETag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "ETag {etag:?} is not a strong tag"
    );
    assert_ne!(
        Some(etag),
        identity.header("ETag"),
        "br and identity share an ETag"
    );
    assert!(r.header("Last-Modified").is_some());
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
}

#[test]
fn preference_on_equal_weights_is_br_then_zstd_then_gzip() {
    let t = server();
    let mut c = t.connect();
    for (field, coding, bytes) in [
        ("gzip, br, zstd", "br", APP_BR),
        ("zstd, gzip, br", "br", APP_BR),
        ("gzip, zstd", "zstd", APP_ZST),
        ("zstd, gzip", "zstd", APP_ZST),
        ("gzip", "gzip", APP_GZ),
        ("zstd", "zstd", APP_ZST),
        ("br", "br", APP_BR),
        ("*", "br", APP_BR),
        ("gzip;q=1.0, br;q=1, zstd;q=1.000", "br", APP_BR),
        ("GZIP, ZSTD", "zstd", APP_ZST),
    ] {
        let r = c.get_h("/app.js", &[&ae(field)]);
        assert_eq!(
            r.header("Content-Encoding"),
            Some(coding),
            "Accept-Encoding: {field}\n{}",
            r.describe()
        );
        assert_encoded(&r, coding, bytes, JS_TYPE);
    }
}

#[test]
fn q_values_are_honoured() {
    let t = server();
    let mut c = t.connect();
    for (field, coding, bytes) in [
        ("br;q=0.5, gzip;q=0.8", "gzip", APP_GZ),
        ("br;q=0.5, gzip;q=0.8, zstd;q=0.9", "zstd", APP_ZST),
        ("br;q=0, gzip, zstd", "zstd", APP_ZST),
        ("br;q=0, zstd;q=0, gzip", "gzip", APP_GZ),
        ("gzip;q=0.001, br;q=0.002", "br", APP_BR),
        ("*;q=0.5, br;q=0", "zstd", APP_ZST),
        ("x-gzip", "gzip", APP_GZ),
        ("gzip;q=0.5, identity;q=0.4", "gzip", APP_GZ),
    ] {
        let r = c.get_h("/app.js", &[&ae(field)]);
        assert_eq!(
            r.header("Content-Encoding"),
            Some(coding),
            "Accept-Encoding: {field}\n{}",
            r.describe()
        );
        assert_encoded(&r, coding, bytes, JS_TYPE);
    }
    // Every coding refused: the identity.
    for field in [
        "br;q=0",
        "br;q=0, gzip;q=0, zstd;q=0",
        "identity",
        "",
        "compress, deflate",
        "*;q=0",
        "gzip;q=0.5, identity",
    ] {
        let r = c.get_h("/app.js", &[&ae(field)]);
        assert_eq!(
            r.status,
            200,
            "Accept-Encoding: {field:?}\n{}",
            r.describe()
        );
        assert_identity_with_vary(&r, APP_JS);
    }
}

#[test]
fn each_representation_has_its_own_etag() {
    let t = server();
    let mut c = t.connect();
    let mut tags = Vec::new();
    for field in [None, Some("br"), Some("zstd"), Some("gzip")] {
        let r = match field {
            None => c.get("/app.js"),
            Some(f) => c.get_h("/app.js", &[&ae(f)]),
        };
        r.assert_line(200);
        tags.push(r.expect_header("ETag").to_string());
        // Stable: the same again.
        let again = match field {
            None => c.get("/app.js"),
            Some(f) => c.get_h("/app.js", &[&ae(f)]),
        };
        assert_eq!(again.header("ETag"), Some(tags.last().unwrap().as_str()));
    }
    // All held in memory: each tag is its own bytes' hash, a sidecar's with its coding.
    assert_eq!(tags[0], content_etag(APP_JS), "identity ETag");
    assert_eq!(tags[1], content_etag_coded(APP_BR, "br"), "br ETag");
    assert_eq!(tags[2], content_etag_coded(APP_ZST, "zstd"), "zstd ETag");
    assert_eq!(tags[3], content_etag_coded(APP_GZ, "gzip"), "gzip ETag");
    for i in 0..tags.len() {
        for j in i + 1..tags.len() {
            assert_ne!(
                tags[i], tags[j],
                "two representations share an ETag: {tags:?}"
            );
        }
    }
}

#[test]
fn etags_differ_even_when_a_sidecar_has_the_same_size_and_mtime() {
    let t = TestServer::with(
        |root| {
            let p = write(root, "same.txt", "0123456789");
            set_mtime(&p, MTIME, 0);
            let p = write(root, "same.txt.gz", "GZGZGZGZGZ");
            set_mtime(&p, MTIME, 0);
        },
        |_| {},
    );
    let a = t.get("/same.txt");
    let b = t.get_h("/same.txt", &[&ae("gzip")]);
    assert_identity_with_vary(&a, b"0123456789");
    assert_encoded(&b, "gzip", b"GZGZGZGZGZ", "text/plain; charset=utf-8");
    assert_ne!(
        a.header("ETag"),
        b.header("ETag"),
        "identity and gzip share an ETag\n{}\n{}",
        a.describe(),
        b.describe()
    );
}

#[test]
fn identity_responses_of_a_resource_with_sidecars_carry_vary() {
    let t = server();
    let mut c = t.connect();
    let r = c.get("/app.js");
    assert_identity_with_vary(&r, APP_JS);
    assert_eq!(r.header("Content-Type"), Some(JS_TYPE));
    assert_eq!(r.header("ETag"), Some(content_etag(APP_JS).as_str()));
    let r = c.get_h("/app.js", &[&ae("identity")]);
    assert_identity_with_vary(&r, APP_JS);
    let h = c.req("HEAD", "/app.js", &[]);
    h.assert_line(200);
    assert_eq!(h.header("Vary"), Some("Accept-Encoding"));
}

#[test]
fn a_resource_without_sidecars_has_no_vary() {
    let t = server();
    let mut c = t.connect();
    for field in [None, Some("gzip, br, zstd")] {
        let r = match field {
            None => c.get("/plain.js"),
            Some(f) => c.get_h("/plain.js", &[&ae(f)]),
        };
        r.assert_whole(b"console.log('no sidecars');\n");
        assert_eq!(r.header("Vary"), None, "{}", r.describe());
        assert_eq!(r.header("Content-Encoding"), None);
    }
}

#[test]
fn only_gz_present_and_br_asked_is_identity() {
    let t = server();
    let mut c = t.connect();
    let r = c.get_h("/style.css", &[&ae("br")]);
    assert_identity_with_vary(&r, b"body { color: red }\n");
    assert_eq!(r.header("Content-Type"), Some("text/css; charset=utf-8"));
    let r = c.get_h("/style.css", &[&ae("br, zstd")]);
    assert_identity_with_vary(&r, b"body { color: red }\n");
    let r = c.get_h("/style.css", &[&ae("br, gzip")]);
    assert_encoded(&r, "gzip", b"GZ-CSS", "text/css; charset=utf-8");
}

#[test]
fn conditionals_apply_to_the_chosen_representation() {
    let t = server();
    let mut c = t.connect();
    let identity = c.get("/app.js");
    let id_tag = identity.expect_header("ETag").to_string();
    let br = c.get_h("/app.js", &[&ae("br")]);
    let br_tag = br.expect_header("ETag").to_string();
    let lm = br.expect_header("Last-Modified").to_string();

    // The br tag while asking for br: 304, with Vary.
    let r = c.get_h("/app.js", &[&ae("br"), &format!("If-None-Match: {br_tag}")]);
    r.assert_not_modified(&br_tag, &lm);
    assert_eq!(
        r.header("Vary"),
        Some("Accept-Encoding"),
        "304 Vary\n{}",
        r.describe()
    );
    // The identity tag while asking for br: the br bytes, 200.
    let r = c.get_h("/app.js", &[&ae("br"), &format!("If-None-Match: {id_tag}")]);
    assert_encoded(&r, "br", APP_BR, JS_TYPE);
    // The br tag while asking for identity: the identity bytes, 200.
    let r = c.get_h("/app.js", &[&format!("If-None-Match: {br_tag}")]);
    assert_identity_with_vary(&r, APP_JS);
    // The identity tag without Accept-Encoding: 304 with Vary.
    let r = c.get_h("/app.js", &[&format!("If-None-Match: {id_tag}")]);
    r.assert_not_modified(&id_tag, identity.expect_header("Last-Modified"));
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    // If-Match is strong and per representation too.
    let r = c.get_h("/app.js", &[&ae("br"), &format!("If-Match: {id_tag}")]);
    r.assert_line(412);
    let r = c.get_h("/app.js", &[&ae("br"), &format!("If-Match: {br_tag}")]);
    assert_encoded(&r, "br", APP_BR, JS_TYPE);
    c.get("/plain.js").assert_line(200);
}

#[test]
fn a_range_applies_to_the_chosen_representation() {
    let t = server();
    let mut c = t.connect();
    let r = c.get_h("/app.js", &[&ae("br"), "Range: bytes=0-6"]);
    r.assert_partial(0, 6, APP_BR.len() as u64, &APP_BR[..7]);
    assert_eq!(r.header("Content-Encoding"), Some("br"), "{}", r.describe());
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    let r = c.get_h("/app.js", &[&ae("gzip"), "Range: bytes=-4"]);
    let n = APP_GZ.len() as u64;
    r.assert_partial(n - 4, n - 1, n, &APP_GZ[APP_GZ.len() - 4..]);
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    // If-Range with the br tag applies to the br representation.
    let br_tag = c
        .get_h("/app.js", &[&ae("br")])
        .expect_header("ETag")
        .to_string();
    let r = c.get_h(
        "/app.js",
        &[
            &ae("br"),
            &format!("If-Range: {br_tag}"),
            "Range: bytes=3-5",
        ],
    );
    r.assert_partial(3, 5, APP_BR.len() as u64, &APP_BR[3..6]);
    // A multipart over the zstd bytes.
    let r = c.get_h("/app.js", &[&ae("zstd"), "Range: bytes=0-1,10-12"]);
    r.assert_line(206);
    assert_eq!(r.header("Content-Encoding"), Some("zstd"));
    let parts = r.byteranges();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].range(), (0, 1, APP_ZST.len() as u64));
    assert_eq!(parts[0].body, &APP_ZST[0..2]);
    assert_eq!(parts[0].header("Content-Type"), Some(JS_TYPE));
    assert_eq!(parts[1].range(), (10, 12, APP_ZST.len() as u64));
    assert_eq!(parts[1].body, &APP_ZST[10..13]);
    // Unsatisfiable against the br length (the identity is longer).
    let r = c.get_h(
        "/app.js",
        &[&ae("br"), &format!("Range: bytes={}-", APP_BR.len())],
    );
    r.assert_line(416);
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes */{}", APP_BR.len()).as_str())
    );
}

#[test]
fn head_with_accept_encoding_describes_the_sidecar() {
    let t = server();
    let mut c = t.connect();
    let g = c.get_h("/app.js", &[&ae("br")]);
    let h = c.req("HEAD", "/app.js", &[&ae("br")]);
    h.assert_line(200);
    for name in [
        "Content-Encoding",
        "Content-Type",
        "Content-Length",
        "ETag",
        "Vary",
        "Last-Modified",
    ] {
        assert_eq!(h.header(name), g.header(name), "HEAD vs GET: {name}");
    }
    assert_eq!(
        h.header("Content-Length"),
        Some(APP_BR.len().to_string().as_str())
    );
    c.get("/plain.js").assert_line(200);
}

#[test]
fn a_sidecar_requested_directly_is_a_plain_file() {
    let t = server();
    let r = t.get_h("/app.js.gz", &[&ae("gzip, br")]);
    r.assert_whole(APP_GZ);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/gzip"),
        "{}",
        r.describe()
    );
    assert_eq!(r.header("Content-Encoding"), None, "{}", r.describe());
    let r = t.get("/app.js.gz");
    r.assert_whole(APP_GZ);
    assert_eq!(r.header("Content-Type"), Some("application/gzip"));
    assert_eq!(r.header("Content-Encoding"), None);
}

#[test]
fn directory_index_uses_its_gz_sidecar() {
    let t = server();
    let mut c = t.connect();
    for target in ["/", "/index.html"] {
        let r = c.get_h(target, &[&ae("gzip, deflate")]);
        assert_encoded(&r, "gzip", b"GZ-INDEX-HTML", "text/html; charset=utf-8");
        let r = c.get(target);
        assert_identity_with_vary(&r, b"<h1>home</h1>\n");
    }
}

#[test]
fn large_files_and_sidecars_beyond_the_cache_limit() {
    let t = server();
    let (id, br) = (big_identity(), big_br());
    let mut c = t.connect();
    let r = c.get_h("/big.txt", &[&ae("gzip, br")]);
    assert_encoded(&r, "br", &br, "text/plain; charset=utf-8");
    let br_tag = r.expect_header("ETag").to_string();
    let r = c.get("/big.txt");
    assert_identity_with_vary(&r, &id);
    assert_ne!(r.header("ETag"), Some(br_tag.as_str()));
    let r = c.get_h("/big.txt", &[&ae("br"), "Range: bytes=150000-150099"]);
    r.assert_partial(150_000, 150_099, br.len() as u64, &br[150_000..150_100]);
    assert_eq!(r.header("Content-Encoding"), Some("br"));
    let r = c.get_h(
        "/big.txt",
        &[&ae("br"), &format!("If-None-Match: {br_tag}")],
    );
    r.assert_line(304);
    assert_eq!(r.header("ETag"), Some(br_tag.as_str()));
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    c.get("/plain.js").assert_line(200);
}

#[test]
fn a_big_original_with_a_small_sidecar() {
    // The identity is streamed (above the cache limit), the sidecar is cached.
    let original = text_bytes(400 * 1024);
    let gz = pattern_bytes(40 * 1024, 8);
    let t = TestServer::with(
        |root| {
            let p = write(root, "bundle.js", &original);
            set_mtime(&p, MTIME, 0);
            let p = write(root, "bundle.js.gz", &gz);
            set_mtime(&p, MTIME, 0);
        },
        |_| {},
    );
    let mut c = t.connect();
    let r = c.get_h("/bundle.js", &[&ae("gzip")]);
    assert_encoded(&r, "gzip", &gz, JS_TYPE);
    let gz_tag = r.expect_header("ETag").to_string();
    // The sidecar is held in memory, the original sent from disk: one tag of each form.
    assert_eq!(gz_tag, content_etag_coded(&gz, "gzip"));
    let r = c.get("/bundle.js");
    assert_identity_with_vary(&r, &original);
    let id_tag = r.expect_header("ETag").to_string();
    assert_eq!(id_tag, etag_of(MTIME, original.len() as u64));
    assert_ne!(id_tag, gz_tag);
    let r = c.get_h("/bundle.js", &[&ae("gzip"), "Range: bytes=100-199"]);
    r.assert_partial(100, 199, gz.len() as u64, &gz[100..200]);
    let r = c.get_h("/bundle.js", &["Range: bytes=300000-300099"]);
    r.assert_partial(
        300_000,
        300_099,
        original.len() as u64,
        &original[300_000..300_100],
    );
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    let r = c.get_h(
        "/bundle.js",
        &[&ae("gzip"), &format!("If-None-Match: {gz_tag}")],
    );
    r.assert_line(304);
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    let r = c.get_h("/bundle.js", &[&format!("If-None-Match: {id_tag}")]);
    r.assert_line(304);
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    // If-Range with the identity tag while gzip is chosen: the whole gzip body.
    let r = c.get_h(
        "/bundle.js",
        &[
            &ae("gzip"),
            &format!("If-Range: {id_tag}"),
            "Range: bytes=0-9",
        ],
    );
    assert_encoded(&r, "gzip", &gz, JS_TYPE);
}

#[test]
fn sidecars_follow_changes_on_disk() {
    let t = TestServer::with(
        |root| {
            let p = write(root, "late.js", APP_JS);
            set_mtime(&p, MTIME, 0);
        },
        |_| {},
    );
    // Past the cache's revalidation interval.
    let settle = || std::thread::sleep(std::time::Duration::from_millis(1300));
    let r = t.get_h("/late.js", &[&ae("br, gzip")]);
    r.assert_whole(APP_JS);
    assert_eq!(r.header("Vary"), None);
    assert_eq!(r.header("Content-Encoding"), None);

    // A sidecar appears.
    let p = write(&t.root, "late.js.br", APP_BR);
    set_mtime(&p, MTIME, 0);
    settle();
    for _ in 0..2 {
        // A new connection each time: any worker must have noticed.
        assert_encoded(
            &t.get_h("/late.js", &[&ae("br, gzip")]),
            "br",
            APP_BR,
            JS_TYPE,
        );
        assert_identity_with_vary(&t.get("/late.js"), APP_JS);
    }
    let old_tag = t
        .get_h("/late.js", &[&ae("br")])
        .expect_header("ETag")
        .to_string();

    // The sidecar is rewritten with other bytes: new bytes, new ETag.
    let p = write(
        &t.root,
        "late.js.br",
        b"BR-DATA: the second build, longer than the first",
    );
    set_mtime(&p, MTIME + 60, 0);
    settle();
    for _ in 0..2 {
        let r = t.get_h("/late.js", &[&ae("br")]);
        assert_encoded(
            &r,
            "br",
            b"BR-DATA: the second build, longer than the first",
            JS_TYPE,
        );
        assert_ne!(
            r.header("ETag"),
            Some(old_tag.as_str()),
            "stale sidecar ETag"
        );
    }
    let r = t.get_h(
        "/late.js",
        &[&ae("br"), &format!("If-None-Match: {old_tag}")],
    );
    r.assert_line(200);

    // The sidecar goes away: identity, and no Vary any more.
    std::fs::remove_file(&p).unwrap();
    settle();
    for _ in 0..2 {
        let r = t.get_h("/late.js", &[&ae("br, gzip")]);
        r.assert_whole(APP_JS);
        assert_eq!(r.header("Content-Encoding"), None, "{}", r.describe());
        assert_eq!(r.header("Vary"), None, "{}", r.describe());
    }
}

#[test]
fn sidecar_of_a_subdirectory_index() {
    let t = TestServer::with(
        |root| {
            write(root, "docs/index.html", "<h1>docs</h1>\n");
            write(root, "docs/index.html.br", "BR-DOCS");
        },
        |_| {},
    );
    let r = t.get_h("/docs/", &[&ae("gzip, br")]);
    assert_encoded(&r, "br", b"BR-DOCS", "text/html; charset=utf-8");
    let r = t.get("/docs/");
    assert_identity_with_vary(&r, b"<h1>docs</h1>\n");
    let r = t.get_h("/docs", &[&ae("br")]);
    r.assert_line(301);
}

#[test]
fn head_and_conditionals_on_a_sidecar() {
    let t = server();
    let mut c = t.connect();
    let g = c.get_h("/app.js", &[&ae("zstd")]);
    let tag = g.expect_header("ETag").to_string();
    let lm = g.expect_header("Last-Modified").to_string();
    let h = c.req(
        "HEAD",
        "/app.js",
        &[&ae("zstd"), &format!("If-None-Match: W/{tag}")],
    );
    h.assert_not_modified(&tag, &lm);
    assert_eq!(h.header("Vary"), Some("Accept-Encoding"));
    let r = c.get_h(
        "/app.js",
        &[&ae("zstd"), &format!("If-Modified-Since: {lm}")],
    );
    r.assert_not_modified(&tag, &lm);
    c.get("/plain.js").assert_line(200);
}
