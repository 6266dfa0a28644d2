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
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::clock::Now;
use super::respond::{self, Reply};
use super::worker::{ConnGuard, Worker};
use crate::http::Status;
use crate::http::request::{self, Method, Request};
use crate::http::response::{self, Connection, FileFields};
use crate::uring::{SendBatch, Socket};

/// How long an idle connection keeps a receive (and its buffer) posted before it waits for
/// readability alone.
const HOT_IDLE: Duration = Duration::from_millis(250);
/// First receive buffer; grows towards `--max-header-bytes` only for large heads.
const INITIAL_RECV_BYTES: usize = 4096;
/// Free space below which the receive buffer grows before the next receive.
const MIN_RECV_SPACE: usize = 1024;
/// Queued responses are sent once this many pieces or bytes are waiting, even if more
/// pipelined requests are buffered.
const FLUSH_CHUNKS: usize = 256;
const FLUSH_OWN_BYTES: usize = 64 * 1024;
/// Bytes sent by sendfile before the connection yields its turn by waiting on the ring, so
/// one fast download cannot hold the core.
const SENDFILE_SLICE: usize = 1024 * 1024;
/// After an error response, read and drop what the client still sends for at most this
/// long and this many bytes before closing, so the close does not reset the response away.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 64 * 1024;

pub async fn serve(guard: ConnGuard, sock: Socket) {
    let w = guard.worker().clone();
    let mut conn = Conn {
        timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        w,
        sock,
        batch: Some(SendBatch::new()),
        key: Vec::new(),
        sent_before: false,
        nodelay: false,
    };
    let buf = Vec::with_capacity(INITIAL_RECV_BYTES);
    if let Err(e) = conn.run(buf).await {
        log_error(&e);
    }
    drop(guard);
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
    /// Scratch for the normalised path of each request.
    key: Vec<u8>,
    /// One timer per connection, re-armed for each wait.
    timer: Pin<Box<Sleep>>,
    /// TCP_NODELAY is set before the second send: answers go out whole, so Nagle's algorithm
    /// could only hold back a later answer behind an unacknowledged earlier one. The first
    /// send never waits for that, so a one-request connection skips the system call.
    sent_before: bool,
    nodelay: bool,
}

