//! One connection, from accept to close.
//!
//! The loop: answer every complete request head in the receive buffer (pipelined answers
//! are queued and go out in one SENDMSG), stream a large file when one comes up, then wait
//! for more bytes. Every wait is bounded: the request head by `--header-timeout` (a deadline
//! from its first byte), an idle connection by `--keepalive-timeout`, a send that makes no
//! progress by `--send-timeout`. A wait that gives up shuts the socket down, because
//! dropping a ring operation does not cancel it.

use std::fs::File;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::clock::Now;
use super::compose::{self, Composed, Context, Segment, Segments};
use super::recv_buf::{INITIAL_RECV_BYTES, MIN_RECV_SPACE, RecvBuf};
use super::respond::{self, Reply};
use super::store::CachedFile;
use super::worker::{ConnGuard, Worker};
use crate::engine::{self, SendBatch, Socket};
use crate::http::Status;
use crate::http::request::{self, Method, Request};

/// How long an idle connection keeps a receive (and its buffer) posted before it waits for
/// readability alone.
const HOT_IDLE: Duration = Duration::from_millis(250);
/// Queued responses are sent once this many pieces or bytes are waiting, even if more
/// pipelined requests are buffered.
const FLUSH_CHUNKS: usize = 256;
const FLUSH_OWN_BYTES: usize = 64 * 1024;
/// Bytes (own, and shared cache buffers) one connection may have queued before it stops
/// taking requests and sends them: a client that pipelines requests and never reads holds
/// at most this, plus the one response that crossed it, outside `--cache-size`.
const MAX_QUEUED_BYTES: usize = 256 * 1024;
/// Bytes sent by sendfile before the connection yields its turn, so one fast download
/// cannot hold the core: it resumes after the other ready connections have run and the
/// runtime has collected new completions and readiness.
const SENDFILE_SLICE: usize = 1024 * 1024;
/// After an error response, read and drop what the client still sends for at most this
/// long and this many bytes before closing, so the close does not reset the response away.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 64 * 1024;

pub async fn serve(guard: ConnGuard, sock: Socket) {
    let conn = Conn::new(guard, sock, false);
    drive(conn, Vec::with_capacity(INITIAL_RECV_BYTES), false).await;
}

/// Runs the connection until it closes, or parks it when it goes idle.
async fn drive(mut conn: Conn, buf: Vec<u8>, resumed: bool) {
    match conn.run(buf, resumed).await {
        Ok(Exit::Done) => {}
        Ok(Exit::Park(deadline)) => engine::spawn(park(conn.into_parked(), deadline)),
        Err(e) => log_error(&e),
    }
}

/// What an idle connection keeps while it is parked: its socket and its place in the
/// worker's count. Buffers, the send batch and the timer are made again when it wakes.
struct Parked {
    sock: Socket,
    nodelay: bool,
    guard: ConnGuard,
}

/// How a parked connection's wait ended.
enum Woke {
    Readable,
    Failed,
    /// Its keep-alive deadline passed, or shutdown began.
    Expired,
}

/// An idle connection waits for its next request here, in a small task of its own (the
/// task that served it, with its larger future, has ended): readable, a new task serves it
/// again. The worker's sweeper wakes it when its keep-alive deadline passes or shutdown
/// begins, and then it closes.
async fn park(idle: Parked, deadline: Instant) {
    let w = idle.guard.worker().clone();
    let ticket = w.parking.park(deadline);
    let woke = if w.stopping.get() {
        Woke::Expired
    } else {
        let readable = idle.sock.readable();
        tokio::pin!(readable);
        let woke = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = readable.as_mut().poll(cx) {
                return Poll::Ready(if r.is_ok() {
                    Woke::Readable
                } else {
                    Woke::Failed
                });
            }
            if ticket.expired(cx.waker()) {
                Poll::Ready(Woke::Expired)
            } else {
                Poll::Pending
            }
        })
        .await;
        if let Woke::Expired = woke {
            // End the pending readiness wait before the socket closes.
            idle.sock.shutdown(Shutdown::Read);
            let _ = readable.await;
        }
        woke
    };
    drop(ticket);
    if let Woke::Readable = woke {
        // Read here what woke it: a client that left (the common end of an idle
        // connection) is closed without a serving task, so thousands leaving at once cost
        // no burst of tasks; a request goes to the new task already in its buffer.
        let mut buf = Vec::with_capacity(INITIAL_RECV_BYTES);
        match idle.sock.try_recv(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
        let conn = Conn::new(idle.guard, idle.sock, idle.nodelay);
        engine::spawn(drive(conn, buf, true));
    }
}

