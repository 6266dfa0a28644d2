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
//!    held open is sent from its descriptor by offset. Both take the same path through
//!    here, single and multipart ranges included.
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
    /// The body is sent from the open file ([`Segment::File`]), not from `bytes`.
    pub on_disk: bool,
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
    /// Bytes of the open file, by offset.
    File { offset: u64, len: u64 },
}

/// The segments of one response: a fixed array, so composing allocates nothing.
pub struct Segments {
    items: [Segment; MAX_SEGMENTS],
    len: usize,
}

impl Default for Segments {
    fn default() -> Segments {
        Segments::new()
    }
}

impl Segments {
    pub fn new() -> Segments {
        Segments {
            items: [const { Segment::Own(0..0) }; MAX_SEGMENTS],
            len: 0,
        }
    }

    pub fn as_slice(&self) -> &[Segment] {
        &self.items[..self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `seg`, dropping an empty one and merging adjacent own bytes.
    fn push(&mut self, seg: Segment) {
        let empty = match &seg {
            Segment::Own(r) | Segment::Shared(r) => r.is_empty(),
            Segment::File { len, .. } => *len == 0,
        };
        if empty {
            return;
        }
        if let (Some(Segment::Own(last)), Segment::Own(next)) =
            (self.items[..self.len].last_mut(), &seg)
        {
            if last.end == next.start {
                last.end = next.end;
                return;
            }
        }
        self.items[self.len] = seg;
        self.len += 1;
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
    // The bytes `first..=last` of the representation.
    let body = |segs: &mut Segments, first: u64, len: u64| {
        if file.on_disk {
            segs.push(Segment::File { offset: first, len });
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
            } else if file.on_disk {
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
            response::write_error(out, Status::PreconditionFailed, c, head_only, b"");
            segs.own_since(out, from);
            (Status::PreconditionFailed, own_body_len(&out[from..]))
        }
        Plan::Unsatisfiable => {
            // §15.5.17: say how long the representation is.
            response::write_error_with(out, Status::RangeNotSatisfiable, c, head_only, |out| {
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
