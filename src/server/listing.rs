//! Directory listings (`--listing`): an HTML page, or JSON for clients that ask for
//! `application/json`. Names are escaped for HTML and JSON and percent-encoded in links;
//! dotfiles are left out unless `--hidden`.
//!
//! A listing costs a stat per entry and a page of up to a few MiB, so it is rendered once and
//! kept per worker in a [`ListingCache`] (HTML and JSON apart), bounded by
//! [`LISTING_CACHE_BYTES`]; the directory is looked at again (one stat) at most every
//! [`REVALIDATE_MS`], and a listing is rendered again when the directory changed or after
//! [`MAX_AGE_MS`] (entries' sizes and dates change without their directory changing). One
//! listing shows at most [`fs::file::MAX_LISTED`] entries, the first by name, and says when
//! it left some out.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;

use crate::fs::{self, Meta, OpenError, Root};
use crate::http::{HttpDate, Status};

/// Memory the rendered listings of one worker may hold, in bytes.
pub(crate) const LISTING_CACHE_BYTES: usize = 8 * 1024 * 1024;
/// How often a cached listing's directory is looked at again, in milliseconds.
pub(crate) const REVALIDATE_MS: u64 = 1_000;
/// How long a cached listing is served at most, in milliseconds, even if its directory is
/// unchanged: the sizes and dates it shows change without the directory changing.
pub(crate) const MAX_AGE_MS: u64 = 10_000;
/// What one cached listing weighs beyond its body and key, in bytes.
const ENTRY_OVERHEAD: usize = 96;

/// Renders the listing of the directory `rel` (relative to `root`) as the `accept` field
/// asks, from `cache` when it is current at `now_ms` (monotonic milliseconds): its content
/// type and body, or the error status to answer with.
pub(crate) fn render(
    root: &Root,
    hidden: bool,
    accept: Option<&[u8]>,
    rel: &[u8],
    cache: &ListingCache,
    now_ms: u64,
) -> Result<(&'static str, Rc<[u8]>), Status> {
    let json = wants_json(accept);
    let content_type = if json {
        "application/json; charset=utf-8"
    } else {
        "text/html; charset=utf-8"
    };
    if let Some(body) = cache.lookup(rel, json, now_ms, || root.stat(rel).ok()) {
        return Ok((content_type, body));
    }
    match render_fresh(root, hidden, rel, json) {
        Ok((dir, body)) => {
            let body: Rc<[u8]> = body.into();
            cache.insert(rel, json, dir, Rc::clone(&body), now_ms);
            Ok((content_type, body))
        }
        Err(OpenError::NotFound) => Err(Status::NotFound),
        Err(OpenError::Forbidden) => Err(Status::Forbidden),
        Err(OpenError::Io(e)) => {
            crate::diag::error(&format!("cannot list {}: {e}", rel.escape_ascii()));
            Err(Status::InternalServerError)
        }
    }
}

/// Lists and renders `rel`; returns the directory's metadata as it was before the listing
/// was read, so a change made while it was read shows at the next revalidation.
fn render_fresh(
    root: &Root,
    hidden: bool,
    rel: &[u8],
    json: bool,
) -> Result<(Meta, Vec<u8>), OpenError> {
    let dir = root.stat(rel)?;
    let listing = root.list(rel, hidden)?;
    let body = if json {
        render_json(&listing.entries)
    } else {
        let title = if rel == b"." {
            b"/".to_vec()
        } else {
            [b"/", rel, b"/"].concat()
        };
        html(&title, &listing)
    };
    Ok((dir, body))
}

/// Rendered listings of one worker, by directory and variant (HTML or JSON), within
/// [`LISTING_CACHE_BYTES`]; the least recently used go first.
pub(super) struct ListingCache {
    entries: RefCell<HashMap<Key, Cached>>,
    bytes: Cell<usize>,
    budget: usize,
    /// A counter that orders uses, for eviction.
    ticks: Cell<u64>,
}

/// A directory relative to the root, and whether the listing is JSON (else HTML).
type Key = (Box<[u8]>, bool);

struct Cached {
    body: Rc<[u8]>,
    /// The directory when the listing was read.
    dir: Meta,
    rendered_ms: u64,
    checked_ms: Cell<u64>,
    used: Cell<u64>,
}

