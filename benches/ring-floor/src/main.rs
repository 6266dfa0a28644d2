//! The floor under fserve's CPU per request: minimal HTTP/1.1 keep-alive responders that do
//! only what any server must (receive a request, send a fixed answer: 1 KiB on the ring, any
//! size on the body responders), with none of fserve's HTTP work. benches/ring-floor.sh runs them beside nginx and fserve.
//!
//! `ring-floor MODE PORT [BODY_BYTES]`, MODE one of:
//! - `raw`: a hand-written ring loop, one RECV per request and one SEND per answer, parked
//!   in epoll on the ring's fd between batches (tokio-uring's way of waiting);
//! - `raw-multishot`: the same with one multishot RECV per connection into a provided-buffer
//!   ring (what vendoring tokio-uring would allow);
//! - `raw-enter`: `raw`, but waiting in `io_uring_enter(GETEVENTS)` instead of epoll;
//! - `tokio-uring`: a task per connection on tokio-uring 0.5, one read and one write op each;
//! - `tokio-uring-timers`: that, with a per-connection tokio timer reset before every wait
//!   (as fserve bounds every receive and send);
//! - `raw-defer`: `raw-enter` on a ring set up with IORING_SETUP_DEFER_TASKRUN, whose
//!   completions wait for the loop's next `io_uring_enter` instead of interrupting it (what a
//!   patched tokio-uring driver could use);
//! - `ring-sendfile`: `raw`'s ring receives, but each answer (BODY_BYTES, default 1024) goes
//!   by a direct `sendfile` from a memory file, and a full socket is waited for by a ring
//!   poll: the shape of fserve's io_uring engine for cached files of 8 KiB and more;
//! - `ring-sendfile-defer`: that, on a DEFER_TASKRUN ring waited on in `io_uring_enter`;
//! - `raw-defer-eventfd`, `ring-sendfile-defer-eventfd`: `raw-defer` and `ring-sendfile-defer`
//!   waiting the only way a driver under tokio's epoll reactor can on a DEFER_TASKRUN ring: in
//!   epoll on an eventfd registered with the ring (edge-triggered, never read), then an
//!   `io_uring_enter(GETEVENTS)` that submits and runs the deferred completions;
//! - `sendfile-memfd`: an epoll loop answering with BODY_BYTES (default 1024) by one
//!   `sendfile` of head and body from a memory file, as fserve sends cached files of 8 KiB
//!   and more;
//! - `sendfile-file`: the same loop, the answer in a file on a disk file system (an unlinked
//!   file in `TMPDIR`, written once, so in the page cache): the pages nginx sends a site's
//!   files from, which a file system with large folios (ext4 since Linux 6.16, XFS) keeps in
//!   folios of more than one page;
//! - `sendfile-memfd-thp`: `sendfile-memfd` with the memory file's pages collapsed into one
//!   transparent huge page (`MADV_COLLAPSE` on a mapping of it, which needs no THP setting
//!   other than shmem's "deny"), answers up to 2 MiB;
//! - `vmsplice-thp`: the same loop, the answer in anonymous memory on a transparent huge
//!   page, `vmsplice`d into a pipe of the connection's and `splice`d into the socket.
//!
//! A request is counted at each blank line that ends a head (no bodies, no parsing): enough
//! for wrk's GETs, and nothing a real server could skip.

use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use tokio::time::Sleep;

/// The answer: a plausible head and 1 KiB of body, the size of the benchmark's small file.
fn answer() -> &'static [u8] {
    let mut a = b"HTTP/1.1 200 OK\r\nServer: ring-floor\r\nContent-Type: text/plain\r\n\
Content-Length: 1024\r\nDate: Wed, 02 Dec 2026 12:00:00 GMT\r\n\r\n"
        .to_vec();
    a.resize(a.len() + 1024, b'x');
    Box::leak(a.into_boxed_slice())
}

