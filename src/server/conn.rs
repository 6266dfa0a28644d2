//! One connection, from accept to close.
//!
//! The loop: answer every complete request head in the receive buffer (pipelined answers
//! are queued and go out in one SENDMSG), stream a large file when one comes up, then wait
//! for more bytes. Every wait is bounded: the request head by `--header-timeout` (a deadline
//! from its first byte), an idle connection by `--keepalive-timeout`, a send that makes no
//! progress by `--send-timeout`. A wait that gives up shuts the socket down, because
//! dropping a ring operation does not cancel it.

use std::fs::File;
use std::io::{self, Write};
use std::net::Shutdown;
use std::ops::Range;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::clock::Now;
use super::respond::{self, CachedFile, Reply, Representation};
use super::worker::{ConnGuard, Worker};
use crate::engine::{self, SendBatch, Socket};
use crate::http::Status;
use crate::http::conditional::{self, Outcome, Preconditions, Validators};
use crate::http::range::{self, RangeOutcome, RangeSet};
use crate::http::request::{self, Method, Request};
use crate::http::response::{self, Common, Connection};

/// How long an idle connection keeps a receive (and its buffer) posted before it waits for
/// readability alone.
const HOT_IDLE: Duration = Duration::from_millis(250);
/// First receive buffer; grows towards `--max-header-bytes` only for large heads.
const INITIAL_RECV_BYTES: usize = 2048;
/// Free space below which the receive buffer grows before the next receive.
const MIN_RECV_SPACE: usize = 512;
/// Queued responses are sent once this many pieces or bytes are waiting, even if more
/// pipelined requests are buffered.
const FLUSH_CHUNKS: usize = 256;
const FLUSH_OWN_BYTES: usize = 64 * 1024;
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
    /// Scratch for the normalised path of each request.
    key: Vec<u8>,
    /// Part heads of a multipart response from a file, sent between its sendfile parts.
    staged: Vec<u8>,
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

/// What the connection does after queueing an answer.
enum Step {
    Next,
    Close,
    /// Send the queued head, then the parts of `file`: each part's head (a range of the
    /// connection's staged bytes, empty for a plain body) and `len` bytes from `first`; then
    /// the staged `tail` (a multipart closing delimiter).
    Stream {
        file: Rc<CachedFile>,
        parts: Vec<Part>,
        tail: Range<usize>,
        close: bool,
    },
}

struct Part {
    head: Range<usize>,
    first: u64,
    len: u64,
}

/// How a file request is answered, once its representation is known. It lives on the stack
/// for one request; boxing the range set would allocate for every range request.
#[allow(clippy::large_enum_variant)]
enum Plan {
    Full,
    NotModified,
    PreconditionFailed,
    Unsatisfiable,
    Ranges(RangeSet),
}

/// RFC 9110 §13.2.2: preconditions first, then (GET only, §14.2) If-Range and Range.
/// Only a 200 is conditional: a 404 page is not.
fn plan(req: &Request<'_>, status: Status, rep: &Representation) -> Plan {
    if status != Status::Ok {
        return Plan::Full;
    }
    let v = Validators {
        etag: &rep.etag,
        last_modified: rep.mtime,
    };
    let f = &req.fields;
    let p = Preconditions {
        if_match: f.if_match,
        if_none_match: f.if_none_match,
        if_modified_since: f.if_modified_since,
        if_unmodified_since: f.if_unmodified_since,
        if_range: f.if_range,
    };
    match conditional::evaluate(true, &p, &v) {
        Outcome::NotModified => return Plan::NotModified,
        Outcome::PreconditionFailed => return Plan::PreconditionFailed,
        Outcome::Proceed => {}
    }
    let Some(header) = f.range.filter(|_| req.method == Method::Get) else {
        return Plan::Full;
    };
    if f.if_range
        .is_some_and(|ir| !conditional::if_range_allows(ir, &v))
    {
        return Plan::Full;
    }
    match range::evaluate(header, rep.len) {
        RangeOutcome::Full => Plan::Full,
        RangeOutcome::Unsatisfiable => Plan::Unsatisfiable,
        RangeOutcome::Satisfiable(set) => Plan::Ranges(set),
    }
}

/// Writes a multipart 206's fields for `set` of `rep` (after its prefix); returns the
/// boundary, fresh for this response.
fn write_multipart_head(
    w: &Worker,
    own: &mut Vec<u8>,
    rep: &Representation,
    set: &RangeSet,
) -> [u8; range::BOUNDARY_LEN] {
    let boundary = w.boundary();
    let len = range::multipart_len(set, boundary.len(), rep.content_type.len(), rep.len);
    response::write_multipart_fields(own, &rep.file_fields(), &boundary, len);
    boundary
}

