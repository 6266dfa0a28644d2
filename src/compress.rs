//! Compressed variants of text files (Brotli, zstd, gzip), made once per process, in the
//! background, and shared by every worker.
//!
//! A worker that serves a compressible file asks [`Compressor::lookup`]: the answer is the
//! finished variants (immutable, behind an `Arc`, so every worker holds the same bytes), or
//! "not yet", in which case the file is queued and the request is answered with identity at
//! once. No request ever waits for a compression. A small pool of low-priority threads
//! (nice 19) reads each queued file itself (beneath the root, checked against the
//! metadata it was queued with), compresses it with every encoding and keeps the results
//! that are smaller than the file. Bounded everywhere: the queue ([`QUEUE_MAX`] files), the
//! file size (`--compress-max-file`), and the memory of finished variants
//! (`--compress-cache-size`, least recently used evicted first).
//!
//! A file that changed has a new key (length, mtime, inode, device), so its old variants
//! are never served for it; they age out of the LRU. Each worker's entry for the old
//! version goes at its revalidation, and the new entry asks for the new version.
//!
//! The lock is tried once per lookup while a worker's cache entry has no variants yet (a
//! worker never waits for it: taken, the answer is "not yet"); once it has them, the worker
//! keeps its own `Arc` and never asks again for that version.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;

use crate::fs::{Kind, Meta, Root};

/// Files waiting to be compressed; a lookup that finds the queue full is answered identity
/// and tries again on a later request.
pub(crate) const QUEUE_MAX: usize = 1024;
/// Above this, Brotli uses [`BROTLI_LEVEL_LARGE`] instead of its top level: level 11 costs
/// seconds per MiB.
const BROTLI_LARGE_BYTES: usize = 2 * 1024 * 1024;
const BROTLI_LEVEL_LARGE: u32 = 9;

/// Whether a Content-Type is worth compressing: text and text-like formats, uncompressed
/// fonts and icons; never images, audio, video, archives or woff/woff2 (already compressed).
pub(crate) fn is_compressible(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/")
        || matches!(
            mime.as_str(),
            "application/javascript"
                | "application/json"
                | "application/ld+json"
                | "application/manifest+json"
                | "application/xml"
                | "application/atom+xml"
                | "application/rss+xml"
                | "application/xhtml+xml"
                | "application/wasm"
                | "image/svg+xml"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
                | "image/bmp"
                | "font/ttf"
                | "font/otf"
                | "application/x-font-ttf"
                | "application/x-font-otf"
                | "application/vnd.ms-fontobject"
        )
}

/// Settings, resolved from the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub min_bytes: u64,
    pub max_file_bytes: u64,
    pub cache_bytes: u64,
    /// Brotli quality 0–11.
    pub brotli_level: u32,
    /// zstd level 1–22.
    pub zstd_level: i32,
    /// gzip level 1–9.
    pub gzip_level: u32,
    /// Background threads.
    pub threads: usize,
}

/// The finished variants of one version of one file; an encoding is `None` when its
/// result was not smaller than the file.
#[derive(Debug, Default)]
pub(crate) struct Variants {
    pub(crate) br: Option<Arc<[u8]>>,
    pub(crate) zstd: Option<Arc<[u8]>>,
    pub(crate) gzip: Option<Arc<[u8]>>,
}

impl Variants {
    pub(crate) fn bytes(&self) -> usize {
        [&self.br, &self.zstd, &self.gzip]
            .iter()
            .map(|v| v.as_ref().map_or(0, |b| b.len()))
            .sum()
    }
}

/// One version of one file: what tells versions apart, and nothing to allocate, so that a
/// lookup allocates nothing. Two names of one inode (hard links) share their variants,
/// which are of the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    len: u64,
    mtime: i64,
    mtime_nsec: u32,
    ino: u64,
    dev: u64,
}

impl Key {
    fn new(m: &Meta) -> Key {
        Key {
            len: m.len,
            mtime: m.mtime,
            mtime_nsec: m.mtime_nsec,
            ino: m.ino,
            dev: m.dev,
        }
    }

    fn matches(&self, m: &Meta) -> bool {
        m.kind == Kind::File
            && (m.len, m.mtime, m.mtime_nsec, m.ino, m.dev)
                == (self.len, self.mtime, self.mtime_nsec, self.ino, self.dev)
    }
}

/// What a remembered file version costs besides its variants' bytes (its key, the map's
/// slot): counted in the memory budget so that versions with no variants (nothing came out
/// smaller) are bounded too.
const SLOT_OVERHEAD_BYTES: usize = 128;

