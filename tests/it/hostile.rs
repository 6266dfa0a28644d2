//! Hostile and unlucky clients: slowloris heads, a reader that never reads,
//! resets in the middle of large responses, half-closes, garbage, files that
//! change under a download, and the connection cap. Each attack runs beside a
//! normal client ([`Probe`]) whose latency is measured, and each checks that
//! the server gives back what the attack held (sockets, fds).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::support::*;

const SMALL: &[u8] = b"alpha\n";
/// Larger than any socket buffer pair, so a response to it is always in flight.
const BIG_LEN: usize = 20 * 1024 * 1024;
/// The normal client's requests must each be answered within this.
const LATENCY_LIMIT: Duration = Duration::from_secs(1);
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// Slack on the whole process's fd count (other tests run beside these).
const FD_MARGIN: usize = 32;

fn big() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| pattern_bytes(BIG_LEN, 0xB16))
}

fn files(root: &Path) {
    write(root, "a.txt", SMALL);
    write(root, "big.bin", big());
}

fn probe(t: &TestServer) -> Probe {
    Probe::start(t.addr, "/a.txt", SMALL, PROBE_EVERY)
}

/// A client socket with the usual timeouts.
fn open(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Whether the server still holds its side of `client`'s connection: a socket
/// with local port = the server's and remote port = the client's, not yet
/// closed by the server (orphans have inode 0).
fn server_holds(server: SocketAddr, client: &TcpStream) -> bool {
    let peer = client.local_addr().unwrap().port();
    let text = std::fs::read_to_string("/proc/self/net/tcp").expect("read /proc/self/net/tcp");
    text.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let port = |col: &str| {
            col.rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
        };
        cols.len() >= 10
            && port(cols[1]) == Some(server.port())
            && port(cols[2]) == Some(peer)
            && cols[9] != "0"
    })
}

