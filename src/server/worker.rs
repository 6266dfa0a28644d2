//! One worker: a thread with its own ring, listener, file cache, date, counters and access-log
//! buffer; an accept loop that spawns a task per connection, bounded by the worker's share of
//! `--max-connections`; and a one-second tick that hands the log buffer over, copies the
//! cache's figures into the counters, and drops the cache when asked (SIGHUP).

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::Notify;

use super::clock::{DateCache, Now};
use super::parking::{self, Parking};
use super::store::Store;
use crate::accesslog::{Flushed, WorkerLog};
use crate::compress::Compressor;
use crate::config::Settings;
use crate::engine::{self, Closer, Kind, Listener, Socket, Teardown};
use crate::fs::Root;
use crate::metrics::{CloseReason, Metrics, WorkerMetrics};

/// Read-only state every worker shares.
pub(super) struct Shared {
    pub cfg: Settings,
    pub root: Arc<Root>,
    pub engine: Kind,
    /// Field lines every response carries: `--header`s, and CORS with `--cors`.
    pub site_fields: Vec<u8>,
    /// Every worker's counters (each writes only its own block).
    pub metrics: Arc<Metrics>,
    /// Raised to have every worker drop its file cache (SIGHUP); each looks at its tick.
    pub cache_generation: AtomicU64,
    /// The process's compressor (its pool and finished variants), unless `--compress off`.
    pub compressor: Option<Arc<Compressor>>,
}

impl Shared {
    pub(super) fn new(
        cfg: Settings,
        root: Arc<Root>,
        engine: Kind,
        metrics: Arc<Metrics>,
        compressor: Option<Arc<Compressor>>,
    ) -> Shared {
        let site_fields = cfg.site_fields.clone();
        Shared {
            cfg,
            root,
            engine,
            site_fields,
            metrics,
            cache_generation: AtomicU64::new(0),
            compressor,
        }
    }
}

/// How often a worker hands its access-log buffer over (if it holds anything), copies its
/// cache figures into its counters, and looks for a request to drop its cache.
const TICK: Duration = crate::accesslog::FLUSH_INTERVAL;

/// How often a worker closes the held-open files that have gone idle.
const HELD_OPEN_SWEEP: Duration = Duration::from_secs(5);
/// Pause after accept fails for lack of file descriptors, before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one log line per this interval about accept failures.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// A worker's own state: used by its thread alone.
pub(super) struct Worker {
    pub shared: Arc<Shared>,
    /// This worker's index: its counters' block, its log lines' `worker`.
    pub id: usize,
    /// This worker's access-log buffer (`--access-log`).
    pub log: Option<WorkerLog>,
    /// The cache generation this worker's cache belongs to.
    generation: Cell<u64>,
    /// This worker's files: its cache, the root, the limits.
    pub(crate) store: Store,
    pub date: DateCache,
    /// Set once shutdown begins; connections close instead of waiting for another request.
    pub stopping: Cell<bool>,
    /// Woken when shutdown begins.
    pub stop: Notify,
    /// Idle keep-alive connections, parked until readable or their deadline.
    pub parking: Parking,
    conns: Cell<usize>,
    /// The live connections' sockets, to shut down when the grace period ends.
    live: RefCell<slab::Slab<Closer>>,
    max_conns: usize,
    /// Woken when a connection ends (for the cap, and for the drain).
    conn_closed: Notify,
    /// Multipart boundaries: a per-worker counter hashed with this worker's random keys, so
    /// no file's author can predict one (http::range::boundary).
    boundary_keys: std::hash::RandomState,
    boundaries: Cell<u64>,
}

impl Worker {
    pub(super) fn cfg(&self) -> &Settings {
        &self.shared.cfg
    }

    /// This worker's counters (it is their only writer).
    pub(super) fn metrics(&self) -> &WorkerMetrics {
        self.shared.metrics.worker(self.id)
    }

    /// Counts what a hand-over of the log buffer did.
    pub(super) fn count_log(&self, f: Flushed) {
        let m = self.metrics();
        if f.written > 0 {
            m.log_lines.add(f.written);
        }
        if f.dropped > 0 {
            m.log_dropped.add(f.dropped);
        }
    }

    /// Hands the log buffer to the writer (if anything is in it).
    fn flush_log(&self) {
        if let Some(log) = &self.log {
            self.count_log(log.flush());
        }
    }

    /// Once a second: the log buffer goes to the writer, the cache's figures to the
    /// counters, and the cache is dropped if asked (SIGHUP).
    fn tick(&self) {
        let generation = self.shared.cache_generation.load(Ordering::Relaxed);
        if generation != self.generation.get() {
            self.generation.set(generation);
            self.store.clear();
        }
        let s = self.store.stats();
        let m = self.metrics();
        m.cache_entries.set(s.entries);
        m.cache_bytes.set(s.bytes);
        m.cache_hits.set(s.hits);
        m.cache_misses.set(s.misses);
        m.cache_evictions.set(s.evictions);
        m.open_files.set(s.open_files);
        self.flush_log();
    }

