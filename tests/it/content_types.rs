//! Content-Type by extension: text types with `; charset=utf-8`, binary types
//! without, unknown → application/octet-stream.

use super::support::*;

const EXACT: &[(&str, &str)] = &[
    ("page.html", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("module.mjs", "text/javascript; charset=utf-8"),
    ("data.json", "application/json; charset=utf-8"),
    ("notes.txt", "text/plain; charset=utf-8"),
    ("logo.svg", "image/svg+xml; charset=utf-8"),
    ("readme.md", "text/markdown; charset=utf-8"),
    ("code.wasm", "application/wasm"),
    ("pic.png", "image/png"),
    ("font.woff2", "font/woff2"),
    ("photo.jpg", "image/jpeg"),
    ("thing.unknownext", "application/octet-stream"),
    ("noextension", "application/octet-stream"),
    ("sub/LICENSE", "application/octet-stream"),
];

fn server() -> TestServer {
    TestServer::with(
        |root| {
            for (name, _) in EXACT {
                write(root, name, format!("content of {name}\n"));
            }
            write(root, "feed.xml", "<?xml version=\"1.0\"?><a/>\n");
        },
        |_| {},
    )
}

#[test]
fn content_types_by_extension() {
    let t = server();
    let mut c = t.connect();
    let mut failures = Vec::new();
    for (name, want) in EXACT {
        let r = c.get(&format!("/{name}"));
        r.assert_status(200);
        assert_eq!(r.text(), format!("content of {name}\n"));
        let got = r.header("Content-Type");
        if got != Some(*want) {
            failures.push(format!("/{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "wrong Content-Type:\n{}",
        failures.join("\n")
    );
}

#[test]
fn xml_is_an_xml_type_with_charset() {
    let t = server();
    let r = t.get("/feed.xml");
    r.assert_status(200);
    let ct = r.expect_header("Content-Type");
    assert!(ct.contains("xml"), "xml Content-Type {ct:?}");
    assert!(
        ct.ends_with("; charset=utf-8"),
        "xml Content-Type {ct:?} without charset"
    );
    assert_eq!(ct.matches("charset").count(), 1, "xml Content-Type {ct:?}");
}

#[test]
fn head_reports_the_same_content_type() {
    let t = server();
    let mut c = t.connect();
    for (name, want) in EXACT {
        let r = c.head(&format!("/{name}"));
        r.assert_status(200);
        assert_eq!(r.header("Content-Type"), Some(*want), "HEAD /{name}");
    }
}
