//! Directories: index.html, 301 to the trailing-slash form (relative
//! Location, query kept), no listings, files with a trailing slash.

use std::path::Path;

use super::support::*;

fn files(root: &Path) {
    write(root, "index.html", "<h1>root index</h1>\n");
    write(root, "dir/index.html", "<h1>dir index</h1>\n");
    write(root, "dir/other.txt", "other\n");
    write(root, "a/dir/index.html", "<h1>a/dir index</h1>\n");
    write(root, "file.txt", "just a file\n");
    std::fs::create_dir(root.join("empty")).unwrap();
    write(root, "nolist/x.txt", "x\n");
}

#[test]
fn root_serves_index_html() {
    let t = TestServer::with(files, |_| {});
    let r = t.get("/");
    r.assert_status(200);
    assert_eq!(r.text(), "<h1>root index</h1>\n");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
}

#[test]
fn directory_with_slash_serves_its_index() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    let r = c.get("/dir/");
    r.assert_status(200);
    assert_eq!(r.text(), "<h1>dir index</h1>\n");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let r = c.get("/a/dir/");
    r.assert_status(200);
    assert_eq!(r.text(), "<h1>a/dir index</h1>\n");
    let h = c.head("/dir/");
    h.assert_status(200);
    assert_eq!(h.header("Content-Length"), Some("19"));
    assert_eq!(c.get("/dir/index.html").text(), "<h1>dir index</h1>\n");
    assert_eq!(c.get("/dir/other.txt").text(), "other\n");
}

#[test]
fn directory_without_slash_redirects_relative() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    let r = c.get("/dir");
    r.assert_status(301);
    assert_eq!(r.header("Location"), Some("dir/"));
    assert!(
        r.header("Content-Length").is_some(),
        "301 without Content-Length\n{}",
        r.describe()
    );
    r.assert_not_closing();
    // The connection is still usable after the redirect.
    let r = c.get("/a/dir");
    r.assert_status(301);
    assert_eq!(r.header("Location"), Some("dir/"));
    let h = c.head("/dir");
    h.assert_status(301);
    assert_eq!(h.header("Location"), Some("dir/"));
    assert_eq!(c.get("/file.txt").text(), "just a file\n");
}

#[test]
fn directory_redirect_keeps_the_query() {
    let t = TestServer::with(files, |_| {});
    let r = t.get("/a/dir?x=1");
    r.assert_status(301);
    assert_eq!(r.header("Location"), Some("dir/?x=1"));
    let r = t.get("/dir?a=1&b=two");
    r.assert_status(301);
    assert_eq!(r.header("Location"), Some("dir/?a=1&b=two"));
}

#[test]
fn directory_without_index_is_404() {
    let t = TestServer::with(files, |_| {});
    t.get("/empty/").assert_error(404);
    let r = t.get("/nolist/");
    r.assert_error(404);
    assert!(
        !r.text().contains("x.txt"),
        "directory listing leaked: {}",
        r.text()
    );
}

#[test]
fn file_with_trailing_slash_is_404() {
    let t = TestServer::with(files, |_| {});
    t.get("/file.txt/").assert_error(404);
    t.get("/dir/other.txt/").assert_error(404);
    t.get("/dir/index.html/").assert_error(404);
}

#[test]
fn redirect_for_a_directory_name_with_a_colon_is_not_a_scheme() {
    // "x:y/" would be read as an absolute URI with scheme "x"; the relative
    // reference must resolve to the directory.
    let t = TestServer::with(
        |root| {
            files(root);
            write(root, "x:y/index.html", "colon dir\n");
        },
        |_| {},
    );
    let r = t.get("/x:y");
    r.assert_status(301);
    assert_eq!(r.header("Location"), Some("./x:y/"));
    assert_eq!(t.get("/x:y/").text(), "colon dir\n");
}

#[test]
fn redirect_keeps_the_segment_percent_encoded() {
    let t = TestServer::with(
        |root| {
            files(root);
            write(root, "my dir/index.html", "spaced dir\n");
        },
        |_| {},
    );
    let r = t.get("/my%20dir?q=a%20b");
    r.assert_status(301);
    assert_eq!(r.header("Location"), Some("my%20dir/?q=a%20b"));
    assert_eq!(t.get("/my%20dir/").text(), "spaced dir\n");
}