/// Why [`Conn::run`] returned.
enum Exit {
    Done,
    /// Idle past [`HOT_IDLE`]: park until readable, or until the keep-alive deadline.
    Park(Instant),
}

/// Resets, timeouts and refusals are the client's business; anything else is logged.
fn log_error(e: &io::Error) {
    use io::ErrorKind::*;
    if !matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | TimedOut | UnexpectedEof | NotConnected
    ) {
        eprintln!("fserve: connection error: {e}");
    }
}

struct Conn {
    w: Rc<Worker>,
    sock: Socket,
    /// Responses waiting to be sent; `None` only while a send is in flight.
    batch: Option<SendBatch>,
    /// Bytes queued in `batch` (own and shared) since it was last sent.
    queued: usize,
    /// Scratch for the normalised path of each request.
    key: Vec<u8>,
    /// The head bytes of the response being composed; its own segments are copied into
    /// the batch in sending order.
    head: Vec<u8>,
    segs: Segments,
    /// One timer per connection, re-armed for each wait.
    timer: Pin<Box<Sleep>>,
    /// TCP_NODELAY is set before the second send: answers go out whole, so Nagle's algorithm
    /// could only hold back a later answer behind an unacknowledged earlier one. The first
    /// send never waits for that, so a one-request connection skips the system call.
    sent_before: bool,
    nodelay: bool,
    /// Counts the connection for its whole life (the worker's cap and drain).
    guard: ConnGuard,
}

enum Recv {
    Data,
    Eof,
    TimedOut,
    Stopped,
}

/// How a keep-alive wait ended.
enum Idle {
    /// Bytes are in the buffer.
    Received,
    /// Idle past [`HOT_IDLE`]: buffers released, park until this keep-alive deadline.
    Park(Instant),
    /// Timed out, shut down, or the peer left: close.
    Closed,
}

/// How [`recv_until`] ends a receive it gives up on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GiveUp {
    /// Shut the reading side down: the connection is about to close.
    Shutdown,
    /// Cancel the operation and keep the connection.
    Cancel,
}

impl Conn {
    /// `nodelay`: TCP_NODELAY is already set (a connection that was parked).
    fn new(guard: ConnGuard, sock: Socket, nodelay: bool) -> Conn {
        Conn {
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            w: guard.worker().clone(),
            sock,
            batch: Some(SendBatch::new()),
            queued: 0,
            key: Vec::new(),
            head: Vec::new(),
            segs: Segments::new(),
            sent_before: nodelay,
            nodelay,
            guard,
        }
    }

    fn into_parked(self) -> Parked {
        Parked {
            sock: self.sock,
            nodelay: self.nodelay,
            guard: self.guard,
        }
    }

