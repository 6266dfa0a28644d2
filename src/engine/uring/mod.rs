//! The io_uring engine: the only module that names `tokio_uring` or `io_uring`, and the only
//! one allowed `unsafe` code (each block under `// SAFETY:`, the op helper an `unsafe fn`).
//!
//! It gives the engine module a small surface: probe the kernel once ([`probe`]), run a
//! future on a per-thread ring ([`block_on`]), and sockets whose accept, receive, send and
//! readiness waits are io_uring operations ([`Listener`], [`Socket`]). It imports nothing
//! from the epoll engine; both use the engine-neutral [`SendBatch`].
//!
//! The runtime is tokio's current-thread scheduler with tokio-uring's driver added to it:
//! the ring is waited for in tokio's epoll, and tokio's timers, `select!` and sync work on
//! it as on any tokio runtime (server/ uses them). Replacing tokio-uring means rewriting this
//! module; replacing tokio too means those uses in server/ as well.
//!
//! tokio-uring is built from vendor/tokio-uring, 0.5.0 with the patches its PATCHES.md
//! lists: its driver can wait on a ring set up with IORING_SETUP_DEFER_TASKRUN (through an
//! eventfd the kernel signals, then `io_uring_enter(GETEVENTS)`), which the probe prefers.
//! On such a ring completions wait for the worker instead of interrupting its system calls
//! as task work: a direct `sendfile` is no longer restarted for them. A build without
//! vendor/ (the published crate) has the stock driver and keeps to COOP_TASKRUN
//! (`fserve_vendored_uring`, set by build.rs).
//!
//! Teardown: published tokio-uring 0.5's `Driver::drop` frees the stable data of ops still
//! in flight *before* it cancels them, so a runtime must never be dropped with ops in flight.
//! The worker drains to zero first (shutting down every connection's socket); [`block_on`]
//! leaks a runtime that still has ops in flight rather than drop it. The vendored driver
//! fixes the order (it keeps the data until each cancelled op completes, waiting a bounded
//! time); the drain and the leak stay, since a build with the published crate needs them.
//!
//! Every operation is submitted through `tokio_uring::UnsubmittedOneshot` with *stable data*
//! that owns the file descriptor (an `Rc<OwnedFd>`) and every buffer the kernel reads or
//! writes. If the future is dropped before the completion arrives, tokio-uring keeps that
//! data alive until the kernel is done with it, so neither a buffer nor an fd number can be
//! freed or reused under the kernel. Dropping an operation does NOT cancel it: callers that
//! give up on a wait call [`Socket::shutdown`] so that the pending operation completes.
//!
//! Ops used, all single-completion: ACCEPT, RECV, SENDMSG, POLL_ADD, ASYNC_CANCEL, READ. Large
//! file bodies go out with `sendfile(2)` on the non-blocking socket; when it would block, a
//! POLL_ADD on the ring waits for writability (DESIGN.md: io_uring splice punts to kernel
//! workers). A parked idle connection waits with POLL_ADD too, and reads what woke it with
//! one non-blocking recv(2) before a serving task takes it back to the ring. A slice of a
//! large file that is not in the page cache (`engine::resident`, which asks
//! [`cachestat_all`]) is read with a READ into a buffer the op owns instead ([`read_at`]),
//! and sent from there. A send that nothing on the ring follows (a head before a sendfile,
//! the last answer before a close) tries one non-blocking sendmsg(2) first and uses SENDMSG
//! only when the socket is full ([`Socket::send`]).

mod ops;

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::{Rc, Weak};

use crate::engine::SendBatch;

/// Submission queue entries per ring. Completion queue is twice that (tokio-uring's
/// default); the kernel buffers overflowing completions (IORING_FEAT_NODROP).
pub(crate) const RING_ENTRIES: u32 = 1024;

/// The ring setup flags the kernel accepted at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RingSetup {
    /// IORING_SETUP_DEFER_TASKRUN (Linux 6.1, with SINGLE_ISSUER): completions wait until
    /// the worker asks for them instead of interrupting its system calls as task work (a
    /// direct `sendfile` interrupted that way is restarted by the kernel). Needs the vendored
    /// runtime (vendor/tokio-uring), whose driver waits on an eventfd for such a ring.
    pub defer_taskrun: bool,
    /// IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG: no inter-processor interrupt
    /// per completion; measured faster than the default flags on this workload. Where
    /// DEFER_TASKRUN is accepted it is used instead.
    pub coop_taskrun: bool,
    /// IORING_SETUP_SINGLE_ISSUER: only the worker thread that made the ring submits.
    pub single_issuer: bool,
}

