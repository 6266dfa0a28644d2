//! Graceful drain under load: SIGTERM to the real binary with 50 slow
//! downloads in flight, a second SIGTERM cutting the drain short, and
//! `Server::shutdown` in-process with large responses in flight.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use super::support::*;

const LEN: usize = 10 * 1024 * 1024;

fn content() -> &'static [u8] {
    static CONTENT: OnceLock<Vec<u8>> = OnceLock::new();
    CONTENT.get_or_init(|| pattern_bytes(LEN, 0xD8A1))
}

fn site() -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix("fserve-drain-")
        .tempdir()
        .unwrap();
    write(tmp.path(), "big.bin", content());
    write(tmp.path(), "a.txt", "alpha\n");
    tmp
}

/// How a paced download ended.
#[derive(Debug)]
struct Download {
    /// Body bytes received (all checked against the file as they came).
    got: usize,
    /// How the connection ended after them.
    ending: Ending,
    /// Bytes after the promised body, if any arrived.
    extra: usize,
}

/// Download /big.bin on a new connection with a small receive buffer, reading
/// at most `chunk` bytes every `pause` (as fast as it can once `hurry` is set).
/// Reports on `headers` once the response head is in; `progress` counts body
/// bytes. Mismatching bytes fail at once.
fn paced_download(
    addr: SocketAddr,
    chunk: usize,
    pause: Duration,
    headers: mpsc::Sender<()>,
    progress: Arc<AtomicUsize>,
    hurry: Arc<AtomicBool>,
) -> Result<Download, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    set_rcvbuf(&s, 64 * 1024);
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(request("GET", "/big.bin", &[]).as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; chunk.max(4096)];
    let (body_start, len) = loop {
        if let Some((code, hdrs, rest)) = split_head(&buf) {
            if code != 200 {
                return Err(format!("status {code}"));
            }
            let len = hdrs
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .ok_or("no Content-Length")?;
            break (buf.len() - rest.len(), len);
        }
        match s.read(&mut tmp) {
            Ok(0) => return Err("closed before the head".into()),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => return Err(format!("reading the head: {e}")),
        }
    };
    if len != LEN {
        return Err(format!("Content-Length {len}, expected {LEN}"));
    }
    let _ = headers.send(());
    let want = content();
    let mut got = buf.len() - body_start;
    if buf[body_start..] != want[..got] {
        return Err("the first body bytes differ".into());
    }
    progress.store(got, Ordering::SeqCst);
    loop {
        let n = match s.read(&mut tmp[..chunk]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return Ok(Download {
                    got,
                    ending: Ending::Reset,
                    extra: 0,
                });
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(Download {
                    got,
                    ending: Ending::Hung,
                    extra: 0,
                });
            }
            Err(e) => return Err(format!("read after {got} body bytes: {e}")),
        };
        if n == 0 {
            return Ok(Download {
                got,
                ending: Ending::Eof,
                extra: 0,
            });
        }
        let body_part = n.min(LEN - got);
        if tmp[..body_part] != want[got..got + body_part] {
            let at = (0..body_part).find(|&i| tmp[i] != want[got + i]).unwrap();
            return Err(format!("body differs at byte {}", got + at));
        }
        got += body_part;
        progress.store(got, Ordering::SeqCst);
        if n > body_part {
            let (_, ending) = read_to_close(&mut s, IO_TIMEOUT);
            return Ok(Download {
                got,
                ending,
                extra: n - body_part,
            });
        }
        if got == LEN {
            // The body is complete: the connection must now close (the server is
            // draining), with nothing more.
            let (rest, ending) = read_to_close(&mut s, IO_TIMEOUT);
            return Ok(Download {
                got,
                ending,
                extra: rest.len(),
            });
        }
        if !hurry.load(Ordering::SeqCst) {
            std::thread::sleep(pause);
        }
    }
}

type Downloads = Vec<(
    std::thread::JoinHandle<Result<Download, String>>,
    Arc<AtomicUsize>,
)>;

