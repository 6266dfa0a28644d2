//! Response heads (RFC 9112 §4, RFC 9110 §8, §15): written into a buffer the caller owns.
//!
//! A response is written in two parts so that a file's head can be rendered once and cached:
//! the *prefix* ([`write_prefix`]: status line, Server, Date, Connection), which changes with
//! the second and the connection, and the *representation fields* ([`write_file_fields`]:
//! Content-Type, Content-Length, Last-Modified, ETag and the blank line), which change only
//! when the file does.

use std::io::Write;

use super::date::HttpDate;
use super::request::{Request, Version};
use super::status::Status;

/// The Connection field a response carries (RFC 9112 §9.3, §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1 persistent: no field needed.
    Persistent,
    /// HTTP/1.0 persistent: `Connection: keep-alive`.
    KeepAlive,
    /// The server closes after this response: `Connection: close`.
    Close,
}

impl Connection {
    /// What to send for `req`, given whether the server itself wants to close.
    pub fn for_request(req: &Request<'_>, server_closes: bool) -> Connection {
        match (req.keep_alive && !server_closes, req.version) {
            (false, _) => Connection::Close,
            (true, Version::Http11) => Connection::Persistent,
            (true, Version::Http10) => Connection::KeepAlive,
        }
    }

    pub fn closes(self) -> bool {
        self == Connection::Close
    }
}

/// What every response to one request starts with.
#[derive(Clone, Copy, Debug)]
pub struct Common<'a> {
    pub date: &'a HttpDate,
    pub conn: Connection,
    /// Complete header field lines added to every response (`--header`, CORS).
    pub site: &'a [u8],
    /// The response was chosen by the request's Accept field (a listing's HTML or JSON, the
    /// SPA fallback): it says so with `Vary: Accept` (RFC 9110 §12.5.5), so a shared cache
    /// does not hand one client's choice to another.
    pub vary_accept: bool,
}

/// Writes the status line, `Server`, `Date`, where needed `Connection`, and the site's fields.
pub fn write_prefix(out: &mut Vec<u8>, status: Status, c: &Common<'_>) {
    out.extend_from_slice(status.line());
    out.extend_from_slice(b"Server: fserve\r\nDate: ");
    out.extend_from_slice(c.date.as_bytes());
    out.extend_from_slice(match c.conn {
        Connection::Persistent => b"\r\n",
        Connection::KeepAlive => b"\r\nConnection: keep-alive\r\n",
        Connection::Close => b"\r\nConnection: close\r\n",
    });
    out.extend_from_slice(c.site);
    if c.vary_accept {
        out.extend_from_slice(b"Vary: Accept\r\n");
    }
}

/// What a file's response head says about it.
#[derive(Clone, Copy, Debug)]
pub struct FileFields<'a> {
    pub content_type: &'a str,
    pub len: u64,
    /// Last modification, seconds since the Unix epoch.
    pub mtime: i64,
    /// The quoted entity tag ([`write_etag`]).
    pub etag: &'a [u8],
    /// Complete field lines that go with this representation (Cache-Control, Vary,
    /// Content-Encoding).
    pub extra: &'a [u8],
}