impl RingSetup {
    /// What the probe tries, best first. DEFER_TASKRUN only with the vendored runtime: stock
    /// tokio-uring waits for the ring's fd, which such a ring never makes readable.
    const CANDIDATES: &[RingSetup] = &[
        #[cfg(fserve_vendored_uring)]
        RingSetup {
            defer_taskrun: true,
            coop_taskrun: false,
            single_issuer: true,
        },
        RingSetup {
            defer_taskrun: false,
            coop_taskrun: true,
            single_issuer: true,
        },
        RingSetup {
            defer_taskrun: false,
            coop_taskrun: true,
            single_issuer: false,
        },
        RingSetup {
            defer_taskrun: false,
            coop_taskrun: false,
            single_issuer: false,
        },
    ];

    fn builder(self) -> io_uring::Builder {
        let mut b = io_uring::IoUring::builder();
        if self.defer_taskrun {
            b.setup_defer_taskrun();
        }
        if self.coop_taskrun {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }
        if self.single_issuer {
            b.setup_single_issuer();
        }
        b
    }

    /// The runtime's builder for this setup (the driver must know about DEFER_TASKRUN).
    fn runtime(self) -> tokio_uring::Builder {
        let mut b = tokio_uring::builder();
        b.entries(RING_ENTRIES).uring_builder(&self.builder());
        #[cfg(fserve_vendored_uring)]
        b.defer_taskrun(self.defer_taskrun);
        b
    }
}

/// Why the kernel would not give us a usable ring.
#[derive(Debug)]
pub enum ProbeError {
    /// io_uring_setup failed.
    Setup(io::Error),
    /// The ring works but lacks an operation fserve needs (an old kernel).
    MissingOp(&'static str),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Setup(e) => match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => write!(
                    f,
                    "io_uring is refused by this system ({e}): a seccomp profile blocks it \
                     (Docker 25+ and Kubernetes RuntimeDefault do) or sysctl \
                     kernel.io_uring_disabled is set; run the container with \
                     `--security-opt seccomp=deploy/seccomp-io_uring.json` (Docker's default \
                     profile plus io_uring_setup, io_uring_enter, io_uring_register) or set \
                     `sysctl kernel.io_uring_disabled=0`"
                ),
                Some(libc::ENOSYS) => write!(
                    f,
                    "this kernel has no io_uring ({e}): it is too old or built without \
                     CONFIG_IO_URING; run fserve on Linux 6.1 or newer"
                ),
                Some(libc::ENOMEM) => write!(
                    f,
                    "cannot set up an io_uring ring ({e}): the locked-memory limit is too \
                     low; raise it (`ulimit -l unlimited`, or `--ulimit memlock=-1` for docker)"
                ),
                _ => write!(f, "cannot set up an io_uring ring: {e}"),
            },
            ProbeError::MissingOp(op) => write!(
                f,
                "this kernel's io_uring lacks the {op} operation: run fserve on Linux 6.1 or newer"
            ),
        }
    }
}

impl std::error::Error for ProbeError {}

/// Finds the best ring flags this kernel accepts, and checks the opcodes fserve submits.
/// Called once at start-up, before any worker starts, so a refusal is one clear error.
///
/// The probe rings live and die on a short-lived thread of their own: tearing a ring down
/// queues task work on the thread that made it, which makes that thread's next blocking
/// socket call with a timeout fail with EINTR (seen on 6.18). The caller's thread, perhaps an
/// embedder's, is left alone.
pub(crate) fn probe() -> Result<RingSetup, ProbeError> {
    std::thread::Builder::new()
        .name("fserve-probe".into())
        .spawn(probe_here)
        .map_err(ProbeError::Setup)?
        .join()
        .unwrap_or_else(|_| {
            Err(ProbeError::Setup(io::Error::other(
                "the io_uring probe panicked",
            )))
        })
}

