//! The epoll fallback, proven under a real seccomp filter that refuses io_uring with EPERM
//! (what Docker 25+'s default profile does), not a simulated flag.
//!
//! A seccomp filter binds the thread that installs it and every thread and process it then
//! creates, so each test installs it on a thread of its own and starts the server (or the
//! binary) from there: the rest of the test process keeps io_uring.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};

use super::support::*;

/// Runs `f` on a new thread that refuses io_uring_setup, io_uring_enter and
/// io_uring_register with EPERM.
fn without_io_uring<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = [
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
        ]
        .into_iter()
        .map(|nr| (nr, vec![]))
        .collect();
        let arch = std::env::consts::ARCH
            .try_into()
            .expect("an architecture seccompiler knows");
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .expect("seccomp filter");
        let program: BpfProgram = filter.try_into().expect("seccomp program");
        seccompiler::apply_filter(&program).expect("install the seccomp filter");
        f()
    })
    .join()
    .expect("filtered thread")
}

fn files(root: &std::path::Path) {
    write(root, "index.html", "<h1>home</h1>\n");
    write(root, "big.bin", pattern_bytes(3 * 1024 * 1024 + 17, 7));
}

#[test]
fn auto_falls_back_to_epoll_under_seccomp_and_serves() {
    let t = without_io_uring(|| TestServer::with(files, |cfg| cfg.io = fserve::config::Io::Auto));
    assert_eq!(t.engine(), "epoll");
    let reason = t.fallback_reason().expect("a fallback reason");
    assert!(reason.contains("seccomp"), "{reason}");

    let mut c = t.connect();
    let r = c.get("/");
    r.assert_status(200);
    assert_eq!(r.body, b"<h1>home</h1>\n");
    c.get("/missing").assert_status(404);
    let r = c.head("/");
    assert_eq!(r.header("Content-Length"), Some("14"));
    let r = c.get("/big.bin");
    assert_eq!(r.body, pattern_bytes(3 * 1024 * 1024 + 17, 7));
    c.send(request("GET", "/big.bin", &["Range: bytes=1000-1999"]));
    let r = c.read_response();
    assert_eq!(r.status, 206);
    assert_eq!(r.body, pattern_bytes(3 * 1024 * 1024 + 17, 7)[1000..2000]);
}

#[test]
fn io_uring_forced_under_seccomp_is_a_clear_start_error() {
    let err = without_io_uring(|| {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = test_config(tmp.path());
        cfg.io = fserve::config::Io::Uring;
        fserve::Server::start(cfg).err().map(|e| e.to_string())
    })
    .expect("start must fail without io_uring");
    assert!(
        err.contains("seccomp") && err.contains("--security-opt"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn binary_says_why_and_serves_with_epoll_under_seccomp() {
    let root = tempfile::tempdir().unwrap();
    files(root.path());
    let path = root.path().to_path_buf();
    let mut child = without_io_uring(move || {
        Command::new(env!("CARGO_BIN_EXE_fserve"))
            .args(["-b", "127.0.0.1", "-p", "0", "-t", "2"])
            .arg(&path)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn fserve")
    });
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().expect("a line").unwrap();
    assert!(first.contains(" WARN fserve: "), "{first}");
    assert!(
        first.contains("io_uring is refused")
            && first.ends_with("serving with the epoll engine instead"),
        "{first}"
    );
    let second = lines.next().expect("the start line").unwrap();
    assert!(second.ends_with("(2 workers, epoll)"), "{second}");
    let port: u16 = second
        .rsplit("127.0.0.1:")
        .next()
        .and_then(|s| s.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {second}"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let r = Conn::open(addr).get("/");
    r.assert_status(200);
    // SIGTERM: a graceful exit with code 0.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fserve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
