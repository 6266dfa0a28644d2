//! The epoll engine: the fallback when io_uring is refused (Docker 25+'s default seccomp
//! profile, Kubernetes' RuntimeDefault, gVisor, `kernel.io_uring_disabled`).
//!
//! The same surface as the io_uring engine (listener, socket, runtime), built on a
//! current-thread tokio runtime per worker (with a `LocalSet`) and readiness: a receive
//! waits for readability and then reads, a send waits for writability and then writes with
//! `sendmsg`, large files go by `sendfile` on writability. It imports nothing from the
//! io_uring engine, names no io_uring type, and has no unsafe code. Nothing here lends the
//! kernel memory beyond one system call, so dropping its runtime at any time is safe.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::rc::{Rc, Weak};

use tokio::io::Interest;

use crate::engine::SendBatch;

/// Threads per worker that read file slices not in the page cache ([`read_at`]), so that
/// the worker thread never waits for the disk; more cold reads at once queue for them.
const COLD_READ_THREADS: usize = 4;

/// Builds this thread's runtime and runs `fut` to completion on it.
pub(crate) fn block_on<F: Future>(fut: F) -> io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(COLD_READ_THREADS)
        .build()?;
    let local = tokio::task::LocalSet::new();
    Ok(rt.block_on(local.run_until(fut)))
}

pub(crate) struct Listener {
    inner: tokio::net::TcpListener,
}

impl Listener {
    /// Must be called on the worker's runtime.
    pub(crate) fn new(listener: std::net::TcpListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        Ok(Listener {
            inner: tokio::net::TcpListener::from_std(listener)?,
        })
    }

    pub(crate) async fn accept(&self) -> io::Result<Socket> {
        let (stream, _) = self.inner.accept().await?;
        Ok(Socket {
            inner: Rc::new(stream),
            cancel: tokio::sync::Notify::new(),
        })
    }
}

pub(crate) struct Socket {
    inner: Rc<tokio::net::TcpStream>,
    /// Ends a pending [`Socket::recv`] (see [`Socket::cancel_pending`]).
    cancel: tokio::sync::Notify,
}

impl Socket {
    /// The peer's address (one `getpeername`).
    pub(crate) fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.inner.peer_addr().ok().map(|a| a.ip())
    }

    /// Receives into the spare capacity of `buf`; `Ok(0)` is the peer's end of stream.
    pub(crate) async fn recv(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if buf.len() == buf.capacity() {
            buf.reserve(1);
        }
        loop {
            let ready = tokio::select! {
                r = self.inner.readable() => r,
                _ = self.cancel.notified() => Err(io::Error::from_raw_os_error(libc::ECANCELED)),
            };
            if let Err(e) = ready {
                return (Err(e), buf);
            }
            let res = self.inner.try_io(Interest::READABLE, || {
                Ok(rustix::io::read(
                    &*self.inner,
                    rustix::buffer::spare_capacity(&mut buf),
                )?)
            });
            match res {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                res => return (res, buf),
            }
        }
    }

    /// Sends what `batch` holds once it can; may send less than all of it.
    pub(crate) async fn send(
        &self,
        batch: SendBatch,
        more: bool,
    ) -> (io::Result<usize>, SendBatch) {
        loop {
            if let Err(e) = self.inner.writable().await {
                return (Err(e), batch);
            }
            let res = self.inner.try_io(Interest::WRITABLE, || {
                batch.send_now(self.inner.as_fd(), more)
            });
            match res {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                res => return (res, batch),
            }
        }
    }

    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.inner.writable().await
    }

    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.inner.readable().await
    }

    /// Receives what is already there into the spare capacity of `buf`, without waiting
    /// (`ErrorKind::WouldBlock`: nothing yet); `Ok(0)` is the peer's end of stream.
    pub(crate) fn try_recv(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.len() == buf.capacity() {
            buf.reserve(1);
        }
        self.inner.try_io(Interest::READABLE, || {
            Ok(rustix::io::read(
                &*self.inner,
                rustix::buffer::spare_capacity(&mut *buf),
            )?)
        })
    }

    /// Ends a pending [`Socket::recv`] with ECANCELED, handing back its buffer, as the
    /// io_uring engine's cancellation does. (Other waits here end by being dropped.)
    pub(crate) async fn cancel_pending(&self) {
        self.cancel.notify_waiters();
    }

    /// `sendfile(2)` without blocking; `WouldBlock` clears the readiness so that
    /// [`Socket::writable`] waits for real.
    pub(crate) fn sendfile(
        &self,
        file: BorrowedFd<'_>,
        offset: &mut u64,
        count: usize,
    ) -> io::Result<usize> {
        self.inner.try_io(Interest::WRITABLE, || {
            Ok(rustix::fs::sendfile(
                &*self.inner,
                file,
                Some(offset),
                count,
            )?)
        })
    }

    pub(crate) fn shutdown(&self, how: std::net::Shutdown) {
        super::shutdown_fd(&*self.inner, how);
    }

    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        self.inner.set_nodelay(true)
    }

    /// A handle that can shut this socket down later without keeping it open.
    pub(crate) fn closer(&self) -> Weak<tokio::net::TcpStream> {
        Rc::downgrade(&self.inner)
    }
}

/// Reads at most `len` bytes of `file` at `offset`, appending them to `buf`, without
/// blocking this thread on the disk: first `preadv2(RWF_NOWAIT)`, which takes only what is
/// in the page cache; what that cannot give is read by `pread(2)` on one of the runtime's
/// [`COLD_READ_THREADS`], which owns a duplicate of the descriptor and the buffer until it
/// is done (dropping the future leaves that read to finish on its own). `Ok(0)` is the end
/// of the file.
pub(crate) async fn read_at(
    file: BorrowedFd<'_>,
    offset: u64,
    mut buf: Vec<u8>,
    len: usize,
) -> (io::Result<usize>, Vec<u8>) {
    let from = buf.len();
    match super::read_nowait(file, offset, len, &mut buf) {
        Ok(n) if n > 0 => return (Ok(n), buf),
        // Not cached (EAGAIN), no RWF_NOWAIT here (EOPNOTSUPP), or at the end (0, which the
        // blocking read confirms): read on a thread of the pool.
        _ => buf.resize(from + len, 0),
    }
    let file = match file.try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => {
            buf.truncate(from);
            return (Err(e), buf);
        }
    };
    let read = tokio::task::spawn_blocking(move || {
        let res = loop {
            match rustix::io::pread(&file, &mut buf[from..], offset) {
                Err(rustix::io::Errno::INTR) => continue,
                r => break r,
            }
        };
        let n = *res.as_ref().unwrap_or(&0);
        buf.truncate(from + n);
        (res.map_err(io::Error::from), buf)
    });
    match read.await {
        Ok(done) => done,
        Err(e) => (Err(io::Error::other(e)), Vec::new()),
    }
}

/// Shuts down (both ways) the socket behind a [`Socket::closer`], if it is still open.
pub(crate) fn shut(closer: &Weak<tokio::net::TcpStream>) {
    if let Some(s) = closer.upgrade() {
        let _ = rustix::net::shutdown(&*s, rustix::net::Shutdown::Both);
    }
}