enum Slot {
    Queued,
    Ready {
        v: Arc<Variants>,
        used: u64,
    },
    /// Not worth keeping (nothing smaller), or the file changed or vanished before it was
    /// read: a later lookup of the same version is answered identity (until evicted).
    Skipped {
        used: u64,
    },
}

impl Slot {
    /// Bytes charged to the budget for a finished slot under `key`.
    fn weight(&self) -> usize {
        let variants = match self {
            Slot::Ready { v, .. } => v.bytes(),
            _ => 0,
        };
        variants + SLOT_OVERHEAD_BYTES
    }
}

/// What a worker learns from [`Compressor::lookup`].
#[derive(Debug)]
pub(crate) enum Lookup {
    Ready(Arc<Variants>),
    /// Queued or being compressed, the queue is full, or the lock was taken: serve identity,
    /// ask again later.
    Pending,
    /// Outside the size bounds, or not worth it: serve identity, and stop asking.
    No,
}

struct State {
    slots: HashMap<Key, Slot>,
    /// The versions to compress, with the path to read each from.
    queue: VecDeque<(Key, Box<[u8]>)>,
    /// Bytes held for finished slots: variants, and what each remembered version costs.
    bytes: usize,
    /// A counter for least-recently-used order.
    clock: u64,
    stopping: bool,
}

struct Inner {
    state: Mutex<State>,
    work: Condvar,
    root: Arc<Root>,
    settings: Settings,
}

/// The process's compressor: its pool and the finished variants.
pub(crate) struct Compressor {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl Compressor {
    pub(crate) fn start(root: Arc<Root>, settings: Settings) -> std::io::Result<Compressor> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                slots: HashMap::new(),
                queue: VecDeque::new(),
                bytes: 0,
                clock: 0,
                stopping: false,
            }),
            work: Condvar::new(),
            root,
            settings,
        });
        let mut threads = Vec::new();
        for i in 0..settings.threads.max(1) {
            let inner = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("fserve-z{i}"))
                    .spawn(move || pool_thread(&inner))?,
            );
        }
        Ok(Compressor { inner, threads })
    }

    /// Whether a file of `len` bytes is within the size bounds.
    pub(crate) fn wants(&self, len: u64) -> bool {
        let s = &self.inner.settings;
        (s.min_bytes..=s.max_file_bytes).contains(&len)
    }

    /// The variants of `rel` as `meta` describes it, or why not yet; queues it when new.
    pub(crate) fn lookup(&self, rel: &[u8], meta: &Meta) -> Lookup {
        if !self.wants(meta.len) {
            return Lookup::No;
        }
        let key = Key::new(meta);
        // Never wait for the lock: its holder may be a pool thread at nice 19, preempted
        // by busy workers for tens of milliseconds. A worker that finds it taken serves
        // identity and asks again on the next request.
        let mut st = match self.inner.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return Lookup::Pending,
        };
        st.clock += 1;
        let now = st.clock;
        match st.slots.get_mut(&key) {
            Some(Slot::Ready { v, used }) => {
                *used = now;
                return Lookup::Ready(v.clone());
            }
            Some(Slot::Queued) => return Lookup::Pending,
            Some(Slot::Skipped { used }) => {
                *used = now;
                return Lookup::No;
            }
            None => {}
        }
        if st.stopping {
            return Lookup::No;
        }
        if st.queue.len() >= QUEUE_MAX {
            // Full: identity for now; a later request queues it.
            return Lookup::Pending;
        }
        st.slots.insert(key, Slot::Queued);
        st.queue.push_back((key, rel.into()));
        drop(st);
        self.inner.work.notify_one();
        Lookup::Pending
    }

    /// Bytes held now: finished variants, and what each remembered version costs.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        lock(&self.inner.state).bytes
    }
}

impl Drop for Compressor {
    /// Stops the pool without waiting: a thread in the middle of a large file finishes it
    /// and exits (it may take seconds), so stopping the server never waits on it.
    fn drop(&mut self) {
        lock(&self.inner.state).stopping = true;
        self.inner.work.notify_all();
        self.threads.clear();
    }
}

