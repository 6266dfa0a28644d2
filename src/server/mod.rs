//! The glue: listeners, worker threads, the per-connection driver, timeouts and shutdown.
//! The only layer that turns I/O errors into HTTP statuses.
//!
//! Start-up ([`Server::start`]):
//! 1. validate the config, resolve the root to an absolute directory and open it;
//! 2. probe io_uring once (ring flags and opcodes), so a refusal is one clear error;
//! 3. bind one SO_REUSEPORT listener per worker (port 0: the first picks, the rest follow);
//! 4. start the workers, each with its own ring, listener, cache and date (worker.rs), and
//!    wait until every ring is up.
//!
//! Shutdown ([`Server::shutdown`]): every worker stops listening, lets in-flight responses
//! finish and closes idle connections; after the grace period the remaining connections are
//! abandoned.

mod clock;
mod conn;
#[cfg(test)]
mod fault;
mod listing;
mod parking;
mod respond;
mod worker;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Config, Io};
use crate::engine;
use crate::fs::Root;
use crate::uring;

/// Pending connections per listener that the kernel completes before we accept them.
const LISTEN_BACKLOG: i32 = 4096;
/// Exit code when a worker's loop panics (EX_SOFTWARE).
pub const EXIT_WORKER_PANIC: i32 = 70;
/// Extra time, beyond the grace period, that [`Server::shutdown`] waits for workers to end.
const JOIN_SLACK: Duration = Duration::from_secs(2);

