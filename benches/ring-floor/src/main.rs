//! The floor under fserve's CPU per request: minimal HTTP/1.1 keep-alive responders that do
//! only what any io_uring server must (receive a request, send a fixed 1 KiB answer), with
//! none of fserve's HTTP work. benches/ring-floor.sh runs them beside nginx and fserve.
//!
//! `ring-floor MODE PORT`, MODE one of:
//! - `raw`: a hand-written ring loop, one RECV per request and one SEND per answer, parked
//!   in epoll on the ring's fd between batches (tokio-uring's way of waiting);
//! - `raw-multishot`: the same with one multishot RECV per connection into a provided-buffer
//!   ring (what vendoring tokio-uring would allow);
//! - `raw-enter`: `raw`, but waiting in `io_uring_enter(GETEVENTS)` instead of epoll;
//! - `tokio-uring`: a task per connection on tokio-uring 0.5, one read and one write op each;
//! - `tokio-uring-timers`: that, with a per-connection tokio timer reset before every wait
//!   (as fserve bounds every receive and send).
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
    let (mode, port) = match &args[..] {
        [_, mode, port] => (mode.as_str(), port.parse::<u16>().expect("PORT: a number")),
        _ => {
            eprintln!(
                "usage: ring-floor raw|raw-multishot|raw-enter|tokio-uring|tokio-uring-timers PORT"
            );
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1:PORT");
    match mode {
        "raw" => raw::run(listener, false, false),
        "raw-multishot" => raw::run(listener, true, false),
        "raw-enter" => raw::run(listener, false, true),
        "tokio-uring" => on_tokio_uring(listener, false),
        "tokio-uring-timers" => on_tokio_uring(listener, true),
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

        fn close(&mut self, fd: RawFd) {
            if self.conns[fd as usize].take().is_some() {
                // SAFETY: `fd` is the connection's own descriptor, closed once (its slot is
                // emptied first).
                unsafe { libc::close(fd) };
            }
        }
    }

    pub(super) fn run(listener: TcpListener, multishot: bool, enter: bool) -> io::Result<()> {
        let mut setup = IoUring::builder();
        setup
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer();
        let mut lp = Loop {
            ring: setup.build(4096)?,
            conns: Vec::new(),
            generation: 0,
            multishot,
            answer: answer(),
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
        // SAFETY: as above; `ev` is a live local.
        unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, lp.ring.as_raw_fd(), &mut ev) };

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
                    _ => unreachable!("unknown completion"),
                }
            }
        }
    }
}