/// Read a response head from `s`: (status, Content-Length, body bytes already read).
fn read_head(s: &mut TcpStream) -> (u16, usize, Vec<u8>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16 * 1024];
    loop {
        if let Some((code, headers, rest)) = split_head(&buf) {
            let len = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or_else(|| {
                    panic!("no Content-Length in {:?}", String::from_utf8_lossy(&buf))
                });
            return (code, len, rest.to_vec());
        }
        let n = s.read(&mut tmp).expect("read a response head");
        assert!(
            n > 0,
            "closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Read from `s` into `body` until it holds `upto` bytes: `chunk` bytes at a
/// time with `pause` after each read.
fn read_slowly(s: &mut TcpStream, body: &mut Vec<u8>, upto: usize, chunk: usize, pause: Duration) {
    let mut tmp = vec![0u8; chunk];
    while body.len() < upto {
        let want = chunk.min(upto - body.len());
        let n = s.read(&mut tmp[..want]).expect("read the body");
        assert!(n > 0, "closed after {} body bytes", body.len());
        body.extend_from_slice(&tmp[..n]);
        std::thread::sleep(pause);
    }
}

/// Wait until the server holds no socket for its port, no more descriptors
/// under the root than the root itself and one cached open file per worker,
/// and this process's fd count is back within [`FD_MARGIN`] of `baseline`;
/// fail with the numbers if that takes more than 5 s.
#[track_caller]
fn assert_resources_return(t: &TestServer, workers: usize, baseline: usize, what: &str) {
    let port = t.addr.port();
    let took = poll_until(Duration::from_secs(5), || {
        server_held_sockets(port) == 0
            && fds_under(&t.root) <= 1 + workers
            && open_fd_count() <= baseline + FD_MARGIN
    });
    assert!(
        took.is_some(),
        "{what}: resources not given back within 5 s: the server holds {} socket(s), {} fd(s) \
         under the root (allowed: the root and one cached file per worker, {}); the process has \
         {} fds (baseline {baseline})",
        server_held_sockets(port),
        fds_under(&t.root),
        1 + workers,
        open_fd_count()
    );
}

// ---------------------------------------------------------------------------
// 1. Slowloris
// ---------------------------------------------------------------------------

/// One slowloris client: a request head dribbled one byte every 100 ms. Returns
/// how long after its first byte the server closed it, what it sent before
/// closing, and how the connection ended.
fn slowloris(addr: SocketAddr, i: usize) -> (Duration, Vec<u8>, Ending) {
    let mut s = open(addr);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let head = format!(
        "GET /a.txt?slow={i} HTTP/1.1\r\nHost: localhost\r\nX-Slow: {}",
        "a".repeat(200)
    );
    let head = head.as_bytes();
    s.write_all(&head[..1]).expect("first byte");
    let first = Instant::now();
    let mut next = 1;
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        // Between two bytes, wait (up to 100 ms) for an answer or the close.
        match s.read(&mut tmp) {
            Ok(0) => return (first.elapsed(), got, Ending::Eof),
            Ok(n) => {
                got.extend_from_slice(&tmp[..n]);
                continue;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return (first.elapsed(), got, Ending::Reset);
            }
            Err(e) => panic!("slowloris {i}: read error {e}"),
        }
        if first.elapsed() > Duration::from_secs(4) {
            return (first.elapsed(), got, Ending::Hung);
        }
        if next < head.len() {
            // A write may fail once the server has given up: that is the point.
            let _ = s.write(&head[next..next + 1]);
            next += 1;
        }
    }
}

#[test]
fn slowloris_heads_are_cut_off_while_a_normal_client_is_served() {
    let _heavy = heavy_lock();
    let t = TestServer::with(files, |cfg| {
        cfg.header_timeout = Duration::from_millis(500);
    });
    let addr = t.addr;
    let probe = probe(&t);
    std::thread::sleep(Duration::from_millis(100));
    let attackers: Vec<_> = (0..50)
        .map(|i| std::thread::spawn(move || slowloris(addr, i)))
        .collect();
    let results: Vec<_> = attackers
        .into_iter()
        .map(|h| h.join().expect("slowloris thread panicked"))
        .collect();
    let stats = probe.finish();
    let mut answered_408 = 0;
    for (i, (took, got, ending)) in results.iter().enumerate() {
        assert_ne!(
            *ending,
            Ending::Hung,
            "slowloris {i}: still open {took:?} after its first byte (header_timeout 500 ms)"
        );
        assert!(
            *took <= Duration::from_millis(1500),
            "slowloris {i}: closed only {took:?} after its first byte (header_timeout 500 ms)"
        );
        assert!(
            *took >= Duration::from_millis(400),
            "slowloris {i}: closed {took:?} after its first byte, before the 500 ms header deadline"
        );
        if assert_nothing_or_one_closing_error(got, &[408], &format!("slowloris {i}")) == 408 {
            answered_408 += 1;
        }
    }
    eprintln!(
        "slowloris: 50 closed ({answered_408} with a 408) after {:?}..{:?}; probe {} ok, p50 {:?}, p99 {:?}, max {:?}",
        results.iter().map(|r| r.0).min().unwrap(),
        results.iter().map(|r| r.0).max().unwrap(),
        stats.ok(),
        stats.percentile(50),
        stats.percentile(99),
        stats.max()
    );
    stats.assert_healthy(10, LATENCY_LIMIT, "during 50 slowloris connections");
    assert!(
        poll_until(Duration::from_secs(2), || server_held_sockets(addr.port())
            == 0)
        .is_some(),
        "the server still holds {} socket(s) after the slowloris clients were closed",
        server_held_sockets(addr.port())
    );
}

// ---------------------------------------------------------------------------
// 2. A client that never reads
// ---------------------------------------------------------------------------

#[test]
fn a_client_that_never_reads_is_abandoned_after_the_send_timeout() {
    let _heavy = heavy_lock();
    let t = TestServer::with(files, |cfg| {
        cfg.send_timeout = Duration::from_millis(500);
    });
    let probe = probe(&t);
    let mut s = open(t.addr);
    s.write_all(request("GET", "/big.bin", &[]).as_bytes())
        .unwrap();
    let sent = Instant::now();
    assert!(
        poll_until(Duration::from_secs(1), || server_holds(t.addr, &s)).is_some(),
        "the server never showed the connection as accepted"
    );
    // Never read: the response stalls once the socket buffers are full.
    let abandoned = poll_until(Duration::from_secs(3), || !server_holds(t.addr, &s));
    let stats = probe.finish();
    let Some(_) = abandoned else {
        panic!(
            "the server still holds a connection whose client has not read for {:?} (send_timeout 500 ms)",
            sent.elapsed()
        );
    };
    let abandoned_after = sent.elapsed();
    assert!(
        abandoned_after >= Duration::from_millis(400),
        "abandoned after {abandoned_after:?}, before the 500 ms send timeout could pass"
    );
    // Reading now yields what was already in flight, then EOF or a reset: no hang.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(sent.elapsed()));
    let (got, ending) = read_to_close(&mut s, Duration::from_secs(5));
    assert_ne!(
        ending,
        Ending::Hung,
        "the abandoned connection is still open ({} bytes read)",
        got.len()
    );
    let (code, headers, body) = split_head(&got).expect("a response head before the close");
    assert_eq!(code, 200);
    assert!(headers.contains(&("content-length".to_string(), BIG_LEN.to_string())));
    assert!(
        body.len() < BIG_LEN,
        "the whole body arrived although the client never read during the response"
    );
    assert_body_eq(
        body,
        &big()[..body.len()],
        "bytes in flight before the abort",
    );
    eprintln!(
        "never-reading client: abandoned after {abandoned_after:?} with {} body bytes in flight, ended by {ending:?}; probe {} ok, max {:?}",
        body.len(),
        stats.ok(),
        stats.max()
    );
    stats.assert_healthy(10, LATENCY_LIMIT, "beside a stalled reader");
}

#[test]
fn fast_downloads_on_one_worker_leave_room_for_small_requests() {
    // Four readers as fast as loopback allows, all on the one worker: a small request
    // beside them is still answered promptly (each download takes turns: it waits when
    // its socket is full and yields after every slice of its body).
    let _heavy = heavy_lock();
    let t = TestServer::with(files, |cfg| cfg.threads = 1);
    let probe = probe(&t);
    let until = Instant::now() + Duration::from_secs(2);
    let downloads: Vec<_> = (0..4)
        .map(|_| {
            let mut c = t.connect();
            std::thread::spawn(move || {
                let mut n = 0;
                while Instant::now() < until {
                    let r = c.get("/big.bin");
                    assert_eq!(r.assert_status(200).body.len(), BIG_LEN);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let done: usize = downloads.into_iter().map(|d| d.join().unwrap()).sum();
    let stats = probe.finish();
    eprintln!(
        "4 fast downloaders: {done} bodies of {BIG_LEN} bytes; probe {} ok, max {:?}",
        stats.ok(),
        stats.max()
    );
    stats.assert_healthy(10, LATENCY_LIMIT, "beside four fast downloads");
}

// ---------------------------------------------------------------------------
// 3. Resets in the middle of a response
// ---------------------------------------------------------------------------

/// Open `count` connections (in batches of `batch`), each requesting the big
/// file and reading its first few KiB, then reset them all at once (SO_LINGER 0).
fn reset_storm(addr: SocketAddr, count: usize, batch: usize) {
    let mut conns: Vec<TcpStream> = Vec::with_capacity(count);
    let get = request("GET", "/big.bin", &[]);
    while conns.len() < count {
        let from = conns.len();
        for _ in 0..batch.min(count - from) {
            let s = open(addr);
            // Keep what the server can push into each connection small.
            set_rcvbuf(&s, 16 * 1024);
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            (&s).write_all(get.as_bytes()).expect("send the request");
            conns.push(s);
        }
        let mut tmp = [0u8; 4096];
        for (i, s) in conns[from..].iter_mut().enumerate() {
            let mut got = Vec::new();
            while got.len() < 6 * 1024 {
                let n = s.read(&mut tmp).unwrap_or_else(|e| {
                    panic!("connection {}: reading the response start: {e}", from + i)
                });
                assert!(
                    n > 0,
                    "connection {}: closed after {} bytes",
                    from + i,
                    got.len()
                );
                got.extend_from_slice(&tmp[..n]);
            }
            assert!(
                got.starts_with(b"HTTP/1.1 200 OK\r\n"),
                "connection {}: {:?}",
                from + i,
                String::from_utf8_lossy(&got[..200])
            );
        }
    }
    for s in &conns {
        set_linger_zero(s);
    }
    drop(conns);
}

/// After a storm: the server serves the small and the whole big file, then
/// gives back every socket and fd.
fn assert_recovers(t: &TestServer, baseline: usize, what: &str) {
    let workers = 2; // test_config
    let start = Instant::now();
    assert_eq!(t.get("/a.txt").assert_status(200).body, SMALL);
    assert_body_eq(
        &t.get("/big.bin").assert_status(200).body,
        big(),
        &format!("big.bin after {what}"),
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "after {what}: two requests took {:?}",
        start.elapsed()
    );
    assert_resources_return(t, workers, baseline, what);
}

#[test]
fn two_hundred_resets_mid_response_leak_nothing() {
    let _heavy = heavy_lock();
    let t = TestServer::with(files, |_| {});
    // Warm up both workers (lazily built state is not a leak).
    for _ in 0..8 {
        t.get("/a.txt").assert_status(200);
    }
    let baseline = open_fd_count();
    reset_storm(t.addr, 200, 200);
    assert_recovers(&t, baseline, "200 resets");
}

#[test]
fn parked_connections_whose_clients_leave_or_reset_are_closed() {
    let _heavy = heavy_lock();
    let t = TestServer::with(files, |_| {});
    for _ in 0..8 {
        t.get("/a.txt").assert_status(200);
    }
    let baseline = open_fd_count();
    let mut conns: Vec<Conn> = (0..400).map(|_| t.connect()).collect();
    for c in &mut conns {
        assert_eq!(c.get("/a.txt").assert_status(200).body, SMALL);
    }
    std::thread::sleep(Duration::from_millis(500)); // past the hot wait: parked
    // Half leave with a FIN, half with a reset; all at once.
    for (i, c) in conns.iter().enumerate() {
        if i % 2 == 1 {
            set_linger_zero(&c.stream);
        }
    }
    drop(conns);
    assert_recovers(&t, baseline, "400 parked clients leaving");
}

#[test]
fn two_thousand_resets_at_once_leak_nothing_and_a_normal_client_stays_fast() {
    let _heavy = heavy_lock();
    const COUNT: usize = 2000;
    let limit = raise_nofile(3 * COUNT as u64 + 2048);
    assert!(
        limit >= 3 * COUNT as u64,
        "open-file limit {limit} too low for {COUNT} connections"
    );
    let t = TestServer::with(files, |_| {});
    for _ in 0..8 {
        t.get("/a.txt").assert_status(200);
    }
    let baseline = open_fd_count();
    let probe = probe(&t);
    let storm = Instant::now();
    reset_storm(t.addr, COUNT, 200);
    let opened_and_reset = storm.elapsed();
    // Keep measuring while the server digests the resets.
    std::thread::sleep(Duration::from_millis(500));
    let stats = probe.finish();
    eprintln!(
        "{COUNT} resets: opened, read and reset in {opened_and_reset:?}; probe {} ok, p50 {:?}, p99 {:?}, max {:?}",
        stats.ok(),
        stats.percentile(50),
        stats.percentile(99),
        stats.max()
    );
    stats.assert_healthy(10, LATENCY_LIMIT, "during 2,000 resets");
    assert_recovers(&t, baseline, "2,000 resets");
}

// ---------------------------------------------------------------------------
// 4. Half-close
// ---------------------------------------------------------------------------

#[test]
fn a_half_closed_client_gets_the_whole_response_then_eof() {
    let t = TestServer::with(files, |_| {});
    // A small (cached) file.
    let mut c = t.connect();
    c.send(request("GET", "/a.txt", &[]));
    c.shutdown_write();
    assert_eq!(c.read_response().assert_status(200).body, SMALL);
    c.assert_closed();
    // A large file, sent by sendfile after the half-close arrived.
    let mut c = t.connect();
    c.send(request("GET", "/big.bin", &[]));
    c.shutdown_write();
    assert_body_eq(
        &c.read_response().assert_status(200).body,
        big(),
        "big.bin after a half-close",
    );
    c.assert_closed();
    // Two pipelined requests, then the half-close: both answers, in order, then EOF.
    let mut c = t.connect();
    c.send(format!(
        "{}{}",
        request("GET", "/big.bin", &[]),
        request("GET", "/a.txt", &[])
    ));
    c.shutdown_write();
    assert_body_eq(
        &c.read_response().assert_status(200).body,
        big(),
        "first pipelined answer",
    );
    assert_eq!(c.read_response().assert_status(200).body, SMALL);
    c.assert_closed();
}

// ---------------------------------------------------------------------------
// 5. Garbage
// ---------------------------------------------------------------------------

/// xorshift64*: deterministic garbage.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize, alphabet: Option<&[u8]>) -> Vec<u8> {
        (0..n)
            .map(|_| match alphabet {
                Some(a) => a[self.below(a.len())],
                None => self.next() as u8,
            })
            .collect()
    }
}

/// Garbage number `i`: raw bytes, printable noise, or something that starts
/// like a request; about half with CRLFs sprinkled in, some ending in a blank
/// line (a complete "head").
fn garbage(i: usize) -> Vec<u8> {
    let mut rng = Rng::new(0x6A5B_A6E0 + i as u64);
    let len = 1 + rng.below(3000);
    let printable: Vec<u8> = (b' '..=b'~').collect();
    let mut g = match i % 4 {
        0 => rng.bytes(len, None),
        1 => rng.bytes(len, Some(&printable)),
        2 => {
            let mut g = b"GET /".to_vec();
            g.extend(rng.bytes(len.min(200), Some(&printable)));
            g.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nX-Junk: ");
            g.extend(rng.bytes(len, None));
            g
        }
        _ => {
            // Request-ish tokens and separators in random order.
            let parts: [&[u8]; 10] = [
                b"GET",
                b" ",
                b"/",
                b"HTTP/1.1",
                b"\r\n",
                b":",
                b"\0",
                b"\t",
                b"\xff",
                b"Host",
            ];
            let mut g = Vec::new();
            while g.len() < len {
                g.extend_from_slice(parts[rng.below(parts.len())]);
            }
            g
        }
    };
    if i % 2 == 0 {
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(g.len() + 1);
            g.splice(at..at, *b"\r\n");
        }
    }
    if i % 3 == 0 {
        g.extend_from_slice(b"\r\n\r\n");
    }
    g
}

/// The statuses of the complete responses in `bytes`, or why they are not a
/// sequence of complete responses.
fn statuses(mut bytes: &[u8]) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some((code, headers, rest)) = split_head(bytes) else {
            return Err(format!(
                "not a response head: {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ));
        };
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or(format!("status {code} without a Content-Length"))?;
        if rest.len() < len {
            return Err(format!("status {code}: {} of {len} body bytes", rest.len()));
        }
        out.push(code);
        bytes = &rest[len..];
    }
    Ok(out)
}

#[test]
fn garbage_gets_a_4xx_or_a_close_and_the_server_keeps_serving() {
    let _heavy = heavy_lock();
    let t = TestServer::with(files, |cfg| {
        cfg.header_timeout = Duration::from_millis(1000);
        cfg.keepalive_timeout = Duration::from_millis(1000);
    });
    let addr = t.addr;
    let probe = probe(&t);
    std::thread::sleep(Duration::from_millis(150));
    let clients: Vec<_> = (0..100)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = open(addr);
                // The server may close before it has read everything: that is allowed.
                let _ = s.write_all(&garbage(i));
                let (got, ending) = read_to_close(&mut s, Duration::from_secs(5));
                (got, ending)
            })
        })
        .collect();
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    let mut problems = Vec::new();
    for (i, h) in clients.into_iter().enumerate() {
        let (got, ending) = h.join().expect("garbage client panicked");
        let g = garbage(i);
        let shown = String::from_utf8_lossy(&g[..g.len().min(80)]).into_owned();
        if ending == Ending::Hung {
            problems.push(format!(
                "garbage {i} ({} bytes, {shown:?}): still open after 5 s",
                g.len()
            ));
            continue;
        }
        match statuses(&got) {
            Err(e) => problems.push(format!("garbage {i} ({shown:?}): {e}")),
            Ok(codes) => {
                if !codes.iter().all(|c| (400..500).contains(c)) {
                    problems.push(format!(
                        "garbage {i} ({} bytes, {shown:?}) was answered with {codes:?}",
                        g.len()
                    ));
                }
                if codes.is_empty() {
                    *seen.entry(0).or_default() += 1;
                }
                for c in codes {
                    *seen.entry(c).or_default() += 1;
                }
            }
        }
    }
    std::thread::sleep(Duration::from_millis(150));
    let stats = probe.finish();
    eprintln!(
        "garbage: statuses seen (0 = closed without a response): {seen:?}; probe {} ok, max {:?}",
        stats.ok(),
        stats.max()
    );
    assert!(
        problems.is_empty(),
        "only a 4xx (or a close without a response) is acceptable for garbage; {} of 100 were not:\n{}",
        problems.len(),
        problems.join("\n")
    );
    stats.assert_healthy(5, LATENCY_LIMIT, "beside 100 garbage clients");
    assert_eq!(t.get("/a.txt").assert_status(200).body, SMALL);
    assert!(
        poll_until(Duration::from_secs(3), || server_held_sockets(addr.port())
            == 0)
        .is_some(),
        "the server still holds {} socket(s) after the garbage clients",
        server_held_sockets(addr.port())
    );
}

