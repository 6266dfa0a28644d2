//! A connection's socket and the waits on it, each bounded: sending the queued batch,
//! sending a range of a file by sendfile, receiving until a deadline (or shutdown), and
//! lingering before a close. A wait that gives up shuts the socket down or cancels the
//! operation, because dropping a ring operation does not cancel it.
//!
//! It never parses or decides anything: the connection loop (conn.rs) tells it what to
//! queue and when to send.

use std::fs::File;
use std::io;
use std::net::Shutdown;
use std::ops::Range;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::engine::{self, SendBatch, Socket};
use crate::fs::Extent;

/// Queued responses are sent once this many pieces or own bytes are waiting, even if more
/// pipelined requests are buffered.
const FLUSH_CHUNKS: usize = 256;
const FLUSH_OWN_BYTES: usize = 64 * 1024;
/// Bytes (own, and shared cache buffers) one connection may have queued before it stops
/// taking requests and sends them: a client that pipelines requests and never reads holds
/// at most this, plus the one response that crossed it, outside `--cache-size`.
pub(crate) const MAX_QUEUED_BYTES: usize = 256 * 1024;
/// Bytes sent by sendfile before the connection yields its turn, so one fast download
/// cannot hold the core: it resumes after the other ready connections have run and the
/// runtime has collected new completions and readiness.
const SENDFILE_SLICE: usize = 1024 * 1024;
/// Bytes of a file slice that is not in the page cache read in one go off the worker's
/// thread, into a buffer of the connection's own that lives while the file is being sent:
/// each connection sending a cold file holds at most this much outside `--cache-size`.
/// Sending it from memory copies it into the socket on the worker's thread; a quarter MiB
/// keeps that under a few milliseconds for the other connections (1 MiB doubled the wait
/// a small request saw beside a cold download), and the disk, not the read size, sets the
/// pace.
const COLD_READ_SLICE: usize = 256 * 1024;
/// After an error response, read and drop what the client still sends for at most this
/// long and this many bytes before closing, so the close does not reset the response away.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 64 * 1024;

pub(crate) enum Recv {
    Data,
    Eof,
    TimedOut,
    Stopped,
}

/// How [`recv_until`] ends a receive it gives up on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// Shut the reading side down: the connection is about to close.
    Shutdown,
    /// Cancel the operation and keep the connection.
    Cancel,
}

pub(crate) struct Wire {
    sock: Socket,
    /// Responses waiting to be sent; `None` only while a send is in flight.
    batch: Option<SendBatch>,
    /// Bytes queued in `batch` (own and shared) since it was last sent.
    queued: usize,
    /// One timer per connection, re-armed for each wait.
    timer: Pin<Box<Sleep>>,
    /// TCP_NODELAY is set before the second send: answers go out whole, so Nagle's algorithm
    /// could only hold back a later answer behind an unacknowledged earlier one. The first
    /// send never waits for that, so a one-request connection skips the system call.
    sent_before: bool,
    nodelay: bool,
    /// `--send-timeout`: a send that makes no progress for this long ends the connection.
    send_timeout: Duration,
    /// The connection closes after what is queued now: nothing follows the last send.
    closing: bool,
    /// The buffer a slice of a file not in the page cache is read into and sent from
    /// (at most [`COLD_READ_SLICE`] bytes); empty unless a file is being sent.
    cold: Vec<u8>,
}

impl Wire {
    /// `nodelay`: TCP_NODELAY is already set (a connection that was parked).
    pub(crate) fn new(sock: Socket, nodelay: bool, send_timeout: Duration) -> Wire {
        Wire {
            sock,
            batch: Some(SendBatch::new()),
            queued: 0,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            sent_before: nodelay,
            nodelay,
            send_timeout,
            closing: false,
            cold: Vec::new(),
        }
    }

    /// The socket, and whether TCP_NODELAY is set on it; the rest is freed.
    pub(crate) fn into_socket(self) -> (Socket, bool) {
        (self.sock, self.nodelay)
    }

    fn batch_mut(&mut self) -> &mut SendBatch {
        self.batch.as_mut().expect("no send in flight")
    }

    /// Queues a copy of `bytes`.
    pub(crate) fn queue_own(&mut self, bytes: &[u8]) {
        let batch = self.batch_mut();
        let from = batch.own_buf().len();
        batch.own_buf().extend_from_slice(bytes);
        batch.push_own(from);
        self.queued += bytes.len();
    }

