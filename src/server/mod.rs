//! The glue: listeners, worker threads, the per-connection driver, timeouts and shutdown.
//! The only layer that turns I/O errors into HTTP statuses.
//!
//! Start-up ([`Server::start`]):
//! 1. resolve the root to an absolute directory and open it; check and resolve the config
//!    into [`Settings`] (every derived value computed once);
//! 2. choose the engine (`engine::select`: probe io_uring once, fall back to epoll where
//!    allowed), so a refusal is one clear error;
//! 3. refuse an address and port that something else already listens on, then bind one
//!    SO_REUSEPORT listener per worker (port 0: the first picks, the rest follow);
//! 4. open the access log (`--access-log`: one writer thread) and start the admin listener
//!    (`--admin`: `/metrics`, `/healthz`, `/readyz`);
//! 5. start the workers, each with its own runtime, listener, cache, date, counters and log
//!    buffer (worker.rs), wait until every one is up, then report ready.
//!
//! A [`Handle`] reaches a running server from another thread (signals): readiness off
//! (a shutdown is coming), reopen the access log, drop the file caches.
//!
//! Shutdown ([`Server::shutdown`]): every worker stops listening, lets in-flight responses
//! finish and closes idle connections; when the grace period ends it shuts down the sockets
//! of the connections left and waits (briefly) until their tasks have ended, so that no
//! io_uring runtime is dropped with operations in flight.
//!
//! server/ names only `crate::engine`, never an engine's own module.

mod clock;
pub mod compose;
mod conn;
#[cfg(test)]
mod fault;
mod listing;
mod observe;
mod parking;
mod recv_buf;
mod respond;
mod store;
mod wire;
mod worker;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::accesslog::AccessLog;
use crate::admin::Admin;
use crate::config::{Config, ConfigError, LogSink};
use crate::engine;
use crate::fs::Root;
use crate::metrics::Metrics;

pub use crate::engine::ProbeError;

/// Pending connections per listener that the kernel completes before we accept them.
const LISTEN_BACKLOG: i32 = 4096;
/// Exit code when a worker's loop panics (EX_SOFTWARE).
pub const EXIT_WORKER_PANIC: i32 = 70;
/// Extra time, beyond the grace period and the teardown, that [`Server::shutdown`] waits
/// for workers to end.
const JOIN_SLACK: Duration = Duration::from_secs(2);
/// At shutdown, how long to wait for the access log's writer to write the last lines.
const LOG_SYNC_WAIT: Duration = Duration::from_secs(2);

/// Why the server could not start. Its `Display` is one line: the cause and the fix.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Root {
        path: PathBuf,
        err: io::Error,
    },
    NotADirectory(PathBuf),
    Bind {
        addr: SocketAddr,
        err: io::Error,
    },
    Uring(ProbeError),
    Worker(io::Error),
    /// Sockets passed by systemd (LISTEN_FDS) that fserve cannot use.
    Activation(String),
    Admin {
        addr: SocketAddr,
        err: io::Error,
    },
    AccessLog {
        sink: LogSink,
        err: io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Activation(msg) => f.write_str(msg),
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
                    "cannot listen on {addr}: another socket already listens on port {port} there (find it with `ss -ltnp 'sport = :{port}'`); stop it or choose another port with --port",
                    port = addr.port()
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
            StartError::Admin { addr, err } => write!(
                f,
                "--admin {addr}: cannot listen there: {err}; choose a free address and port for the admin listener"
            ),
            StartError::AccessLog { sink, err } => match sink {
                LogSink::File(path) => write!(
                    f,
                    "--access-log {}: cannot open it for appending: {err}; give a path in a writable directory, or - for standard output",
                    path.display()
                ),
                LogSink::Stdout => write!(f, "--access-log -: cannot start the log writer: {err}"),
            },
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
    open_files_needed: u64,
    stop: tokio::sync::watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    threads: Vec<JoinHandle<()>>,
    handle: Handle,
    /// Dropped after the workers (field order), so that `/readyz` says 503 throughout.
    admin: Option<Admin>,
}