/// Writes a 200's representation fields and the blank line that ends the head.
pub fn write_file_fields(out: &mut Vec<u8>, f: &FileFields<'_>) {
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(f.content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    write_decimal(out, f.len);
    write_validators(out, f.mtime, f.etag);
    out.extend_from_slice(b"Accept-Ranges: bytes\r\n");
    out.extend_from_slice(f.extra);
    out.extend_from_slice(b"\r\n");
}

/// `\r\nLast-Modified: …\r\nETag: …\r\n`
fn write_validators(out: &mut Vec<u8>, mtime: i64, etag: &[u8]) {
    out.extend_from_slice(b"\r\nLast-Modified: ");
    out.extend_from_slice(HttpDate::from_unix(mtime).as_bytes());
    out.extend_from_slice(b"\r\nETag: ");
    out.extend_from_slice(etag);
    out.extend_from_slice(b"\r\n");
}

/// Writes a 304's fields (RFC 9110 §15.4.5): the validators and `cache_fields` (the
/// Cache-Control and Vary the 200 would carry); no Content-Length, no body.
pub fn write_not_modified_fields(out: &mut Vec<u8>, mtime: i64, etag: &[u8], cache_fields: &[u8]) {
    out.extend_from_slice(b"ETag: ");
    out.extend_from_slice(etag);
    out.extend_from_slice(b"\r\nLast-Modified: ");
    out.extend_from_slice(HttpDate::from_unix(mtime).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(cache_fields);
    out.extend_from_slice(b"\r\n");
}

/// Writes a single-range 206's fields (RFC 9110 §15.3.7.1) for bytes `first..=last` of a
/// representation of `f.len` bytes.
pub fn write_single_range_fields(out: &mut Vec<u8>, f: &FileFields<'_>, first: u64, last: u64) {
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(f.content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Range: ");
    super::range::write_content_range(out, first, last, f.len);
    out.extend_from_slice(b"\r\nContent-Length: ");
    write_decimal(out, last - first + 1);
    write_validators(out, f.mtime, f.etag);
    out.extend_from_slice(f.extra);
    out.extend_from_slice(b"\r\n");
}

/// Writes a multipart 206's fields (RFC 9110 §15.3.7.2): the body of `body_len` bytes is
/// `multipart/byteranges` with `boundary`.
pub fn write_multipart_fields(
    out: &mut Vec<u8>,
    f: &FileFields<'_>,
    boundary: &[u8],
    body_len: u64,
) {
    out.extend_from_slice(b"Content-Type: multipart/byteranges; boundary=");
    out.extend_from_slice(boundary);
    out.extend_from_slice(b"\r\nContent-Length: ");
    write_decimal(out, body_len);
    write_validators(out, f.mtime, f.etag);
    out.extend_from_slice(f.extra);
    out.extend_from_slice(b"\r\n");
}

/// A strong entity tag in nginx's format, `"<mtime hex>-<length hex>"`, so a cache in front
/// keeps its validators when nginx is swapped for fserve (RFC 9110 §8.8.3). A
/// precompressed representation adds its coding (`"…-br"`), so each encoding has its own.
pub fn write_etag(out: &mut Vec<u8>, mtime: i64, len: u64, coding: Option<&str>) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "\"{:x}-{:x}", mtime.max(0), len);
    if let Some(coding) = coding {
        out.push(b'-');
        out.extend_from_slice(coding.as_bytes());
    }
    out.push(b'"');
}

/// A strong entity tag for a representation held in memory, from [`super::etag::content_hash`]
/// of its bytes: `"<16 hex digits>"`, or `"<16 hex digits>-<coding>"` for a precompressed
/// one (as [`write_etag`] marks its coding), so a release that changes the bytes but not the
/// size or mtime still changes the tag, and replicas with the same bytes agree. Sixteen
/// digits always, so it never looks like nginx's `"mtime-size"`.
pub fn write_content_etag(out: &mut Vec<u8>, hash: u64, coding: Option<&str>) {
    out.push(b'"');
    for shift in (0..16).rev() {
        out.push(HEX_LOWER[((hash >> (shift * 4)) & 15) as usize]);
    }
    if let Some(coding) = coding {
        out.push(b'-');
        out.extend_from_slice(coding.as_bytes());
    }
    out.push(b'"');
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

fn write_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The methods fserve answers (405's Allow, OPTIONS).
pub const ALLOW: &[u8] = b"Allow: GET, HEAD, OPTIONS\r\n";

/// Writes a whole error response: a small HTML page saying the status, with `extra` field
/// lines (e.g. a 416's Content-Range). `head_only` leaves the body out (HEAD) but keeps its
/// Content-Length. A 405 says what is allowed.
pub fn write_error(
    out: &mut Vec<u8>,
    status: Status,
    c: &Common<'_>,
    head_only: bool,
    extra: &[u8],
) {
    write_error_with(out, status, c, head_only, |out| {
        out.extend_from_slice(extra)
    });
}

/// [`write_error`] with the extra field lines written by `fields` (so a 416's
/// Content-Range needs no buffer of its own).
pub fn write_error_with(
    out: &mut Vec<u8>,
    status: Status,
    c: &Common<'_>,
    head_only: bool,
    fields: impl FnOnce(&mut Vec<u8>),
) {
    write_prefix(out, status, c);
    if status == Status::MethodNotAllowed {
        out.extend_from_slice(ALLOW);
    }
    fields(out);
    write_html_body(out, status, head_only, |_| {});
}

/// Writes a 204 answer to OPTIONS (RFC 9110 §9.3.7) with `extra` field lines (CORS).
pub fn write_options(out: &mut Vec<u8>, c: &Common<'_>, extra: &[u8]) {
    write_prefix(out, Status::NoContent, c);
    out.extend_from_slice(ALLOW);
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// Writes a 200 whose body was generated (a directory listing).
pub fn write_generated(
    out: &mut Vec<u8>,
    c: &Common<'_>,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) {
    write_prefix(out, Status::Ok, c);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nCache-Control: no-cache\r\nContent-Length: ");
    write_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Writes a 301 to the directory `segment` + `/` (RFC 9110 §15.4.2), relative to the request
/// (so it works behind any prefix a proxy adds), keeping the query string.
///
/// `segment` is the last path segment exactly as the client sent it, and `query` what
/// followed `?`: request data, so neither is trusted.
///
/// SECURITY: the Location is a safe relative reference (RFC 3986 §4.2): every byte that is
/// not a plain path character (`\`, quotes, spaces, controls, non-ASCII…) is
/// percent-encoded ([`write_location_part`]); it never starts with `//` or `\\` (which URL
/// parsers read as another host) nor with a segment holding `:` (read as a scheme): such a
/// start gets `./`. The HTML body carries the Location HTML-escaped.
pub fn write_directory_redirect(
    out: &mut Vec<u8>,
    segment: &[u8],
    query: Option<&[u8]>,
    c: &Common<'_>,
    head_only: bool,
) {
    write_prefix(out, Status::MovedPermanently, c);
    out.extend_from_slice(b"Location: ");
    let location_start = out.len();
    if segment.is_empty() || segment.contains(&b':') {
        out.extend_from_slice(b"./");
    }
    write_location_part(out, segment, false);
    out.push(b'/');
    if let Some(q) = query {
        out.push(b'?');
        write_location_part(out, q, true);
    }
    let location_end = out.len();
    out.extend_from_slice(b"\r\n");
    write_html_body(out, Status::MovedPermanently, head_only, |out| {
        out.extend_from_slice(b"<p><a href=\"");
        // The Location is plain ASCII; escaping from a copy of its range keeps this
        // allocation-free only in the common case, which is fine for a rare redirect.
        let location = out[location_start..location_end].to_vec();
        escape_html(out, &location);
        out.extend_from_slice(b"\">Moved here</a></p>\n");
    });
}

/// Whether `b` may stand for itself in a Location's path segment (RFC 3986 §3.3 `pchar`
/// without `%`) or, with `in_query`, its query (§3.4, adding `/` and `?`).
fn is_plain_location_byte(b: u8, in_query: bool) -> bool {
    b.is_ascii_alphanumeric()
        || b"-._~!$&'()*+,;=:@".contains(&b)
        || (in_query && (b == b'/' || b == b'?'))
}

/// Copies request bytes into a Location: plain characters and well-formed `%XX` escapes as
/// they are, every other byte (a lone `%` included) percent-encoded.
fn write_location_part(out: &mut Vec<u8>, raw: &[u8], in_query: bool) {
    for (i, &b) in raw.iter().enumerate() {
        let escape = b == b'%'
            && raw.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && raw.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if escape || is_plain_location_byte(b, in_query) {
            out.push(b);
        } else {
            out.push(b'%');
            out.push(HEX_DIGITS[usize::from(b >> 4)]);
            out.push(HEX_DIGITS[usize::from(b & 15)]);
        }
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// Escapes every byte that HTML gives a meaning in text or a quoted attribute.
fn escape_html(out: &mut Vec<u8>, raw: &[u8]) {
    for &b in raw {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            b => out.push(b),
        }
    }
}

/// Writes Content-Type, Content-Length, the blank line and (unless `head_only`) a small HTML
/// page titled with the status, with `extra` written into the page.
fn write_html_body(
    out: &mut Vec<u8>,
    status: Status,
    head_only: bool,
    extra: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(b"Content-Type: text/html; charset=utf-8\r\nContent-Length: ");
    let len_at = out.len();
    out.extend_from_slice(b"\r\n\r\n");
    let body_start = out.len();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><meta charset=\"utf-8\"><title>{code} {reason}</title>\n\
         <h1>{code} {reason}</h1>\n",
        code = status.code(),
        reason = status.reason()
    );
    extra(out);
    out.extend_from_slice(b"<hr><p>fserve</p>\n");
    let body_len = out.len() - body_start;
    if head_only {
        out.truncate(body_start);
    }
    let mut digits = Vec::with_capacity(8);
    write_decimal(&mut digits, body_len as u64);
    out.splice(len_at..len_at, digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    fn date() -> HttpDate {
        HttpDate::from_unix(784_111_777)
    }

    static DATE: std::sync::LazyLock<HttpDate> = std::sync::LazyLock::new(date);

    fn common(conn: Connection) -> Common<'static> {
        Common {
            date: &DATE,
            conn,
            site: b"",
            vary_accept: false,
        }
    }

    #[test]
    fn prefixes() {
        let cases = [
            (Connection::Persistent, ""),
            (Connection::KeepAlive, "Connection: keep-alive\r\n"),
            (Connection::Close, "Connection: close\r\n"),
        ];
        for (conn, field) in cases {
            let mut out = Vec::new();
            let site = b"X-A: 1\r\n";
            write_prefix(
                &mut out,
                Status::Ok,
                &Common {
                    date: &date(),
                    conn,
                    site,
                    vary_accept: false,
                },
            );
            assert_eq!(
                text(&out),
                format!(
                    "HTTP/1.1 200 OK\r\nServer: fserve\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n{field}X-A: 1\r\n"
                )
            );
        }
    }

    #[test]
    fn file_fields() {
        let mut etag = Vec::new();
        write_etag(&mut etag, 0x5f5e_1000, 1234, None);
        assert_eq!(text(&etag), "\"5f5e1000-4d2\"");
        let f = FileFields {
            content_type: "text/html; charset=utf-8",
            len: 1234,
            mtime: 0x5f5e_1000,
            etag: &etag,
            extra: b"Cache-Control: no-cache\r\n",
        };
        let validators =
            "Last-Modified: Sun, 13 Sep 2020 12:26:40 GMT\r\nETag: \"5f5e1000-4d2\"\r\n";
        let mut out = Vec::new();
        write_file_fields(&mut out, &f);
        assert_eq!(
            text(&out),
            format!(
                "Content-Type: text/html; charset=utf-8\r\nContent-Length: 1234\r\n{validators}\
                 Accept-Ranges: bytes\r\nCache-Control: no-cache\r\n\r\n"
            )
        );
        out.clear();
        write_single_range_fields(&mut out, &f, 10, 19);
        assert_eq!(
            text(&out),
            format!(
                "Content-Type: text/html; charset=utf-8\r\nContent-Range: bytes 10-19/1234\r\n\
                 Content-Length: 10\r\n{validators}Cache-Control: no-cache\r\n\r\n"
            )
        );
        out.clear();
        write_not_modified_fields(&mut out, f.mtime, f.etag, f.extra);
        assert_eq!(
            text(&out),
            "ETag: \"5f5e1000-4d2\"\r\nLast-Modified: Sun, 13 Sep 2020 12:26:40 GMT\r\n\
             Cache-Control: no-cache\r\n\r\n"
        );
        etag.clear();
        write_etag(&mut etag, 0, 5, Some("br"));
        assert_eq!(text(&etag), "\"0-5-br\"");
    }

    #[test]
    fn content_etags() {
        let cases: &[(u64, Option<&str>, &str)] = &[
            (0, None, "\"0000000000000000\""),
            (0x2d06_8005_38d3_94c2, None, "\"2d06800538d394c2\""),
            (u64::MAX, Some("br"), "\"ffffffffffffffff-br\""),
            (0xab, Some("zstd"), "\"00000000000000ab-zstd\""),
        ];
        for &(hash, coding, want) in cases {
            let mut out = b"ETag: ".to_vec();
            write_content_etag(&mut out, hash, coding);
            assert_eq!(text(&out), format!("ETag: {want}"));
            // A valid strong tag (RFC 9110 §8.8.3) that matches itself.
            let tag = super::super::etag::EntityTag::parse(&out[6..]).unwrap();
            assert!(!tag.weak && tag.strong_eq(tag));
        }
        // Same size and mtime, different bytes: different tags.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let hash = super::super::etag::content_hash;
        write_content_etag(&mut a, hash(b"v1.0.0"), None);
        write_content_etag(&mut b, hash(b"v1.0.1"), None);
        assert_ne!(a, b);
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 99, 100, 65_535, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(text(&out), n.to_string());
        }
    }

    /// The Content-Length of every error page is the length of its body.
    #[test]
    fn error_pages_are_framed() {
        for status in [
            Status::BadRequest,
            Status::NotFound,
            Status::MethodNotAllowed,
            Status::HttpVersionNotSupported,
        ] {
            let mut full = Vec::new();
            write_error(&mut full, status, &common(Connection::Close), false, b"");
            let s = text(&full);
            let (head, body) = s.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, body.len(), "{s}");
            assert!(body.contains(&status.code().to_string()));
            assert_eq!(
                head.contains("Allow: GET, HEAD, OPTIONS"),
                status == Status::MethodNotAllowed
            );
            let mut head_only = Vec::new();
            write_error(
                &mut head_only,
                status,
                &common(Connection::Close),
                true,
                b"",
            );
            assert_eq!(text(&head_only), format!("{head}\r\n\r\n"));
        }
    }

    #[test]
    fn redirects_are_relative_and_keep_the_query() {
        type Case<'a> = (&'a [u8], Option<&'a [u8]>, &'a str);
        let cases: &[Case] = &[
            (b"docs", None, "docs/"),
            (b"docs", Some(b"a=1&b"), "docs/?a=1&b"),
            (b"a%20b", None, "a%20b/"),
            (b"c:d", None, "./c:d/"),
            // Would read as another host: `\\evil.example\x` is `//evil.example/x` to a
            // browser.
            (b"\\\\evil.example\\x", None, "%5C%5Cevil.example%5Cx/"),
            (b"//evil.example", None, "%2F%2Fevil.example/"),
            (b"", None, ".//"),
            (
                b"a b\"<c>",
                Some(b"q=\"><script>"),
                "a%20b%22%3Cc%3E/?q=%22%3E%3Cscript%3E",
            ),
            (b"100%", Some(b"x=%zz&y=%2F/?"), "100%25/?x=%25zz&y=%2F/?"),
            (b"\xc3\xa9\x00\r\n", Some(b"#"), "%C3%A9%00%0D%0A/?%23"),
        ];
        for &(segment, query, want) in cases {
            let mut out = Vec::new();
            write_directory_redirect(
                &mut out,
                segment,
                query,
                &common(Connection::Persistent),
                false,
            );
            let s = text(&out);
            assert!(s.starts_with("HTTP/1.1 301 Moved Permanently\r\n"), "{s}");
            assert!(s.contains(&format!("\r\nLocation: {want}\r\n")), "{s}");
            let mut escaped = Vec::new();
            escape_html(&mut escaped, want.as_bytes());
            assert!(
                s.contains(&format!("<a href=\"{}\">", text(&escaped))),
                "{s}"
            );
        }
    }

    /// The naive oracle: what a Location may contain, byte by byte.
    fn naive_location_ok(location: &[u8]) -> bool {
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
        let first_segment = location.split(|&b| b == b'/').next().unwrap_or(b"");
        location.iter().all(|&b| plain(b))
            && !location.starts_with(b"//")
            && !first_segment.contains(&b':')
            && location.windows(1).enumerate().all(|(i, _)| {
                location[i] != b'%'
                    || (location.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                        && location.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            })
    }

    /// Every byte string, as a segment or a query, gives a Location the oracle accepts, whose
    /// decoding is the raw input (nothing lost), and an HTML body with no markup from it.
    #[test]
    fn redirects_are_safe_for_any_bytes() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"\\/:%2Fa.<>\"'&? #\x00\x7f\xff";
        for _ in 0..5_000 {
            let len = (next() % 8) as usize;
            let segment: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .filter(|&b| b != b'/')
                .collect();
            let query: Vec<u8> = (0..(next() % 6) as usize)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut out = Vec::new();
            write_directory_redirect(
                &mut out,
                &segment,
                Some(&query),
                &common(Connection::Persistent),
                false,
            );
            let s = text(&out);
            let location = s
                .split("\r\n")
                .find_map(|l| l.strip_prefix("Location: "))
                .unwrap();
            assert!(
                naive_location_ok(location.as_bytes()),
                "{segment:?}: {location}"
            );
            let (path, q) = location.split_once('?').unwrap();
            let plain = decode(&[&segment[..], b"/"].concat());
            let dotted = decode(&[b"./", &segment[..], b"/"].concat());
            let got = decode(path.as_bytes());
            assert!(got == plain || got == dotted, "{segment:?}: {location}");
            assert_eq!(decode(q.as_bytes()), decode(&query));
            let body = s.split_once("\r\n\r\n").unwrap().1;
            let inner = body.split_once("<a href=\"").unwrap().1;
            let inner = inner.split_once("\">Moved here</a>").unwrap().0;
            assert!(!inner.contains(['<', '>', '"']), "{inner}");
        }
    }

    /// Percent-decodes well-formed escapes, leaving anything else as it is.
    fn decode(s: &[u8]) -> Vec<u8> {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            match (
                s[i],
                s.get(i + 1).and_then(|&b| hex(b)),
                s.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (b'%', Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                (b, _, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }
}