    /// Serves requests until the connection closes or parks. `resumed`: it was parked and
    /// is readable again.
    async fn run(&mut self, buf: Vec<u8>, resumed: bool) -> io::Result<Exit> {
        let max_head = self.w.cfg().max_header_bytes;
        // The first request's head is due within the header timeout of the accept.
        let mut head_deadline = Instant::now() + self.w.cfg().header_timeout;
        let mut rb = RecvBuf::new(buf);
        // Whether a request has been answered (so an empty buffer means "between requests").
        let mut answered = resumed;
        loop {
            let now = Now::read();
            let mut close = false;
            while !close && rb.skip_discarded() {
                let (head_len, body_len, composed) = match request::parse(rb.unparsed(), max_head) {
                    Ok(None) => break,
                    Err(reject) => {
                        self.queue_closing_error(reject.status, now);
                        self.flush(false).await?;
                        return self.linger(rb.into_vec()).await.map(|()| Exit::Done);
                    }
                    Ok(Some(req)) => {
                        answered = true;
                        let head = &rb.unparsed()[..req.head_len];
                        let composed = self.answer(&req, head, now).await?;
                        (req.head_len, req.body_len, composed)
                    }
                };
                rb.consume(head_len, body_len);
                close = composed.close;
                let b = self.batch_mut();
                if b.chunk_count() >= FLUSH_CHUNKS
                    || b.own_buf().len() >= FLUSH_OWN_BYTES
                    || self.queued >= MAX_QUEUED_BYTES
                {
                    self.flush(false).await?;
                }
            }
            self.flush(false).await?;
            if close {
                // Pipelined bytes after the last answer: drain them so the close is clean.
                if rb.has_leftover() {
                    return self.linger(rb.into_vec()).await.map(|()| Exit::Done);
                }
                return Ok(Exit::Done);
            }
            let idle = rb.compact(max_head);
            if idle && self.w.stopping.get() {
                return Ok(Exit::Done);
            }
            if idle && answered {
                let mut buf = rb.take();
                let waited = self
                    .wait_idle(&mut buf, self.w.cfg().keepalive_timeout)
                    .await;
                rb.put(buf);
                match waited? {
                    Idle::Closed => return Ok(Exit::Done),
                    Idle::Received => {
                        head_deadline = Instant::now() + self.w.cfg().header_timeout;
                        continue;
                    }
                    Idle::Park(deadline) => return Ok(Exit::Park(deadline)),
                }
            }
            let stop = if idle && !answered {
                Some(&self.w.stop)
            } else {
                None
            };
            let (res, got) = recv_until(
                &self.sock,
                rb.take(),
                &mut self.timer,
                head_deadline,
                stop,
                GiveUp::Shutdown,
            )
            .await;
            rb.put(got);
            match res? {
                Recv::Data => {}
                Recv::Eof | Recv::Stopped => return Ok(Exit::Done),
                // Nothing of a request yet: close without a word.
                Recv::TimedOut if idle => return Ok(Exit::Done),
                Recv::TimedOut => {
                    // RFC 9110 §15.5.9: tell a client whose head never finished why we close.
                    self.queue_closing_error(Status::RequestTimeout, Now::read());
                    self.flush(false).await?;
                    return Ok(Exit::Done);
                }
            }
        }
    }

    /// Waits, between requests, for the next one, until the keep-alive timeout or shutdown.
    ///
    /// First a RECV into `buf`, for at most [`HOT_IDLE`]: a client in the middle of a page
    /// load (or a benchmark) sends its next request within that, at the cost of one ring
    /// operation. Past it, the receive is cancelled and the connection gives back its
    /// buffers, then waits for readability alone, so thousands of idle keep-alive
    /// connections hold no receive buffers.
    async fn wait_idle(&mut self, buf: &mut Vec<u8>, keepalive: Duration) -> io::Result<Idle> {
        let deadline = Instant::now() + keepalive;
        let hot_deadline = deadline.min(Instant::now() + HOT_IDLE);
        if buf.capacity() < MIN_RECV_SPACE {
            buf.reserve_exact(INITIAL_RECV_BYTES);
        }
        let stop = Some(&self.w.stop);
        let (res, got) = recv_until(
            &self.sock,
            std::mem::take(buf),
            &mut self.timer,
            hot_deadline,
            stop,
            GiveUp::Cancel,
        )
        .await;
        *buf = got;
        match res? {
            Recv::Data => return Ok(Idle::Received),
            Recv::Eof | Recv::Stopped => return Ok(Idle::Closed),
            Recv::TimedOut if hot_deadline >= deadline => return Ok(Idle::Closed),
            Recv::TimedOut => {}
        }
        // Cold: park (the connection keeps only what [`Parked`] holds).
        Ok(Idle::Park(deadline))
    }

    /// Queues an error after which the connection closes (a rejected head, a timeout).
    fn queue_closing_error(&mut self, status: Status, now: Now) {
        let w = self.w.clone();
        let date = w.date.get(now);
        let ctx = Context {
            date: &date,
            site: &w.shared.site_fields,
            stopping: w.stopping.get(),
            cors: w.cfg().cors,
            vary_accept: false,
            boundary: &|| w.boundary(),
        };
        self.head.clear();
        compose::compose_closing_error(status, &ctx, &mut self.head, &mut self.segs);
        self.queue_own_segments();
    }

    fn batch_mut(&mut self) -> &mut SendBatch {
        self.batch.as_mut().expect("no send in flight")
    }

    /// Answers an admitted request whose head is `head`: composes the response, then
    /// queues and sends its segments.
    async fn answer(&mut self, req: &Request<'_>, head: &[u8], now: Now) -> io::Result<Composed> {
        if req.fields.repeated != 0 {
            let mut joined = Vec::new();
            let mut req = req.clone();
            request::join_repeated(head, &mut req.fields, &mut joined);
            return self.answer_joined(&req, now).await;
        }
        self.answer_joined(req, now).await
    }

