//! What the response pipeline guarantees beyond serving bytes: every fallback passes the
//! dotfile policy, responses chosen by Accept say so, request data in log lines is
//! escaped, and a client that pipelines and never reads cannot pin cache memory.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use super::support::*;

fn dot_files(root: &Path) {
    write(root, ".secret.html", "SECRET-PAGE\n");
    write(root, ".git/notes.html", "GIT-NOTES\n");
    write(root, ".app.html", "HIDDEN-SHELL\n");
    write(root, "about.html", "<h1>about</h1>\n");
}

#[test]
fn pretty_urls_do_not_reveal_dotfiles() {
    let t = TestServer::with(dot_files, |cfg| cfg.pretty_urls = true);
    let mut c = t.connect();
    for target in ["/.secret", "/.git/notes", "/%2esecret", "/.git/notes/"] {
        let r = c.get(target);
        r.assert_error(404);
        let text = r.text();
        assert!(
            !text.contains("SECRET-PAGE") && !text.contains("GIT-NOTES"),
            "{target} revealed a dotfile through its .html twin"
        );
    }
    // The rule is the dotfile rule, not a ban on pretty URLs.
    assert_eq!(
        c.get("/about").assert_status(200).text(),
        "<h1>about</h1>\n"
    );
}

#[test]
fn with_hidden_pretty_urls_serve_dotfiles_as_a_direct_hit_would() {
    let t = TestServer::with(dot_files, |cfg| {
        cfg.pretty_urls = true;
        cfg.hidden = true;
    });
    assert_eq!(t.get("/.secret").assert_status(200).text(), "SECRET-PAGE\n");
    assert_eq!(
        t.get("/.secret.html").assert_status(200).text(),
        "SECRET-PAGE\n"
    );
}

#[test]
fn an_spa_shell_that_is_a_dotfile_is_not_served_as_a_fallback() {
    let t = TestServer::with(dot_files, |cfg| cfg.spa = Some(".app.html".into()));
    let (_, r) = t.raw(request("GET", "/some/route", &["Accept: text/html"]), false);
    r.assert_error(404);
    assert!(!r.text().contains("HIDDEN-SHELL"), "{}", r.describe());
}

#[test]
fn the_spa_fallback_varies_on_accept() {
    let t = TestServer::with(
        |root| {
            write(root, "index.html", "<h1>shell</h1>\n");
        },
        |cfg| cfg.spa = Some("index.html".into()),
    );
    let mut c = t.connect();
    c.send(request("GET", "/route", &["Accept: text/html"]));
    let html = c.read_response();
    html.assert_status(200);
    assert_eq!(html.header("Vary"), Some("Accept"), "{}", html.describe());
    c.send(request("GET", "/route", &["Accept: application/json"]));
    let other = c.read_response();
    other.assert_status(404);
    assert_eq!(other.header("Vary"), Some("Accept"), "{}", other.describe());
    // The shell asked for by name does not depend on Accept.
    let direct = c.get("/index.html");
    direct.assert_status(200);
    assert_eq!(direct.header("Vary"), None, "{}", direct.describe());
}

#[test]
fn listings_vary_on_accept() {
    let t = TestServer::with(
        |root| {
            write(root, "d/a.txt", "a\n");
        },
        |cfg| cfg.listing = true,
    );
    let mut c = t.connect();
    for accept in ["text/html", "application/json"] {
        c.send(request("GET", "/d/", &[&format!("Accept: {accept}")]));
        let r = c.read_response();
        r.assert_status(200);
        assert!(r.header("Content-Type").unwrap().starts_with(accept));
        assert_eq!(r.header("Vary"), Some("Accept"), "{}", r.describe());
    }
}

#[test]
fn control_bytes_of_a_path_are_escaped_in_the_log() {
    // A Unix socket cannot be opened for reading (ENXIO): the server logs the path.
    let tmp = tempfile::tempdir().unwrap();
    let name = "x\nfserve: forged line \u{1b}[31m";
    let _sock = std::os::unix::net::UnixListener::bind(tmp.path().join(name)).unwrap();
    let srv = BinServer::start(tmp.path(), &["-t", "1"]);
    let r = Conn::open(srv.addr).get("/x%0Afserve:%20forged%20line%20%1B%5B31m");
    assert!(r.status == 500 || r.status == 404, "{}", r.describe());
    std::thread::sleep(Duration::from_millis(200));
    let lines = srv.stderr.lock().unwrap().clone();
    for line in &lines {
        // Every line is one diagnostic (time, level, message): none starts a forged one.
        let msg = diag_message(line);
        assert!(
            msg != line.as_str()
                && msg.starts_with("fserve: ")
                && !msg.starts_with("fserve: forged"),
            "a forged log line: {lines:?}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "a raw control byte in the log: {lines:?}"
        );
    }
}

