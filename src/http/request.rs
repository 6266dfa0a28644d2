//! Request heads (RFC 9112 §2–§9): parse with httparse, then admit or reject before any I/O.
//!
//! [`parse`] borrows the receive buffer and a caller-owned header array; nothing allocates.
//! `Ok(None)` means the head is incomplete: read more. A [`Reject`] is an error response the
//! connection must close after (400, 411, 413, 414, 431, 505).
//!
//! httparse enforces the grammar of the request line and the field lines (RFC 9112 §3: one
//! SP between method, target and version, a case-sensitive `HTTP/1.x`; §5.1: no whitespace
//! between a field name and its colon; §5.2: no obs-fold; §5.5: no CTL but HTAB in a value,
//! so no bare CR or NUL) and skips empty lines before the request line (§2.2). The admission
//! rules around it, each at its code:
//!
//! - line endings are CRLF only (§2.2 allows a bare LF; fserve refuses it, see
//!   [`has_bare_lf`]);
//! - Host: exactly one in HTTP/1.1, at most one in HTTP/1.0, and a valid `uri-host [":"
//!   port]` (§3.2);
//! - the request-target's form fits the method (§3.2): origin-form and absolute-form (with a
//!   host and no userinfo, RFC 9110 §4.2.1, §4.2.4) for any method, asterisk-form only with
//!   OPTIONS, authority-form only with CONNECT;
//! - body framing (§6): Transfer-Encoding with Content-Length, in HTTP/1.0, or without
//!   chunked as its only final coding is a 400; a valid chunked request is a 411 (fserve reads
//!   no request body it does not know the length of); Content-Length is one or more equal
//!   decimal values (RFC 9110 §8.6), else 400.

use super::status::Status;

/// Header fields read per request; more is 431.
pub const MAX_HEADERS: usize = 64;
/// Longest request target; longer is 414.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;
/// Longest request body read and thrown away (static files take no body); longer is 413.
pub const MAX_DISCARDED_BODY_BYTES: u64 = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Answered 204 with what the server allows (and CORS preflight fields if enabled).
    Options,
    /// Anything else: answered 405.
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// An admitted request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'b> {
    pub method: Method,
    pub version: Version,
    /// The path of the target as sent (still percent-encoded), from its first `/`: an
    /// absolute-form target's scheme and authority are removed. Empty for `Method::Other`.
    pub path: &'b [u8],
    /// What followed `?`, if anything (never used to find a file).
    pub query: Option<&'b [u8]>,
    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// Bytes of the head, through the blank line: where the body or the next request starts.
    pub head_len: usize,
    /// Content-Length of a body to read and discard (at most [`MAX_DISCARDED_BODY_BYTES`]).
    pub body_len: u64,
    pub fields: Fields<'b>,
}

/// The header fields that select or condition a response (RFC 9110 §12, §13, §14), as sent.
///
/// A list field sent on several lines is one list (§5.3): the first line is here and
/// `repeated` says so; [`join_repeated`] joins them (rare, so parsing never allocates). A
/// repeated Range or If-Range makes both meaningless, so they are dropped and the whole
/// representation is sent (§14.2 lets a server ignore Range).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields<'b> {
    pub if_match: Option<&'b [u8]>,
    pub if_none_match: Option<&'b [u8]>,
    pub if_modified_since: Option<&'b [u8]>,
    pub if_unmodified_since: Option<&'b [u8]>,
    pub if_range: Option<&'b [u8]>,
    pub range: Option<&'b [u8]>,
    pub accept_encoding: Option<&'b [u8]>,
    pub accept: Option<&'b [u8]>,
    /// For the access log only (never to choose a response): the first line of each.
    pub referer: Option<&'b [u8]>,
    pub user_agent: Option<&'b [u8]>,
    /// RFC 7239; believed only from a trusted proxy (`--trusted-proxy`).
    pub forwarded: Option<&'b [u8]>,
    pub x_forwarded_for: Option<&'b [u8]>,
    /// Which list fields came on several lines ([`REPEATED_IF_MATCH`]…): only the first line
    /// is above; [`join_repeated`] joins them all.
    pub repeated: u8,
}

