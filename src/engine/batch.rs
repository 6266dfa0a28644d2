//! The send batch: the bytes of one or more responses, gathered for one gathered send. The
//! same type feeds both engines (io_uring's SENDMSG, epoll's `sendmsg(2)`); it holds no
//! engine state and no unsafe code: the iovecs it fills are plain values, and whoever hands
//! them to the kernel states why they stay valid.

use std::io::{self, IoSlice};
use std::ops::Range;
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::sync::Arc;

use rustix::net::{SendAncillaryBuffer, SendFlags};

/// At most this many pieces go in one [`SendBatch::send_now`] (the batch is flushed at 256
/// pieces; a longer one goes in several calls).
const SEND_NOW_IOVECS: usize = 64;
/// The own buffer's first capacity: a whole response head of a file (status line, Date,
/// type, length, validators, the site's fields) fits, so that a connection that answers
/// once allocates it once instead of growing it four times from empty.
const OWN_INITIAL_BYTES: usize = 512;

/// One piece of a response: bytes in the batch's own buffer, or shared bytes that the batch
/// keeps alive while the kernel reads them: a worker's (a cached file with its pre-rendered
/// head), or the process's (a compressed variant, made once for every worker).
pub(crate) enum Chunk {
    Own(Range<usize>),
    Shared(Rc<[u8]>, Range<usize>),
    Process(Arc<[u8]>, Range<usize>),
}

/// The bytes of one or more responses, gathered into one send. Reused across requests so
/// that a warm connection allocates nothing: [`SendBatch::clear`] keeps every capacity.
///
/// Its parts live in one heap allocation, so the batch itself is a pointer: it moves into
/// and out of every send, and the futures that carry it stay small.
pub(crate) struct SendBatch {
    b: Box<Parts>,
}

struct Parts {
    own: Vec<u8>,
    chunks: Vec<Chunk>,
    /// Filled by [`SendBatch::iovecs`]; kept for its capacity.
    iov: Vec<libc::iovec>,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new()
    }
}

impl SendBatch {
    pub(crate) fn new() -> SendBatch {
        SendBatch {
            b: Box::new(Parts {
                own: Vec::with_capacity(OWN_INITIAL_BYTES),
                chunks: Vec::new(),
                iov: Vec::new(),
            }),
        }
    }

    /// The batch's own buffer: write bytes here, then [`SendBatch::push_own`] their range.
    pub(crate) fn own_buf(&mut self) -> &mut Vec<u8> {
        &mut self.b.own
    }

    /// Queues the own buffer from `from` on (bytes written since `from`).
    pub(crate) fn push_own(&mut self, from: usize) {
        let to = self.b.own.len();
        if from < to {
            if let Some(Chunk::Own(last)) = self.b.chunks.last_mut() {
                if last.end == from {
                    last.end = to;
                    return;
                }
            }
            self.b.chunks.push(Chunk::Own(from..to));
        }
    }

    /// Queues `bytes[range]`, keeping `bytes` alive until sent.
    pub(crate) fn push_shared(&mut self, bytes: &Rc<[u8]>, range: Range<usize>) {
        if !range.is_empty() {
            self.b.chunks.push(Chunk::Shared(bytes.clone(), range));
        }
    }

