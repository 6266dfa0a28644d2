//! The io_uring operations fserve submits itself, each a single-completion
//! `UnsubmittedOneshot` whose stable data owns the fd and every buffer the kernel touches.

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use io_uring::{cqueue, opcode, types};
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

use crate::engine::SendBatch;

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

thread_local! {
    /// Ops submitted on this thread's ring whose stable data is still alive.
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// Ops submitted on this thread's ring that have not completed yet (including those whose
/// futures were dropped): the runtime may be dropped only when this is zero.
pub(super) fn in_flight() -> usize {
    IN_FLIGHT.with(Cell::get)
}

/// Part of every op's stable data: counts the op in [`IN_FLIGHT`] from submission until
/// the stable data is dropped, which tokio-uring does when the completion arrives (handed
/// back to the future, or dropped with it if the future is gone).
struct Counted;

impl Counted {
    fn new() -> Counted {
        IN_FLIGHT.with(|n| n.set(n.get() + 1));
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        IN_FLIGHT.with(|n| n.set(n.get() - 1));
    }
}

/// A transform that hands back the stable data with the completion's result.
struct Give<D>(PhantomData<D>);

impl<D> OneshotOutputTransform for Give<D> {
    /// The result, the completion's flags, and the stable data.
    type Output = (io::Result<u32>, u32, D);
    type StoredData = (D, Counted);

    fn transform_oneshot_output(self, data: (D, Counted), cqe: cqueue::Entry) -> Self::Output {
        (result(&cqe), cqe.flags(), data.0)
    }
}

/// IORING_CQE_F_SOCK_NONEMPTY (not named by io-uring 0.6): on an ACCEPT's completion, more
/// connections wait in the backlog (Linux 6.10 and later; never set before).
const CQE_F_SOCK_NONEMPTY: u32 = 1 << 2;

/// Submits `sqe` with `data` as its stable data and waits for its one completion, handing
/// `data` back with the result.
///
/// # Safety
///
/// Every pointer and file descriptor in `sqe` must stay valid until the completion arrives:
/// each must point into (or be owned by) `data`'s heap allocations, which move with `data`
/// without moving. tokio-uring keeps `data` alive until the completion even if the returned
/// future is dropped, so that is enough, provided the runtime is never dropped with the op
/// in flight (its `Driver::drop` frees stable data before cancelling: the worker drains to
/// zero first). The op must post exactly one completion (no multishot: tokio-uring 0.5 hits
/// `unreachable!` on a second one).
async unsafe fn run<D: Unpin + 'static>(
    data: D,
    sqe: io_uring::squeue::Entry,
) -> (io::Result<u32>, D) {
    // SAFETY: the caller's promise, passed on.
    let (res, _, data) = unsafe { run_with_flags(data, sqe) }.await;
    (res, data)
}

/// [`run`], also handing back the completion's flags.
///
/// # Safety
///
/// As for [`run`].
async unsafe fn run_with_flags<D: Unpin + 'static>(
    data: D,
    sqe: io_uring::squeue::Entry,
) -> (io::Result<u32>, u32, D) {
    UnsubmittedOneshot::new((data, Counted::new()), Give(PhantomData), sqe)
        .submit()
        .await
}