    /// The batch's own buffer, to write a response into; queue what was written with
    /// [`Wire::queue_written`].
    pub(crate) fn own_buf(&mut self) -> &mut Vec<u8> {
        self.batch_mut().own_buf()
    }

    /// Queues `range` of the own buffer, written since the last send: in place when it is
    /// the buffer's tail (a response's head, the common case), else copied to the end.
    pub(crate) fn queue_written(&mut self, range: Range<usize>) {
        self.queued += range.len();
        let batch = self.batch_mut();
        let own = batch.own_buf();
        let from = if range.end == own.len() {
            range.start
        } else {
            let at = own.len();
            own.extend_from_within(range);
            at
        };
        batch.push_own(from);
    }

    /// Queues a copy of `len` bytes of `file` from `offset` if they are all in the page cache
    /// (read without waiting for the disk, [`engine::read_resident`]); returns whether it
    /// did. For a small range this replaces a residency check, a send of what is queued
    /// and a sendfile with one read, and the range goes out with the head in one send.
    pub(crate) fn queue_resident(&mut self, file: &File, offset: u64, len: usize) -> bool {
        let own = self.batch_mut().own_buf();
        let from = own.len();
        if !engine::read_resident(file.as_fd(), offset, len, own) {
            return false;
        }
        self.queue_written(from..from + len);
        true
    }

    /// Queues a copy of `len` bytes of the cached body `mem` from `offset`.
    pub(crate) fn queue_copy(&mut self, mem: &Extent, offset: u64, len: usize) -> io::Result<()> {
        let own = self.batch_mut().own_buf();
        let from = own.len();
        mem.read_into(offset, len, own)?;
        self.queue_written(from..from + len);
        Ok(())
    }

    /// Queues `bytes[range]`, keeping `bytes` alive until sent.
    pub(crate) fn queue_shared(&mut self, bytes: &Rc<[u8]>, range: Range<usize>) {
        self.queued += range.len();
        self.batch_mut().push_shared(bytes, range);
    }

    /// Queues `bytes[range]` of bytes shared by every worker (a compressed variant).
    pub(crate) fn queue_process(&mut self, bytes: &Arc<[u8]>, range: Range<usize>) {
        self.queued += range.len();
        self.batch_mut().push_process(bytes, range);
    }

    /// Nothing is queued.
    pub(crate) fn is_empty(&mut self) -> bool {
        self.batch_mut().is_empty()
    }

    /// Enough is queued that it should go before another request is taken.
    pub(crate) fn is_full(&mut self) -> bool {
        let queued = self.queued;
        let b = self.batch_mut();
        b.chunk_count() >= FLUSH_CHUNKS
            || b.own_buf().len() >= FLUSH_OWN_BYTES
            || queued >= MAX_QUEUED_BYTES
    }

    /// The connection closes once what is queued is sent: its sends need not wait on the
    /// ring for a receive to share a submission with.
    pub(crate) fn will_close(&mut self) {
        self.closing = true;
    }

    /// Sends everything queued. `more`: a body follows by sendfile.
    ///
    /// Before a close ([`Wire::will_close`]) the last answer goes with MSG_MORE and is
    /// followed by a shutdown of the sending side: the kernel holds the answer's last
    /// segment until the shutdown and sends the FIN in it, instead of a segment of its own
    /// that the client must acknowledge as well: one segment less for every connection that
    /// closes after its answer. The shutdown, rather than the close that follows, sends
    /// them: a close with unread bytes on the socket resets the connection and drops the
    /// held segment unsent.
    pub(crate) async fn flush(&mut self, more: bool) -> io::Result<()> {
        let timeout = self.send_timeout;
        let hold = more || self.closing;
        let mut sent_any = false;
        loop {
            let batch = self.batch.take().expect("no send in flight");
            if batch.is_empty() {
                self.batch = Some(batch);
                self.queued = 0;
                if sent_any && self.closing && !more {
                    self.sock.shutdown(Shutdown::Write);
                }
                return Ok(());
            }
            self.timer.as_mut().reset(Instant::now() + timeout);
            self.sending();
            sent_any = true;
            let send = self.sock.send(batch, hold, hold);
            tokio::pin!(send);
            let (res, mut batch) = tokio::select! {
                biased;
                r = &mut send => r,
                _ = self.timer.as_mut() => {
                    self.sock.shutdown(Shutdown::Both);
                    let (_, batch) = send.await;
                    self.batch = Some(batch);
                    return Err(io::ErrorKind::TimedOut.into());
                }
            };
            let sent = match res {
                Ok(0) => Err(io::Error::from(io::ErrorKind::WriteZero)),
                r => r,
            };
            match sent {
                Ok(n) => batch.consume(n),
                Err(e) => {
                    batch.clear();
                    self.batch = Some(batch);
                    return Err(e);
                }
            }
            self.batch = Some(batch);
        }
    }

