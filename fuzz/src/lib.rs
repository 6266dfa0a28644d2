//! The checks behind each fuzz target: one `pub fn` per target, taking the raw input and
//! panicking when an invariant breaks.
//!
//! Shared by the libFuzzer targets (`fuzz/fuzz_targets/*.rs`, one line each) and by
//! `tests/fuzz_regressions.rs`, which includes this file with `#[path]` and replays the inputs
//! saved under `tests/fuzz-regressions/<target>/` through the same checks, so that a crash
//! once found stays fixed. It uses std, `fserve` and `httparse` (a dependency of both) only,
//! so it compiles in both places.
//!
//! Input formats are chosen so that a saved input reads as text: a selector byte or a first
//! line, then the field value as a client would send it.

use fserve::fs::path::{self, PathError};
use fserve::http::conditional::{self, Outcome, Preconditions, Validators};
use fserve::http::date::HttpDate;
use fserve::http::etag::{self, Comparison, EntityTag};
use fserve::http::negotiate::{self, Coding};
use fserve::http::range::{self, MAX_RANGES, RangeOutcome};
use fserve::http::request::{self, MAX_DISCARDED_BODY_BYTES, MAX_TARGET_BYTES, Method};

/// The `max_head` values the first byte of a `parse_request` input picks with its low three
/// bits, so that `'0'..='7'` pick them in order.
const MAX_HEADS: [usize; 8] = [0, 1, 24, 512, 4096, MAX_TARGET_BYTES, 16 * 1024, usize::MAX];

/// `parse_request`: a selector byte for `max_head` (see [`MAX_HEADS`]), then the receive
/// buffer. An admitted head must be exactly what pipelining drains, must parse the same on
/// its own, and must ask for more, not fail, when cut short.
pub fn parse_request(data: &[u8]) {
    let Some((&selector, buf)) = data.split_first() else {
        return;
    };
    let max_head = MAX_HEADS[usize::from(selector & 7)];
    let Ok(Some(req)) = request::parse(buf, max_head) else {
        return;
    };
    let head_len = req.head_len;
    assert!(0 < head_len && head_len <= buf.len() && head_len <= max_head);
    assert!(
        buf[..head_len].ends_with(b"\n"),
        "a head ends with its blank line"
    );
    assert!(req.body_len <= MAX_DISCARDED_BODY_BYTES);
    match req.method {
        Method::Get | Method::Head => {
            assert!(req.path.starts_with(b"/"), "path {:?}", req.path);
            assert!(!req.path.iter().any(|&b| b == b'?' || b == b'#'));
            assert!(req.query.is_none_or(|q| !q.contains(&b'#')));
        }
        Method::Options | Method::Other => {
            assert!(req.path.is_empty() && req.query.is_none());
        }
    }
    assert_eq!(
        request::parse(&buf[..head_len], max_head),
        Ok(Some(req.clone())),
        "the head alone"
    );
    for cut in [head_len - 1, head_len / 2] {
        assert_eq!(
            request::parse(&buf[..cut], max_head),
            Ok(None),
            "cut at {cut}"
        );
    }
    if req.fields.repeated != 0 {
        let mut fields = req.fields;
        let mut joined = Vec::new();
        request::join_repeated(&buf[..head_len], &mut fields, &mut joined);
        let mut headers = [httparse::EMPTY_HEADER; request::MAX_HEADERS];
        let mut lines = httparse::Request::new(&mut headers);
        assert!(lines.parse(&buf[..head_len]).is_ok());
        let slots = [
            (request::REPEATED_IF_MATCH, "if-match", fields.if_match),
            (
                request::REPEATED_IF_NONE_MATCH,
                "if-none-match",
                fields.if_none_match,
            ),
            (
                request::REPEATED_ACCEPT_ENCODING,
                "accept-encoding",
                fields.accept_encoding,
            ),
            (request::REPEATED_ACCEPT, "accept", fields.accept),
        ];
        for (bit, name, value) in slots {
            if req.fields.repeated & bit != 0 {
                // RFC 9110 §5.3: the joined value holds every line's list elements, in order.
                let value = value.expect("a repeated field stays present");
                let sent = (lines.headers.iter())
                    .filter(|h| h.name.eq_ignore_ascii_case(name))
                    .flat_map(|h| list_elements(h.value));
                assert!(sent.eq(list_elements(value)), "{name}: {value:?}");
            }
        }
    }
}

