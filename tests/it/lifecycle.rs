//! Server lifecycle through the library API: start, local_addr, one io_uring
//! per worker, graceful shutdown, start-up errors (a port already listened on
//! included).

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::support::*;

fn files(root: &std::path::Path) {
    write(root, "index.html", "<h1>home</h1>\n");
    write(root, "big.bin", pattern_bytes(4 * 1024 * 1024, 77));
}

fn io_uring_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.to_string_lossy().contains("io_uring"))
        .count()
}

#[test]
fn start_serve_and_shutdown() {
    let mut t = TestServer::with(files, |_| {});
    let addr = t.addr;
    assert_eq!(t.get("/").text(), "<h1>home</h1>\n");
    t.shutdown_within(Duration::from_secs(5));
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::ConnectionRefused,
            "connect after shutdown: {e}"
        ),
        Ok(_) => panic!("connecting to {addr} still succeeds after shutdown"),
    }
}

#[test]
fn one_io_uring_per_worker() {
    if test_engine() == fserve::config::Io::Epoll {
        // The epoll engine has no rings: check it says which engine it runs.
        let t = TestServer::with(files, |_| {});
        assert_eq!(t.get("/").status, 200);
        assert_eq!(t.engine(), "epoll");
        return;
    }
    for threads in [1usize, 3] {
        let t = TestServer::with(files, |cfg| cfg.threads = threads);
        assert_eq!(t.get("/").status, 200);
        assert_eq!(t.engine(), "io_uring");
        let n = io_uring_fds();
        assert!(
            n >= threads,
            "threads = {threads}: only {n} io_uring fds in /proc/self/fd"
        );
    }
}

#[test]
fn every_worker_serves() {
    // With several workers on a shared port, many connections all succeed.
    let t = TestServer::with(files, |cfg| cfg.threads = 3);
    for _ in 0..30 {
        let r = t.get("/index.html");
        r.assert_status(200);
    }
}

#[test]
fn shutdown_with_idle_keepalive_connection_returns_and_closes_it() {
    let mut t = TestServer::with(files, |cfg| cfg.grace = Duration::from_secs(1));
    let mut c = t.connect();
    c.get("/").assert_status(200);
    let took = t.shutdown_within(Duration::from_secs(4));
    assert!(
        took < Duration::from_millis(2500),
        "shutdown took {took:?} with grace 1 s"
    );
    c.assert_closed();
}

#[test]
fn shutdown_closes_hot_and_parked_idle_connections_at_once() {
    // A long grace period: only closing the idle connections promptly ends the drain soon.
    let mut t = TestServer::with(files, |cfg| cfg.grace = Duration::from_secs(10));
    let mut conns: Vec<Conn> = (0..10).map(|_| t.connect()).collect();
    for c in &mut conns {
        c.get("/").assert_status(200);
    }
    std::thread::sleep(Duration::from_millis(500)); // past the hot wait: parked
    for _ in 0..10 {
        let mut c = t.connect();
        c.get("/").assert_status(200); // just answered: still hot
        conns.push(c);
    }
    let took = t.shutdown_within(Duration::from_secs(8));
    assert!(
        took < Duration::from_secs(1),
        "shutdown took {took:?} with 20 idle connections"
    );
    for c in &mut conns {
        c.assert_closed();
    }
}

#[test]
fn shutdown_lets_an_in_flight_response_finish() {
    let mut t = TestServer::with(files, |cfg| cfg.grace = Duration::from_secs(5));
    let mut c = t.connect();
    c.send(request("GET", "/big.bin", &[]));
    // Let the response start, then shut down while it is being sent.
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut c.stream, &mut first).expect("first response byte");
    assert_eq!(first[0], b'H');
    let server = t.take_server();
    let handle = std::thread::spawn(move || shutdown_with_timeout(server, Duration::from_secs(8)));
    std::thread::sleep(Duration::from_millis(100));
    let mut rest = vec![b'H'];
    std::io::Read::read_to_end(&mut c.stream, &mut rest).ok();
    let head_end = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head")
        + 4;
    assert!(rest.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_body_eq(
        &rest[head_end..],
        &pattern_bytes(4 * 1024 * 1024, 77),
        "in-flight body",
    );
    handle.join().expect("shutdown thread");
}

#[test]
fn shutdown_is_prompt_without_connections() {
    let mut t = TestServer::with(files, |cfg| cfg.grace = Duration::from_secs(10));
    let took = t.shutdown_within(Duration::from_secs(5));
    assert!(took < Duration::from_secs(2), "idle shutdown took {took:?}");
}

#[test]
fn start_fails_for_missing_root() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dir");
    let err = match fserve::Server::start(test_config(&missing)) {
        Ok(s) => {
            s.shutdown();
            panic!("start succeeded with a missing root");
        }
        Err(e) => e.to_string(),
    };
    assert!(
        !err.is_empty() && !err.contains('\n'),
        "StartError must be one line: {err:?}"
    );
}

#[test]
fn start_fails_for_a_root_that_is_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "file.txt", "not a dir");
    match fserve::Server::start(test_config(&file)) {
        Ok(s) => {
            s.shutdown();
            panic!("start succeeded with a regular file as root");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.is_empty() && !msg.contains('\n'),
                "StartError must be one line: {msg:?}"
            );
        }
    }
}

#[test]
fn start_fails_when_the_port_is_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut cfg = test_config(tmp.path());
    cfg.port = port;
    match fserve::Server::start(cfg) {
        Ok(s) => {
            s.shutdown();
            panic!("start succeeded on port {port}, which is taken");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.is_empty() && !msg.contains('\n'),
                "StartError must be one line: {msg:?}"
            );
        }
    }
    drop(listener);
}

#[test]
fn two_servers_get_different_ports() {
    let a = TestServer::with(files, |_| {});
    let b = TestServer::with(files, |_| {});
    assert_ne!(a.addr.port(), b.addr.port());
    assert_eq!(a.get("/").status, 200);
    assert_eq!(b.get("/").status, 200);
}

#[test]
fn a_port_something_listens_on_is_refused_not_shared() {
    let t = TestServer::with(files, |_| {});
    let port = t.addr.port();
    for bind in [IpAddr::from([127, 0, 0, 1]), IpAddr::from([0, 0, 0, 0])] {
        let mut cfg = test_config(&t.root);
        cfg.bind = bind;
        cfg.port = port;
        match fserve::Server::start(cfg) {
            Ok(_) => panic!("a second server started on {bind}:{port} beside the first"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("already listens") && msg.contains(&format!("sport = :{port}")),
                    "{bind}:{port}: {msg}"
                );
            }
        }
    }
    // A plain listener (no SO_REUSEPORT) holds a port just as well.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = test_config(&t.root);
    cfg.port = other.local_addr().unwrap().port();
    assert!(fserve::Server::start(cfg).is_err());
    // The first server is untouched.
    assert_eq!(t.get("/").text(), "<h1>home</h1>\n");
}
