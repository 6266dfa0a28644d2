//! Hardening from an outside review: what an attacker on the network or a careless file in
//! the root could do, each pinned by a test (request admission, redirects, special files,
//! symlinks, listings).

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// Waits (at most 10 s) until thread `tid` of this process waits in open(2) for a FIFO's
/// reader, as the kernel reports it.
fn wait_until_blocked_on_fifo(tid: i32) {
    let wchan = format!("/proc/self/task/{tid}/wchan");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = std::fs::read_to_string(&wchan).unwrap_or_default();
        if now == "wait_for_partner" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the writer never blocked on the FIFO ({wchan}: {now:?})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A FIFO in the root with a writer blocked on it: requesting it is a 404 and the writer
/// stays blocked (opening the FIFO for reading would have released it).
#[test]
fn a_fifo_is_refused_without_releasing_its_writer() {
    let t = TestServer::with(
        |root: &Path| {
            write(root, "index.html", "home\n");
        },
        |_| {},
    );
    let fifo = t.root.join("feed.txt");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .expect("mkfifo");
    let (opened_tx, opened) = mpsc::channel();
    let (tid_tx, tid) = mpsc::channel();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let _ = tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get());
            let f = std::fs::OpenOptions::new().write(true).open(&fifo);
            let _ = opened_tx.send(());
            drop(f);
        })
    };
    wait_until_blocked_on_fifo(tid.recv().unwrap());
    let mut c = t.connect();
    c.get("/feed.txt").assert_error(404);
    c.head("/feed.txt").assert_status(404);
    assert_eq!(c.get("/index.html").text(), "home\n");
    assert_eq!(
        opened.recv_timeout(Duration::from_millis(300)),
        Err(mpsc::RecvTimeoutError::Timeout),
        "the writer blocked on the FIFO was released: fserve opened it"
    );
    let reader = rustix::fs::open(
        &fifo,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK,
        rustix::fs::Mode::empty(),
    );
    opened
        .recv_timeout(Duration::from_secs(10))
        .expect("the writer opens once a reader comes");
    drop(reader);
    writer.join().unwrap();
}

/// A symlink inside the root to a dotfile, or to a dot-directory, does not get around the
/// dotfile rule: the rule applies to where the link leads. Links to ordinary files and to
/// /.well-known/ still work.
#[test]
fn symlinks_to_dotfiles_are_hidden() {
    let t = TestServer::with(
        |root: &Path| {
            write(root, ".git/config", "[core]\n");
            write(root, ".env", "SECRET_KEY=1\n");
            write(root, ".well-known/security.txt", "Contact: x\n");
            write(root, "docs/a.txt", "a\n");
            for (link, target) in [
                ("gitlink", ".git"),
                ("envlink.txt", ".env"),
                ("wk", ".well-known"),
                ("doclink", "docs"),
            ] {
                std::os::unix::fs::symlink(target, root.join(link)).unwrap();
            }
        },
        |cfg| cfg.listing = true,
    );
    let mut c = t.connect();
    for target in ["/gitlink/config", "/envlink.txt", "/gitlink/", "/gitlink"] {
        let r = c.get(target);
        r.assert_error(404);
        assert!(!r.text().contains("core") && !r.text().contains("SECRET"));
    }
    assert_eq!(c.get("/wk/security.txt").text(), "Contact: x\n");
    assert_eq!(c.get("/doclink/a.txt").text(), "a\n");
    let listing = c.get("/").text();
    assert!(
        listing.contains("doclink") && listing.contains("wk"),
        "{listing}"
    );
    assert!(
        !listing.contains("gitlink") && !listing.contains("envlink"),
        "{listing}"
    );
}