/// The non-empty elements of a comma-separated list, trimmed.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    (value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
}

/// `normalize_path`: the raw request path. The result must equal a naive decode-then-resolve
/// with a stack, hold the documented shape, be a fixed point (normalising it again, with `%`
/// escaped, changes nothing), and give a `relative` path without a leading `/`.
pub fn normalize_path(raw: &[u8]) {
    let mut out = Vec::new();
    let got = path::normalize(raw, &mut out);
    let want = naive_normalize(raw);
    let (n, (segments, dir)) = match (got, want) {
        (Ok(n), Ok(want)) => (n, want),
        (Err(e), Err(w)) => return assert_eq!(e, w, "{raw:?}"),
        (got, want) => panic!("{raw:?}: normalize {got:?}, naive {want:?}"),
    };
    let mut naive = b"/".to_vec();
    naive.extend(segments.join(&b'/'));
    if dir && !segments.is_empty() {
        naive.push(b'/');
    }
    assert_eq!(out, naive, "{raw:?}");
    assert!(out.starts_with(b"/") && !out.contains(&0));
    assert!(!out.windows(2).any(|w| w == b"//"), "{out:?}");
    assert!(out.split(|&b| b == b'/').all(|s| s != b"." && s != b".."));
    assert_eq!(n.trailing_slash, out.ends_with(b"/"));
    let hidden = (segments.iter().enumerate())
        .any(|(i, s)| s.starts_with(b".") && !(i == 0 && s == b".well-known"));
    assert_eq!(n.hidden, hidden, "{out:?}");

    let mut escaped = Vec::new();
    for &b in &out {
        match b {
            b'%' => escaped.extend_from_slice(b"%25"),
            b => escaped.push(b),
        }
    }
    let mut again = Vec::new();
    assert_eq!(path::normalize(&escaped, &mut again), Ok(n));
    assert_eq!(again, out, "not a fixed point");

    let rel = path::relative(&out);
    assert!(!rel.is_empty() && !rel.starts_with(b"/") && !rel.ends_with(b"/"));
    assert_eq!(rel == b".", out == b"/");
    for name in segments.iter().map(Vec::as_slice).chain([raw]) {
        if path::is_fingerprinted(name) {
            assert!(name.contains(&b'.') && name.iter().any(u8::is_ascii_digit));
        }
    }
}

/// Decodes every `%XX` at once, then resolves `/`-separated segments with a stack: the
/// segments left, and whether the path names a directory; or the error met first.
fn naive_normalize(raw: &[u8]) -> Result<(Vec<Vec<u8>>, bool), PathError> {
    let mut decoded = vec![b'/'];
    let mut i = 0;
    while i < raw.len() {
        let mut b = raw[i];
        if b == b'%' {
            let hex = (raw.get(i + 1..i + 3))
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .ok_or(PathError::BadEscape)?;
            b = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
            i += 2;
        }
        if b == 0 {
            return Err(PathError::Nul);
        }
        decoded.push(b);
        i += 1;
    }
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut last: &[u8] = b"";
    for segment in decoded.split(|&b| b == b'/') {
        last = segment;
        match segment {
            b"" | b"." => {}
            b".." => {
                stack.pop().ok_or(PathError::AboveRoot)?;
            }
            s => stack.push(s.to_vec()),
        }
    }
    let dir = stack.is_empty() || matches!(last, b"" | b"." | b"..");
    Ok((stack, dir))
}

