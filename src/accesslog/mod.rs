//! The access log (`--access-log PATH|-`): one line per answered request, written without
//! ever blocking a worker.
//!
//! Each worker appends lines to its own buffer ([`WorkerLog`]) and hands the buffer to the
//! process's one writer thread when it reaches [`FLUSH_BYTES`], at least once a second, and
//! at shutdown. The hand-over is a bounded queue ([`QUEUE_BUFFERS`] buffers): when the sink
//! cannot keep up (a full pipe under `docker logs`, a slow disk) the worker drops the
//! buffer's lines and counts them instead of waiting, so memory stays bounded and serving
//! never stalls. A line is never split between buffers, and one worker's lines keep their
//! order. The writer thread does the blocking writes, reopens the file on request
//! (`SIGUSR1`/`SIGHUP`, for logrotate) and reports drops on stderr at most every
//! [`DROP_REPORT_INTERVAL`].
//!
//! Why a thread and not a ring write: a write to a regular file is a blocking operation that
//! io_uring itself hands to a kernel worker thread, and the epoll engine needs a thread
//! anyway; one writer thread keeps both engines on one path.

pub(crate) mod client;
pub(crate) mod line;

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use line::Format;
pub(crate) use line::Record;

/// A worker hands its buffer to the writer once it holds this much.
pub(crate) const FLUSH_BYTES: usize = 64 * 1024;
/// Each buffer's capacity: room for the line that takes it past [`FLUSH_BYTES`] (a line
/// with a long target and user agent), so that appending never grows it.
const BUFFER_BYTES: usize = 2 * FLUSH_BYTES;
/// Buffers the writer hands back to each worker, emptied, for reuse: a worker allocates
/// none while the writer keeps up.
const RETURNED_BUFFERS: usize = 2;
/// And at least this often, when it holds anything.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Buffers waiting for the writer, for the whole process; beyond this, lines are dropped.
const QUEUE_BUFFERS: usize = 64;
/// At most one stderr line about dropped lines per this interval.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

impl Sink {
    /// `-` is standard output; anything else a file path (appended to, created if missing).
    pub fn parse(s: &str) -> Sink {
        if s == "-" {
            Sink::Stdout
        } else {
            Sink::File(PathBuf::from(s))
        }
    }

    fn open(&self) -> io::Result<Output> {
        Ok(match self {
            Sink::Stdout => Output::Stdout(io::stdout()),
            Sink::File(p) => Output::File(OpenOptions::new().create(true).append(true).open(p)?),
        })
    }
}

enum Output {
    Stdout(io::Stdout),
    File(File),
}

impl Output {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(s) => {
                let mut lock = s.lock();
                lock.write_all(bytes)?;
                lock.flush()
            }
            Output::File(f) => f.write_all(bytes),
        }
    }
}

enum Msg {
    /// Lines to write, and where to hand the emptied buffer back.
    Lines(Vec<u8>, SyncSender<Vec<u8>>),
    Reopen,
    /// Everything sent before it is written; then the sender is answered.
    Sync(mpsc::Sender<()>),
}

/// The process's access log: the writer thread and the queue to it.
pub(crate) struct AccessLog {
    tx: SyncSender<Msg>,
    format: Format,
    thread: Option<JoinHandle<()>>,
    /// Lines dropped so far, by every worker (for the stderr report).
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Opens the sink (an error here is a start-up error) and starts the writer thread.
    pub(crate) fn start(sink: Sink, format: Format) -> io::Result<AccessLog> {
        let out = sink.open()?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_BUFFERS);
        let dropped = Arc::new(AtomicU64::new(0));
        let thread = {
            let dropped = dropped.clone();
            std::thread::Builder::new()
                .name("fserve-log".into())
                .spawn(move || writer(rx, sink, out, &dropped))?
        };
        Ok(AccessLog {
            tx,
            format,
            thread: Some(thread),
            dropped,
        })
    }

    /// A handle for one worker's thread.
    pub(crate) fn worker(&self) -> WorkerLog {
        let (back_tx, back) = mpsc::sync_channel(RETURNED_BUFFERS);
        // One spare from the start, so the first hand-over allocates nothing either.
        let _ = back_tx.try_send(Vec::with_capacity(BUFFER_BYTES));
        WorkerLog {
            tx: self.tx.clone(),
            format: self.format,
            buf: RefCell::new(Vec::with_capacity(BUFFER_BYTES)),
            stamp: Cell::new(line::Stamp::default()),
            lines: Cell::new(0),
            dropped: self.dropped.clone(),
            back_tx,
            back,
        }
    }

    /// Asks the writer to reopen the file (after logrotate moved it). Never blocks.
    pub(crate) fn reopen(&self) {
        let _ = self.tx.try_send(Msg::Reopen);
    }

    /// Waits (at most `limit`) until everything queued so far is written.
    pub(crate) fn sync(&self, limit: Duration) {
        let (ack_tx, ack_rx) = mpsc::channel();
        if self.tx.try_send(Msg::Sync(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(limit);
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.sync(Duration::from_secs(2));
        // The writer ends when every sender is gone. It is not joined: a worker left stuck
        // at shutdown may still hold a sender, and a sink that never drains (a full pipe)
        // holds the writer in its write; the process ends it either way.
        let (dead, _) = mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.tx, dead));
        drop(self.thread.take());
    }
}

