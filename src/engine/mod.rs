//! The I/O engine a worker runs on, and the runtime under it: io_uring ([`uring`]), or
//! epoll ([`epoll`]) where io_uring is refused. server/ is written once against this
//! module's types ([`Listener`], [`Socket`], [`SendBatch`], [`Kind`]); each call here is one
//! `match`, and server/ never names either engine.
//!
//! Engine-neutral pieces live here once: the send batch, the probe-then-fallback choice
//! ([`select`]), TCP_DEFER_ACCEPT ([`defer_accept`]), page cache residency ([`resident`]),
//! shutdown and nodelay, and the
//! [`Closer`] a worker keeps per connection to shut every socket down at teardown.
//! `uring/` and `epoll/` import nothing from each other. Only `uring/` names tokio-uring or
//! io-uring, and only it may hold `unsafe` code (the crate denies it everywhere else).
//!
//! The runtime, honestly: both engines run a tokio current-thread scheduler per worker
//! thread; the io_uring engine adds tokio-uring's driver to it (the ring is polled from
//! tokio's epoll). server/ uses tokio's timers, `select!`, `Notify` and `watch` directly,
//! on either engine. Swapping tokio-uring for another ring runtime means rewriting
//! `uring/`; swapping tokio itself means this module and those uses in server/ too.

use std::future::Future;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Io;

mod batch;
mod epoll;
#[allow(unsafe_code)]
mod uring;

pub(crate) use batch::SendBatch;
pub use uring::ProbeError;

/// Which engine, and for io_uring the ring flags the kernel accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Uring(uring::RingSetup),
    Epoll,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Uring(_) => "io_uring",
            Kind::Epoll => "epoll",
        }
    }
}

/// Chooses the engine for `io`: for `Auto`, io_uring when the kernel gives a usable ring,
/// else epoll with the reason it was not io_uring; for `Uring`, a refusal is the error.
/// Probes once, before any worker starts.
pub(crate) fn select(io: Io) -> Result<(Kind, Option<String>), ProbeError> {
    match io {
        Io::Epoll => Ok((Kind::Epoll, None)),
        Io::Uring => Ok((Kind::Uring(uring::probe()?), None)),
        Io::Auto => Ok(match uring::probe() {
            Ok(setup) => (Kind::Uring(setup), None),
            Err(e) => (Kind::Epoll, Some(e.to_string())),
        }),
    }
}

/// The error a worker's ring set-up failed with, as a probe error (it says what to do).
pub(crate) fn setup_error(e: io::Error) -> ProbeError {
    ProbeError::Setup(e)
}

/// TCP_DEFER_ACCEPT: the kernel completes an accept only once the client has sent data
/// (or after about `secs`), so the first receive on a new connection usually finds the
/// request already there instead of waiting, and a silent connection takes no worker
/// resources meanwhile. For both engines (its one setsockopt lives with the unsafe code).
/// `shutdown(2)` for either engine's socket; an error (the peer already gone) changes
/// nothing the caller could act on.
fn shutdown_fd(fd: impl std::os::fd::AsFd, how: std::net::Shutdown) {
    let how = match how {
        std::net::Shutdown::Read => rustix::net::Shutdown::Read,
        std::net::Shutdown::Write => rustix::net::Shutdown::Write,
        std::net::Shutdown::Both => rustix::net::Shutdown::Both,
    };
    let _ = rustix::net::shutdown(fd, how);
}

pub(crate) fn defer_accept(listener: &std::net::TcpListener, secs: u32) -> io::Result<()> {
    uring::set_defer_accept(listener, secs)
}

/// With `cachestat(2)`'s answer that every page is there, one byte is probed without
/// waiting every this many bytes (and the last): a page can be in the cache and still be
/// read from the disk (readahead in flight), and sendfile would wait for it.
const PROBE_STRIDE_COUNTED: u64 = 256 * 1024;
/// Without `cachestat(2)` (refused for this file, or before Linux 6.5) the probes alone say
/// whether the slice is cached, so they are closer: a readahead window is at least 128 KiB.
const PROBE_STRIDE_ALONE: u64 = 64 * 1024;