pub const REPEATED_IF_MATCH: u8 = 1;
pub const REPEATED_IF_NONE_MATCH: u8 = 2;
pub const REPEATED_ACCEPT_ENCODING: u8 = 4;
pub const REPEATED_ACCEPT: u8 = 8;

/// Joins every line of each list field flagged in `fields.repeated` into `out` with `, `
/// (RFC 9110 §5.3) and points `fields` at the joined values. `head` is the request head
/// `fields` came from. Rare, so it may allocate.
pub fn join_repeated<'a>(head: &[u8], fields: &mut Fields<'a>, out: &'a mut Vec<u8>) {
    let names: [(u8, &str); 4] = [
        (REPEATED_IF_MATCH, "if-match"),
        (REPEATED_IF_NONE_MATCH, "if-none-match"),
        (REPEATED_ACCEPT_ENCODING, "accept-encoding"),
        (REPEATED_ACCEPT, "accept"),
    ];
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    if req.parse_with_uninit_headers(head, &mut headers).is_err() {
        return;
    }
    let mut ranges: [Option<std::ops::Range<usize>>; 4] = Default::default();
    for (i, (bit, name)) in names.iter().enumerate() {
        if fields.repeated & bit == 0 {
            continue;
        }
        let start = out.len();
        for h in req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
        {
            if out.len() > start {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(h.value.trim_ascii());
        }
        ranges[i] = Some(start..out.len());
    }
    let out: &'a [u8] = out;
    let slots = [
        &mut fields.if_match,
        &mut fields.if_none_match,
        &mut fields.accept_encoding,
        &mut fields.accept,
    ];
    for (slot, range) in slots.into_iter().zip(ranges) {
        if let Some(r) = range {
            *slot = Some(&out[r]);
        }
    }
}

/// A request answered with an error and then a closed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    pub status: Status,
    pub why: &'static str,
}

fn reject(status: Status, why: &'static str) -> Reject {
    Reject { status, why }
}

