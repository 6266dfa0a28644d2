//! Path traversal and escapes, table-driven: nothing outside the root is ever
//! served. Climbing above the root with `..` (after decoding) → 400; symlinks
//! leading outside → 404; symlinks inside the root are followed.

use std::os::unix::fs::symlink;

use super::support::*;

const MARKER: &str = "TOP-SECRET-1f2e3d";
const SIBLING_MARKER: &str = "SIBLING-SECRET-9a8b7c";

/// Layout:
///   <tmp>/outside/secret.txt        MARKER
///   <tmp>/rootx/secret.txt          SIBLING_MARKER (a sibling whose name starts with "root")
///   <tmp>/root/index.html
///   <tmp>/root/sub/page.html
///   <tmp>/root/up     -> ../outside/secret.txt
///   <tmp>/root/abs    -> <tmp>/outside/secret.txt (absolute)
///   <tmp>/root/outdir -> ../outside
///   <tmp>/root/sib    -> ../rootx
///   <tmp>/root/sub/deep -> ../../outside/secret.txt
///   <tmp>/root/inner  -> sub/page.html (inside: served)
///   <tmp>/root/innerdir -> sub (inside: served)
fn server() -> TestServer {
    TestServer::with(
        |root| {
            let tmp = root.parent().unwrap();
            let secret = write(tmp, "outside/secret.txt", MARKER);
            write(tmp, "outside/index.html", MARKER);
            write(tmp, "rootx/secret.txt", SIBLING_MARKER);
            write(root, "index.html", "<h1>root index</h1>\n");
            write(root, "sub/page.html", "<p>inner page</p>\n");
            symlink("../outside/secret.txt", root.join("up")).unwrap();
            symlink(&secret, root.join("abs")).unwrap();
            symlink("../outside", root.join("outdir")).unwrap();
            symlink("../rootx", root.join("sib")).unwrap();
            symlink("../../outside/secret.txt", root.join("sub/deep")).unwrap();
            symlink("sub/page.html", root.join("inner")).unwrap();
            symlink("sub", root.join("innerdir")).unwrap();
        },
        |_| {},
    )
}

#[derive(Clone, Copy, Debug)]
enum Want {
    /// Climbs above the root after decoding, or is otherwise malformed.
    BadRequest,
    /// Resolves to nothing servable (symlink out of the root, odd literal name).
    NotFound,
    /// Either refusal is acceptable (e.g. encoded slashes or backslashes).
    Refused,
}

const ATTEMPTS: &[(&str, Want)] = &[
    ("/../outside/secret.txt", Want::BadRequest),
    ("/../../etc/passwd", Want::BadRequest),
    ("/../../../../../../../../etc/passwd", Want::BadRequest),
    ("/sub/../../outside/secret.txt", Want::BadRequest),
    ("/%2e%2e/outside/secret.txt", Want::BadRequest),
    ("/%2E%2E/outside/secret.txt", Want::BadRequest),
    ("/.%2e/outside/secret.txt", Want::BadRequest),
    ("/%2e./outside/secret.txt", Want::BadRequest),
    ("/..%2foutside%2fsecret.txt", Want::Refused),
    ("/..%2Foutside/secret.txt", Want::Refused),
    ("/%2e%2e%2foutside%2fsecret.txt", Want::Refused),
    ("/sub%2f..%2f..%2foutside%2fsecret.txt", Want::Refused),
    ("/%252e%252e/outside/secret.txt", Want::NotFound),
    ("/..\\outside\\secret.txt", Want::Refused),
    ("/..%5coutside%5csecret.txt", Want::Refused),
    ("/%2e%2e%5coutside%5csecret.txt", Want::Refused),
    ("/sub/..%00/x", Want::BadRequest),
    ("/%00", Want::BadRequest),
    ("/outdir%00/secret.txt", Want::BadRequest),
    ("/up", Want::NotFound),
    ("/abs", Want::NotFound),
    ("/outdir/secret.txt", Want::NotFound),
    ("/outdir/", Want::NotFound),
    ("/outdir/index.html", Want::NotFound),
    ("/sib/secret.txt", Want::NotFound),
    ("/sub/deep", Want::NotFound),
    ("/innerdir/deep", Want::NotFound),
    ("/up?x=1", Want::NotFound),
    ("/%75p", Want::NotFound),
    ("//../outside/secret.txt", Want::Refused),
    ("/./../outside/secret.txt", Want::BadRequest),
    ("/sub/./../../outside/secret.txt", Want::BadRequest),
    ("/sub/%2e%2e/%2e%2e/outside/secret.txt", Want::BadRequest),
    ("/inner/../../outside/secret.txt", Want::BadRequest),
    ("/../rootx/secret.txt", Want::BadRequest),
    ("/..", Want::BadRequest),
    ("/sub/../..", Want::BadRequest),
    ("http://x/../outside/secret.txt", Want::BadRequest),
    ("http://x/%2e%2e/outside/secret.txt", Want::BadRequest),
    ("http://x/up", Want::NotFound),
    ("..", Want::BadRequest),
    ("../outside/secret.txt", Want::BadRequest),
    ("outside/secret.txt", Want::BadRequest),
];