/// Counts the heads ended in `data`, carrying the last three bytes across reads.
fn heads_ended(tail: &mut [u8; 3], data: &[u8]) -> usize {
    let mut n = 0;
    for &b in data {
        if *tail == *b"\r\n\r" && b == b'\n' {
            n += 1;
        }
        *tail = [tail[1], tail[2], b];
    }
    n
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, port, body_bytes) = match &args[..] {
        [_, mode, port] => (
            mode.as_str(),
            port.parse::<u16>().expect("PORT: a number"),
            1024,
        ),
        [_, mode, port, body] => (
            mode.as_str(),
            port.parse::<u16>().expect("PORT: a number"),
            body.parse::<usize>().expect("BODY_BYTES: a number"),
        ),
        _ => {
            eprintln!(
                "usage: ring-floor raw|raw-multishot|raw-enter|tokio-uring|tokio-uring-timers PORT\n       \
                 ring-floor raw-defer|raw-defer-eventfd PORT\n       \
                 ring-floor sendfile-memfd|sendfile-file|sendfile-memfd-thp|vmsplice-thp|ring-sendfile|ring-sendfile-defer|ring-sendfile-defer-eventfd PORT [BODY_BYTES]"
            );
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1:PORT");
    match mode {
        "raw" => raw::run(listener, raw::Opts::default()),
        "raw-multishot" => raw::run(listener, raw::Opts::multishot()),
        "raw-enter" => raw::run(listener, raw::Opts::enter()),
        "raw-defer" => raw::run(listener, raw::Opts::defer()),
        "ring-sendfile" => raw::run(listener, raw::Opts::sendfile(body_bytes, false)),
        "ring-sendfile-defer" => raw::run(listener, raw::Opts::sendfile(body_bytes, true)),
        "raw-defer-eventfd" => raw::run(listener, raw::Opts::default().via_eventfd()),
        "ring-sendfile-defer-eventfd" => raw::run(
            listener,
            raw::Opts::sendfile(body_bytes, true).via_eventfd(),
        ),
        "tokio-uring" => on_tokio_uring(listener, false),
        "tokio-uring-timers" => on_tokio_uring(listener, true),
        "sendfile-memfd" => body::run(listener, body::Source::SendfileMemfd, body_bytes),
        "sendfile-file" => body::run(listener, body::Source::SendfileFile, body_bytes),
        "sendfile-memfd-thp" => body::run(listener, body::Source::SendfileMemfdThp, body_bytes),
        "vmsplice-thp" => body::run(listener, body::Source::VmspliceThp, body_bytes),
        other => panic!("unknown mode {other}"),
    }
    .expect("ring-floor failed");
}

fn on_tokio_uring(listener: TcpListener, timers: bool) -> io::Result<()> {
    let answer = answer();
    let mut setup = tokio_uring::uring_builder();
    // fserve's ring flags.
    setup
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_single_issuer();
    tokio_uring::builder()
        .entries(4096)
        .uring_builder(&setup)
        .start(async move {
            let listener = tokio_uring::net::TcpListener::from_std(listener);
            loop {
                let (sock, _) = listener.accept().await?;
                sock.set_nodelay(true)?;
                tokio_uring::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    let mut tail = [0u8; 3];
                    let mut timer = Box::pin(tokio::time::sleep(Duration::ZERO));
                    loop {
                        let Some((res, b)) =
                            bounded(timers.then_some(&mut timer), sock.read(buf)).await
                        else {
                            return;
                        };
                        buf = b;
                        let n = match res {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        for _ in 0..heads_ended(&mut tail, &buf[..n]) {
                            let write = sock.write_all(answer);
                            let Some((Ok(()), _)) =
                                bounded(timers.then_some(&mut timer), write).await
                            else {
                                return;
                            };
                        }
                    }
                });
            }
        })
}

/// `op`, raced against `timer` reset to a minute from now when a timer is given (as fserve
/// bounds every wait); `None` when the timer fired first.
async fn bounded<T>(timer: Option<&mut Pin<Box<Sleep>>>, op: impl Future<Output = T>) -> Option<T> {
    let Some(timer) = timer else {
        return Some(op.await);
    };
    timer
        .as_mut()
        .reset(tokio::time::Instant::now() + Duration::from_secs(60));
    tokio::pin!(op);
    tokio::select! {
        biased;
        r = &mut op => Some(r),
        _ = timer.as_mut() => None,
    }
}

mod raw {
    use super::*;

