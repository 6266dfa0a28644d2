//! One connection, from accept to close: the I/O loop. It takes request heads from the
//! receive buffer (recv_buf.rs), asks the URL policy and the file store what to serve
//! (respond.rs, store.rs), has the compose step decide the response (compose.rs), and
//! walks the segments it returns: memory into the send batch, file ranges by sendfile
//! (wire.rs; a small range whose pages are cached is read into the batch instead). It
//! makes no HTTP decision of its own.
//!
//! Pipelined answers are queued and go out in one SENDMSG. Every wait is bounded: the
//! request head by `--header-timeout` (a deadline from its first byte), an idle connection
//! by `--keepalive-timeout`, a send that makes no progress by `--send-timeout`.

use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::clock::Now;
use super::compose::{self, Composed, Context, Segment, Segments};
use super::observe::{self, Answer, Answers};
use super::parking;
use super::recv_buf::{INITIAL_RECV_BYTES, MIN_RECV_SPACE, RecvBuf};
use super::respond::{self, Reply};
use super::store::CachedFile;
use super::wire::{GiveUp, Recv, Wire};
use super::worker::{ConnGuard, Worker};
use crate::engine::{self, Socket};
use crate::fs::{Extent, Held};
use crate::http::Status;
use crate::http::request::{self, Method, Request};
use crate::metrics::CloseReason;

/// How long an idle connection keeps a receive (and its buffer) posted before it waits for
/// readability alone.
const HOT_IDLE: Duration = Duration::from_millis(250);

/// Bytes of a file sent from disk that one response may read into the send batch, when
/// they are in the page cache, rather than send by sendfile after the head: one system call
/// instead of three, and the head and the range leave in one send. Counted over all the
/// ranges of a response, so a connection's send buffer grows by at most this for it.
const READ_RANGE_MAX: u64 = 16 * 1024;

/// The first capacity of the path scratch: most paths (with a variant's suffix) fit, so a
/// connection allocates it once.
const KEY_INITIAL_BYTES: usize = 128;

pub(super) async fn serve(guard: ConnGuard, sock: Socket) {
    // With TCP_DEFER_ACCEPT a connection is handed over once its first request has arrived:
    // read it now, without a receive through the ring and a wake-up to hear its answer.
    // Nothing yet, the end, or an error: the loop's first receive meets it as before.
    let mut buf = Vec::with_capacity(INITIAL_RECV_BYTES);
    let _ = sock.try_recv(&mut buf);
    let conn = Conn::new(guard, sock, false);
    drive(conn, buf, false).await;
}

/// Runs the connection until it closes, or parks it when it goes idle.
async fn drive(mut conn: Box<Conn>, buf: Vec<u8>, resumed: bool) {
    let exit = conn.run(buf, resumed).await;
    // Whatever ended the loop, what was answered is counted and logged.
    conn.answers.sent(&conn.w);
    match exit {
        Ok(Exit::Done(why)) => conn.guard.closing(why),
        Ok(Exit::Park(deadline)) => {
            // Only the socket goes along: the batch, the timer and the buffers are freed.
            let Conn { wire, guard, .. } = *conn;
            let (sock, nodelay) = wire.into_socket();
            engine::spawn(park(guard, sock, nodelay, deadline));
        }
        Err(e) => {
            conn.guard.closing(close_reason(&e));
            log_error(&e);
        }
    }
}

/// How an I/O error that ends a connection is counted.
fn close_reason(e: &io::Error) -> CloseReason {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected => {
            CloseReason::Client
        }
        TimedOut => CloseReason::SendTimeout,
        _ => CloseReason::Error,
    }
}

/// An idle connection waits for its next request in a small task of its own (the task
/// that served it, with its larger future, has ended), keeping only its socket and its
/// place in the worker's count: readable with a request, a new task serves it again.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice"
)]
fn park(
    guard: ConnGuard,
    sock: Socket,
    nodelay: bool,
    deadline: Instant,
) -> impl Future<Output = ()> {
    // An async block, not an async fn: an async fn keeps each argument twice (as argument
    // and as local), and every parked connection pays for this future.
    async move {
        let w = guard.worker();
        match parking::wait(&w.parking, w.stopping.get(), deadline, &sock).await {
            Some(buf) => engine::spawn(drive(Conn::new(guard, sock, nodelay), buf, true)),
            None => guard.closing(if w.stopping.get() {
                CloseReason::Shutdown
            } else if Instant::now() >= deadline {
                CloseReason::KeepaliveTimeout
            } else {
                CloseReason::Client
            }),
        }
    }
}

