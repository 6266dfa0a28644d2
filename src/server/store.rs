//! The file store: one per worker, the only owner of its file cache, the served root, the
//! cache limits, the memory file and the scratch buffer. It loads files (small ones into
//! memory with their 200 head pre-rendered, from 8 KiB up to `--cache-max-file` into the
//! worker's memory file, larger ones held open), revalidates them, and finds and loads their
//! precompressed sidecars. Entity tags are made in one place ([`etag`]).
//!
//! Compressed variants: a compressible file with no sidecar asks the process's
//! [`Compressor`] for its variants on each request until they are ready (the request gets
//! identity meanwhile); then the file's entry keeps them, each with a head this worker
//! rendered once and the body every worker shares, and asks no more. They live and die
//! with the entry: a file that changed is a new entry, which asks for its new variants.
//!
//! It never decides which path to serve for a request (that is the URL policy in
//! respond.rs) and never writes a response (that is compose.rs).

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use super::clock::Now;
use super::compose::{FileBody, Representation};
use crate::compress::{self, Compressor, Lookup};
use crate::config::Settings;
use crate::fs::{self, Arena, Cache, Extent, Kind, Meta, OpenError, Root};
use crate::http::Request;
use crate::http::negotiate::{self, Coding};
use crate::http::{etag, response};

/// The file served for a directory.
const INDEX_FILE: &[u8] = b"index.html";
/// Precompressed sidecars, in the order preferred when the client weighs them equally.
const SIDECARS: [(Coding, &[u8]); 3] = [
    (Coding::Br, b".br"),
    (Coding::Zstd, b".zst"),
    (Coding::Gzip, b".gz"),
];
/// The codings of compressed variants, in the order preferred when the client weighs them
/// equally (as [`SIDECARS`]).
const CODINGS: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];
/// What an open large file weighs in the cache budget: it bounds the descriptors a worker
/// keeps open (64 MiB of budget: at most 1,024).
const OPEN_FILE_WEIGHT: usize = 64 * 1024;
/// Most large files one worker holds open at once: their descriptors count against
/// RLIMIT_NOFILE beside the connections'. Past it, the least recently used is closed
/// (once no response is sending from it).
pub(crate) const MAX_HELD_OPEN: usize = 256;
/// A held-open file unused for this long is closed by [`Store::close_idle`].
pub(crate) const HELD_OPEN_IDLE_MS: u64 = 30_000;
/// Cached bodies of at least this many bytes are kept in the worker's memory file
/// ([`Arena`]) and sent from it by sendfile, head and body in one call: no copy into the
/// socket. A smaller body stays on the heap behind its pre-rendered head, one slice sent
/// through the ring. Measured, CPU per request (1 worker, 64 connections, 5 alternated
/// rounds): at 4 KiB the two cost the same; from the heap to the memory file, 8 KiB 2% less,
/// 16 KiB 3%, 32 KiB 6%, 48 KiB 4%, 64 KiB 16%, 128 KiB 62%, but 96 KiB 10–30% more (two
/// runs; still 1.75× less than nginx; why is not yet measured).
const ARENA_MIN_BYTES: u64 = 8 * 1024;
/// Address space of the memory file, as a multiple of `--cache-size`, and so the most
/// memory it takes (the file is sparse). The budget counts one copy of each body; the file
/// also holds, until their run is freed whole, copies a new head left behind while sends
/// finish, bodies freed beside live ones, and the unwritten rest of a run on a huge page:
/// the slack is their room.
const ARENA_SLACK: u64 = 2;
/// Cache-Control for HTML: always revalidate, so a deploy shows at once.
const HTML_CACHE_CONTROL: &str = "no-cache";
/// Cache-Control for fingerprinted files with `--immutable`.
const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// A file in the cache: its 200 representation fields (Content-Type through the blank line)
/// pre-rendered, followed, for a small file, by its bytes, so a plain hit is one shared
/// slice. A larger cached file's bytes are in the worker's memory file instead, and a file
/// above `--cache-max-file` is held open: a hit costs no open or stat, and either body goes
/// by sendfile.
pub(super) struct CachedFile {
    pub rep: Representation,
    pub bytes: Rc<[u8]>,
    pub head_len: usize,
    /// For a large file, the open file its body is sent from (by offset, so one descriptor
    /// serves any number of responses at once).
    pub disk: Option<File>,
    /// For a file of [`ARENA_MIN_BYTES`] or more, its bytes in the worker's memory file
    /// (`bytes` then holds the fields alone).
    pub mem: Option<Extent>,
    /// Set when a send found the file shorter than its entry says: the next lookup looks at
    /// the file system at once instead of within the revalidation interval.
    pub suspect: Cell<bool>,
    /// For a file held open: when a request last used it (monotonic ms).
    last_used: Cell<u64>,
    meta: Meta,
    /// The file's path relative to the root (for a directory, its index.html).
    rel: Box<[u8]>,
    /// Which sidecars exist (bit i: `SIDECARS[i]`), for an identity representation: it is
    /// current only while that set is (it decides Vary and what a client gets).
    sidecars: u8,
    is_sidecar: bool,
    /// The directory holding the file, when last looked at: while it is unchanged no
    /// sidecar can have come or gone, so revalidation costs two stats, not five.
    dir: Cell<Option<Meta>>,
    /// For a compressed variant, its body, shared by every worker (`bytes` is its head).
    pub apart: Option<Arc<[u8]>>,
    /// For an identity representation, its compressed variants.
    compressed: RefCell<Compressed>,
}