/// Start `n` paced downloads and wait until every one has its response head.
/// Setting the returned flag makes them read the rest as fast as they can.
fn start_downloads(
    addr: SocketAddr,
    n: usize,
    chunk: usize,
    pause: Duration,
) -> (Downloads, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel();
    let hurry = Arc::new(AtomicBool::new(false));
    let downloads: Vec<_> = (0..n)
        .map(|_| {
            let tx = tx.clone();
            let progress = Arc::new(AtomicUsize::new(0));
            let p = progress.clone();
            let h = hurry.clone();
            (
                std::thread::spawn(move || paced_download(addr, chunk, pause, tx, p, h)),
                progress,
            )
        })
        .collect();
    drop(tx);
    for i in 0..n {
        if rx.recv_timeout(Duration::from_secs(15)).is_err() {
            let failed: Vec<_> = downloads
                .into_iter()
                .filter(|(h, _)| h.is_finished())
                .map(|(h, _)| h.join().unwrap())
                .collect();
            panic!("only {i} of {n} downloads got their response head: {failed:?}");
        }
    }
    (downloads, hurry)
}

/// A connection attempt while the server drains: refused, or accepted by the
/// kernel but closed without a response. Returns a description of anything else.
fn attempt_after_signal(addr: SocketAddr) -> Option<String> {
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(_) => return None,
        Ok(s) => s,
    };
    if s.write_all(request("GET", "/a.txt", &[]).as_bytes())
        .is_err()
    {
        return None;
    }
    let (got, ending) = read_to_close(&mut s, Duration::from_secs(2));
    if !got.is_empty() {
        return Some(format!(
            "a connection made after SIGTERM got {:?}",
            String::from_utf8_lossy(&got[..got.len().min(200)])
        ));
    }
    if ending == Ending::Hung {
        return Some("a connection made after SIGTERM was held open for 2 s".into());
    }
    None
}

#[test]
fn sigterm_drains_fifty_slow_downloads_then_exits_0() {
    let _heavy = heavy_lock();
    let tmp = site();
    let mut srv = BinServer::start(tmp.path(), &["-t", "2", "--grace", "10s"]);
    let addr = srv.addr;
    // 64 KiB every 10 ms: at least 1.6 s per 10 MiB download.
    let (downloads, _) = start_downloads(addr, 50, 64 * 1024, Duration::from_millis(10));
    let signalled = Instant::now();
    srv.signal(Signal::TERM);
    let in_flight = downloads
        .iter()
        .filter(|(_, p)| p.load(Ordering::SeqCst) < LEN)
        .count();
    // New connections while it drains: every 100 ms from 200 ms on, until it exits.
    std::thread::sleep(Duration::from_millis(200));
    let mut attempts = 0;
    let mut violations = Vec::new();
    let status = loop {
        if let Some(status) = srv.try_wait() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(12),
            "fserve still running {:?} after SIGTERM (grace 10 s)",
            signalled.elapsed()
        );
        attempts += 1;
        if let Some(v) = attempt_after_signal(addr) {
            violations.push(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let exited_after = signalled.elapsed();
    let results: Vec<_> = downloads
        .into_iter()
        .map(|(h, _)| h.join().expect("download thread panicked"))
        .collect();
    eprintln!(
        "drain: {in_flight}/50 in flight at SIGTERM; exited {status:?} after {exited_after:?}; {attempts} connection attempts during the drain"
    );
    for (i, r) in results.iter().enumerate() {
        let d = r.as_ref().unwrap_or_else(|e| panic!("download {i}: {e}"));
        assert_eq!(d.got, LEN, "download {i} was cut short by the drain: {d:?}");
        assert_eq!(d.extra, 0, "download {i}: bytes after the body: {d:?}");
        assert_ne!(
            d.ending,
            Ending::Hung,
            "download {i}: the connection stayed open after its response during the drain"
        );
    }
    assert_eq!(
        in_flight, 50,
        "downloads finished before SIGTERM: the drain was not tested under load"
    );
    assert!(
        attempts >= 3,
        "the drain took {exited_after:?}: too short to try new connections during it"
    );
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(status.code(), Some(0), "exit status after the drain");
    assert!(
        exited_after < Duration::from_secs(10),
        "exited {exited_after:?} after SIGTERM, past the 10 s grace period"
    );
}

#[test]
fn a_second_sigterm_during_the_drain_exits_at_once_with_130() {
    let _heavy = heavy_lock();
    let tmp = site();
    let mut srv = BinServer::start(tmp.path(), &["-t", "2", "--grace", "30s"]);
    let addr = srv.addr;
    // 16 KiB every 100 ms: a 10 MiB download would take over a minute.
    let (downloads, hurry) = start_downloads(addr, 5, 16 * 1024, Duration::from_millis(100));
    srv.signal(Signal::TERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        srv.try_wait().is_none(),
        "fserve exited on the first SIGTERM although 5 downloads were in flight (grace 30 s)"
    );
    // It is draining: new connections are refused or closed unanswered.
    if let Some(v) = attempt_after_signal(addr) {
        panic!("{v}");
    }
    let second = Instant::now();
    srv.signal(Signal::TERM);
    let status = srv.wait_within(Duration::from_secs(5));
    let took = second.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the second SIGTERM took {took:?} to end the process"
    );
    assert_eq!(
        status.code(),
        Some(130),
        "exit status after a second SIGTERM: {status:?}"
    );
    hurry.store(true, Ordering::SeqCst);
    for (i, (h, _)) in downloads.into_iter().enumerate() {
        let d = h
            .join()
            .expect("download thread panicked")
            .unwrap_or_else(|e| panic!("download {i}: {e}"));
        assert!(
            d.got < LEN,
            "download {i} completed although the process was killed: {d:?}"
        );
        assert_ne!(d.ending, Ending::Hung, "download {i}: left hanging: {d:?}");
    }
}

#[test]
fn shutdown_returns_after_twenty_in_flight_responses_complete() {
    let _heavy = heavy_lock();
    let mut t = TestServer::with(
        |root| {
            write(root, "big.bin", content());
            write(root, "a.txt", "alpha\n");
        },
        |cfg| cfg.grace = Duration::from_secs(10),
    );
    let addr = t.addr;
    let (downloads, _) = start_downloads(addr, 20, 64 * 1024, Duration::from_millis(10));
    let server = t.take_server();
    let took = shutdown_with_timeout(server, Duration::from_secs(13));
    // Returned: every worker has ended, so every response was handed to the
    // kernel whole; what the clients still read is what was in flight.
    let left_at_return: Vec<usize> = downloads
        .iter()
        .map(|(_, p)| LEN - p.load(Ordering::SeqCst))
        .collect();
    assert_eq!(
        server_held_sockets(addr.port()),
        0,
        "Server::shutdown returned while the server still holds sockets"
    );
    for (i, (h, _)) in downloads.into_iter().enumerate() {
        let d = h
            .join()
            .expect("download thread panicked")
            .unwrap_or_else(|e| panic!("download {i}: {e}"));
        assert_eq!(d.got, LEN, "download {i} was cut short by shutdown: {d:?}");
        assert_eq!(d.extra, 0, "download {i}: bytes after the body");
        assert_ne!(
            d.ending,
            Ending::Hung,
            "download {i}: not closed after its response"
        );
    }
    eprintln!(
        "shutdown with 20 in flight took {took:?}; bytes still to read at its return: max {}",
        left_at_return.iter().max().unwrap()
    );
    assert!(
        took >= Duration::from_millis(300),
        "shutdown returned after {took:?}: too soon to have sent 20 paced 10 MiB responses"
    );
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::ConnectionRefused,
            "connect after shutdown: {e}"
        ),
        Ok(_) => panic!("connecting to {addr} still succeeds after shutdown"),
    }
}

