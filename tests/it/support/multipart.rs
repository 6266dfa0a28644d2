//! Multipart/byteranges bodies (RFC 9110 §14.6): a strict parser and the response
//! assertions built on it.

use super::*;

/// One body part of a multipart/byteranges response.
#[derive(Debug, Clone)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The part's Content-Range, which must be a satisfied `bytes a-b/len`.
    pub fn range(&self) -> (u64, u64, u64) {
        let v = self
            .header("Content-Range")
            .unwrap_or_else(|| panic!("part without Content-Range: {:?}", self.headers));
        parse_content_range(v).unwrap_or_else(|| panic!("bad part Content-Range {v:?}"))
    }
}

impl Response {
    /// Assert the exact status line `HTTP/1.1 <code> <RFC 9110 reason>`.
    #[track_caller]
    pub fn assert_line(&self, code: u16) -> &Self {
        assert_eq!(
            self.status_line,
            format!("HTTP/1.1 {code} {}", exact_reason(code)),
            "unexpected status line\n{}",
            self.describe()
        );
        self
    }

    /// Assert a 304 with the validators `etag` and `last_modified`, a Date, no
    /// Content-Length and (as read) no body.
    #[track_caller]
    pub fn assert_not_modified(&self, etag: &str, last_modified: &str) -> &Self {
        self.assert_line(304);
        assert_eq!(
            self.header("ETag"),
            Some(etag),
            "304 ETag\n{}",
            self.describe()
        );
        assert_eq!(
            self.header("Last-Modified"),
            Some(last_modified),
            "304 Last-Modified\n{}",
            self.describe()
        );
        assert!(
            self.header("Date")
                .is_some_and(|d| parse_imf_fixdate(d).is_some()),
            "304 without a valid Date\n{}",
            self.describe()
        );
        assert!(
            self.header("Content-Length").is_none(),
            "304 with a Content-Length\n{}",
            self.describe()
        );
        assert!(self.body.is_empty());
        self
    }

    /// Assert a plain 206 with `Content-Range: bytes first-last/complete`, a
    /// matching Content-Length, and `expected` as the body.
    #[track_caller]
    pub fn assert_partial(&self, first: u64, last: u64, complete: u64, expected: &[u8]) -> &Self {
        self.assert_line(206);
        assert_eq!(
            self.header("Content-Range"),
            Some(format!("bytes {first}-{last}/{complete}").as_str()),
            "Content-Range\n{}",
            self.describe()
        );
        assert_eq!(
            self.header("Content-Length"),
            Some((last - first + 1).to_string().as_str()),
            "206 Content-Length\n{}",
            self.describe()
        );
        assert!(
            !self
                .header("Content-Type")
                .unwrap_or("")
                .starts_with("multipart/"),
            "a single range must not be multipart\n{}",
            self.describe()
        );
        assert_body_eq(&self.body, expected, &format!("206 bytes {first}-{last}"));
        self
    }

    /// Assert a 200 with the whole of `expected` and no Content-Range.
    #[track_caller]
    pub fn assert_whole(&self, expected: &[u8]) -> &Self {
        self.assert_line(200);
        assert!(
            self.header("Content-Range").is_none(),
            "Content-Range on a 200\n{}",
            self.describe()
        );
        assert_eq!(
            self.header("Content-Length"),
            Some(expected.len().to_string().as_str()),
            "200 Content-Length\n{}",
            self.describe()
        );
        assert_body_eq(&self.body, expected, "whole body");
        self
    }

    /// The boundary of a `multipart/byteranges` response.
    #[track_caller]
    pub fn multipart_boundary(&self) -> String {
        let ct = self.expect_header("Content-Type");
        let (kind, params) = ct.split_once(';').unwrap_or((ct, ""));
        assert_eq!(
            kind.trim(),
            "multipart/byteranges",
            "Content-Type\n{}",
            self.describe()
        );
        let boundary = params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("multipart without a boundary\n{}", self.describe()));
        assert!(
            !boundary.is_empty() && boundary.len() <= 70,
            "bad boundary {boundary:?}"
        );
        boundary
    }

    /// Parse a `multipart/byteranges` body (RFC 2046 §5.1.1) into its parts.
    #[track_caller]
    pub fn byteranges(&self) -> Vec<Part> {
        let boundary = self.multipart_boundary();
        parse_multipart(&self.body, &boundary)
            .unwrap_or_else(|e| panic!("bad multipart body: {e}\n{}", self.describe()))
    }
}

