//! The I/O engine a worker runs on: io_uring (`uring`), or epoll (`epoll`) where io_uring is
//! refused. The server is written once against these enums; each call is one `match`.

use std::future::Future;
use std::io;
use std::os::fd::BorrowedFd;

use crate::{epoll, uring};

pub use crate::uring::SendBatch;

/// Which engine, and for io_uring the ring flags the kernel accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Uring(uring::RingSetup),
    Epoll,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Uring(_) => "io_uring",
            Kind::Epoll => "epoll",
        }
    }
}

/// Builds this thread's runtime for `kind` and runs `fut` on it.
pub fn block_on<F: Future>(kind: Kind, fut: F) -> io::Result<F::Output> {
    match kind {
        Kind::Uring(setup) => uring::block_on(setup, fut),
        Kind::Epoll => epoll::block_on(fut),
    }
}

/// Spawns a task on this thread's runtime (both engines run tasks on a local set).
pub fn spawn<F: Future + 'static>(fut: F) {
    drop(tokio::task::spawn_local(fut));
}

pub enum Listener {
    Uring(uring::Listener),
    Epoll(epoll::Listener),
}

impl Listener {
    /// Wraps a bound, listening socket; call on the worker's runtime.
    pub fn new(kind: Kind, listener: std::net::TcpListener) -> io::Result<Listener> {
        Ok(match kind {
            Kind::Uring(_) => Listener::Uring(uring::Listener::new(listener)),
            Kind::Epoll => Listener::Epoll(epoll::Listener::new(listener)?),
        })
    }

    pub async fn accept(&self) -> io::Result<Socket> {
        match self {
            Listener::Uring(l) => l.accept().await.map(Socket::Uring),
            Listener::Epoll(l) => l.accept().await.map(Socket::Epoll),
        }
    }

    pub fn stop(&self) {
        match self {
            Listener::Uring(l) => l.stop(),
            Listener::Epoll(l) => l.stop(),
        }
    }
}

pub enum Socket {
    Uring(uring::Socket),
    Epoll(epoll::Socket),
}

impl Socket {
    pub async fn recv(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Socket::Uring(s) => s.recv(buf).await,
            Socket::Epoll(s) => s.recv(buf).await,
        }
    }

    pub async fn send(&self, batch: SendBatch, more: bool) -> (io::Result<usize>, SendBatch) {
        match self {
            Socket::Uring(s) => s.send(batch, more).await,
            Socket::Epoll(s) => s.send(batch, more).await,
        }
    }

    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Socket::Uring(s) => s.writable().await,
            Socket::Epoll(s) => s.writable().await,
        }
    }

    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Socket::Uring(s) => s.readable().await,
            Socket::Epoll(s) => s.readable().await,
        }
    }

    pub fn try_recv(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Socket::Uring(s) => s.try_recv(buf),
            Socket::Epoll(s) => s.try_recv(buf),
        }
    }

    pub async fn cancel_pending(&self) {
        match self {
            Socket::Uring(s) => s.cancel_pending().await,
            Socket::Epoll(s) => s.cancel_pending().await,
        }
    }

    pub fn sendfile(
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

    pub fn shutdown(&self, how: std::net::Shutdown) {
        match self {
            Socket::Uring(s) => s.shutdown(how),
            Socket::Epoll(s) => s.shutdown(how),
        }
    }

    pub fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Socket::Uring(s) => s.set_nodelay(),
            Socket::Epoll(s) => s.set_nodelay(),
        }
    }
}
