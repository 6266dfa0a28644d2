//! What an installed fserve relies on, tested on the real binary: `--version` names the build,
//! systemd's socket activation (`LISTEN_FDS`: one socket shared by every worker, or one per
//! worker) and readiness notification (`NOTIFY_SOCKET`: `READY=1`, then
//! `STOPPING=1` on SIGTERM).
//!
//! Passing a listening socket as fd 3 needs a process that sets it up between fork and exec:
//! a small Python launcher does that, as systemd would (Python is one of the suite's real
//! companions already).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fserve");
/// Every wait here is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

fn engine() -> &'static str {
    match std::env::var("FSERVE_TEST_IO").as_deref() {
        Ok("epoll") => "epoll",
        _ => "uring",
    }
}

/// The binary with no FSERVE_*, LISTEN_* or NOTIFY_SOCKET variables inherited.
fn fserve_cmd(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("FSERVE_") || k.starts_with("LISTEN_") || k == "NOTIFY_SOCKET" {
            cmd.env_remove(&k);
        }
    }
    cmd
}

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "alpha\n").unwrap();
    dir
}

/// One GET with `Connection: close`; the whole answer.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn assert_serves(addr: SocketAddr) {
    let answer = get(addr, "/a.txt");
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n"),
        "{addr}: {answer:?}"
    );
    assert!(answer.ends_with("\r\n\r\nalpha\n"), "{addr}: {answer:?}");
}

fn term(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a child's pid is positive");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

fn wait_within(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{child:?} did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn version_names_the_version_the_commit_and_the_engines() {
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git must be installed to check the commit fserve --version names");
    assert!(git.status.success(), "git rev-parse: {git:?}");
    let commit = String::from_utf8(git.stdout).unwrap().trim().to_string();
    let version = env!("CARGO_PKG_VERSION");

    let out = fserve_cmd(BIN).arg("-V").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("fserve {version} (commit {commit}; engines: io_uring, epoll)\n")
    );
    let out = fserve_cmd(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("fserve {version}\ncommit: {commit}\nengines: io_uring, epoll\n")
    );
}

/// Binds `count` listening sockets on 127.0.0.1 (port 0), prints their ports on one line,
/// then forks: the child moves them to fds 3.., sets LISTEN_FDS/LISTEN_PID and execs fserve
/// (as systemd does); the parent prints the child's pid, waits for it, prints its exit
/// code, then whether each socket still listens in its hands (SO_ACCEPTCONN), as systemd's
/// would for the next instance.
const LAUNCHER: &str = r#"
import os, socket, sys
count, argv = int(sys.argv[1]), sys.argv[2:]
socks = []
for _ in range(count):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
pid = os.fork()
if pid == 0:
    # Out of the way of every fd in use first, then down to 3, 4, ...
    for i, s in enumerate(socks):
        os.dup2(s.fileno(), 1000 + i)
    for i in range(count):
        os.dup2(1000 + i, 3 + i)
        os.set_inheritable(3 + i, True)
        os.close(1000 + i)
    os.environ["LISTEN_FDS"] = str(count)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.execv(argv[0], argv)
print(pid, flush=True)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), flush=True)
print(" ".join(str(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)) for s in socks), flush=True)
"#;

struct Launched {
    child: Child,
    out: BufReader<ChildStdout>,
    err: ChildStderr,
    ports: Vec<u16>,
    fserve_pid: u32,
}