#[test]
fn a_malformed_request_line_ending_in_http_1_1_is_400_not_505() {
    // Found by the garbage test: a request line with a space inside its target
    // (four tokens, the last one HTTP/1.1) is malformed (RFC 9112 §3: 400), not
    // a request in a version the server does not speak (505).
    let t = TestServer::with(files, |_| {});
    for line in [
        "GET /a b HTTP/1.1",
        "GE T /a.txt HTTP/1.1",
        "GET /a.txt x HTTP/1.1",
    ] {
        let (mut c, r) = t.raw(format!("{line}\r\nHost: localhost\r\n\r\n"), false);
        assert_eq!(r.status, 400, "{line:?}\n{}", r.describe());
        r.assert_error(400).assert_connection_close();
        c.assert_closed();
    }
    // A well-formed line in another version is the 505 case.
    let (_, r) = t.raw("GET /a.txt HTTP/2.0\r\nHost: localhost\r\n\r\n", false);
    r.assert_status(505);
}

/// A deterministic 1 MiB head without any CR or LF.
fn newline_free_blob(seed: u64, prefix: &[u8]) -> Vec<u8> {
    let letters: Vec<u8> = (b'a'..=b'z')
        .chain(b'A'..=b'Z')
        .chain(b'0'..=b'9')
        .collect();
    let mut blob = prefix.to_vec();
    blob.extend(Rng::new(seed).bytes(1024 * 1024 - prefix.len(), Some(&letters)));
    blob
}

