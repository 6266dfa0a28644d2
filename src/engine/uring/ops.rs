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

/// Provided buffers per worker for multishot receives (a power of two), and the size of
/// each: a request head up to that size arrives in one completion, a longer one in several.
/// Together they are the worker's receive pool: [`RECV_POOL_BYTES`].
#[cfg(fserve_vendored_uring)]
const RECV_BUFS: u16 = if cfg!(test) { 8 } else { 512 };
#[cfg(fserve_vendored_uring)]
const RECV_BUF_LEN: usize = 1024;
/// Bytes of provided receive buffers each worker holds (README: limits).
#[cfg(fserve_vendored_uring)]
pub(super) const RECV_POOL_BYTES: usize = RECV_BUFS as usize * RECV_BUF_LEN;
/// The buffer group the worker's receive buffers are registered as.
#[cfg(fserve_vendored_uring)]
const RECV_GROUP: u16 = 0;

/// The worker's provided receive buffers (Linux 5.19): one mapping holding the ring of
/// entries the kernel takes buffers from (page-aligned, as the kernel requires) and the
/// buffers those entries name. A multishot RECV takes a buffer for each completion; its
/// bytes are copied out at once and the buffer goes back on the ring.
///
/// Every multishot receive's stable data holds an `Rc` of it, so the mapping outlives
/// every operation that may write into it; the worker's own `Rc` goes only after its
/// runtime (and ring) is gone ([`recv_buffers_end`]).
#[cfg(fserve_vendored_uring)]
pub(super) struct RecvBuffers {
    /// The mapping: `RECV_BUFS` ring entries, then the pool of buffers at `pool`.
    map: std::ptr::NonNull<u8>,
    map_len: usize,
    pool: usize,
    /// The ring's tail as we last published it.
    tail: Cell<u16>,
}

#[cfg(fserve_vendored_uring)]
impl RecvBuffers {
    /// Maps the ring and its buffers, puts every buffer on the ring, and registers it with
    /// this thread's ring.
    fn new() -> io::Result<Rc<RecvBuffers>> {
        let ring_bytes = std::mem::size_of::<types::BufRingEntry>() * RECV_BUFS as usize;
        let page = rustix::param::page_size();
        let pool = ring_bytes.div_ceil(page) * page;
        let map_len = pool + RECV_POOL_BYTES;
        // SAFETY: a new anonymous private mapping, at an address the kernel picks: nothing
        // of ours is there before; it is unmapped only by `Drop` below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = std::ptr::NonNull::new(map.cast::<u8>()).expect("mmap never maps at null");
        let bufs = Rc::new(RecvBuffers {
            map,
            map_len,
            pool,
            tail: Cell::new(0),
        });
        for bid in 0..RECV_BUFS {
            bufs.give_back(bid);
        }
        // SAFETY: the ring is the mapping's first `RECV_BUFS` entries, page-aligned (mmap
        // returns page-aligned memory), and every entry names a buffer inside the mapping.
        // The mapping stays until `Drop`, which runs only when no receive holds it (each
        // holds an `Rc`) and the worker has let go of it after its ring was closed.
        unsafe {
            tokio_uring::register_buf_ring(map.as_ptr() as u64, RECV_BUFS, RECV_GROUP)?;
        }
        Ok(bufs)
    }

    fn ring(&self) -> *mut types::BufRingEntry {
        self.map.as_ptr().cast()
    }

