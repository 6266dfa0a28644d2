//! The real binary: start line, serving, SIGTERM/SIGINT exit 0, start-up
//! failures exit 2 with one `fserve: ` diagnostic line (settings that make no sense name their
//! flag; a port something already listens on), the open-file limit, --help.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_fserve");

/// A command for the binary with no FSERVE_* variables inherited.
fn fserve_cmd() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FSERVE_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    cmd.stdin(Stdio::null());
    cmd
}

/// Kills the child if the test fails before it exits.
struct Running {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn fserve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        Running {
            child,
            stderr_lines: rx,
        }
    }

    /// The next diagnostic's message (`fserve: …`), its time and level checked.
    fn next_line(&self, within: Duration) -> String {
        self.next_diag(within).1
    }

    /// The next diagnostic line's level and message.
    fn next_diag(&self, within: Duration) -> (String, String) {
        match self.stderr_lines.recv_timeout(within) {
            Ok(l) => {
                let (level, msg) = diag_parts(&l);
                (level.to_string(), msg.to_string())
            }
            Err(e) => panic!("no stderr line from fserve within {within:?}: {e:?}"),
        }
    }

    fn signal(&self, sig: Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), sig)
            .unwrap_or_else(|e| panic!("kill({}, {sig:?}) failed: {e}", self.child.id()));
    }

    fn wait_within(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("fserve did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run to completion (with a deadline); returns exit status and stderr.
fn run_to_exit(mut cmd: Command, within: Duration) -> (ExitStatus, String) {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn fserve");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fserve did not exit within {within:?} (it was expected to fail at start-up)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap())
}

/// Parse `fserve: serving ROOT at http://127.0.0.1:PORT/ (N workers, io_uring)` ("1 worker").
fn parse_start_line(line: &str, root: &Path, workers: usize) -> u16 {
    let root = std::fs::canonicalize(root).unwrap();
    let prefix = format!("fserve: serving {} at http://127.0.0.1:", root.display());
    let rest = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("start line {line:?} does not start with {prefix:?}"));
    let plural = if workers == 1 { "" } else { "s" };
    let suffix = format!("/ ({workers} worker{plural}, io_uring)");
    let port = rest
        .strip_suffix(&suffix)
        .unwrap_or_else(|| panic!("start line {line:?} does not end with {suffix:?}"));
    let port: u16 = port
        .parse()
        .unwrap_or_else(|_| panic!("bad port {port:?} in {line:?}"));
    assert_ne!(port, 0, "the start line must show the real port");
    port
}

fn site() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "index.html", "<h1>cli home</h1>\n");
    tmp
}

/// A diagnostic line, `2026-12-01T23:09:07.042Z ERROR fserve: …`: its level and its
/// message from `fserve: ` on (panics on any other shape).
pub(super) fn diag_parts(line: &str) -> (&str, &str) {
    let (time, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("{line:?} is not a diagnostic line"));
    let b = time.as_bytes();
    let shape_ok = b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(
        shape_ok,
        "{line:?} does not start with an RFC 3339 UTC time"
    );
    let (level, msg) = rest
        .split_once(' ')
        .unwrap_or_else(|| panic!("{line:?} has no level"));
    assert!(
        ["INFO", "WARN", "ERROR"].contains(&level),
        "{line:?}: level {level:?}"
    );
    assert!(
        msg.starts_with("fserve: "),
        "the message of {line:?} must start with 'fserve: '"
    );
    (level, msg)
}

/// The message of the one diagnostic line in `stderr`.
fn message(stderr: &str) -> &str {
    diag_parts(stderr.lines().next().unwrap_or_default()).1
}

fn assert_one_fserve_line(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one stderr line, got {stderr:?}"
    );
    let (level, _) = diag_parts(lines[0]);
    assert_eq!(level, "ERROR", "{stderr:?}");
    assert!(!stderr.contains("panicked"), "panic on stderr: {stderr:?}");
    assert!(
        !stderr.to_lowercase().contains("backtrace"),
        "backtrace on stderr: {stderr:?}"
    );
}