/// Send `blob` on a new connection (from another thread: the server may stop
/// reading) and return what came back and how the connection ended.
fn send_blob(addr: SocketAddr, blob: Vec<u8>) -> (Vec<u8>, Ending) {
    let mut s = open(addr);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&blob);
    });
    let out = read_to_close(&mut s, Duration::from_secs(5));
    writer.join().expect("writer thread");
    out
}

#[test]
fn a_mebibyte_without_a_newline_gets_414_or_431_and_a_close() {
    let t = TestServer::with(files, |_| {});
    for (what, blob) in [
        ("a long request target", newline_free_blob(1, b"GET /")),
        ("a long method token", newline_free_blob(2, b"")),
    ] {
        let (got, ending) = send_blob(t.addr, blob);
        assert_ne!(ending, Ending::Hung, "{what}: the connection stayed open");
        let code = assert_nothing_or_one_closing_error(&got, &[414, 431], what);
        assert_ne!(code, 0, "{what}: closed without a 414 or 431");
    }
    assert_eq!(t.get("/a.txt").assert_status(200).body, SMALL);
}

#[test]
fn mebibyte_heads_do_not_grow_the_servers_memory() {
    // The real binary, so its memory is its own: 32 connections at once each
    // send 1 MiB without a newline; the server keeps at most its head limit
    // (16 KiB) of each, so its peak RSS must not grow by anything like 32 MiB.
    let _heavy = heavy_lock();
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.txt", SMALL);
    let srv = BinServer::start(tmp.path(), &["-t", "2"]);
    for _ in 0..4 {
        assert_eq!(Conn::open(srv.addr).get("/a.txt").body, SMALL);
    }
    let rss_before = srv.status_kib("VmRSS");
    let hwm_before = srv.status_kib("VmHWM");
    let addr = srv.addr;
    let clients: Vec<_> = (0..32u64)
        .map(|i| std::thread::spawn(move || send_blob(addr, newline_free_blob(10 + i, b"GET /"))))
        .collect();
    for (i, h) in clients.into_iter().enumerate() {
        let (got, ending) = h.join().expect("client thread");
        assert_ne!(
            ending,
            Ending::Hung,
            "client {i}: the connection stayed open"
        );
        let code = assert_nothing_or_one_closing_error(&got, &[414, 431], &format!("client {i}"));
        assert_ne!(code, 0, "client {i}: closed without a 414 or 431");
    }
    // Peak RSS over the attack, against RSS before it (a start-up peak above
    // the steady RSS could only hide growth, never invent it).
    let hwm_after = srv.status_kib("VmHWM");
    let grown = hwm_after.saturating_sub(rss_before);
    eprintln!(
        "1 MiB heads x32: server RSS before {rss_before} KiB (peak so far {hwm_before} KiB), peak after {hwm_after} KiB"
    );
    assert!(
        grown < 16 * 1024,
        "the server's peak RSS grew by {grown} KiB ({rss_before} -> peak {hwm_after} KiB) while 32 clients sent 1 MiB heads"
    );
    assert_eq!(Conn::open(srv.addr).get("/a.txt").body, SMALL);
}

