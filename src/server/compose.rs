//! The response for one admitted request, decided without I/O: the head bytes, written into
//! a buffer the caller owns, and a short list of [`Segment`]s that the connection loop sends
//! in order. Pure: no I/O, no clock reads (the Date and everything else that changes comes
//! in a [`Context`]), no allocation (the caller's buffer and [`Segments`] are reused).
//!
//! The pipeline of [`compose`]:
//! 1. Which connection semantics: the server closes after a 400 or 500 and while stopping;
//!    otherwise the request's version and Connection field decide (RFC 9112 §9.3, §9.6).
//! 2. For a file with status 200: preconditions in the order of RFC 9110 §13.2.2
//!    (If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since) → 304 or 412; then,
//!    for GET only (§14.2), If-Range (§13.1.5) and Range → 206 (single or
//!    `multipart/byteranges`, §14.6) or 416. Any other status (the 404 page) is not
//!    conditional.
//! 3. The body source decides the segments: a file held in memory is one shared slice of
//!    its pre-rendered fields and bytes (a plain hit: the prefix, then that slice); a file
//!    held open is sent from its descriptor by offset; a compressed variant is its head
//!    (the worker's) then its bytes (shared by every worker). All take the same path
//!    through here, single and multipart ranges included.
//! 4. HEAD gets the head a GET would (same Content-Length) and no body.
//!
//! It never reads files, sockets or clocks, and never chooses what to serve (that is the
//! file store and the URL policy).

use std::ops::Range;

use crate::http::conditional::{self, Outcome, Preconditions, Validators};
use crate::http::range::{self, BOUNDARY_LEN, MAX_RANGES, RangeOutcome, RangeSet};
use crate::http::request::{Method, Request};
use crate::http::response::{self, Common, Connection, FileFields};
use crate::http::{HttpDate, Status};

/// Most segments one response needs: the head, then per range its part head and its
/// bytes, then the closing delimiter.
pub const MAX_SEGMENTS: usize = 2 * MAX_RANGES + 2;

/// The CORS preflight answer's fields (with `--cors`; the origin field is in every response).
const CORS_PREFLIGHT: &[u8] = b"Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\nAccess-Control-Allow-Headers: *\r\nAccess-Control-Max-Age: 86400\r\n";

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

    /// Its `Vary` line, if it has one (in `cache_fields`). Sent with the errors judged
    /// against it too (412, 416): which representation was judged depended on the fields
    /// Vary names, so a cache must not hand that answer to a client that asked otherwise.
    fn vary(&self) -> &[u8] {
        let f = &self.cache_fields[..];
        let Some(at) = f.windows(6).position(|w| w.eq_ignore_ascii_case(b"vary: ")) else {
            return b"";
        };
        let end = f[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(f.len(), |n| at + n + 2);
        &f[at..end]
    }

    fn validators(&self) -> Validators<'_> {
        Validators {
            etag: &self.etag,
            last_modified: self.mtime,
        }
    }
}

/// A file's body source, as the store holds it.
#[derive(Clone, Copy)]
pub struct FileBody<'a> {
    pub rep: &'a Representation,
    /// The 200's representation fields (through the blank line), then, for a file held in
    /// memory, its bytes. [`Segment::Shared`] ranges index this.
    pub bytes: &'a [u8],
    /// Where the fields end in `bytes`.
    pub head_len: usize,
    /// The body is sent from a file ([`Segment::File`]: the open file, or the worker's
    /// memory file), not from `bytes`.
    pub from_file: bool,
    /// The body, held apart from `bytes` ([`Segment::Body`]): a compressed variant's bytes,
    /// made once and shared by every worker, after a head that each worker renders.
    pub body: Option<&'a [u8]>,
}

/// What the URL policy and the store chose for a request.
#[derive(Clone, Copy)]
pub enum Reply<'a> {
    /// A file, with `status` (200, or 404 for the 404 page).
    File {
        status: Status,
        file: FileBody<'a>,
    },
    /// A generated page (a directory listing), sent with 200.
    Generated {
        content_type: &'a str,
        body: &'a [u8],
    },
    /// The answer to OPTIONS.
    Options,
    /// The path names a directory but lacks the trailing slash.
    Redirect,
    Error(Status),
}

/// What changes per response but is not the request: the time, the site, the server's state.
pub struct Context<'a> {
    pub date: &'a HttpDate,
    /// Field lines every response carries (`--header`, CORS).
    pub site: &'a [u8],
    /// Shutdown has begun: every response closes its connection.
    pub stopping: bool,
    /// `--cors`: OPTIONS answers a preflight.
    pub cors: bool,
    /// The reply was chosen by the Accept field (listings, the SPA fallback).
    pub vary_accept: bool,
    /// A fresh multipart boundary, asked for only when a response has several parts.
    pub boundary: &'a dyn Fn() -> [u8; BOUNDARY_LEN],
}

/// One piece of a response, in sending order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Bytes of the caller's head buffer.
    Own(Range<usize>),
    /// Bytes of the file's shared buffer ([`FileBody::bytes`]).
    Shared(Range<usize>),
    /// Bytes of the body's file (held open, or the memory file), by offset into the body.
    File { offset: u64, len: u64 },
    /// Bytes of the body held apart ([`FileBody::body`]).
    Body(Range<usize>),
}

/// Segments kept inline: a whole or single-range response needs at most this many (its
/// head, a shared or file body, and the head's tail after a body from memory).
const INLINE_SEGMENTS: usize = 4;

/// The segments of one response. Up to [`INLINE_SEGMENTS`] live inline, so composing a
/// whole or single-range response allocates nothing; a multipart response (at most
/// [`MAX_SEGMENTS`]) moves them into a vector the value keeps for the next one. Inline
/// room for every multipart response would make each connection's state ~700 bytes larger.
pub struct Segments {
    inline: [Segment; INLINE_SEGMENTS],
    /// How many of `inline` are in use; unused once the segments spilled.
    len: usize,
    /// The segments, once more than fit inline were pushed.
    spill: Vec<Segment>,
    spilled: bool,
}

impl Default for Segments {
    fn default() -> Segments {
        Segments::new()
    }
}

impl Segments {
    pub fn new() -> Segments {
        Segments {
            inline: [const { Segment::Own(0..0) }; INLINE_SEGMENTS],
            len: 0,
            spill: Vec::new(),
            spilled: false,
        }
    }