/// Reaches a running [`Server`] from any thread (e.g. a signal handler's).
#[derive(Clone)]
pub struct Handle {
    metrics: Arc<Metrics>,
    log: Option<Arc<AccessLog>>,
    shared: Arc<worker::Shared>,
}

impl Handle {
    /// Turns `/readyz` to 503 (at once), so load balancers stop sending new requests
    /// before the listeners close; serving goes on.
    pub fn set_unready(&self) {
        self.metrics.set_ready(false);
    }

    /// Reopens the access log file (after logrotate moved it); never blocks.
    pub fn reopen_log(&self) {
        if let Some(log) = &self.log {
            log.reopen();
        }
    }

    /// Has every worker drop its file cache, within a second (at its next tick).
    pub fn drop_caches(&self) {
        self.shared.cache_generation.fetch_add(1, Ordering::Relaxed);
    }
}

impl Server {
    /// Starts serving; returns once every worker's runtime is up and listening.
    pub fn start(cfg: Config) -> Result<Server, StartError> {
        cfg.validate().map_err(StartError::Config)?;
        let root = std::fs::canonicalize(&cfg.root).map_err(|err| StartError::Root {
            path: cfg.root.clone(),
            err,
        })?;
        if !root.is_dir() {
            return Err(StartError::NotADirectory(cfg.root.clone()));
        }
        let root_fd = Root::open(&root)
            .map(|r| r.show_hidden(cfg.hidden))
            .map_err(|err| StartError::Root {
                path: root.clone(),
                err,
            })?;
        let settings = cfg.resolve(root.clone()).map_err(StartError::Config)?;
        let (engine, fallback) = engine::select(settings.io).map_err(StartError::Uring)?;

        let workers = settings.workers();
        // Sockets passed by systemd (socket activation) take the place of --bind/--port.
        let listeners = match crate::systemd::passed_listeners(workers, settings.defer_accept_secs)
            .map_err(StartError::Activation)?
        {
            Some(passed) => passed,
            None => bind_listeners(
                SocketAddr::new(settings.bind, settings.port),
                workers,
                settings.defer_accept_secs,
            )?,
        };
        let addr = listeners[0].local_addr().map_err(StartError::Worker)?;

        let open_files_needed = settings.open_files_needed;
        let root_fd = Arc::new(root_fd);
        let compressor = match settings.compression {
            Some(c) => crate::compress::Compressor::start(root_fd.clone(), c)
                .map(|c| Some(Arc::new(c)))
                .map_err(StartError::Worker)?,
            None => None,
        };
        let metrics = Arc::new(Metrics::new(workers, engine.name()));
        let log = match &settings.access_log {
            Some(sink) => Some(Arc::new(
                AccessLog::start(sink.clone(), settings.log_format).map_err(|err| {
                    StartError::AccessLog {
                        sink: sink.clone(),
                        err,
                    }
                })?,
            )),
            None => None,
        };
        let admin = match settings.admin {
            Some(addr) => Some(
                Admin::start(addr, metrics.clone())
                    .map_err(|err| StartError::Admin { addr, err })?,
            ),
            None => None,
        };
        let shared = Arc::new(worker::Shared::new(
            settings,
            root_fd,
            engine,
            metrics.clone(),
            compressor,
        ));
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
            let worker_log = log.as_ref().map(|l| l.worker());
            let thread = std::thread::Builder::new()
                .name(format!("fserve-w{id}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    // A panic in the worker's own loop exits the process from inside its
                    // runtime (worker::worker_panicked): unwinding out of it would drop an
                    // io_uring runtime with ops in flight.
                    worker::run(
                        id,
                        shared,
                        listener,
                        stop_rx,
                        ready_tx,
                        worker_log,
                        conn::serve,
                    );
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
            open_files_needed,
            stop,
            done,
            threads,
            handle: Handle {
                metrics,
                log,
                shared,
            },
            admin,
        };
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) if matches!(engine, engine::Kind::Uring(_)) => {
                    return Err(StartError::Uring(engine::setup_error(e)));
                }
                Ok(Err(e)) => return Err(StartError::Worker(e)),
                Err(_) => {
                    return Err(StartError::Worker(io::Error::other(
                        "a worker exited during start-up",
                    )));
                }
            }
        }
        // Every worker accepts.
        server.handle.metrics.set_ready(true);
        Ok(server)
    }

    /// A handle for other threads: readiness, log reopening, cache dropping.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The admin listener's address (`--admin`), once bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::local_addr)
    }

    /// Open files these settings may need at once (connections, what each worker holds
    /// beside them, and slack): compare with RLIMIT_NOFILE.
    pub fn open_files_needed(&self) -> u64 {
        self.open_files_needed
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
        self.handle.set_unready();
        let _ = self.stop.send(true);
        let deadline = Instant::now() + self.grace + worker::TEARDOWN_DEADLINE + JOIN_SLACK;
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
        // The workers handed their last lines over; see them written.
        if let Some(log) = &self.handle.log {
            log.sync(LOG_SYNC_WAIT);
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
/// spreads new connections over the workers. With port 0 the probe picks the port.
///
/// SO_REUSEPORT would also let a second server (same user) join the group silently, and
/// the kernel would split connections between two servers. So a probe socket is bound
/// first WITHOUT SO_REUSEPORT: the kernel refuses it (EADDRINUSE) when anything listens on
/// an overlapping address and port (0.0.0.0:P covers 127.0.0.1:P and the reverse). The
/// probe stays bound, not listening, until the group listens. (It has SO_REUSEADDR, like
/// the group, so a restart is not refused for connections in TIME_WAIT; two servers
/// started within the same instant may still both pass.)
fn bind_listeners(
    addr: SocketAddr,
    count: usize,
    defer_secs: u32,
) -> Result<Vec<TcpListener>, StartError> {
    let probe = bind_socket(addr, false).map_err(|err| StartError::Bind { addr, err })?;
    let addr = probe
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = bind_socket(addr, true).map_err(|err| StartError::Bind { addr, err })?;
        socket
            .listen(LISTEN_BACKLOG)
            .map_err(|err| StartError::Bind { addr, err })?;
        let listener: TcpListener = socket.into();
        engine::defer_accept(&listener, defer_secs)
            .map_err(|err| StartError::Bind { addr, err })?;
        out.push(listener);
    }
    drop(probe);
    Ok(out)
}

fn bind_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    //! Panics, injected with [`fault`] (test builds only): a panic in a connection ends that
    //! connection; a panic in a worker's own loop ends the process with
    //! [`EXIT_WORKER_PANIC`]. The second runs in a child process (this test binary, run
    //! again for one ignored test), since it is meant to end the process. And the races
    //! that only the server's internals let a test provoke surely.

    use super::*;
    use std::io::{Read, Write};
    use std::net::{IpAddr, TcpStream};
    use std::process::Command;

    use crate::config::Io;

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

    /// Holds the one fault slot for one test (tests run in parallel and the slot is shared),
    /// and disarms it when the test ends, passed or failed.
    struct FaultSlot(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

    impl FaultSlot {
        fn take() -> FaultSlot {
            static SLOT: std::sync::Mutex<()> = std::sync::Mutex::new(());
            FaultSlot(SLOT.lock().unwrap_or_else(|e| e.into_inner()))
        }
    }

    impl Drop for FaultSlot {
        fn drop(&mut self) {
            fault::arm(fault::Fault::None);
        }
    }

    #[test]
    fn a_panic_in_a_connection_ends_that_connection_only() {
        let _slot = FaultSlot::take();
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
    }

    /// A connection that arrives while a stopping worker cancels its pending accept: on
    /// io_uring the ACCEPT may complete with it instead of being cancelled, and unless the
    /// worker awaits that completion and closes what it returns, the socket's descriptor
    /// is leaked and the client hangs open. The fault holds the worker between the stop
    /// and the cancel, so the connection surely lands in that window. (On epoll the accept
    /// is a readiness wait: the connection stays queued and is reset with the listener.)
    #[test]
    fn a_connection_that_races_a_stopping_accept_is_closed() {
        let _slot = FaultSlot::take();
        for io in [Io::Uring, Io::Epoll] {
            let dir = tempfile::tempdir().unwrap();
            let server = start(dir.path(), io, 1, 64);
            let addr = server.local_addr();
            // One answered request: the accept loop (a task the worker spawns) is then surely
            // waiting in its accept, not yet to start when the stop comes.
            let _ = exchange(addr, "/a.txt");
            fault::arm(fault::Fault::StallStoppingAccept);
            let stopping = std::thread::spawn(move || server.shutdown());
            assert!(
                fault::wait_stalled(Duration::from_secs(5)),
                "{io:?}: the worker did not reach its stopping accept"
            );
            let mut s = TcpStream::connect(addr).unwrap();
            // A request, so that TCP_DEFER_ACCEPT lets the kernel hand the connection over.
            s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            // Time for the kernel to complete the pending ACCEPT with it, before the cancel.
            std::thread::sleep(Duration::from_millis(200));
            fault::release();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = Vec::new();
            match s.read_to_end(&mut out) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!(
                    "{io:?}: the connection that raced the stopping accept was left open ({e})"
                ),
            }
            assert!(
                out.is_empty(),
                "{io:?}: a stopping worker answered: {:?}",
                String::from_utf8_lossy(&out)
            );
            assert!(
                stopping.join().unwrap(),
                "{io:?}: a worker did not end cleanly"
            );
        }
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
            // Nothing unwound through the ring: the process exited from inside it, so no
            // runtime was ever left with the idle connection's RECV in flight.
            assert!(
                !stderr.contains("is leaked, not freed"),
                "{io}: a panic unwound through a live io_uring runtime:\n{stderr}"
            );
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

    /// A connection that closes after its answer, while bytes the server never read wait on
    /// its socket: closing it resets the connection, and the kernel drops what it still
    /// holds unsent. The answer's last segment is held for the FIN (MSG_MORE, see
    /// `Wire::flush`), so it must leave with a shutdown before the close. The head fills
    /// the first receive exactly, so the bytes after it stay in the kernel, not in the
    /// server's buffer (where they would be drained before the close).
    #[test]
    fn a_closing_answer_reaches_a_client_that_sent_more_than_was_read() {
        for io in [Io::Uring, Io::Epoll] {
            let dir = tempfile::tempdir().unwrap();
            let server = start(dir.path(), io, 1, 64);
            let start = "GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Pad: ";
            let end = "\r\n\r\n";
            let pad = recv_buf::INITIAL_RECV_BYTES - start.len() - end.len();
            let head = format!("{start}{}{end}", "p".repeat(pad));
            assert_eq!(head.len(), recv_buf::INITIAL_RECV_BYTES);
            let mut s = TcpStream::connect(server.local_addr()).unwrap();
            // One write: with TCP_DEFER_ACCEPT the connection is handed over with all of it.
            s.write_all(format!("{head}{}", "z".repeat(1000)).as_bytes())
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = Vec::new();
            let res = s.read_to_end(&mut out);
            let out = String::from_utf8_lossy(&out);
            assert!(
                out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("\r\n\r\nalpha\n"),
                "{io:?}: the answer was lost ({res:?}): {out:?}"
            );
            assert!(server.shutdown(), "{io:?}: a worker did not end cleanly");
        }
    }

    /// Run by [`a_panic_in_a_worker_loop_exits_the_process_with_70`] in a child process.
    #[test]
    #[ignore = "ends its process: run in a child by a_panic_in_a_worker_loop_exits_the_process_with_70"]
    fn child_worker_loop_panics() {
        let dir = tempfile::tempdir().unwrap();
        // One worker, so that the connection below is surely on the ring that panics.
        let server = start(dir.path(), engine(), 1, 64);
        // Half a request head: the worker accepts it (it has sent something:
        // TCP_DEFER_ACCEPT) and waits for the rest with a RECV in flight on its ring.
        let mut idle = TcpStream::connect(server.local_addr()).unwrap();
        idle.write_all(b"GET /a.txt HTTP/1.1\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        fault::arm(fault::Fault::PanicInAcceptLoop);
        // The worker accepts this connection, and its loop panics.
        let _ = exchange(server.local_addr(), "/a.txt");
        std::thread::sleep(Duration::from_secs(20));
        // Not reached: the process has exited with EXIT_WORKER_PANIC. Returning here ends
        // the child with 0, which the parent reports.
    }
}
