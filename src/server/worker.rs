//! One worker: a thread with its own ring, listener, file cache and date; an accept loop
//! that spawns a task per connection, bounded by the worker's share of `--max-connections`.

use std::cell::Cell;
use std::io;
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::Notify;

use super::clock::{DateCache, Now};
use super::conn;
use super::parking::{self, Parking};
use super::store::Store;
use crate::config::Config;
use crate::engine::{self, Kind, Listener};
use crate::fs::Root;

/// Read-only state every worker shares.
pub struct Shared {
    pub cfg: Config,
    pub root: Arc<Root>,
    pub engine: Kind,
    /// Field lines every response carries: `--header`s, and CORS with `--cors`.
    pub site_fields: Vec<u8>,
}

impl Shared {
    pub fn new(cfg: Config, root: Root, engine: Kind) -> Shared {
        let mut site_fields = Vec::new();
        for (name, value) in &cfg.headers {
            site_fields.extend_from_slice(name.as_bytes());
            site_fields.extend_from_slice(b": ");
            site_fields.extend_from_slice(value.as_bytes());
            site_fields.extend_from_slice(b"\r\n");
        }
        if cfg.cors {
            site_fields.extend_from_slice(
                b"Access-Control-Allow-Origin: *\r\n\
                  Access-Control-Expose-Headers: Content-Length, Content-Range, Accept-Ranges, ETag\r\n",
            );
        }
        Shared {
            cfg,
            root: Arc::new(root),
            engine,
            site_fields,
        }
    }
}

/// How often a worker closes the held-open files that have gone idle.
const HELD_OPEN_SWEEP: Duration = Duration::from_secs(5);
/// Pause after accept fails for lack of file descriptors, before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one log line per this interval about accept failures.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// A worker's own state: used by its thread alone.
pub struct Worker {
    pub shared: Arc<Shared>,
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
    max_conns: usize,
    /// Woken when a connection ends (for the cap, and for the drain).
    conn_closed: Notify,
    /// Multipart boundaries: a per-worker counter hashed with this worker's random keys, so
    /// no file's author can predict one (http::range::boundary).
    boundary_keys: std::hash::RandomState,
    boundaries: Cell<u64>,
}

impl Worker {
    pub fn cfg(&self) -> &Config {
        &self.shared.cfg
    }

    /// A fresh multipart boundary.
    pub fn boundary(&self) -> [u8; crate::http::range::BOUNDARY_LEN] {
        use std::hash::BuildHasher;
        let n = self.boundaries.get().wrapping_add(1);
        self.boundaries.set(n);
        crate::http::range::boundary(self.boundary_keys.hash_one(n))
    }
}

/// Counts a connection for its whole life.
pub struct ConnGuard(Rc<Worker>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.conns.set(self.0.conns.get() - 1);
        self.0.conn_closed.notify_waiters();
    }
}

/// The worker thread's body: build the ring, report readiness, serve until told to stop.
pub fn run(
    id: usize,
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop_rx: tokio::sync::watch::Receiver<bool>,
    ready: mpsc::Sender<io::Result<()>>,
) {
    let kind = shared.engine;
    let workers = shared.cfg.workers();
    let max_conns = shared.cfg.max_connections.div_ceil(workers).max(1);
    let grace = shared.cfg.grace;
    let ready_err = ready.clone();
    let body = async move {
        let listener = match Listener::new(kind, listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let w = Rc::new(Worker {
            store: Store::new(shared.root.clone(), &shared.cfg),
            shared,
            date: DateCache::new(),
            stopping: Cell::new(false),
            stop: Notify::new(),
            parking: Parking::default(),
            conns: Cell::new(0),
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
        accept_loop(&w, &listener).await;
        listener.stop();
        drop(listener);
        // Drain: idle connections close at once, busy ones finish their response.
        let drained = async {
            while w.conns.get() > 0 {
                let closed = w.conn_closed.notified();
                if w.conns.get() == 0 {
                    break;
                }
                closed.await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            eprintln!(
                "fserve: worker {id}: {} connection(s) still busy after the {}s grace period; closing them",
                w.conns.get(),
                grace.as_secs_f64()
            );
        }
    };
    if let Err(e) = engine::block_on(kind, body) {
        let _ = ready_err.send(Err(e));
    }
}

async fn accept_loop(w: &Rc<Worker>, listener: &Listener) {
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
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = w.stop.notified() => return,
        };
        match accepted {
            Ok(sock) => {
                #[cfg(test)]
                if super::fault::armed(super::fault::Fault::PanicInAcceptLoop) {
                    panic!("injected fault: the accept loop");
                }
                w.conns.set(w.conns.get() + 1);
                let guard = ConnGuard(w.clone());
                engine::spawn(conn::serve(guard, sock));
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
                        eprintln!(
                            "fserve: accept failed: {e}; raise the open-file limit (ulimit -n) or lower --max-connections; retrying"
                        );
                    } else {
                        eprintln!("fserve: accept failed: {e}; retrying");
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
    pub fn worker(&self) -> &Rc<Worker> {
        &self.0
    }
}
