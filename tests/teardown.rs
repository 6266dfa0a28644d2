//! Teardown memory safety: when `--grace` runs out with busy connections, no buffer is
//! freed while the kernel may still write into it.
//!
//! tokio-uring 0.5's `Driver::drop` frees the stable data of ops in flight (receive
//! buffers, send batches) before it cancels them; a worker that returned at grace expiry
//! dropped its runtime with hundreds of pending RECVs and stalled SENDMSGs, and a receive
//! could land in freed memory. Here more connections than the ring has entries (1,024) are
//! busy at grace expiry: half trickle a request head (a RECV pending, data arriving all the
//! time), the rest pipelined large cached responses and never read (SENDMSGs stalled). A
//! global allocator poisons every block freed during the shutdown and keeps it out of
//! reuse (a quarantine); afterwards every quarantined block must still hold its poison.
//! And the shutdown must end in time, with every worker ended: a worker that leaves ops in
//! flight without draining them panics in debug builds (the io_uring engine checks its op
//! count before it drops a runtime), so its thread never reports that it ended.
//!
//! The kernel's write into a freed buffer is a narrow race (a receive must complete between
//! the free and its cancellation); the quarantine catches it when it happens, the op count
//! catches the cause every time.
//!
//! Its own test binary (not a module of tests/tests.rs) because it installs a global
//! allocator. A global allocator is an `unsafe` trait: this binary is allowed unsafe code,
//! each block under `// SAFETY:`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Blocks freed while the quarantine is on are filled with this and never reused.
const POISON: u8 = 0xA5;
/// Most blocks held in quarantine; blocks freed beyond it are freed normally (unchecked).
const QUARANTINE_SLOTS: usize = 1 << 18;

struct Canary;

static QUARANTINE_ON: AtomicBool = AtomicBool::new(false);
static QUARANTINED: AtomicUsize = AtomicUsize::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: (AtomicUsize, AtomicUsize) = (AtomicUsize::new(0), AtomicUsize::new(0));
/// (address, size) of each quarantined block.
static SLOTS: [(AtomicUsize, AtomicUsize); QUARANTINE_SLOTS] = [EMPTY; QUARANTINE_SLOTS];

// SAFETY: allocation is the system allocator's; a freed block is either passed on to it
// unchanged or, while the quarantine is on, kept allocated forever (never handed out again),
// which no caller can observe: it gave the block up.
unsafe impl GlobalAlloc for Canary {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if QUARANTINE_ON.load(Ordering::Acquire) && layout.size() > 0 {
            let i = QUARANTINED.fetch_add(1, Ordering::AcqRel);
            if i < QUARANTINE_SLOTS {
                // SAFETY: `ptr` is a live block of `layout.size()` bytes that the caller
                // gives up; we keep it allocated and write only within it.
                unsafe { std::ptr::write_bytes(ptr, POISON, layout.size()) };
                SLOTS[i].1.store(layout.size(), Ordering::Release);
                SLOTS[i].0.store(ptr as usize, Ordering::Release);
                return;
            }
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Canary = Canary;

/// Blocks in quarantine whose poison was overwritten: (size, first changed offset).
fn written_after_free() -> Vec<(usize, usize)> {
    let n = QUARANTINED.load(Ordering::Acquire).min(QUARANTINE_SLOTS);
    let mut bad = Vec::new();
    for slot in &SLOTS[..n] {
        let (addr, size) = (
            slot.0.load(Ordering::Acquire),
            slot.1.load(Ordering::Acquire),
        );
        if addr == 0 {
            continue;
        }
        // SAFETY: the block at `addr` was quarantined with `size` bytes and is never freed
        // or handed out again; reading it races only with a kernel write after free, which
        // is what this looks for (bytes, no references into it are kept).
        let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, size) };
        if let Some(at) = bytes.iter().position(|&b| b != POISON) {
            bad.push((size, at));
        }
    }
    bad
}