#[test]
fn serves_and_exits_0_on_sigterm() {
    let site = site();
    let mut cmd = fserve_cmd();
    cmd.args(["-p", "0", "-b", "127.0.0.1", "-t", "2"])
        .arg(site.path());
    let mut run = Running::spawn(cmd);
    let line = run.next_line(Duration::from_secs(10));
    let port = parse_start_line(&line, site.path(), 2);
    let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
    {
        let mut c = Conn::open(addr);
        let r = c.get("/");
        r.assert_status(200);
        assert_eq!(r.text(), "<h1>cli home</h1>\n");
        assert_eq!(r.header("Server"), Some("fserve"));
    }
    run.signal(Signal::TERM);
    let status = run.wait_within(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn exits_0_on_sigint() {
    let site = site();
    let mut cmd = fserve_cmd();
    cmd.args(["-p", "0", "-b", "127.0.0.1", "-t", "1"])
        .arg(site.path());
    let mut run = Running::spawn(cmd);
    let line = run.next_line(Duration::from_secs(10));
    let port = parse_start_line(&line, site.path(), 1);
    let mut c = Conn::open(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    c.get("/").assert_status(200);
    drop(c);
    run.signal(Signal::INT);
    let status = run.wait_within(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGINT: {status:?}"
    );
}

#[test]
fn sigterm_with_an_idle_keepalive_connection_exits_0() {
    let site = site();
    let mut cmd = fserve_cmd();
    cmd.args(["-p", "0", "-b", "127.0.0.1", "-t", "2"])
        .arg(site.path());
    let mut run = Running::spawn(cmd);
    let port = parse_start_line(&run.next_line(Duration::from_secs(10)), site.path(), 2);
    let mut c = Conn::open(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    c.get("/").assert_status(200);
    run.signal(Signal::TERM);
    // Idle connections are closed at once, not after the whole grace period.
    let start = Instant::now();
    let status = run.wait_within(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "exit took {:?}",
        start.elapsed()
    );
    c.assert_closed();
}

#[test]
fn relative_root_is_printed_absolute() {
    let site = site();
    let mut cmd = fserve_cmd();
    cmd.current_dir(site.path())
        .args(["-p", "0", "-b", "127.0.0.1", "-t", "1", "."]);
    let mut run = Running::spawn(cmd);
    let line = run.next_line(Duration::from_secs(10));
    let port = parse_start_line(&line, site.path(), 1);
    let mut c = Conn::open(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    assert_eq!(c.get("/").text(), "<h1>cli home</h1>\n");
    drop(c);
    run.signal(Signal::TERM);
    assert_eq!(run.wait_within(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn missing_root_exits_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-root");
    let mut cmd = fserve_cmd();
    cmd.args(["-p", "0", "-b", "127.0.0.1"]).arg(&missing);
    let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "exit status; stderr: {stderr:?}");
    assert_one_fserve_line(&stderr);
    assert!(
        stderr.contains(&missing.display().to_string()),
        "stderr {stderr:?} does not name {}",
        missing.display()
    );
}

#[test]
fn root_that_is_a_file_exits_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "plain.txt", "not a directory");
    let mut cmd = fserve_cmd();
    cmd.args(["-p", "0", "-b", "127.0.0.1"]).arg(&file);
    let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "exit status; stderr: {stderr:?}");
    assert_one_fserve_line(&stderr);
    assert!(
        stderr.contains("plain.txt"),
        "stderr {stderr:?} does not name the path"
    );
}

#[test]
fn port_in_use_exits_2_with_one_line() {
    let site = site();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut cmd = fserve_cmd();
    cmd.args(["-p", &port.to_string(), "-b", "127.0.0.1"])
        .arg(site.path());
    let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "exit status; stderr: {stderr:?}");
    assert_one_fserve_line(&stderr);
    drop(listener);
}

#[test]
fn help_exits_0_and_lists_the_options() {
    let mut cmd = fserve_cmd();
    cmd.arg("--help");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd.output().expect("run fserve --help");
    assert_eq!(out.status.code(), Some(0), "--help exit status");
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in ["--port", "--bind", "--threads", "--grace", "--hidden"] {
        assert!(text.contains(opt), "--help does not mention {opt}:\n{text}");
    }
}

#[test]
fn unknown_option_is_a_usage_error() {
    let mut cmd = fserve_cmd();
    cmd.arg("--no-such-option");
    let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(2),
        "clap usage errors exit 2; stderr: {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

#[test]
fn settings_from_environment_variables() {
    let site = site();
    write(site.path(), ".env", "dotenv\n");
    let mut cmd = fserve_cmd();
    cmd.env("FSERVE_ROOT", site.path())
        .env("FSERVE_PORT", "0")
        .env("FSERVE_BIND", "127.0.0.1")
        .env("FSERVE_THREADS", "1")
        .env("FSERVE_GRACE", "1s");
    let mut run = Running::spawn(cmd);
    let port = parse_start_line(&run.next_line(Duration::from_secs(10)), site.path(), 1);
    let mut c = Conn::open(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    assert_eq!(c.get("/").text(), "<h1>cli home</h1>\n");
    c.get("/.env").assert_status(404);
    drop(c);
    run.signal(Signal::TERM);
    assert_eq!(run.wait_within(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn hidden_flag_serves_dotfiles() {
    let site = site();
    write(site.path(), ".env", "dotenv\n");
    let mut cmd = fserve_cmd();
    cmd.args([
        "-p",
        "0",
        "-b",
        "127.0.0.1",
        "-t",
        "1",
        "--hidden",
        "--grace",
        "1s",
    ])
    .arg(site.path());
    let mut run = Running::spawn(cmd);
    let port = parse_start_line(&run.next_line(Duration::from_secs(10)), site.path(), 1);
    let mut c = Conn::open(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    let r = c.get("/.env");
    r.assert_status(200);
    assert_eq!(r.text(), "dotenv\n");
    drop(c);
    run.signal(Signal::TERM);
    assert_eq!(run.wait_within(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn settings_that_make_no_sense_exit_2_with_one_line_naming_the_flag() {
    let site = site();
    let cases: [(&[&str], &str); 11] = [
        (&["--cache-size", "0"], "--cache-size"),
        (&["--compress-level", "br=12"], "--compress-level"),
        (
            &["--compress-min", "2MiB", "--compress-max-file", "1MiB"],
            "--compress-min",
        ),
        (&["--compress-cache-size", "0"], "--compress-cache-size"),
        (
            &["--cache-size", "2MiB", "--cache-max-file", "1MiB"],
            "--cache-max-file",
        ),
        (&["--spa", "missing.html"], "--spa"),
        (&["-H", "Transfer-Encoding: chunked"], "--header"),
        (&["-H", "connection: close"], "--header"),
        (&["-H", "Content-Length: 5"], "--header"),
        (&["-H", "X-A: one\rtwo"], "--header"),
        (&["-H", "X-A: nul\u{0}"], "--header"),
    ];
    for (args, flag) in cases {
        if args.iter().any(|a| a.contains('\0')) {
            // An argument cannot carry NUL; the unit tests cover it (config.rs).
            continue;
        }
        let mut cmd = fserve_cmd();
        cmd.args(["-p", "0", "-b", "127.0.0.1", "-t", "1"])
            .args(args)
            .arg(site.path());
        let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{args:?}: stderr {stderr:?}");
        assert_one_fserve_line(&stderr);
        assert!(
            message(&stderr).starts_with(&format!("fserve: {flag}")),
            "{args:?}: {stderr:?} does not start by naming {flag}"
        );
    }
}

#[test]
fn a_second_server_on_a_port_already_listened_on_exits_2() {
    let site = site();
    for io in ["uring", "epoll"] {
        let mut cmd = fserve_cmd();
        cmd.args(["-p", "0", "-b", "127.0.0.1", "-t", "2", "--io", io])
            .arg(site.path());
        let mut first = Running::spawn(cmd);
        let line = first.next_line(Duration::from_secs(10));
        // parse_start_line expects io_uring; the epoll start line differs only there.
        let port = parse_start_line(&line.replace(", epoll)", ", io_uring)"), site.path(), 2);
        for bind in ["127.0.0.1", "0.0.0.0"] {
            let mut cmd = fserve_cmd();
            cmd.args(["-p", &port.to_string(), "-b", bind, "-t", "2", "--io", io])
                .arg(site.path());
            let (status, stderr) = run_to_exit(cmd, Duration::from_secs(10));
            assert_eq!(status.code(), Some(2), "{io} {bind}:{port}: {stderr:?}");
            assert_one_fserve_line(&stderr);
            assert!(
                stderr.contains("already listens") && stderr.contains(&format!("sport = :{port}")),
                "{io} {bind}:{port}: {stderr:?}"
            );
        }
        first.signal(Signal::TERM);
        assert_eq!(first.wait_within(Duration::from_secs(5)).code(), Some(0));
    }
}

/// The soft and hard "Max open files" of a running process.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut f = line["Max open files".len()..].split_whitespace();
    (f.next().unwrap().to_string(), f.next().unwrap().to_string())
}

/// The binary started by `sh` under `ulimit ULIMIT` (e.g. `-n 256`), with `WORKERS` workers,
/// at most 1,000 connections (so the open-file check stays quiet unless the limit is
/// the point), on 127.0.0.1 port 0, serving `root`, with an empty environment.
fn spawn_under_ulimit(ulimit: &str, workers: &str, root: &Path) -> Running {
    let script = format!("ulimit {ulimit} && exec \"$0\" \"$@\"");
    let mut sh = Command::new("sh");
    sh.args(["-c", &script, BIN])
        .args(["-p", "0", "-b", "127.0.0.1", "-t", workers])
        .args(["--max-connections", "1000"])
        .arg(root)
        .env_clear()
        .stdin(Stdio::null());
    Running::spawn(sh)
}

#[test]
fn the_open_file_limit_is_raised_and_a_shortfall_is_said_once() {
    let site = site();
    // A low soft limit under a higher hard one: raised to the hard one, no warning.
    let mut run = spawn_under_ulimit("-S -n 256", "1", site.path());
    parse_start_line(&run.next_line(Duration::from_secs(10)), site.path(), 1);
    let (soft, hard) = open_file_limits(run.child.id());
    assert_eq!(
        soft, hard,
        "the soft open-file limit was not raised to the hard one"
    );
    assert!(
        run.stderr_lines
            .recv_timeout(Duration::from_millis(300))
            .is_err(),
        "a warning although the limit suffices"
    );
    run.signal(Signal::TERM);
    assert_eq!(run.wait_within(Duration::from_secs(5)).code(), Some(0));

    // A hard limit of 256 cannot hold 1,000 connections: one warning line, and it serves.
    let mut run = spawn_under_ulimit("-n 256", "1", site.path());
    let port = parse_start_line(&run.next_line(Duration::from_secs(10)), site.path(), 1);
    let (level, warning) = run.next_diag(Duration::from_secs(5));
    assert_eq!(level, "WARN", "{warning:?}");
    assert!(
        warning.starts_with("fserve: these settings may need ")
            && warning.contains("open-file limit is 256")
            && warning.contains("ulimit -n"),
        "{warning:?}"
    );
    let mut c = Conn::open(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    c.get("/").assert_status(200);
    drop(c);
    run.signal(Signal::TERM);
    assert_eq!(run.wait_within(Duration::from_secs(5)).code(), Some(0));
}

/// The memory file for cached files would pass the file-size limit: the server says so once,
/// in one line with the fix, and serves those files from the heap instead.
#[test]
fn a_file_size_limit_below_the_memory_file_keeps_cached_files_on_the_heap() {
    let site = site();
    let body = pattern_bytes(20_000, 3);
    write(site.path(), "mid.bin", &body);
    let mut run = spawn_under_ulimit("-f 1024", "2", site.path());
    // The warning comes from a worker, so it may come before or after the start line.
    let mut lines = [
        run.next_diag(Duration::from_secs(10)),
        run.next_diag(Duration::from_secs(5)),
    ];
    lines.sort_by_key(|(level, _)| level != "WARN");
    let [(level, warning), (_, start)] = lines;
    assert_eq!(level, "WARN", "{warning:?}");
    assert!(
        warning.starts_with("fserve: cached files of 8 KiB and more stay on the heap")
            && warning.contains("ulimit -f")
            && warning.contains("--cache-size"),
        "{warning:?}"
    );
    let port = parse_start_line(&start, site.path(), 2);
    assert!(
        run.stderr_lines
            .recv_timeout(Duration::from_millis(300))
            .is_err(),
        "said more than once"
    );
    let mut c = Conn::open(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    for round in 0..3 {
        assert_body_eq(
            &c.get("/mid.bin").assert_status(200).body,
            &body,
            &format!("round {round}"),
        );
    }
    drop(c);
    run.signal(Signal::TERM);
    assert_eq!(run.wait_within(Duration::from_secs(5)).code(), Some(0));
}