    pub fn as_slice(&self) -> &[Segment] {
        if self.spilled {
            &self.spill
        } else {
            &self.inline[..self.len]
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
        self.spilled = false;
    }

    /// Appends `seg`, dropping an empty one and merging adjacent own bytes.
    fn push(&mut self, seg: Segment) {
        let empty = match &seg {
            Segment::Own(r) | Segment::Shared(r) | Segment::Body(r) => r.is_empty(),
            Segment::File { len, .. } => *len == 0,
        };
        if empty {
            return;
        }
        let last = if self.spilled {
            self.spill.last_mut()
        } else {
            self.inline[..self.len].last_mut()
        };
        if let (Some(Segment::Own(last)), Segment::Own(next)) = (last, &seg) {
            if last.end == next.start {
                last.end = next.end;
                return;
            }
        }
        debug_assert!(
            self.as_slice().len() < MAX_SEGMENTS,
            "more segments than ranges allow"
        );
        if self.spilled {
            self.spill.push(seg);
        } else if self.len < INLINE_SEGMENTS {
            self.inline[self.len] = seg;
            self.len += 1;
        } else {
            self.spill.reserve(MAX_SEGMENTS);
            self.spill.extend_from_slice(&self.inline);
            self.spill.push(seg);
            self.spilled = true;
        }
    }

    /// Appends the own bytes written since `from`.
    fn own_since(&mut self, out: &[u8], from: usize) {
        self.push(Segment::Own(from..out.len()));
    }
}

/// What the caller needs besides the bytes: for the connection, whether to close after;
/// for an access log or metrics, the status and the body bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Composed {
    pub status: Status,
    pub close: bool,
    /// Bytes of body to send (0 for HEAD, 304 and 204).
    pub body_bytes: u64,
}

/// How a file request is answered, once its representation is known. It lives on the stack
/// for one request; boxing the range set would allocate for every range request.
#[allow(clippy::large_enum_variant)]
enum Plan {
    Full,
    NotModified,
    PreconditionFailed,
    Unsatisfiable,
    Ranges(RangeSet),
}

/// RFC 9110 §13.2.2: preconditions first, then (GET only, §14.2) If-Range and Range.
/// Only a 200 is conditional: a 404 page is not.
fn plan(req: &Request<'_>, status: Status, rep: &Representation) -> Plan {
    if status != Status::Ok {
        return Plan::Full;
    }
    let v = rep.validators();
    let f = &req.fields;
    let p = Preconditions {
        if_match: f.if_match,
        if_none_match: f.if_none_match,
        if_modified_since: f.if_modified_since,
        if_unmodified_since: f.if_unmodified_since,
        if_range: f.if_range,
    };
    match conditional::evaluate(true, &p, &v) {
        Outcome::NotModified => return Plan::NotModified,
        Outcome::PreconditionFailed => return Plan::PreconditionFailed,
        Outcome::Proceed => {}
    }
    let Some(header) = f.range.filter(|_| req.method == Method::Get) else {
        return Plan::Full;
    };
    // §13.1.5: a validator that no longer matches means "send me all of it".
    if f.if_range
        .is_some_and(|ir| !conditional::if_range_allows(ir, &v))
    {
        return Plan::Full;
    }
    match range::evaluate(header, rep.len) {
        RangeOutcome::Full => Plan::Full,
        RangeOutcome::Unsatisfiable => Plan::Unsatisfiable,
        RangeOutcome::Satisfiable(set) => Plan::Ranges(set),
    }
}

/// Composes the response to `req`: writes the head bytes at the end of `out` (which it
/// does not clear) and fills `segs` with what to send, in order.
pub fn compose(
    req: &Request<'_>,
    reply: &Reply<'_>,
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
    segs: &mut Segments,
) -> Composed {
    segs.clear();
    let server_closes = ctx.stopping
        || matches!(
            reply,
            Reply::Error(Status::BadRequest | Status::InternalServerError)
        );
    let conn = Connection::for_request(req, server_closes);
    let c = Common {
        date: ctx.date,
        conn,
        site: ctx.site,
        vary_accept: ctx.vary_accept,
    };
    let head_only = req.method == Method::Head;
    let from = out.len();
    let (status, body_bytes) = match *reply {
        Reply::File { status, file } => {
            return compose_file(req, status, file, &c, ctx, out, segs);
        }
        Reply::Generated { content_type, body } => {
            response::write_generated(out, &c, content_type, body, head_only);
            (Status::Ok, if head_only { 0 } else { body.len() as u64 })
        }
        Reply::Options => {
            let extra: &[u8] = if ctx.cors { CORS_PREFLIGHT } else { b"" };
            response::write_options(out, &c, extra);
            (Status::NoContent, 0)
        }
        Reply::Redirect => {
            let segment = req.path.rsplit(|&b| b == b'/').next().unwrap_or(b"");
            response::write_directory_redirect(out, segment, req.query, &c, head_only);
            (Status::MovedPermanently, own_body_len(&out[from..]))
        }
        Reply::Error(status) => {
            response::write_error(out, status, &c, head_only, b"");
            (status, own_body_len(&out[from..]))
        }
    };
    segs.own_since(out, from);
    Composed {
        status,
        close: conn.closes(),
        body_bytes,
    }
}

/// Composes an error after which the connection closes whatever the request said: a
/// rejected head, or a head that never finished in time.
pub fn compose_closing_error(
    status: Status,
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
    segs: &mut Segments,
) -> Composed {
    segs.clear();
    let c = Common {
        date: ctx.date,
        conn: Connection::Close,
        site: ctx.site,
        vary_accept: false,
    };
    let from = out.len();
    response::write_error(out, status, &c, false, b"");
    segs.own_since(out, from);
    Composed {
        status,
        close: true,
        body_bytes: own_body_len(&out[from..]),
    }
}

/// The body length of a whole response written into `resp` (after its blank line).
fn own_body_len(resp: &[u8]) -> u64 {
    resp.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| (resp.len() - i - 4) as u64)
}

fn compose_file(
    req: &Request<'_>,
    status: Status,
    file: FileBody<'_>,
    c: &Common<'_>,
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
    segs: &mut Segments,
) -> Composed {
    let head_only = req.method == Method::Head;
    let rep = file.rep;
    let from = out.len();
    let close = c.conn.closes();
    // The `len` bytes of the representation from `first`.
    let body = |segs: &mut Segments, first: u64, len: u64| {
        if file.from_file {
            segs.push(Segment::File { offset: first, len });
        } else if file.body.is_some() {
            segs.push(Segment::Body(first as usize..(first + len) as usize));
        } else {
            let start = file.head_len + first as usize;
            segs.push(Segment::Shared(start..start + len as usize));
        }
    };
    let (status, body_bytes) = match plan(req, status, rep) {
        Plan::Full => {
            response::write_prefix(out, status, c);
            segs.own_since(out, from);
            if head_only {
                segs.push(Segment::Shared(0..file.head_len));
                (status, 0)
            } else if file.from_file || file.body.is_some() {
                segs.push(Segment::Shared(0..file.head_len));
                body(segs, 0, rep.len);
                (status, rep.len)
            } else {
                // A plain hit: the pre-rendered fields and the bytes are one slice.
                segs.push(Segment::Shared(0..file.bytes.len()));
                (status, (file.bytes.len() - file.head_len) as u64)
            }
        }
        Plan::Ranges(set) => {
            response::write_prefix(out, Status::PartialContent, c);
            if let [(first, last)] = set.as_slice() {
                response::write_single_range_fields(out, &rep.file_fields(), *first, *last);
                segs.own_since(out, from);
                body(segs, *first, last - first + 1);
                (Status::PartialContent, last - first + 1)
            } else {
                let boundary = (ctx.boundary)();
                let len =
                    range::multipart_len(&set, boundary.len(), rep.content_type.len(), rep.len);
                response::write_multipart_fields(out, &rep.file_fields(), &boundary, len);
                let mut mark = from;
                for &(first, last) in set.as_slice() {
                    range::write_part_head(out, &boundary, &rep.content_type, first, last, rep.len);
                    segs.own_since(out, mark);
                    body(segs, first, last - first + 1);
                    mark = out.len();
                }
                range::write_closing(out, &boundary);
                segs.own_since(out, mark);
                (Status::PartialContent, len)
            }
        }
        Plan::NotModified => {
            // RFC 9110 §15.4.5: the validators and the fields a 200 would carry that
            // caches use; no Content-Length, no body.
            response::write_prefix(out, Status::NotModified, c);
            response::write_not_modified_fields(out, rep.mtime, &rep.etag, &rep.cache_fields);
            segs.own_since(out, from);
            (Status::NotModified, 0)
        }
        Plan::PreconditionFailed => {
            response::write_error(out, Status::PreconditionFailed, c, head_only, rep.vary());
            segs.own_since(out, from);
            (Status::PreconditionFailed, own_body_len(&out[from..]))
        }
        Plan::Unsatisfiable => {
            // §15.5.17: say how long the representation is.
            response::write_error_with(out, Status::RangeNotSatisfiable, c, head_only, |out| {
                out.extend_from_slice(rep.vary());
                out.extend_from_slice(b"Content-Range: ");
                range::write_unsatisfied_range(out, rep.len);
                out.extend_from_slice(b"\r\n");
            });
            segs.own_since(out, from);
            (Status::RangeNotSatisfiable, own_body_len(&out[from..]))
        }
    };
    Composed {
        status,
        close,
        body_bytes,
    }
}

