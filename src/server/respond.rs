//! From an admitted GET or HEAD to what to send: a file (from memory or disk), a generated
//! listing, a redirect or an error. The pipeline:
//!
//! 1. decode and normalise the path (400 on bad escapes, NUL, climbing above the root);
//! 2. dotfile policy (404 unless `--hidden`, `/.well-known/` excepted);
//! 3. cache lookup by normalised path; a hit older than the revalidation interval is
//!    checked with `stat` (the file and its precompressed sidecars) and dropped if changed;
//! 4. on a miss, open beneath the root: a directory without its slash is a 301, with it its
//!    index.html (or a listing); small regular files are read into the cache with their
//!    200 head rendered;
//! 5. content negotiation: if the file has `.br`/`.zst`/`.gz` sidecars and the client
//!    accepts one, that representation is looked up the same way (its key is the path plus
//!    the coding);
//! 6. for a missing file: `--pretty-urls` (`/about` → about.html), `--spa`, `404.html`.
//!
//! Conditionals and ranges are the connection's business (conn.rs): they need only the
//! chosen representation's validators and bytes.

use std::cell::Cell;
use std::fs::File;
use std::rc::Rc;

use super::clock::Now;
use super::worker::Worker;
use crate::fs::{self, Kind, Meta, OpenError};
use crate::http::negotiate::{self, Coding};
use crate::http::response::{self, FileFields};
use crate::http::{Request, Status};

/// The file served for a directory.
const INDEX_FILE: &[u8] = b"index.html";
/// The page served with 404 for missing paths, when the root has one.
const NOT_FOUND_FILE: &[u8] = b"404.html";
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

/// One representation of a resource (one encoding of one file), as it is served.
pub struct Representation {
    pub content_type: Box<str>,
    pub len: u64,
    pub mtime: i64,
    /// The quoted strong entity tag.
    pub etag: Box<[u8]>,
    /// Cache-Control and Vary lines: sent with 200, 206 and 304.
    pub cache_fields: Box<[u8]>,
    /// Cache-Control, Vary and Content-Encoding lines: sent with 200 and 206.
    pub fields: Box<[u8]>,
}

impl Representation {
    pub fn file_fields(&self) -> FileFields<'_> {
        FileFields {
            content_type: &self.content_type,
            len: self.len,
            mtime: self.mtime,
            etag: &self.etag,
            extra: &self.fields,
        }
    }
}

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