    /// Puts buffer `bid` back on the ring for the kernel to fill.
    fn give_back(&self, bid: u16) {
        debug_assert!(bid < RECV_BUFS);
        let tail = self.tail.get();
        // SAFETY: the entry index is masked into the ring's `RECV_BUFS` entries; the kernel
        // reads an entry only once the tail published below covers it, and every entry
        // between its head and our tail names a buffer it owns until it hands it back in a
        // completion, so this entry (past that range) is ours to write. The buffer named is
        // `bid`'s, inside the mapping. The tail (a u16 in the ring's first entry) is
        // published with release ordering after the entry is written, as the kernel reads
        // it with acquire.
        unsafe {
            let entry = &mut *self.ring().add((tail & (RECV_BUFS - 1)) as usize);
            entry.set_addr(self.buffer(bid) as u64);
            entry.set_len(RECV_BUF_LEN as u32);
            entry.set_bid(bid);
            let at = types::BufRingEntry::tail(self.ring()).cast_mut();
            std::sync::atomic::AtomicU16::from_ptr(at)
                .store(tail.wrapping_add(1), std::sync::atomic::Ordering::Release);
        }
        self.tail.set(tail.wrapping_add(1));
    }

    fn buffer(&self, bid: u16) -> *mut u8 {
        // SAFETY: `pool + bid * RECV_BUF_LEN` is inside the mapping for every bid below
        // RECV_BUFS (the pool is RECV_BUFS buffers long).
        unsafe {
            self.map
                .as_ptr()
                .add(self.pool + bid as usize * RECV_BUF_LEN)
        }
    }

    /// Appends the `n` bytes a completion says the kernel put in buffer `bid` to `buf`
    /// (growing it by at most what does not fit), gives the buffer back, and returns the
    /// count appended.
    fn take(&self, bid: u16, n: usize, buf: &mut Vec<u8>) -> usize {
        if bid >= RECV_BUFS {
            return 0;
        }
        let n = n.min(RECV_BUF_LEN);
        // SAFETY: the kernel wrote `n` bytes into buffer `bid` and handed it to us with this
        // completion; it takes it again only after `give_back` below, so nothing writes
        // these bytes while the slice lives.
        let bytes = unsafe { std::slice::from_raw_parts(self.buffer(bid), n) };
        buf.reserve_exact(n.saturating_sub(buf.capacity() - buf.len()));
        buf.extend_from_slice(bytes);
        self.give_back(bid);
        n
    }

    /// Gives back the buffer a completion carries, if any, unread.
    fn drop_buffer(&self, flags: u32) {
        if let Some(bid) = cqueue::buffer_select(flags) {
            if bid < RECV_BUFS {
                self.give_back(bid);
            }
        }
    }
}

#[cfg(fserve_vendored_uring)]
impl Drop for RecvBuffers {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once: no receive holds an `Rc` of it
        // any more, so no operation in flight may select one of its buffers, and the worker
        // drops its own `Rc` only after its ring is closed (`recv_buffers_end`).
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}

#[cfg(fserve_vendored_uring)]
thread_local! {
    /// This thread's receive buffers, registered with its ring (`None`: receives are
    /// single-shot into the connection's own buffer).
    static RECV_BUFFERS: std::cell::RefCell<Option<Rc<RecvBuffers>>> =
        const { std::cell::RefCell::new(None) };
}

/// Sets up this thread's receive buffers on its (new) ring; called first thing inside a
/// worker's runtime. If the kernel refuses (no provided-buffer rings before 5.19), receives
/// stay single-shot, which is what they were before.
#[cfg(fserve_vendored_uring)]
pub(super) fn recv_buffers_start() {
    let bufs = match RecvBuffers::new() {
        Ok(bufs) => Some(bufs),
        Err(e) => {
            crate::diag::warn(&format!(
                "receives use one operation each: the kernel refused a ring of provided receive buffers ({e})"
            ));
            None
        }
    };
    RECV_BUFFERS.with(|b| *b.borrow_mut() = bufs);
}

/// Lets go of this thread's receive buffers; called once its runtime (and ring) is gone.
/// Receives still in flight (a leaked runtime) keep them alive.
#[cfg(fserve_vendored_uring)]
pub(super) fn recv_buffers_end() {
    RECV_BUFFERS.with(|b| b.borrow_mut().take());
}

/// The stable data of a multishot receive.
#[cfg(fserve_vendored_uring)]
pub(super) struct RxData {
    _fd: Rc<OwnedFd>,
    bufs: Rc<RecvBuffers>,
    _counted: Counted,
}

