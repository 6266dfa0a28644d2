//! The server under test: [`TestServer`] (the library, in-process, over a fresh
//! temporary root) and [`BinServer`] (the real binary), with the test configuration.

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::*;

/// The default configuration used by the tests: loopback, port 0, 2 workers,
/// a short grace period so that teardown never stalls a test for long.
///
/// The engine is io_uring (`--io uring`, so a refusal fails the test instead of
/// falling back quietly), or the one named by `FSERVE_TEST_IO` (`uring`,
/// `epoll`): CI runs the whole suite once per engine.
pub fn test_config(root: &Path) -> fserve::Config {
    let mut cfg = fserve::Config::new(root.to_path_buf());
    cfg.bind = IpAddr::from([127, 0, 0, 1]);
    cfg.port = 0;
    cfg.threads = 2;
    cfg.grace = Duration::from_secs(2);
    cfg.io = test_engine();
    cfg
}

/// The engine the suite runs against (see [`test_config`]).
pub fn test_engine() -> fserve::config::Io {
    match std::env::var("FSERVE_TEST_IO").as_deref() {
        Err(_) | Ok("") | Ok("uring") => fserve::config::Io::Uring,
        Ok("epoll") => fserve::config::Io::Epoll,
        Ok(other) => panic!("FSERVE_TEST_IO={other:?}: use uring or epoll"),
    }
}

/// A running server over `<tmp>/root`. `<tmp>` itself is free for content that
/// must lie outside the served root.
pub struct TestServer {
    server: Option<fserve::Server>,
    pub addr: SocketAddr,
    /// The served root directory (`<tmp>/root`).
    pub root: PathBuf,
    /// The temporary directory holding `root` (removed on drop).
    pub tmp: TempDir,
}

impl TestServer {
    /// An empty root with the default test configuration.
    #[allow(dead_code)] // for tests that need no files
    pub fn new() -> TestServer {
        TestServer::with(|_| {}, |_| {})
    }

    /// The engine the server runs on ("io_uring" or "epoll").
    pub fn engine(&self) -> &'static str {
        self.server.as_ref().expect("server running").engine()
    }

    /// Why `--io auto` fell back to epoll, if it did.
    pub fn fallback_reason(&self) -> Option<String> {
        self.server
            .as_ref()
            .expect("server running")
            .fallback_reason()
            .map(str::to_string)
    }

    /// Populate the root with `setup(root)`, then start with the default test
    /// configuration as changed by `tweak`.
    pub fn with(setup: impl FnOnce(&Path), tweak: impl FnOnce(&mut fserve::Config)) -> TestServer {
        let tmp = tempfile::Builder::new()
            .prefix("fserve-it-")
            .tempdir()
            .expect("create temporary directory");
        let root = tmp.path().join("root");
        fs::create_dir(&root).expect("create root directory");
        setup(&root);
        let mut cfg = test_config(&root);
        tweak(&mut cfg);
        TestServer::start_in(tmp, root, cfg)
    }

    /// Start the server with `cfg` over an already prepared `root` inside `tmp`.
    pub fn start_in(tmp: TempDir, root: PathBuf, cfg: fserve::Config) -> TestServer {
        let server = match fserve::Server::start(cfg) {
            Ok(s) => s,
            Err(e) => panic!("fserve::Server::start failed (io_uring refused?): {e}"),
        };
        let addr = server.local_addr();
        assert_eq!(addr.ip(), IpAddr::from([127, 0, 0, 1]), "local_addr ip");
        assert_ne!(
            addr.port(),
            0,
            "local_addr must report the real port, not 0"
        );
        TestServer {
            server: Some(server),
            addr,
            root,
            tmp,
        }
    }

    /// The admin listener's address (the server was started with `cfg.admin`).
    #[allow(dead_code)] // for the observability tests
    pub fn admin_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .expect("server running")
            .admin_addr()
            .expect("the server has an admin listener")
    }

    /// A handle to the running server (readiness, log reopening, cache dropping).
    #[allow(dead_code)] // for the observability tests
    pub fn handle(&self) -> fserve::server::Handle {
        self.server.as_ref().expect("server running").handle()
    }

    /// A new raw connection to the server.
    pub fn connect(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// One GET on a new connection (HTTP/1.1, Host: localhost).
    pub fn get(&self, target: &str) -> Response {
        let mut c = self.connect();
        c.get(target)
    }

    /// One HEAD on a new connection.
    #[allow(dead_code)] // the HEAD beside get(); kept with it
    pub fn head(&self, target: &str) -> Response {
        let mut c = self.connect();
        c.head(target)
    }

    /// Send `raw` bytes on a new connection and read one response
    /// (`head`: the request was a HEAD, so no body follows).
    pub fn raw(&self, raw: impl AsRef<[u8]>, head: bool) -> (Conn, Response) {
        let mut c = self.connect();
        c.send(raw);
        let r = c.read_response_for(head);
        (c, r)
    }

    /// Take the server out (it is then no longer shut down on drop).
    pub fn take_server(&mut self) -> fserve::Server {
        self.server.take().expect("server already shut down")
    }

    /// Graceful shutdown; returns how long it took. Fails if it takes more
    /// than `limit`.
    pub fn shutdown_within(&mut self, limit: Duration) -> Duration {
        let server = self.server.take().expect("server already shut down");
        shutdown_with_timeout(server, limit)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Never let a stuck shutdown hang the test binary.
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                server.shutdown();
                let _ = tx.send(());
            });
            if rx.recv_timeout(Duration::from_secs(15)).is_err() && !std::thread::panicking() {
                panic!("Server::shutdown did not return within 15 s (in TestServer::drop)");
            }
        }
    }
}