/// The boundary and content type every `range` input is framed with.
const BOUNDARY: [u8; range::BOUNDARY_LEN] = *b"0123456789abcdefghij";
const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// `range`: the representation's length in decimal, a newline, then the Range field value
/// (without a newline, the whole input is the field and its length is the representation's).
/// A satisfiable set must be sorted, disjoint, non-adjacent and within the length; for small
/// lengths the outcome must equal a byte-by-byte bitmap oracle; and `multipart_len` must be
/// the length of the body the write helpers produce.
pub fn range(data: &[u8]) {
    let (len, field) = match data.iter().position(|&b| b == b'\n') {
        Some(nl) => (saturating_decimal(&data[..nl]), &data[nl + 1..]),
        None => (data.len() as u64, data),
    };
    let outcome = range::evaluate(field, len);
    if len <= 512 {
        assert_eq!(
            bitmap(&outcome, len),
            naive_range(field, len),
            "{:?} len={len}",
            String::from_utf8_lossy(field)
        );
    }
    let RangeOutcome::Satisfiable(set) = outcome else {
        return;
    };
    let ranges = set.as_slice();
    assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
    assert!(
        ranges
            .iter()
            .all(|&(first, last)| first <= last && last < len)
    );
    assert!(ranges.windows(2).all(|w| w[0].1 + 1 < w[1].0), "{set:?}");
    let total: u64 = ranges.iter().map(|&(first, last)| last - first + 1).sum();
    assert!(total == set.total_len() && total <= len);

    // Real files are at most i64::MAX bytes (st_size is an off_t); within a few hundred bytes
    // of u64::MAX the framing's own length overflows, which no file can reach.
    if len > i64::MAX as u64 {
        return;
    }
    let mut heads = Vec::new();
    for &(first, last) in ranges {
        range::write_part_head(&mut heads, &BOUNDARY, CONTENT_TYPE, first, last, len);
    }
    range::write_closing(&mut heads, &BOUNDARY);
    assert_eq!(
        range::multipart_len(&set, BOUNDARY.len(), CONTENT_TYPE.len(), len),
        heads.len() as u64 + total,
        "{set:?} len={len}"
    );
}

/// An outcome as the naive oracle states it: `None` for the whole representation (200),
/// `Some(bitmap)` of the selected bytes, all false for 416.
fn bitmap(outcome: &RangeOutcome, len: u64) -> Option<Vec<bool>> {
    let mut selected = vec![false; len as usize];
    match outcome {
        RangeOutcome::Full => return None,
        RangeOutcome::Unsatisfiable => {}
        RangeOutcome::Satisfiable(set) => {
            for &(first, last) in set.as_slice() {
                selected[first as usize..=last as usize].fill(true);
            }
        }
    }
    Some(selected)
}

/// RFC 9110 §14 applied byte by byte, for `len` small enough for a bitmap.
fn naive_range(field: &[u8], len: u64) -> Option<Vec<bool>> {
    let field = field.trim_ascii();
    let eq = field.iter().position(|&b| b == b'=')?;
    let specs: Vec<&[u8]> = field[eq + 1..]
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|s| !s.is_empty())
        .collect();
    if !field[..eq].eq_ignore_ascii_case(b"bytes") || specs.is_empty() || specs.len() > MAX_RANGES {
        return None;
    }
    let mut selected = vec![false; len as usize];
    let mut sum = 0;
    for spec in specs {
        let dash = spec.iter().position(|&b| b == b'-')?;
        let (a, b) = (&spec[..dash], &spec[dash + 1..]);
        let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
        // Positions beyond any bitmap compare as "huge"; only their order matters then.
        let (fa, fb) = (saturating_decimal(a), saturating_decimal(b));
        let picks: Box<dyn Fn(u64) -> bool> = match (a.is_empty(), digits(a), digits(b)) {
            (true, _, true) => Box::new(move |i| i.saturating_add(fb) >= len),
            (false, true, false) if b.is_empty() => Box::new(move |i| i >= fa),
            (false, true, true) if decimal_le(a, b) => Box::new(move |i| fa <= i && i <= fb),
            _ => return None,
        };
        for i in 0..len {
            if picks(i) {
                selected[i as usize] = true;
                sum += 1;
            }
        }
    }
    if selected.contains(&true) && sum > len {
        return None;
    }
    Some(selected)
}

/// `a <= b` for two digit strings of any length.
fn decimal_le(a: &[u8], b: &[u8]) -> bool {
    let strip = |s: &[u8]| s.iter().position(|&d| d != b'0').unwrap_or(s.len());
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    (a.len(), a) <= (b.len(), b)
}