/// Why [`Conn::run`] returned.
enum Exit {
    Done(CloseReason),
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
        crate::diag::warn(&format!("connection error: {e}"));
    }
}

/// A serving connection's state. It lives in a box of its own: the serving task's future
/// then holds a pointer to it rather than the state itself (an async function keeps an
/// argument it owns twice, once as argument and once as local), so spawning a connection
/// and resuming a parked one move a small future, and the rare long waits (a file sent by
/// sendfile, an error's linger) are boxed where they happen, so they do not widen it.
struct Conn {
    w: Rc<Worker>,
    wire: Wire,
    /// Scratch for the normalised path of each request.
    key: Vec<u8>,
    /// The head bytes of the response being composed; its own segments are copied into
    /// the send batch in sending order.
    head: Vec<u8>,
    segs: Segments,
    /// Answered requests whose bytes are not sent yet (then counted and logged).
    answers: Answers,
    /// Counts the connection for its whole life (the worker's cap and drain).
    guard: ConnGuard,
}

/// How a keep-alive wait ended.
enum Idle {
    /// Bytes are in the buffer.
    Received,
    /// Idle past [`HOT_IDLE`]: buffers released, park until this keep-alive deadline.
    Park(Instant),
    /// Timed out, shut down, or the peer left: close.
    Closed(CloseReason),
}