fn writer(rx: Receiver<Msg>, sink: Sink, mut out: Output, dropped: &AtomicU64) {
    let mut reported = 0u64;
    let mut last_report = Instant::now();
    let mut failing = false;
    loop {
        let msg = match rx.recv_timeout(DROP_REPORT_INTERVAL) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        match msg {
            Some(Msg::Lines(mut bytes, back)) => {
                match out.write_all(&bytes) {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        crate::diag::warn(&format!(
                            "cannot write the access log: {e}; lines are lost until it works again (check the disk or the log's path)"
                        ));
                    }
                    Err(_) => {}
                }
                bytes.clear();
                let _ = back.try_send(bytes);
            }
            Some(Msg::Reopen) => match sink.open() {
                Ok(o) => out = o,
                Err(e) => crate::diag::warn(&format!(
                    "cannot reopen the access log: {e}; still writing to the old file (check the path and its directory's permissions)"
                )),
            },
            Some(Msg::Sync(ack)) => {
                let _ = ack.send(());
            }
            None => {}
        }
        if last_report.elapsed() >= DROP_REPORT_INTERVAL {
            let now = dropped.load(Ordering::Relaxed);
            if now > reported {
                crate::diag::warn(&format!(
                    "access log: {} lines dropped in the last {}s because the log could not keep up; give it a faster sink (a file on local disk) or turn it off",
                    now - reported,
                    DROP_REPORT_INTERVAL.as_secs()
                ));
                reported = now;
            }
            last_report = Instant::now();
        }
    }
}

/// One worker's side of the log: its own buffer, used by its thread alone.
pub(crate) struct WorkerLog {
    tx: SyncSender<Msg>,
    format: Format,
    buf: RefCell<Vec<u8>>,
    /// The date of the last line, rendered.
    stamp: Cell<line::Stamp>,
    lines: Cell<u64>,
    dropped: Arc<AtomicU64>,
    /// Emptied buffers coming back from the writer.
    back_tx: SyncSender<Vec<u8>>,
    back: Receiver<Vec<u8>>,
}

/// What a flush did, for the worker's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    pub(crate) written: u64,
    pub(crate) dropped: u64,
}

impl WorkerLog {
    /// Appends one line; hands the buffer over first if the line would take it past
    /// [`FLUSH_BYTES`], so a line is never split.
    pub(crate) fn append(&self, rec: &Record<'_>) -> Flushed {
        let mut buf = self.buf.borrow_mut();
        let mark = buf.len();
        let mut stamp = self.stamp.get();
        line::write_with(&mut buf, self.format, rec, &mut stamp);
        self.stamp.set(stamp);
        if buf.len() <= FLUSH_BYTES || mark == 0 {
            self.lines.set(self.lines.get() + 1);
            return Flushed::default();
        }
        // Over: hand over what was there before this line; the line starts the next buffer.
        let mut next = self.spare();
        next.extend_from_slice(&buf[mark..]);
        buf.truncate(mark);
        let full = std::mem::replace(&mut *buf, next);
        let lines = self.lines.replace(1);
        drop(buf);
        self.hand_over(full, lines)
    }