/// What a worker knows of a file's compressed variants.
enum Compressed {
    /// None: not compressible (its type, its size, a sidecar, `--compress off`), or
    /// nothing smaller came of it.
    No,
    /// Ask the compressor on the next request.
    Asking,
    /// One representation per coding of [`CODINGS`] that came out smaller.
    Ready([Option<Rc<CachedFile>>; 3]),
}

impl CachedFile {
    /// The body is sent from a file (held open, or the memory file), after the head.
    pub(super) fn sent_from_file(&self) -> bool {
        self.disk.is_some() || self.mem.is_some()
    }

    /// The body source, for the compose step.
    pub(super) fn body(&self) -> FileBody<'_> {
        FileBody {
            rep: &self.rep,
            bytes: &self.bytes,
            head_len: self.head_len,
            from_file: self.sent_from_file(),
            body: self.apart.as_deref(),
        }
    }
}

/// What a path turned out to be.
pub(crate) enum Loaded {
    File(Rc<CachedFile>),
    /// A directory named without its trailing slash.
    Redirect,
    /// A directory without index.html, with `--listing`.
    Listing(Vec<u8>),
}

/// A held-open file's cache key, and the file while anything holds it.
type Held = (Box<[u8]>, Weak<CachedFile>);

/// A worker's files: the cache and everything needed to fill and check it.
pub(crate) struct Store {
    root: Arc<Root>,
    cache: RefCell<Cache<CachedFile>>,
    /// Scratch space for building paths: revalidating a cached file allocates nothing.
    scratch: RefCell<Vec<u8>>,
    /// `--cache-max-file`: larger files are held open, not read.
    max_file_bytes: u64,
    /// `--immutable` and `--cache-control`.
    immutable: bool,
    cache_control: Option<Box<str>>,
    /// The large files loaded with a descriptor held open, by cache key (dead entries are
    /// dropped as they are found).
    held: RefCell<Vec<Held>>,
    /// Rendered directory listings, revalidated like files.
    listings: super::listing::ListingCache,
    /// Paths found missing lately: asked again, a 404 without a system call.
    absent: RefCell<fs::Absent>,
    /// Lookups answered from the cache and not, and whether the last one was (for the
    /// metrics and the access log; the worker's tick copies them into its counters).
    hits: Cell<u64>,
    misses: Cell<u64>,
    last_hit: Cell<bool>,
    /// The process's compressor, unless `--compress off`.
    compressor: Option<Arc<Compressor>>,
    /// Where cached bodies of [`ARENA_MIN_BYTES`] or more are kept; `None` where no memory
    /// file could be made (they stay on the heap, copied into the socket on each send).
    arena: Option<Arena>,
}

/// What the worker reports of its store in `/metrics`.
pub(crate) struct StoreStats {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) evictions: u64,
    pub(crate) open_files: u64,
}

impl Store {
    pub(crate) fn new(
        root: Arc<Root>,
        cfg: &Settings,
        compressor: Option<Arc<Compressor>>,
    ) -> Store {
        Store {
            root,
            cache: RefCell::new(Cache::new(
                usize::try_from(cfg.cache_bytes).unwrap_or(usize::MAX),
            )),
            scratch: RefCell::new(Vec::new()),
            max_file_bytes: cfg.cache_max_file_bytes,
            immutable: cfg.immutable,
            cache_control: cfg.cache_control.as_deref().map(Into::into),
            held: RefCell::new(Vec::new()),
            listings: super::listing::ListingCache::default(),
            absent: RefCell::new(fs::Absent::default()),
            hits: Cell::new(0),
            misses: Cell::new(0),
            last_hit: Cell::new(false),
            compressor,
            arena: new_arena(cfg),
        }
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let cache = self.cache.borrow();
        StoreStats {
            entries: cache.len() as u64,
            bytes: cache.used_bytes() as u64,
            hits: self.hits.get(),
            misses: self.misses.get(),
            evictions: cache.evictions(),
            open_files: self.held_open() as u64,
        }
    }