/// Whether `file`'s bytes in `offset..offset + len` are in the page cache and readable
/// now, so that a `sendfile` of them does not wait for the disk. For both engines.
///
/// Two cheap questions, neither of which touches the disk or waits (a few microseconds per
/// MiB in all): `cachestat(2)` (Linux 6.5) counts the range's pages in the cache; it is
/// refused (EPERM) for a file the server could neither write nor owns, and missing on older
/// kernels. Then `preadv2(RWF_NOWAIT)` of one byte every [`PROBE_STRIDE_COUNTED`] bytes (or
/// [`PROBE_STRIDE_ALONE`] without cachestat's count) and of the last byte: it fails with
/// EAGAIN where a page is missing or still being read in, which cachestat counts as cached.
/// A wrong "yes" (a page evicted or missing between probes) costs one wait in sendfile, as
/// before this check; a "no" only costs a copy ([`Socket::read_at`]). A probe that finds a
/// page missing also starts the kernel's readahead of it.
pub(crate) fn resident(file: BorrowedFd<'_>, offset: u64, len: u64) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Set once the kernel has said it has no `cachestat`: it is not asked again.
    static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);
    if len == 0 {
        return true;
    }
    let mut stride = PROBE_STRIDE_ALONE;
    let last = offset + len - 1;
    // A slice within two pages (a small range) is settled by probing its first and last
    // byte: cachestat would add a system call and tell nothing more.
    let page = rustix::param::page_size() as u64;
    let within_two_pages = last / page <= offset / page + 1;
    if !within_two_pages && !NO_CACHESTAT.load(Ordering::Relaxed) {
        match uring::cachestat_all(file, offset, len) {
            Ok(false) => return false,
            Ok(true) => stride = PROBE_STRIDE_COUNTED,
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                NO_CACHESTAT.store(true, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
    let mut at = offset;
    loop {
        let mut byte = [0u8; 1];
        let probe = rustix::io::preadv2(
            file,
            &mut [io::IoSliceMut::new(&mut byte)],
            at,
            rustix::io::ReadWriteFlags::NOWAIT,
        );
        match probe {
            Ok(_) => {}
            Err(rustix::io::Errno::AGAIN) => return false,
            // No RWF_NOWAIT for this file (tmpfs): only cachestat's count can say (or
            // nothing), asked now if the slice was small enough to skip it.
            Err(_) if within_two_pages && !NO_CACHESTAT.load(Ordering::Relaxed) => {
                return matches!(uring::cachestat_all(file, offset, len), Ok(true));
            }
            Err(_) => return stride == PROBE_STRIDE_COUNTED,
        }
        if at == last {
            return true;
        }
        at = (at + stride).min(last);
    }
}

/// Requests waiting for the collapse thread ([`collapse_later`]); past them a run stays in
/// 4 KiB pages. Each holds a descriptor of a memory file until it is done.
const COLLAPSE_QUEUE: usize = 64;
/// Tries of a collapse the kernel refused for a page that was busy (EAGAIN), 10 ms apart.
const COLLAPSE_TRIES: usize = 5;

/// Runs [`collapse_later`] made huge pages since the process started (for `/metrics`).
static HUGE_PAGES_MADE: AtomicU64 = AtomicU64::new(0);
/// Runs the kernel left in 4 KiB pages since the process started (for `/metrics`).
static HUGE_PAGES_REFUSED: AtomicU64 = AtomicU64::new(0);

/// How many runs of memory files [`collapse_later`] has made huge pages, and how many the
/// kernel refused (no THP, no free huge page, or pages still held after every try).
pub(crate) fn huge_page_runs() -> (u64, u64) {
    (
        HUGE_PAGES_MADE.load(Ordering::Relaxed),
        HUGE_PAGES_REFUSED.load(Ordering::Relaxed),
    )
}

/// Asks a thread of its own to make the pages of a memory file in `offset..offset + len`
/// (whole 2 MiB runs at 2 MiB offsets) transparent huge pages, for the file store's memory
/// file. Off the workers: `MADV_COLLAPSE` copies 2 MiB, and may first
/// reclaim or compact memory for a huge page (0.3 ms measured on an idle host, 1 ms at
/// worst), which no connection should wait for. The bytes are the same before, during and
/// after, so sends from the range go on meanwhile. Fails (the run stays in 4 KiB pages)
/// when the queue is full or the thread could not be started. For both engines: a system
/// call, not a ring op.
pub(crate) fn collapse_later(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    use std::sync::OnceLock;
    use std::sync::mpsc::{SyncSender, sync_channel};
    type Job = (std::os::fd::OwnedFd, u64, u64);
    static QUEUE: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(COLLAPSE_QUEUE);
        std::thread::Builder::new()
            .name("fserve-collapse".into())
            .spawn(move || {
                for (fd, offset, len) in rx {
                    let fd = std::os::fd::AsFd::as_fd(&fd);
                    // A run freed since it was queued holds no data: a collapse would fill
                    // it with a huge page of zeros that nothing uses.
                    let data = rustix::fs::seek(fd, rustix::fs::SeekFrom::Data(offset));
                    if data.is_ok_and(|at| at < offset + len) {
                        // EAGAIN: a page was busy (locked, or being written); try again a
                        // few times. A run left in 4 KiB pages works the same, at more CPU
                        // per send.
                        let mut made = false;
                        for _ in 0..COLLAPSE_TRIES {
                            match uring::collapse(fd, offset, len) {
                                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                                    std::thread::sleep(std::time::Duration::from_millis(10));
                                }
                                res => {
                                    made = res.is_ok();
                                    break;
                                }
                            }
                        }
                        let count = if made {
                            &HUGE_PAGES_MADE
                        } else {
                            &HUGE_PAGES_REFUSED
                        };
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .ok()
            .map(|_| tx)
    });
    let Some(tx) = queue else {
        return Err(io::Error::other("no thread to collapse huge pages"));
    };
    let fd = file.try_clone_to_owned()?;
    tx.try_send((fd, offset, len))
        .map_err(|_| io::ErrorKind::WouldBlock.into())
}

/// Reads at most `len` bytes of `file` at `offset` onto the end of `out` with one
/// `preadv2(RWF_NOWAIT)`: only what is in the page cache, never waiting for the disk.
/// `out` grows by the count read (not at all on an error: EAGAIN when nothing is cached,
/// EOPNOTSUPP where the file system has no RWF_NOWAIT).
pub(crate) fn read_nowait(
    file: BorrowedFd<'_>,
    offset: u64,
    len: usize,
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    let from = out.len();
    out.resize(from + len, 0);
    let read = rustix::io::preadv2(
        file,
        &mut [io::IoSliceMut::new(&mut out[from..])],
        offset,
        rustix::io::ReadWriteFlags::NOWAIT,
    );
    out.truncate(from + *read.as_ref().unwrap_or(&0));
    Ok(read?)
}

/// Appends `len` bytes of `file` from `offset` to `out` if every one of them is in the page
/// cache ([`read_nowait`]); returns whether it did. Otherwise (a page missing, the file
/// shorter, or no RWF_NOWAIT for this file) `out` is left as it was and the caller sends
/// the range the long way.
pub(crate) fn read_resident(
    file: BorrowedFd<'_>,
    offset: u64,
    len: usize,
    out: &mut Vec<u8>,
) -> bool {
    let from = out.len();
    match read_nowait(file, offset, len, out) {
        Ok(n) if n == len => true,
        _ => {
            out.truncate(from);
            false
        }
    }
}

/// Kernel operations in flight on this thread's runtime that still own memory of ours: the
/// io_uring ops submitted and not yet completed (futures dropped or not); always 0 on epoll,
/// where nothing outlives a system call.
pub(crate) fn ops_in_flight(kind: Kind) -> usize {
    match kind {
        Kind::Uring(_) => uring::ops_in_flight(),
        Kind::Epoll => 0,
    }
}

/// How a worker's future ended, for the runtime's teardown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Teardown {
    /// Every connection ended: nothing is in flight, the runtime may be dropped.
    Drained,
    /// Connections were left (ops may be in flight): the io_uring runtime must not be
    /// dropped, and is leaked instead (see `uring::block_on`).
    InFlight,
}

/// Builds this thread's runtime for `kind` and runs `fut` on it. A panic while polling
/// `fut` itself (the worker's own loop, not a connection task: the runtime catches those)
/// ends the process with `panic_exit` right there, inside the runtime: unwinding would drop
/// the io_uring runtime with ops in flight.
pub(crate) fn block_on<F: Future<Output = Teardown>>(
    kind: Kind,
    fut: F,
    on_panic: fn() -> !,
) -> io::Result<Teardown> {
    let fut = ExitOnPanic {
        fut: Box::pin(fut),
        on_panic,
    };
    match kind {
        Kind::Uring(setup) => uring::block_on(setup, fut, |t| *t == Teardown::InFlight),
        Kind::Epoll => epoll::block_on(fut),
    }
}

/// Polls its future under `catch_unwind`; on a panic calls `on_panic` (which does not
/// return), so nothing unwinds through the runtime.
struct ExitOnPanic<F> {
    fut: std::pin::Pin<Box<F>>,
    on_panic: fn() -> !,
}

impl<F: Future> Future for ExitOnPanic<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let fut = self.fut.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(p) => p,
            Err(_) => (self.on_panic)(),
        }
    }
}