impl Conn {
    /// `nodelay`: TCP_NODELAY is already set (a connection that was parked).
    fn new(guard: ConnGuard, sock: Socket, nodelay: bool) -> Box<Conn> {
        let w = guard.worker().clone();
        Box::new(Conn {
            wire: Wire::new(sock, nodelay, w.cfg().send_timeout),
            w,
            key: Vec::with_capacity(KEY_INITIAL_BYTES),
            head: Vec::new(),
            segs: Segments::new(),
            answers: Answers::default(),
            guard,
        })
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
        // When the first byte of the next request head arrived (for its duration).
        let mut first_byte = (!rb.unparsed().is_empty()).then(Instant::now);
        loop {
            let now = Now::read();
            let mut close = false;
            while !close && rb.skip_discarded() {
                let started = *first_byte.get_or_insert_with(Instant::now);
                let (head_len, body_len, composed) = match request::parse(rb.unparsed(), max_head) {
                    Ok(None) => break,
                    Err(reject) => {
                        self.send_closing_error(reject.status, now, rb.unparsed(), started)
                            .await?;
                        return self
                            .wire
                            .linger(rb.into_vec())
                            .await
                            .map(|()| Exit::Done(CloseReason::Limit));
                    }
                    Ok(Some(req)) => {
                        answered = true;
                        let head = &rb.unparsed()[..req.head_len];
                        let composed = self.answer(&req, head, now, started).await?;
                        (req.head_len, req.body_len, composed)
                    }
                };
                rb.consume(head_len, body_len);
                // A pipelined head after it arrived with it (or before it was answered).
                if rb.unparsed().is_empty() {
                    first_byte = None;
                }
                close = composed.close;
                if close {
                    self.wire.will_close();
                }
                // SECURITY: a client that pipelines and never reads is not read from
                // until what it has queued (cache buffers included) is sent.
                if !close && self.wire.is_full() {
                    self.wire.flush(false).await?;
                    self.answers.sent(&self.w);
                }
            }
            self.wire.flush(false).await?;
            self.answers.sent(&self.w);
            if close {
                // Pipelined bytes after the last answer: drain them so the close is clean.
                if rb.has_leftover() {
                    return self
                        .wire
                        .linger(rb.into_vec())
                        .await
                        .map(|()| Exit::Done(CloseReason::Limit));
                }
                return Ok(Exit::Done(CloseReason::Limit));
            }
            let idle = rb.compact(max_head);
            if idle && self.w.stopping.get() {
                return Ok(Exit::Done(CloseReason::Shutdown));
            }
            if idle && answered {
                let mut buf = rb.take();
                let waited = self
                    .wait_idle(&mut buf, self.w.cfg().keepalive_timeout)
                    .await;
                rb.put(buf);
                match waited? {
                    Idle::Closed(why) => return Ok(Exit::Done(why)),
                    Idle::Received => {
                        let now = Instant::now();
                        first_byte = Some(now);
                        head_deadline = now + self.w.cfg().header_timeout;
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
            let (res, got) = self
                .wire
                .recv(rb.take(), head_deadline, stop, GiveUp::Shutdown)
                .await;
            rb.put(got);
            match res? {
                Recv::Data => {
                    first_byte.get_or_insert_with(Instant::now);
                }
                Recv::Eof => return Ok(Exit::Done(CloseReason::Client)),
                Recv::Stopped => return Ok(Exit::Done(CloseReason::Shutdown)),
                // Nothing of a request yet: close without a word.
                Recv::TimedOut if idle => return Ok(Exit::Done(CloseReason::HeaderTimeout)),
                Recv::TimedOut => {
                    // RFC 9110 §15.5.9: tell a client whose head never finished why we close.
                    let started = first_byte.unwrap_or_else(Instant::now);
                    self.send_closing_error(
                        Status::RequestTimeout,
                        Now::read(),
                        rb.unparsed(),
                        started,
                    )
                    .await?;
                    return Ok(Exit::Done(CloseReason::HeaderTimeout));
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
        let now = Instant::now();
        let deadline = now + keepalive;
        let hot_deadline = deadline.min(now + HOT_IDLE);
        if buf.capacity() < MIN_RECV_SPACE {
            buf.reserve_exact(INITIAL_RECV_BYTES);
        }
        let stop = Some(&self.w.stop);
        let (res, got) = self
            .wire
            .recv(std::mem::take(buf), hot_deadline, stop, GiveUp::Cancel)
            .await;
        *buf = got;
        match res? {
            Recv::Data => return Ok(Idle::Received),
            Recv::Eof => return Ok(Idle::Closed(CloseReason::Client)),
            Recv::Stopped => return Ok(Idle::Closed(CloseReason::Shutdown)),
            Recv::TimedOut if hot_deadline >= deadline => {
                return Ok(Idle::Closed(CloseReason::KeepaliveTimeout));
            }
            Recv::TimedOut => {}
        }
        // Cold: park (the connection keeps only its socket).
        Ok(Idle::Park(deadline))
    }

    /// Queues an error after which the connection closes (a rejected head, a timeout).
    /// Sends an error after which the connection closes, for a request that was never
    /// admitted (`unparsed`: what had arrived of it, logged as it came), and counts it.
    async fn send_closing_error(
        &mut self,
        status: Status,
        now: Now,
        unparsed: &[u8],
        started: Instant,
    ) -> io::Result<()> {
        let composed = self.queue_closing_error(status, now);
        self.answers
            .push_rejected(&self.w, self.guard.peer, unparsed, composed, started);
        self.wire.will_close();
        self.wire.flush(false).await?;
        self.answers.sent(&self.w);
        Ok(())
    }

    fn queue_closing_error(&mut self, status: Status, now: Now) -> Composed {
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
        let composed =
            compose::compose_closing_error(status, &ctx, self.wire.own_buf(), &mut self.segs);
        for seg in self.segs.as_slice() {
            if let Segment::Own(r) = seg {
                self.wire.queue_written(r.clone());
            }
        }
        composed
    }

    /// Answers an admitted request whose head is `head`: composes the response, then
    /// queues and sends its segments.
    async fn answer(
        &mut self,
        req: &Request<'_>,
        head: &[u8],
        now: Now,
        started: Instant,
    ) -> io::Result<Composed> {
        if req.fields.repeated != 0 {
            let mut joined = Vec::new();
            let mut req = req.clone();
            request::join_repeated(head, &mut req.fields, &mut joined);
            // Boxed: repeated fields are rare, and their copy would widen every future.
            return Box::pin(self.answer_joined(&req, head, now, started)).await;
        }
        self.answer_joined(req, head, now, started).await
    }

    async fn answer_joined(
        &mut self,
        req: &Request<'_>,
        head: &[u8],
        now: Now,
        started: Instant,
    ) -> io::Result<Composed> {
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
        let file = match &reply {
            Reply::File { file, .. } => Some(file),
            _ => None,
        };
        // A response from memory is composed straight into the send batch; one with file
        // segments into `head`, as sending the batch before a file range empties it.
        let in_batch = file.is_none_or(|f| !f.sent_from_file());
        let out = if in_batch {
            self.wire.own_buf()
        } else {
            self.head.clear();
            &mut self.head
        };
        let composed = compose::compose(req, &reply.view(), &ctx, out, &mut self.segs);
        let logged = w.log.is_some();
        let answer = Answer {
            started,
            composed,
            cache_hit: file.is_some() && w.store.last_was_hit(),
            encoding: file
                .filter(|_| logged && matches!(composed.status.code(), 200 | 206))
                .and_then(|f| observe::content_encoding(&f.rep.fields)),
        };
        // Counted and logged once sent (or once the connection fails).
        self.answers.push(&w, self.guard.peer, req, head, answer);
        if let Some((mem, held, from, len)) = self.whole_in_memory(file, in_batch, composed, now) {
            // Boxed: as a file's stream below. The copy is held until it is sent.
            Box::pin(self.wire.send_file(mem.file(), from, len)).await?;
            drop(held);
            return Ok(composed);
        }
        self.send_segments(file, in_batch).await?;
        Ok(composed)
    }

    /// For a whole 200 of a body in the worker's memory file, with nothing queued before
    /// it: the copy of the body to send from (held until sent) and where its head and body
    /// lie there, one after the other, so that one sendfile sends the response. A new head
    /// (so a new copy) is written once enough responses of a second that keep their
    /// connection ask for it (its Date changes each second: [`Extent::head_due`]); a
    /// response whose head differs from the one there (before that, or it closes, or it is
    /// an HTTP/1.0 keep-alive) is sent as its segments.
    fn whole_in_memory<'f>(
        &mut self,
        file: Option<&'f Rc<CachedFile>>,
        in_batch: bool,
        composed: Composed,
        now: Now,
    ) -> Option<(&'f Extent, Held, u64, u64)> {
        let file = file?;
        let mem = file.mem.as_ref()?;
        let [
            Segment::Own(prefix),
            Segment::Shared(fields),
            Segment::File { offset: 0, len },
        ] = self.segs.as_slice()
        else {
            return None;
        };
        if in_batch || *len != mem.len() || fields.start != 0 || !self.wire.is_empty() {
            return None;
        }
        let parts = [&self.head[prefix.clone()], &file.bytes[fields.clone()]];
        let (held, from) = match mem.after_head(parts) {
            Some(found) => found,
            None if !composed.close
                && mem.head_tag() != now.unix_secs
                && mem.head_due(now.unix_secs) =>
            {
                mem.write_head(parts, now.unix_secs).ok()?;
                mem.after_head(parts)?
            }
            None => return None,
        };
        let whole = held.offset() - from + len;
        Some((mem, held, from, whole))
    }

    /// Walks the segments of a response (for `file`, if it has one): memory goes into the
    /// batch; before bytes from disk, the batch is sent, then the file by sendfile.
    /// `in_batch`: the own bytes were composed into the batch, not into `head`.
    async fn send_segments(
        &mut self,
        file: Option<&Rc<CachedFile>>,
        in_batch: bool,
    ) -> io::Result<()> {
        let mut read_budget = READ_RANGE_MAX;
        for i in 0..self.segs.as_slice().len() {
            match (self.segs.as_slice()[i].clone(), file) {
                (Segment::Own(r), _) if in_batch => self.wire.queue_written(r),
                (Segment::Own(r), _) => self.wire.queue_own(&self.head[r]),
                (Segment::Shared(r), Some(file)) => self.wire.queue_shared(&file.bytes, r),
                (Segment::Body(r), Some(file)) => {
                    let body = file
                        .apart
                        .as_ref()
                        .expect("a body segment has a body apart");
                    self.wire.queue_process(body, r);
                }
                (Segment::File { offset, len }, Some(file)) if file.mem.is_some() => {
                    let mem = file.mem.as_ref().expect("checked");
                    // A short range is copied: that costs less than a send of its own.
                    if len <= read_budget && len < mem.len() {
                        read_budget -= len;
                        self.wire.queue_copy(mem, offset, len as usize)?;
                        continue;
                    }
                    self.wire.flush(true).await?;
                    // Held until sent: a new head meanwhile moves the body to a new copy.
                    let held = mem.hold();
                    let from = held.offset() + offset;
                    Box::pin(self.wire.stream(mem.file(), from, len, true)).await?;
                    drop(held);
                }
                (Segment::File { offset, len }, Some(file)) => {
                    let disk = file.disk.as_ref().expect("a large file is held open");
                    if len <= read_budget && self.wire.queue_resident(disk, offset, len as usize) {
                        read_budget -= len;
                        continue;
                    }
                    self.wire.flush(true).await?;
                    // Boxed: a large file's stream is rare and would double the future.
                    if let Err(e) = Box::pin(self.wire.stream(disk, offset, len, false)).await {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            // It shrank: have the next request look at it afresh.
                            file.suspect.set(true);
                        }
                        return Err(e);
                    }
                }
                (_, None) => unreachable!("only a file's response has file segments"),
            }
        }
        Ok(())
    }
}