#[test]
fn shutdown_gives_up_on_responses_at_the_end_of_the_grace_period() {
    let _heavy = heavy_lock();
    let mut t = TestServer::with(
        |root| {
            write(root, "big.bin", content());
        },
        |cfg| cfg.grace = Duration::from_secs(1),
    );
    let addr = t.addr;
    // 16 KiB every 100 ms: far from done when the 1 s grace period ends.
    let (downloads, hurry) = start_downloads(addr, 4, 16 * 1024, Duration::from_millis(100));
    let server = t.take_server();
    let took = shutdown_with_timeout(server, Duration::from_secs(5));
    hurry.store(true, Ordering::SeqCst);
    assert!(
        took >= Duration::from_millis(900),
        "shutdown returned after {took:?}, before the 1 s grace period"
    );
    assert!(
        took < Duration::from_millis(3500),
        "shutdown took {took:?} with a 1 s grace period"
    );
    assert_eq!(
        server_held_sockets(addr.port()),
        0,
        "the server still holds sockets after shutdown returned"
    );
    for (i, (h, _)) in downloads.into_iter().enumerate() {
        let d = h
            .join()
            .expect("download thread panicked")
            .unwrap_or_else(|e| panic!("download {i}: {e}"));
        assert!(
            d.got < LEN,
            "download {i} completed within the grace period: {d:?}"
        );
        assert_ne!(
            d.ending,
            Ending::Hung,
            "download {i}: left open after shutdown: {d:?}"
        );
    }
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::ConnectionRefused,
            "connect after shutdown: {e}"
        ),
        Ok(_) => panic!("connecting to {addr} still succeeds after shutdown"),
    }
}