/// The digits of `s` (others skipped) as a number, saturating at `u64::MAX`.
fn saturating_decimal(s: &[u8]) -> u64 {
    s.iter().filter(|b| b.is_ascii_digit()).fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

/// `conditional`: a flags byte, then up to seven lines: If-Match, If-None-Match,
/// If-Modified-Since, If-Unmodified-Since, If-Range, the current ETag, and Last-Modified (Unix
/// seconds, or an HTTP-date). Flag bit 0 is "GET or HEAD"; bits 1..=5 say which of the five
/// fields are present; the rest are ignored, so that a saved input starts with a printable
/// byte: `?` is GET with all five, `>` another method with all five, `'@' + bits` the
/// combinations without If-Range. Evaluation must be deterministic, follow the precedence of
/// RFC 9110 §13.2.2, and never send a 304 on another method.
pub fn conditional(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut lines = rest.split(|&b| b == b'\n');
    let mut field = |bit: u8| {
        let line = lines.next().unwrap_or_default();
        (flags & bit != 0).then_some(line)
    };
    let p = Preconditions {
        if_match: field(2),
        if_none_match: field(4),
        if_modified_since: field(8),
        if_unmodified_since: field(16),
        if_range: field(32),
    };
    let etag = lines.next().unwrap_or(b"\"5f5e1000-4d2\"");
    let mtime = lines.next().unwrap_or_default();
    let last_modified = HttpDate::parse(mtime).unwrap_or_else(|| {
        let n = saturating_decimal(mtime).min(i64::MAX as u64) as i64;
        if mtime.starts_with(b"-") { -n } else { n }
    });
    let v = Validators {
        etag,
        last_modified,
    };
    let get = flags & 1 != 0;
    let outcome = conditional::evaluate(get, &p, &v);
    assert_eq!(
        conditional::evaluate(get, &p, &v),
        outcome,
        "not deterministic"
    );
    let without = |f: &dyn Fn(&mut Preconditions)| {
        let mut q = p;
        f(&mut q);
        conditional::evaluate(get, &q, &v)
    };
    assert_eq!(
        without(&|q| q.if_range = None),
        outcome,
        "If-Range is not step 1-4"
    );
    if !get {
        assert_ne!(outcome, Outcome::NotModified, "304 for GET and HEAD only");
        assert_eq!(without(&|q| q.if_modified_since = None), outcome);
    }
    let none = Preconditions::default();
    assert_eq!(conditional::evaluate(get, &none, &v), Outcome::Proceed);
    // Step 1 decides alone when it fails, and passing it skips step 2; step 3 decides
    // alone when it matches after steps 1-2 let the request proceed, else step 4 is skipped.
    let current = EntityTag::parse(etag);
    if let Some(list) = p.if_match {
        if etag::list_matches(list, current, Comparison::Strong) == Some(true) {
            let rest = without(&|q| {
                q.if_match = None;
                q.if_unmodified_since = None;
            });
            assert_eq!(rest, outcome, "a matching If-Match");
        } else {
            assert_eq!(outcome, Outcome::PreconditionFailed, "a failing If-Match");
        }
    }
    if let Some(list) = p.if_none_match {
        let steps_1_2 = without(&|q| {
            q.if_none_match = None;
            q.if_modified_since = None;
        });
        let matched = etag::list_matches(list, current, Comparison::Weak) == Some(true);
        if matched && steps_1_2 == Outcome::Proceed {
            let want = if get {
                Outcome::NotModified
            } else {
                Outcome::PreconditionFailed
            };
            assert_eq!(outcome, want, "a matching If-None-Match");
        } else {
            assert_eq!(outcome, steps_1_2, "If-None-Match");
        }
    }

    for tag in [p.if_match, p.if_none_match, p.if_range, Some(etag)]
        .into_iter()
        .flatten()
    {
        if let Some(t) = EntityTag::parse(tag) {
            let mut text = if t.weak { b"W/".to_vec() } else { Vec::new() };
            text.extend_from_slice(t.opaque);
            assert_eq!(text, tag, "a tag is all of its text");
            assert!(
                t.opaque.len() >= 2 && t.opaque.starts_with(b"\"") && t.opaque.ends_with(b"\"")
            );
        }
        if etag::list_matches(tag, None, Comparison::Weak) == Some(true) {
            assert_eq!(tag.trim_ascii(), b"*", "only * matches no current tag");
        }
    }
    if let Some(if_range) = p.if_range {
        let allows = conditional::if_range_allows(if_range, &v);
        let trimmed = if_range.trim_ascii();
        if allows {
            let as_tag = EntityTag::parse(trimmed);
            let strong_same = as_tag
                .is_some_and(|t| EntityTag::parse(etag).is_some_and(|c| !t.weak && t.strong_eq(c)));
            let same_date = HttpDate::parse(trimmed) == Some(last_modified);
            assert!(strong_same || same_date, "If-Range {trimmed:?} allowed");
        }
    }
}

/// 9999-12-31T23:59:59Z, the last second `HttpDate::from_unix` formats.
const MAX_SECS: i64 = 253_402_300_799;

/// `http_date`: any bytes, parsed as an HTTP-date; and a second `t`, the input itself if it
/// is a decimal integer, else its first eight bytes little-endian. `parse` must invert
/// `from_unix` for every `t` (clamped to years 1970..=9999), in all three forms; a parsed
/// date must mean the same instant as its IMF-fixdate, which must format back to itself but
/// for the weekday and a leap second (moved by 400-year cycles into `from_unix`'s range).
pub fn http_date(data: &[u8]) {
    if let Some(t) = HttpDate::parse(data) {
        let s = data.trim_ascii();
        let imf: [u8; HttpDate::LEN] = match s[3] {
            b',' => s.try_into().expect("an IMF-fixdate is 29 bytes"),
            _ => as_imf(s).expect("an obsolete date has an IMF-fixdate"),
        };
        assert_eq!(
            HttpDate::parse(&imf),
            Some(t),
            "the same instant as IMF-fixdate"
        );
        // The calendar repeats every 400 years (146,097 days): a date before 1970 moved into
        // what `from_unix` formats must still be valid and format back to itself.
        if &imf[23..25] != b"60" {
            let year = saturating_decimal(&imf[12..16]);
            let eras = 1970u64.saturating_sub(year).div_ceil(400);
            let mut later = imf;
            later[12..16].copy_from_slice(format!("{:04}", year + 400 * eras).as_bytes());
            let t = t + eras as i64 * 146_097 * 86_400;
            assert_eq!(HttpDate::parse(&later), Some(t), "{later:?}");
            assert_eq!(HttpDate::from_unix(t).as_bytes()[3..], later[3..], "{t}");
        }
    }
    let t = std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            let mut le = [0; 8];
            let n = data.len().min(8);
            le[..n].copy_from_slice(&data[..n]);
            i64::from_le_bytes(le)
        });
    let want = t.clamp(0, MAX_SECS);
    let imf = HttpDate::from_unix(t);
    let imf = imf.as_bytes();
    assert_eq!(HttpDate::parse(imf), Some(want), "{t}");
    // "Sun, 06 Nov 1994 08:49:37 GMT" rebuilt as "Sun Nov  6 08:49:37 1994".
    let mut asctime = Vec::new();
    asctime.extend_from_slice(&imf[..3]);
    asctime.push(b' ');
    asctime.extend_from_slice(&imf[8..11]);
    asctime.push(b' ');
    asctime.push(if imf[5] == b'0' { b' ' } else { imf[5] });
    asctime.push(imf[6]);
    asctime.push(b' ');
    asctime.extend_from_slice(&imf[17..25]);
    asctime.push(b' ');
    asctime.extend_from_slice(&imf[12..16]);
    assert_eq!(HttpDate::parse(&asctime), Some(want), "{t}");
    // ... and as "Sunday, 06-Nov-94 08:49:37 GMT" where two digits name the year.
    let year = saturating_decimal(&imf[12..16]);
    if (1970..2070).contains(&year) {
        const LONG: [&[u8]; 7] = [
            b"Monday",
            b"Tuesday",
            b"Wednesday",
            b"Thursday",
            b"Friday",
            b"Saturday",
            b"Sunday",
        ];
        let day = LONG.iter().find(|d| d[..3] == imf[..3]).expect("a weekday");
        let mut rfc850 = day.to_vec();
        rfc850.extend_from_slice(b", ");
        rfc850.extend_from_slice(&imf[5..7]);
        rfc850.push(b'-');
        rfc850.extend_from_slice(&imf[8..11]);
        rfc850.push(b'-');
        rfc850.extend_from_slice(&imf[14..25]);
        rfc850.extend_from_slice(b" GMT");
        assert_eq!(HttpDate::parse(&rfc850), Some(want), "{t}");
    }
}