fn engine() -> fserve::config::Io {
    match std::env::var("FSERVE_TEST_IO").as_deref() {
        Err(_) | Ok("") | Ok("uring") => fserve::config::Io::Uring,
        Ok("epoll") => fserve::config::Io::Epoll,
        Ok(other) => panic!("FSERVE_TEST_IO={other}: use uring or epoll"),
    }
}

/// Connections whose request head arrives a few bytes at a time (a RECV always pending),
/// well within the head size limit and the header timeout.
const TRICKLERS: usize = 1024;
/// Connections that pipelined many large responses and never read (a SENDMSG stalled).
const STALLERS: usize = 128;
/// Responses each staller asks for: far more than the socket buffers hold.
const PIPELINED: usize = 2;
/// A cached file (with `--cache-max-file` raised to it) larger than socket buffers grow
/// (4 MiB by default), so that each response's SENDMSG stalls.
const BIG_LEN: usize = 8 * 1024 * 1024;

fn connect(addr: SocketAddr, rcvbuf: Option<usize>) -> TcpStream {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n).unwrap();
    }
    s.connect(&addr.into()).unwrap();
    s.into()
}

#[test]
fn grace_expiry_with_more_busy_connections_than_ring_entries_frees_nothing_in_use() {
    // Each connection is two descriptors in this process (client and server side).
    let mut lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let want = 2 * (TRICKLERS + STALLERS) as u64 + 256;
    if lim.current.is_some_and(|c| c < want) {
        lim.current = lim.maximum.map(|m| m.min(want.max(4096))).or(Some(want));
        rustix::process::setrlimit(rustix::process::Resource::Nofile, lim)
            .expect("raise the open-file soft limit for this test");
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![b'b'; BIG_LEN]).unwrap();
    let mut cfg = fserve::Config::new(dir.path());
    cfg.bind = IpAddr::from([127, 0, 0, 1]);
    cfg.port = 0;
    // One worker: every op on one ring, more of them than it has entries.
    cfg.threads = 1;
    cfg.io = engine();
    cfg.grace = Duration::from_millis(500);
    cfg.cache_max_file_bytes = BIG_LEN as u64;
    let server = fserve::Server::start(cfg).expect("the server starts");
    let addr = server.local_addr();

    let mut stallers = Vec::with_capacity(STALLERS);
    let request = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n".repeat(PIPELINED);
    for _ in 0..STALLERS {
        let mut s = connect(addr, Some(4096));
        s.write_all(&request).unwrap();
        stallers.push(s);
    }
    let mut tricklers = Vec::with_capacity(TRICKLERS);
    for _ in 0..TRICKLERS {
        let mut s = connect(addr, None);
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nX-Long: ")
            .unwrap();
        s.set_nonblocking(true).unwrap();
        // Each tiny write goes out at once, not after the server's delayed ACK.
        s.set_nodelay(true).unwrap();
        tricklers.push(s);
    }
    // Keep data arriving on every trickling connection until the server is gone.
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for s in &mut tricklers {
                    // One long field value (a field count limit would end the head).
                    let _ = s.write(b"bb");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            tricklers
        })
    };
    // Let the worker accept everything (TCP_DEFER_ACCEPT: each has sent data).
    std::thread::sleep(Duration::from_secs(4));

    QUARANTINE_ON.store(true, Ordering::Release);
    let started = Instant::now();
    let ended_in_time = server.shutdown();
    let took = started.elapsed();
    // Late completions would land now, if anything had been freed under the kernel.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let tricklers = trickle.join().unwrap();
    QUARANTINE_ON.store(false, Ordering::Release);

    let quarantined = QUARANTINED.load(Ordering::Acquire);
    let bad = written_after_free();
    assert!(
        bad.is_empty(),
        "{} of {quarantined} blocks freed during shutdown were written afterwards (size, offset): {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    assert!(
        quarantined < QUARANTINE_SLOTS,
        "the quarantine overflowed ({quarantined} blocks): some were not checked"
    );
    assert!(
        ended_in_time,
        "the workers did not end within the grace period and teardown"
    );
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    drop((stallers, tricklers));
}