// ---------------------------------------------------------------------------
// 6. Files changing under a download
// ---------------------------------------------------------------------------

#[test]
fn a_file_truncated_under_a_download_ends_the_connection_early() {
    let t = TestServer::with(files, |_| {});
    let mut s = open(t.addr);
    set_rcvbuf(&s, 64 * 1024);
    s.write_all(request("GET", "/big.bin", &[]).as_bytes())
        .unwrap();
    let (code, len, mut body) = read_head(&mut s);
    assert_eq!((code, len), (200, BIG_LEN));
    read_slowly(
        &mut s,
        &mut body,
        2 * 1024 * 1024,
        64 * 1024,
        Duration::from_millis(10),
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(t.root.join("big.bin"))
        .unwrap()
        .set_len(1024 * 1024)
        .unwrap();
    let (rest, ending) = read_to_close(&mut s, Duration::from_secs(5));
    body.extend_from_slice(&rest);
    assert_ne!(
        ending,
        Ending::Hung,
        "the connection stayed open after {} of {BIG_LEN} promised bytes (the file shrank to 1 MiB)",
        body.len()
    );
    assert!(
        body.len() < BIG_LEN,
        "all {BIG_LEN} promised bytes arrived although the file shrank to 1 MiB"
    );
    assert_body_eq(&body, &big()[..body.len()], "bytes sent before the close");
    assert!(
        poll_until(Duration::from_secs(2), || server_held_sockets(
            t.addr.port()
        ) == 0)
        .is_some(),
        "the server still holds the connection whose file shrank"
    );
    let truncated = Instant::now();
    // Within the cache's revalidation interval a worker may still announce the
    // old length: then the connection must close early with only true bytes.
    for _ in 0..4 {
        let mut s = open(t.addr);
        s.write_all(request("GET", "/big.bin", &[]).as_bytes())
            .unwrap();
        let (code, len, mut body) = read_head(&mut s);
        assert_eq!(code, 200);
        let (rest, ending) = read_to_close(&mut s, Duration::from_secs(5));
        body.extend_from_slice(&rest);
        match len {
            1_048_576 => assert_body_eq(&body, &big()[..1024 * 1024], "the truncated file"),
            BIG_LEN => {
                assert!(
                    truncated.elapsed() < Duration::from_millis(1100),
                    "{:?} after the truncation a response still announces the old length",
                    truncated.elapsed()
                );
                assert_ne!(ending, Ending::Hung, "a stale-length response stayed open");
                assert!(
                    body.len() <= 1024 * 1024,
                    "{} bytes of a 1 MiB file",
                    body.len()
                );
                assert_body_eq(&body, &big()[..body.len()], "a stale-length response");
            }
            other => panic!("Content-Length {other} for a file of 1 MiB (was 20 MiB)"),
        }
    }
    // Past the revalidation interval, the file as it now is.
    std::thread::sleep(Duration::from_millis(1200).saturating_sub(truncated.elapsed()));
    let mut c = t.connect();
    for _ in 0..3 {
        assert_body_eq(
            &c.get("/big.bin").assert_status(200).body,
            &big()[..1024 * 1024],
            "the truncated file after the revalidation interval",
        );
    }
}

/// Start downloading the big file on a keep-alive connection, read 1 MiB of it
/// slowly, run `change`, then read the rest: the whole old body must arrive.
/// Returns the connection and when the change was made.
fn download_across(t: &TestServer, change: impl FnOnce()) -> (Conn, Instant) {
    let mut c = t.connect();
    set_rcvbuf(&c.stream, 64 * 1024);
    c.send(request("GET", "/big.bin", &[]));
    let (code, len, mut body) = read_head(&mut c.stream);
    assert_eq!((code, len), (200, BIG_LEN));
    read_slowly(
        &mut c.stream,
        &mut body,
        1024 * 1024,
        64 * 1024,
        Duration::from_millis(5),
    );
    change();
    let changed = Instant::now();
    read_slowly(
        &mut c.stream,
        &mut body,
        BIG_LEN,
        256 * 1024,
        Duration::ZERO,
    );
    assert_body_eq(&body, big(), "the download across the change");
    (c, changed)
}

/// Past the cache's revalidation interval (1 s; see bodies.rs), every request
/// sees the change.
const REVALIDATED: Duration = Duration::from_millis(1200);

#[test]
fn a_file_replaced_by_rename_during_a_download_keeps_its_old_bytes() {
    let t = TestServer::with(files, |_| {});
    let new = pattern_bytes(5 * 1024 * 1024 + 7, 0xF00D);
    let (mut c, changed) = download_across(&t, || {
        write(&t.root, "big.bin.tmp", &new);
        std::fs::rename(t.root.join("big.bin.tmp"), t.root.join("big.bin")).unwrap();
    });
    // The connection is still in sync. Within the revalidation interval a
    // worker may still serve the old file (whole, from its open descriptor).
    let r = c.get("/big.bin");
    r.assert_status(200);
    assert!(
        r.body == new || (r.body == big() && changed.elapsed() < Duration::from_secs(1)),
        "the next request {:?} after the rename: {} bytes, neither the new file nor (within 1 s) the old one",
        changed.elapsed(),
        r.body.len()
    );
    std::thread::sleep(REVALIDATED.saturating_sub(changed.elapsed()));
    assert_body_eq(
        &c.get("/big.bin").assert_status(200).body,
        &new,
        "the same connection after the revalidation interval",
    );
    for _ in 0..4 {
        assert_body_eq(
            &t.get("/big.bin").assert_status(200).body,
            &new,
            "a new connection after the revalidation interval",
        );
    }
}

#[test]
fn a_file_deleted_during_a_download_keeps_its_old_bytes() {
    let t = TestServer::with(files, |_| {});
    let (mut c, changed) = download_across(&t, || {
        std::fs::remove_file(t.root.join("big.bin")).unwrap();
    });
    let r = c.get("/big.bin");
    if r.status == 200 {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "a deleted file still served {:?} after the delete",
            changed.elapsed()
        );
        assert_body_eq(
            &r.body,
            big(),
            "a deleted file within the revalidation interval",
        );
    } else {
        r.assert_error(404);
    }
    std::thread::sleep(REVALIDATED.saturating_sub(changed.elapsed()));
    c.get("/big.bin").assert_error(404);
    for _ in 0..4 {
        t.get("/big.bin").assert_error(404);
    }
}