/// The IMF-fixdate of an asctime (`Sun Nov  6 08:49:37 1994`) or RFC 850 (`Sunday,
/// 06-Nov-94 08:49:37 GMT`) date that `HttpDate::parse` accepted, by moving its fields.
fn as_imf(s: &[u8]) -> Option<[u8; HttpDate::LEN]> {
    let mut imf = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    imf[..3].copy_from_slice(s.get(..3)?);
    if s[3] == b' ' {
        let s: &[u8; 24] = s.try_into().ok()?;
        imf[5] = if s[8] == b' ' { b'0' } else { s[8] };
        imf[6] = s[9];
        imf[8..11].copy_from_slice(&s[4..7]);
        imf[12..16].copy_from_slice(&s[20..24]);
        imf[17..25].copy_from_slice(&s[11..19]);
    } else {
        let comma = s.iter().position(|&b| b == b',')?;
        let rest: &[u8; 24] = s[comma..].try_into().ok()?;
        imf[5..7].copy_from_slice(&rest[2..4]);
        imf[8..11].copy_from_slice(&rest[5..8]);
        imf[12..14].copy_from_slice(if rest[9] >= b'7' { b"19" } else { b"20" });
        imf[14..16].copy_from_slice(&rest[9..11]);
        imf[17..25].copy_from_slice(&rest[12..20]);
    }
    Some(imf)
}