#[test]
fn traversal_attempts_never_escape_the_root() {
    let t = server();
    let mut failures = Vec::new();
    for (target, want) in ATTEMPTS {
        for method in ["GET", "HEAD"] {
            let raw = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
            let (_c, r) = t.raw(&raw, method == "HEAD");
            let text = r.text();
            if text.contains(MARKER) || text.contains(SIBLING_MARKER) {
                failures.push(format!(
                    "{method} {target}: SECRET LEAKED\n{}",
                    r.describe()
                ));
                continue;
            }
            let ok = match want {
                Want::BadRequest => r.status == 400,
                Want::NotFound => r.status == 404,
                Want::Refused => r.status == 400 || r.status == 404,
            };
            if !ok {
                failures.push(format!(
                    "{method} {target}: want {want:?}, got {}",
                    r.status_line
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} traversal checks failed:\n{}",
        failures.len(),
        ATTEMPTS.len() * 2,
        failures.join("\n")
    );
}

#[test]
fn traversal_error_responses_are_well_formed() {
    let t = server();
    let (_c, r) = t.raw(request("GET", "/../outside/secret.txt", &[]), false);
    r.assert_error(400).assert_connection_close();
    let (_c, r) = t.raw(request("GET", "/up", &[]), false);
    r.assert_error(404);
}

#[test]
fn dot_dot_staying_inside_the_root_is_served() {
    let t = server();
    let r = t.get("/sub/../index.html");
    r.assert_status(200);
    assert_eq!(r.text(), "<h1>root index</h1>\n");
    let r = t.get("/sub/%2e%2e/index.html");
    r.assert_status(200);
    assert_eq!(r.text(), "<h1>root index</h1>\n");
}

#[test]
fn symlinks_inside_the_root_are_followed() {
    let t = server();
    let r = t.get("/inner");
    r.assert_status(200);
    assert_eq!(r.text(), "<p>inner page</p>\n");
    assert_eq!(r.header("Content-Length"), Some("18"));
    let r = t.get("/innerdir/page.html");
    r.assert_status(200);
    assert_eq!(r.text(), "<p>inner page</p>\n");
}

#[test]
fn double_encoding_is_decoded_only_once() {
    // A directory literally named "%2e%2e" inside the root: the double-encoded
    // target must reach it (decoded once), never the parent directory.
    let t = server();
    write(&t.root, "%2e%2e/outside/secret.txt", "literal-dir-ok\n");
    let r = t.get("/%252e%252e/outside/secret.txt");
    r.assert_status(200);
    assert_eq!(r.text(), "literal-dir-ok\n");
}

#[test]
fn a_symlink_swapped_in_after_a_request_is_not_followed_outside() {
    // Replace a served file by a symlink to the secret: the next request must
    // not serve the secret (cache or no cache).
    let t = server();
    write(&t.root, "swap.txt", "harmless\n");
    assert_eq!(t.get("/swap.txt").text(), "harmless\n");
    std::fs::remove_file(t.root.join("swap.txt")).unwrap();
    symlink(
        t.tmp.path().join("outside/secret.txt"),
        t.root.join("swap.txt"),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let r = t.get("/swap.txt");
    assert!(
        !r.text().contains(MARKER),
        "secret leaked through a swapped-in symlink"
    );
    r.assert_error(404);
}