    const ACCEPT: u64 = 1;
    const RECV: u64 = 2;
    const SEND: u64 = 3;
    const WRITABLE: u64 = 4;
    /// IORING_ENTER_GETEVENTS (the io-uring crate keeps its constants private).
    const GETEVENTS: u32 = 1;

    /// How the loop runs.
    #[derive(Default)]
    pub(super) struct Opts {
        multishot: bool,
        /// Wait in io_uring_enter(GETEVENTS) rather than in epoll on the ring's fd.
        enter: bool,
        /// IORING_SETUP_DEFER_TASKRUN (with `enter`: deferred work runs only there).
        defer: bool,
        /// With `defer` and not `enter`: wait in epoll on an eventfd registered with the ring.
        eventfd: bool,
        /// Answer with this many body bytes by sendfile from a memory file, not a ring send.
        sendfile: Option<usize>,
    }

    impl Opts {
        pub(super) fn multishot() -> Opts {
            Opts {
                multishot: true,
                ..Opts::default()
            }
        }
        pub(super) fn enter() -> Opts {
            Opts {
                enter: true,
                ..Opts::default()
            }
        }
        pub(super) fn defer() -> Opts {
            Opts {
                enter: true,
                defer: true,
                ..Opts::default()
            }
        }
        pub(super) fn sendfile(body: usize, defer: bool) -> Opts {
            Opts {
                enter: defer,
                defer,
                sendfile: Some(body),
                ..Opts::default()
            }
        }
        /// `self` on a DEFER_TASKRUN ring waited for through an eventfd in epoll.
        pub(super) fn via_eventfd(self) -> Opts {
            Opts {
                enter: false,
                defer: true,
                eventfd: true,
                ..self
            }
        }
    }
    /// Provided buffers (a power of two) and their size, for the multishot receive.
    const BUFS: u16 = 4096;
    const BUF_LEN: usize = 2048;
    const GROUP: u16 = 1;

    struct Conn {
        /// Tells a completion for this connection from one for an earlier user of its fd.
        generation: u32,
        /// The single-shot receive's buffer (its heap block does not move while posted).
        buf: Vec<u8>,
        tail: [u8; 3],
        sends_in_flight: usize,
        /// Sendfile answers owed, and how far into the current one.
        owed: usize,
        pos: usize,
    }

    fn user_data(kind: u64, generation: u32, fd: RawFd) -> u64 {
        (kind << 56) | (u64::from(generation & 0xff_ffff) << 32) | u64::from(fd as u32)
    }

    struct Loop {
        ring: IoUring,
        conns: Vec<Option<Conn>>,
        generation: u32,
        multishot: bool,
        answer: &'static [u8],
        /// The sendfile answer: a memory file holding head and body, and its length.
        file: Option<(std::fs::File, usize)>,
    }