    /// Whether the last [`Store::lookup`] was answered from the cache.
    pub(crate) fn last_was_hit(&self) -> bool {
        self.last_hit.get()
    }

    /// Drops every cached file and every path remembered missing (SIGHUP); held-open files
    /// close once no response uses them.
    pub(crate) fn clear(&self) {
        self.held.borrow_mut().clear();
        self.cache.borrow_mut().clear();
        self.absent.borrow_mut().clear();
    }

    /// The worker's rendered directory listings.
    pub(crate) fn listings(&self) -> &super::listing::ListingCache {
        &self.listings
    }

    pub(crate) fn root(&self) -> &Root {
        &self.root
    }

    /// Opens `rel` beneath the root. Out of descriptors (EMFILE, ENFILE), it closes the
    /// held-open files and tries once more, rather than answer 500 while it holds fds
    /// that a request no longer needs.
    fn open(&self, rel: &[u8]) -> Result<(File, Meta), OpenError> {
        match self.root.open_file(rel) {
            Err(OpenError::Io(e))
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
            {
                self.release_held(|_| true);
                self.root.open_file(rel)
            }
            r => r,
        }
    }

    /// Records that the large file `file`, cached under `key`, holds a descriptor; past
    /// [`MAX_HELD_OPEN`], the least recently used other one is let go.
    fn hold(&self, key: &[u8], file: &Rc<CachedFile>) {
        let victim = {
            let mut held = self.held.borrow_mut();
            held.retain(|(_, f)| f.strong_count() > 0);
            let victim = if held.len() >= MAX_HELD_OPEN {
                let oldest = held
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (_, f))| f.upgrade().map_or(0, |f| f.last_used.get()))
                    .map(|(i, _)| i);
                oldest.map(|i| held.swap_remove(i))
            } else {
                None
            };
            held.push((key.into(), Rc::downgrade(file)));
            victim
        };
        if let Some((key, file)) = victim {
            self.forget(&key, &file);
        }
    }

    /// Lets go of the held-open files for which `release` says so: out of the cache, so
    /// each closes once the last response sending from it is done.
    fn release_held(&self, release: impl Fn(&CachedFile) -> bool) {
        let gone: Vec<_> = {
            let mut held = self.held.borrow_mut();
            let mut gone = Vec::new();
            held.retain(|(key, f)| match f.upgrade() {
                Some(file) if release(&file) => {
                    gone.push((key.clone(), f.clone()));
                    false
                }
                Some(_) => true,
                None => false,
            });
            gone
        };
        for (key, file) in gone {
            self.forget(&key, &file);
        }
    }

    /// Removes `key` from the cache if it still names `file`.
    fn forget(&self, key: &[u8], file: &Weak<CachedFile>) {
        let mut cache = self.cache.borrow_mut();
        let same = cache
            .get(key, 0)
            .is_some_and(|hit| std::ptr::eq(Rc::as_ptr(hit.value), file.as_ptr()));
        if same {
            cache.remove(key);
        }
    }

    /// Closes the held-open files no request has used for [`HELD_OPEN_IDLE_MS`]
    /// (the worker calls this now and then), so descriptors do not outlive their use.
    pub(crate) fn close_idle(&self, now: Now) {
        self.release_held(|f| now.mono_ms.saturating_sub(f.last_used.get()) >= HELD_OPEN_IDLE_MS);
    }

    /// Large files held open now.
    fn held_open(&self) -> usize {
        self.held
            .borrow()
            .iter()
            .filter(|(_, f)| f.strong_count() > 0)
            .count()
    }

    /// The cached file or loaded representation for `key`: a cache hit (revalidated if
    /// stale), else opened beneath the root. `listing`: a directory without index.html is
    /// listed rather than a 404.
    pub(crate) fn lookup(
        &self,
        key: &[u8],
        trailing_slash: bool,
        listing: bool,
        now: Now,
    ) -> Result<Loaded, OpenError> {
        let hit = self.cached(key, now);
        self.last_hit.set(hit.is_some());
        match hit {
            Some(hit) => {
                self.hits.set(self.hits.get() + 1);
                Ok(Loaded::File(hit))
            }
            None => {
                self.misses.set(self.misses.get() + 1);
                if self.absent.borrow().contains(key, now.mono_ms) {
                    return Err(OpenError::NotFound);
                }
                let loaded = self.load_identity(key, trailing_slash, listing, now);
                match &loaded {
                    Err(OpenError::NotFound) => self.absent.borrow_mut().insert(key, now.mono_ms),
                    _ => self.absent.borrow_mut().remove(key),
                }
                loaded
            }
        }
    }

    /// Opens what the normalised path `key` names and caches it if small.
    fn load_identity(
        &self,
        key: &[u8],
        trailing_slash: bool,
        listing: bool,
        now: Now,
    ) -> Result<Loaded, OpenError> {
        let rel = fs::path::relative(key);
        let (file, meta) = self.open(rel)?;
        let (file, meta, rel) = match meta.kind {
            Kind::Dir if !trailing_slash => return Ok(Loaded::Redirect),
            Kind::Dir => {
                let index = join(rel, INDEX_FILE);
                match self.open(&index) {
                    Ok((file, meta)) => (file, meta, index),
                    Err(OpenError::NotFound) if listing => {
                        return Ok(Loaded::Listing(rel.to_vec()));
                    }
                    Err(e) => return Err(e),
                }
            }
            _ if trailing_slash => return Err(OpenError::NotFound),
            _ => (file, meta, rel.to_vec()),
        };
        if meta.kind != Kind::File {
            return Err(OpenError::NotFound);
        }
        let dir = self.root.stat(parent(&rel)).ok();
        let sidecars = self.find_sidecars(&rel);
        self.load(key, file, meta, &rel, None, (sidecars, dir), now)
    }

    /// Puts a regular file into the cache under `key`: read into memory if small, else held open.
    #[allow(clippy::too_many_arguments)]
    fn load(
        &self,
        key: &[u8],
        file: File,
        meta: Meta,
        rel: &[u8],
        coding: Option<Coding>,
        (sidecars, dir): (u8, Option<Meta>),
        now: Now,
    ) -> Result<Loaded, OpenError> {
        // A sidecar has the type of the file it encodes.
        let typed = match coding {
            Some(_) => &rel[..rel.iter().rposition(|&b| b == b'.').unwrap_or(rel.len())],
            None => rel,
        };
        let name = typed.rsplit(|&b| b == b'/').next().unwrap_or(typed);
        let content_type = fs::mime::content_type(name);
        let limit = self.max_file_bytes;
        let varies = sidecars != 0 || coding.is_some();
        // The length sent is the length read: if the file changed since its stat, the next
        // revalidation notices (its size or mtime differs) and reloads it. A file that grew past
        // the cache limit while being read is held open instead.
        let body = if meta.len > limit {
            None
        } else {
            fs::file::read_whole(&file, meta.len, limit).ok()
        };
        let len = body.as_ref().map_or(meta.len, |b| b.len() as u64);
        let compressible = coding.is_none()
            && sidecars == 0
            && compress::is_compressible(&content_type)
            && self.compressor.as_ref().is_some_and(|c| c.wants(len));
        // Vary on every response of a resource that has (or may come to have) another
        // representation, identity and 304s included (RFC 9110 §12.5.5).
        let varies = varies || compressible;
        let (cache_fields, fields) = self.policy_fields(&content_type, name, coding, varies);
        let rep = Representation {
            content_type: content_type.as_ref().into(),
            len,
            mtime: meta.mtime,
            etag: etag(meta.mtime, len, coding, body.as_deref()),
            cache_fields,
            fields,
        };
        let mem = body
            .as_deref()
            .filter(|b| b.len() as u64 >= ARENA_MIN_BYTES)
            .and_then(|b| self.arena.as_ref()?.store(b));
        // Room for the bytes only when they follow the fields here.
        let inline = if mem.is_none() {
            body.as_ref().map_or(0, Vec::len)
        } else {
            0
        };
        let mut bytes = Vec::with_capacity(512 + inline);
        response::write_file_fields(&mut bytes, &rep.file_fields());
        let head_len = bytes.len();
        let weight = match (&body, &mem) {
            (Some(_), Some(mem)) => bytes.len() + mem.weight() as usize,
            (Some(body), None) => {
                bytes.extend_from_slice(body);
                bytes.len()
            }
            (None, _) => OPEN_FILE_WEIGHT,
        };
        let cached = Rc::new(CachedFile {
            rep,
            bytes: bytes.into(),
            head_len,
            disk: if body.is_none() { Some(file) } else { None },
            mem,
            meta,
            rel: rel.into(),
            sidecars,
            is_sidecar: coding.is_some(),
            dir: Cell::new(dir),
            suspect: Cell::new(false),
            last_used: Cell::new(now.mono_ms),
            apart: None,
            compressed: RefCell::new(if compressible {
                Compressed::Asking
            } else {
                Compressed::No
            }),
        });
        if cached.disk.is_some() {
            self.hold(key, &cached);
        }
        self.cache.borrow_mut().insert(
            key,
            cached.clone(),
            weight + cached.rel.len() + 256,
            now.mono_ms,
        );
        Ok(Loaded::File(cached))
    }

    /// The policy's field lines for one representation: Cache-Control and Vary (sent with
    /// 200, 206 and 304), and those with Content-Encoding (sent with 200 and 206).
    fn policy_fields(
        &self,
        content_type: &str,
        name: &[u8],
        coding: Option<Coding>,
        varies: bool,
    ) -> (Box<[u8]>, Box<[u8]>) {
        let mut cache_fields = Vec::new();
        if let Some(cc) = self.cache_control(content_type, name) {
            cache_fields.extend_from_slice(b"Cache-Control: ");
            cache_fields.extend_from_slice(cc.as_bytes());
            cache_fields.extend_from_slice(b"\r\n");
        }
        if varies {
            cache_fields.extend_from_slice(b"Vary: Accept-Encoding\r\n");
        }
        let mut fields = cache_fields.clone();
        if let Some(coding) = coding {
            fields.extend_from_slice(b"Content-Encoding: ");
            fields.extend_from_slice(coding.token().as_bytes());
            fields.extend_from_slice(b"\r\n");
        }
        (cache_fields.into(), fields.into())
    }

    /// HTML always revalidates; fingerprinted assets are immutable with `--immutable`;
    /// everything else gets `--cache-control`, if set.
    fn cache_control(&self, content_type: &str, name: &[u8]) -> Option<&str> {
        if content_type.starts_with("text/html") {
            Some(HTML_CACHE_CONTROL)
        } else if self.immutable && fs::path::is_fingerprinted(name) {
            Some(IMMUTABLE_CACHE_CONTROL)
        } else {
            self.cache_control.as_deref()
        }
    }

    /// The compressed variant of the identity `file` (cached under `key`) that the client
    /// prefers, if it has its variants; asks the compressor for them until it does (the
    /// first ask queues the file). Never waits: without them, the identity is served.
    pub(crate) fn variant(
        &self,
        req: &Request<'_>,
        key: &[u8],
        file: &Rc<CachedFile>,
    ) -> Option<Rc<CachedFile>> {
        let mut state = file.compressed.borrow_mut();
        if let Compressed::Asking = *state {
            // Only a client that takes a coding makes the file worth compressing: one that
            // never asks (an API client, a health check, a load generator) costs none.
            if negotiate::choose(req.fields.accept_encoding, &CODINGS) == Coding::Identity {
                return None;
            }
            let compressor = self.compressor.as_ref()?;
            match compressor.lookup(&file.rel, &file.meta) {
                Lookup::Pending => return None,
                Lookup::No => {
                    *state = Compressed::No;
                    return None;
                }
                Lookup::Ready(v) => {
                    let (variants, weight) = variant_files(file, &v);
                    // The shared bytes count in every worker that holds them: a bound
                    // on this worker's memory, whatever the others do. Variants too
                    // heavy for this worker's cache are not kept: identity it is.
                    if !self.cache.borrow_mut().grow(key, file, weight) {
                        *state = Compressed::No;
                        return None;
                    }
                    *state = Compressed::Ready(variants);
                }
            }
        }
        let Compressed::Ready(variants) = &*state else {
            return None;
        };
        let mut available = [Coding::Identity; 3];
        for (slot, (coding, v)) in available.iter_mut().zip(CODINGS.iter().zip(variants)) {
            if v.is_some() {
                *slot = *coding;
            }
        }
        let chosen = negotiate::choose(req.fields.accept_encoding, &available);
        let i = CODINGS.iter().position(|c| *c == chosen)?;
        variants[i].clone()
    }

    /// Which sidecars of `rel` exist, as a bit set over `SIDECARS`.
    fn find_sidecars(&self, rel: &[u8]) -> u8 {
        // A scratch buffer of the worker's: revalidating a cached file allocates nothing.
        let mut path = self.scratch.borrow_mut();
        let mut mask = 0;
        for (i, (_, ext)) in SIDECARS.iter().enumerate() {
            path.clear();
            path.extend_from_slice(rel);
            path.extend_from_slice(ext);
            if matches!(self.root.stat(&path), Ok(m) if m.kind == Kind::File) {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// The sidecar of the identity `file` (cached under `key`) that the client prefers, if
    /// any: from the cache (key + NUL + coding), or loaded.
    pub(crate) fn sidecar(
        &self,
        req: &Request<'_>,
        key: &mut Vec<u8>,
        file: &CachedFile,
        now: Now,
    ) -> Option<Rc<CachedFile>> {
        if file.sidecars == 0 {
            return None;
        }
        self.choose_sidecar(req, key, &file.rel, file.sidecars, now)
    }

    fn choose_sidecar(
        &self,
        req: &Request<'_>,
        key: &mut Vec<u8>,
        rel: &[u8],
        mask: u8,
        now: Now,
    ) -> Option<Rc<CachedFile>> {
        let coding = negotiated(req, mask)?;
        let (i, (_, ext)) = SIDECARS
            .iter()
            .enumerate()
            .find(|(_, (c, _))| *c == coding)?;
        let identity_len = key.len();
        key.push(0);
        key.push(i as u8);
        let found = match self.cached(key, now) {
            Some(file) => Some(file),
            None => {
                let path = join_ext(rel, ext);
                match self.open(&path) {
                    Ok((file, meta)) if meta.kind == Kind::File => {
                        match self.load(key, file, meta, &path, Some(coding), (0, None), now) {
                            Ok(Loaded::File(file)) => Some(file),
                            _ => None,
                        }
                    }
                    // Gone since the identity was checked: serve the identity.
                    _ => None,
                }
            }
        };
        key.truncate(identity_len);
        found
    }

    /// A cache hit for `key`, revalidated if stale.
    fn cached(&self, key: &[u8], now: Now) -> Option<Rc<CachedFile>> {
        let cache = self.cache.borrow();
        let hit = cache.get(key, now.mono_ms)?;
        if !hit.stale && !hit.value.suspect.get() {
            match &hit.value.disk {
                None => return Some(hit.value.clone()),
                // A large file is held open: one fstat shows a rewrite in place (the same
                // inode with a new length or mtime) at once, so that a head with the old
                // length, or the old ETag over new bytes, never goes out.
                Some(disk) if matches!(Meta::of(disk), Ok(m) if m == hit.value.meta) => {
                    hit.value.last_used.set(now.mono_ms);
                    return Some(hit.value.clone());
                }
                Some(_) => {}
            }
        }
        let value = hit.value.clone();
        drop(cache);
        let current = matches!(self.root.stat(&value.rel), Ok(meta) if meta == value.meta)
            && (value.is_sidecar || self.sidecars_unchanged(&value));
        if current {
            value.suspect.set(false);
            value.last_used.set(now.mono_ms);
            self.cache.borrow().revalidated(key, now.mono_ms);
            Some(value)
        } else {
            self.cache.borrow_mut().remove(key);
            None
        }
    }

    /// Whether the set of sidecars of an identity representation is what it was at load.
    fn sidecars_unchanged(&self, file: &CachedFile) -> bool {
        let dir = self.root.stat(parent(&file.rel)).ok();
        if dir.is_some() && dir == file.dir.get() {
            return true;
        }
        // Look again (after the directory's stat, so nothing slips between them).
        let same = self.find_sidecars(&file.rel) == file.sidecars;
        if same {
            file.dir.set(dir);
        }
        same
    }
}

fn negotiated(req: &Request<'_>, mask: u8) -> Option<Coding> {
    let mut available = [Coding::Identity; 3];
    let mut n = 0;
    for (i, (coding, _)) in SIDECARS.iter().enumerate() {
        if mask & (1 << i) != 0 {
            available[n] = *coding;
            n += 1;
        }
    }
    match negotiate::choose(req.fields.accept_encoding, &available[..n]) {
        Coding::Identity => None,
        c => Some(c),
    }
}

/// The worker's memory file for cached bodies of [`ARENA_MIN_BYTES`] or more, sized for
/// `--cache-size` (none when no file that large is cached), its runs made huge pages by
/// the engine. Where it cannot be made (`memfd_create` refused by a sandbox, past the
/// file-size limit, or shared memory may come in pages larger than its 2 MiB runs), those
/// bodies stay on the heap and the server says so once.
fn new_arena(cfg: &Settings) -> Option<Arena> {
    if cfg.cache_max_file_bytes < ARENA_MIN_BYTES {
        return None;
    }
    match Arena::new(
        cfg.cache_bytes.saturating_mul(ARENA_SLACK),
        Some(crate::engine::collapse_later),
    ) {
        Ok(arena) => Some(arena),
        Err(e) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let fix = match e.kind() {
                    std::io::ErrorKind::FileTooLarge => {
                        "raise the file-size limit (ulimit -f) or lower --cache-size"
                    }
                    std::io::ErrorKind::Unsupported => {
                        "set that shmem_enabled to never or advise to fix"
                    }
                    _ => "allow memfd_create (seccomp profile) to fix",
                };
                crate::diag::warn(&format!(
                    "cached files of 8 KiB and more stay on the heap, at more CPU per \
                     request: cannot make their memory file: {e}; {fix}"
                ))
            });
            None
        }
    }
}