    /// A fresh multipart boundary.
    pub(super) fn boundary(&self) -> [u8; crate::http::range::BOUNDARY_LEN] {
        use std::hash::BuildHasher;
        let n = self.boundaries.get().wrapping_add(1);
        self.boundaries.set(n);
        crate::http::range::boundary(self.boundary_keys.hash_one(n))
    }
}

/// After the grace period, when the remaining connections' sockets have been shut down,
/// how long the worker keeps driving its runtime for their tasks and ops to finish. Past
/// it, an io_uring runtime is leaked rather than dropped with ops in flight.
pub(super) const TEARDOWN_DEADLINE: Duration = Duration::from_secs(2);
/// How often the teardown looks at the count of ops in flight.
const TEARDOWN_POLL: Duration = Duration::from_millis(5);
/// How long a stopping accept loop waits for its pending accept to complete.
const ACCEPT_STOP_WAIT: Duration = Duration::from_secs(1);

/// Counts a connection for its whole life, and keeps its socket reachable for teardown.
pub(super) struct ConnGuard {
    w: Rc<Worker>,
    key: usize,
    /// The peer's address, read once at accept when a log is kept.
    pub peer: Option<IpAddr>,
    /// Why the connection ended, counted when it does (a task that panicked: an error).
    close: Cell<CloseReason>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.w.metrics().closed(self.close.get());
        self.w.live.borrow_mut().remove(self.key);
        self.w.conns.set(self.w.conns.get() - 1);
        self.w.conn_closed.notify_waiters();
    }
}

/// Ends the process from inside a worker's runtime when the worker's own loop panics (a
/// bug): the process would otherwise go on with one core's share of connections unserved,
/// and unwinding out of the runtime would drop an io_uring ring with ops in flight. A
/// supervisor restarts fserve whole. (A panic inside one connection's task ends that
/// connection only: the runtime catches it.)
fn worker_panicked() -> ! {
    let thread = std::thread::current();
    let id = thread
        .name()
        .and_then(|n| n.strip_prefix("fserve-w"))
        .unwrap_or("?");
    crate::diag::error(&format!(
        "worker {id} panicked (a bug: the message is above); exiting with code {} so a supervisor restarts fserve",
        super::EXIT_WORKER_PANIC
    ));
    std::process::exit(super::EXIT_WORKER_PANIC)
}

/// The worker thread's body: build the runtime, report readiness, serve until told to stop,
/// then drain and tear down (see [`teardown`]). `serve` runs one accepted connection (the
/// connection loop): the server hands it in, so this module needs nothing of that one.
#[allow(clippy::too_many_arguments)]
pub(super) fn run<S, F>(
    id: usize,
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop_rx: tokio::sync::watch::Receiver<bool>,
    ready: mpsc::Sender<io::Result<()>>,
    log: Option<WorkerLog>,
    serve: S,
) where
    S: Fn(ConnGuard, Socket) -> F + 'static,
    F: Future<Output = ()> + 'static,
{
    let kind = shared.engine;
    let max_conns = shared.cfg.max_conns_per_worker;
    let grace = shared.cfg.grace;
    let ready_err = ready.clone();
    let body = async move {
        let listener = match Listener::new(kind, listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return Teardown::Drained;
            }
        };
        let _ = ready.send(Ok(()));
        let w = Rc::new(Worker {
            store: Store::new(shared.root.clone(), &shared.cfg, shared.compressor.clone()),
            generation: Cell::new(shared.cache_generation.load(Ordering::Relaxed)),
            shared,
            id,
            log,
            date: DateCache::new(),
            stopping: Cell::new(false),
            stop: Notify::new(),
            parking: Parking::default(),
            conns: Cell::new(0),
            live: RefCell::new(slab::Slab::new()),
            max_conns,
            conn_closed: Notify::new(),
            boundary_keys: std::hash::RandomState::new(),
            boundaries: Cell::new(0),
        });
        {
            let w = w.clone();
            engine::spawn(async move {
                while !*stop_rx.borrow_and_update() {
                    if stop_rx.changed().await.is_err() {
                        break;
                    }
                }
                w.stopping.set(true);
                w.stop.notify_waiters();
            });
        }
        {
            let w = w.clone();
            engine::spawn(async move { parking::sweep(&w.parking, &w.stopping, &w.stop).await });
        }
        {
            let w = w.clone();
            engine::spawn(async move {
                while !w.stopping.get() {
                    tokio::select! {
                        _ = tokio::time::sleep(HELD_OPEN_SWEEP) => w.store.close_idle(Now::read()),
                        _ = w.stop.notified() => break,
                    }
                }
            });
        }
        {
            let w = w.clone();
            engine::spawn(async move {
                while !w.stopping.get() {
                    tokio::select! {
                        _ = tokio::time::sleep(TICK) => w.tick(),
                        _ = w.stop.notified() => break,
                    }
                }
            });
        }
        {
            let w = w.clone();
            engine::run_as_task(async move {
                accept_loop(&w, &listener, &serve).await;
                // Closing our descriptor stops listening (a socket systemd passed stays bound
                // in its hands, so a restart refuses no connection).
                drop(listener);
            })
            .await;
        }
        let ended = teardown(id, &w, grace).await;
        // After the drain: the last lines go to the writer.
        w.flush_log();
        ended
    };
    if let Err(e) = engine::block_on(kind, body, worker_panicked) {
        let _ = ready_err.send(Err(e));
    }
}