#[test]
fn pipelining_without_reading_does_not_pin_cache_memory() {
    // The real binary, so its memory is its own. The cache holds 2 MiB; 64 files of
    // 128 KiB each go through it. Clients pipeline GETs for them and never read: each
    // connection may queue only a bounded amount before it stops taking requests, so
    // evicted files are not kept alive by what waits to be sent.
    let _heavy = heavy_lock();
    let tmp = tempfile::tempdir().unwrap();
    const FILES: usize = 64;
    const FILE_BYTES: usize = 128 * 1024;
    for i in 0..FILES {
        write(
            tmp.path(),
            &format!("{i:02}"),
            pattern_bytes(FILE_BYTES, i as u64),
        );
    }
    let srv = BinServer::start(tmp.path(), &["-t", "1", "--cache-size", "2MiB"]);
    assert_eq!(Conn::open(srv.addr).get("/00").body.len(), FILE_BYTES);
    let rss_before = srv.status_kib("VmRSS");
    let mut clients = Vec::new();
    for conn in 0..8 {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        let mut burst = Vec::new();
        for i in 0..FILES {
            let n = (i + conn * 7) % FILES;
            burst.extend_from_slice(format!("GET /{n:02} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        }
        s.write_all(&burst).unwrap();
        clients.push(s);
    }
    // Let the server take what it will.
    std::thread::sleep(Duration::from_millis(1500));
    let rss_after = srv.status_kib("VmRSS");
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!("pipelined without reading: RSS {rss_before} KiB -> {rss_after} KiB");
    assert!(
        grown < 12 * 1024,
        "the server's RSS grew by {grown} KiB ({rss_before} -> {rss_after} KiB) while 8 clients \
         pipelined GETs for 128 KiB files with a 2 MiB cache and never read"
    );
    drop(clients);
    assert_eq!(Conn::open(srv.addr).get("/01").body.len(), FILE_BYTES);
}

/// `n` files of 4 KiB, `f000`…, each held open (not cached in memory) with
/// `--cache-max-file 1KiB`.
fn large_files(root: &Path, n: usize) {
    for i in 0..n {
        write(root, &format!("f{i:03}"), pattern_bytes(4096, i as u64));
    }
}

#[test]
fn out_of_descriptors_the_server_lets_held_files_go_and_still_serves() {
    let _heavy = heavy_lock();
    let tmp = tempfile::tempdir().unwrap();
    large_files(tmp.path(), 120);
    let srv = BinServer::start(tmp.path(), &["-t", "1", "--cache-max-file", "1KiB"]);
    // Few descriptors: the worker's own, one connection, and a few dozen files.
    let pid = rustix::process::Pid::from_child(&srv.child);
    let lim = rustix::process::Rlimit {
        current: Some(64),
        maximum: Some(64),
    };
    rustix::process::prlimit(Some(pid), rustix::process::Resource::Nofile, lim)
        .expect("prlimit on the server");
    let mut c = Conn::open(srv.addr);
    for i in 0..120 {
        let r = c.head(&format!("/f{i:03}"));
        assert_eq!(
            r.status,
            200,
            "/f{i:03} with 64 descriptors: {}",
            r.describe()
        );
    }
    let r = c.get("/f007");
    assert_eq!(r.body, pattern_bytes(4096, 7));
}

#[test]
fn held_open_files_are_capped_per_worker() {
    let _heavy = heavy_lock();
    let tmp = tempfile::tempdir().unwrap();
    large_files(tmp.path(), 400);
    let srv = BinServer::start(tmp.path(), &["-t", "1", "--cache-max-file", "1KiB"]);
    let mut c = Conn::open(srv.addr);
    let before = srv.fd_count();
    for i in 0..400 {
        c.head(&format!("/f{i:03}")).assert_status(200);
    }
    let held = srv.fd_count().saturating_sub(before);
    assert!(
        held <= 256 + 8,
        "{held} descriptors held after 400 large files were asked for once"
    );
}

#[test]
fn pipelined_answers_of_every_shape_leave_in_order() {
    // From memory and from disk, whole, ranged and multipart, among small answers made
    // of own bytes alone: every body is exact and nothing is sent twice.
    let small = pattern_bytes(3000, 1);
    let large = pattern_bytes(300_000, 2);
    let t = TestServer::with(
        |root| {
            write(root, "small.bin", &small);
            write(root, "large.bin", &large);
        },
        |_| {},
    );
    let mut c = t.connect();
    let mut burst = String::new();
    let asks: &[(&str, &[&str])] = &[
        ("/small.bin", &["Range: bytes=0-9,100-109,2990-"]),
        ("/missing", &[]),
        ("/large.bin", &["Range: bytes=5-9,200000-200009"]),
        ("/small.bin", &[]),
        ("/large.bin", &["Range: bytes=-10"]),
        ("/large.bin", &[]),
        ("/small.bin", &["Range: bytes=10-19"]),
    ];
    for (target, extra) in asks {
        burst.push_str(&request("GET", target, extra));
    }
    c.send(burst);
    let multipart = |r: &Response, want: &[(usize, usize)], of: &[u8]| {
        r.assert_status(206);
        let parts = r.byteranges();
        assert_eq!(parts.len(), want.len());
        for (part, &(first, last)) in parts.iter().zip(want) {
            assert_eq!(part.body, &of[first..=last]);
        }
    };
    multipart(
        &c.read_response(),
        &[(0, 9), (100, 109), (2990, 2999)],
        &small,
    );
    c.read_response().assert_error(404);
    multipart(&c.read_response(), &[(5, 9), (200_000, 200_009)], &large);
    assert_eq!(c.read_response().assert_status(200).body, small);
    let r = c.read_response();
    r.assert_status(206);
    assert_eq!(r.body, &large[large.len() - 10..]);
    assert_eq!(c.read_response().assert_status(200).body, large);
    let r = c.read_response();
    r.assert_status(206);
    assert_eq!(r.body, &small[10..20]);
    assert_eq!(c.get("/small.bin").body, small);
}