/// Run `server.shutdown()` on another thread; panic if it takes longer than `limit`.
pub fn shutdown_with_timeout(server: fserve::Server, limit: Duration) -> Duration {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let all_ended = server.shutdown();
        let _ = tx.send(all_ended);
    });
    match rx.recv_timeout(limit) {
        Ok(all_ended) => {
            assert!(
                all_ended,
                "Server::shutdown reports that not every worker ended in time"
            );
            start.elapsed()
        }
        Err(_) => panic!("Server::shutdown did not return within {limit:?}"),
    }
}

impl TestServer {
    /// One request with `extra` header lines on a new connection.
    pub fn req(&self, method: &str, target: &str, extra: &[&str]) -> Response {
        self.connect().req(method, target, extra)
    }

    /// One GET with `extra` header lines on a new connection.
    pub fn get_h(&self, target: &str, extra: &[&str]) -> Response {
        self.req("GET", target, extra)
    }
}

/// The real binary, started with `-p 0 -b 127.0.0.1 --io <engine>`, its port
/// read from the start line on stderr. Killed on drop if still running.
pub struct BinServer {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Every stderr line so far (the start line included).
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The message of a diagnostic line (`2026-12-01T23:09:07.042Z INFO fserve: …`), from
/// `fserve: ` on; the line itself if it has no time and level.
pub fn diag_message(line: &str) -> &str {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(time), Some("INFO" | "WARN" | "ERROR"), Some(msg)) if time.ends_with('Z') => msg,
        _ => line,
    }
}

impl BinServer {
    pub const BIN: &'static str = env!("CARGO_BIN_EXE_fserve");

    /// Start `fserve -p 0 -b 127.0.0.1 --io <engine> ARGS ROOT`, wait for the
    /// start line and parse the port from it.
    pub fn start(root: &Path, args: &[&str]) -> BinServer {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let engine = match test_engine() {
            fserve::config::Io::Epoll => "epoll",
            _ => "uring",
        };
        let mut cmd = Command::new(Self::BIN);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FSERVE_") {
                cmd.env_remove(&k);
            }
        }
        cmd.args(["-p", "0", "-b", "127.0.0.1", "--io", engine])
            .args(args)
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn fserve");
        let stderr = child.stderr.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut server = BinServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: lines,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no start line from fserve within 10 s: {e:?}"));
        // `TIME INFO fserve: serving ROOT at http://127.0.0.1:PORT/ (N workers, ENGINE)`
        let line = diag_message(&line).to_string();
        let prefix = format!(
            "fserve: serving {} at http://127.0.0.1:",
            fs::canonicalize(root).unwrap().display()
        );
        let rest = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("start line {line:?} does not start with {prefix:?}"));
        let (port, tail) = rest
            .split_once("/ (")
            .unwrap_or_else(|| panic!("no port in start line {line:?}"));
        let want_engine = if engine == "epoll" {
            "epoll)"
        } else {
            "io_uring)"
        };
        assert!(
            tail.ends_with(want_engine),
            "start line {line:?} does not name the {engine} engine"
        );
        let port: u16 = port
            .parse()
            .unwrap_or_else(|_| panic!("bad port {port:?} in start line {line:?}"));
        assert_ne!(port, 0, "the start line must show the real port");
        server.addr.set_port(port);
        server
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    pub fn signal(&self, sig: Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), sig)
            .unwrap_or_else(|e| panic!("kill({}, {sig:?}) failed: {e}", self.pid()));
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Wait for the exit; panics (after killing it) if it takes longer than `within`.
    pub fn wait_within(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "fserve did not exit within {within:?}; stderr: {:?}",
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A `VmRSS`/`VmHWM`-style field of /proc/PID/status, in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
    }

    /// Open fds of the server process.
    #[allow(dead_code)] // beside rss_kib(), for fd bounds of the real binary
    pub fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .count()
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