fn parent(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[..i],
        None => b".",
    }
}

/// A worker's representations of the compressed variants `v` of the identity `file`: each
/// with its head rendered here (the identity's type, Last-Modified, Cache-Control and
/// Vary; its own length, Content-Encoding and ETag: the identity's with the coding added,
/// as for sidecars) and its body shared. Also returns what they weigh.
fn variant_files(
    file: &CachedFile,
    v: &compress::Variants,
) -> ([Option<Rc<CachedFile>>; 3], usize) {
    let mut weight = 0;
    let mut out: [Option<Rc<CachedFile>>; 3] = Default::default();
    for (slot, (coding, body)) in out
        .iter_mut()
        .zip(CODINGS.iter().zip([&v.br, &v.zstd, &v.gzip]))
    {
        let Some(body) = body else { continue };
        let id = &file.rep;
        let mut etag = id.etag[..id.etag.len() - 1].to_vec();
        etag.push(b'-');
        etag.extend_from_slice(coding.token().as_bytes());
        etag.push(b'"');
        let mut fields = id.cache_fields.to_vec();
        fields.extend_from_slice(b"Content-Encoding: ");
        fields.extend_from_slice(coding.token().as_bytes());
        fields.extend_from_slice(b"\r\n");
        let rep = Representation {
            content_type: id.content_type.clone(),
            len: body.len() as u64,
            mtime: id.mtime,
            etag: etag.into(),
            cache_fields: id.cache_fields.clone(),
            fields: fields.into(),
        };
        let mut head = Vec::with_capacity(256);
        response::write_file_fields(&mut head, &rep.file_fields());
        weight += head.len() + body.len() + 256;
        *slot = Some(Rc::new(CachedFile {
            rep,
            head_len: head.len(),
            bytes: head.into(),
            disk: None,
            mem: None,
            suspect: Cell::new(false),
            last_used: Cell::new(0),
            meta: file.meta,
            rel: file.rel.clone(),
            sidecars: 0,
            is_sidecar: false,
            dir: Cell::new(None),
            apart: Some(body.clone()),
            compressed: RefCell::new(Compressed::No),
        }));
    }
    (out, weight)
}