/// Spawns a task on this thread's runtime (both engines run tasks on a local set).
pub(crate) fn spawn<F: Future + 'static>(fut: F) {
    drop(tokio::task::spawn_local(fut));
}

/// Runs `fut` as a task of this thread's local set and waits for its output; a panic in it
/// goes on unwinding here, in the caller's poll (the worker's loop: see [`block_on`]).
///
/// A future that ring completions wake should run as a task, not as the future given to
/// [`block_on`]: a completion that wakes a task of the local set, which is running the
/// completions, only queues it, and the task runs in the same pass; one that wakes the
/// root future wakes the whole runtime, which then polls its event queue once more (an
/// `epoll_wait` with no timeout) before it polls the root again. For the accept loop that
/// was one system call per connection accepted alone.
pub(crate) async fn run_as_task(fut: impl Future<Output = ()> + 'static) {
    if let Err(e) = tokio::task::spawn_local(fut).await {
        // Only a runtime being shut down cancels a task, and this one is not while the
        // caller runs on it: whatever else ended the task ends the wait.
        if let Ok(payload) = e.try_into_panic() {
            std::panic::resume_unwind(payload);
        }
    }
}

pub(crate) enum Listener {
    Uring(uring::Listener),
    Epoll(epoll::Listener),
}

impl Listener {
    /// Wraps a bound, listening socket; call on the worker's runtime.
    pub(crate) fn new(kind: Kind, listener: std::net::TcpListener) -> io::Result<Listener> {
        Ok(match kind {
            Kind::Uring(_) => Listener::Uring(uring::Listener::new(listener)?),
            Kind::Epoll => Listener::Epoll(epoll::Listener::new(listener)?),
        })
    }