impl Cached {
    fn weight(&self, rel: &[u8]) -> usize {
        self.body.len() + rel.len() + ENTRY_OVERHEAD
    }
}

impl Default for ListingCache {
    fn default() -> ListingCache {
        ListingCache::new(LISTING_CACHE_BYTES)
    }
}

impl ListingCache {
    pub(super) fn new(budget: usize) -> ListingCache {
        ListingCache {
            entries: RefCell::new(HashMap::new()),
            bytes: Cell::new(0),
            budget,
            ticks: Cell::new(0),
        }
    }

    /// The cached listing of `rel` (`json` or HTML) if it is still current at `now_ms`
    /// (monotonic milliseconds). `stat_dir` is called (at most once per [`REVALIDATE_MS`]
    /// per listing) to look at the directory; a listing whose directory changed or went,
    /// or older than [`MAX_AGE_MS`], is dropped with its other variant.
    pub(super) fn lookup(
        &self,
        rel: &[u8],
        json: bool,
        now_ms: u64,
        stat_dir: impl FnOnce() -> Option<Meta>,
    ) -> Option<Rc<[u8]>> {
        let mut entries = self.entries.borrow_mut();
        let key = (Box::<[u8]>::from(rel), json);
        let entry = entries.get(&key)?;
        let fresh = if now_ms.saturating_sub(entry.rendered_ms) >= MAX_AGE_MS {
            false
        } else if now_ms.saturating_sub(entry.checked_ms.get()) >= REVALIDATE_MS {
            entry.checked_ms.set(now_ms);
            stat_dir() == Some(entry.dir)
        } else {
            true
        };
        if !fresh {
            // Both variants were rendered from the same directory: both go.
            for json in [false, true] {
                let gone = entries
                    .remove(&(key.0.clone(), json))
                    .map_or(0, |e| e.weight(rel));
                self.bytes.set(self.bytes.get() - gone);
            }
            return None;
        }
        let tick = self.ticks.get() + 1;
        self.ticks.set(tick);
        entry.used.set(tick);
        Some(Rc::clone(&entry.body))
    }

    /// Keeps `body`, the listing of `rel` rendered at `now_ms` from the directory `dir`,
    /// evicting the least recently used listings to stay within the budget. A listing
    /// larger than the whole budget is not kept.
    pub(super) fn insert(&self, rel: &[u8], json: bool, dir: Meta, body: Rc<[u8]>, now_ms: u64) {
        let tick = self.ticks.get() + 1;
        self.ticks.set(tick);
        let cached = Cached {
            body,
            dir,
            rendered_ms: now_ms,
            checked_ms: Cell::new(now_ms),
            used: Cell::new(tick),
        };
        let weight = cached.weight(rel);
        if weight > self.budget {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        let key = (Box::<[u8]>::from(rel), json);
        if let Some(old) = entries.remove(&key) {
            self.bytes.set(self.bytes.get() - old.weight(rel));
        }
        while self.bytes.get() + weight > self.budget {
            let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.used.get())
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = entries.remove(&oldest) {
                self.bytes.set(self.bytes.get() - e.weight(&oldest.0));
            }
        }
        self.bytes.set(self.bytes.get() + weight);
        entries.insert(key, cached);
    }

    /// Bytes held, as counted against the budget.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes.get()
    }
}

/// JSON only when the client names it and not HTML first (a browser's Accept lists HTML).
fn wants_json(accept: Option<&[u8]>) -> bool {
    let Some(accept) = accept else { return false };
    let find = |needle: &[u8]| {
        accept
            .windows(needle.len())
            .position(|w| w.eq_ignore_ascii_case(needle))
    };
    match (find(b"application/json"), find(b"text/html")) {
        (Some(j), Some(h)) => j < h,
        (Some(_), None) => true,
        _ => false,
    }
}

