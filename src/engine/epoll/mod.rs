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
use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;
use std::rc::{Rc, Weak};

use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::io::Interest;

use crate::engine::SendBatch;

/// Most pieces gathered into one `sendmsg`; the rest go in the next.
const MAX_IOVECS: usize = 64;

/// Builds this thread's runtime and runs `fut` to completion on it.
pub(crate) fn block_on<F: Future>(fut: F) -> io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
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

    /// Makes the kernel refuse new connections to this socket (it stops listening).
    pub(crate) fn stop(&self) {
        let _ = rustix::net::shutdown(&self.inner, rustix::net::Shutdown::Both);
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
        let mut flags = SendFlags::NOSIGNAL;
        if more {
            flags |= SendFlags::MORE;
        }
        loop {
            if let Err(e) = self.inner.writable().await {
                return (Err(e), batch);
            }
            let res = self.inner.try_io(Interest::WRITABLE, || {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = batch.io_slices(&mut slices);
                let mut control = SendAncillaryBuffer::default();
                Ok(rustix::net::sendmsg(
                    &*self.inner,
                    &slices[..n],
                    &mut control,
                    flags,
                )?)
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
        let how = match how {
            std::net::Shutdown::Read => rustix::net::Shutdown::Read,
            std::net::Shutdown::Write => rustix::net::Shutdown::Write,
            std::net::Shutdown::Both => rustix::net::Shutdown::Both,
        };
        let _ = rustix::net::shutdown(&*self.inner, how);
    }

    pub(crate) fn set_nodelay(&self) -> io::Result<()> {
        self.inner.set_nodelay(true)
    }

    /// A handle that can shut this socket down later without keeping it open.
    pub(crate) fn closer(&self) -> Weak<tokio::net::TcpStream> {
        Rc::downgrade(&self.inner)
    }
}

/// Shuts down (both ways) the socket behind a [`Socket::closer`], if it is still open.
pub(crate) fn shut(closer: &Weak<tokio::net::TcpStream>) {
    if let Some(s) = closer.upgrade() {
        let _ = rustix::net::shutdown(&*s, rustix::net::Shutdown::Both);
    }
}