    async fn answer_joined(&mut self, req: &Request<'_>, now: Now) -> io::Result<Composed> {
        #[cfg(test)]
        if super::fault::armed(super::fault::Fault::PanicInConnection)
            && req.path == super::fault::PANIC_PATH.as_bytes()
        {
            panic!("injected fault: a connection's task");
        }
        let w = self.w.clone();
        let (reply, vary_accept) = match req.method {
            Method::Other => (Reply::Error(Status::MethodNotAllowed), false),
            Method::Options => (Reply::Options, false),
            Method::Get | Method::Head => {
                respond::resolve(&w.store, w.cfg(), req, &mut self.key, now)
            }
        };
        let date = w.date.get(now);
        let ctx = Context {
            date: &date,
            site: &w.shared.site_fields,
            stopping: w.stopping.get(),
            cors: w.cfg().cors,
            vary_accept,
            boundary: &|| w.boundary(),
        };
        self.head.clear();
        let composed = compose::compose(req, &reply.view(), &ctx, &mut self.head, &mut self.segs);
        match &reply {
            Reply::File { file, .. } => self.send_segments(file).await?,
            _ => self.queue_own_segments(),
        }
        Ok(composed)
    }

    /// Queues a response made of own bytes alone.
    fn queue_own_segments(&mut self) {
        let batch = self.batch.as_mut().expect("no send in flight");
        for seg in self.segs.as_slice() {
            if let Segment::Own(r) = seg {
                let from = batch.own_buf().len();
                batch.own_buf().extend_from_slice(&self.head[r.clone()]);
                batch.push_own(from);
                self.queued += r.len();
            }
        }
    }

    /// Walks the segments of a response for `file`: memory goes into the batch; before
    /// bytes from disk, the batch is sent, then the file by sendfile.
    async fn send_segments(&mut self, file: &Rc<CachedFile>) -> io::Result<()> {
        for i in 0..self.segs.as_slice().len() {
            let batch = self.batch.as_mut().expect("no send in flight");
            match self.segs.as_slice()[i].clone() {
                Segment::Own(r) => {
                    let from = batch.own_buf().len();
                    batch.own_buf().extend_from_slice(&self.head[r.clone()]);
                    batch.push_own(from);
                    self.queued += r.len();
                }
                Segment::Shared(r) => {
                    self.queued += r.len();
                    batch.push_shared(&file.bytes, r);
                }
                Segment::File { offset, len } => {
                    self.flush(true).await?;
                    let disk = file.disk.as_ref().expect("a large file is held open");
                    if let Err(e) = self.stream(disk, offset, len).await {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            // It shrank: have the next request look at it afresh.
                            file.suspect.set(true);
                        }
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends everything queued. `more`: a body follows by sendfile.
    async fn flush(&mut self, more: bool) -> io::Result<()> {
        let timeout = self.w.cfg().send_timeout;
        loop {
            let batch = self.batch.take().expect("no send in flight");
            if batch.is_empty() {
                self.batch = Some(batch);
                self.queued = 0;
                return Ok(());
            }
            self.timer.as_mut().reset(Instant::now() + timeout);
            if self.sent_before && !self.nodelay {
                let _ = self.sock.set_nodelay();
                self.nodelay = true;
            }
            self.sent_before = true;
            let send = self.sock.send(batch, more);
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

    /// Sends `len` bytes of `file` from offset `first` with sendfile, waiting for writability
    /// when the socket is full, and yielding after every [`SENDFILE_SLICE`] bytes to let
    /// others run.
    async fn stream(&mut self, file: &File, first: u64, len: u64) -> io::Result<()> {
        let timeout = self.w.cfg().send_timeout;
        let mut offset = first;
        let end = first + len;
        let mut since_slice = 0usize;
        while offset < end {
            let want = (end - offset).min(SENDFILE_SLICE as u64) as usize;
            let must_wait = match self.sock.sendfile(file.as_fd(), &mut offset, want) {
                // The file shrank under us: the promised Content-Length cannot be kept, so the
                // connection must end here rather than lie about the framing.
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    ));
                }
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

    /// Half-closes, then reads and drops what the client still sends, briefly, so that the
    /// final close does not send a reset that could destroy the response in flight.
    async fn linger(&mut self, mut buf: Vec<u8>) -> io::Result<()> {
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