fn probe_here() -> Result<RingSetup, ProbeError> {
    let mut last = None;
    for &setup in RingSetup::CANDIDATES {
        match setup.builder().build(8) {
            Ok(ring) => {
                let mut probe = io_uring::Probe::new();
                ring.submitter()
                    .register_probe(&mut probe)
                    .map_err(ProbeError::Setup)?;
                for (code, name) in [
                    (io_uring::opcode::Accept::CODE, "ACCEPT"),
                    (io_uring::opcode::Recv::CODE, "RECV"),
                    (io_uring::opcode::SendMsg::CODE, "SENDMSG"),
                    (io_uring::opcode::PollAdd::CODE, "POLL_ADD"),
                    (io_uring::opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
                    (io_uring::opcode::Read::CODE, "READ"),
                ] {
                    if !probe.is_supported(code) {
                        return Err(ProbeError::MissingOp(name));
                    }
                }
                if !cancels_by_fd(ring) {
                    return Err(ProbeError::MissingOp("ASYNC_CANCEL by file descriptor"));
                }
                return Ok(setup);
            }
            // An older kernel refuses flags it does not know with EINVAL: try fewer.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(ProbeError::Setup(e)),
        }
    }
    Err(ProbeError::Setup(last.unwrap_or_else(|| {
        io::Error::from_raw_os_error(libc::EINVAL)
    })))
}

/// Whether ASYNC_CANCEL takes IORING_ASYNC_CANCEL_FD (Linux 5.19): cancelling by fd with
/// nothing in flight answers ENOENT where it is understood, EINVAL where it is not.
fn cancels_by_fd(mut ring: io_uring::IoUring) -> bool {
    let cancel = io_uring::opcode::AsyncCancel2::new(
        io_uring::types::CancelBuilder::fd(io_uring::types::Fd(0)).all(),
    )
    .build()
    .user_data(1);
    // SAFETY: the entry refers to no buffer or memory of ours, only to fd 0 by number; the
    // kernel reads nothing beyond the entry itself.
    if unsafe { ring.submission().push(&cancel) }.is_err() || ring.submit_and_wait(1).is_err() {
        return false;
    }
    ring.completion()
        .next()
        .is_some_and(|cqe| cqe.result() != -libc::EINVAL)
}

/// Builds this thread's ring and runtime with `setup`, and runs `fut` to completion on it.
///
/// A runtime is dropped only when no op is in flight: tokio-uring's `Driver::drop` would
/// free the buffers of ops still in flight while the kernel may still write into them.
/// Otherwise it is leaked (the ring's memory, its fd and the tasks left), which is
/// memory-safe; it happens only at shutdown, once per worker, when connections did not end
/// even after their sockets were shut down, and the worker says so (`announced` tells from
/// `fut`'s output). Leaking unannounced is a bug in the worker's teardown: [`RuntimeGuard`]
/// says so on stderr, and debug builds panic on it (after leaking, so that nothing unwinds
/// through the ring).
pub(crate) fn block_on<F: Future>(
    setup: RingSetup,
    fut: F,
    announced: impl FnOnce(&F::Output) -> bool,
) -> io::Result<F::Output> {
    let mut rt = RuntimeGuard(Some(tokio_uring::Runtime::new(&setup.runtime())?));
    let out = rt.0.as_ref().map(|rt| rt.block_on(fut));
    let out = out.expect("the runtime was built above");
    let pending = ops::in_flight();
    let announced = announced(&out);
    if pending > 0 && announced {
        // The worker has said why it leaves ops in flight; the guard need not.
        std::mem::forget(rt.0.take());
    }
    drop(rt);
    debug_assert!(
        pending == 0 || announced,
        "a worker ended with {pending} io_uring op(s) in flight and did not drain them"
    );
    Ok(out)
}

/// Owns a runtime and drops it only when no op is in flight, leaking it otherwise; also
/// leaks it when a panic unwinds through [`block_on`] (the worker's own loop exits the
/// process before that, from inside the runtime; this is the net under it). Each leak it
/// makes is a bug upstream of it, and it says so in one line on stderr.
struct RuntimeGuard(Option<tokio_uring::Runtime>);

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        let Some(rt) = self.0.take() else {
            return;
        };
        let pending = ops::in_flight();
        let panicking = std::thread::panicking();
        if pending == 0 && !panicking {
            drop(rt);
            return;
        }
        // SECURITY: a leak (the ring, its fd, the tasks and the buffers they hold) rather
        // than a use-after-free: tokio-uring's `Driver::drop` frees the buffers of ops in
        // flight before it cancels them. During a panic it leaks even with none in flight:
        // dropping the tasks would run their destructors while unwinding (a second panic
        // aborts), and the thread is on its way out anyway.
        std::mem::forget(rt);
        let how = if panicking {
            "a panic unwound through a worker's io_uring runtime"
        } else {
            "a worker's io_uring runtime ended without draining"
        };
        crate::diag::warn(&format!(
            "{how} with {pending} I/O operation(s) in flight; the runtime is leaked, not freed, since the kernel may still use its buffers (a bug in fserve: report it with the lines above)"
        ));
    }
}