/// Parse a multipart body with `boundary`: optional preamble, parts, close
/// delimiter, optional CRLF + epilogue.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let dash = format!("--{boundary}").into_bytes();
    let delim = format!("\r\n--{boundary}").into_bytes();
    // The first dash-boundary: at the very start, or after the preamble's CRLF.
    let mut pos = if body.starts_with(&dash) {
        dash.len()
    } else {
        find(body, &delim).ok_or("no first delimiter")? + delim.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            let after = &rest[2..];
            if !after.is_empty() && !after.starts_with(b"\r\n") {
                return Err(format!(
                    "bytes after the close delimiter: {:?}",
                    String::from_utf8_lossy(after)
                ));
            }
            return if parts.is_empty() {
                Err("no parts".into())
            } else {
                Ok(parts)
            };
        }
        if !rest.starts_with(b"\r\n") {
            return Err(format!("no CRLF after a delimiter at {pos}"));
        }
        pos += 2;
        let head_end = find(&body[pos..], b"\r\n\r\n").ok_or("part head without CRLFCRLF")?;
        let head = std::str::from_utf8(&body[pos..pos + head_end])
            .map_err(|_| "part head is not UTF-8")?;
        let mut headers = Vec::new();
        for line in head.split("\r\n") {
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| format!("bad part header line {line:?}"))?;
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let start = pos + head_end + 4;
        let len = find(&body[start..], &delim).ok_or("part without a following delimiter")?;
        parts.push(Part {
            headers,
            body: body[start..start + len].to_vec(),
        });
        pos = start + len + delim.len();
    }
}

#[test]
fn multipart_parser_accepts_rfc_bodies_and_rejects_bad_ones() {
    let ok = b"\r\n--B1\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\nab\r\n--B1\r\nContent-Range: bytes 5-5/10\r\n\r\nf\r\n--B1--\r\n";
    let parts = parse_multipart(ok, "B1").unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].body, b"ab");
    assert_eq!(parts[0].range(), (0, 1, 10));
    assert_eq!(parts[0].header("content-type"), Some("text/plain"));
    assert_eq!(parts[1].body, b"f");
    assert_eq!(parts[1].range(), (5, 5, 10));
    // Starting with the dash-boundary itself, a preamble, an epilogue.
    assert!(parse_multipart(b"--B1\r\nX: y\r\n\r\nab\r\n--B1--", "B1").is_ok());
    assert!(parse_multipart(b"pre\r\n--B1\r\nX: y\r\n\r\nab\r\n--B1--\r\nepi", "B1").is_ok());
    // Missing close delimiter, garbage after it, wrong boundary, no parts.
    assert!(parse_multipart(b"\r\n--B1\r\nX: y\r\n\r\nab", "B1").is_err());
    assert!(parse_multipart(b"\r\n--B1\r\nX: y\r\n\r\nab\r\n--B1--junk", "B1").is_err());
    assert!(parse_multipart(ok, "B2").is_err());
    assert!(parse_multipart(b"\r\n--B1--\r\n", "B1").is_err());
    assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 99, 1000)));
    assert_eq!(parse_content_range("bytes */1000"), None);
    assert_eq!(etag_of(0x2ebc98a1, 14), "\"2ebc98a1-e\"");
    // Published XXH3-64 of "a"; a short hash keeps its leading zeros.
    assert_eq!(content_etag(b"a"), "\"e6c632b61e964e1f\"");
    assert_eq!(content_etag_coded(b"a", "br"), "\"e6c632b61e964e1f-br\"");
    assert!(content_etag(b"x").len() == 18 && content_etag(b"y").len() == 18);
}
