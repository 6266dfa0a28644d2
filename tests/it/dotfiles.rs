//! Hidden files: dot-names are 404 unless `hidden` is on; /.well-known/ is
//! always served.

use std::path::Path;

use super::support::*;

fn files(root: &Path) {
    write(root, "index.html", "<h1>home</h1>\n");
    write(root, ".env", "SECRET_KEY=dotenv\n");
    write(root, "sub/.git/config", "[core]\n");
    write(root, ".hidden/x.txt", "hidden x\n");
    write(
        root,
        ".well-known/security.txt",
        "Contact: mailto:sec@example.com\n",
    );
}

const DOTFILES: &[(&str, &str)] = &[
    ("/.env", "SECRET_KEY=dotenv\n"),
    ("/sub/.git/config", "[core]\n"),
    ("/.hidden/x.txt", "hidden x\n"),
];

#[test]
fn dotfiles_are_404_by_default() {
    let t = TestServer::with(files, |_| {});
    let mut c = t.connect();
    for (target, content) in DOTFILES {
        let r = c.get(target);
        r.assert_error(404);
        assert!(
            !r.text().contains(content.trim_end()),
            "{target} leaked its content"
        );
    }
    // Encoded dots are decoded before the check.
    for target in [
        "/%2eenv",
        "/%2Eenv",
        "/sub/%2egit/config",
        "/%2ehidden/x.txt",
    ] {
        let r = c.get(target);
        r.assert_error(404);
    }
    // HEAD too.
    c.head("/.env").assert_status(404);
    // The hidden directory itself.
    c.get("/.hidden/").assert_status(404);
    c.get("/sub/.git/").assert_status(404);
}

#[test]
fn well_known_is_served_by_default() {
    let t = TestServer::with(files, |_| {});
    let r = t.get("/.well-known/security.txt");
    r.assert_status(200);
    assert_eq!(r.text(), "Contact: mailto:sec@example.com\n");
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn dotfiles_are_served_when_hidden_is_on() {
    let t = TestServer::with(files, |cfg| cfg.hidden = true);
    let mut c = t.connect();
    for (target, content) in DOTFILES {
        let r = c.get(target);
        r.assert_status(200);
        assert_eq!(r.text(), *content, "{target}");
    }
    let r = c.get("/.well-known/security.txt");
    r.assert_status(200);
    assert_eq!(r.text(), "Contact: mailto:sec@example.com\n");
}

#[test]
fn dotfiles_under_well_known_or_reached_through_it_stay_hidden() {
    let t = TestServer::with(
        |root| {
            files(root);
            write(root, ".well-known/.secret", "nope\n");
        },
        |_| {},
    );
    t.get("/.well-known/.secret").assert_error(404);
    t.get("/.well-known/../.env").assert_error(404);
    t.get("/.well-known/%2e%2e/.env").assert_error(404);
    t.get("/sub/.well-known/../.git/config").assert_error(404);
}