fn html(title: &[u8], listing: &fs::file::Listing) -> Vec<u8> {
    let entries = &listing.entries;
    let mut out = Vec::with_capacity(512 + entries.len() * 160);
    out.extend_from_slice(b"<!doctype html>\n<html lang=\"en\"><meta charset=\"utf-8\">");
    out.extend_from_slice(
        b"<meta name=\"viewport\" content=\"width=device-width\"><title>Index of ",
    );
    escape_html(&mut out, title);
    out.extend_from_slice(b"</title>\n<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:50rem;padding:0 1rem}");
    out.extend_from_slice(b"td{padding:.1rem 1rem .1rem 0}td:nth-child(n+2){color:#666;font-variant-numeric:tabular-nums}</style>\n<h1>Index of ");
    escape_html(&mut out, title);
    out.extend_from_slice(b"</h1>\n<table>\n<tr><td><a href=\"../\">../</a><td><td>\n");
    for e in entries {
        out.extend_from_slice(b"<tr><td><a href=\"");
        percent_encode(&mut out, &e.name);
        if e.dir {
            out.push(b'/');
        }
        out.extend_from_slice(b"\">");
        escape_html(&mut out, &e.name);
        if e.dir {
            out.push(b'/');
        }
        out.extend_from_slice(b"</a><td>");
        if !e.dir {
            let _ = write!(out, "{}", e.len);
        }
        out.extend_from_slice(b"<td>");
        out.extend_from_slice(HttpDate::from_unix(e.mtime).as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"</table>\n");
    if listing.truncated {
        let _ = writeln!(
            out,
            "<p>Only the first {} entries by name are listed.</p>",
            fs::file::MAX_LISTED
        );
    }
    out.extend_from_slice(b"<hr><p>fserve</p>\n");
    out
}

fn render_json(entries: &[fs::file::Listed]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + entries.len() * 96);
    out.push(b'[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"\n{\"name\":\"");
        escape_json(&mut out, &e.name);
        let _ = write!(
            out,
            "\",\"dir\":{},\"size\":{},\"mtime\":{}}}",
            e.dir, e.len, e.mtime
        );
    }
    out.extend_from_slice(b"\n]\n");
    out
}