    /// Before a send: TCP_NODELAY from the second on (see `sent_before`).
    fn sending(&mut self) {
        if self.sent_before && !self.nodelay {
            let _ = self.sock.set_nodelay();
            self.nodelay = true;
        }
        self.sent_before = true;
    }

    /// Sends a whole response, `len` bytes of the worker's memory file from `first` (a
    /// head and its body, one after the other there), with nothing queued before it.
    pub(crate) async fn send_file(&mut self, file: &File, first: u64, len: u64) -> io::Result<()> {
        debug_assert!(self.batch_mut().is_empty());
        self.sending();
        self.stream(file, first, len, true).await
    }

    /// Sends `len` bytes of `file` from offset `first`, one [`SENDFILE_SLICE`] at a time,
    /// yielding after each to let others run. A slice whose pages are all in the page cache
    /// goes by sendfile, waiting for writability when the socket is full; one that is not
    /// (sendfile would wait for the disk on the worker's thread, stalling every connection
    /// on it) is read off the thread into one buffer of this connection's, at most
    /// [`COLD_READ_SLICE`] bytes, and sent from there. `memory`: the file is the worker's
    /// memory file, whose pages are always there, so no slice is checked. Every wait ends
    /// by `--send-timeout`.
    pub(crate) async fn stream(
        &mut self,
        file: &File,
        first: u64,
        len: u64,
        memory: bool,
    ) -> io::Result<()> {
        let res = self.stream_slices(file, first, len, memory).await;
        // The cold-read buffer is held only while a file is being sent.
        self.cold = Vec::new();
        res
    }