    /// An empty buffer: one the writer handed back, else a new one.
    fn spare(&self) -> Vec<u8> {
        self.back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUFFER_BYTES))
    }

    /// Queues `bytes` (holding `lines` lines) for the writer, or drops them if the queue
    /// is full (keeping the buffer for reuse).
    fn hand_over(&self, bytes: Vec<u8>, lines: u64) -> Flushed {
        match self.tx.try_send(Msg::Lines(bytes, self.back_tx.clone())) {
            Ok(()) => Flushed {
                written: lines,
                dropped: 0,
            },
            Err(TrySendError::Full(Msg::Lines(mut bytes, _))) => {
                self.dropped.fetch_add(lines, Ordering::Relaxed);
                bytes.clear();
                let _ = self.back_tx.try_send(bytes);
                Flushed {
                    written: 0,
                    dropped: lines,
                }
            }
            Err(_) => Flushed {
                written: 0,
                dropped: lines,
            },
        }
    }

    /// Hands whatever is buffered to the writer, or drops it if the queue is full.
    pub(crate) fn flush(&self) -> Flushed {
        if self.buf.borrow().is_empty() {
            return Flushed::default();
        }
        let next = self.spare();
        let full = std::mem::replace(&mut *self.buf.borrow_mut(), next);
        self.hand_over(full, self.lines.replace(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn rec(target: &[u8]) -> Record<'_> {
        Record {
            remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
            unix_secs: 0,
            millis: 0,
            method: b"GET",
            target,
            protocol: b"HTTP/1.1",
            status: 200,
            body_bytes: 1,
            duration_us: 1,
            referer: None,
            user_agent: None,
            content_encoding: None,
            cache_hit: false,
            worker: 0,
        }
    }

    #[test]
    fn lines_reach_the_file_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(Sink::File(path.clone()), Format::Common).unwrap();
        let w = log.worker();
        let long = vec![b'a'; 1000];
        let mut written = 0;
        for i in 0..500 {
            let mut target = format!("/{i}/").into_bytes();
            target.extend_from_slice(&long);
            written += w.append(&rec(&target)).written;
        }
        written += w.flush().written;
        assert_eq!(written, 500);
        log.sync(Duration::from_secs(5));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 500);
        for (i, l) in lines.iter().enumerate() {
            assert!(l.contains(&format!("\"GET /{i}/aaa")), "line {i}: {l}");
            assert!(l.ends_with(" 200 1"), "line {i} was split: {l}");
        }
    }

    #[test]
    fn reopen_follows_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(Sink::File(path.clone()), Format::Common).unwrap();
        let w = log.worker();
        w.append(&rec(b"/before"));
        w.flush();
        log.sync(Duration::from_secs(5));
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.reopen();
        w.append(&rec(b"/after"));
        w.flush();
        log.sync(Duration::from_secs(5));
        let old = std::fs::read_to_string(dir.path().join("access.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains("/before") && !old.contains("/after"));
        assert!(new.contains("/after") && !new.contains("/before"));
    }

    #[test]
    fn a_sink_that_never_drains_drops_lines_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        // A reader that never reads keeps the FIFO open, so the writer blocks once the
        // pipe is full.
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags_nonblock()
            .open(&fifo)
            .unwrap();
        let log = AccessLog::start(Sink::File(fifo), Format::Combined).unwrap();
        let w = log.worker();
        let target = vec![b'x'; 4000];
        let started = Instant::now();
        let mut dropped = 0;
        for _ in 0..((QUEUE_BUFFERS + 8) * FLUSH_BYTES / 4000 + 100) {
            dropped += w.append(&rec(&target)).dropped;
        }
        dropped += w.flush().dropped;
        assert!(dropped > 0, "nothing was dropped");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the worker waited"
        );
        // The writer is stuck in a write to the full pipe: leak it rather than join.
        std::mem::forget(log);
    }

    trait NonBlock {
        fn custom_flags_nonblock(&mut self) -> &mut Self;
    }
    impl NonBlock for OpenOptions {
        fn custom_flags_nonblock(&mut self) -> &mut Self {
            use std::os::unix::fs::OpenOptionsExt;
            self.custom_flags(libc::O_NONBLOCK)
        }
    }
}