fn escape_html(out: &mut Vec<u8>, name: &[u8]) {
    for c in String::from_utf8_lossy(name).chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\'' => out.extend_from_slice(b"&#39;"),
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

fn escape_json(out: &mut Vec<u8>, name: &[u8]) {
    for c in String::from_utf8_lossy(name).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so any name is a safe
/// relative link (a name with `:` cannot pass for a scheme).
fn percent_encode(out: &mut Vec<u8>, name: &[u8]) {
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, dir: bool) -> fs::file::Listed {
        fs::file::Listed {
            name: name.as_bytes().to_vec(),
            dir,
            len: 12,
            mtime: 0,
        }
    }

    #[test]
    fn escapes_names() {
        let entries = [
            listed("a<b>&\"c\".txt", false),
            listed("sub dir", true),
            listed("x:y", false),
        ];
        let listing = fs::file::Listing {
            entries: entries.to_vec(),
            truncated: false,
        };
        let page = String::from_utf8(html(b"/d/", &listing)).unwrap();
        assert!(
            page.contains(">a&lt;b&gt;&amp;&quot;c&quot;.txt</a>"),
            "{page}"
        );
        assert!(page.contains("href=\"a%3Cb%3E%26%22c%22.txt\""), "{page}");
        assert!(page.contains("href=\"sub%20dir/\">sub dir/</a>"), "{page}");
        assert!(page.contains("href=\"x%3Ay\""), "{page}");
        assert!(!page.contains("a<b>"));
        let data = String::from_utf8(render_json(&[listed("q\"\\\n", false)])).unwrap();
        assert!(data.contains(r#""name":"q\"\\\u000a""#), "{data}");
    }

    #[test]
    fn json_only_when_asked_before_html() {
        let cases: &[(Option<&str>, bool)] = &[
            (None, false),
            (Some("application/json"), true),
            (Some("text/html,application/xhtml+xml,*/*;q=0.8"), false),
            (Some("application/json, text/html"), true),
            (Some("*/*"), false),
        ];
        for &(accept, want) in cases {
            assert_eq!(wants_json(accept.map(str::as_bytes)), want, "{accept:?}");
        }
    }

    fn dir(mtime: i64) -> Meta {
        Meta {
            kind: fs::Kind::Dir,
            len: 4096,
            mtime,
            mtime_nsec: 0,
            ino: 7,
            dev: 1,
        }
    }

    fn body(s: &str) -> Rc<[u8]> {
        s.as_bytes().into()
    }

    fn no_stat() -> Option<Meta> {
        panic!("the directory was looked at within the revalidation interval")
    }

    #[test]
    fn cached_listings_revalidate_like_files() {
        let c = ListingCache::new(LISTING_CACHE_BYTES);
        assert_eq!(c.lookup(b"d", false, 0, no_stat), None);
        c.insert(b"d", false, dir(1), body("<html>"), 1_000);
        c.insert(b"d", true, dir(1), body("[json]"), 1_000);
        // Within the interval: no stat; the variants are apart.
        let at = |now, json| c.lookup(b"d", json, now, no_stat);
        assert_eq!(at(1_999, false).as_deref(), Some(&b"<html>"[..]));
        assert_eq!(at(1_999, true).as_deref(), Some(&b"[json]"[..]));
        assert_eq!(c.lookup(b"e", false, 1_500, no_stat), None);
        // After it: one stat, then none again for another interval.
        let same = c.lookup(b"d", false, 2_000, || Some(dir(1)));
        assert_eq!(same.as_deref(), Some(&b"<html>"[..]));
        assert!(at(2_999, false).is_some());
        // The directory changed: dropped, with the other variant.
        assert_eq!(c.lookup(b"d", false, 3_000, || Some(dir(2))), None);
        assert_eq!(c.lookup(b"d", false, 3_001, no_stat), None);
        assert_eq!(c.lookup(b"d", true, 3_001, no_stat), None);
        assert_eq!(c.bytes(), 0);
        // The directory went.
        c.insert(b"d", true, dir(2), body("[json]"), 4_000);
        assert_eq!(c.lookup(b"d", true, 5_000, || None), None, "directory gone");
        assert_eq!(c.bytes(), 0);
        // Older than the maximum age: rendered again, without a stat.
        c.insert(b"d", false, dir(2), body("<v2>"), 10_000);
        assert!(
            c.lookup(b"d", false, 10_000 + MAX_AGE_MS - 1, || Some(dir(2)))
                .is_some()
        );
        assert_eq!(c.lookup(b"d", false, 10_000 + MAX_AGE_MS, no_stat), None);
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let page = |n: usize| -> Rc<[u8]> { vec![b'x'; n].into() };
        let weight = 1_000 + 1 + ENTRY_OVERHEAD;
        let c = ListingCache::new(3 * weight);
        c.insert(b"a", false, dir(1), page(1_000), 0);
        c.insert(b"b", false, dir(1), page(1_000), 0);
        c.insert(b"c", false, dir(1), page(1_000), 0);
        assert_eq!(c.bytes(), 3 * weight);
        // `a` used last: `b` is the least recently used and goes first.
        assert!(c.lookup(b"a", false, 1, no_stat).is_some());
        c.insert(b"d", false, dir(1), page(1_000), 1);
        assert_eq!(c.bytes(), 3 * weight);
        assert!(c.lookup(b"b", false, 2, no_stat).is_none());
        for kept in [b"a", b"c", b"d"] {
            assert!(c.lookup(kept, false, 2, no_stat).is_some());
        }
        // Replacing an entry counts it once.
        c.insert(b"d", false, dir(2), page(1_000), 3);
        assert_eq!(c.bytes(), 3 * weight);
        // Larger than the whole budget: not kept, nothing evicted for it.
        c.insert(b"e", false, dir(1), page(3 * weight), 4);
        assert!(c.lookup(b"e", false, 5, no_stat).is_none());
        assert_eq!(c.bytes(), 3 * weight);
    }

    #[test]
    fn a_partial_listing_says_so() {
        let listing = fs::file::Listing {
            entries: vec![listed("a", false)],
            truncated: true,
        };
        let page = String::from_utf8(html(b"/", &listing)).unwrap();
        let note = format!("Only the first {} entries", fs::file::MAX_LISTED);
        assert!(page.contains(&note), "{page}");
        let listing = fs::file::Listing {
            truncated: false,
            ..listing
        };
        assert!(
            !String::from_utf8(html(b"/", &listing))
                .unwrap()
                .contains("Only the first")
        );
    }
}