#[cfg(test)]
mod tests {
    //! Each case composes a response, assembles the bytes its segments name (own bytes,
    //! the file's shared buffer, the file's content by offset), and checks them against a
    //! naive oracle: the file's content sliced by hand, a multipart body built by hand,
    //! and memory and disk bodies giving the same bytes.

    use std::cell::Cell;

    use super::*;
    use crate::http::request;
    use crate::http::response::write_etag;

    const LEN: u64 = 1000;
    const MTIME: i64 = 1_700_000_000;
    const NOW: i64 = 1_800_000_000;
    const CT: &str = "text/plain; charset=utf-8";
    const BOUNDARY: [u8; BOUNDARY_LEN] = *b"0123456789abcdefghij";

    fn content(len: u64) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn etag(len: u64) -> String {
        let mut out = Vec::new();
        write_etag(&mut out, MTIME, len, None);
        String::from_utf8(out).unwrap()
    }

    fn http_date(secs: i64) -> String {
        String::from_utf8(HttpDate::from_unix(secs).as_bytes().to_vec()).unwrap()
    }

    struct Fixture {
        rep: Representation,
        content: Vec<u8>,
        /// Fields, then the content: a file held in memory.
        mem: Vec<u8>,
        /// Fields alone: a file held open.
        disk: Vec<u8>,
    }

    fn fixture(len: u64) -> Fixture {
        fixture_with(len, b"Cache-Control: no-cache\r\n")
    }

    /// A fixture whose representation has `fields` (Cache-Control, Vary).
    fn fixture_with(len: u64, fields: &[u8]) -> Fixture {
        let rep = Representation {
            content_type: CT.into(),
            len,
            mtime: MTIME,
            etag: etag(len).into_bytes().into(),
            cache_fields: fields.into(),
            fields: fields.into(),
        };
        let mut disk = Vec::new();
        response::write_file_fields(&mut disk, &rep.file_fields());
        let content = content(len);
        let mut mem = disk.clone();
        mem.extend_from_slice(&content);
        Fixture {
            rep,
            content,
            mem,
            disk,
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Src {
        Mem,
        Disk,
        /// The body held apart from the head (a compressed variant).
        Apart,
    }

    #[derive(Clone, Copy)]
    enum Kind {
        File(Status, Src),
        Generated,
        Options,
        Redirect,
        Error(Status),
    }

    #[derive(Clone, Copy, Default)]
    struct Opts {
        stopping: bool,
        cors: bool,
        vary: bool,
        /// The representation is one of several by Accept-Encoding.
        vary_encoding: bool,
    }

    /// A composed response, assembled.
    struct Out {
        c: Composed,
        segs: Vec<Segment>,
        bytes: Vec<u8>,
        boundaries: u32,
    }

    impl Out {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.bytes).into_owned()
        }
        fn split(&self) -> (&[u8], &[u8]) {
            let i = self
                .bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("a blank line");
            (&self.bytes[..i + 4], &self.bytes[i + 4..])
        }
        fn head(&self) -> String {
            String::from_utf8(self.split().0.to_vec()).unwrap()
        }
        fn body(&self) -> &[u8] {
            self.split().1
        }
        fn code(&self) -> u16 {
            self.head()[9..12].parse().unwrap()
        }
        /// Field names in order, lowercased (the status line and Date's value left out).
        fn names(&self) -> Vec<String> {
            self.head()
                .split("\r\n")
                .skip(1)
                .filter(|l| !l.is_empty())
                .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
                .collect()
        }
        fn field(&self, name: &str) -> Option<String> {
            let head = self.head();
            head.split("\r\n").skip(1).find_map(|l| {
                let (n, v) = l.split_once(": ")?;
                n.eq_ignore_ascii_case(name).then(|| v.to_string())
            })
        }
        fn content_length(&self) -> Option<usize> {
            self.field("content-length").map(|v| v.parse().unwrap())
        }
    }

