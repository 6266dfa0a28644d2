//! A large file that is not in the page cache, on a slow disk: its download must not stall
//! the other connections of the worker sending it. The server runs as the real binary in a
//! cgroup v1 blkio group that throttles its disk reads to a slow disk's pace; the file is
//! evicted from the page cache first (fsync, then POSIX_FADV_DONTNEED).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::support::*;

/// Where the cgroup v1 blkio controller is mounted.
const BLKIO_ROOT: &str = "/sys/fs/cgroup/blkio";
/// The disk's read pace for the server: a slow disk's (bytes per second).
const THROTTLE_BPS: u64 = 20 * 1024 * 1024;
/// The cold file: at [`THROTTLE_BPS`] it takes about five seconds to read.
const COLD_BYTES: usize = 100 * 1024 * 1024;
/// How often the probe asks for a small file.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// Downloads tried before the test fails: the probe's p99 must stay under its
/// [`stall_limit`] in one. A worker that waits for the disk in sendfile holds every other
/// connection for at least a 1 MiB slice at the throttled pace (50 ms; 400 to 600 ms were
/// seen, as readahead queues more), in every download; one that does not showed 2 to 5 ms
/// (a debug build, the download copying through loopback on a 2-CPU machine), and a shared
/// host's own bursts come and go.
const ATTEMPTS: usize = 3;

/// A child blkio group with a read throttle on one device; on drop, its processes go back
/// to the root group and it is removed.
struct ThrottleGroup {
    dir: PathBuf,
}

impl ThrottleGroup {
    /// A new group that limits reads from the block device `dev` ("MAJ:MIN") to `bps`.
    fn new(dev: &str, bps: u64) -> ThrottleGroup {
        let knob = Path::new(BLKIO_ROOT).join("blkio.throttle.read_bps_device");
        assert!(
            knob.exists(),
            "{} is missing: this test needs the cgroup v1 blkio controller mounted at \
             {BLKIO_ROOT} with throttling (CONFIG_BLK_DEV_THROTTLING), to make the disk slow \
             for the server; mount it (`mount -t cgroup -o blkio cgroup {BLKIO_ROOT}`)",
            knob.display()
        );
        let dir = Path::new(BLKIO_ROOT).join(format!("fserve-cold-test-{}", std::process::id()));
        if dir.exists() {
            drop(ThrottleGroup { dir: dir.clone() });
        }
        fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create the blkio group {} ({e}): run the tests as root, with \
                 {BLKIO_ROOT} mounted read-write",
                dir.display()
            )
        });
        let group = ThrottleGroup { dir };
        group.write("blkio.throttle.read_bps_device", &format!("{dev} {bps}"));
        group
    }

    fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        fs::write(&path, value)
            .unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
    }

    /// Moves process `pid` (all its threads, and those it starts later) into the group.
    fn add(&self, pid: libc::pid_t) {
        self.write("cgroup.procs", &pid.to_string());
    }

    /// Bytes read from the device `dev` by the group's tasks so far.
    fn read_bytes(&self, dev: &str) -> u64 {
        let path = self.dir.join("blkio.throttle.io_service_bytes");
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let want = format!("{dev} Read ");
        text.lines()
            .find_map(|l| l.strip_prefix(&want)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ThrottleGroup {
    fn drop(&mut self) {
        let root = Path::new(BLKIO_ROOT).join("cgroup.procs");
        // A group can be removed only once it holds no task.
        for _ in 0..100 {
            if let Ok(procs) = fs::read_to_string(self.dir.join("cgroup.procs")) {
                for pid in procs.split_whitespace() {
                    let _ = fs::write(&root, pid);
                }
            }
            if fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not remove the blkio group {}", self.dir.display());
    }
}

/// The whole block device ("MAJ:MIN") that holds `path`: the disk itself when the file
/// system is on a partition (the throttle applies to the disk's requests).
fn disk_of(path: &Path) -> String {
    let st = rustix::fs::stat(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    let (major, minor) = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    assert!(
        sys.exists(),
        "{} is on device {major}:{minor}, which is not a block device (tmpfs, overlay?): \
         the disk cannot be throttled; point TMPDIR at a directory on a disk",
        path.display()
    );
    if sys.join("partition").exists() {
        let disk = fs::canonicalize(&sys)
            .unwrap()
            .parent()
            .unwrap()
            .join("dev");
        return fs::read_to_string(&disk)
            .unwrap_or_else(|e| panic!("read {}: {e}", disk.display()))
            .trim()
            .to_string();
    }
    format!("{major}:{minor}")
}

/// Bytes of `path` in the page cache, as util-linux's `fincore` counts them.
fn cached_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run fincore ({e}): install util-linux, which checks the eviction")
        });
    assert!(out.status.success(), "fincore failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("fincore printed {out:?}: {e}"))
}

/// Writes `content` to `path`, flushes it to the disk, and drops it from the page cache.
fn write_cold(path: &Path, content: &[u8]) {
    let mut f = fs::File::create(path).unwrap();
    f.write_all(content).unwrap();
    f.sync_all().unwrap();
    drop(f);
    evict(path);
}

/// Drops `path` from the page cache. A page still referenced (readahead reading it in, or
/// a socket's queue holding what sendfile gave it) cannot be dropped yet: ask again until
/// none is left.
fn evict(path: &Path) {
    let f = fs::File::open(path).unwrap();
    let gone = poll_until(Duration::from_secs(5), || {
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        cached_bytes(path) == 0
    });
    assert!(
        gone.is_some(),
        "{} bytes of {} stayed in the page cache",
        cached_bytes(path),
        path.display()
    );
}

/// GETs `target` and checks the body is exactly `expected`, without holding a copy.
fn download(addr: std::net::SocketAddr, target: &str, expected: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request("GET", target, &[]).as_bytes()).unwrap();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut head = Vec::new();
    let body_start = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the response head");
        head.extend_from_slice(&buf[..n]);
        if let Some((code, headers, rest)) = split_head(&head) {
            assert_eq!(code, 200, "{:?}", String::from_utf8_lossy(&head[..200]));
            let len = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map(|(_, v)| v.as_str());
            assert_eq!(len, Some(expected.len().to_string().as_str()));
            break rest.to_vec();
        }
    };
    assert_eq!(
        body_start,
        expected[..body_start.len()],
        "the body's first bytes"
    );
    let mut got = body_start.len();
    while got < expected.len() {
        let n = s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("reading the body after {got} bytes: {e}"));
        assert!(n > 0, "closed after {got} of {} body bytes", expected.len());
        assert!(got + n <= expected.len(), "more bytes than Content-Length");
        assert!(
            buf[..n] == expected[got..got + n],
            "the body differs from the file in bytes {got}..{}",
            got + n
        );
        got += n;
    }
}