#[cfg(fserve_vendored_uring)]
impl tokio_uring::Orphan for RxData {
    fn orphaned(&mut self, cqe: cqueue::Entry) {
        self.bufs.drop_buffer(cqe.flags());
    }
}

/// A socket's multishot RECV: one operation that posts a completion for every arrival of
/// bytes, each in a provided buffer, until it ends (the peer's end, an error, no buffer
/// free, or a cancel). Dropping it cancels it.
#[cfg(fserve_vendored_uring)]
pub(super) type Multishot = tokio_uring::InFlightMultishot<RxData>;

/// Arms a multishot RECV on the socket, if this thread has receive buffers.
#[cfg(fserve_vendored_uring)]
pub(super) fn arm_recv(fd: &Rc<OwnedFd>) -> Option<Multishot> {
    let bufs = RECV_BUFFERS.with(|b| b.borrow().clone())?;
    let sqe = opcode::RecvMulti::new(types::Fd(fd.as_raw_fd()), RECV_GROUP).build();
    let data = RxData {
        _fd: fd.clone(),
        bufs,
        _counted: Counted::new(),
    };
    // SAFETY: the entry names the socket's fd, which `_fd` keeps open, and the buffer group
    // of this thread's ring, whose mapping `bufs` keeps until the op's last completion; the
    // kernel writes only into buffers it takes from that group.
    Some(unsafe { run_multishot(data, sqe) })
}

/// Submits `sqe`, an op that posts completions until one without IORING_CQE_F_MORE, with
/// `data` as its stable data.
///
/// # Safety
///
/// Every pointer and file descriptor in `sqe`, and every buffer the kernel may select for
/// it, must stay valid until its last completion: each must belong to (or be kept alive by)
/// `data`. The vendored runtime keeps `data` until that last completion, also when the
/// returned op is dropped (which cancels the op), and its `Driver::drop` cancels the op and
/// waits for it before it lets go of `data`.
#[cfg(fserve_vendored_uring)]
unsafe fn run_multishot<D: tokio_uring::Orphan>(
    data: D,
    sqe: io_uring::squeue::Entry,
) -> tokio_uring::InFlightMultishot<D> {
    tokio_uring::UnsubmittedMultishot::new(data, sqe).submit()
}

/// What one completion of a multishot RECV brought.
#[cfg(fserve_vendored_uring)]
pub(super) enum Got {
    /// This many bytes, appended to the buffer.
    Data(usize),
    /// The peer's end of stream (the op has ended).
    Eof,
    /// No provided buffer was free (the op has ended).
    NoBuffers,
    /// The op was cancelled (it has ended).
    Cancelled,
    Failed(io::Error),
}

/// Appends what `cqe`, a completion of `op`, brought to `buf`; its buffer goes back.
#[cfg(fserve_vendored_uring)]
pub(super) fn received(op: &Multishot, cqe: &cqueue::Entry, buf: &mut Vec<u8>) -> Got {
    let bufs = &op.data().bufs;
    let res = cqe.result();
    if res > 0 {
        return match cqueue::buffer_select(cqe.flags()) {
            Some(bid) => match bufs.take(bid, res as usize, buf) {
                0 => Got::Failed(io::Error::other("a receive named a buffer not ours")),
                n => Got::Data(n),
            },
            None => Got::Failed(io::Error::other("a receive completed without a buffer")),
        };
    }
    bufs.drop_buffer(cqe.flags());
    match -res {
        0 => Got::Eof,
        libc::ENOBUFS => {
            #[cfg(test)]
            NO_BUFFERS.with(|n| n.set(n.get() + 1));
            Got::NoBuffers
        }
        libc::ECANCELED => Got::Cancelled,
        e => Got::Failed(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(all(test, fserve_vendored_uring))]
thread_local! {
    /// Multishot receives on this thread that ended because no provided buffer was free.
    pub(super) static NO_BUFFERS: Cell<u32> = const { Cell::new(0) };
}