    impl Loop {
        fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
            loop {
                // SAFETY: every entry pushed here names memory that outlives its operation:
                // the static answer, a connection's receive buffer (kept until its receive
                // completes: a connection is dropped only on a completion with nothing else
                // posted that reads its buffer), or no memory at all (accept, multishot
                // receive into the leaked provided buffers).
                if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                    return Ok(());
                }
                self.ring.submit()?;
            }
        }

        fn post_accept(&mut self, listener: RawFd) -> io::Result<()> {
            let e = opcode::Accept::new(
                types::Fd(listener),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(ACCEPT, 0, listener));
            self.push(e)
        }

        fn post_recv(&mut self, fd: RawFd) -> io::Result<()> {
            let multishot = self.multishot;
            let Some(c) = self.conns[fd as usize].as_mut() else {
                return Ok(());
            };
            let ud = user_data(RECV, c.generation, fd);
            let e = if multishot {
                opcode::RecvMulti::new(types::Fd(fd), GROUP).build()
            } else {
                opcode::Recv::new(types::Fd(fd), c.buf.as_mut_ptr(), BUF_LEN as u32).build()
            };
            self.push(e.user_data(ud))
        }

        /// Sends what `fd` owes by sendfile; a full socket is waited for by a ring poll, and
        /// once nothing is owed the next receive goes.
        fn pump(&mut self, fd: RawFd) -> io::Result<()> {
            let (file, len) = self.file.as_ref().expect("a sendfile loop");
            let (mfd, len) = (file.as_raw_fd(), *len);
            let Some(c) = self.conns[fd as usize].as_mut() else {
                return Ok(());
            };
            while c.owed > 0 {
                let mut off = c.pos as libc::off_t;
                // SAFETY: both descriptors are open; `off` is a live local.
                let n = unsafe { libc::sendfile(fd, mfd, &mut off, len - c.pos) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::WouldBlock {
                        let ud = user_data(WRITABLE, c.generation, fd);
                        let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32)
                            .build()
                            .user_data(ud);
                        return self.push(e);
                    }
                    // Nothing of this connection's is in flight here: close it.
                    self.close(fd);
                    return Ok(());
                }
                c.pos += n as usize;
                if c.pos == len {
                    c.pos = 0;
                    c.owed -= 1;
                }
            }
            self.post_recv(fd)
        }

        fn close(&mut self, fd: RawFd) {
            if self.conns[fd as usize].take().is_some() {
                // SAFETY: `fd` is the connection's own descriptor, closed once (its slot is
                // emptied first).
                unsafe { libc::close(fd) };
            }
        }
    }

    pub(super) fn run(listener: TcpListener, opts: Opts) -> io::Result<()> {
        let Opts {
            multishot,
            enter,
            defer,
            eventfd,
            sendfile,
        } = opts;
        let mut setup = IoUring::builder();
        if defer {
            setup.setup_defer_taskrun();
        } else {
            setup.setup_coop_taskrun().setup_taskrun_flag();
        }
        setup.setup_single_issuer();
        let file = match sendfile {
            Some(body) => {
                let mut bytes = format!(
                    "HTTP/1.1 200 OK\r\nServer: ring-floor\r\nContent-Type: \
                     application/octet-stream\r\nContent-Length: {body}\r\n\
                     Date: Wed, 02 Dec 2026 12:00:00 GMT\r\n\r\n"
                )
                .into_bytes();
                bytes.resize(bytes.len() + body, b'x');
                let mut file = body::memory_file()?;
                io::Write::write_all(&mut file, &bytes)?;
                Some((file, bytes.len()))
            }
            None => None,
        };
        let mut lp = Loop {
            ring: setup.build(4096)?,
            conns: Vec::new(),
            generation: 0,
            multishot,
            answer: answer(),
            file,
        };
        let lfd = listener.as_raw_fd();

        // The provided-buffer ring: one page-aligned array of entries, and the buffers.
        let pool: &'static mut [u8] =
            Box::leak(vec![0u8; BUFS as usize * BUF_LEN].into_boxed_slice());
        let entries = std::mem::size_of::<types::BufRingEntry>() * BUFS as usize;
        // SAFETY: an anonymous private mapping, page-aligned as the kernel requires of a
        // buffer ring; never unmapped (the process ends with it).
        let br = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                entries,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        assert_ne!(br, libc::MAP_FAILED, "mmap of the buffer ring");
        let br = br.cast::<types::BufRingEntry>();
        let mut br_tail: u16 = 0;
        let give_back = |br_tail: &mut u16, bid: u16| {
            // SAFETY: `br` holds BUFS entries and the index is masked into range; buffer
            // `bid` is `pool`'s slice at bid * BUF_LEN, BUF_LEN long; the tail is published
            // with release ordering after the entry is written, as the kernel reads it.
            unsafe {
                let e = &mut *br.add((*br_tail & (BUFS - 1)) as usize);
                e.set_addr(pool.as_ptr().add(bid as usize * BUF_LEN) as u64);
                e.set_len(BUF_LEN as u32);
                e.set_bid(bid);
                *br_tail = br_tail.wrapping_add(1);
                let tail = types::BufRingEntry::tail(br).cast_mut();
                AtomicU16::from_ptr(tail).store(*br_tail, Ordering::Release);
            }
        };
        if multishot {
            // SAFETY: `br` is a live, page-aligned mapping of BUFS entries that stays mapped
            // for the life of the ring.
            unsafe {
                lp.ring
                    .submitter()
                    .register_buf_ring(br as u64, BUFS, GROUP)?
            };
            for bid in 0..BUFS {
                give_back(&mut br_tail, bid);
            }
        }

        // tokio-uring's wait: epoll on the ring's fd, then reap.
        // SAFETY: plain system calls on descriptors this function owns.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 0,
        };
        let waited = if eventfd {
            // SAFETY: a plain system call; the descriptor lives as long as the process.
            let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            assert!(efd >= 0, "eventfd: {}", io::Error::last_os_error());
            lp.ring.submitter().register_eventfd(efd)?;
            // Edge-triggered: every signal is an event, so the counter is never read.
            ev.events |= libc::EPOLLET as u32;
            efd
        } else {
            lp.ring.as_raw_fd()
        };
        // SAFETY: as above; `ev` is a live local.
        unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, waited, &mut ev) };

        lp.post_accept(lfd)?;
        let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(4096);
        loop {
            if enter {
                match lp.ring.submit_and_wait(1) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                    Err(e) => return Err(e),
                }
            } else if eventfd {
                let to_submit = lp.ring.submission().len() as u32;
                // SAFETY: no argument is passed; submits what is queued and runs the
                // deferred completions without waiting for any.
                match unsafe {
                    lp.ring
                        .submitter()
                        .enter::<libc::sigset_t>(to_submit, 0, GETEVENTS, None)
                } {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                    Err(e) => return Err(e),
                }
                if lp.ring.completion().is_empty() {
                    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
                    // SAFETY: `evs` is a live local array of the length given.
                    unsafe { libc::epoll_wait(epfd, evs.as_mut_ptr(), 4, -1) };
                    continue;
                }
            } else {
                lp.ring.submit()?;
                if lp.ring.completion().is_empty() {
                    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
                    // SAFETY: `evs` is a live local array of the length given.
                    unsafe { libc::epoll_wait(epfd, evs.as_mut_ptr(), 4, -1) };
                }
            }
            done.clear();
            done.extend(
                lp.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(ud, res, flags) in &done {
                let fd = (ud & 0xffff_ffff) as RawFd;
                let generation = ((ud >> 32) & 0xff_ffff) as u32;
                let mine = |lp: &Loop| matches!(lp.conns.get(fd as usize), Some(Some(c)) if c.generation & 0xff_ffff == generation);
                match ud >> 56 {
                    ACCEPT => {
                        if res >= 0 {
                            let c = res;
                            let one: libc::c_int = 1;
                            // SAFETY: `c` is the accepted socket; `one` a live local int.
                            unsafe {
                                libc::setsockopt(
                                    c,
                                    libc::IPPROTO_TCP,
                                    libc::TCP_NODELAY,
                                    (&raw const one).cast(),
                                    4,
                                )
                            };
                            if lp.conns.len() <= c as usize {
                                lp.conns.resize_with(c as usize + 1, || None);
                            }
                            lp.generation = lp.generation.wrapping_add(1);
                            lp.conns[c as usize] = Some(Conn {
                                generation: lp.generation,
                                buf: if multishot {
                                    Vec::new()
                                } else {
                                    vec![0; BUF_LEN]
                                },
                                tail: [0; 3],
                                sends_in_flight: 0,
                                owed: 0,
                                pos: 0,
                            });
                            lp.post_recv(c)?;
                        }
                        lp.post_accept(lfd)?;
                    }
                    RECV => {
                        let bid = cqueue::buffer_select(flags);
                        if !mine(&lp) {
                            if let Some(bid) = bid {
                                give_back(&mut br_tail, bid);
                            }
                            continue;
                        }
                        if res == -libc::ENOBUFS {
                            lp.post_recv(fd)?;
                            continue;
                        }
                        if res <= 0 {
                            if let Some(bid) = bid {
                                give_back(&mut br_tail, bid);
                            }
                            lp.close(fd);
                            continue;
                        }
                        let n = res as usize;
                        let c = lp.conns[fd as usize].as_mut().expect("mine");
                        let heads = match bid {
                            Some(bid) => {
                                let at = bid as usize * BUF_LEN;
                                let h = heads_ended(&mut c.tail, &pool[at..at + n]);
                                give_back(&mut br_tail, bid);
                                h
                            }
                            None => heads_ended(&mut c.tail, &c.buf[..n]),
                        };
                        if lp.file.is_some() {
                            c.owed += heads;
                            if heads == 0 {
                                lp.post_recv(fd)?;
                            } else {
                                lp.pump(fd)?;
                            }
                            continue;
                        }
                        c.sends_in_flight += heads;
                        let ud = user_data(SEND, c.generation, fd);
                        for _ in 0..heads {
                            let e = opcode::Send::new(
                                types::Fd(fd),
                                lp.answer.as_ptr(),
                                lp.answer.len() as u32,
                            )
                            .build()
                            .user_data(ud);
                            lp.push(e)?;
                        }
                        // Single-shot: the next receive goes once the answers are sent.
                        if (!multishot && heads == 0) || (multishot && !cqueue::more(flags)) {
                            lp.post_recv(fd)?;
                        }
                    }
                    SEND => {
                        if !mine(&lp) {
                            continue;
                        }
                        let c = lp.conns[fd as usize].as_mut().expect("mine");
                        c.sends_in_flight -= 1;
                        let idle = c.sends_in_flight == 0;
                        if res != lp.answer.len() as i32 {
                            // Single-shot: no receive is posted while sends are in flight, so
                            // the buffer may go with the last of them.
                            if multishot || idle {
                                lp.close(fd);
                            }
                        } else if !multishot && idle {
                            lp.post_recv(fd)?;
                        }
                    }
                    WRITABLE => {
                        if mine(&lp) {
                            lp.pump(fd)?;
                        }
                    }
                    _ => unreachable!("unknown completion"),
                }
            }
        }
    }
}