/// Why the server could not start. Its `Display` is one line: the cause and the fix.
#[derive(Debug)]
pub enum StartError {
    Config(String),
    Root { path: PathBuf, err: io::Error },
    NotADirectory(PathBuf),
    Bind { addr: SocketAddr, err: io::Error },
    Uring(uring::ProbeError),
    Worker(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(msg) => f.write_str(msg),
            StartError::Root { path, err } => match err.kind() {
                io::ErrorKind::NotFound => write!(
                    f,
                    "the directory to serve, {}, does not exist; pass an existing directory (e.g. `fserve ./public`)",
                    path.display()
                ),
                io::ErrorKind::PermissionDenied => write!(
                    f,
                    "cannot open {}: permission denied; make it readable by this user or run fserve as one who can read it",
                    path.display()
                ),
                _ => write!(f, "cannot open {}: {err}", path.display()),
            },
            StartError::NotADirectory(path) => write!(
                f,
                "{} is not a directory; pass the directory that holds it (e.g. `fserve {}`)",
                path.display(),
                path.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .display()
            ),
            StartError::Bind { addr, err } => match err.kind() {
                io::ErrorKind::AddrInUse => write!(
                    f,
                    "cannot listen on {addr}: the address is in use by another process; stop it or choose another port with --port"
                ),
                io::ErrorKind::PermissionDenied => write!(
                    f,
                    "cannot listen on {addr}: permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE, so choose another with --port"
                ),
                io::ErrorKind::AddrNotAvailable => write!(
                    f,
                    "cannot listen on {addr}: no interface here has that address; choose one with --bind (0.0.0.0 for all)"
                ),
                _ => write!(f, "cannot listen on {addr}: {err}"),
            },
            StartError::Uring(e) => e.fmt(f),
            StartError::Worker(e) => write!(f, "cannot start a worker thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server. Dropping it shuts it down like [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    root: PathBuf,
    workers: usize,
    engine: engine::Kind,
    fallback: Option<String>,
    grace: Duration,
    stop: tokio::sync::watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Starts serving; returns once every worker's ring is up and listening.
    pub fn start(mut cfg: Config) -> Result<Server, StartError> {
        cfg.validate().map_err(StartError::Config)?;
        let root = std::fs::canonicalize(&cfg.root).map_err(|err| StartError::Root {
            path: cfg.root.clone(),
            err,
        })?;
        if !root.is_dir() {
            return Err(StartError::NotADirectory(cfg.root.clone()));
        }
        let root_fd = Root::open(&root).map_err(|err| StartError::Root {
            path: root.clone(),
            err,
        })?;
        cfg.root = root.clone();
        let (engine, fallback) = match cfg.io {
            Io::Epoll => (engine::Kind::Epoll, None),
            Io::Uring => (
                engine::Kind::Uring(uring::probe().map_err(StartError::Uring)?),
                None,
            ),
            Io::Auto => match uring::probe() {
                Ok(setup) => (engine::Kind::Uring(setup), None),
                Err(e) => (engine::Kind::Epoll, Some(e.to_string())),
            },
        };

        let workers = cfg.workers();
        let defer_secs = u32::try_from(cfg.header_timeout.as_secs().max(1)).unwrap_or(u32::MAX);
        // Sockets passed by systemd (socket activation) take the place of --bind/--port.
        let listeners = match crate::systemd::passed_listeners(workers, defer_secs)
            .map_err(StartError::Config)?
        {
            Some(passed) => passed,
            None => bind_listeners(SocketAddr::new(cfg.bind, cfg.port), workers, defer_secs)?,
        };
        let addr = listeners[0].local_addr().map_err(StartError::Worker)?;

        let shared = Arc::new(worker::Shared::new(cfg, root_fd, engine));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let cpus = pinning_plan(workers);
        let mut threads = Vec::with_capacity(workers);
        for (id, listener) in listeners.into_iter().enumerate() {
            let cpu = cpus.as_ref().map(|c| c[id]);
            let shared = shared.clone();
            let stop_rx = stop_rx.clone();
            let ready_tx = ready_tx.clone();
            let done_tx = done_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("fserve-w{id}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    let run = || worker::run(id, shared, listener, stop_rx, ready_tx);
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
                        // A worker's own loop panicked (a bug): the process would go on with
                        // one core's share of connections unserved. Exit instead, so that a
                        // supervisor restarts it whole. (A panic inside one connection's task
                        // ends that connection only: the runtime catches it.)
                        eprintln!(
                            "fserve: worker {id} panicked (a bug: the message is above); exiting with code {EXIT_WORKER_PANIC} so a supervisor restarts fserve"
                        );
                        std::process::exit(EXIT_WORKER_PANIC);
                    }
                    let _ = done_tx.send(());
                })
                .map_err(StartError::Worker)?;
            threads.push(thread);
        }
        drop(ready_tx);
        let grace = shared.cfg.grace;
        let server = Server {
            addr,
            root,
            workers,
            engine,
            fallback,
            grace,
            stop,
            done,
            threads,
        };
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) if matches!(engine, engine::Kind::Uring(_)) => {
                    return Err(StartError::Uring(uring::ProbeError::Setup(e)));
                }
                Ok(Err(e)) => return Err(StartError::Worker(e)),
                Err(_) => {
                    return Err(StartError::Worker(io::Error::other(
                        "a worker exited during start-up",
                    )));
                }
            }
        }
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The absolute path of the directory served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The I/O engine the workers run on: "io_uring" or "epoll".
    pub fn engine(&self) -> &'static str {
        self.engine.name()
    }

    /// Why io_uring was not used, when `--io auto` fell back to epoll.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Stops accepting, lets in-flight responses finish within the grace period, and waits
    /// for the workers to end. Returns whether every worker ended in time.
    pub fn shutdown(mut self) -> bool {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> bool {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + self.grace + JOIN_SLACK;
        let mut ended = 0;
        while ended < self.threads.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok(()) => ended += 1,
                Err(_) => break,
            }
        }
        let all = ended == self.threads.len();
        if all {
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        } else {
            // Leave stuck workers detached: the process is about to exit anyway.
            self.threads.clear();
        }
        all
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop_and_join();
        }
    }
}

/// The CPU for each worker when there are no more workers than CPUs this process may use
/// (its affinity mask, e.g. from taskset or a cpuset cgroup): worker i on the i-th of them,
/// so a worker's ring, caches and sockets stay warm on one core. With more workers than
/// CPUs, nothing is pinned and the scheduler balances them.
fn pinning_plan(workers: usize) -> Option<Vec<usize>> {
    let allowed = rustix::thread::sched_getaffinity(None).ok()?;
    let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .collect();
    (workers <= cpus.len()).then(|| cpus[..workers].to_vec())
}

/// Pins the calling thread to `cpu`; a refusal only costs locality, so it is not an error.
fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