    pub(crate) async fn accept(&self) -> io::Result<Socket> {
        match self {
            Listener::Uring(l) => l.accept().await.map(Socket::Uring),
            Listener::Epoll(l) => l.accept().await.map(Socket::Epoll),
        }
    }

    /// Ends a pending [`Listener::accept`] without touching the socket (a socket passed by
    /// systemd must stay bound and listening for the next instance; one of ours stops
    /// listening when it is dropped). Returns whether the pending accept will complete and
    /// must be awaited: an io_uring ACCEPT is cancelled and completes (perhaps with a
    /// connection that raced the cancel); an epoll accept is a readiness wait that is simply
    /// dropped.
    pub(crate) async fn cancel_accept(&self) -> bool {
        match self {
            Listener::Uring(l) => {
                l.cancel_accept().await;
                true
            }
            Listener::Epoll(_) => false,
        }
    }
}

pub(crate) enum Socket {
    Uring(uring::Socket),
    Epoll(epoll::Socket),
}

impl Socket {
    pub(crate) async fn recv(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Socket::Uring(s) => s.recv(buf).await,
            Socket::Epoll(s) => s.recv(buf).await,
        }
    }

    /// Sends what `batch` holds, once; may send less than all of it. `more`: something
    /// follows at once, a body by sendfile or the FIN of a shutdown (MSG_MORE). `now`:
    /// nothing waits on the ring after this send (a body by sendfile follows, or the
    /// connection closes), so a plain non-blocking `sendmsg(2)` is tried first; otherwise the
    /// io_uring engine sends on the ring, in the same submission as the receive that follows
    /// (the epoll engine always sends directly).
    pub(crate) async fn send(
        &self,
        batch: SendBatch,
        more: bool,
        now: bool,
    ) -> (io::Result<usize>, SendBatch) {
        match self {
            Socket::Uring(s) => s.send(batch, more, now).await,
            Socket::Epoll(s) => s.send(batch, more).await,
        }
    }

    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            Socket::Uring(s) => s.writable().await,
            Socket::Epoll(s) => s.writable().await,
        }
    }

    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Socket::Uring(s) => s.readable().await,
            Socket::Epoll(s) => s.readable().await,
        }
    }

    pub(crate) fn try_recv(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Socket::Uring(s) => s.try_recv(buf),
            Socket::Epoll(s) => s.try_recv(buf),
        }
    }

    pub(crate) async fn cancel_pending(&self) {
        match self {
            Socket::Uring(s) => s.cancel_pending().await,
            Socket::Epoll(s) => s.cancel_pending().await,
        }
    }

    pub(crate) fn sendfile(
        &self,
        file: BorrowedFd<'_>,
        offset: &mut u64,
        count: usize,
    ) -> io::Result<usize> {
        match self {
            Socket::Uring(s) => s.sendfile(file, offset, count),
            Socket::Epoll(s) => s.sendfile(file, offset, count),
        }
    }

    /// Reads at most `len` bytes of `file` at `offset` (appended to `buf`) without
    /// blocking this thread on the disk, for a slice that [`resident`] found not cached: an
    /// io_uring READ, or on epoll a thread of a small per-worker pool. Either owns the
    /// buffer and a duplicate of the descriptor until the read is done, so dropping the
    /// future (a timeout) frees nothing under the kernel. `Ok(0)` is the end of the file.
    pub(crate) async fn read_at(
        &self,
        file: BorrowedFd<'_>,
        offset: u64,
        buf: Vec<u8>,
        len: usize,
    ) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Socket::Uring(_) => uring::read_at(file, offset, buf, len).await,
            Socket::Epoll(_) => epoll::read_at(file, offset, buf, len).await,
        }
    }

    pub(crate) fn shutdown(&self, how: std::net::Shutdown) {
        match self {
            Socket::Uring(s) => s.shutdown(how),
            Socket::Epoll(s) => s.shutdown(how),
        }
    }

    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Socket::Uring(s) => s.set_nodelay(),
            Socket::Epoll(s) => s.set_nodelay(),
        }
    }

    /// The peer's address, for the access log (a system call: once per connection).
    pub(crate) fn peer_ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Socket::Uring(s) => s.peer_ip(),
            Socket::Epoll(s) => s.peer_ip(),
        }
    }

    /// A handle to shut this socket down at teardown; it does not keep the socket open.
    pub(crate) fn closer(&self) -> Closer {
        match self {
            Socket::Uring(s) => Closer::Uring(s.closer()),
            Socket::Epoll(s) => Closer::Epoll(s.closer()),
        }
    }
}