/// io_uring ops in flight on this thread's ring (see `engine::ops_in_flight`).
pub(crate) fn ops_in_flight() -> usize {
    ops::in_flight()
}

/// TCP_DEFER_ACCEPT on a listening socket (no safe wrapper offers it; this module is the
/// one that may call libc unsafely). See `engine::defer_accept`.
pub(crate) fn set_defer_accept(listener: &std::net::TcpListener, secs: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let secs = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a pointer to a live local
    // c_int during the call only; the fd is valid for the borrow of `listener`.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const secs).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Linux's `cachestat(2)` system call number (Linux 6.5): 451 on every architecture but
/// alpha, as every system call added since 5.1 shares one number across them; the libc
/// crate does not name it on every target.
const SYS_CACHESTAT: libc::c_long = 451;

/// `struct cachestat_range` of `<linux/mman.h>`.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// `struct cachestat` of `<linux/mman.h>`.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// The size of the huge pages [`collapse`] asks for: the PMD size of x86-64 and arm64 with
/// 4 KiB pages, which the memory file's runs are made of.
const HUGE_PAGE: usize = 2 << 20;

/// Makes the pages of `file` (a memory file) in `offset..offset + len` transparent huge
/// pages, with `MADV_COLLAPSE` (Linux 6.1) on a mapping of the range made for the call and
/// removed after it; the huge pages stay in the file. `offset` and `len`: multiples of
/// 2 MiB. An error (no THP in this kernel, no free huge page, `offset` not aligned) leaves
/// the pages as they were; the bytes never change either way.
pub(crate) fn collapse(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let at =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if len == 0 || len % HUGE_PAGE != 0 || offset % HUGE_PAGE as u64 != 0 {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // A huge page is mapped only at an address aligned to it: reserve a huge page more
    // than needed and map the file at the first aligned address inside.
    let span = len + HUGE_PAGE;
    // SAFETY: a new private anonymous mapping with no access, at an address the kernel
    // chooses: it aliases no memory of ours.
    let reserved = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if reserved == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let aligned = (reserved as usize).next_multiple_of(HUGE_PAGE) as *mut libc::c_void;
    // SAFETY: `aligned..aligned + len` lies inside the reservation made above, which
    // MAP_FIXED replaces with a read-only shared mapping of the file; nothing else uses
    // that reservation, and nothing reads or writes through the mapping.
    let map = unsafe {
        libc::mmap(
            aligned,
            len,
            libc::PROT_READ,
            libc::MAP_SHARED | libc::MAP_FIXED,
            file.as_raw_fd(),
            at,
        )
    };
    let res = if map == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: advice on the mapping made above; collapsing copies the pages into a
        // huge page without changing a byte of the file.
        match unsafe { libc::madvise(map, len, libc::MADV_COLLAPSE) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    };
    // SAFETY: removes the reservation and the mapping inside it, which nothing refers to.
    unsafe { libc::munmap(reserved, span) };
    res
}

/// Whether every page of `file` that holds a byte of `offset..offset + len` is in the page
/// cache (read in, or still being read in), asked with `cachestat(2)`, which only walks the
/// cache and never waits for the disk. `Err`: the kernel will not say (ENOSYS before Linux
/// 6.5; EPERM for a file this process neither owns nor may write, the rule mincore has
/// too). See `engine::resident`.
pub(crate) fn cachestat_all(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(true);
    }
    let page = rustix::param::page_size() as u64;
    let pages = (offset + len).div_ceil(page) - offset / page;
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: cachestat reads one `cachestat_range` from a pointer to a live local and
    // writes one `cachestat` through a pointer to another live local, both `repr(C)` with
    // the kernel's layout (u64 fields), during the call only; the fd is valid for the borrow
    // of `file`; flags must be 0.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd() as libc::c_uint,
            &raw const range,
            &raw mut stat,
            0 as libc::c_uint,
        )
    };
    if rc == 0 {
        Ok(stat.nr_cache >= pages)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads at most `len` bytes of `file` at `offset` with an io_uring READ, appending them to
/// `buf`; the op owns a duplicate of the file's descriptor and the buffer until it
/// completes, so the future may be dropped. See `engine::Socket::read_at`.
pub(crate) async fn read_at(
    file: BorrowedFd<'_>,
    offset: u64,
    buf: Vec<u8>,
    len: usize,
) -> (io::Result<usize>, Vec<u8>) {
    let fd = match file.try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => return (Err(e), buf),
    };
    ops::read_at(fd, buf, offset, len).await
}