/// RFC 9112 on the wire: each head that a front proxy could read differently is a 400 and a
/// closed connection (nothing after it is read as a request), and a CRLF before a request
/// line is ignored (§2.2).
#[test]
fn request_admission_on_the_wire() {
    let t = TestServer::with(
        |root: &Path| {
            write(root, "a.txt", "alpha\n");
        },
        |_| {},
    );
    let smuggled = "GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let refused: &[(&str, String)] = &[
        ("bare LF", "GET /a.txt HTTP/1.1\nHost: localhost\n\n".to_string()),
        (
            "bare LF in one field line",
            "GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX: y\nContent-Length: 5\r\n\r\n".to_string(),
        ),
        (
            "Transfer-Encoding with Content-Length",
            "POST /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
        ),
        (
            "chunked not final",
            "POST /a.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n".to_string(),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            "POST /a.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
        ),
        ("invalid Host", "GET /a.txt HTTP/1.1\r\nHost: a/b\r\n\r\n".to_string()),
        (
            "absolute-form with userinfo",
            "GET http://u@localhost/a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(),
        ),
        ("asterisk with GET", "GET * HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string()),
        (
            "whitespace before a colon",
            "GET /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length : 5\r\n\r\n".to_string(),
        ),
        (
            "obs-fold",
            "GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX: a\r\n b\r\n\r\n".to_string(),
        ),
    ];
    for (what, head) in refused {
        let mut c = t.connect();
        c.send(format!("{head}{smuggled}"));
        let r = c.read_response();
        assert_eq!(r.status, 400, "{what}\n{}", r.describe());
        r.assert_connection_close();
        c.assert_closed();
    }
    // §2.2: an empty line before a request line is ignored, on a kept-alive connection too.
    let mut c = t.connect();
    c.send(format!("\r\n{smuggled}\r\n{smuggled}"));
    for _ in 0..2 {
        let r = c.read_response();
        r.assert_status(200);
        assert_eq!(r.text(), "alpha\n");
    }
    // A well-framed chunked request is refused with 411 (fserve reads no chunked bodies).
    let mut c = t.connect();
    c.send(
        "POST /a.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.status, 411, "{}", r.describe());
    r.assert_connection_close();
}

/// A directory with more entries than one listing shows: the listing is partial and says
/// so; repeated requests are served from the worker's listing cache (HTML and JSON apart),
/// and a new file shows once the directory is looked at again (within about a second).
#[test]
fn listings_are_cached_bounded_and_revalidated() {
    const SHOWN: usize = 5_000;
    let t = TestServer::with(
        |root: &Path| {
            std::fs::create_dir(root.join("many")).unwrap();
            for i in 0..=SHOWN {
                std::fs::write(root.join(format!("many/f{i:05}")), "").unwrap();
            }
        },
        |cfg| cfg.listing = true,
    );
    // One connection: one worker, so one listing cache.
    let mut c = t.connect();
    let html = c.get("/many/");
    html.assert_status(200);
    let page = html.text();
    assert!(page.contains(">f00000</a><td>0<td>"), "{}", &page[..600]);
    assert!(page.contains(">f04999</a>") && !page.contains(">f05000</a>"));
    assert!(
        page.contains(&format!(
            "Only the first {SHOWN} entries by name are listed."
        )),
        "no note that the listing is partial"
    );
    c.send(request("GET", "/many/", &["Accept: application/json"]));
    let json = c.read_response();
    json.assert_status(200);
    assert!(
        json.expect_header("Content-Type")
            .starts_with("application/json")
    );
    assert!(
        json.text()
            .starts_with("[\n{\"name\":\"f00000\",\"dir\":false,\"size\":0,")
    );
    assert_eq!(json.text().matches("\"name\":").count(), SHOWN);

    // A file that changes in place does not change its directory: the cached listings are
    // served as they were (for at most their maximum age, 10 s).
    std::fs::write(t.root.join("many/f00000"), "12345").unwrap();
    assert!(
        c.get("/many/").text() == page,
        "the HTML listing was rendered again"
    );
    c.send(request("GET", "/many/", &["Accept: application/json"]));
    assert!(
        c.read_response().text() == json.text(),
        "the JSON listing was rendered again"
    );

    // A new file changes the directory: it shows after the next revalidation.
    std::fs::write(t.root.join("many/a-new.txt"), "new\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = c.get("/many/").text();
        if page.contains(">a-new.txt</a>") {
            assert!(page.contains(">f00000</a><td>5<td>"), "rendered afresh");
            break;
        }
        assert!(Instant::now() < deadline, "the new file never showed");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.send(request("GET", "/many/", &["Accept: application/json"]));
    assert!(
        c.read_response()
            .text()
            .starts_with("[\n{\"name\":\"a-new.txt\"")
    );
}