    fn req_raw(method: &str, version: &str, extra: &[&str]) -> String {
        let mut raw = format!("{method} /dir/f.txt?q=1 {version}\r\nHost: a\r\n");
        for f in extra {
            raw.push_str(f);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        raw
    }

    fn run_opts(raw: &str, kind: Kind, len: u64, opts: Opts) -> Out {
        let fx = if opts.vary_encoding {
            fixture_with(len, b"Cache-Control: no-cache\r\nVary: Accept-Encoding\r\n")
        } else {
            fixture(len)
        };
        let req = request::parse(raw.as_bytes(), 16 * 1024)
            .expect("admitted")
            .expect("complete");
        let date = HttpDate::from_unix(NOW);
        let asked = Cell::new(0);
        let boundary = || {
            asked.set(asked.get() + 1);
            BOUNDARY
        };
        let ctx = Context {
            date: &date,
            site: b"X-Site: 1\r\n",
            stopping: opts.stopping,
            cors: opts.cors,
            vary_accept: opts.vary,
            boundary: &boundary,
        };
        let listing = b"<!doctype html>listing".to_vec();
        let body_of = |src| FileBody {
            rep: &fx.rep,
            bytes: if src == Src::Mem { &fx.mem } else { &fx.disk },
            head_len: fx.disk.len(),
            from_file: src == Src::Disk,
            body: (src == Src::Apart).then_some(&fx.content[..]),
        };
        let (reply, shared) = match kind {
            Kind::File(status, src) => (
                Reply::File {
                    status,
                    file: body_of(src),
                },
                if src == Src::Mem { &fx.mem } else { &fx.disk },
            ),
            Kind::Generated => (
                Reply::Generated {
                    content_type: "text/html; charset=utf-8",
                    body: &listing,
                },
                &fx.disk,
            ),
            Kind::Options => (Reply::Options, &fx.disk),
            Kind::Redirect => (Reply::Redirect, &fx.disk),
            Kind::Error(s) => (Reply::Error(s), &fx.disk),
        };
        // Bytes already in the caller's buffer stay, and segments point past them.
        let mut out = b"EARLIER".to_vec();
        let mut segs = Segments::new();
        let c = compose(&req, &reply, &ctx, &mut out, &mut segs);
        assert!(out.starts_with(b"EARLIER"));
        let mut bytes = Vec::new();
        for s in segs.as_slice() {
            match s.clone() {
                Segment::Own(r) => {
                    assert!(r.start >= 7, "a segment names earlier bytes");
                    bytes.extend_from_slice(&out[r]);
                }
                Segment::Shared(r) => bytes.extend_from_slice(&shared[r]),
                Segment::File { offset, len } => {
                    assert!(matches!(kind, Kind::File(_, Src::Disk)));
                    bytes.extend_from_slice(&fx.content[offset as usize..(offset + len) as usize])
                }
                Segment::Body(r) => {
                    assert!(matches!(kind, Kind::File(_, Src::Apart)));
                    bytes.extend_from_slice(&fx.content[r])
                }
            }
        }
        Out {
            c,
            segs: segs.as_slice().to_vec(),
            bytes,
            boundaries: asked.get(),
        }
    }

    fn run(raw: &str, kind: Kind) -> Out {
        run_opts(raw, kind, LEN, Opts::default())
    }

    fn get(extra: &[&str], src: Src) -> Out {
        run(
            &req_raw("GET", "HTTP/1.1", extra),
            Kind::File(Status::Ok, src),
        )
    }

    fn head(extra: &[&str], src: Src) -> Out {
        run(
            &req_raw("HEAD", "HTTP/1.1", extra),
            Kind::File(Status::Ok, src),
        )
    }

    const SOURCES: [Src; 3] = [Src::Mem, Src::Disk, Src::Apart];

    /// The oracle for a multipart/byteranges body, built by hand (RFC 9110 §14.6).
    fn multipart_oracle(ranges: &[(u64, u64)], content: &[u8]) -> Vec<u8> {
        let b = std::str::from_utf8(&BOUNDARY).unwrap();
        let mut out = Vec::new();
        for &(first, last) in ranges {
            out.extend_from_slice(
                format!(
                    "\r\n--{b}\r\nContent-Type: {CT}\r\nContent-Range: bytes {first}-{last}/{}\r\n\r\n",
                    content.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(&content[first as usize..=last as usize]);
        }
        out.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        out
    }

    // --- 200 ---------------------------------------------------------------------------

    #[test]
    fn a_plain_hit_from_memory_is_the_prefix_then_one_shared_slice() {
        let fx = fixture(LEN);
        let o = get(&[], Src::Mem);
        assert_eq!(o.code(), 200);
        assert_eq!(o.segs.len(), 2, "{:?}", o.segs);
        assert!(matches!(o.segs[0], Segment::Own(_)));
        assert_eq!(o.segs[1], Segment::Shared(0..fx.mem.len()));
        assert_eq!(o.body(), fx.content);
        assert_eq!(o.c.body_bytes, LEN);
    }

    #[test]
    fn a_plain_hit_from_disk_is_the_prefix_the_fields_then_the_file() {
        let fx = fixture(LEN);
        let o = get(&[], Src::Disk);
        assert_eq!(o.code(), 200);
        assert_eq!(o.segs[1], Segment::Shared(0..fx.disk.len()));
        assert_eq!(
            o.segs[2],
            Segment::File {
                offset: 0,
                len: LEN
            }
        );
        assert_eq!(o.segs.len(), 3);
        assert_eq!(o.body(), fx.content);
        assert_eq!(o.c.body_bytes, LEN);
    }

    #[test]
    fn a_plain_hit_of_a_body_held_apart_is_the_prefix_the_fields_then_the_body() {
        let fx = fixture(LEN);
        let o = get(&[], Src::Apart);
        assert_eq!(o.code(), 200);
        assert_eq!(
            o.segs[1..],
            [
                Segment::Shared(0..fx.disk.len()),
                Segment::Body(0..LEN as usize)
            ]
        );
        assert_eq!(o.body(), fx.content);
        assert_eq!(o.c.body_bytes, LEN);
        let o = get(&["Range: bytes=10-19"], Src::Apart);
        assert_eq!(o.segs[1..], [Segment::Body(10..20)]);
    }

    #[test]
    fn the_200_head_has_every_field_in_order() {
        for src in SOURCES {
            let o = get(&[], src);
            assert_eq!(
                o.names(),
                [
                    "server",
                    "date",
                    "x-site",
                    "content-type",
                    "content-length",
                    "last-modified",
                    "etag",
                    "accept-ranges",
                    "cache-control"
                ],
                "{src:?}"
            );
            assert_eq!(o.field("date").unwrap(), http_date(NOW));
            assert_eq!(o.field("etag").unwrap(), etag(LEN));
            assert_eq!(o.field("last-modified").unwrap(), http_date(MTIME));
            assert_eq!(o.content_length(), Some(LEN as usize));
        }
    }

    #[test]
    fn memory_and_disk_bodies_give_the_same_bytes() {
        let lm = format!("If-Modified-Since: {}", http_date(MTIME));
        let inm = format!("If-None-Match: {}", etag(LEN));
        let ir = format!("If-Range: {}", etag(LEN));
        let cases: &[&[&str]] = &[
            &[],
            &["Range: bytes=0-0"],
            &["Range: bytes=10-19"],
            &["Range: bytes=-5"],
            &["Range: bytes=990-"],
            &["Range: bytes=0-1,5-9,100-199"],
            &["Range: bytes=5000-"],
            &["Range: bytes=0-1,3-4", &ir],
            &[&lm],
            &[&inm],
            &["If-Match: \"nope\""],
        ];
        for extra in cases {
            for method in ["GET", "HEAD"] {
                let raw = req_raw(method, "HTTP/1.1", extra);
                let m = run(&raw, Kind::File(Status::Ok, Src::Mem));
                let d = run(&raw, Kind::File(Status::Ok, Src::Disk));
                assert_eq!(m.text(), d.text(), "{method} {extra:?}");
                assert_eq!(m.c, d.c, "{method} {extra:?}");
            }
        }
    }

    #[test]
    fn an_empty_file_has_an_empty_body() {
        for src in SOURCES {
            let o = run_opts(
                &req_raw("GET", "HTTP/1.1", &[]),
                Kind::File(Status::Ok, src),
                0,
                Opts::default(),
            );
            assert_eq!(o.code(), 200);
            assert_eq!(o.content_length(), Some(0));
            assert!(o.body().is_empty());
            assert!(!o.segs.iter().any(|s| matches!(s, Segment::File { .. })));
        }
    }

    // --- HEAD --------------------------------------------------------------------------

    #[test]
    fn head_sends_the_get_head_and_no_body() {
        for src in SOURCES {
            let g = get(&[], src);
            let h = head(&[], src);
            assert_eq!(h.head(), g.head(), "{src:?}");
            assert!(h.body().is_empty());
            assert_eq!(h.c.body_bytes, 0);
            assert!(!h.segs.iter().any(|s| matches!(s, Segment::File { .. })));
        }
    }

    #[test]
    fn head_ignores_range() {
        for src in SOURCES {
            let h = head(&["Range: bytes=0-9"], src);
            assert_eq!(h.code(), 200);
            assert_eq!(h.content_length(), Some(LEN as usize));
            assert!(h.body().is_empty());
        }
    }

    #[test]
    fn head_of_an_error_keeps_its_content_length() {
        let g = run(
            &req_raw("GET", "HTTP/1.1", &[]),
            Kind::Error(Status::NotFound),
        );
        let h = run(
            &req_raw("HEAD", "HTTP/1.1", &[]),
            Kind::Error(Status::NotFound),
        );
        assert_eq!(h.head(), g.head());
        assert!(h.body().is_empty());
        assert_eq!(g.content_length(), Some(g.body().len()));
    }

    // --- 304 ---------------------------------------------------------------------------

    #[test]
    fn if_none_match_with_the_current_tag_is_304() {
        for src in SOURCES {
            for tag in [
                etag(LEN),
                format!("W/{}", etag(LEN)),
                "*".into(),
                format!("\"x\", {}", etag(LEN)),
            ] {
                let o = get(&[&format!("If-None-Match: {tag}")], src);
                assert_eq!(o.code(), 304, "{tag}");
                assert!(o.body().is_empty());
                assert_eq!(o.c.body_bytes, 0);
            }
        }
    }

    #[test]
    fn if_none_match_with_another_tag_is_200() {
        for src in SOURCES {
            let o = get(&["If-None-Match: \"other\""], src);
            assert_eq!(o.code(), 200);
            assert_eq!(o.body(), fixture(LEN).content);
        }
    }

    #[test]
    fn if_modified_since_at_or_after_the_mtime_is_304() {
        for (secs, want) in [(MTIME, 304), (MTIME + 1, 304), (MTIME - 1, 200)] {
            for src in SOURCES {
                let o = get(&[&format!("If-Modified-Since: {}", http_date(secs))], src);
                assert_eq!(o.code(), want, "{secs}");
            }
        }
    }

    #[test]
    fn a_304_carries_exactly_the_validators_and_cache_fields() {
        for src in SOURCES {
            let o = get(&[&format!("If-None-Match: {}", etag(LEN))], src);
            assert_eq!(
                o.names(),
                [
                    "server",
                    "date",
                    "x-site",
                    "etag",
                    "last-modified",
                    "cache-control"
                ]
            );
            assert_eq!(o.field("etag").unwrap(), etag(LEN));
            assert_eq!(o.field("last-modified").unwrap(), http_date(MTIME));
            assert_eq!(o.field("content-length"), None);
            assert_eq!(o.segs.len(), 1, "own bytes only: {:?}", o.segs);
        }
    }

    #[test]
    fn a_head_that_matches_is_304_too() {
        let o = head(&[&format!("If-None-Match: {}", etag(LEN))], Src::Mem);
        assert_eq!(o.code(), 304);
        assert!(o.body().is_empty());
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since() {
        // RFC 9110 §13.2.2 step 3: If-Modified-Since is looked at only without
        // If-None-Match.
        let ims = format!("If-Modified-Since: {}", http_date(MTIME + 10));
        assert_eq!(
            get(&["If-None-Match: \"other\"", &ims], Src::Mem).code(),
            200
        );
        let inm = format!("If-None-Match: {}", etag(LEN));
        let old = format!("If-Modified-Since: {}", http_date(MTIME - 10));
        assert_eq!(get(&[&inm, &old], Src::Mem).code(), 304);
    }

    // --- 412 ---------------------------------------------------------------------------

    #[test]
    fn if_match_that_fails_is_412() {
        for src in SOURCES {
            for field in ["If-Match: \"other\"", &format!("If-Match: W/{}", etag(LEN))] {
                let o = get(&[field], src);
                assert_eq!(o.code(), 412, "{field}");
                assert_eq!(o.content_length(), Some(o.body().len()));
                assert_eq!(o.c.body_bytes, o.body().len() as u64);
                assert!(!o.c.close);
            }
        }
    }

    #[test]
    fn if_match_that_holds_proceeds() {
        for field in [
            "If-Match: *".to_string(),
            format!("If-Match: \"a\", {}", etag(LEN)),
        ] {
            assert_eq!(get(&[&field], Src::Disk).code(), 200, "{field}");
        }
    }

    #[test]
    fn if_unmodified_since_before_the_mtime_is_412() {
        for (secs, want) in [(MTIME - 1, 412), (MTIME, 200), (MTIME + 1, 200)] {
            let o = get(
                &[&format!("If-Unmodified-Since: {}", http_date(secs))],
                Src::Mem,
            );
            assert_eq!(o.code(), want, "{secs}");
        }
    }

    #[test]
    fn if_match_wins_over_if_unmodified_since() {
        // §13.2.2 step 2: If-Unmodified-Since only without If-Match.
        let ius = format!("If-Unmodified-Since: {}", http_date(MTIME - 10));
        assert_eq!(get(&["If-Match: *", &ius], Src::Mem).code(), 200);
    }

    #[test]
    fn preconditions_come_before_ranges() {
        let o = get(&["If-Match: \"other\"", "Range: bytes=0-1"], Src::Mem);
        assert_eq!(o.code(), 412);
        let o = get(
            &[&format!("If-None-Match: {}", etag(LEN)), "Range: bytes=0-1"],
            Src::Disk,
        );
        assert_eq!(o.code(), 304);
    }

    #[test]
    fn a_412_to_head_has_no_body() {
        let o = head(&["If-Match: \"other\""], Src::Mem);
        assert_eq!(o.code(), 412);
        assert!(o.body().is_empty());
        assert!(o.content_length().unwrap() > 0);
    }

    // --- 206 ---------------------------------------------------------------------------

    #[test]
    fn single_ranges_are_the_slices_of_the_content() {
        let fx = fixture(LEN);
        let cases: &[(&str, u64, u64)] = &[
            ("bytes=0-0", 0, 0),
            ("bytes=0-9", 0, 9),
            ("bytes=10-19", 10, 19),
            ("bytes=990-", 990, 999),
            ("bytes=-5", 995, 999),
            ("bytes=-5000", 0, 999),
            ("bytes=500-100000", 500, 999),
            ("bytes=0-1,2-3", 0, 3),
            ("BYTES=7-8", 7, 8),
        ];
        for &(range, first, last) in cases {
            for src in SOURCES {
                let o = get(&[&format!("Range: {range}")], src);
                assert_eq!(o.code(), 206, "{range} {src:?}");
                assert_eq!(
                    o.field("content-range").unwrap(),
                    format!("bytes {first}-{last}/{LEN}"),
                    "{range}"
                );
                assert_eq!(
                    o.body(),
                    &fx.content[first as usize..=last as usize],
                    "{range}"
                );
                assert_eq!(o.content_length(), Some((last - first + 1) as usize));
                assert_eq!(o.c.body_bytes, last - first + 1);
                assert_eq!(o.boundaries, 0, "no boundary for one range");
            }
        }
    }

    #[test]
    fn a_single_range_from_disk_is_one_file_segment() {
        let o = get(&["Range: bytes=10-19"], Src::Disk);
        assert_eq!(o.segs.len(), 2);
        assert_eq!(
            o.segs[1],
            Segment::File {
                offset: 10,
                len: 10
            }
        );
        let fx = fixture(LEN);
        let o = get(&["Range: bytes=10-19"], Src::Mem);
        let start = fx.disk.len() + 10;
        assert_eq!(o.segs[1], Segment::Shared(start..start + 10));
    }

    #[test]
    fn the_single_range_head_has_every_field_in_order() {
        let o = get(&["Range: bytes=1-2"], Src::Mem);
        assert_eq!(
            o.names(),
            [
                "server",
                "date",
                "x-site",
                "content-type",
                "content-range",
                "content-length",
                "last-modified",
                "etag",
                "cache-control"
            ]
        );
    }

    #[test]
    fn multipart_ranges_match_a_body_built_by_hand() {
        let fx = fixture(LEN);
        let cases: &[(&str, &[(u64, u64)])] = &[
            ("bytes=0-1,5-9", &[(0, 1), (5, 9)]),
            ("bytes=5-9,0-1", &[(0, 1), (5, 9)]),
            (
                "bytes=0-0,2-2,4-4,-1",
                &[(0, 0), (2, 2), (4, 4), (999, 999)],
            ),
            ("bytes=100-199,150-300,500-", &[(100, 300), (500, 999)]),
        ];
        for &(range, parts) in cases {
            for src in SOURCES {
                let o = get(&[&format!("Range: {range}")], src);
                assert_eq!(o.code(), 206, "{range}");
                let b = std::str::from_utf8(&BOUNDARY).unwrap();
                assert_eq!(
                    o.field("content-type").unwrap(),
                    format!("multipart/byteranges; boundary={b}")
                );
                let want = multipart_oracle(parts, &fx.content);
                assert_eq!(o.body(), want.as_slice(), "{range} {src:?}");
                assert_eq!(o.content_length(), Some(want.len()), "{range}");
                assert_eq!(o.c.body_bytes, want.len() as u64);
                assert_eq!(o.boundaries, 1, "one boundary per response");
            }
        }
    }

    #[test]
    fn multipart_from_disk_alternates_part_heads_and_file_ranges() {
        let o = get(&["Range: bytes=0-1,5-9,20-29"], Src::Disk);
        let kinds: Vec<&str> = o
            .segs
            .iter()
            .map(|s| match s {
                Segment::Own(_) => "own",
                Segment::Shared(_) => "shared",
                Segment::File { .. } => "file",
                Segment::Body(_) => "body",
            })
            .collect();
        assert_eq!(kinds, ["own", "file", "own", "file", "own", "file", "own"]);
        let files: Vec<_> = o
            .segs
            .iter()
            .filter_map(|s| match s {
                Segment::File { offset, len } => Some((*offset, *len)),
                _ => None,
            })
            .collect();
        assert_eq!(files, [(0, 2), (5, 5), (20, 10)]);
    }

    #[test]
    fn the_most_ranges_fit_in_the_segments() {
        let spec: Vec<String> = (0..MAX_RANGES as u64)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
            .collect();
        let range = format!("Range: bytes={}", spec.join(","));
        for src in SOURCES {
            let o = get(&[&range], src);
            assert_eq!(o.code(), 206);
            assert!(o.segs.len() <= MAX_SEGMENTS);
            let parts: Vec<_> = (0..MAX_RANGES as u64)
                .map(|i| (i * 10, i * 10 + 1))
                .collect();
            assert_eq!(o.body(), multipart_oracle(&parts, &fixture(LEN).content));
        }
    }

    #[test]
    fn segments_spill_past_the_inline_ones_in_order_and_merge_across_the_boundary() {
        let mut segs = Segments::new();
        for round in 0..2 {
            let mut want = Vec::new();
            for i in 0..MAX_SEGMENTS / 2 {
                let own = Segment::Own(i * 10..i * 10 + 5);
                segs.push(own.clone());
                // Adjacent own bytes merge, inline or spilled.
                segs.push(Segment::Own(i * 10 + 5..i * 10 + 7));
                segs.push(Segment::Shared(i..i + 1));
                segs.push(Segment::Shared(3..3));
                want.push(Segment::Own(i * 10..i * 10 + 7));
                want.push(Segment::Shared(i..i + 1));
            }
            assert_eq!(segs.as_slice(), want.as_slice(), "round {round}");
            segs.clear();
            assert!(segs.as_slice().is_empty());
            segs.push(Segment::File { offset: 1, len: 2 });
            assert_eq!(segs.as_slice(), [Segment::File { offset: 1, len: 2 }]);
            segs.clear();
        }
    }

    #[test]
    fn ranges_the_server_ignores_give_the_whole_file() {
        for range in [
            "items=0-1",
            "bytes=5-1",
            "bytes=x-y",
            "bytes=",
            "bytes=0-,0-,0-",
        ] {
            for src in SOURCES {
                let o = get(&[&format!("Range: {range}")], src);
                assert_eq!(o.code(), 200, "{range}");
                assert_eq!(o.body(), fixture(LEN).content, "{range}");
            }
        }
    }

    // --- 416 ---------------------------------------------------------------------------

    #[test]
    fn an_unsatisfiable_range_is_416_with_the_length() {
        for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
            for src in SOURCES {
                let o = get(&[&format!("Range: {range}")], src);
                assert_eq!(o.code(), 416, "{range}");
                assert_eq!(o.field("content-range").unwrap(), format!("bytes */{LEN}"));
                assert_eq!(o.content_length(), Some(o.body().len()));
                assert!(!o.segs.iter().any(|s| !matches!(s, Segment::Own(_))));
            }
        }
    }

    #[test]
    fn any_range_of_an_empty_file_is_416() {
        let o = run_opts(
            &req_raw("GET", "HTTP/1.1", &["Range: bytes=0-"]),
            Kind::File(Status::Ok, Src::Mem),
            0,
            Opts::default(),
        );
        assert_eq!(o.code(), 416);
        assert_eq!(o.field("content-range").unwrap(), "bytes */0");
    }

    // --- If-Range ----------------------------------------------------------------------

    #[test]
    fn if_range_with_the_current_strong_tag_keeps_the_range() {
        let o = get(
            &[&format!("If-Range: {}", etag(LEN)), "Range: bytes=0-3"],
            Src::Disk,
        );
        assert_eq!(o.code(), 206);
        assert_eq!(o.body(), &fixture(LEN).content[..4]);
    }

    #[test]
    fn if_range_with_another_or_a_weak_tag_sends_everything() {
        for tag in ["\"old\"".to_string(), format!("W/{}", etag(LEN))] {
            for src in SOURCES {
                let o = get(&[&format!("If-Range: {tag}"), "Range: bytes=0-3"], src);
                assert_eq!(o.code(), 200, "{tag}");
                assert_eq!(o.body(), fixture(LEN).content);
            }
        }
    }

    #[test]
    fn if_range_with_a_date_needs_the_exact_mtime() {
        for (secs, want) in [(MTIME, 206), (MTIME + 1, 200), (MTIME - 1, 200)] {
            let o = get(
                &[
                    &format!("If-Range: {}", http_date(secs)),
                    "Range: bytes=0-3",
                ],
                Src::Mem,
            );
            assert_eq!(o.code(), want, "{secs}");
        }
    }

    #[test]
    fn if_range_without_range_is_a_plain_200() {
        let o = get(&[&format!("If-Range: {}", etag(LEN))], Src::Mem);
        assert_eq!(o.code(), 200);
    }

    // --- other statuses ----------------------------------------------------------------

    #[test]
    fn the_404_page_is_neither_conditional_nor_ranged() {
        let fx = fixture(LEN);
        for extra in [
            format!("If-None-Match: {}", etag(LEN)),
            "If-Match: \"other\"".into(),
            "Range: bytes=0-1".into(),
        ] {
            for src in SOURCES {
                let o = run(
                    &req_raw("GET", "HTTP/1.1", &[&extra]),
                    Kind::File(Status::NotFound, src),
                );
                assert_eq!(o.code(), 404, "{extra}");
                assert_eq!(o.body(), fx.content, "{extra}");
                assert!(!o.c.close);
            }
        }
    }

    #[test]
    fn options_is_204_with_allow_and_cors_only_with_cors() {
        let raw = req_raw("OPTIONS", "HTTP/1.1", &[]);
        let o = run(&raw, Kind::Options);
        assert_eq!(o.code(), 204);
        assert_eq!(o.field("allow").unwrap(), "GET, HEAD, OPTIONS");
        assert_eq!(o.field("access-control-allow-methods"), None);
        assert!(o.body().is_empty());
        assert_eq!(o.c.body_bytes, 0);
        let cors = Opts {
            cors: true,
            ..Opts::default()
        };
        let o = run_opts(&raw, Kind::Options, LEN, cors);
        assert_eq!(
            o.field("access-control-allow-methods").unwrap(),
            "GET, HEAD, OPTIONS"
        );
        assert_eq!(o.field("access-control-max-age").unwrap(), "86400");
    }

    #[test]
    fn other_methods_are_405_with_allow() {
        let o = run(
            &req_raw("DELETE", "HTTP/1.1", &[]),
            Kind::Error(Status::MethodNotAllowed),
        );
        assert_eq!(o.code(), 405);
        assert_eq!(o.field("allow").unwrap(), "GET, HEAD, OPTIONS");
        assert!(!o.c.close);
    }

    #[test]
    fn a_directory_without_its_slash_is_redirected_relative_with_the_query() {
        let o = run(&req_raw("GET", "HTTP/1.1", &[]), Kind::Redirect);
        assert_eq!(o.code(), 301);
        assert_eq!(o.c.status, Status::MovedPermanently);
        assert_eq!(o.field("location").unwrap(), "f.txt/?q=1");
        assert_eq!(o.content_length(), Some(o.body().len()));
        assert_eq!(o.c.body_bytes, o.body().len() as u64);
        let h = run(&req_raw("HEAD", "HTTP/1.1", &[]), Kind::Redirect);
        assert!(h.body().is_empty());
        assert_eq!(h.c.body_bytes, 0);
    }

    #[test]
    fn a_generated_page_is_200_from_own_bytes() {
        let o = run(&req_raw("GET", "HTTP/1.1", &[]), Kind::Generated);
        assert_eq!(o.code(), 200);
        assert_eq!(o.body(), b"<!doctype html>listing");
        assert_eq!(o.content_length(), Some(o.body().len()));
        assert_eq!(o.field("cache-control").unwrap(), "no-cache");
        assert!(o.segs.iter().all(|s| matches!(s, Segment::Own(_))));
        let h = run(&req_raw("HEAD", "HTTP/1.1", &[]), Kind::Generated);
        assert_eq!(h.head(), o.head());
        assert!(h.body().is_empty());
        assert_eq!(h.c.body_bytes, 0);
    }

    #[test]
    fn every_error_status_is_framed_and_named() {
        for status in [
            Status::BadRequest,
            Status::Forbidden,
            Status::NotFound,
            Status::MethodNotAllowed,
            Status::InternalServerError,
        ] {
            let o = run(&req_raw("GET", "HTTP/1.1", &[]), Kind::Error(status));
            assert_eq!(o.code(), status.code());
            assert_eq!(o.c.status, status);
            assert_eq!(o.content_length(), Some(o.body().len()), "{status:?}");
            assert_eq!(o.c.body_bytes, o.body().len() as u64);
            assert!(o.text().contains(&status.code().to_string()));
        }
    }

    #[test]
    fn vary_accept_is_said_on_200_304_and_errors_when_asked() {
        let vary = Opts {
            vary: true,
            ..Opts::default()
        };
        let inm = format!("If-None-Match: {}", etag(LEN));
        for (extra, kind) in [
            (None, Kind::File(Status::Ok, Src::Mem)),
            (Some(inm.as_str()), Kind::File(Status::Ok, Src::Disk)),
            (None, Kind::Generated),
            (None, Kind::Error(Status::NotFound)),
        ] {
            let extra: Vec<&str> = extra.into_iter().collect();
            let raw = req_raw("GET", "HTTP/1.1", &extra);
            let with = run_opts(&raw, kind, LEN, vary);
            assert_eq!(
                with.field("vary").as_deref(),
                Some("Accept"),
                "{}",
                with.head()
            );
            let without = run_opts(&raw, kind, LEN, Opts::default());
            assert_eq!(without.field("vary"), None);
        }
    }

    #[test]
    fn a_representation_chosen_by_encoding_says_vary_on_every_answer_about_it() {
        let opts = Opts {
            vary_encoding: true,
            ..Opts::default()
        };
        let inm = format!("If-None-Match: {}", etag(LEN));
        let im = "If-Match: \"other\"".to_string();
        for (extra, want) in [
            (None, 200),
            (Some("Range: bytes=0-9"), 206),
            (Some("Range: bytes=0-1,5-9"), 206),
            (Some(inm.as_str()), 304),
            (Some(im.as_str()), 412),
            (Some("Range: bytes=99999-"), 416),
        ] {
            for src in [Src::Mem, Src::Disk, Src::Apart] {
                for method in ["GET", "HEAD"] {
                    let extra: Vec<&str> = extra.into_iter().collect();
                    let raw = req_raw(method, "HTTP/1.1", &extra);
                    let o = run_opts(&raw, Kind::File(Status::Ok, src), LEN, opts);
                    // RFC 9110 §14.2: Range applies to GET only.
                    let ranged = extra.iter().any(|f| f.starts_with("Range"));
                    let want = if method == "HEAD" && ranged {
                        200
                    } else {
                        want
                    };
                    assert_eq!(o.c.status.code(), want, "{method} {extra:?}");
                    assert_eq!(
                        o.field("vary").as_deref(),
                        Some("Accept-Encoding"),
                        "{method} {extra:?} {src:?}: {}",
                        o.head()
                    );
                    // One Vary line, not one from the fields and one from elsewhere.
                    assert_eq!(o.head().matches("Vary:").count(), 1, "{}", o.head());
                }
            }
        }
    }

    // --- closing -----------------------------------------------------------------------

    #[test]
    fn http_1_1_stays_open_and_says_nothing() {
        let o = get(&[], Src::Mem);
        assert!(!o.c.close);
        assert_eq!(o.field("connection"), None);
    }

    #[test]
    fn connection_close_closes_and_says_so() {
        for src in SOURCES {
            let o = get(&["Connection: close"], src);
            assert!(o.c.close);
            assert_eq!(o.field("connection").unwrap(), "close");
            assert_eq!(o.body(), fixture(LEN).content);
        }
    }

    #[test]
    fn http_1_0_closes_unless_it_asks_for_keep_alive() {
        let kind = Kind::File(Status::Ok, Src::Mem);
        let o = run(&req_raw("GET", "HTTP/1.0", &[]), kind);
        assert!(o.c.close);
        assert_eq!(o.field("connection").unwrap(), "close");
        let o = run(
            &req_raw("GET", "HTTP/1.0", &["Connection: keep-alive"]),
            kind,
        );
        assert!(!o.c.close);
        assert_eq!(o.field("connection").unwrap(), "keep-alive");
        assert!(o.head().starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn bad_requests_and_server_errors_close_other_errors_do_not() {
        for (status, close) in [
            (Status::BadRequest, true),
            (Status::InternalServerError, true),
            (Status::NotFound, false),
            (Status::Forbidden, false),
            (Status::MethodNotAllowed, false),
        ] {
            let o = run(&req_raw("GET", "HTTP/1.1", &[]), Kind::Error(status));
            assert_eq!(o.c.close, close, "{status:?}");
            assert_eq!(o.field("connection").as_deref() == Some("close"), close);
        }
    }

    #[test]
    fn while_stopping_every_response_closes() {
        let stopping = Opts {
            stopping: true,
            ..Opts::default()
        };
        let inm = format!("If-None-Match: {}", etag(LEN));
        for (extra, kind) in [
            (vec![], Kind::File(Status::Ok, Src::Mem)),
            (
                vec!["Range: bytes=0-1,4-5"],
                Kind::File(Status::Ok, Src::Disk),
            ),
            (vec![inm.as_str()], Kind::File(Status::Ok, Src::Mem)),
            (vec![], Kind::Generated),
            (vec![], Kind::Redirect),
            (vec![], Kind::Error(Status::NotFound)),
        ] {
            let o = run_opts(&req_raw("GET", "HTTP/1.1", &extra), kind, LEN, stopping);
            assert!(o.c.close, "{extra:?}");
            assert_eq!(o.field("connection").unwrap(), "close");
        }
        let o = run_opts(
            &req_raw("OPTIONS", "HTTP/1.1", &[]),
            Kind::Options,
            LEN,
            stopping,
        );
        assert!(o.c.close);
    }

    #[test]
    fn a_closing_error_closes_whatever_was_asked() {
        let date = HttpDate::from_unix(NOW);
        let ctx = Context {
            date: &date,
            site: b"",
            stopping: false,
            cors: false,
            vary_accept: false,
            boundary: &|| unreachable!("no boundary for an error"),
        };
        for status in [
            Status::BadRequest,
            Status::RequestTimeout,
            Status::UriTooLong,
            Status::RequestHeaderFieldsTooLarge,
            Status::HttpVersionNotSupported,
        ] {
            let mut out = Vec::new();
            let mut segs = Segments::new();
            let c = compose_closing_error(status, &ctx, &mut out, &mut segs);
            assert!(c.close);
            assert_eq!(c.status, status);
            assert_eq!(segs.as_slice(), [Segment::Own(0..out.len())]);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
            let body = text.split_once("\r\n\r\n").unwrap().1;
            assert_eq!(c.body_bytes, body.len() as u64);
        }
    }

    #[test]
    fn random_range_fields_frame_their_bytes_from_memory_and_disk_alike() {
        // A deterministic generator (xorshift) of Range fields of one to four specs, some
        // out of bounds; the oracle is the range set evaluated on its own, framed by hand.
        let fx = fixture(LEN);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..300 {
            let specs: Vec<String> = (0..1 + next(4))
                .map(|_| match next(3) {
                    0 => format!("-{}", next(1200)),
                    1 => format!("{}-", next(1200)),
                    _ => {
                        let a = next(1200);
                        format!("{a}-{}", a + next(300))
                    }
                })
                .collect();
            let field = format!("bytes={}", specs.join(","));
            let m = get(&[&format!("Range: {field}")], Src::Mem);
            let d = get(&[&format!("Range: {field}")], Src::Disk);
            assert_eq!(m.text(), d.text(), "{field}");
            match range::evaluate(field.as_bytes(), LEN) {
                RangeOutcome::Full => {
                    assert_eq!(m.code(), 200, "{field}");
                    assert_eq!(m.body(), fx.content);
                }
                RangeOutcome::Unsatisfiable => assert_eq!(m.code(), 416, "{field}"),
                RangeOutcome::Satisfiable(set) => {
                    assert_eq!(m.code(), 206, "{field}");
                    let want = match set.as_slice() {
                        [(first, last)] => fx.content[*first as usize..=*last as usize].to_vec(),
                        parts => multipart_oracle(parts, &fx.content),
                    };
                    assert_eq!(m.body(), want.as_slice(), "{field}");
                    assert_eq!(m.content_length(), Some(want.len()), "{field}");
                }
            }
        }
    }

    // --- the segment list ---------------------------------------------------------------

    #[test]
    fn segments_merge_adjacent_own_bytes_and_drop_empty_ones() {
        let mut s = Segments::new();
        s.push(Segment::Own(0..3));
        s.push(Segment::Own(3..5));
        s.push(Segment::Shared(0..0));
        s.push(Segment::File { offset: 9, len: 0 });
        s.push(Segment::Shared(1..2));
        s.push(Segment::Own(5..6));
        s.push(Segment::Own(7..8));
        assert_eq!(
            s.as_slice(),
            [
                Segment::Own(0..5),
                Segment::Shared(1..2),
                Segment::Own(5..6),
                Segment::Own(7..8)
            ]
        );
        s.clear();
        assert!(s.as_slice().is_empty());
    }

    #[test]
    fn site_fields_are_in_every_response() {
        for kind in [
            Kind::File(Status::Ok, Src::Mem),
            Kind::File(Status::NotFound, Src::Disk),
            Kind::Generated,
            Kind::Redirect,
            Kind::Error(Status::NotFound),
        ] {
            let o = run(&req_raw("GET", "HTTP/1.1", &[]), kind);
            assert_eq!(o.field("x-site").unwrap(), "1");
            assert_eq!(o.field("server").unwrap(), "fserve");
        }
    }
}