/// Waits until no connection is left.
async fn no_connections(w: &Worker) {
    while w.conns.get() > 0 {
        let closed = w.conn_closed.notified();
        if w.conns.get() == 0 {
            break;
        }
        closed.await;
    }
}

/// The end of a worker: idle connections close at once and busy ones get `grace` to finish
/// their response. Then the sockets of those left are shut down, so that every op pending
/// on them completes, and the runtime is driven until no connection and no op is left,
/// for at most [`TEARDOWN_DEADLINE`]. The runtime may be dropped only then: tokio-uring
/// 0.5's `Driver::drop` frees the buffers of ops still in flight before cancelling them.
async fn teardown(id: usize, w: &Worker, grace: Duration) -> Teardown {
    let kind = w.shared.engine;
    if tokio::time::timeout(grace, no_connections(w))
        .await
        .is_err()
    {
        crate::diag::warn(&format!(
            "worker {id}: {} connection(s) still busy after the {}s grace period; closing them",
            w.conns.get(),
            grace.as_secs_f64()
        ));
        for (_, closer) in w.live.borrow().iter() {
            closer.shut();
        }
    }
    let settled = async {
        no_connections(w).await;
        while engine::ops_in_flight(kind) > 0 {
            tokio::time::sleep(TEARDOWN_POLL).await;
        }
    };
    if tokio::time::timeout(TEARDOWN_DEADLINE, settled)
        .await
        .is_ok()
    {
        return Teardown::Drained;
    }
    crate::diag::warn(&format!(
        "worker {id}: {} connection(s) and {} I/O operation(s) still pending {}s after their sockets were shut down; leaving the worker's runtime in place rather than free memory the kernel may still use",
        w.conns.get(),
        engine::ops_in_flight(kind),
        TEARDOWN_DEADLINE.as_secs_f64()
    ));
    Teardown::InFlight
}

async fn accept_loop<S, F>(w: &Rc<Worker>, listener: &Listener, serve: &S)
where
    S: Fn(ConnGuard, Socket) -> F,
    F: Future<Output = ()> + 'static,
{
    let mut last_log: Option<tokio::time::Instant> = None;
    loop {
        while w.conns.get() >= w.max_conns && !w.stopping.get() {
            let closed = w.conn_closed.notified();
            tokio::select! {
                _ = closed => {}
                _ = w.stop.notified() => {}
            }
        }
        if w.stopping.get() {
            return;
        }
        let accept = listener.accept();
        tokio::pin!(accept);
        let accepted = tokio::select! {
            r = &mut accept => r,
            _ = w.stop.notified() => {
                #[cfg(test)]
                if super::fault::armed(super::fault::Fault::StallStoppingAccept) {
                    super::fault::stall();
                }
                // Cancel the pending accept and wait for it: a dropped accept would stay in
                // flight, and a connection it took would leak.
                if listener.cancel_accept().await {
                    if let Ok(Ok(sock)) = tokio::time::timeout(ACCEPT_STOP_WAIT, accept).await {
                        sock.shutdown(std::net::Shutdown::Both);
                    }
                }
                return;
            }
        };
        match accepted {
            Ok(sock) => {
                #[cfg(test)]
                if super::fault::armed(super::fault::Fault::PanicInAcceptLoop) {
                    panic!("injected fault: the accept loop");
                }
                w.conns.set(w.conns.get() + 1);
                w.metrics().accepted.add(1);
                let key = w.live.borrow_mut().insert(sock.closer());
                let peer = if w.log.is_some() {
                    sock.peer_ip()
                } else {
                    None
                };
                let guard = ConnGuard {
                    w: w.clone(),
                    key,
                    peer,
                    close: Cell::new(CloseReason::Error),
                };
                engine::spawn(serve(guard, sock));
            }
            Err(e) => {
                if w.stopping.get() {
                    return;
                }
                let out_of_fds = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                let now = tokio::time::Instant::now();
                if last_log.is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_INTERVAL) {
                    last_log = Some(now);
                    if out_of_fds {
                        crate::diag::error(&format!(
                            "accept failed: {e}; raise the open-file limit (ulimit -n) or lower --max-connections; retrying"
                        ));
                    } else {
                        crate::diag::error(&format!("accept failed: {e}; retrying"));
                    }
                }
                if out_of_fds {
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        _ = w.stop.notified() => return,
                    }
                }
            }
        }
    }
}

impl ConnGuard {
    pub(super) fn worker(&self) -> &Rc<Worker> {
        &self.w
    }

    /// Records why the connection ends (counted when the guard goes).
    pub(super) fn closing(&self, why: CloseReason) {
        self.close.set(why);
    }
}