/// A listening socket whose accepts go through the ring, and directly while the kernel says
/// its backlog holds more (see [`Listener::accept`]).
pub(crate) struct Listener {
    fd: Rc<OwnedFd>,
    /// Direct `accept4` calls left before the next accept goes through the ring.
    direct: Cell<u32>,
}

/// After an accept through the ring that left connections in the backlog, at most this many
/// are taken with a direct `accept4`, before the next accept goes through the ring again.
const DIRECT_ACCEPTS: u32 = 16;

impl Listener {
    /// The socket is made non-blocking, for the direct accepts (the epoll engine does the
    /// same; a socket systemd passed is non-blocking in its hands already).
    pub(crate) fn new(listener: std::net::TcpListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        Ok(Listener {
            fd: Rc::new(listener.into()),
            direct: Cell::new(0),
        })
    }

    /// Accepts one connection. The new socket is non-blocking (for `sendfile`) and
    /// close-on-exec.
    ///
    /// When the kernel says, with an accept through the ring, that more connections wait in
    /// the backlog, the next ones are taken with a direct `accept4` while it has any (at
    /// most [`DIRECT_ACCEPTS`] in a row): connections that queue up while the worker is busy
    /// then cost no wake-up, ring submission and completion each. The first `accept4` that
    /// finds the backlog empty falls back to the ring. One connection at a time costs no
    /// `accept4` that fails. (Kernels before 6.10 never say so: every accept is the ring's.)
    pub(crate) async fn accept(&self) -> io::Result<Socket> {
        let left = self.direct.get();
        if left > 0 {
            self.direct.set(left - 1);
            use rustix::net::SocketFlags;
            match rustix::net::accept_with(&*self.fd, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)
            {
                Ok(fd) => return Ok(Socket::new(fd)),
                Err(rustix::io::Errno::AGAIN) => self.direct.set(0),
                Err(e) => return Err(e.into()),
            }
        }
        let (fd, more) = ops::accept(&self.fd).await?;
        self.direct.set(if more { DIRECT_ACCEPTS } else { 0 });
        Ok(Socket::new(fd))
    }

    /// Cancels a pending [`Listener::accept`] (it completes with ECANCELED, or with a
    /// connection that raced the cancel). The socket itself is left as it is: a socket that
    /// systemd passed stays bound and listening in systemd's hands for the next instance,
    /// and one of ours stops listening when its descriptor closes.
    pub(crate) async fn cancel_accept(&self) {
        let _ = ops::cancel_all(&self.fd).await;
    }
}

/// A connected TCP socket whose receives, sends and waits go through the ring.
pub(crate) struct Socket {
    fd: Rc<OwnedFd>,
    /// The msghdr of the last send, kept for the next (its box is the send's stable data).
    msg: Cell<Option<Box<ops::MsgHdr>>>,
}

impl Socket {
    fn new(fd: OwnedFd) -> Socket {
        Socket {
            fd: Rc::new(fd),
            msg: Cell::new(None),
        }
    }

    /// Receives into the spare capacity of `buf` (after its length) and grows its length by
    /// the count received; `Ok(0)` is the peer's end of stream.
    pub(crate) async fn recv(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        ops::recv(&self.fd, buf).await
    }