    /// Queues `bytes[range]` of bytes shared between threads, keeping them alive until sent.
    pub(crate) fn push_process(&mut self, bytes: &Arc<[u8]>, range: Range<usize>) {
        if !range.is_empty() {
            self.b.chunks.push(Chunk::Process(bytes.clone(), range));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.b.chunks.is_empty()
    }

    /// Pieces queued (each becomes one iovec).
    pub(crate) fn chunk_count(&self) -> usize {
        self.b.chunks.len()
    }

    /// Fills `out` with the queued pieces, in order, as many as fit; returns how many.
    pub(crate) fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, chunk) in out.iter_mut().zip(&self.b.chunks) {
            *slot = IoSlice::new(self.bytes(chunk));
            n += 1;
        }
        n
    }

    /// Sends what fits of the queued pieces with one non-blocking `sendmsg(2)` on `fd`, now,
    /// without the ring; `ErrorKind::WouldBlock` when the socket has no room. `more`:
    /// MSG_MORE (a body by sendfile or the FIN of a shutdown follows). At most
    /// [`SEND_NOW_IOVECS`] pieces go per call; the caller sends the rest after
    /// [`SendBatch::consume`].
    pub(crate) fn send_now(&self, fd: BorrowedFd<'_>, more: bool) -> io::Result<usize> {
        let mut flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
        if more {
            flags |= SendFlags::MORE;
        }
        // Most sends are one answer (a head and a body): a small array, so the common case
        // does not clear a large one.
        if self.b.chunks.len() <= 4 {
            self.send_slices::<4>(fd, flags)
        } else {
            self.send_slices::<SEND_NOW_IOVECS>(fd, flags)
        }
    }

    fn send_slices<const N: usize>(
        &self,
        fd: BorrowedFd<'_>,
        flags: SendFlags,
    ) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); N];
        let n = self.io_slices(&mut slices);
        let mut control = SendAncillaryBuffer::default();
        Ok(rustix::net::sendmsg(fd, &slices[..n], &mut control, flags)?)
    }

    /// Points at most `max` iovecs at the queued pieces, in order, and returns them. They
    /// point into this batch's own buffer and into the shared bytes it holds, so they stay
    /// valid while the batch is neither mutated nor dropped (moving it moves no bytes).
    pub(crate) fn iovecs(&mut self, max: usize) -> &mut [libc::iovec] {
        let mut iov = std::mem::take(&mut self.b.iov);
        iov.clear();
        for chunk in self.b.chunks.iter().take(max) {
            let bytes = self.bytes(chunk);
            iov.push(libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            });
        }
        self.b.iov = iov;
        &mut self.b.iov
    }

    fn bytes<'a>(&'a self, chunk: &'a Chunk) -> &'a [u8] {
        match chunk {
            Chunk::Own(r) => &self.b.own[r.clone()],
            Chunk::Shared(b, r) => &b[r.clone()],
            Chunk::Process(b, r) => &b[r.clone()],
        }
    }

    /// Forgets everything queued, keeping the capacity.
    pub(crate) fn clear(&mut self) {
        self.b.own.clear();
        self.b.chunks.clear();
        self.b.iov.clear();
    }

    /// Drops the first `n` bytes, after a send that took them.
    pub(crate) fn consume(&mut self, mut n: usize) {
        let mut done = 0;
        for chunk in &mut self.b.chunks {
            let r = match chunk {
                Chunk::Own(r) | Chunk::Shared(_, r) | Chunk::Process(_, r) => r,
            };
            if n >= r.len() {
                n -= r.len();
                done += 1;
            } else {
                r.start += n;
                break;
            }
        }
        self.b.chunks.drain(..done);
        if self.b.chunks.is_empty() {
            self.b.own.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(b: &SendBatch) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 16];
        let n = b.io_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn pieces_go_out_in_order_and_consume_drops_a_prefix() {
        let shared: Rc<[u8]> = Rc::from(&b"0123456789"[..]);
        let process: Arc<[u8]> = Arc::from(&b"abcdef"[..]);
        let mut b = SendBatch::new();
        b.own_buf().extend_from_slice(b"head ");
        b.push_own(0);
        b.push_shared(&shared, 2..5);
        let from = b.own_buf().len();
        b.own_buf().extend_from_slice(b" tail");
        b.push_own(from);
        b.push_process(&process, 1..3);
        assert_eq!(b.chunk_count(), 4);
        assert_eq!(queued(&b), b"head 234 tailbc");
        assert_eq!(b.iovecs(2).len(), 2);
        b.consume(6);
        assert_eq!(queued(&b), b"34 tailbc");
        b.consume(8);
        assert_eq!(queued(&b), b"c");
        b.consume(1);
        assert!(b.is_empty());
        assert!(b.own_buf().is_empty());
    }
}
