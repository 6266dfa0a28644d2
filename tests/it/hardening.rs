//! Hardening from an outside review: what an attacker on the network or a careless file in
//! the root could do, each pinned by a test (request admission, redirects, special files,
//! symlinks, listings).

use std::path::Path;

use super::support::*;

/// A directory named like a Windows UNC path gets a Location that stays on this host
/// (`\\evil.example` is `//evil.example` to a browser), and the redirect page carries no
/// markup from the request.
#[test]
fn directory_redirect_location_stays_on_this_host() {
    let t = TestServer::with(
        |root: &Path| {
            write(root, "\\\\evil.example\\x/index.html", "x\n");
            write(root, "d/index.html", "d\n");
        },
        |_| {},
    );
    let mut c = t.connect();
    let r = c.get("/\\\\evil.example\\x");
    r.assert_status(301);
    assert_eq!(
        r.expect_header("Location"),
        "%5C%5Cevil.example%5Cx/",
        "{}",
        r.describe()
    );
    let r = c.get("/d?a=\"><script>alert(1)</script>");
    r.assert_status(301);
    let location = r.expect_header("Location");
    assert_eq!(location, "d/?a=%22%3E%3Cscript%3Ealert(1)%3C/script%3E");
    assert!(!r.text().contains("<script>"), "{}", r.text());
    // The encoded Location leads to the directory.
    c.get(&format!("/{location}")).assert_status(200);
}