    /// Sends what `batch` holds, once; may send less than all of it (see
    /// [`SendBatch::consume`]). `more` (MSG_MORE) tells the kernel something follows at once
    /// (a body by sendfile, or the FIN of a shutdown), so this need not go out in a packet
    /// of its own.
    ///
    /// `now`: try a plain non-blocking `sendmsg(2)` first, and use the ring only if the
    /// socket is full. Worth it when nothing else goes on the ring after this send (a body
    /// by sendfile, or a close follows): the task need not wait for a completion. Between
    /// keep-alive requests it costs more than it saves (measured: a system call of its own,
    /// where a SENDMSG shares one submission with the RECV after it).
    pub(crate) async fn send(
        &self,
        batch: SendBatch,
        more: bool,
        now: bool,
    ) -> (io::Result<usize>, SendBatch) {
        if now {
            match batch.send_now(self.fd.as_fd(), more) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                res => return (res, batch),
            }
        }
        let msg = self.msg.take().unwrap_or_else(ops::MsgHdr::new);
        let (res, batch, msg) = ops::send(&self.fd, batch, msg, more).await;
        self.msg.set(Some(msg));
        (res, batch)
    }

    /// Waits until the socket is writable (or has failed: the next send reports why).
    pub(crate) async fn writable(&self) -> io::Result<()> {
        ops::poll_out(&self.fd).await
    }

    /// The peer's address (one `getpeername`; the accept op does not ask for it).
    pub(crate) fn peer_ip(&self) -> Option<std::net::IpAddr> {
        let addr = rustix::net::getpeername(&*self.fd).ok()??;
        std::net::SocketAddr::try_from(addr).ok().map(|a| a.ip())
    }

    /// Receives what is already there into the spare capacity of `buf`, without waiting
    /// (`ErrorKind::WouldBlock`: nothing yet); `Ok(0)` is the peer's end of stream.
    pub(crate) fn try_recv(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.len() == buf.capacity() {
            buf.reserve(1);
        }
        let (n, _) = rustix::net::recv(
            &*self.fd,
            rustix::buffer::spare_capacity(buf),
            rustix::net::RecvFlags::DONTWAIT,
        )?;
        Ok(n)
    }

    /// Waits until the socket has bytes to read, or the peer closed or failed: an idle
    /// connection waits here without lending the kernel a buffer.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        ops::poll(&self.fd, libc::POLLIN).await
    }

    /// Cancels every ring operation pending on this socket; they complete promptly (with
    /// ECANCELED unless they had already finished), handing back their buffers.
    pub(crate) async fn cancel_pending(&self) {
        let _ = ops::cancel_all(&self.fd).await;
    }

    /// `sendfile(2)` from `file` at `*offset`, at most `count` bytes, without blocking:
    /// `ErrorKind::WouldBlock` means wait for [`Socket::writable`].
    pub(crate) fn sendfile(
        &self,
        file: BorrowedFd<'_>,
        offset: &mut u64,
        count: usize,
    ) -> io::Result<usize> {
        Ok(rustix::fs::sendfile(&*self.fd, file, Some(offset), count)?)
    }

    /// Shuts down one or both directions. Pending ring operations on the socket complete
    /// promptly afterwards (a receive with 0, a send or poll with an error).
    pub(crate) fn shutdown(&self, how: std::net::Shutdown) {
        super::shutdown_fd(&*self.fd, how);
    }

    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        Ok(rustix::net::sockopt::set_tcp_nodelay(&*self.fd, true)?)
    }

    /// A handle that can shut this socket down later without keeping its fd open: while
    /// any op is in flight its stable data holds the fd, so the handle reaches it.
    pub(crate) fn closer(&self) -> Weak<OwnedFd> {
        Rc::downgrade(&self.fd)
    }
}