/// The quoted strong entity tag of a representation. Every ETag the store makes comes from
/// here, called where a file is loaded, with the coding of a precompressed sidecar:
/// - held in memory (`body`: every byte has been read anyway): a hash of the content, so two
///   releases with the same size and mtime (reproducible builds, mtime 0) never share a
///   validator, and replicas serving the same bytes agree;
/// - sent from disk: nginx's `"mtime-size"`, so validators survive a swap from nginx.
fn etag(mtime: i64, len: u64, coding: Option<Coding>, body: Option<&[u8]>) -> Box<[u8]> {
    let mut etag = Vec::with_capacity(32);
    let coding = coding.map(Coding::token);
    match body {
        Some(body) => response::write_content_etag(&mut etag, etag::content_hash(body), coding),
        None => response::write_etag(&mut etag, mtime, len, coding),
    }
    etag.into()
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    if dir != b"." {
        path.extend_from_slice(dir);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

fn join_ext(rel: &[u8], ext: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(rel.len() + ext.len());
    path.extend_from_slice(rel);
    path.extend_from_slice(ext);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store over `n` files of 2 KiB, each held open (the memory limit is 1 KiB).
    fn store_with(n: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            std::fs::write(dir.path().join(format!("f{i}")), vec![b'x'; 2048]).unwrap();
        }
        let mut cfg = crate::Config::new(dir.path());
        cfg.cache_max_file_bytes = 1024;
        let settings = cfg.resolve(dir.path().to_path_buf()).unwrap();
        let root = Arc::new(Root::open(dir.path()).unwrap());
        (dir, Store::new(root, &settings, None))
    }

    fn at(ms: u64) -> Now {
        Now {
            unix_secs: 0,
            mono_ms: ms,
        }
    }

    fn load(store: &Store, i: usize, now: Now) -> Rc<CachedFile> {
        match store.lookup(format!("/f{i}").as_bytes(), false, false, now) {
            Ok(Loaded::File(f)) => f,
            _ => panic!("f{i} did not load"),
        }
    }

    #[test]
    fn only_a_client_that_takes_a_coding_has_a_file_compressed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.js"), "let x = 1;\n".repeat(300)).unwrap();
        let settings = crate::Config::new(dir.path())
            .resolve(dir.path().to_path_buf())
            .unwrap();
        let root = Arc::new(Root::open(dir.path()).unwrap());
        let compressor =
            Arc::new(Compressor::start(root.clone(), settings.compression.unwrap()).unwrap());
        let store = Store::new(root, &settings, Some(compressor.clone()));
        let Ok(Loaded::File(file)) = store.lookup(b"/app.js", false, false, at(0)) else {
            panic!("app.js did not load");
        };
        let head = |raw: &'static [u8]| {
            crate::http::request::parse(raw, 16 * 1024)
                .unwrap()
                .unwrap()
        };
        let plain = head(b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n");
        for _ in 0..3 {
            assert!(store.variant(&plain, b"/app.js", &file).is_none());
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(
            compressor.bytes(),
            0,
            "compressed for clients that take no coding"
        );
        let br = head(b"GET /app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\n\r\n");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.variant(&br, b"/app.js", &file).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "no br variant within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(compressor.bytes() > 0);
    }

    #[test]
    fn held_open_files_are_capped() {
        let (_dir, store) = store_with(MAX_HELD_OPEN + 20);
        for i in 0..MAX_HELD_OPEN + 20 {
            let f = load(&store, i, at(i as u64));
            assert!(f.disk.is_some(), "f{i} is held open");
        }
        assert_eq!(store.held_open(), MAX_HELD_OPEN);
        // The most recent stay: a hit costs no open.
        let last = MAX_HELD_OPEN + 19;
        let again = load(&store, last, at(10_000));
        assert!(Rc::ptr_eq(&again, &load(&store, last, at(10_001))));
    }

    #[test]
    fn idle_held_open_files_are_closed() {
        let (_dir, store) = store_with(3);
        for i in 0..3 {
            drop(load(&store, i, at(0)));
        }
        // One of them is used again later.
        drop(load(&store, 2, at(HELD_OPEN_IDLE_MS / 2)));
        store.close_idle(at(HELD_OPEN_IDLE_MS));
        assert_eq!(store.held_open(), 1);
        store.close_idle(at(HELD_OPEN_IDLE_MS * 2));
        assert_eq!(store.held_open(), 0);
    }

    #[test]
    fn a_file_being_sent_closes_when_its_response_is_done() {
        let (_dir, store) = store_with(1);
        let sending = load(&store, 0, at(0));
        store.close_idle(at(HELD_OPEN_IDLE_MS));
        // Out of the store, but the response still holds it open.
        assert_eq!(store.held_open(), 0);
        assert!(sending.disk.is_some());
        let weak = Rc::downgrade(&sending);
        drop(sending);
        assert!(weak.upgrade().is_none(), "closed once the response is done");
    }

    #[test]
    fn every_etag_has_the_nginx_form() {
        assert_eq!(&*etag(0x5f5e_1000, 1234, None, None), b"\"5f5e1000-4d2\"");
        assert_eq!(&*etag(0, 5, Some(Coding::Br), None), b"\"0-5-br\"");
        // In memory: the content decides, not the size and mtime.
        let a = etag(7, 5, None, Some(b"hello"));
        assert_eq!(a, etag(9, 5, None, Some(b"hello")));
        assert_ne!(a, etag(7, 5, None, Some(b"jello")));
        assert!(etag(7, 5, Some(Coding::Gzip), Some(b"hello")).ends_with(b"-gzip\""));
    }

    /// The rule the memory file keeps, on huge pages: what a socket may still be sending
    /// (here a pipe, which holds references to the file's pages as a socket's queue does)
    /// is never changed, neither when a new head moves the body to a new copy nor when the
    /// run is punched out. (Punching part of a huge page would zero it in place.)
    /// (Here, not in `fs`, which imports no engine: the store is what hands the arena the
    /// engine's collapse.)
    #[test]
    fn pages_still_being_sent_keep_their_bytes_on_a_huge_page() {
        use std::os::fd::AsFd;
        const HUGE: u64 = 2 << 20;
        let resident = |f: &File| rustix::fs::fstat(f).unwrap().st_blocks as u64 * 512;
        let arena = Arena::new(HUGE, Some(crate::engine::collapse_later)).unwrap();
        let b: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 251) as u8).collect();
        let e = arena.store(&b).unwrap();
        let file = e.file().try_clone().unwrap();
        // The collapse is done by a thread of its own: wait for it, at most 10 s.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while resident(&file) != HUGE && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            resident(&file),
            HUGE,
            "the run was collapsed into one huge page (needs transparent huge pages)"
        );
        let parts: [&[u8]; 2] = [b"HTTP/1.1 200 OK\r\n", b"Content-Length: 12288\r\n\r\n"];
        e.write_head(parts, 1).unwrap();
        let (held, from) = e.after_head(parts).unwrap();
        let whole = (held.offset() - from) as usize + b.len();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut at = from;
        let mut spliced = 0;
        while spliced < whole {
            spliced += rustix::pipe::splice(
                e.file().as_fd(),
                Some(&mut at),
                &w,
                None,
                whole - spliced,
                rustix::pipe::SpliceFlags::empty(),
            )
            .unwrap();
        }
        drop(held);
        e.write_head([b"HTTP/1.1 200 OK\r\n", b"Content-Length: 1\r\n\r\n"], 2)
            .unwrap();
        drop(e);
        assert_eq!(resident(&file), 0, "the run went with its last copy");
        let mut sent = vec![0; whole];
        let mut got = 0;
        while got < whole {
            got += rustix::io::read(&r, &mut sent[got..]).unwrap();
        }
        assert_eq!(
            &sent[..whole - b.len()],
            &parts.concat()[..],
            "the old head"
        );
        assert_eq!(&sent[whole - b.len()..], &b[..], "the old body");
    }
}