#[test]
fn a_blue_green_symlink_swap_is_served_within_a_second_and_a_half() {
    // v1 and v2 index.html have the same size and the same mtime: only the
    // inode tells them apart, as with reproducible builds.
    const V1: &[u8] = b"<h1>release v1 (blue)</h1>\n";
    const V2: &[u8] = b"<h1>release v2 (grn!)</h1>\n";
    assert_eq!(V1.len(), V2.len());
    let asset1 = pattern_bytes(300 * 1024, 1);
    let asset2 = pattern_bytes(300 * 1024, 2);
    let t = TestServer::with(
        |root| {
            for (dir, page, asset) in [("v1", V1, &asset1), ("v2", V2, &asset2)] {
                let p = write(root, &format!("{dir}/index.html"), page);
                set_mtime(&p, 1_700_000_000, 0);
                let p = write(root, &format!("{dir}/app.bin"), asset);
                set_mtime(&p, 1_700_000_000, 0);
            }
            std::os::unix::fs::symlink("v1", root.join("current")).unwrap();
        },
        |cfg| cfg.threads = 2,
    );
    // Warm both workers' caches with v1.
    for _ in 0..20 {
        assert_eq!(t.get("/current/index.html").assert_status(200).body, V1);
        assert_eq!(t.get("/current/").assert_status(200).body, V1);
    }
    assert_body_eq(&t.get("/current/app.bin").body, &asset1, "v1 asset");
    // The deploy: a new symlink renamed over the old one (atomic).
    std::os::unix::fs::symlink("v2", t.root.join("current.new")).unwrap();
    std::fs::rename(t.root.join("current.new"), t.root.join("current")).unwrap();
    let swapped = Instant::now();
    let mut first_v2 = None;
    let mut last_v1 = None;
    while swapped.elapsed() < Duration::from_millis(2500) {
        for target in ["/current/index.html", "/current/"] {
            let r = t.get(target);
            r.assert_status(200);
            let at = swapped.elapsed();
            if r.body == V1 {
                last_v1 = Some(at);
            } else if r.body == V2 {
                first_v2.get_or_insert(at);
            } else {
                panic!(
                    "{target} {at:?} after the swap: neither v1 nor v2: {}",
                    r.describe()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("blue/green: first v2 {first_v2:?}, last v1 {last_v1:?} after the swap");
    assert!(
        first_v2.is_some(),
        "v2 was never served within 2.5 s of the swap"
    );
    if let Some(at) = last_v1 {
        assert!(
            at < Duration::from_millis(1500),
            "v1 was still served {at:?} after the swap (limit 1.5 s)"
        );
    }
    assert_body_eq(&t.get("/current/app.bin").body, &asset2, "v2 asset");
}

// ---------------------------------------------------------------------------
// 7. The connection cap
// ---------------------------------------------------------------------------

#[test]
fn over_the_connection_cap_a_client_waits_in_the_backlog() {
    let t = TestServer::with(files, |cfg| {
        cfg.threads = 1;
        cfg.max_connections = 4;
    });
    // Four idle keep-alive connections (each sent a request, so each was accepted).
    let mut held: Vec<Conn> = (0..4)
        .map(|_| {
            let mut c = t.connect();
            assert_eq!(c.get("/a.txt").assert_status(200).body, SMALL);
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // they are parked now
    let mut fifth = t.connect();
    fifth.send(request("GET", "/a.txt", &[]));
    fifth.assert_silent_for(Duration::from_millis(300));
    drop(held.remove(0));
    let freed = Instant::now();
    let r = fifth.read_response();
    let waited = freed.elapsed();
    assert_eq!(r.assert_status(200).body, SMALL);
    assert!(
        waited < Duration::from_secs(1),
        "the fifth connection was answered {waited:?} after a slot freed"
    );
    // The three still held keep working; the fifth now holds the freed slot.
    for c in &mut held {
        assert_eq!(c.get("/a.txt").assert_status(200).body, SMALL);
    }
    assert_eq!(fifth.get("/a.txt").assert_status(200).body, SMALL);
}