#[test]
fn a_cold_file_on_a_slow_disk_does_not_stall_the_worker() {
    let _heavy = heavy_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dev = disk_of(tmp.path());
    write(tmp.path(), "small.txt", "small and always cached\n");
    let content = pattern_bytes(COLD_BYTES, 15);
    let cold = tmp.path().join("cold.bin");
    write_cold(&cold, &content);

    let group = ThrottleGroup::new(&dev, THROTTLE_BPS);
    // One worker: the probe and the download share it.
    let srv = BinServer::start(tmp.path(), &["-t", "1"]);
    group.add(srv.pid());

    // The small file is in the worker's memory cache before the probe starts.
    let warm = Conn::open(srv.addr).get("/small.txt");
    warm.assert_status(200);
    let mut seen = Vec::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            evict(&cold);
        }
        let read_before = group.read_bytes(&dev);
        let quiet = Probe::quiet(srv.addr, "/small.txt", &warm.body, PROBE_INTERVAL);
        let limit = stall_limit(&quiet);
        let probe = Probe::start(srv.addr, "/small.txt", &warm.body, PROBE_INTERVAL);
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        download(srv.addr, "/cold.bin", &content);
        let took = started.elapsed();
        let stats = probe.finish();

        // The disk really was slow for the server: its reads went through the group.
        let read = group.read_bytes(&dev) - read_before;
        assert!(
            read >= COLD_BYTES as u64 / 2,
            "the server read only {read} bytes from {dev} through the throttled group (the \
             file is {COLD_BYTES}): the throttle did not apply to it"
        );
        assert!(
            stats.failures.is_empty(),
            "the probe failed {} time(s), first: {:?}",
            stats.failures.len(),
            stats.failures.first()
        );
        assert!(
            stats.ok() >= 50,
            "the probe got only {} answers during the download",
            stats.ok()
        );
        let line = format!(
            "attempt {attempt}: cold download of {COLD_BYTES} bytes took {took:?}; probe \
             without it {}; beside it {}; limit {limit:?}",
            probe_summary(&quiet),
            probe_summary(&stats)
        );
        eprintln!("{line}");
        seen.push(line);
        if stats.percentile(99) < limit {
            drop(srv);
            drop(group);
            return;
        }
    }
    panic!(
        "while a cold file went out, a small request on the same worker stayed at its p99 \
         limit or over in every download:\n{}",
        seen.join("\n")
    );
}

#[test]
fn ranges_of_a_cold_file_are_its_exact_bytes() {
    // No throttle: this checks what the cold path sends, slice by slice, for ranges that
    // start and end off page and slice boundaries, single and multipart, and the whole
    // file, each time from a page cache that holds none of it.
    const SIZE: usize = 3 * 1024 * 1024 + 12_345;
    let content = pattern_bytes(SIZE, 16);
    let t = TestServer::with(|root| write_cold(&root.join("big.bin"), &content), |_| {});
    let path = t.root.join("big.bin");
    evict(&path);
    let (first, last) = (1_000_001u64, 2_500_000u64);
    t.connect()
        .get_h("/big.bin", &[&format!("Range: bytes={first}-{last}")])
        .assert_partial(
            first,
            last,
            SIZE as u64,
            &content[first as usize..=last as usize],
        );

    evict(&path);
    let spans = [(7u64, 4_100u64), (262_100, 262_200), (1_048_570, 2_100_000)];
    let spec = spans
        .iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(",");
    let r = t
        .connect()
        .get_h("/big.bin", &[&format!("Range: bytes={spec}")]);
    r.assert_line(206);
    let parts = r.byteranges();
    assert_eq!(parts.len(), spans.len(), "{}", r.describe());
    for (part, &(a, b)) in parts.iter().zip(&spans) {
        assert_eq!(part.range(), (a, b, SIZE as u64));
        assert_body_eq(
            &part.body,
            &content[a as usize..=b as usize],
            &format!("part {a}-{b}"),
        );
    }

    evict(&path);
    let mut conn = t.connect();
    conn.get("/big.bin").assert_whole(&content);
    // The connection is still in step: the next answer is whole too.
    conn.get("/big.bin").assert_whole(&content);
}