    async fn stream_slices(
        &mut self,
        file: &File,
        first: u64,
        len: u64,
        memory: bool,
    ) -> io::Result<()> {
        let timeout = self.send_timeout;
        let mut offset = first;
        let end = first + len;
        let mut since_slice = 0usize;
        // `offset..checked` is known to be in the page cache.
        let mut checked = if memory { end } else { first };
        while offset < end {
            if offset >= checked {
                let want = (end - offset).min(SENDFILE_SLICE as u64);
                if !engine::resident(file.as_fd(), offset, want) {
                    let want = want.min(COLD_READ_SLICE as u64) as usize;
                    let from = offset;
                    self.send_cold(file, &mut offset, want, end).await?;
                    // A read that found its bytes cached after all need not have waited.
                    since_slice += (offset - from) as usize;
                    if since_slice >= SENDFILE_SLICE {
                        since_slice = 0;
                        tokio::task::yield_now().await;
                    }
                    continue;
                }
                checked = offset + want;
            }
            let want = (checked - offset) as usize;
            let must_wait = match self.sock.sendfile(file.as_fd(), &mut offset, want) {
                // The file shrank under us: the promised Content-Length cannot be kept, so the
                // connection must end here rather than lie about the framing.
                Ok(0) => return Err(shrank()),
                Ok(n) => {
                    since_slice += n;
                    if since_slice >= SENDFILE_SLICE {
                        since_slice = 0;
                        tokio::task::yield_now().await;
                    }
                    false
                }
                // The socket is full: wait until it drains.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                Err(e) => return Err(e),
            };
            if must_wait && offset < end {
                self.timer.as_mut().reset(Instant::now() + timeout);
                let writable = self.sock.writable();
                tokio::pin!(writable);
                tokio::select! {
                    biased;
                    r = &mut writable => r?,
                    _ = self.timer.as_mut() => {
                        self.sock.shutdown(Shutdown::Both);
                        let _ = writable.await;
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads up to `want` bytes of `file` at `*offset`, which are not all in the page
    /// cache, without blocking the worker ([`Socket::read_at`]), and sends them from the
    /// connection's cold-read buffer; advances `*offset` by what was sent (`end`: where the
    /// body ends, so that its last bytes go out at once). The read waits at most
    /// `--send-timeout`; giving up drops it, and the engine keeps the buffer and a
    /// descriptor of the file alive until the kernel is done with them.
    ///
    /// [`Socket::read_at`]: crate::engine::Socket::read_at
    async fn send_cold(
        &mut self,
        file: &File,
        offset: &mut u64,
        want: usize,
        end: u64,
    ) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.cold);
        buf.clear();
        self.timer
            .as_mut()
            .reset(Instant::now() + self.send_timeout);
        let (res, buf) = {
            let read = self.sock.read_at(file.as_fd(), *offset, buf, want);
            tokio::pin!(read);
            tokio::select! {
                biased;
                r = &mut read => r,
                _ = self.timer.as_mut() => {
                    self.sock.shutdown(Shutdown::Both);
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
        };
        let n = match res {
            Ok(0) => return Err(shrank()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.cold = buf;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        // Sent as the batch's own bytes: the batch is empty here (the head went before the
        // body), so its own buffer is set aside and the cold buffer takes its place.
        let batch = self.batch_mut();
        debug_assert!(
            batch.is_empty(),
            "a file is streamed after the batch is sent"
        );
        let own = std::mem::replace(batch.own_buf(), buf);
        batch.push_own(0);
        self.queued += n;
        // MSG_MORE only while more of the body follows: it holds a partial segment back.
        let sent = self.flush(*offset + (n as u64) < end).await;
        self.cold = std::mem::replace(self.batch_mut().own_buf(), own);
        sent?;
        *offset += n as u64;
        Ok(())
    }

    /// Half-closes, then reads and drops what the client still sends, briefly, so that the
    /// final close does not send a reset that could destroy the response in flight.
    pub(crate) async fn linger(&mut self, mut buf: Vec<u8>) -> io::Result<()> {
        self.sock.shutdown(Shutdown::Write);
        let deadline = Instant::now() + LINGER_TIMEOUT;
        let mut drained = 0;
        while drained < LINGER_MAX_BYTES {
            buf.clear();
            let (res, got) = recv_until(
                &self.sock,
                buf,
                &mut self.timer,
                deadline,
                None,
                GiveUp::Shutdown,
            )
            .await;
            buf = got;
            match res {
                Ok(Recv::Data) => drained += buf.len(),
                _ => break,
            }
        }
        Ok(())
    }

    /// Receives into `buf`'s spare capacity until data arrives, the peer closes,
    /// `deadline` passes or (if given) `stop` is notified; see [`recv_until`].
    pub(crate) async fn recv(
        &mut self,
        buf: Vec<u8>,
        deadline: Instant,
        stop: Option<&Notify>,
        give_up: GiveUp,
    ) -> (io::Result<Recv>, Vec<u8>) {
        recv_until(&self.sock, buf, &mut self.timer, deadline, stop, give_up).await
    }
}

/// The error for a file that ended before the range promised from it.
fn shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent")
}

/// Receives into `buf`'s spare capacity until data arrives, the peer closes, `deadline`
/// passes, or (if given) `stop` is notified. Giving up shuts down the reading side or
/// cancels the receive, either of which completes it, so no ring operation outlives the wait.
async fn recv_until(
    sock: &Socket,
    buf: Vec<u8>,
    timer: &mut Pin<Box<Sleep>>,
    deadline: Instant,
    stop: Option<&Notify>,
    give_up: GiveUp,
) -> (io::Result<Recv>, Vec<u8>) {
    timer.as_mut().reset(deadline);
    let recv = sock.recv(buf);
    tokio::pin!(recv);
    let stopped = async {
        match stop {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };
    let gave_up = tokio::select! {
        biased;
        (res, buf) = &mut recv => {
            return match res {
                Ok(0) => (Ok(Recv::Eof), buf),
                Ok(_) => (Ok(Recv::Data), buf),
                Err(e) => (Err(e), buf),
            };
        }
        _ = timer.as_mut() => Recv::TimedOut,
        _ = stopped => Recv::Stopped,
    };
    match give_up {
        GiveUp::Shutdown => sock.shutdown(Shutdown::Read),
        GiveUp::Cancel => sock.cancel_pending().await,
    }
    let (res, buf) = recv.await;
    match res {
        // Bytes that raced the shutdown: let the caller use them.
        Ok(n) if n > 0 => (Ok(Recv::Data), buf),
        _ => (Ok(gave_up), buf),
    }
}