/// What the connection does after queueing an answer.
enum Step {
    Next,
    Close,
    /// Send the queued head, then `len` bytes of `file`.
    Stream {
        file: File,
        len: u64,
        close: bool,
    },
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
    /// Bytes (or the peer's close) are waiting to be received.
    Readable,
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
    async fn run(&mut self, mut buf: Vec<u8>) -> io::Result<()> {
        let max_head = self.w.cfg().max_header_bytes;
        // The first request's head is due within the header timeout of the accept.
        let mut head_deadline = Instant::now() + self.w.cfg().header_timeout;
        let mut pos = 0;
        let mut discard: u64 = 0;
        // Whether a request has been answered (so an empty buffer means "between requests").
        let mut answered = false;
        loop {
            let now = Now::read();
            let mut close = false;
            while !close {
                if discard > 0 {
                    let take = discard.min((buf.len() - pos) as u64);
                    pos += take as usize;
                    discard -= take;
                    if discard > 0 {
                        break;
                    }
                }
                if pos == buf.len() {
                    break;
                }
                let step = match request::parse(&buf[pos..], max_head) {
                    Ok(None) => break,
                    Err(reject) => {
                        let date = self.w.date.get(now);
                        let own = self.batch_mut().own_buf();
                        let from = own.len();
                        response::write_error(own, reject.status, &date, Connection::Close, false);
                        self.batch_mut().push_own(from);
                        self.flush(false).await?;
                        return self.linger(buf).await;
                    }
                    Ok(Some(req)) => {
                        pos += req.head_len;
                        discard = req.body_len;
                        answered = true;
                        self.answer(&req, now)
                    }
                };
                match step {
                    Step::Next => {
                        let b = self.batch_mut();
                        if b.chunk_count() >= FLUSH_CHUNKS || b.own_buf().len() >= FLUSH_OWN_BYTES {
                            self.flush(false).await?;
                        }
                    }
                    Step::Close => close = true,
                    Step::Stream {
                        file,
                        len,
                        close: then_close,
                    } => {
                        self.flush(true).await?;
                        self.stream(&file, len).await?;
                        close = then_close;
                    }
                }
            }
            self.flush(false).await?;
            if close {
                // Pipelined bytes after the last answer: drain them so the close is clean.
                if pos < buf.len() || discard > 0 {
                    return self.linger(buf).await;
                }
                return Ok(());
            }

            buf.drain(..pos);
            pos = 0;
            let idle = buf.is_empty() && discard == 0;
            if idle && self.w.stopping.get() {
                return Ok(());
            }
            if buf.capacity() - buf.len() < MIN_RECV_SPACE {
                let want = (buf.capacity() * 2)
                    .min(max_head.max(INITIAL_RECV_BYTES))
                    .saturating_sub(buf.len());
                buf.reserve_exact(want.max(MIN_RECV_SPACE));
            }
            if idle && answered {
                match self
                    .wait_idle(&mut buf, self.w.cfg().keepalive_timeout)
                    .await?
                {
                    Idle::Closed => return Ok(()),
                    Idle::Received => {
                        head_deadline = Instant::now() + self.w.cfg().header_timeout;
                        continue;
                    }
                    Idle::Readable => {
                        head_deadline = Instant::now() + self.w.cfg().header_timeout;
                    }
                }
            }
            let stop = if idle && !answered {
                Some(&self.w.stop)
            } else {
                None
            };
            let (res, got) = recv_until(
                &self.sock,
                buf,
                &mut self.timer,
                head_deadline,
                stop,
                GiveUp::Shutdown,
            )
            .await;
            buf = got;
            match res? {
                Recv::Data => {}
                Recv::Eof | Recv::Stopped => return Ok(()),
                // Nothing of a request yet: close without a word.
                Recv::TimedOut if idle => return Ok(()),
                Recv::TimedOut => {
                    // RFC 9110 §15.5.9: tell a client whose head never finished why we close.
                    let date = self.w.date.get(Now::read());
                    let own = self.batch_mut().own_buf();
                    let from = own.len();
                    response::write_error(
                        own,
                        Status::RequestTimeout,
                        &date,
                        Connection::Close,
                        false,
                    );
                    self.batch_mut().push_own(from);
                    self.flush(false).await?;
                    return Ok(());
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
        // Cold: keep nothing an idle connection does not need.
        *buf = Vec::new();
        self.key = Vec::new();
        self.batch_mut().release();
        self.timer.as_mut().reset(deadline);
        let readable = self.sock.readable();
        tokio::pin!(readable);
        let gave_up = tokio::select! {
            biased;
            r = &mut readable => {
                r?;
                return Ok(Idle::Readable);
            }
            _ = self.timer.as_mut() => Idle::Closed,
            _ = self.w.stop.notified() => Idle::Closed,
        };
        self.sock.shutdown(Shutdown::Read);
        let _ = readable.await;
        Ok(gave_up)
    }

    fn batch_mut(&mut self) -> &mut SendBatch {
        self.batch.as_mut().expect("no send in flight")
    }

    /// Queues the answer to an admitted request.
    fn answer(&mut self, req: &Request<'_>, now: Now) -> Step {
        let w = self.w.clone();
        let date = w.date.get(now);
        let head_only = req.method == Method::Head;
        let reply = if req.method == Method::Other {
            Reply::Error(Status::MethodNotAllowed)
        } else {
            respond::resolve(&w, req, &mut self.key, now)
        };
        let server_closes = w.stopping.get()
            || matches!(
                reply,
                Reply::Error(Status::BadRequest | Status::InternalServerError)
            );
        let conn = Connection::for_request(req, server_closes);
        let batch = self.batch.as_mut().expect("no send in flight");
        let from = batch.own_buf().len();
        let mut step = if conn.closes() {
            Step::Close
        } else {
            Step::Next
        };
        match reply {
            Reply::Cached(file) => {
                response::write_prefix(batch.own_buf(), Status::Ok, &date, conn);
                batch.push_own(from);
                let end = if head_only {
                    file.head_len
                } else {
                    file.bytes.len()
                };
                batch.push_shared(&file.bytes, 0..end);
            }
            Reply::File {
                file,
                meta,
                content_type,
            } => {
                let own = batch.own_buf();
                response::write_prefix(own, Status::Ok, &date, conn);
                let fields = FileFields {
                    content_type: &content_type,
                    len: meta.len,
                    mtime: meta.mtime,
                };
                response::write_file_fields(own, &fields);
                batch.push_own(from);
                if !head_only && meta.len > 0 {
                    step = Step::Stream {
                        file,
                        len: meta.len,
                        close: conn.closes(),
                    };
                }
            }
            Reply::Redirect => {
                let segment = req.path.rsplit(|&b| b == b'/').next().unwrap_or(b"");
                let own = batch.own_buf();
                response::write_directory_redirect(own, segment, req.query, &date, conn, head_only);
                batch.push_own(from);
            }
            Reply::Error(status) => {
                response::write_error(batch.own_buf(), status, &date, conn, head_only);
                batch.push_own(from);
            }
        }
        step
    }

    /// Sends everything queued. `more`: a body follows by sendfile.
    async fn flush(&mut self, more: bool) -> io::Result<()> {
        let timeout = self.w.cfg().send_timeout;
        loop {
            let batch = self.batch.take().expect("no send in flight");
            if batch.is_empty() {
                self.batch = Some(batch);
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

    /// Sends `len` bytes of `file` from offset 0 with sendfile, waiting on the ring when the
    /// socket is full, and after every [`SENDFILE_SLICE`] bytes to let others run.
    async fn stream(&mut self, file: &File, len: u64) -> io::Result<()> {
        let timeout = self.w.cfg().send_timeout;
        let mut offset = 0u64;
        let mut since_wait = 0usize;
        while offset < len {
            let want = (len - offset).min(SENDFILE_SLICE as u64) as usize;
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
                    since_wait += n;
                    since_wait >= SENDFILE_SLICE
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                Err(e) => return Err(e),
            };
            if must_wait && offset < len {
                since_wait = 0;
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
