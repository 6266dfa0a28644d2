//! URL policy: from an admitted GET or HEAD to what to send: a file (from memory or disk),
//! a generated listing, a redirect or an error. It takes the worker's file store and the
//! settings, nothing else. The pipeline:
//!
//! 1. decode and normalise the path (400 on bad escapes, NUL, climbing above the root);
//! 2. dotfile policy (404 unless `--hidden`, `/.well-known/` excepted);
//! 3. the store: a cache hit (revalidated with `stat` when older than the revalidation
//!    interval), or opened beneath the root on a miss: a directory without its slash is a
//!    301, with it its index.html (or a listing);
//! 4. content negotiation: if the file has `.br`/`.zst`/`.gz` sidecars and the client
//!    accepts one, that representation is looked up the same way; else, for a
//!    compressible file, its compressed variants once they are ready (compress.rs);
//! 5. for a missing file: `--pretty-urls` (`/about` → about.html), `--spa`, `404.html`.
//!    Every fallback passes the same dotfile policy as a direct hit.
//!
//! Conditionals and ranges are the compose step's business (compose.rs): they need only
//! the chosen representation's validators and bytes.

use std::rc::Rc;

use super::clock::Now;
use super::compose;
use super::listing;
use super::store::{CachedFile, Loaded, Store};
use crate::config::Settings;
use crate::fs::{self, OpenError};
use crate::http::negotiate;
use crate::http::{Request, Status};

/// The page served with 404 for missing paths, when the root has one.
const NOT_FOUND_FILE: &[u8] = b"404.html";

pub(super) enum Reply {
    /// A file, with `status` (200, or 404 for the 404 page).
    File {
        status: Status,
        file: Rc<CachedFile>,
    },
    /// A generated page (a directory listing).
    Generated {
        content_type: &'static str,
        body: Rc<[u8]>,
    },
    /// The answer to OPTIONS.
    Options,
    /// The path names a directory but lacks the trailing slash.
    Redirect,
    Error(Status),
}

impl Reply {
    /// What the compose step reads of it.
    pub(super) fn view(&self) -> compose::Reply<'_> {
        match self {
            Reply::File { status, file } => compose::Reply::File {
                status: *status,
                file: file.body(),
            },
            Reply::Generated { content_type, body } => {
                compose::Reply::Generated { content_type, body }
            }
            Reply::Options => compose::Reply::Options,
            Reply::Redirect => compose::Reply::Redirect,
            Reply::Error(status) => compose::Reply::Error(*status),
        }
    }
}

/// Resolves the target of a GET or HEAD; the flag says whether the choice depended on the
/// request's Accept field (so the response carries `Vary: Accept`). `key` is scratch space.
pub(super) fn resolve(
    store: &Store,
    cfg: &Settings,
    req: &Request<'_>,
    key: &mut Vec<u8>,
    now: Now,
) -> (Reply, bool) {
    let norm = match fs::path::normalize(req.path, key) {
        Ok(n) => n,
        Err(_) => return (Reply::Error(Status::BadRequest), false),
    };
    let visible = !norm.hidden || cfg.hidden;
    if !visible {
        return not_found(store, cfg, req, key, false, now);
    }
    let identity = match store.lookup(key, norm.trailing_slash, cfg.listing, now) {
        Ok(Loaded::File(file)) => file,
        Ok(Loaded::Redirect) => return (Reply::Redirect, false),
        Ok(Loaded::Listing(rel)) => {
            let listed = listing::render(
                store.root(),
                cfg.hidden,
                req.fields.accept,
                &rel,
                store.listings(),
                now.mono_ms,
            );
            let reply = match listed {
                Ok((content_type, body)) => Reply::Generated { content_type, body },
                Err(status) => Reply::Error(status),
            };
            // HTML or JSON, as the Accept field asks.
            return (reply, true);
        }
        Err(OpenError::NotFound) => return not_found(store, cfg, req, key, true, now),
        Err(e) => return (open_error(e, key), false),
    };
    let file = store
        .sidecar(req, key, &identity, now)
        .or_else(|| store.variant(req, key, &identity))
        .unwrap_or(identity);
    (
        Reply::File {
            status: Status::Ok,
            file,
        },
        false,
    )
}

/// A missing path: `--pretty-urls`, then `--spa`, then the root's 404.html, then the
/// built-in page. `visible`: the request path passed the dotfile policy (a hidden path
/// gets no pretty-URL twin: `/.secret` must not serve `.secret.html`).
fn not_found(
    store: &Store,
    cfg: &Settings,
    req: &Request<'_>,
    key: &mut Vec<u8>,
    visible: bool,
    now: Now,
) -> (Reply, bool) {
    if visible && cfg.pretty_urls && !key.ends_with(b"/") && key.len() > 1 {
        let plain = key.len();
        key.extend_from_slice(b".html");
        if let Some(reply) = serve_named(store, cfg, req, key, Status::Ok, now) {
            return (reply, false);
        }
        key.truncate(plain);
    }
    // With --spa, what a missing path gets depends on Accept.
    let vary = cfg.spa.is_some();
    if let Some(spa) = &cfg.spa {
        if negotiate::accepts_html(req.fields.accept) {
            key.clear();
            key.push(b'/');
            key.extend_from_slice(spa.as_os_str().as_encoded_bytes());
            if let Some(reply) = serve_named(store, cfg, req, key, Status::Ok, now) {
                return (reply, true);
            }
        }
    }
    key.clear();
    key.push(b'/');
    key.extend_from_slice(NOT_FOUND_FILE);
    let reply = serve_named(store, cfg, req, key, Status::NotFound, now)
        .unwrap_or(Reply::Error(Status::NotFound));
    (reply, vary)
}

/// Serves the regular file at the normalised path `key` with `status`, if it exists and
/// the dotfile policy lets it be served; compressed when it has variants and the client
/// accepts one.
fn serve_named(
    store: &Store,
    cfg: &Settings,
    req: &Request<'_>,
    key: &[u8],
    status: Status,
    now: Now,
) -> Option<Reply> {
    if !cfg.hidden && fs::path::is_hidden(key) {
        return None;
    }
    match store.lookup(key, false, false, now) {
        Ok(Loaded::File(file)) => {
            let file = store.variant(req, key, &file).unwrap_or(file);
            Some(Reply::File { status, file })
        }
        _ => None,
    }
}

fn open_error(e: OpenError, key: &[u8]) -> Reply {
    match e {
        OpenError::NotFound => Reply::Error(Status::NotFound),
        OpenError::Forbidden => Reply::Error(Status::Forbidden),
        OpenError::Io(e) => {
            // SECURITY: the path is request data; escaped, it cannot forge log lines.
            crate::diag::error(&format!("cannot open {}: {e}", key.escape_ascii()));
            Reply::Error(Status::InternalServerError)
        }
    }
}