/// Parses the request head at the start of `buf`. `max_head` bounds the head's size: a head
/// that is not complete within it is rejected (414 when the request line alone is too long,
/// else 431), so the caller never needs to buffer more than `max_head` bytes.
pub fn parse(buf: &[u8], max_head: usize) -> Result<Option<Request<'_>>, Reject> {
    // Left uninitialised: httparse writes the fields it finds and hands back only those, so
    // no request pays for clearing all 64 slots (2 KiB) first.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() < max_head {
                return Ok(None);
            }
            let line_done = buf.iter().position(|&b| b == b'\n').is_some();
            return Err(if !line_done && buf.len() > MAX_TARGET_BYTES {
                reject(Status::UriTooLong, "request target too long")
            } else {
                reject(
                    Status::RequestHeaderFieldsTooLarge,
                    "request head too large",
                )
            });
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(reject(
                Status::RequestHeaderFieldsTooLarge,
                "too many header fields",
            ));
        }
        Err(httparse::Error::Version) if looks_like_other_version(buf) => {
            return Err(reject(
                Status::HttpVersionNotSupported,
                "unsupported HTTP version",
            ));
        }
        Err(_) => return Err(reject(Status::BadRequest, "malformed request head")),
    };
    if head_len > max_head {
        return Err(reject(
            Status::RequestHeaderFieldsTooLarge,
            "request head too large",
        ));
    }
    if has_bare_lf(&buf[..head_len]) {
        return Err(reject(Status::BadRequest, "line ending without CR"));
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("OPTIONS") => Method::Options,
        _ => Method::Other,
    };
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let target = req.path.unwrap_or("").as_bytes();
    if target.len() > MAX_TARGET_BYTES {
        return Err(reject(Status::UriTooLong, "request target too long"));
    }

    let mut hosts = 0;
    let mut transfer_codings = TransferCodings::default();
    let mut close = false;
    let mut keep_alive_token = false;
    let mut content_length: Option<u64> = None;
    let mut fields = Fields::default();
    let (mut ranges, mut if_ranges) = (0, 0);
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value: &[u8] = h.value.trim_ascii();
        fn first<'v>(slot: &mut Option<&'v [u8]>, value: &'v [u8]) -> u8 {
            if slot.is_none() {
                *slot = Some(value);
                0
            } else {
                1
            }
        }
        if name.len() > 2 && name[..3].eq_ignore_ascii_case(b"if-") {
            match &name[3..] {
                n if n.eq_ignore_ascii_case(b"match") => {
                    fields.repeated |= first(&mut fields.if_match, value) * REPEATED_IF_MATCH;
                }
                n if n.eq_ignore_ascii_case(b"none-match") => {
                    fields.repeated |=
                        first(&mut fields.if_none_match, value) * REPEATED_IF_NONE_MATCH;
                }
                n if n.eq_ignore_ascii_case(b"modified-since") => {
                    first(&mut fields.if_modified_since, value);
                }
                n if n.eq_ignore_ascii_case(b"unmodified-since") => {
                    first(&mut fields.if_unmodified_since, value);
                }
                n if n.eq_ignore_ascii_case(b"range") => {
                    if_ranges += 1;
                    first(&mut fields.if_range, value);
                }
                _ => {}
            }
        } else if name.eq_ignore_ascii_case(b"range") {
            ranges += 1;
            first(&mut fields.range, value);
        } else if name.eq_ignore_ascii_case(b"accept-encoding") {
            fields.repeated |= first(&mut fields.accept_encoding, value) * REPEATED_ACCEPT_ENCODING;
        } else if name.eq_ignore_ascii_case(b"accept") {
            fields.repeated |= first(&mut fields.accept, value) * REPEATED_ACCEPT;
        } else if name.eq_ignore_ascii_case(b"referer") {
            first(&mut fields.referer, value);
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            first(&mut fields.user_agent, value);
        } else if name.eq_ignore_ascii_case(b"forwarded") {
            first(&mut fields.forwarded, value);
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            first(&mut fields.x_forwarded_for, value);
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            // RFC 9112 §3.2: a Host with an invalid value is a 400.
            if !is_valid_host(value) {
                return Err(reject(Status::BadRequest, "invalid Host"));
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9112 §6.3: differing or invalid lengths make the framing unknowable. A
            // list of equal values is that value (RFC 9110 §8.6), on one line or several.
            for element in h.value.split(|&b| b == b',') {
                let n = parse_content_length(element)
                    .ok_or(reject(Status::BadRequest, "invalid Content-Length"))?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(reject(Status::BadRequest, "conflicting Content-Length"));
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_codings.add(h.value);
        }
    }
    // RFC 9112 §3.2: a 1.1 request without Host, or any request with several, is a 400.
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(reject(Status::BadRequest, "missing or repeated Host"));
    }
    if transfer_codings.present {
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        if version == Version::Http10 {
            return Err(reject(
                Status::BadRequest,
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        // RFC 9112 §6.3 (3): both together may be a smuggling attempt; the server closes.
        if content_length.is_some() {
            return Err(reject(
                Status::BadRequest,
                "both Transfer-Encoding and Content-Length",
            ));
        }
        // RFC 9112 §6.3 (4): a request whose final coding is not chunked cannot be framed;
        // §7: chunked is applied once.
        if !transfer_codings.chunked_last() {
            return Err(reject(
                Status::BadRequest,
                "chunked is not the final transfer coding",
            ));
        }
        // RFC 9112 §6.1: a server may refuse a chunked body with 411 and close.
        return Err(reject(
            Status::LengthRequired,
            "chunked request bodies are not accepted",
        ));
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > MAX_DISCARDED_BODY_BYTES {
        return Err(reject(Status::ContentTooLarge, "request body too large"));
    }
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive_token && !close,
    };

    if ranges > 1 || if_ranges > 1 {
        fields.range = None;
        fields.if_range = None;
    }
    let (path, query) = match (method, target) {
        // RFC 9112 §3.2.4: the asterisk-form is only for OPTIONS.
        (Method::Options, b"*") => (&b""[..], None),
        // §3.2.3: the authority-form is only for CONNECT (answered 405).
        (Method::Other, _) if req.method == Some("CONNECT") => (&b""[..], None),
        (Method::Options | Method::Other, _) => {
            split_target(target)?;
            (&b""[..], None)
        }
        _ => split_target(target)?,
    };
    Ok(Some(Request {
        method,
        version,
        path,
        query,
        keep_alive,
        head_len,
        body_len,
        fields,
    }))
}

/// Whether a line of the head ends in a bare LF.
///
/// SECURITY: RFC 9112 §2.2 lets a recipient accept a bare LF as a line ending; fserve does
/// not. Behind a proxy that does not read it the same way, a bare LF lets one side see a
/// header line (or a request) the other does not, which is how requests are smuggled; no
/// client but a hand-typed one sends it. A bare LF is a 400 and a closed connection.
fn has_bare_lf(head: &[u8]) -> bool {
    // A head holds one LF per line: find them with a vectorised search, then look behind each.
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

/// The Transfer-Encoding lines of a request, read as one list (RFC 9112 §6.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TransferCodings {
    /// A Transfer-Encoding line was seen.
    present: bool,
    /// How many elements were `chunked`.
    chunked: u8,
    /// The last coding seen was `chunked`.
    last_chunked: bool,
}

impl TransferCodings {
    /// Adds one Transfer-Encoding line (its elements come after those seen so far).
    fn add(&mut self, line: &[u8]) {
        self.present = true;
        for element in line.split(|&b| b == b',') {
            // A coding may carry parameters (`;name=value`); its name is what counts.
            let coding = element
                .split(|&b| b == b';')
                .next()
                .unwrap_or(b"")
                .trim_ascii();
            if coding.is_empty() {
                continue;
            }
            self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            self.chunked = self.chunked.saturating_add(u8::from(self.last_chunked));
        }
    }

    /// `chunked` once, and last: the only framing a request can have with it (§6.3 (4),
    /// §7: chunked is applied once).
    fn chunked_last(self) -> bool {
        self.chunked == 1 && self.last_chunked
    }
}

/// The bytes a reg-name may hold as themselves (RFC 3986 §3.2.2: unreserved and
/// sub-delims), as a table: every request's Host goes through it.
const REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=";
    let mut i = 0;
    while i < others.len() {
        t[others[i] as usize] = true;
        i += 1;
    }
    t
};

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a reg-name (unreserved,
/// pct-encoded, sub-delims), an IPv4 address (a reg-name's characters) or an IP-literal in
/// brackets, then digits after a colon. Empty is valid (§7.2: a target with no authority).
fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(end) => {
                let inside = &value[1..end];
                let ok = !inside.is_empty()
                    && inside
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b":.-_~!$&'()*+,;=".contains(&b));
                if !ok {
                    return false;
                }
                (&b""[..], &value[end + 1..])
            }
            None => return false,
        },
        _ => match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &b""[..]),
        },
    };
    let host_ok = host.iter().enumerate().all(|(i, &b)| {
        REG_NAME[usize::from(b)]
            || (b == b'%'
                && host.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && host.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

/// `HTTP/<digit>.<digit>` where httparse wanted 1.0 or 1.1: a version we do not speak (505)
/// rather than a malformed line (400).
fn looks_like_other_version(buf: &[u8]) -> bool {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // Exactly `method SP target SP version`: anything else is a malformed line (400).
    if line.iter().filter(|&&b| b == b' ').count() != 2 {
        return false;
    }
    let Some(sp) = line.iter().rposition(|&b| b == b' ') else {
        return false;
    };
    match &line[sp + 1..] {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] => {
            major.is_ascii_digit() && minor.is_ascii_digit()
        }
        _ => false,
    }
}

fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Splits an origin-form or absolute-form target (RFC 9112 §3.2.1, §3.2.2) into its path and
/// query. The fragment, never sent by a conforming client, is dropped.
fn split_target(target: &[u8]) -> Result<(&[u8], Option<&[u8]>), Reject> {
    let bad = reject(Status::BadRequest, "invalid request target");
    let path_and_query: &[u8] = if target.first() == Some(&b'/') {
        target
    } else {
        let rest = strip_prefix_ignore_case(target, b"http://")
            .or_else(|| strip_prefix_ignore_case(target, b"https://"))
            .ok_or(bad)?;
        let end = rest
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid; §4.2.4: userinfo
        // is an error (it only serves to mislead).
        let authority = &rest[..end];
        if authority.is_empty()
            || authority.starts_with(b":")
            || authority.contains(&b'@')
            || !is_valid_host(authority)
        {
            return Err(bad);
        }
        match rest.get(end) {
            Some(b'/') => &rest[end..],
            // An empty path means "/" (RFC 9110 §4.2.3); the query is of no use there.
            _ => b"/",
        }
    };
    let end = path_and_query
        .iter()
        .position(|&b| b == b'#')
        .unwrap_or(path_and_query.len());
    let path_and_query = &path_and_query[..end];
    Ok(match path_and_query.iter().position(|&b| b == b'?') {
        Some(q) => (&path_and_query[..q], Some(&path_and_query[q + 1..])),
        None => (path_and_query, None),
    })
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 16 * 1024;

    fn ok(raw: &str) -> Request<'_> {
        match parse(raw.as_bytes(), MAX) {
            Ok(Some(r)) => r,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn status(raw: &[u8]) -> Status {
        match parse(raw, MAX) {
            Err(r) => r.status,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn admits_requests() {
        // (raw, method, version, path, query, keep-alive)
        type Case<'a> = (&'a str, Method, Version, &'a str, Option<&'a str>, bool);
        let cases: &[Case] = &[
            (
                "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Get,
                Version::Http11,
                "/",
                None,
                true,
            ),
            (
                "HEAD /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Head,
                Version::Http11,
                "/x",
                Some("y=1"),
                true,
            ),
            (
                "GET /x HTTP/1.0\r\n\r\n",
                Method::Get,
                Version::Http10,
                "/x",
                None,
                false,
            ),
            (
                "GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                Method::Get,
                Version::Http10,
                "/x",
                None,
                true,
            ),
            (
                "GET /x HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n",
                Method::Get,
                Version::Http11,
                "/x",
                None,
                false,
            ),
            (
                "GET http://example.com/a/b?c HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Get,
                Version::Http11,
                "/a/b",
                Some("c"),
                true,
            ),
            (
                "GET HTTPS://example.com HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Get,
                Version::Http11,
                "/",
                None,
                true,
            ),
            (
                "GET http://example.com?q HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Get,
                Version::Http11,
                "/",
                None,
                true,
            ),
            (
                "POST /x HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Other,
                Version::Http11,
                "",
                None,
                true,
            ),
            (
                "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Options,
                Version::Http11,
                "",
                None,
                true,
            ),
            (
                "get / HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Other,
                Version::Http11,
                "",
                None,
                true,
            ),
        ];
        for &(raw, method, version, path, query, keep_alive) in cases {
            let r = ok(raw);
            assert_eq!(
                (
                    r.method,
                    r.version,
                    r.path,
                    r.query,
                    r.keep_alive,
                    r.head_len
                ),
                (
                    method,
                    version,
                    path.as_bytes(),
                    query.map(str::as_bytes),
                    keep_alive,
                    raw.len()
                ),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        for raw in [
            "",
            "GET",
            "GET / HTTP/1.1\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n",
        ] {
            assert_eq!(parse(raw.as_bytes(), MAX), Ok(None), "{raw:?}");
        }
    }

    #[test]
    fn rejects_bad_heads() {
        let long_target = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(MAX_TARGET_BYTES)
        );
        let long_line = format!("GET /{}", "a".repeat(MAX));
        let big_head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(MAX)
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS)
        );
        let cases: &[(&[u8], Status)] = &[
            (b"GARBAGE\r\n\r\n", Status::BadRequest),
            (b"GET /\r\n\r\n", Status::BadRequest),
            (b"GET / HTTP/1.1\r\nFoo bar\r\n\r\n", Status::BadRequest),
            (b"GET / HTTP/1.1\r\n\r\n", Status::BadRequest),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                Status::BadRequest,
            ),
            (b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", Status::BadRequest),
            (
                b"GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n",
                Status::BadRequest,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
                Status::BadRequest,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Status::BadRequest,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
                Status::BadRequest,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n",
                Status::ContentTooLarge,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                Status::LengthRequired,
            ),
            (
                b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
                Status::HttpVersionNotSupported,
            ),
            (
                b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
                Status::HttpVersionNotSupported,
            ),
            (b"GET / FOO/1.1\r\nHost: a\r\n\r\n", Status::BadRequest),
            (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", Status::BadRequest),
            (b"GE T /a HTTP/1.1\r\nHost: a\r\n\r\n", Status::BadRequest),
            (b"GET /a b HTTP/2.0\r\nHost: a\r\n\r\n", Status::BadRequest),
            (long_target.as_bytes(), Status::UriTooLong),
            (long_line.as_bytes(), Status::UriTooLong),
            (big_head.as_bytes(), Status::RequestHeaderFieldsTooLarge),
            (many.as_bytes(), Status::RequestHeaderFieldsTooLarge),
        ];
        for &(raw, want) in cases {
            assert_eq!(
                status(raw),
                want,
                "{:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(60)])
            );
        }
    }

    #[test]
    fn bodies_within_the_bound_are_discarded() {
        let r = ok("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.body_len, 5);
        let r = ok(
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 65536\r\nContent-Length: 65536\r\n\r\n",
        );
        assert_eq!(r.body_len, MAX_DISCARDED_BODY_BYTES);
    }

    #[test]
    fn captures_selecting_fields() {
        let r = ok(
            "GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\", W/\"y\"\r\nif-modified-since:  Sun, 06 Nov 1994 08:49:37 GMT \r\n\
                    RANGE: bytes=0-1\r\nIf-Range: \"x\"\r\nAccept-Encoding: br, gzip\r\nAccept: text/html\r\nIf-None-Match: \"z\"\r\n\r\n",
        );
        let f = r.fields;
        assert_eq!(f.if_none_match, Some(&b"\"x\", W/\"y\""[..]));
        assert_eq!(
            f.if_modified_since,
            Some(&b"Sun, 06 Nov 1994 08:49:37 GMT"[..])
        );
        assert_eq!(
            (f.range, f.if_range),
            (Some(&b"bytes=0-1"[..]), Some(&b"\"x\""[..]))
        );
        assert_eq!(
            (f.accept_encoding, f.accept),
            (Some(&b"br, gzip"[..]), Some(&b"text/html"[..]))
        );
        assert_eq!((f.if_match, f.if_unmodified_since), (None, None));
        let r = ok("GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\nRange: bytes=5-6\r\n\r\n");
        assert_eq!(r.fields.range, None, "a repeated Range is ignored");
    }

    #[test]
    fn captures_the_fields_the_access_log_reads() {
        let r = ok(
            "GET / HTTP/1.1\r\nHost: a\r\nReferer: https://e.x/\r\nuser-agent:  curl/8 \r\n\
             Forwarded: for=192.0.2.1\r\nX-Forwarded-For: 198.51.100.2, 10.0.0.1\r\nUser-Agent: second\r\n\r\n",
        );
        let f = r.fields;
        assert_eq!(f.referer, Some(&b"https://e.x/"[..]));
        assert_eq!(f.user_agent, Some(&b"curl/8"[..]), "the first line wins");
        assert_eq!(f.forwarded, Some(&b"for=192.0.2.1"[..]));
        assert_eq!(f.x_forwarded_for, Some(&b"198.51.100.2, 10.0.0.1"[..]));
    }

    #[test]
    fn pipelined_heads_report_their_length() {
        let raw = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
        let first = parse(raw, MAX).unwrap().unwrap();
        assert_eq!(first.path, b"/a");
        let second = parse(&raw[first.head_len..], MAX).unwrap().unwrap();
        assert_eq!(second.path, b"/b");
        assert_eq!(first.head_len + second.head_len, raw.len());
    }

    /// RFC 9112 §2–§3, §5, §6, rule by rule: what is refused (each a closing error) and what
    /// is still admitted beside it.
    #[test]
    fn admission_rules() {
        const BAD: Status = Status::BadRequest;
        let refused: &[(&str, &[u8], Status)] = &[
            // §2.2: bare LF (fserve's choice) and bare CR are not line endings.
            ("bare LF, request line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", BAD),
            ("bare LF, field line", b"GET / HTTP/1.1\r\nHost: a\n\r\n", BAD),
            ("bare LF, all lines", b"GET / HTTP/1.1\nHost: a\n\n", BAD),
            ("bare LF, leading empty line", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
            ("bare CR in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", BAD),
            // §2.2: whitespace between the start-line and the first field.
            ("space-led first line", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", BAD),
            // §3: exactly one SP between the parts of the request line.
            ("two spaces", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
            ("tab", b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
            ("trailing space", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", BAD),
            // §2.3: the version is case-sensitive, one digit each side.
            ("lower-case version", b"GET / http/1.1\r\nHost: a\r\n\r\n", BAD),
            ("long version", b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", BAD),
            ("HTTP/0.9", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", Status::HttpVersionNotSupported),
            // §5.1: no whitespace between a field name and its colon.
            ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", BAD),
            ("tab before colon", b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", BAD),
            ("empty field name", b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", BAD),
            // §5.2: obs-fold is refused.
            ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", BAD),
            ("obs-fold, tab", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", BAD),
            // §5.5: NUL in a value.
            ("NUL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", BAD),
            // §3.2: Host.
            ("no Host in 1.1", b"GET / HTTP/1.1\r\n\r\n", BAD),
            ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", BAD),
            ("two Hosts in 1.0", b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", BAD),
            ("Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", BAD),
            ("Host with a path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", BAD),
            ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", BAD),
            ("Host with a bad port", b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", BAD),
            ("Host with two colons", b"GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", BAD),
            ("Host with a bad escape", b"GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", BAD),
            ("unclosed IP-literal", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", BAD),
            ("invalid Host in 1.0", b"GET / HTTP/1.0\r\nHost: a\"b\r\n\r\n", BAD),
            // §3.2: the target's form must fit the method.
            ("asterisk with GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
            ("asterisk with POST", b"POST * HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
            ("authority-form with GET", b"GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
            ("authority-form with OPTIONS", b"OPTIONS a:80 HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
            ("no form at all", b"OPTIONS x HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
            // RFC 9110 §4.2.1, §4.2.4: an http URI has a host and no userinfo.
            ("absolute-form without host", b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
            ("absolute-form, port only", b"GET http://:80/x HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
            ("absolute-form with userinfo", b"GET http://u:p@a/x HTTP/1.1\r\nHost: a\r\n\r\n", BAD),
            // §6.1, §6.3: body framing.
            (
                "Transfer-Encoding and Content-Length",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                BAD,
            ),
            (
                "Content-Length and Transfer-Encoding",
                b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
                BAD,
            ),
            ("chunked not final", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", BAD),
            ("gzip alone", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", BAD),
            ("chunked twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", BAD),
            (
                "chunked, then another line",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
                BAD,
            ),
            ("empty Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", BAD),
            ("Transfer-Encoding in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", BAD),
            ("chunked, well framed", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", Status::LengthRequired),
            ("Content-Length list, unequal", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", BAD),
            ("Content-Length list, empty element", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,\r\n\r\n", BAD),
            ("Content-Length, sign", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", BAD),
            ("Content-Length, empty", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", BAD),
            ("Content-Length, hex", b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\n", BAD),
        ];
        for &(what, raw, want) in refused {
            let got = parse(raw, MAX).map(|r| r.map(|r| r.head_len));
            assert_eq!(got.map_err(|r| r.status), Err(want), "{what}");
        }
        let admitted: &[(&str, &str, Method, &str, u64)] = &[
            // §2.2: empty lines before the request line are ignored.
            (
                "leading CRLF",
                "\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Get,
                "/a",
                0,
            ),
            (
                "leading CRLFs",
                "\r\n\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Get,
                "/a",
                0,
            ),
            (
                "1.0 without Host",
                "GET /a HTTP/1.0\r\n\r\n",
                Method::Get,
                "/a",
                0,
            ),
            (
                "empty Host",
                "GET /a HTTP/1.1\r\nHost:\r\n\r\n",
                Method::Get,
                "/a",
                0,
            ),
            (
                "Host with a port",
                "GET /a HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
                Method::Get,
                "/a",
                0,
            ),
            (
                "IPv6 Host",
                "GET /a HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
                Method::Get,
                "/a",
                0,
            ),
            (
                "IPv4 Host",
                "GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                Method::Get,
                "/a",
                0,
            ),
            (
                "escaped Host",
                "GET /a HTTP/1.1\r\nHost: a%2Db\r\n\r\n",
                Method::Get,
                "/a",
                0,
            ),
            (
                "absolute-form",
                "GET http://a:8080/x?y HTTP/1.1\r\nHost: b\r\n\r\n",
                Method::Get,
                "/x",
                0,
            ),
            (
                "absolute-form, IPv6",
                "GET http://[::1]/x HTTP/1.1\r\nHost: b\r\n\r\n",
                Method::Get,
                "/x",
                0,
            ),
            (
                "asterisk with OPTIONS",
                "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Options,
                "",
                0,
            ),
            (
                "OPTIONS, origin-form",
                "OPTIONS /x HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Options,
                "",
                0,
            ),
            (
                "authority-form with CONNECT",
                "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
                Method::Other,
                "",
                0,
            ),
            (
                "POST, origin-form",
                "POST /x HTTP/1.1\r\nHost: a\r\n\r\n",
                Method::Other,
                "",
                0,
            ),
            (
                "Content-Length list, equal",
                "GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
                Method::Get,
                "/a",
                3,
            ),
            (
                "Content-Length, leading zeros",
                "GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n",
                Method::Get,
                "/a",
                7,
            ),
            (
                "obs-text in a value",
                "GET /a HTTP/1.1\r\nHost: a\r\nX: caf\u{e9}\r\n\r\n",
                Method::Get,
                "/a",
                0,
            ),
        ];
        for &(what, raw, method, path, body_len) in admitted {
            let r = match parse(raw.as_bytes(), MAX) {
                Ok(Some(r)) => r,
                other => panic!("{what}: {other:?}"),
            };
            assert_eq!(
                (r.method, r.path, r.body_len, r.head_len),
                (method, path.as_bytes(), body_len, raw.len()),
                "{what}"
            );
        }
    }

    #[test]
    fn reg_name_table_is_rfc_3986s_set() {
        for b in 0..=255u8 {
            let rfc = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b);
            assert_eq!(REG_NAME[usize::from(b)], rfc, "byte {b:#04x}");
            // (A colon would start a port, which "b" is not.)
            let host = [b'a', b, b'b'];
            assert_eq!(is_valid_host(&host), rfc, "{host:?}");
        }
    }

    #[test]
    fn bare_lf_oracle() {
        let naive = |h: &[u8]| (0..h.len()).any(|i| h[i] == b'\n' && (i == 0 || h[i - 1] != b'\r'));
        let alphabet = b"\r\na";
        for len in 0..7u32 {
            for n in 0..3usize.pow(len) {
                let mut x = n;
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[x % 3];
                        x /= 3;
                        b
                    })
                    .collect();
                assert_eq!(has_bare_lf(&s), naive(&s), "{s:?}");
            }
        }
        // Heads longer than a vector register: a CRLF every 13 bytes, then one bare LF
        // (or a CR turned into something else) at each place in turn.
        for len in [15, 16, 17, 31, 32, 33, 63, 64, 65, 200] {
            let mut head: Vec<u8> = (0..len)
                .map(|i| if i % 13 == 12 { b'\n' } else { b'a' })
                .collect();
            for i in (0..len).filter(|i| i % 13 == 12) {
                head[i - 1] = b'\r';
            }
            assert!(!has_bare_lf(&head), "{len}");
            for at in 0..len {
                let mut h = head.clone();
                h[at] = if h[at] == b'\r' { b'b' } else { b'\n' };
                assert_eq!(has_bare_lf(&h), naive(&h), "{len} {at}");
            }
        }
    }
}