/// A poisoned lock only means another thread panicked while holding it; the state is a
/// cache, consistent after every statement, so go on with it.
fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pool_thread(inner: &Inner) {
    // Lowest priority: compression only uses time the workers leave. A refusal costs
    // nothing but priority, so it is not an error.
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
    loop {
        let (key, rel) = {
            let mut st = lock(&inner.state);
            loop {
                if st.stopping {
                    return;
                }
                if let Some(k) = st.queue.pop_front() {
                    break k;
                }
                st = inner.work.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let made = make(inner, &key, &rel);
        let mut st = lock(&inner.state);
        // Still wanted (a clear may have dropped it)?
        if !matches!(st.slots.get(&key), Some(Slot::Queued)) {
            continue;
        }
        st.clock += 1;
        let used = st.clock;
        let slot = match made {
            Some(v) if v.bytes() > 0 => Slot::Ready {
                v: Arc::new(v),
                used,
            },
            _ => Slot::Skipped { used },
        };
        st.bytes += slot.weight();
        st.slots.insert(key, slot);
        evict(&mut st, inner.settings.cache_bytes as usize);
    }
}

/// Evicts the least recently used finished slots until the held bytes fit `budget`.
fn evict(st: &mut State, budget: usize) {
    while st.bytes > budget {
        let oldest = st
            .slots
            .iter()
            .filter_map(|(k, s)| match s {
                Slot::Ready { used, .. } | Slot::Skipped { used } => Some((*used, *k)),
                Slot::Queued => None,
            })
            .min_by_key(|(used, _)| *used);
        let Some((_, key)) = oldest else { return };
        if let Some(slot) = st.slots.remove(&key) {
            st.bytes -= slot.weight();
        }
    }
}

/// Reads the file named by `key` (if it is still that version) and compresses it.
fn make(inner: &Inner, key: &Key, rel: &[u8]) -> Option<Variants> {
    let (file, meta) = inner.root.open_file(rel).ok()?;
    if !key.matches(&meta) {
        return None;
    }
    let bytes = crate::fs::file::read_whole(&file, meta.len, inner.settings.max_file_bytes).ok()?;
    if bytes.len() as u64 != key.len {
        return None;
    }
    let s = &inner.settings;
    let smaller = |v: Vec<u8>| (v.len() < bytes.len()).then(|| Arc::<[u8]>::from(v));
    Some(Variants {
        br: brotli(&bytes, s.brotli_level).and_then(smaller),
        zstd: zstd(&bytes, s.zstd_level).and_then(smaller),
        gzip: gzip(&bytes, s.gzip_level).and_then(smaller),
    })
}

pub(crate) fn brotli(input: &[u8], level: u32) -> Option<Vec<u8>> {
    let quality = if input.len() > BROTLI_LARGE_BYTES {
        level.min(BROTLI_LEVEL_LARGE)
    } else {
        level
    };
    let params = brotli::enc::BrotliEncoderParams {
        quality: quality.min(11) as i32,
        lgwin: brotli_window(input.len()) as i32,
        size_hint: input.len(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(input.len() / 3);
    brotli::BrotliCompress(&mut &input[..], &mut out, &params).ok()?;
    Some(out)
}

/// Brotli's window (log2 bytes): just large enough for the input, within 10 ..= 22. The
/// encoder's memory follows the window (tens of MiB at 22 and quality 11): a small file
/// needs no more than its own size, and mapping and unmapping that much for every file
/// would cost the workers page faults and TLB shootdowns for nothing.
fn brotli_window(len: usize) -> u32 {
    let bits = usize::BITS - len.saturating_sub(1).leading_zeros();
    bits.clamp(10, 22)
}

pub(crate) fn zstd(input: &[u8], level: i32) -> Option<Vec<u8>> {
    zstd::bulk::compress(input, level.clamp(1, 22)).ok()
}

pub(crate) fn gzip(input: &[u8], level: u32) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(input.len() / 3),
        flate2::Compression::new(level.clamp(1, 9)),
    );
    enc.write_all(input).ok()?;
    enc.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    fn text(len: usize) -> Vec<u8> {
        let words = [
            "const ",
            "function ",
            "return ",
            "value",
            "(x) ",
            "{ ",
            "}\n",
            "let y = ",
        ];
        let mut out = Vec::with_capacity(len);
        let mut i = 0usize;
        while out.len() < len {
            out.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn settings() -> Settings {
        Settings {
            brotli_level: 5,
            zstd_level: 3,
            gzip_level: 6,
            ..Settings::default()
        }
    }

    fn wait_ready(c: &Compressor, rel: &[u8], meta: &Meta) -> Arc<Variants> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.lookup(rel, meta) {
                Lookup::Ready(v) => return v,
                Lookup::Pending => {}
                Lookup::No => panic!("refused"),
            }
            assert!(Instant::now() < deadline, "not ready within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn each_encoding_round_trips() {
        let input = text(100_000);
        let br = brotli(&input, 11).unwrap();
        let mut out = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut out).unwrap();
        assert_eq!(out, input);
        let z = zstd(&input, 19).unwrap();
        assert_eq!(zstd::bulk::decompress(&z, input.len()).unwrap(), input);
        let g = gzip(&input, 9).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&g[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, input);
        assert!(br.len() < input.len() / 10 && z.len() < input.len() / 10);
    }

    #[test]
    fn the_brotli_window_fits_the_input() {
        for (len, bits) in [
            (0, 10),
            (1000, 10),
            (1025, 11),
            (4096, 12),
            (4097, 13),
            (1 << 30, 22),
        ] {
            assert_eq!(brotli_window(len), bits, "{len}");
        }
        for len in [100, 5_000, 70_000] {
            let input = text(len);
            let mut out = Vec::new();
            brotli::BrotliDecompress(&mut &brotli(&input, 11).unwrap()[..], &mut out).unwrap();
            assert_eq!(out, input);
        }
    }

    #[test]
    fn types() {
        for t in [
            "text/html; charset=utf-8",
            "text/javascript; charset=utf-8",
            "application/json",
            "image/svg+xml; charset=utf-8",
            "application/wasm",
            "font/ttf",
            "image/x-icon",
        ] {
            assert!(is_compressible(t), "{t}");
        }
        for t in [
            "image/png",
            "image/jpeg",
            "image/webp",
            "font/woff2",
            "font/woff",
            "application/zip",
            "application/gzip",
            "video/mp4",
            "application/octet-stream",
        ] {
            assert!(!is_compressible(t), "{t}");
        }
    }

    #[test]
    fn a_file_is_compressed_once_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let input = text(50_000);
        std::fs::write(dir.path().join("app.js"), &input).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let (_, meta) = root.open_file(b"app.js").unwrap();
        let c = Compressor::start(Arc::new(Root::open(dir.path()).unwrap()), settings()).unwrap();
        assert!(matches!(c.lookup(b"app.js", &meta), Lookup::Pending));
        let a = wait_ready(&c, b"app.js", &meta);
        let b = wait_ready(&c, b"app.js", &meta);
        assert!(Arc::ptr_eq(&a, &b), "compressed twice");
        assert!(a.br.is_some() && a.zstd.is_some() && a.gzip.is_some());
        assert_eq!(c.bytes(), a.bytes() + SLOT_OVERHEAD_BYTES);
    }

    #[test]
    fn bounds_and_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tiny.css"), b"a{}").unwrap();
        std::fs::write(dir.path().join("rand.bin"), pseudo_random(20_000)).unwrap();
        std::fs::write(dir.path().join("x.js"), text(10_000)).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let c = Compressor::start(Arc::new(Root::open(dir.path()).unwrap()), settings()).unwrap();
        let (_, tiny) = root.open_file(b"tiny.css").unwrap();
        assert!(matches!(c.lookup(b"tiny.css", &tiny), Lookup::No));
        // Incompressible: nothing smaller, so it ends as No.
        let (_, rand) = root.open_file(b"rand.bin").unwrap();
        assert!(matches!(c.lookup(b"rand.bin", &rand), Lookup::Pending));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(c.lookup(b"rand.bin", &rand), Lookup::No) {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        // A stale version (the file changed since its stat) is never compressed.
        let (_, mut stale) = root.open_file(b"x.js").unwrap();
        stale.mtime -= 100;
        assert!(matches!(c.lookup(b"x.js", &stale), Lookup::Pending));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(c.lookup(b"x.js", &stale), Lookup::No) {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn memory_stays_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut s = settings();
        s.cache_bytes = 3_000;
        let c = Compressor::start(Arc::new(Root::open(dir.path()).unwrap()), s).unwrap();
        for i in 0..20 {
            let name = format!("f{i}.js");
            let mut t = text(20_000);
            t.extend_from_slice(format!("{i}").as_bytes());
            std::fs::write(dir.path().join(&name), &t).unwrap();
            let (_, meta) = root.open_file(name.as_bytes()).unwrap();
            let _ = wait_ready(&c, name.as_bytes(), &meta);
            assert!(c.bytes() <= 3_000, "{} bytes held", c.bytes());
        }
    }

    #[test]
    fn versions_with_nothing_smaller_are_bounded_too() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut s = settings();
        s.cache_bytes = 2_000;
        let c = Compressor::start(Arc::new(Root::open(dir.path()).unwrap()), s).unwrap();
        for i in 0..40 {
            let name = format!("r{i}.bin");
            std::fs::write(dir.path().join(&name), pseudo_random(1_000 + i)).unwrap();
            let (_, meta) = root.open_file(name.as_bytes()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !matches!(c.lookup(name.as_bytes(), &meta), Lookup::No) {
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(c.bytes() <= 2_000, "{} bytes held", c.bytes());
        }
        assert!(lock(&c.inner.state).slots.len() <= 2_000 / SLOT_OVERHEAD_BYTES);
    }

    fn pseudo_random(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }
}