/// `negotiate`: the available codings as a first line of letters (`b` Br, `z` Zstd, `g` Gzip,
/// `i` Identity, others skipped), then the field value, used as both Accept-Encoding and
/// Accept (without a newline: all of `bzg`, and the whole input is the field). `choose` must
/// return an available coding or Identity, the field must name it (or `*`), and it must not
/// change when Identity or a coding not chosen is added or removed.
pub fn negotiate(data: &[u8]) {
    let (letters, field) = match data.iter().position(|&b| b == b'\n') {
        Some(nl) => (&data[..nl], &data[nl + 1..]),
        None => (&b"bzg"[..], data),
    };
    let available: Vec<Coding> = (letters.iter())
        .filter_map(|&l| match l {
            b'b' => Some(Coding::Br),
            b'z' => Some(Coding::Zstd),
            b'g' => Some(Coding::Gzip),
            b'i' => Some(Coding::Identity),
            _ => None,
        })
        .collect();
    assert_eq!(negotiate::choose(None, &available), Coding::Identity);
    let chosen = negotiate::choose(Some(field), &available);
    assert!(chosen == Coding::Identity || available.contains(&chosen));
    assert_eq!(negotiate::choose(Some(field), &available), chosen);
    if chosen != Coding::Identity {
        let lower = field.to_ascii_lowercase();
        let names = |t: &[u8]| lower.windows(t.len()).any(|w| w == t);
        assert!(
            names(chosen.token().as_bytes()) || names(b"*"),
            "{chosen:?}"
        );
    }
    for &other in &available {
        let pair = [chosen, other];
        assert_eq!(
            negotiate::choose(Some(field), &pair),
            chosen,
            "first on a tie"
        );
    }
    let mut with_identity = available.clone();
    with_identity.push(Coding::Identity);
    assert_eq!(negotiate::choose(Some(field), &with_identity), chosen);
    for i in 0..available.len() {
        if available[i] != chosen {
            let mut fewer = available.clone();
            fewer.remove(i);
            assert_eq!(
                negotiate::choose(Some(field), &fewer),
                chosen,
                "without {i}"
            );
        }
    }

    assert!(negotiate::accepts_html(None));
    let html = negotiate::accepts_html(Some(field));
    assert_eq!(negotiate::accepts_html(Some(field)), html);
    if !field.iter().any(|&b| b == b'"' || b == b'\\') {
        let mut more = field.to_vec();
        more.extend_from_slice(b", text/html");
        assert!(
            negotiate::accepts_html(Some(&more)),
            "text/html is the most specific"
        );
    }
}

/// Lengths the first byte of a `compose` input picks with bits 1..=3.
const COMPOSE_LENS: [u64; 8] = [0, 1, 2, 9, 100, 1000, 4096, 65_537];