/// Shuts a connection's socket down from outside its task (see [`Socket::closer`]): every op
/// pending on it then completes promptly, and so does the task.
pub(crate) enum Closer {
    Uring(std::rc::Weak<std::os::fd::OwnedFd>),
    Epoll(std::rc::Weak<tokio::net::TcpStream>),
}

impl Closer {
    /// Shuts the socket down both ways, if it is still open.
    pub(crate) fn shut(&self) {
        match self {
            Closer::Uring(c) => uring::shut(c),
            Closer::Epoll(c) => epoll::shut(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn a_file_dropped_from_the_page_cache_is_not_resident_and_a_read_one_is() {
        const LEN: u64 = 2 * 1024 * 1024;
        let mut f = tempfile::tempfile().expect("a temporary file");
        f.write_all(&vec![7u8; LEN as usize]).unwrap();
        f.sync_all().unwrap();
        assert!(resident(f.as_fd(), 0, LEN), "just written: cached");
        assert!(resident(f.as_fd(), 5, 0), "an empty range is always there");
        // A temporary directory on tmpfs keeps its pages: the test needs a disk under it.
        let evict = || rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        evict();
        assert!(
            !resident(f.as_fd(), 0, LEN),
            "dropped from the page cache (is the temporary directory on a disk, not tmpfs?)"
        );
        // A probe of a missing page starts the kernel's readahead of it, and on a fast disk
        // the page can be in by the time the probe looks: then "resident" is the truth. So
        // each small range is asked a few times, evicted before each (a page still being
        // read in cannot be dropped: until cachestat says it is gone), and must be said
        // missing at least once and never said there while it is not.
        for (offset, len, what) in [(LEN - 1, 1, "its last byte"), (1000, 4000, "a small range")] {
            let said_missing = (0..5).any(|_| {
                let gone = (0..200).any(|_| {
                    evict();
                    let gone = !uring::cachestat_all(f.as_fd(), offset, len).unwrap();
                    if !gone {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    gone
                });
                assert!(gone, "{what} stayed in the page cache for 2 s");
                let said = resident(f.as_fd(), offset, len);
                assert!(
                    !said || uring::cachestat_all(f.as_fd(), offset, len).unwrap(),
                    "{what} was said to be there while it is not"
                );
                !said
            });
            assert!(
                said_missing,
                "{what} was never said missing after its eviction"
            );
        }
        let mut buf = vec![0u8; LEN as usize];
        rustix::io::pread(&f, &mut buf[..], 0).unwrap();
        assert!(resident(f.as_fd(), 0, LEN), "read back in");
        assert!(resident(f.as_fd(), 4095, 4097), "across a page boundary");
    }
}
