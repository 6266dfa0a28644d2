//! The file store: one per worker, the only owner of its file cache, the served root, the
//! cache limits and the scratch buffer. It loads files (small ones into memory with their
//! 200 head pre-rendered, large ones held open), revalidates them, and finds and loads their
//! precompressed sidecars. Entity tags are made in one place ([`etag`]).
//!
//! It never decides which path to serve for a request (that is the URL policy in
//! respond.rs) and never writes a response (that is compose.rs).

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::rc::Rc;
use std::sync::Arc;

use super::clock::Now;
use super::compose::{FileBody, Representation};
use crate::config::Config;
use crate::fs::{self, Cache, Kind, Meta, OpenError, Root};
use crate::http::Request;
use crate::http::negotiate::{self, Coding};
use crate::http::response;

/// The file served for a directory.
pub(crate) const INDEX_FILE: &[u8] = b"index.html";
/// Precompressed sidecars, in the order preferred when the client weighs them equally.
const SIDECARS: [(Coding, &[u8]); 3] = [
    (Coding::Br, b".br"),
    (Coding::Zstd, b".zst"),
    (Coding::Gzip, b".gz"),
];
/// What an open large file weighs in the cache budget: it bounds the descriptors a worker
/// keeps open (64 MiB of budget: at most 1,024).
const OPEN_FILE_WEIGHT: usize = 64 * 1024;
/// Cache-Control for HTML: always revalidate, so a deploy shows at once.
const HTML_CACHE_CONTROL: &str = "no-cache";
/// Cache-Control for fingerprinted files with `--immutable`.
const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// A file in the cache: its 200 representation fields (Content-Type through the blank line)
/// pre-rendered, followed, for a small file, by its bytes, so a plain hit is one shared
/// slice; a large file is held open instead, so a hit costs no open or stat and its body
/// goes by sendfile.
pub struct CachedFile {
    pub rep: Representation,
    pub bytes: Rc<[u8]>,
    pub head_len: usize,
    /// For a large file, the open file its body is sent from (by offset, so one descriptor
    /// serves any number of responses at once).
    pub disk: Option<File>,
    /// Set when a send found the file shorter than its entry says: the next lookup looks at
    /// the file system at once instead of within the revalidation interval.
    pub suspect: Cell<bool>,
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
}

impl CachedFile {
    /// The body source, for the compose step.
    pub fn body(&self) -> FileBody<'_> {
        FileBody {
            rep: &self.rep,
            bytes: &self.bytes,
            head_len: self.head_len,
            on_disk: self.disk.is_some(),
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
}

impl Store {
    pub(crate) fn new(root: Arc<Root>, cfg: &Config) -> Store {
        Store {
            root,
            cache: RefCell::new(Cache::new(
                usize::try_from(cfg.cache_bytes).unwrap_or(usize::MAX),
            )),
            scratch: RefCell::new(Vec::new()),
            max_file_bytes: cfg.cache_max_file_bytes,
            immutable: cfg.immutable,
            cache_control: cfg.cache_control.as_deref().map(Into::into),
        }
    }

    pub(crate) fn root(&self) -> &Root {
        &self.root
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
        match self.cached(key, now) {
            Some(hit) => Ok(Loaded::File(hit)),
            None => self.load_identity(key, trailing_slash, listing, now),
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
        let root = &self.root;
        let rel = fs::path::relative(key);
        let (file, meta) = root.open_file(rel)?;
        let (file, meta, rel) = match meta.kind {
            Kind::Dir if !trailing_slash => return Ok(Loaded::Redirect),
            Kind::Dir => {
                let index = join(rel, INDEX_FILE);
                match root.open_file(&index) {
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
        let rep = self.representation(&content_type, name, len, meta.mtime, coding, varies);
        let mut bytes = Vec::with_capacity(512 + body.as_ref().map_or(0, Vec::len));
        response::write_file_fields(&mut bytes, &rep.file_fields());
        let head_len = bytes.len();
        let weight = match &body {
            Some(body) => {
                bytes.extend_from_slice(body);
                bytes.len()
            }
            None => OPEN_FILE_WEIGHT,
        };
        let cached = Rc::new(CachedFile {
            rep,
            bytes: bytes.into(),
            head_len,
            disk: if body.is_none() { Some(file) } else { None },
            meta,
            rel: rel.into(),
            sidecars,
            is_sidecar: coding.is_some(),
            dir: Cell::new(dir),
            suspect: Cell::new(false),
        });
        self.cache.borrow_mut().insert(
            key,
            cached.clone(),
            weight + cached.rel.len() + 256,
            now.mono_ms,
        );
        Ok(Loaded::File(cached))
    }

    /// The fields of one representation: validators, and the policy's Cache-Control and Vary.
    fn representation(
        &self,
        content_type: &str,
        name: &[u8],
        len: u64,
        mtime: i64,
        coding: Option<Coding>,
        varies: bool,
    ) -> Representation {
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
        Representation {
            content_type: content_type.into(),
            len,
            mtime,
            etag: etag(mtime, len, coding),
            cache_fields: cache_fields.into(),
            fields: fields.into(),
        }
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
                match self.root.open_file(&path) {
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

fn parent(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[..i],
        None => b".",
    }
}

/// The quoted strong entity tag of a representation. Every ETag the store makes comes from
/// here: nginx's `"mtime-size"` format, with the coding of a precompressed sidecar.
fn etag(mtime: i64, len: u64, coding: Option<Coding>) -> Box<[u8]> {
    let mut etag = Vec::with_capacity(32);
    response::write_etag(&mut etag, mtime, len, coding.map(Coding::token));
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