/// A test that fails half-way leaves no fserve (or launcher) running.
impl Drop for Launched {
    fn drop(&mut self) {
        // fserve may outlive a launcher already killed by a timeout: kill it while its pid
        // is still fserve's.
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.fserve_pid));
        if cmdline.is_ok_and(|c| c.starts_with(BIN.as_bytes())) {
            if let Some(pid) = rustix::process::Pid::from_raw(self.fserve_pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child process killed on drop if still running, for the same reason.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn launch(count: usize, threads: usize, root: &Path) -> Launched {
    let mut child = fserve_cmd("python3")
        .args(["-c", LAUNCHER, &count.to_string(), BIN, "--io", engine()])
        .args(["-t", &threads.to_string(), "-p", "1"])
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed to pass fserve a listening socket");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let err = child.stderr.take().unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let ports: Vec<u16> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(ports.len(), count, "ports line {line:?}");
    line.clear();
    out.read_line(&mut line).unwrap();
    let fserve_pid = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid line {line:?}"));
    Launched {
        child,
        out,
        err,
        ports,
        fserve_pid,
    }
}

/// 127.0.0.1:port answers. The socket listens before fserve starts, so a connection made
/// early queues until a worker accepts it.
fn assert_serves_on(port: u16) {
    assert_serves(SocketAddr::from(([127, 0, 0, 1], port)));
}

fn stop_and_report(mut l: Launched) -> String {
    term(l.fserve_pid);
    let status = wait_within(&mut l.child, WAIT);
    assert!(status.success(), "launcher: {status:?}");
    let mut line = String::new();
    l.out.read_line(&mut line).unwrap();
    line.trim().to_string()
}

#[test]
fn one_passed_socket_is_shared_by_every_worker() {
    let root = site();
    // `-p 1`: the passed socket takes its place (had fserve bound port 1 instead, the
    // requests to the passed socket would go unanswered).
    let l = launch(1, 2, root.path());
    for _ in 0..8 {
        assert_serves_on(l.ports[0]);
    }
    assert_eq!(stop_and_report(l), "0");
}

#[test]
fn passed_sockets_stay_listening_after_fserve_stops() {
    let root = site();
    for count in [1, 2] {
        let mut l = launch(count, 2, root.path());
        assert_serves_on(l.ports[0]);
        term(l.fserve_pid);
        let status = wait_within(&mut l.child, WAIT);
        assert!(status.success(), "launcher: {status:?}");
        let mut lines = String::new();
        l.out.read_to_string(&mut lines).unwrap();
        let mut lines = lines.lines();
        assert_eq!(lines.next(), Some("0"), "fserve's exit code");
        // A restart under socket activation must find the socket still listening: fserve
        // may stop accepting on it, never shut it down.
        let listening = vec!["1"; count].join(" ");
        assert_eq!(
            lines.next(),
            Some(listening.as_str()),
            "{count} passed socket(s)"
        );
    }
}

#[test]
fn one_passed_socket_per_worker() {
    let root = site();
    let l = launch(2, 2, root.path());
    assert_serves_on(l.ports[0]);
    assert_serves_on(l.ports[1]);
    assert_eq!(stop_and_report(l), "0");
}

#[test]
fn passed_sockets_that_match_no_worker_count_are_one_line_and_exit_2() {
    let root = site();
    let mut l = launch(2, 3, root.path());
    let status = wait_within(&mut l.child, WAIT);
    assert!(status.success(), "launcher: {status:?}");
    let mut code = String::new();
    l.out.read_line(&mut code).unwrap();
    assert_eq!(code, "2\n", "fserve's exit code");
    let mut stderr = String::new();
    l.err.read_to_string(&mut stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    let (level, message) = super::cli::diag_parts(lines[0]);
    assert_eq!(level, "ERROR");
    assert_eq!(
        message,
        "fserve: systemd passed 2 sockets to 3 workers; pass one socket (all workers share it) or one per worker (--threads 2)"
    );
}

#[test]
fn notify_socket_gets_ready_once_serving_then_stopping_on_sigterm() {
    let root = site();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify");
    let notify = UnixDatagram::bind(&path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();
    let mut child = Reaped(
        fserve_cmd(BIN)
            .args(["-b", "127.0.0.1", "-p", "0", "-t", "2", "--io", engine()])
            .arg(root.path())
            .env("NOTIFY_SOCKET", &path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 within 10 s");
    assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
    // READY=1 comes after the start line: every worker accepts by then.
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let port = line
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split_once('/'))
        .and_then(|(p, _)| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    assert_serves(SocketAddr::from(([127, 0, 0, 1], port)));
    term(child.0.id());
    let n = notify.recv(&mut buf).expect("STOPPING=1 within 10 s");
    assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=draining");
    assert!(wait_within(&mut child.0, WAIT).success());
}