/// Responders for a body of any size from memory the process owns, on a plain epoll loop
/// (no ring: the body's path is what is measured). Each answers every request with the same
/// head and `body` bytes, either by one `sendfile` from a memory file (fserve's way for
/// cached files of 8 KiB and more) or by `vmsplice` of anonymous memory backed by a
/// transparent huge page into a pipe of the connection's, then `splice` from that pipe into
/// the socket (the alternative measured against it).
mod body {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Source {
        SendfileMemfd,
        SendfileFile,
        SendfileMemfdThp,
        VmspliceThp,
    }

    /// A huge page: the anonymous region is aligned to it and asks for it.
    const HUGE: usize = 2 << 20;
    /// The connection's pipe holds a whole answer, so one splice sends it.
    const PIPE_BYTES: libc::c_int = 1 << 20;

    /// The answer's bytes, where the kernel can take them without a copy.
    struct Answer {
        len: usize,
        /// For the sendfile sources: the file holding the answer.
        memfd: Option<OwnedFd>,
        /// For `VmspliceThp`: the answer's first byte, in a mapping never unmapped or
        /// written after it is filled.
        base: *const u8,
    }

    fn os<T: PartialOrd + Default>(r: T) -> io::Result<T> {
        if r < T::default() {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    /// A new memory file.
    pub(super) fn memory_file() -> io::Result<std::fs::File> {
        // SAFETY: the name is a NUL-terminated literal; no other memory is passed.
        let fd = os(unsafe { libc::memfd_create(c"ring-floor".as_ptr(), 0) })?;
        // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
        Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Reports one line of /proc/self/smaps_rollup (how much of our memory is on huge pages)
    /// on stderr, which benches/ring-floor.sh prints.
    fn say_rollup(field: &str) {
        let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
        let line = rollup.lines().find(|l| l.starts_with(field)).unwrap_or("?");
        eprintln!(
            "ring-floor: {}",
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    /// A new file in `TMPDIR` (default /tmp), unlinked at once: only its descriptor holds it.
    fn disk_file() -> io::Result<std::fs::File> {
        let path = std::env::temp_dir().join(format!("ring-floor-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(file)
    }

    /// Collapses the first huge page of the memory `file` (which holds `len` bytes) into one
    /// transparent huge page: the file is sized to a huge page, mapped shared at a huge-page
    /// boundary, `MADV_COLLAPSE`d (which fills the rest with zeros) and unmapped; the huge
    /// page stays in the file. Reports what the kernel made of it.
    fn collapse(file: &std::fs::File, len: usize) -> io::Result<()> {
        if len > HUGE {
            return Err(io::Error::other(format!(
                "sendfile-memfd-thp answers up to {HUGE} bytes; lower BODY_BYTES"
            )));
        }
        file.set_len(HUGE as u64)?;
        // SAFETY: a new anonymous reservation of two huge pages; it aliases nothing.
        let span = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * HUGE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if span == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let at = (span as usize).next_multiple_of(HUGE) as *mut libc::c_void;
        // SAFETY: `at..at + HUGE` lies inside the reservation above, which MAP_FIXED
        // replaces with a read-only shared mapping of the file; nothing else uses it.
        let map = unsafe {
            libc::mmap(
                at,
                HUGE,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                0,
            )
        };
        let res = if map == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            // SAFETY: advice on the mapping just made; it changes no byte of the file.
            os(unsafe { libc::madvise(map, HUGE, libc::MADV_COLLAPSE) }).map(drop)
        };
        say_rollup("ShmemPmdMapped");
        // SAFETY: unmaps the reservation (and the mapping inside it), which nothing refers to.
        os(unsafe { libc::munmap(span, 2 * HUGE) })?;
        res.map_err(|e| io::Error::other(format!("MADV_COLLAPSE of the memory file: {e}")))
    }

    fn answer(source: Source, body: usize) -> io::Result<Answer> {
        let mut bytes = format!(
            "HTTP/1.1 200 OK\r\nServer: ring-floor\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {body}\r\nDate: Wed, 02 Dec 2026 12:00:00 GMT\r\n\r\n"
        )
        .into_bytes();
        bytes.resize(bytes.len() + body, b'x');
        match source {
            Source::SendfileMemfd | Source::SendfileFile | Source::SendfileMemfdThp => {
                let mut file = match source {
                    Source::SendfileFile => disk_file()?,
                    _ => memory_file()?,
                };
                io::Write::write_all(&mut file, &bytes)?;
                if source == Source::SendfileMemfdThp {
                    collapse(&file, bytes.len())?;
                }
                Ok(Answer {
                    len: bytes.len(),
                    memfd: Some(file.into()),
                    base: std::ptr::null(),
                })
            }
            Source::VmspliceThp => {
                let span = bytes.len().next_multiple_of(HUGE);
                // SAFETY: a new anonymous private mapping; it aliases nothing.
                let map = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        span + HUGE,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                if map == libc::MAP_FAILED {
                    return Err(io::Error::last_os_error());
                }
                let aligned = (map as usize).next_multiple_of(HUGE) as *mut u8;
                // SAFETY: `aligned..aligned + span` lies inside the mapping made above.
                os(unsafe { libc::madvise(aligned.cast(), span, libc::MADV_HUGEPAGE) })?;
                // SAFETY: the mapping is writable, `span` ≥ the answer's length, and nothing
                // else refers to it yet.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), aligned, bytes.len()) };
                Ok(Answer {
                    len: bytes.len(),
                    memfd: None,
                    base: aligned,
                })
            }
        }
    }

    struct Conn {
        fd: OwnedFd,
        tail: [u8; 3],
        /// Answers owed.
        owed: usize,
        /// Bytes of the current answer handed to the kernel (sent, or in the pipe).
        pos: usize,
        /// Bytes of the current answer in the pipe, not yet in the socket.
        in_pipe: usize,
        pipe: Option<(OwnedFd, OwnedFd)>,
    }

    enum Pumped {
        Done,
        Full,
        Closed,
    }

    fn pump(c: &mut Conn, a: &Answer) -> io::Result<Pumped> {
        let sock = c.fd.as_raw_fd();
        while c.owed > 0 {
            if let Some(memfd) = &a.memfd {
                let mut off = c.pos as libc::off_t;
                // SAFETY: both descriptors are open and owned here; `off` is a local.
                let n = unsafe { libc::sendfile(sock, memfd.as_raw_fd(), &mut off, a.len - c.pos) };
                match os(n) {
                    Ok(n) => c.pos += n as usize,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Pumped::Full),
                    Err(_) => return Ok(Pumped::Closed),
                }
            } else {
                if c.pipe.is_none() {
                    let mut p = [0; 2];
                    // SAFETY: `p` has room for the two descriptors pipe2 writes.
                    os(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
                    // SAFETY: pipe2 just returned both descriptors; each is owned once.
                    let (r, w) =
                        unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
                    // SAFETY: a plain fcntl on a descriptor owned here.
                    os(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) })?;
                    c.pipe = Some((r, w));
                }
                let (r, w) = c.pipe.as_ref().expect("made above");
                if c.in_pipe == 0 {
                    let iov = libc::iovec {
                        // SAFETY: `pos` < the answer's length, inside the mapping.
                        iov_base: unsafe { a.base.add(c.pos) } as *mut libc::c_void,
                        iov_len: a.len - c.pos,
                    };
                    // SAFETY: the iovec names the answer's mapping, which is never written or
                    // unmapped again, so the pages the pipe and the socket keep references
                    // to never change under them.
                    let n =
                        unsafe { libc::vmsplice(w.as_raw_fd(), &iov, 1, libc::SPLICE_F_NONBLOCK) };
                    let n = os(n)? as usize;
                    c.pos += n;
                    c.in_pipe = n;
                }
                // SAFETY: both descriptors are open and owned here; no offsets are passed.
                let n = unsafe {
                    libc::splice(
                        r.as_raw_fd(),
                        std::ptr::null_mut(),
                        sock,
                        std::ptr::null_mut(),
                        c.in_pipe,
                        libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
                    )
                };
                match os(n) {
                    Ok(n) => c.in_pipe -= n as usize,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Pumped::Full),
                    Err(_) => return Ok(Pumped::Closed),
                }
            }
            if c.pos == a.len && c.in_pipe == 0 {
                c.owed -= 1;
                c.pos = 0;
            }
        }
        Ok(Pumped::Done)
    }

    pub fn run(listener: TcpListener, source: Source, body: usize) -> io::Result<()> {
        let a = answer(source, body)?;
        if source == Source::VmspliceThp {
            say_rollup("AnonHugePages");
        }
        listener.set_nonblocking(true)?;
        // SAFETY: epoll_create1 takes no memory of ours.
        let ep = unsafe { OwnedFd::from_raw_fd(os(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        let add = |fd: RawFd, token: u64, events: u32| -> io::Result<()> {
            let mut ev = libc::epoll_event { events, u64: token };
            // SAFETY: `ev` is a local the kernel copies; both descriptors are open.
            os(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
            Ok(())
        };
        add(listener.as_raw_fd(), u64::MAX, libc::EPOLLIN as u32)?;
        let mut conns: Vec<Option<Conn>> = Vec::new();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut buf = vec![0u8; 4096];
        loop {
            // SAFETY: `events` has room for the 256 entries the kernel may write.
            let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), 256, -1) };
            let n = match os(n) {
                Ok(n) => n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            for ev in &events[..n] {
                let token = ev.u64;
                if token == u64::MAX {
                    while let Ok((sock, _)) = listener.accept() {
                        sock.set_nonblocking(true)?;
                        sock.set_nodelay(true)?;
                        let slot = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        let fd = OwnedFd::from(sock);
                        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32;
                        add(fd.as_raw_fd(), slot as u64, events)?;
                        conns[slot] = Some(Conn {
                            fd,
                            tail: [0; 3],
                            owed: 0,
                            pos: 0,
                            in_pipe: 0,
                            pipe: None,
                        });
                    }
                    continue;
                }
                let slot = token as usize;
                let Some(c) = conns[slot].as_mut() else {
                    continue;
                };
                let mut open = !matches!(pump(c, &a)?, Pumped::Closed);
                while open {
                    // SAFETY: `buf` is a live buffer of the length passed; the fd is open.
                    let got = unsafe {
                        libc::recv(c.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                    };
                    match os(got).map(|n| n as usize) {
                        Ok(0) => open = false,
                        Ok(n) => {
                            c.owed += heads_ended(&mut c.tail, &buf[..n]);
                            match pump(c, &a)? {
                                Pumped::Closed => open = false,
                                Pumped::Full | Pumped::Done => {}
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => open = false,
                    }
                }
                if !open {
                    // Closing the socket also takes it out of the epoll set.
                    conns[slot] = None;
                }
            }
        }
    }
}