/// Accepts one connection through the ring; also whether the kernel said more are waiting
/// in the backlog.
pub(super) async fn accept(listener: &Rc<OwnedFd>) -> io::Result<(OwnedFd, bool)> {
    let fd = listener.clone();
    let sqe = opcode::Accept::new(
        types::Fd(fd.as_raw_fd()),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
    .build();
    // SAFETY: the entry names the listener's fd, which `fd` (the stable data) keeps open;
    // the null address pointers ask for no peer address, so the kernel writes no memory of
    // ours. ACCEPT (not multishot) posts one completion.
    let (res, flags, _fd) = unsafe { run_with_flags(fd, sqe) }.await;
    let raw = res? as i32;
    // SAFETY: a successful ACCEPT completion's result is a new file descriptor that nothing
    // else in this process owns; we take sole ownership of it here.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    Ok((fd, flags & CQE_F_SOCK_NONEMPTY != 0))
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
    let sqe = opcode::Recv::new(
        types::Fd(fd.as_raw_fd()),
        ptr,
        len.min(u32::MAX as usize) as u32,
    )
    .build();
    let data = RecvData {
        _fd: fd.clone(),
        buf,
    };
    // SAFETY: `ptr..ptr+len` is the spare capacity of `buf`'s heap allocation and the fd is
    // the socket's; both belong to the stable data (`buf`, and `_fd` keeping the fd open).
    // Moving a Vec does not move its heap allocation, and nothing touches the Vec until the
    // completion hands it back. RECV posts one completion.
    let (res, mut data) = unsafe { run(data, sqe) }.await;
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

/// The stable data of a SENDMSG: the batch whose bytes go out, and the msghdr that points
/// at its iovecs (boxed, so it does not move when the stable data does).
struct SendData {
    _fd: Rc<OwnedFd>,
    batch: SendBatch,
    msg: Box<MsgHdr>,
}

/// A `libc::msghdr`, reused across sends through [`send`]'s `msg` argument.
pub(super) struct MsgHdr(libc::msghdr);

impl MsgHdr {
    pub(super) fn new() -> Box<MsgHdr> {
        // SAFETY: msghdr is a plain C struct for which all-zero bytes is a valid value (null
        // pointers, zero lengths).
        Box::new(MsgHdr(unsafe { std::mem::zeroed() }))
    }
}

/// Sends what `batch` holds with one SENDMSG; hands back the batch and the msghdr box.
pub(super) async fn send(
    fd: &Rc<OwnedFd>,
    mut batch: SendBatch,
    mut msg: Box<MsgHdr>,
    more: bool,
) -> (io::Result<usize>, SendBatch, Box<MsgHdr>) {
    if batch.is_empty() {
        return (Ok(0), batch, msg);
    }
    let iov = batch.iovecs(MAX_IOVECS);
    msg.0.msg_iov = iov.as_mut_ptr();
    msg.0.msg_iovlen = iov.len() as _;
    let sqe = opcode::SendMsg::new(types::Fd(fd.as_raw_fd()), &raw const msg.0)
        .flags((libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 }) as u32)
        .build();
    let data = SendData {
        _fd: fd.clone(),
        batch,
        msg,
    };
    // SAFETY: the entry points at the boxed msghdr, whose iovecs live in the batch's boxed
    // parts and point into the batch's own buffer and into the `Rc<[u8]>` pieces it holds
    // (SendBatch::iovecs). All of it belongs to the stable data: moving a Box, a Vec or an
    // Rc moves none of the heap memory they point to, and nothing mutates the batch until
    // the completion hands it back. The fd is kept open by `_fd`. SENDMSG posts one
    // completion.
    let (res, data) = unsafe { run(data, sqe) }.await;
    (res.map(|n| n as usize), data.batch, data.msg)
}

/// Waits for `events` (POLLIN, POLLOUT…) on the socket; errors and hang-ups also end it.
pub(super) async fn poll(fd: &Rc<OwnedFd>, events: libc::c_short) -> io::Result<()> {
    let sqe = opcode::PollAdd::new(
        types::Fd(fd.as_raw_fd()),
        (events | libc::POLLERR | libc::POLLHUP) as u32,
    )
    .build();
    // SAFETY: the entry names only the socket's fd, kept open by the stable data; POLL_ADD
    // without IORING_POLL_ADD_MULTI posts one completion and writes no memory of ours.
    let (res, _fd) = unsafe { run(fd.clone(), sqe) }.await;
    res.map(drop)
}

/// Cancels every operation in flight on the socket (IORING_ASYNC_CANCEL_FD, Linux 5.19);
/// each completes with ECANCELED, or with its result if it raced the cancellation.
pub(super) async fn cancel_all(fd: &Rc<OwnedFd>) -> io::Result<u32> {
    let sqe = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd.as_raw_fd())).all())
        .build();
    // SAFETY: the entry names only the socket's fd by number (kept open by the stable
    // data) and points at no memory; ASYNC_CANCEL posts one completion.
    let (res, _fd) = unsafe { run(fd.clone(), sqe) }.await;
    res
}

/// The stable data of a READ from a file: a descriptor of its own for the file, and the
/// buffer the kernel writes into.
struct ReadData {
    _fd: OwnedFd,
    buf: Vec<u8>,
}

/// Reads at most `len` bytes of `file` at `offset` into the spare capacity of `buf` (after
/// its length) with one READ, and grows its length by the count read; `Ok(0)` is the end of
/// the file. A buffered READ whose pages are not cached is served by the kernel's async
/// buffered read or its io-wq workers, never by blocking the submitting thread.
pub(super) async fn read_at(
    file: OwnedFd,
    mut buf: Vec<u8>,
    offset: u64,
    len: usize,
) -> (io::Result<usize>, Vec<u8>) {
    buf.reserve(len);
    let spare = buf.spare_capacity_mut();
    let len = len.min(spare.len()).min(u32::MAX as usize);
    let sqe = opcode::Read::new(
        types::Fd(file.as_raw_fd()),
        spare.as_mut_ptr().cast::<u8>(),
        len as u32,
    )
    .offset(offset)
    .build();
    let data = ReadData { _fd: file, buf };
    // SAFETY: the entry points at the first `len` bytes of the spare capacity of `buf`'s
    // heap allocation (`len` is at most its spare length), and names the file by a
    // descriptor that `_fd` owns; both belong to the stable data. Moving a Vec does not move
    // its heap allocation, and nothing touches the Vec until the completion hands it back.
    // READ posts one completion.
    let (res, mut data) = unsafe { run(data, sqe) }.await;
    match res {
        Ok(n) => {
            let n = (n as usize).min(len);
            let new_len = data.buf.len() + n;
            // SAFETY: the kernel wrote `n` bytes into the spare capacity that starts at the
            // old length (a READ never reports more than the `len` it was given, and `n` is
            // clamped to it besides).
            unsafe { data.buf.set_len(new_len) };
            (Ok(n), data.buf)
        }
        Err(e) => (Err(e), data.buf),
    }
}

pub(super) async fn poll_out(fd: &Rc<OwnedFd>) -> io::Result<()> {
    poll(fd, libc::POLLOUT).await
}