/// Writes a 304, 412 or 416 for `rep`.
fn write_refusal(
    own: &mut Vec<u8>,
    plan: Plan,
    rep: &Representation,
    c: &Common<'_>,
    head_only: bool,
) {
    match plan {
        Plan::NotModified => {
            response::write_prefix(own, Status::NotModified, c);
            response::write_not_modified_fields(own, rep.mtime, &rep.etag, &rep.cache_fields);
        }
        Plan::PreconditionFailed => {
            response::write_error(own, Status::PreconditionFailed, c, head_only, b"")
        }
        Plan::Unsatisfiable => {
            let mut field = [0u8; 64];
            let n = {
                let mut cur = &mut field[..];
                let _ = write!(cur, "Content-Range: bytes */{}\r\n", rep.len);
                64 - cur.len()
            };
            response::write_error(own, Status::RangeNotSatisfiable, c, head_only, &field[..n]);
        }
        Plan::Full | Plan::Ranges(_) => unreachable!("not a refusal"),
    }
}

/// The CORS preflight answer's fields (with `--cors`; the origin field is in every response).
const CORS_PREFLIGHT: &[u8] =
    b"Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\nAccess-Control-Allow-Headers: *\r\nAccess-Control-Max-Age: 86400\r\n";

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
            key: Vec::new(),
            staged: Vec::new(),
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
    async fn run(&mut self, mut buf: Vec<u8>, resumed: bool) -> io::Result<Exit> {
        let max_head = self.w.cfg().max_header_bytes;
        // The first request's head is due within the header timeout of the accept.
        let mut head_deadline = Instant::now() + self.w.cfg().header_timeout;
        let mut pos = 0;
        let mut discard: u64 = 0;
        // Whether a request has been answered (so an empty buffer means "between requests").
        let mut answered = resumed;
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
                        self.queue_closing_error(reject.status, now);
                        self.flush(false).await?;
                        return self.linger(buf).await.map(|()| Exit::Done);
                    }
                    Ok(Some(req)) => {
                        let head = &buf[pos..pos + req.head_len];
                        pos += req.head_len;
                        discard = req.body_len;
                        answered = true;
                        self.answer(&req, head, now)
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
                        parts,
                        tail,
                        close: then_close,
                    } => {
                        for part in &parts {
                            self.unstage(part.head.clone());
                            self.flush(true).await?;
                            let disk = file.disk.as_ref().expect("a large file is held open");
                            if let Err(e) = self.stream(disk, part.first, part.len).await {
                                if e.kind() == io::ErrorKind::UnexpectedEof {
                                    // It shrank: have the next request look at it afresh.
                                    file.suspect.set(true);
                                }
                                return Err(e);
                            }
                        }
                        self.unstage(tail);
                        self.staged.clear();
                        close = then_close;
                    }
                }
            }
            self.flush(false).await?;
            if close {
                // Pipelined bytes after the last answer: drain them so the close is clean.
                if pos < buf.len() || discard > 0 {
                    return self.linger(buf).await.map(|()| Exit::Done);
                }
                return Ok(Exit::Done);
            }

            buf.drain(..pos);
            pos = 0;
            let idle = buf.is_empty() && discard == 0;
            if idle && self.w.stopping.get() {
                return Ok(Exit::Done);
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
        let c = Common {
            date: &date,
            conn: Connection::Close,
            site: &w.shared.site_fields,
        };
        let batch = self.batch_mut();
        let from = batch.own_buf().len();
        response::write_error(batch.own_buf(), status, &c, false, b"");
        batch.push_own(from);
    }

    /// Queues `staged[range]`.
    fn unstage(&mut self, range: Range<usize>) {
        let batch = self.batch.as_mut().expect("no send in flight");
        let from = batch.own_buf().len();
        batch.own_buf().extend_from_slice(&self.staged[range]);
        batch.push_own(from);
    }

    fn batch_mut(&mut self) -> &mut SendBatch {
        self.batch.as_mut().expect("no send in flight")
    }

    /// Queues the answer to an admitted request whose head is `head`.
    fn answer(&mut self, req: &Request<'_>, head: &[u8], now: Now) -> Step {
        if req.fields.repeated != 0 {
            let mut joined = Vec::new();
            let mut req = req.clone();
            request::join_repeated(head, &mut req.fields, &mut joined);
            return self.answer_joined(&req, now);
        }
        self.answer_joined(req, now)
    }

    fn answer_joined(&mut self, req: &Request<'_>, now: Now) -> Step {
        #[cfg(test)]
        if super::fault::armed(super::fault::Fault::PanicInConnection)
            && req.path == super::fault::PANIC_PATH.as_bytes()
        {
            panic!("injected fault: a connection's task");
        }
        let w = self.w.clone();
        let date = w.date.get(now);
        let head_only = req.method == Method::Head;
        let reply = match req.method {
            Method::Other => Reply::Error(Status::MethodNotAllowed),
            Method::Options => Reply::Options,
            Method::Get | Method::Head => respond::resolve(&w, req, &mut self.key, now),
        };
        let server_closes = w.stopping.get()
            || matches!(
                reply,
                Reply::Error(Status::BadRequest | Status::InternalServerError)
            );
        let conn = Connection::for_request(req, server_closes);
        let c = Common {
            date: &date,
            conn,
            site: &w.shared.site_fields,
        };
        let batch = self.batch.as_mut().expect("no send in flight");
        let from = batch.own_buf().len();
        let mut step = if conn.closes() {
            Step::Close
        } else {
            Step::Next
        };
        match reply {
            Reply::File { status, file } if file.disk.is_none() => {
                let own = batch.own_buf();
                match plan(req, status, &file.rep) {
                    Plan::Full => {
                        response::write_prefix(own, status, &c);
                        batch.push_own(from);
                        let end = if head_only {
                            file.head_len
                        } else {
                            file.bytes.len()
                        };
                        batch.push_shared(&file.bytes, 0..end);
                    }
                    Plan::Ranges(set) => {
                        let body = file.head_len as u64;
                        let parts = set.as_slice();
                        let rep = &file.rep;
                        if let [(first, last)] = parts {
                            response::write_prefix(own, Status::PartialContent, &c);
                            response::write_single_range_fields(
                                own,
                                &rep.file_fields(),
                                *first,
                                *last,
                            );
                            batch.push_own(from);
                            batch.push_shared(
                                &file.bytes,
                                (body + first) as usize..(body + last + 1) as usize,
                            );
                        } else {
                            response::write_prefix(own, Status::PartialContent, &c);
                            let boundary = write_multipart_head(&w, own, rep, &set);
                            batch.push_own(from);
                            for &(first, last) in parts {
                                let mark = batch.own_buf().len();
                                range::write_part_head(
                                    batch.own_buf(),
                                    &boundary,
                                    &rep.content_type,
                                    first,
                                    last,
                                    rep.len,
                                );
                                batch.push_own(mark);
                                batch.push_shared(
                                    &file.bytes,
                                    (body + first) as usize..(body + last + 1) as usize,
                                );
                            }
                            let mark = batch.own_buf().len();
                            range::write_closing(batch.own_buf(), &boundary);
                            batch.push_own(mark);
                        }
                    }
                    other => {
                        write_refusal(own, other, &file.rep, &c, head_only);
                        batch.push_own(from);
                    }
                }
            }
            Reply::File { status, file } => {
                // A large file: the head from the cache, the body by sendfile.
                let rep = &file.rep;
                let own = batch.own_buf();
                match plan(req, status, rep) {
                    Plan::Full => {
                        response::write_prefix(own, status, &c);
                        batch.push_own(from);
                        batch.push_shared(&file.bytes, 0..file.head_len);
                        if !head_only && rep.len > 0 {
                            let parts = vec![Part {
                                head: 0..0,
                                first: 0,
                                len: rep.len,
                            }];
                            step = Step::Stream {
                                file: file.clone(),
                                parts,
                                tail: 0..0,
                                close: conn.closes(),
                            };
                        }
                    }
                    Plan::Ranges(set) => {
                        response::write_prefix(own, Status::PartialContent, &c);
                        let mut parts = Vec::with_capacity(set.len());
                        let mut tail = 0..0;
                        if let [(first, last)] = set.as_slice() {
                            response::write_single_range_fields(
                                own,
                                &rep.file_fields(),
                                *first,
                                *last,
                            );
                            parts.push(Part {
                                head: 0..0,
                                first: *first,
                                len: last - first + 1,
                            });
                        } else {
                            let boundary = write_multipart_head(&w, own, rep, &set);
                            // Part heads wait in `staged`; each is sent before its part.
                            let heads = own.len();
                            for &(first, last) in set.as_slice() {
                                let start = own.len();
                                range::write_part_head(
                                    own,
                                    &boundary,
                                    &rep.content_type,
                                    first,
                                    last,
                                    rep.len,
                                );
                                parts.push(Part {
                                    head: start - heads..own.len() - heads,
                                    first,
                                    len: last - first + 1,
                                });
                            }
                            let start = own.len();
                            range::write_closing(own, &boundary);
                            tail = start - heads..own.len() - heads;
                            self.staged.clear();
                            self.staged.extend(own.drain(heads..));
                        }
                        batch.push_own(from);
                        step = Step::Stream {
                            file: file.clone(),
                            parts,
                            tail,
                            close: conn.closes(),
                        };
                    }
                    other => {
                        write_refusal(own, other, rep, &c, head_only);
                        batch.push_own(from);
                    }
                }
            }
            Reply::Generated { content_type, body } => {
                response::write_generated(batch.own_buf(), &c, content_type, &body, head_only);
                batch.push_own(from);
            }
            Reply::Options => {
                let extra: &[u8] = if w.cfg().cors { CORS_PREFLIGHT } else { b"" };
                response::write_options(batch.own_buf(), &c, extra);
                batch.push_own(from);
            }
            Reply::Redirect => {
                let segment = req.path.rsplit(|&b| b == b'/').next().unwrap_or(b"");
                response::write_directory_redirect(
                    batch.own_buf(),
                    segment,
                    req.query,
                    &c,
                    head_only,
                );
                batch.push_own(from);
            }
            Reply::Error(status) => {
                response::write_error(batch.own_buf(), status, &c, head_only, b"");
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