/// `compose`: a selector byte (bit 0: the 200 page or the 404 page; bits 1..=3: the file's
/// length, see [`COMPOSE_LENS`]; bit 4: shutting down), then a request head. For an
/// admitted head, the response composed over a body held in memory and over one held open
/// must be the same bytes; every segment must lie within its source; the body after the
/// blank line must be as long as Content-Length says (304 and HEAD send none).
pub fn compose(data: &[u8]) {
    use fserve::http::Status;
    use fserve::http::response;
    use fserve::server::compose::{self, Context, FileBody, Representation, Segment, Segments};

    let Some((&selector, raw)) = data.split_first() else {
        return;
    };
    let Ok(Some(req)) = request::parse(raw, 16 * 1024) else {
        return;
    };
    let status = if selector & 1 == 0 {
        Status::Ok
    } else {
        Status::NotFound
    };
    let len = COMPOSE_LENS[usize::from((selector >> 1) & 7)];
    let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let rep = Representation {
        content_type: "text/plain".into(),
        len,
        mtime: 1_700_000_000,
        etag: b"\"6553f100-9\"".as_slice().into(),
        cache_fields: b"".as_slice().into(),
        fields: b"".as_slice().into(),
    };
    let mut disk = Vec::new();
    response::write_file_fields(&mut disk, &rep.file_fields());
    let mut mem = disk.clone();
    mem.extend_from_slice(&content);
    let date = HttpDate::from_unix(1_800_000_000);
    let boundary = || *b"0123456789abcdefghij";
    let ctx = Context {
        date: &date,
        site: b"",
        stopping: selector & 16 != 0,
        cors: false,
        vary_accept: false,
        boundary: &boundary,
    };
    let mut sent = Vec::new();
    let mut facts = Vec::new();
    for (bytes, on_disk, apart) in [
        (&mem, false, false),
        (&disk, true, false),
        (&disk, false, true),
    ] {
        let reply = compose::Reply::File {
            status,
            file: FileBody {
                rep: &rep,
                bytes,
                head_len: disk.len(),
                from_file: on_disk,
                body: apart.then_some(&content[..]),
            },
        };
        let mut out = Vec::new();
        let mut segs = Segments::new();
        let done = compose::compose(&req, &reply, &ctx, &mut out, &mut segs);
        assert!(segs.as_slice().len() <= compose::MAX_SEGMENTS);
        let mut whole = Vec::new();
        for seg in segs.as_slice() {
            match seg.clone() {
                Segment::Own(r) => whole.extend_from_slice(&out[r]),
                Segment::Shared(r) => {
                    assert!(
                        !on_disk || r.end <= disk.len(),
                        "shared bytes past the fields"
                    );
                    whole.extend_from_slice(&bytes[r]);
                }
                Segment::Body(r) => {
                    assert!(apart, "a body segment for a body not held apart");
                    whole.extend_from_slice(&content[r]);
                }
                Segment::File { offset, len: n } => {
                    assert!(on_disk, "a file segment for a body in memory");
                    let end = offset.checked_add(n).expect("no overflow");
                    assert!(end <= len, "file segment {offset}+{n} past {len}");
                    whole.extend_from_slice(&content[offset as usize..end as usize]);
                }
            }
        }
        sent.push(whole);
        facts.push(done);
    }
    assert_eq!(sent[0], sent[1], "memory and disk differ");
    assert_eq!(sent[0], sent[2], "memory and a body held apart differ");
    assert_eq!(facts[0], facts[1]);
    assert_eq!(facts[0], facts[2]);
    let whole = &sent[0];
    let blank = whole
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head ends with a blank line");
    let (head, body) = (&whole[..blank + 4], &whole[blank + 4..]);
    assert_eq!(facts[0].body_bytes, body.len() as u64);
    let head = String::from_utf8_lossy(head);
    let declared = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map(|v| v.parse::<usize>().expect("a decimal Content-Length"));
    match (facts[0].status, req.method) {
        (Status::NotModified, _) => assert!(declared.is_none() && body.is_empty()),
        (_, Method::Head) => assert!(body.is_empty() && declared.is_some()),
        _ => assert_eq!(declared, Some(body.len()), "{head}"),
    }
    assert_eq!(facts[0].close, head.contains("\r\nConnection: close\r\n"));
}
