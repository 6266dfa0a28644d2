//! The io_uring operations fserve submits itself, each a single-completion
//! `UnsubmittedOneshot` whose stable data owns the fd and every buffer the kernel touches.

use std::io;
use std::marker::PhantomData;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use io_uring::{cqueue, opcode, types};
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

/// At most this many iovecs go into one SENDMSG (the kernel's UIO_MAXIOV is 1024); the rest
/// go in the next send.
const MAX_IOVECS: usize = 1024;

fn result(cqe: &cqueue::Entry) -> io::Result<u32> {
    let res = cqe.result();
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as u32)
    }
}

/// A transform that hands back the stable data with the completion's result.
struct Give<D>(PhantomData<D>);

impl<D> OneshotOutputTransform for Give<D> {
    type Output = (io::Result<u32>, D);
    type StoredData = D;

    fn transform_oneshot_output(self, data: D, cqe: cqueue::Entry) -> Self::Output {
        (result(&cqe), data)
    }
}

async fn run<D: Unpin + 'static>(data: D, sqe: io_uring::squeue::Entry) -> (io::Result<u32>, D) {
    UnsubmittedOneshot::new(data, Give(PhantomData), sqe)
        .submit()
        .await
}

pub(super) async fn accept(listener: &Rc<OwnedFd>) -> io::Result<OwnedFd> {
    let fd = listener.clone();
    let sqe = opcode::Accept::new(
        types::Fd(fd.as_raw_fd()),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
    .build();
    let (res, _fd) = run(fd, sqe).await;
    let raw = res? as i32;
    // SAFETY: a successful ACCEPT completion's result is a new file descriptor that nothing
    // else in this process owns; we take sole ownership of it here.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

struct RecvData {
    _fd: Rc<OwnedFd>,
    buf: Vec<u8>,
}

pub(super) async fn recv(fd: &Rc<OwnedFd>, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    if buf.len() == buf.capacity() {
        buf.reserve(1);
    }
    let spare = buf.spare_capacity_mut();
    let (ptr, len) = (spare.as_mut_ptr().cast::<u8>(), spare.len());
    // SAFETY (buffer lifetime): `ptr..ptr+len` is the spare capacity of `buf`'s heap
    // allocation. `buf` moves into the stable data, which tokio-uring keeps alive until the
    // completion arrives even if this future is dropped; moving a Vec does not move its heap
    // allocation, and nothing touches the Vec until the completion hands it back.
    let sqe = opcode::Recv::new(
        types::Fd(fd.as_raw_fd()),
        ptr,
        len.min(u32::MAX as usize) as u32,
    )
    .build();
    let (res, mut data) = run(
        RecvData {
            _fd: fd.clone(),
            buf,
        },
        sqe,
    )
    .await;
    match res {
        Ok(n) => {
            let n = n as usize;
            let new_len = data.buf.len() + n;
            debug_assert!(new_len <= data.buf.capacity());
            // SAFETY: the kernel wrote `n` bytes into the spare capacity that starts at the
            // old length (a RECV never reports more than the `len` it was given).
            unsafe { data.buf.set_len(new_len) };
            (Ok(n), data.buf)
        }
        Err(e) => (Err(e), data.buf),
    }
}

/// One piece of a response: bytes in the batch's own buffer, or shared bytes (a cached file
/// with its pre-rendered head) that the batch keeps alive while the kernel reads them.
pub enum Chunk {
    Own(Range<usize>),
    Shared(Rc<[u8]>, Range<usize>),
}

/// The bytes of one or more responses, gathered into one SENDMSG. Reused across requests so
/// that a warm connection allocates nothing: [`SendBatch::clear`] keeps every capacity.
///
/// Its parts live in one heap allocation, so the batch itself is a pointer: it moves into
/// and out of every send, and the futures that carry it stay small.
pub struct SendBatch {
    b: Box<Parts>,
}

struct Parts {
    own: Vec<u8>,
    chunks: Vec<Chunk>,
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new()
    }
}

impl SendBatch {
    pub fn new() -> SendBatch {
        SendBatch {
            b: Box::new(Parts {
                own: Vec::new(),
                chunks: Vec::new(),
                iov: Vec::new(),
                // SAFETY: msghdr is a plain C struct for which all-zero bytes is a valid
                // value (null pointers, zero lengths).
                msg: unsafe { std::mem::zeroed() },
            }),
        }
    }

    /// The batch's own buffer: write bytes here, then [`SendBatch::push_own`] their range.
    pub fn own_buf(&mut self) -> &mut Vec<u8> {
        &mut self.b.own
    }

    /// Queues the own buffer from `from` on (bytes written since `from`).
    pub fn push_own(&mut self, from: usize) {
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
    pub fn push_shared(&mut self, bytes: &Rc<[u8]>, range: Range<usize>) {
        if !range.is_empty() {
            self.b.chunks.push(Chunk::Shared(bytes.clone(), range));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.b.chunks.is_empty()
    }

    /// Pieces queued (each becomes one iovec).
    pub fn chunk_count(&self) -> usize {
        self.b.chunks.len()
    }

    /// Bytes still to send.
    pub fn len(&self) -> usize {
        self.b
            .chunks
            .iter()
            .map(|c| match c {
                Chunk::Own(r) | Chunk::Shared(_, r) => r.len(),
            })
            .sum()
    }

    /// Fills `out` with the queued pieces, in order, as many as fit; returns how many.
    pub fn io_slices<'a>(&'a self, out: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, chunk) in out.iter_mut().zip(&self.b.chunks) {
            *slot = std::io::IoSlice::new(match chunk {
                Chunk::Own(r) => &self.b.own[r.clone()],
                Chunk::Shared(b, r) => &b[r.clone()],
            });
            n += 1;
        }
        n
    }

    /// Forgets everything queued, keeping the capacity.
    pub fn clear(&mut self) {
        self.b.own.clear();
        self.b.chunks.clear();
        self.b.iov.clear();
    }

    /// Drops the first `n` bytes, after a send that took them.
    pub fn consume(&mut self, mut n: usize) {
        let mut done = 0;
        for chunk in &mut self.b.chunks {
            let r = match chunk {
                Chunk::Own(r) | Chunk::Shared(_, r) => r,
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

    /// Points the iovecs and the msghdr at the queued bytes.
    fn prepare(&mut self) -> *const libc::msghdr {
        self.b.iov.clear();
        for chunk in self.b.chunks.iter().take(MAX_IOVECS) {
            let bytes: &[u8] = match chunk {
                Chunk::Own(r) => &self.b.own[r.clone()],
                Chunk::Shared(b, r) => &b[r.clone()],
            };
            self.b.iov.push(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
        }
        self.b.msg.msg_iov = self.b.iov.as_mut_ptr();
        self.b.msg.msg_iovlen = self.b.iov.len() as _;
        &self.b.msg
    }
}

struct SendData {
    _fd: Rc<OwnedFd>,
    batch: SendBatch,
}

pub(super) async fn send(
    fd: &Rc<OwnedFd>,
    mut batch: SendBatch,
    more: bool,
) -> (io::Result<usize>, SendBatch) {
    if batch.is_empty() {
        return (Ok(0), batch);
    }
    let msg = batch.prepare();
    // SAFETY (buffer lifetime): `msg` points into the batch's boxed parts, whose iovecs point
    // into `batch.iov` (a Vec), whose entries point into `batch.own` (a Vec) and into the `Rc<[u8]>`
    // chunks that `batch.chunks` holds. The batch moves into the stable data, which
    // tokio-uring keeps alive until the completion arrives; moving a Box, a Vec or an Rc
    // moves none of the heap memory they point to, and nothing mutates the batch until the
    // completion hands it back.
    let sqe = opcode::SendMsg::new(types::Fd(fd.as_raw_fd()), msg)
        .flags((libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 }) as u32)
        .build();
    let (res, data) = run(
        SendData {
            _fd: fd.clone(),
            batch,
        },
        sqe,
    )
    .await;
    (res.map(|n| n as usize), data.batch)
}

/// Waits for `events` (POLLIN, POLLOUT…) on the socket; errors and hang-ups also end it.
pub(super) async fn poll(fd: &Rc<OwnedFd>, events: libc::c_short) -> io::Result<()> {
    let sqe = opcode::PollAdd::new(
        types::Fd(fd.as_raw_fd()),
        (events | libc::POLLERR | libc::POLLHUP) as u32,
    )
    .build();
    let (res, _fd) = run(fd.clone(), sqe).await;
    res.map(drop)
}

/// Cancels every operation in flight on the socket (IORING_ASYNC_CANCEL_FD, Linux 5.19);
/// each completes with ECANCELED, or with its result if it raced the cancellation.
pub(super) async fn cancel_all(fd: &Rc<OwnedFd>) -> io::Result<u32> {
    let sqe = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd.as_raw_fd())).all())
        .build();
    let (res, _fd) = run(fd.clone(), sqe).await;
    res
}

pub(super) async fn poll_out(fd: &Rc<OwnedFd>) -> io::Result<()> {
    poll(fd, libc::POLLOUT).await
}
