//! From an admitted request to what to send: a cached file, a file to stream, a redirect or
//! an error. The pipeline for GET and HEAD:
//!
//! 1. decode and normalise the path (400 on bad escapes, NUL, climbing above the root);
//! 2. dotfile policy (404 unless `--hidden`, `/.well-known/` excepted);
//! 3. cache lookup by normalised path; a hit older than the revalidation interval is
//!    checked with one `stat` and dropped if the file changed;
//! 4. on a miss, open beneath the root: a directory without its slash is a 301, with it its
//!    index.html; small regular files are read into the cache with their head rendered.

use std::borrow::Cow;
use std::fs::File;
use std::rc::Rc;

use super::clock::Now;
use super::worker::Worker;
use crate::fs::{self, Kind, Meta, OpenError};
use crate::http::response::{self, FileFields};
use crate::http::{Request, Status};

/// The file served for a directory.
const INDEX_FILE: &[u8] = b"index.html";

/// A small file held in memory: its representation fields (Content-Type through the blank
/// line) followed by its bytes, so a hit is one shared slice.
pub struct CachedFile {
    pub bytes: Rc<[u8]>,
    pub head_len: usize,
    meta: Meta,
    /// The file's path relative to the root (for a directory, its index.html).
    rel: Box<[u8]>,
}

pub enum Reply {
    Cached(Rc<CachedFile>),
    /// A file too large for the cache: fields rendered now, body by sendfile.
    File {
        file: File,
        meta: Meta,
        content_type: Cow<'static, str>,
    },
    /// The path names a directory but lacks the trailing slash.
    Redirect,
    Error(Status),
}

/// Resolves the target of a GET or HEAD. `key` is scratch space (it ends up holding the
/// normalised path).
pub fn resolve(w: &Worker, req: &Request<'_>, key: &mut Vec<u8>, now: Now) -> Reply {
    let norm = match fs::path::normalize(req.path, key) {
        Ok(n) => n,
        Err(_) => return Reply::Error(Status::BadRequest),
    };
    if norm.hidden && !w.cfg().hidden {
        return Reply::Error(Status::NotFound);
    }
    if let Some(hit) = cache_lookup(w, key, now) {
        return Reply::Cached(hit);
    }
    let root = &w.shared.root;
    let rel = fs::path::relative(key);
    let (file, meta, rel) = match root.open_file(rel) {
        Ok((_, meta)) if meta.kind == Kind::Dir => {
            if !norm.trailing_slash {
                return Reply::Redirect;
            }
            let mut index = Vec::with_capacity(rel.len() + 1 + INDEX_FILE.len());
            if rel != b"." {
                index.extend_from_slice(rel);
                index.push(b'/');
            }
            index.extend_from_slice(INDEX_FILE);
            match root.open_file(&index) {
                Ok((file, meta)) => (file, meta, Cow::Owned(index)),
                Err(e) => return open_error(e, &index),
            }
        }
        Ok((_, _)) if norm.trailing_slash => return Reply::Error(Status::NotFound),
        Ok((file, meta)) => (file, meta, Cow::Borrowed(rel)),
        Err(e) => return open_error(e, rel),
    };
    if meta.kind != Kind::File {
        return Reply::Error(Status::NotFound);
    }
    let name = rel.rsplit(|&b| b == b'/').next().unwrap_or(&rel);
    let content_type = fs::mime::content_type(name);
    if meta.len > w.cfg().cache_max_file_bytes {
        return Reply::File {
            file,
            meta,
            content_type,
        };
    }
    match load(
        &file,
        meta,
        &content_type,
        &rel,
        w.cfg().cache_max_file_bytes,
    ) {
        Ok(cached) => {
            let cached = Rc::new(cached);
            w.cache.borrow_mut().insert(
                key,
                cached.clone(),
                cached.bytes.len() + cached.rel.len(),
                now.mono_ms,
            );
            Reply::Cached(cached)
        }
        // It grew past the cache limit while we read it: stream it instead.
        Err(_) => Reply::File {
            file,
            meta,
            content_type,
        },
    }
}

fn cache_lookup(w: &Worker, key: &[u8], now: Now) -> Option<Rc<CachedFile>> {
    let cache = w.cache.borrow();
    let hit = cache.get(key, now.mono_ms)?;
    if !hit.stale {
        return Some(hit.value.clone());
    }
    let value = hit.value.clone();
    drop(cache);
    match w.shared.root.stat(&value.rel) {
        Ok(meta) if meta == value.meta => {
            w.cache.borrow().revalidated(key, now.mono_ms);
            Some(value)
        }
        _ => {
            w.cache.borrow_mut().remove(key);
            None
        }
    }
}

fn load(
    file: &File,
    meta: Meta,
    content_type: &str,
    rel: &[u8],
    limit: u64,
) -> std::io::Result<CachedFile> {
    let body = fs::file::read_whole(file, meta.len, limit)?;
    let mut bytes = Vec::with_capacity(256 + body.len());
    // The length sent is the length read: if the file changed since its stat, the next
    // revalidation notices (its size or mtime differs) and reloads it.
    let fields = FileFields {
        content_type,
        len: body.len() as u64,
        mtime: meta.mtime,
    };
    response::write_file_fields(&mut bytes, &fields);
    let head_len = bytes.len();
    bytes.extend_from_slice(&body);
    Ok(CachedFile {
        bytes: bytes.into(),
        head_len,
        meta,
        rel: rel.into(),
    })
}

fn open_error(e: OpenError, rel: &[u8]) -> Reply {
    match e {
        OpenError::NotFound => Reply::Error(Status::NotFound),
        OpenError::Forbidden => Reply::Error(Status::Forbidden),
        OpenError::Io(e) => {
            eprintln!("fserve: cannot open {}: {e}", String::from_utf8_lossy(rel));
            Reply::Error(Status::InternalServerError)
        }
    }
}