/// One listener per worker, all on the same address with SO_REUSEPORT, so the kernel
/// spreads new connections over the workers. With port 0 the first one picks the port.
fn bind_listeners(
    addr: SocketAddr,
    count: usize,
    defer_secs: u32,
) -> Result<Vec<TcpListener>, StartError> {
    let mut addr = addr;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = bind_one(addr).map_err(|err| StartError::Bind { addr, err })?;
        uring::Listener::defer_accept(&listener, defer_secs)
            .map_err(|err| StartError::Bind { addr, err })?;
        if addr.port() == 0 {
            addr = listener
                .local_addr()
                .map_err(|err| StartError::Bind { addr, err })?;
        }
        out.push(listener);
    }
    Ok(out)
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    //! Panics, injected with [`fault`] (test builds only): a panic in a connection ends that
    //! connection; a panic in a worker's own loop ends the process with
    //! [`EXIT_WORKER_PANIC`]. The second runs in a child process (this test binary, run
    //! again for one ignored test), since it is meant to end the process.

    use super::*;
    use std::io::{Read, Write};
    use std::net::{IpAddr, TcpStream};
    use std::process::Command;

    fn engine() -> Io {
        match std::env::var("FSERVE_TEST_IO").as_deref() {
            Ok("epoll") => Io::Epoll,
            _ => Io::Uring,
        }
    }

    fn start(root: &Path, io: Io, threads: usize, max_connections: usize) -> Server {
        std::fs::write(root.join("a.txt"), "alpha\n").unwrap();
        let mut cfg = Config::new(root);
        cfg.bind = IpAddr::from([127, 0, 0, 1]);
        cfg.port = 0;
        cfg.threads = threads;
        cfg.max_connections = max_connections;
        cfg.io = io;
        Server::start(cfg).unwrap()
    }

    /// Sends one request and reads until the server closes (or 5 s pass).
    fn exchange(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        // A reset is an answer too (the panicking task's socket is dropped).
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn a_panic_in_a_connection_ends_that_connection_only() {
        for io in [Io::Uring, Io::Epoll] {
            let dir = tempfile::tempdir().unwrap();
            // One worker, one connection at a time: had the panic leaked the connection's
            // slot, the next connection would never be served.
            let server = start(dir.path(), io, 1, 1);
            let addr = server.local_addr();
            fault::arm(fault::Fault::PanicInConnection);
            assert_eq!(exchange(addr, fault::PANIC_PATH), "", "{io:?}");
            for _ in 0..3 {
                let answer = exchange(addr, "/a.txt");
                assert!(
                    answer.starts_with("HTTP/1.1 200 OK\r\n"),
                    "{io:?}: {answer:?}"
                );
                assert!(answer.ends_with("\r\n\r\nalpha\n"), "{io:?}: {answer:?}");
            }
            assert!(server.shutdown(), "{io:?}: a worker did not end cleanly");
        }
        fault::arm(fault::Fault::None);
    }

    #[test]
    fn a_panic_in_a_worker_loop_exits_the_process_with_70() {
        let exe = std::env::current_exe().unwrap();
        for io in ["uring", "epoll"] {
            let started = Instant::now();
            let out = Command::new(&exe)
                .args(["--exact", "server::tests::child_worker_loop_panics"])
                .args(["--ignored", "--nocapture", "--test-threads=1"])
                .env("FSERVE_TEST_IO", io)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(EXIT_WORKER_PANIC),
                "{io}: the child ended with {:?}; its stderr:\n{stderr}",
                out.status
            );
            assert!(
                stderr.contains("injected fault: the accept loop")
                    && stderr
                        .contains("panicked (a bug: the message is above); exiting with code 70"),
                "{io}: stderr does not say what happened:\n{stderr}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{io}: the child took {:?} to exit",
                started.elapsed()
            );
        }
    }

    /// Run by [`a_panic_in_a_worker_loop_exits_the_process_with_70`] in a child process.
    #[test]
    #[ignore = "ends its process: run in a child by a_panic_in_a_worker_loop_exits_the_process_with_70"]
    fn child_worker_loop_panics() {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), engine(), 2, 64);
        fault::arm(fault::Fault::PanicInAcceptLoop);
        // A worker accepts this connection (once it has sent something: TCP_DEFER_ACCEPT),
        // and its loop panics.
        let _ = exchange(server.local_addr(), "/a.txt");
        std::thread::sleep(Duration::from_secs(20));
        // Not reached: the process has exited with EXIT_WORKER_PANIC. Returning here ends
        // the child with 0, which the parent reports.
    }
}