/// Shuts down (both ways) the socket behind a [`Socket::closer`], if it is still open.
pub(crate) fn shut(closer: &Weak<OwnedFd>) {
    if let Some(fd) = closer.upgrade() {
        let _ = rustix::net::shutdown(&*fd, rustix::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// Three connections wait in the backlog: the first is accepted through the ring, whose
    /// completion says more are waiting, so the next two are taken with direct `accept4`s;
    /// one at a time, every accept is the ring's.
    #[test]
    fn a_backlog_is_taken_with_direct_accepts_once_the_ring_says_it_is_there() {
        let setup = probe().expect("io_uring must be available for the io_uring engine's tests");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // `connect` returns once the handshake is done: all three are in the backlog.
        let _queued: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let (queued, alone) = block_on(
            setup,
            async move {
                let l = Listener::new(listener).unwrap();
                let mut queued = Vec::new();
                for _ in 0..3 {
                    let sock = l.accept().await.unwrap();
                    queued.push((ops::in_flight(), l.direct.get()));
                    drop(sock);
                }
                // Nothing queued now: the next accept finds the backlog empty (the client
                // connects well after it looks), waits on the ring, and the completion says
                // nothing more is waiting.
                let connect = std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    TcpStream::connect(addr).unwrap()
                });
                let sock = l.accept().await.unwrap();
                let alone = l.direct.get();
                drop(sock);
                drop(connect.join().unwrap());
                (queued, alone)
            },
            |_| false,
        )
        .unwrap();
        // After the ring's accept: DIRECT_ACCEPTS direct ones allowed; each direct one uses one.
        assert_eq!(
            queued.iter().map(|q| q.1).collect::<Vec<_>>(),
            [DIRECT_ACCEPTS, DIRECT_ACCEPTS - 1, DIRECT_ACCEPTS - 2],
            "the ring's accept did not say the backlog had more (Linux 6.10 or later sets IORING_CQE_F_SOCK_NONEMPTY on ACCEPT)"
        );
        assert!(queued.iter().all(|q| q.0 == 0), "no accept left in flight");
        assert_eq!(
            alone, 0,
            "a connection that came alone must not lead to a direct accept"
        );
    }

    /// The probe takes DEFER_TASKRUN where the vendored runtime can wait on it (this machine
    /// kind runs Linux 6.1 or later), and more completions than the kernel runs per entry
    /// (20) that arrive while the worker is busy all reach their receives: none waits for
    /// some later event.
    #[test]
    fn a_burst_of_completions_while_the_worker_is_busy_all_arrive() {
        use std::io::Write;
        const N: usize = 100;
        let setup = probe().expect("io_uring must be available for the io_uring engine's tests");
        assert_eq!(
            setup.defer_taskrun,
            cfg!(fserve_vendored_uring),
            "the probe's choice of DEFER_TASKRUN: {setup:?}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..N).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let received = block_on(
            setup,
            async move {
                let l = Listener::new(listener).unwrap();
                let mut receives = Vec::new();
                for _ in 0..N {
                    let sock = l.accept().await.unwrap();
                    receives.push(tokio::task::spawn_local(async move {
                        sock.recv(vec![0; 16]).await.0
                    }));
                }
                // Parking submits the receives; then this thread is kept busy (blocked, not
                // waiting on the ring) while every client sends a byte.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let clients = std::thread::spawn(move || {
                    for mut c in &clients {
                        c.write_all(b"x").unwrap();
                    }
                    clients
                })
                .join()
                .unwrap();
                std::thread::sleep(Duration::from_millis(50));
                let mut received = 0;
                for r in receives {
                    if let Ok(Ok(Ok(1))) = tokio::time::timeout(Duration::from_secs(5), r).await {
                        received += 1;
                    }
                }
                drop(clients);
                received
            },
            |_| false,
        )
        .unwrap();
        assert_eq!(received, N, "receives that got their byte within 5 s");
    }

    /// The stable data of a READ in flight: the file, and a buffer the test owns, whose
    /// first and last bytes it records when the runtime lets go of it (drops it).
    #[cfg(fserve_vendored_uring)]
    struct Witness {
        file: OwnedFd,
        buf: *mut u8,
        len: usize,
        seen: Rc<Cell<Option<(u8, u8)>>>,
    }

    /// The first and last bytes of `len` bytes at `buf`.
    ///
    /// # Safety
    ///
    /// `buf..buf + len` must be live memory (the kernel may be writing into it: the reads
    /// are volatile, and a torn view is what the caller looks for).
    #[cfg(fserve_vendored_uring)]
    unsafe fn ends(buf: *const u8, len: usize) -> (u8, u8) {
        // SAFETY: both addresses are inside the live range, by the caller's promise.
        unsafe { (buf.read_volatile(), buf.add(len - 1).read_volatile()) }
    }

    #[cfg(fserve_vendored_uring)]
    impl Drop for Witness {
        fn drop(&mut self) {
            // SAFETY: the buffer belongs to the test, which frees it only after the runtime
            // is gone and the kernel's workers are done.
            self.seen.set(Some(unsafe { ends(self.buf, self.len) }));
        }
    }

    #[cfg(fserve_vendored_uring)]
    struct Ignore;

    #[cfg(fserve_vendored_uring)]
    impl tokio_uring::OneshotOutputTransform for Ignore {
        type Output = ();
        type StoredData = Witness;
        fn transform_oneshot_output(self, _: Witness, _: io_uring::cqueue::Entry) {}
    }

    /// A runtime dropped with an op in flight lets go of the op's buffer only once the kernel
    /// is done with it (the vendored driver's teardown patch). The op is a 64 MiB READ from a
    /// memory file, sent to the kernel's workers (IOSQE_ASYNC), which copy into the buffer
    /// for milliseconds and cannot be stopped midway; the runtime is dropped as soon as the
    /// read is submitted. What the buffer holds when the runtime drops it must be what it
    /// holds once everything is over: the copy complete, or never started (cancelled while
    /// queued). Published tokio-uring 0.5.0 dropped it mid-copy: its last byte was still 0
    /// then and 0xAB after. A try in which the copy never started, or ended before the drop,
    /// shows nothing, so the test tries until one shows it, at most five times.
    #[cfg(fserve_vendored_uring)]
    #[test]
    fn a_runtime_dropped_with_a_read_in_flight_lets_go_of_its_buffer_after_the_kernel() {
        use io_uring::{opcode, squeue, types};
        use std::os::fd::AsRawFd;
        const LEN: usize = 64 << 20;
        let setup = probe().expect("io_uring must be available for the io_uring engine's tests");
        let file =
            rustix::fs::memfd_create("fserve-teardown-test", rustix::fs::MemfdFlags::CLOEXEC)
                .unwrap();
        let file = std::fs::File::from(file);
        std::io::Write::write_all(&mut &file, &vec![0xAB; LEN]).unwrap();
        for _attempt in 0..5 {
            let mut buf = vec![0u8; LEN].into_boxed_slice();
            let seen = Rc::new(Cell::new(None));
            let witness = Witness {
                file: file.try_clone().unwrap().into(),
                buf: buf.as_mut_ptr(),
                len: LEN,
                seen: seen.clone(),
            };
            let sqe =
                opcode::Read::new(types::Fd(witness.file.as_raw_fd()), witness.buf, LEN as u32)
                    .offset(0)
                    .build()
                    .flags(squeue::Flags::ASYNC);
            let rt = tokio_uring::Runtime::new(&setup.runtime()).unwrap();
            rt.block_on(async move {
                // The entry's fd and buffer stay valid until the completion: the fd is the
                // witness's, the buffer the test's (freed at the end of this attempt).
                let op = tokio_uring::UnsubmittedOneshot::new(witness, Ignore, sqe);
                tokio_uring::spawn(op.submit());
                // Parking submits the read; the runtime is dropped right after.
                tokio::time::sleep(Duration::from_millis(1)).await;
            });
            if seen.get().is_some() {
                // The read completed before the runtime was dropped: nothing to see here.
                continue;
            }
            let started = std::time::Instant::now();
            drop(rt);
            assert!(
                started.elapsed() < Duration::from_secs(6),
                "dropping the runtime took longer than its 5 s bound"
            );
            // Any copy still running (the published drop) ends well within this.
            std::thread::sleep(Duration::from_millis(300));
            let when_dropped = seen
                .get()
                .expect("dropping the runtime drops the op's data");
            // SAFETY: `buf` is alive (freed below) and nothing writes into it any more.
            let after = unsafe { ends(buf.as_ptr(), LEN) };
            assert_eq!(
                when_dropped, after,
                "the runtime let go of the read's buffer while the kernel was still copying into it"
            );
            if after == (0xAB, 0xAB) {
                return;
            }
        }
        panic!(
            "in five tries no read was in the kernel's hands when the runtime was dropped \
             (never started, or already done): the test saw nothing"
        );
    }
}
