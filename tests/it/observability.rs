//! Running fserve in production, checked with the tools people run it with: GoAccess reads
//! its combined log, every JSON line parses, a real Prometheus scrapes `/metrics` and counts
//! the requests, a log sink that never drains costs lines (counted) but not latency, a
//! rollout with `--shutdown-delay` refuses no connection, and SIGUSR1 follows logrotate.
//! Every tool is required: a missing one fails the test (CI installs them).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::*;

/// A child process killed (and reaped) when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `limit`.
#[track_caller]
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One GET to the admin listener: status and body.
fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = Conn::open(addr).get(path);
    (r.status, r.text())
}

/// A sample's value in Prometheus text (`name{labels} value`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Runs `cmd`, feeding it `input`; its output, or a panic naming the tool.
fn run_tool(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    let name = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {name} (is it installed? CI installs it): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// Sends raw bytes on a new connection and reads until the server closes.
fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(raw).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn site(root: &Path) {
    write(root, "index.html", "<h1>home</h1>\n");
    write(root, "style.css", "body { color: red }\n");
    write(root, "big.bin", vec![7u8; 300 * 1024]);
}

/// Requests that the parser rejects, sent raw: quotes, spaces, CR/LF and bytes that are not
/// UTF-8 in the target, and a line that is not a request at all.
const HOSTILE: &[&[u8]] = &[
    b"GET /a\"b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\xff\xfe\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /x\rforged HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\" - - [01/Jan/2000:00:00:00 +0000] \"GET /forged HTTP/1.1\" 200 1\r\n\r\n",
];

/// A known mix: each entry is one request and its answer's status; the body bytes of
/// every answer are summed as a client reads them.
fn request_mix(srv: &TestServer) -> (usize, u64) {
    let mut body_bytes = 0u64;
    let mut count = 0;
    let mut c = srv.connect();
    for target in [
        "/",
        "/style.css",
        "/big.bin",
        "/missing",
        "/index.html?q=\"x\"",
    ] {
        let r = c.get_h(
            target,
            &[
                "Referer: https://example.com/a\"b",
                "User-Agent: Mozilla/5.0 (X11; \"quoted\" \\ agent)",
            ],
        );
        assert!(r.status == 200 || r.status == 404, "{}", r.describe());
        body_bytes += r.body.len() as u64;
        count += 1;
    }
    let r = c.head("/style.css");
    r.assert_status(200);
    count += 1;
    // Escaped bytes in the target, answered.
    let r = srv.get("/caf%C3%A9%20%22%0D%0A");
    body_bytes += r.body.len() as u64;
    count += 1;
    for raw in HOSTILE {
        let answer = raw_exchange(srv.addr, raw);
        assert!(
            answer.starts_with(b"HTTP/1.1 4"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        let (_, body) = split_response(&answer);
        body_bytes += body.len() as u64;
        count += 1;
    }
    (count, body_bytes)
}

/// Head and body of one raw response (the body: whatever follows the head).
fn split_response(raw: &[u8]) -> (&[u8], &[u8]) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    (&raw[..end + 4], &raw[end + 4..])
}

fn logged_server(format: fserve::config::LogFormat) -> (TestServer, PathBuf) {
    let log = std::env::temp_dir().join(format!(
        "fserve-it-access-{}-{:?}.log",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let path = log.clone();
    let srv = TestServer::with(site, move |cfg| {
        cfg.access_log = Some(fserve::config::LogSink::File(path));
        cfg.log_format = format;
    });
    (srv, log)
}

#[test]
fn goaccess_reads_the_combined_log_with_no_invalid_line_and_the_same_totals() {
    let (mut srv, log) = logged_server(fserve::config::LogFormat::Combined);
    let (sent, body_bytes) = request_mix(&srv);
    // Shutdown hands every worker's last lines to the writer and waits until written.
    srv.shutdown_within(Duration::from_secs(10));
    let text = std::fs::read(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let lines = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(lines, sent, "{}", String::from_utf8_lossy(&text));
    assert!(
        text.iter()
            .all(|&b| b == b'\n' || (0x20..0x7f).contains(&b)),
        "a raw control or non-ASCII byte in the log: {}",
        String::from_utf8_lossy(&text)
    );
    let dir = tempfile::tempdir().unwrap();
    let logfile = dir.path().join("access.log");
    std::fs::write(&logfile, &text).unwrap();
    let report = dir.path().join("report.json");
    let out = run_tool(
        Command::new("goaccess")
            .arg(&logfile)
            .arg("--log-format=COMBINED")
            .arg("--no-global-config")
            .arg("-o")
            .arg(&report),
        b"",
    );
    assert!(
        out.status.success(),
        "goaccess failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = std::fs::read_to_string(&report).unwrap();
    // The report's "general" totals, read with jq.
    let general = run_tool(
        Command::new("jq").args([
            "-r",
            ".general | \"\\(.total_requests) \\(.valid_requests) \\(.failed_requests) \\(.bandwidth)\"",
        ]),
        json.as_bytes(),
    );
    assert!(general.status.success(), "jq: {general:?}");
    let got = String::from_utf8(general.stdout).unwrap();
    assert_eq!(
        got.trim(),
        format!("{sent} {sent} 0 {body_bytes}"),
        "goaccess's total, valid, failed requests and bandwidth; the log:\n{}",
        String::from_utf8_lossy(&text)
    );
}

/// The JSON line's fields, as documented in the README.
const JSON_FIELDS: &[&str] = &[
    "time",
    "remote_addr",
    "method",
    "target",
    "protocol",
    "status",
    "body_bytes",
    "duration_us",
    "referer",
    "user_agent",
    "content_encoding",
    "cache",
    "worker",
];

#[test]
fn every_json_line_parses_with_the_documented_fields() {
    let (mut srv, log) = logged_server(fserve::config::LogFormat::Json);
    let (sent, _) = request_mix(&srv);
    srv.shutdown_within(Duration::from_secs(10));
    let text = std::fs::read(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    // jq parses each line on its own; a line that is not one JSON object fails it. For
    // each it prints the sorted keys and the types that matter.
    let out = run_tool(
        Command::new("jq").args([
            "-c",
            "[(keys_unsorted | join(\",\")), (.status|type), (.duration_us|type), (.body_bytes|type), (.worker|type), .cache, (.time | test(\"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\\\.[0-9]{3}Z$\"))]",
        ]),
        &text,
    );
    assert!(
        out.status.success(),
        "jq could not parse the log: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&text)
    );
    let rows = String::from_utf8(out.stdout).unwrap();
    assert_eq!(rows.lines().count(), sent, "{rows}");
    let keys = JSON_FIELDS.join(",");
    for row in rows.lines() {
        let want_hit =
            format!("[\"{keys}\",\"number\",\"number\",\"number\",\"number\",\"hit\",true]");
        let want_miss = want_hit.replace("\"hit\"", "\"miss\"");
        assert!(row == want_hit || row == want_miss, "{row}");
    }
    // Hostile bytes survive as text: the target with the bytes that are not UTF-8.
    let targets = run_tool(Command::new("jq").args(["-r", ".target"]), &text);
    let targets = String::from_utf8(targets.stdout).unwrap();
    assert!(targets.contains("\\xFF\\xFE\u{1}"), "{targets}");
    assert!(targets.contains("/a\"b"), "{targets}");
}

/// A real Prometheus server on a free port, scraping `target` every second.
fn prometheus(target: SocketAddr, dir: &Path) -> (Reaped, SocketAddr) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let web = SocketAddr::from(([127, 0, 0, 1], port));
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: fserve\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run prometheus (CI installs it): {e}"));
    let child = Reaped(child);
    wait_until(Duration::from_secs(30), "prometheus ready", || {
        TcpStream::connect(web).is_ok() && Conn::open(web).get("/-/ready").status == 200
    });
    (child, web)
}

/// `sum(fserve_http_requests_total)` through Prometheus's HTTP API.
fn query_requests(web: SocketAddr) -> Option<f64> {
    let r = Conn::open(web).get("/api/v1/query?query=sum(fserve_http_requests_total)");
    if r.status != 200 {
        return None;
    }
    let out = run_tool(
        Command::new("jq").args(["-r", ".data.result[0].value[1] // empty"]),
        &r.body,
    );
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

#[test]
fn prometheus_scrapes_the_metrics_and_counts_the_requests() {
    let srv = TestServer::with(site, |cfg| {
        cfg.admin = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    });
    let admin = srv.admin_addr();
    assert_eq!(admin_get(admin, "/healthz").0, 200);
    assert_eq!(admin_get(admin, "/readyz").0, 200, "every worker accepts");
    assert_eq!(admin_get(admin, "/nope").0, 404);
    // A known mix: 4 GET 200, 2 GET 404, 1 HEAD 200, 1 POST 405.
    let mut c = srv.connect();
    for t in ["/", "/style.css", "/", "/big.bin", "/missing", "/missing2"] {
        c.get(t);
    }
    c.head("/");
    srv.req("POST", "/", &["Content-Length: 0"])
        .assert_status(405);
    let sent = 8.0;
    // An answer is counted once its bytes are sent, which the client may see first.
    let mut text = String::new();
    wait_until(Duration::from_secs(5), "every request counted", || {
        text = admin_get(admin, "/metrics").1;
        sample(&text, "fserve_http_request_duration_seconds_count") == Some(sent)
    });
    assert_eq!(
        sample(
            &text,
            r#"fserve_http_requests_total{method="GET",code="200"}"#
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"fserve_http_requests_total{method="GET",code="404"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"fserve_http_requests_total{method="other",code="405"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "fserve_connections_accepted_total"),
        Some(2.0)
    );
    let lint = run_tool(
        Command::new("promtool").args(["check", "metrics"]),
        text.as_bytes(),
    );
    assert!(
        lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let (_prom, web) = prometheus(admin, dir.path());
    wait_until(
        Duration::from_secs(30),
        "Prometheus reports the requests sent",
        || query_requests(web) == Some(sent),
    );
    // The engine is a label of build_info, as scraped.
    let r = Conn::open(web).get("/api/v1/query?query=fserve_build_info");
    assert!(
        r.text()
            .contains(&format!("\"engine\":\"{}\"", srv.engine())),
        "{}",
        r.text()
    );
}

#[test]
fn the_handle_turns_readiness_off_at_once_while_serving_goes_on() {
    let srv = TestServer::with(site, |cfg| {
        cfg.admin = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    });
    let admin = srv.admin_addr();
    assert_eq!(admin_get(admin, "/readyz").0, 200);
    srv.handle().set_unready();
    assert_eq!(admin_get(admin, "/readyz").0, 503);
    assert_eq!(admin_get(admin, "/healthz").0, 200);
    srv.get("/").assert_status(200);
}

#[test]
fn dropping_the_caches_empties_every_worker_cache_within_a_second_or_two() {
    let srv = TestServer::with(site, |cfg| {
        cfg.admin = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    });
    let admin = srv.admin_addr();
    let entries = || sample(&admin_get(admin, "/metrics").1, "fserve_cache_entries");
    for _ in 0..4 {
        srv.get("/style.css").assert_status(200);
        srv.get("/").assert_status(200);
    }
    // The figures reach the counters at each worker's one-second tick.
    wait_until(Duration::from_secs(3), "cached files counted", || {
        entries().is_some_and(|n| n >= 2.0)
    });
    srv.handle().drop_caches();
    wait_until(Duration::from_secs(3), "the caches dropped", || {
        entries() == Some(0.0)
    });
    srv.get("/style.css").assert_status(200);
}

#[test]
fn a_log_that_never_drains_drops_lines_without_slowing_serving() {
    let _heavy = heavy_lock();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    // A reader that never reads: the writer's write blocks once the pipe is full.
    let _reader = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap()
    };
    let path = fifo.clone();
    let srv = TestServer::with(site, move |cfg| {
        cfg.access_log = Some(fserve::config::LogSink::File(path));
        cfg.admin = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    });
    let admin = srv.admin_addr();
    let dropped = || {
        sample(
            &admin_get(admin, "/metrics").1,
            "fserve_access_log_dropped_lines_total",
        )
        .unwrap_or(0.0)
    };
    // What this machine gives a probe while the log still flows.
    let quiet = Probe::quiet(
        srv.addr,
        "/index.html",
        b"<h1>home</h1>\n",
        Duration::from_millis(10),
    );
    let limit = stall_limit(&quiet);
    // Long user agents make long lines: a few hundred fill the pipe and the queue.
    let agent = format!("User-Agent: {}", "a".repeat(6000));
    let mut c = srv.connect();
    let started = Instant::now();
    let mut sent = 0;
    while dropped() == 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no line was dropped after {sent} requests"
        );
        for _ in 0..200 {
            c.get_h("/style.css", &[&agent]).assert_status(200);
            sent += 1;
        }
    }
    drop(c);
    // The log is stuck for good: every line from now on is dropped at its hand-over. A
    // client is served as fast as ever meanwhile.
    let before = dropped();
    let probe = Probe::start(
        srv.addr,
        "/index.html",
        b"<h1>home</h1>\n",
        Duration::from_millis(10),
    );
    std::thread::sleep(Duration::from_millis(2500));
    let stats = probe.finish();
    assert!(stats.failures.is_empty(), "{:?}", stats.failures);
    assert!(stats.ok() >= 100, "only {} probe answers", stats.ok());
    assert!(
        stats.percentile(99) < limit,
        "with the log stuck the probe saw {}; before, {}; limit {limit:?}",
        probe_summary(&stats),
        probe_summary(&quiet)
    );
    wait_until(
        Duration::from_secs(3),
        "the probe's lines counted as dropped",
        || dropped() >= before + stats.ok() as f64,
    );
}

/// The admin address from the real binary's `admin listener at http://ADDR/` line.
fn admin_of(srv: &BinServer) -> SocketAddr {
    let mut found = None;
    wait_until(Duration::from_secs(5), "the admin line on stderr", || {
        found = srv.stderr.lock().unwrap().iter().find_map(|l| {
            diag_message(l)
                .strip_prefix("fserve: admin listener at http://")?
                .split('/')
                .next()?
                .parse()
                .ok()
        });
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn a_rollout_with_a_shutdown_delay_refuses_no_connection_and_exits_0() {
    let _heavy = heavy_lock();
    let root = tempfile::tempdir().unwrap();
    site(root.path());
    let mut srv = BinServer::start(
        root.path(),
        &[
            "-t",
            "2",
            "--shutdown-delay",
            "2s",
            "--grace",
            "2s",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = admin_of(&srv);
    assert_eq!(admin_get(admin, "/readyz").0, 200);
    srv.signal(Signal::TERM);
    let term = Instant::now();
    wait_until(Duration::from_millis(500), "/readyz turns 503", || {
        admin_get(admin, "/readyz").0 == 503
    });
    // New connections, one after another, through most of the delay.
    let mut served = 0;
    while term.elapsed() < Duration::from_millis(1800) {
        let mut s = TcpStream::connect_timeout(&srv.addr, Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("refused {:?} after SIGTERM: {e}", term.elapsed()));
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let (status, body, _) = try_get(&mut s, "/index.html")
            .unwrap_or_else(|e| panic!("{:?} after SIGTERM: {e}", term.elapsed()));
        assert_eq!((status, body.as_slice()), (200, &b"<h1>home</h1>\n"[..]));
        served += 1;
        if term.elapsed() < Duration::from_millis(1800) {
            assert_eq!(admin_get(admin, "/readyz").0, 503, "{:?}", term.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        served >= 20,
        "only {served} connections served in the delay"
    );
    let status = srv.wait_within(Duration::from_secs(8));
    assert_eq!(status.code(), Some(0), "{:?}", srv.stderr.lock().unwrap());
    assert!(
        term.elapsed() >= Duration::from_secs(2),
        "exited {:?} after SIGTERM, before the delay ended",
        term.elapsed()
    );
    assert!(
        TcpStream::connect(srv.addr).is_err(),
        "still listening after exit"
    );
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn sigusr1_after_a_rename_writes_new_lines_to_a_new_file_and_loses_none() {
    let root = tempfile::tempdir().unwrap();
    site(root.path());
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    let rotated = logs.path().join("access.log.1");
    let mut srv = BinServer::start(
        root.path(),
        &["-t", "2", "--access-log", log.to_str().unwrap()],
    );
    let before = 30;
    for _ in 0..before {
        srv_get(srv.addr, "/");
    }
    // Within the one-second flush.
    wait_until(Duration::from_secs(5), "the first lines written", || {
        count_lines(&log) == before
    });
    std::fs::rename(&log, &rotated).unwrap();
    srv.signal(Signal::USR1);
    wait_until(
        Duration::from_secs(5),
        "the log reopened at its path",
        || log.exists(),
    );
    let after = 25;
    for _ in 0..after {
        srv_get(srv.addr, "/style.css");
    }
    // SIGHUP reopens too (and drops the caches); the server goes on.
    srv.signal(Signal::HUP);
    srv_get(srv.addr, "/style.css");
    srv.signal(Signal::TERM);
    assert_eq!(srv.wait_within(Duration::from_secs(10)).code(), Some(0));
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&log).unwrap();
    assert_eq!(old.lines().count(), before, "{old}");
    assert!(
        old.lines().all(|l| l.contains("\"GET / HTTP/1.1\" 200 ")),
        "{old}"
    );
    assert_eq!(new.lines().count(), after + 1, "{new}");
    assert!(
        new.lines()
            .all(|l| l.contains("\"GET /style.css HTTP/1.1\" 200 ")),
        "{new}"
    );
}

fn srv_get(addr: SocketAddr, target: &str) {
    Conn::open(addr).get(target).assert_status(200);
}

#[test]
fn json_format_makes_the_diagnostics_json_too() {
    let root = tempfile::tempdir().unwrap();
    site(root.path());
    let mut cmd = Command::new(BinServer::BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FSERVE_") {
            cmd.env_remove(&k);
        }
    }
    // A start-up error: one JSON line on stderr, exit 2.
    let out = cmd
        .args(["-p", "0", "-b", "127.0.0.1", "--log-format", "json"])
        .arg(root.path().join("missing"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let parsed = run_tool(
        Command::new("jq").args(["-r", "\"\\(.level) \\(.time | length) \\(.message)\""]),
        &out.stderr,
    );
    assert!(parsed.status.success(), "not JSON: {out:?}");
    let text = String::from_utf8(parsed.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("error 24 the directory to serve, ") && text.contains("does not exist"),
        "{text}"
    );
}

#[test]
fn the_client_address_comes_from_forwarded_fields_only_behind_a_trusted_proxy() {
    for trusted in [true, false] {
        let log = std::env::temp_dir().join(format!(
            "fserve-it-proxy-{}-{trusted}.log",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&log);
        let path = log.clone();
        let mut srv = TestServer::with(site, move |cfg| {
            cfg.access_log = Some(fserve::config::LogSink::File(path));
            cfg.log_format = fserve::config::LogFormat::Json;
            if trusted {
                cfg.trusted_proxies = vec![fserve::config::Cidr::parse("127.0.0.0/8").unwrap()];
            }
        });
        srv.get_h(
            "/",
            &["X-Forwarded-For: 203.0.113.9, 198.51.100.7, 127.0.0.2"],
        )
        .assert_status(200);
        srv.get_h(
            "/",
            &["Forwarded: for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\""],
        )
        .assert_status(200);
        srv.get("/").assert_status(200);
        srv.shutdown_within(Duration::from_secs(10));
        let text = std::fs::read(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        let out = run_tool(Command::new("jq").args(["-r", ".remote_addr"]), &text);
        let got = String::from_utf8(out.stdout).unwrap();
        let mut got: Vec<&str> = got.lines().collect();
        got.sort();
        let want = if trusted {
            vec!["127.0.0.1", "198.51.100.7", "2001:db8::1"]
        } else {
            vec!["127.0.0.1", "127.0.0.1", "127.0.0.1"]
        };
        assert_eq!(got, want, "trusted: {trusted}");
    }
}

#[test]
fn connections_closed_are_counted_by_reason() {
    let srv = TestServer::with(site, |cfg| {
        cfg.admin = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        cfg.keepalive_timeout = Duration::from_secs(1);
        cfg.header_timeout = Duration::from_secs(1);
    });
    let admin = srv.admin_addr();
    // The client leaves.
    let mut a = srv.connect();
    a.get("/").assert_status(200);
    drop(a);
    // The server closes after an answer that ends the connection.
    srv.get_h("/", &["Connection: close"]).assert_status(200);
    // Idle past the keep-alive timeout.
    let mut c = srv.connect();
    c.get("/").assert_status(200);
    // A head that never ends: 408 at the header timeout.
    let mut d = srv.connect();
    d.send("GET / HTTP/1.1\r\nHost: x\r\n");
    let reason = |text: &str, r: &str| {
        sample(
            text,
            &format!("fserve_connections_closed_total{{reason=\"{r}\"}}"),
        )
    };
    let mut text = String::new();
    wait_until(Duration::from_secs(10), "four connections closed", || {
        text = admin_get(admin, "/metrics").1;
        ["client", "limit", "keepalive_timeout", "header_timeout"]
            .iter()
            .all(|r| reason(&text, r) == Some(1.0))
    });
    assert_eq!(
        sample(&text, "fserve_connections_accepted_total"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "fserve_connections_open"),
        Some(0.0),
        "{text}"
    );
    for r in ["send_timeout", "error", "shutdown"] {
        assert_eq!(reason(&text, r), Some(0.0), "{r}: {text}");
    }
    drop((c, d));
}

/// `/metrics` counts the memory file's runs the kernel made huge pages: the run each worker
/// keeps ready from the start, and the next one once a cached file takes the first. (The
/// real binary: the count is the process's, which in-process test servers share.)
#[test]
fn the_memory_files_huge_pages_are_counted() {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), "h.bin", pattern_bytes(65_536, 3));
    let srv = BinServer::start(root.path(), &["-t", "1", "--admin", "127.0.0.1:0"]);
    let admin = admin_of(&srv);
    let runs = |result: &str| {
        let text = admin_get(admin, "/metrics").1;
        sample(
            &text,
            &format!("fserve_memory_file_huge_page_runs_total{{result=\"{result}\"}}"),
        )
    };
    wait_until(
        Duration::from_secs(10),
        "the ready run counted as made (needs transparent huge pages)",
        || runs("made") == Some(1.0),
    );
    assert_body_eq(
        &Conn::open(srv.addr).get("/h.bin").body,
        &pattern_bytes(65_536, 3),
        "h.bin",
    );
    wait_until(Duration::from_secs(10), "the next run counted", || {
        runs("made") == Some(2.0)
    });
    assert_eq!(runs("refused"), Some(0.0));
}