pub enum Reply {
    /// A file, with `status` (200, or 404 for the 404 page).
    File {
        status: Status,
        file: Rc<CachedFile>,
    },
    /// A generated page (a directory listing).
    Generated {
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// The answer to OPTIONS.
    Options,
    /// The path names a directory but lacks the trailing slash.
    Redirect,
    Error(Status),
}

/// Resolves the target of a GET or HEAD. `key` is scratch space.
pub fn resolve(w: &Worker, req: &Request<'_>, key: &mut Vec<u8>, now: Now) -> Reply {
    let norm = match fs::path::normalize(req.path, key) {
        Ok(n) => n,
        Err(_) => return Reply::Error(Status::BadRequest),
    };
    if norm.hidden && !w.cfg().hidden {
        return not_found(w, req, key, now);
    }
    let identity = match cached(w, key, now) {
        Some(hit) => hit,
        None => match load_identity(w, key, norm.trailing_slash, now) {
            Ok(Loaded::File(file)) => file,
            Ok(Loaded::Redirect) => return Reply::Redirect,
            Ok(Loaded::Listing(rel)) => return super::listing::render(w, req, &rel),
            Err(OpenError::NotFound) => return not_found(w, req, key, now),
            Err(e) => return open_error(e, key),
        },
    };
    if identity.sidecars != 0 {
        if let Some(reply) = choose_sidecar(w, req, key, &identity.rel, identity.sidecars, now) {
            return reply;
        }
    }
    Reply::File {
        status: Status::Ok,
        file: identity,
    }
}

enum Loaded {
    File(Rc<CachedFile>),
    Redirect,
    /// A directory without index.html, with `--listing`.
    Listing(Vec<u8>),
}

/// Opens what the normalised path `key` names and caches it if small.
fn load_identity(
    w: &Worker,
    key: &[u8],
    trailing_slash: bool,
    now: Now,
) -> Result<Loaded, OpenError> {
    let root = &w.shared.root;
    let rel = fs::path::relative(key);
    let (file, meta) = root.open_file(rel)?;
    let (file, meta, rel) = match meta.kind {
        Kind::Dir if !trailing_slash => return Ok(Loaded::Redirect),
        Kind::Dir => {
            let index = join(rel, INDEX_FILE);
            match root.open_file(&index) {
                Ok((file, meta)) => (file, meta, index),
                Err(OpenError::NotFound) if w.cfg().listing => {
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
    let dir = w.shared.root.stat(parent(&rel)).ok();
    let sidecars = find_sidecars(w, &rel);
    load(w, key, file, meta, &rel, None, (sidecars, dir), now)
}

/// Puts a regular file into the cache under `key`: read into memory if small, else held open.
#[allow(clippy::too_many_arguments)]
fn load(
    w: &Worker,
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
    let limit = w.cfg().cache_max_file_bytes;
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
    let rep = representation(w, &content_type, name, len, meta.mtime, coding, varies);
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
    w.cache.borrow_mut().insert(
        key,
        cached.clone(),
        weight + cached.rel.len() + 256,
        now.mono_ms,
    );
    Ok(Loaded::File(cached))
}

/// The fields of one representation: validators, and the policy's Cache-Control and Vary.
fn representation(
    w: &Worker,
    content_type: &str,
    name: &[u8],
    len: u64,
    mtime: i64,
    coding: Option<Coding>,
    varies: bool,
) -> Representation {
    let mut etag = Vec::with_capacity(32);
    response::write_etag(&mut etag, mtime, len, coding.map(Coding::token));
    let mut cache_fields = Vec::new();
    if let Some(cc) = cache_control(w, content_type, name) {
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
        etag: etag.into(),
        cache_fields: cache_fields.into(),
        fields: fields.into(),
    }
}

/// HTML always revalidates; fingerprinted assets are immutable with `--immutable`;
/// everything else gets `--cache-control`, if set.
fn cache_control<'a>(w: &'a Worker, content_type: &str, name: &[u8]) -> Option<&'a str> {
    if content_type.starts_with("text/html") {
        Some(HTML_CACHE_CONTROL)
    } else if w.cfg().immutable && fs::path::is_fingerprinted(name) {
        Some(IMMUTABLE_CACHE_CONTROL)
    } else {
        w.cfg().cache_control.as_deref()
    }
}

/// Which sidecars of `rel` exist, as a bit set over `SIDECARS`.
fn find_sidecars(w: &Worker, rel: &[u8]) -> u8 {
    // A scratch buffer of the worker's: revalidating a cached file allocates nothing.
    let mut path = w.scratch.borrow_mut();
    let mut mask = 0;
    for (i, (_, ext)) in SIDECARS.iter().enumerate() {
        path.clear();
        path.extend_from_slice(rel);
        path.extend_from_slice(ext);
        if matches!(w.shared.root.stat(&path), Ok(m) if m.kind == Kind::File) {
            mask |= 1 << i;
        }
    }
    mask
}

/// The sidecar the client prefers, if any: from the cache (key + NUL + coding), or loaded.
fn choose_sidecar(
    w: &Worker,
    req: &Request<'_>,
    key: &mut Vec<u8>,
    rel: &[u8],
    mask: u8,
    now: Now,
) -> Option<Reply> {
    let coding = negotiated(req, mask)?;
    let (i, (_, ext)) = SIDECARS
        .iter()
        .enumerate()
        .find(|(_, (c, _))| *c == coding)?;
    let identity_len = key.len();
    key.push(0);
    key.push(i as u8);
    let reply = match cached(w, key, now) {
        Some(file) => Some(Reply::File {
            status: Status::Ok,
            file,
        }),
        None => {
            let path = join_ext(rel, ext);
            match w.shared.root.open_file(&path) {
                Ok((file, meta)) if meta.kind == Kind::File => {
                    match load(w, key, file, meta, &path, Some(coding), (0, None), now) {
                        Ok(Loaded::File(file)) => Some(Reply::File {
                            status: Status::Ok,
                            file,
                        }),
                        _ => None,
                    }
                }
                // Gone since the identity was checked: serve the identity.
                _ => None,
            }
        }
    };
    key.truncate(identity_len);
    reply
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

/// A cache hit for `key`, revalidated if stale.
fn cached(w: &Worker, key: &[u8], now: Now) -> Option<Rc<CachedFile>> {
    let cache = w.cache.borrow();
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
    let current = matches!(w.shared.root.stat(&value.rel), Ok(meta) if meta == value.meta)
        && (value.is_sidecar || sidecars_unchanged(w, &value));
    if current {
        value.suspect.set(false);
        w.cache.borrow().revalidated(key, now.mono_ms);
        Some(value)
    } else {
        w.cache.borrow_mut().remove(key);
        None
    }
}

/// Whether the set of sidecars of an identity representation is what it was at load.
fn sidecars_unchanged(w: &Worker, file: &CachedFile) -> bool {
    let dir = w.shared.root.stat(parent(&file.rel)).ok();
    if dir.is_some() && dir == file.dir.get() {
        return true;
    }
    // Look again (after the directory's stat, so nothing slips between them).
    let same = find_sidecars(w, &file.rel) == file.sidecars;
    if same {
        file.dir.set(dir);
    }
    same
}

fn parent(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[..i],
        None => b".",
    }
}

/// A missing path: `--pretty-urls`, then `--spa`, then the root's 404.html, then the
/// built-in page.
fn not_found(w: &Worker, req: &Request<'_>, key: &mut Vec<u8>, now: Now) -> Reply {
    let cfg = w.cfg();
    if cfg.pretty_urls && !key.ends_with(b"/") && key.len() > 1 {
        let plain = key.len();
        key.extend_from_slice(b".html");
        if let Some(reply) = serve_named(w, key, Status::Ok, now) {
            return reply;
        }
        key.truncate(plain);
    }
    if let Some(spa) = &cfg.spa {
        if negotiate::accepts_html(req.fields.accept) {
            key.clear();
            key.push(b'/');
            key.extend_from_slice(spa.as_os_str().as_encoded_bytes());
            if let Some(reply) = serve_named(w, key, Status::Ok, now) {
                return reply;
            }
        }
    }
    key.clear();
    key.push(b'/');
    key.extend_from_slice(NOT_FOUND_FILE);
    serve_named(w, key, Status::NotFound, now).unwrap_or(Reply::Error(Status::NotFound))
}

/// Serves the regular file at the normalised path `key` with `status`, if it exists.
fn serve_named(w: &Worker, key: &[u8], status: Status, now: Now) -> Option<Reply> {
    if let Some(file) = cached(w, key, now) {
        return Some(Reply::File { status, file });
    }
    match load_identity(w, key, false, now) {
        Ok(Loaded::File(file)) => Some(Reply::File { status, file }),
        _ => None,
    }
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

fn open_error(e: OpenError, key: &[u8]) -> Reply {
    match e {
        OpenError::NotFound => Reply::Error(Status::NotFound),
        OpenError::Forbidden => Reply::Error(Status::Forbidden),
        OpenError::Io(e) => {
            eprintln!("fserve: cannot open {}: {e}", String::from_utf8_lossy(key));
            Reply::Error(Status::InternalServerError)
        }
    }
}
