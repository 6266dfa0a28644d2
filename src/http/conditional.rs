//! Conditional requests (RFC 9110 §13): whether a request's preconditions let it proceed,
//! or answer it with 304 (Not Modified) or 412 (Precondition Failed), and whether an
//! If-Range lets its Range apply.
//!
//! Pure: the validators of the current representation are parameters, no clock is read,
//! nothing allocates. Never sends anything and never evaluates the Range itself (that is
//! [`super::range`]).
//!
//! The caller asks only about a representation that exists and would otherwise be served
//! with a 2xx: §13.2.1 has a server ignore preconditions when the response without them
//! would be anything else (a 404 stays a 404). If a field is sent on several lines, the
//! caller joins them with commas (§5.3) or passes the first.
//!
//! # Malformed fields
//!
//! - An unparseable If-Unmodified-Since or If-Modified-Since is ignored, as §13.1.3 and
//!   §13.1.4 require.
//! - An If-Match or If-None-Match that is not `*` or a list of entity-tags names no tag.
//!   §13.1.1 and §13.1.2 say nothing about invalid values, so the choice fails safe: a bad
//!   If-Match is false (412: never act on a representation the client did not clearly
//!   name); a bad If-None-Match is true-as-in-"none match" (a full 200: a 304 is never sent
//!   on a guess), and, being present, still makes If-Modified-Since ignored. nginx and Go's
//!   `net/http` (Caddy) reach the same statuses for a wholly invalid value. A list is valid
//!   or not as a whole, rather than skipping bad members, because a comma may sit inside a
//!   tag and there is no safe place to resume after an error.

use super::date::HttpDate;
use super::etag::{self, Comparison, EntityTag};

/// The current representation's validators.
#[derive(Clone, Copy, Debug)]
pub struct Validators<'a> {
    /// The strong entity-tag as sent in ETag, quotes included, e.g. `"5f5e1000-4d2"`.
    pub etag: &'a [u8],
    /// Last-Modified, seconds since the Unix epoch.
    pub last_modified: i64,
}

/// The request's precondition fields, as sent (`None`: absent).
#[derive(Clone, Copy, Debug, Default)]
pub struct Preconditions<'a> {
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
    /// Not read by [`evaluate`]: see [`if_range_allows`].
    pub if_range: Option<&'a [u8]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Serve the request (subject to If-Range and Range).
    Proceed,
    /// 304 (Not Modified).
    NotModified,
    /// 412 (Precondition Failed).
    PreconditionFailed,
}

/// Evaluates the preconditions in the order of RFC 9110 §13.2.2, steps 1–4. Step 5
/// (If-Range) belongs to range handling: [`if_range_allows`], asked only when the request
/// has a Range and the outcome here is [`Outcome::Proceed`].
pub fn evaluate(method_is_get_or_head: bool, p: &Preconditions<'_>, v: &Validators<'_>) -> Outcome {
    // Step 1 (§13.1.1): If-Match, strong comparison.
    if let Some(field) = p.if_match {
        if !names(field, v, Comparison::Strong) {
            return Outcome::PreconditionFailed;
        }
    // Step 2 (§13.1.4): If-Unmodified-Since, only without If-Match.
    } else if let Some(date) = p.if_unmodified_since.and_then(HttpDate::parse) {
        if v.last_modified > date {
            return Outcome::PreconditionFailed;
        }
    }
    // Step 3 (§13.1.2): If-None-Match, weak comparison.
    if let Some(field) = p.if_none_match {
        if names(field, v, Comparison::Weak) {
            return if method_is_get_or_head {
                Outcome::NotModified
            } else {
                Outcome::PreconditionFailed
            };
        }
    // Step 4 (§13.1.3): If-Modified-Since, only without If-None-Match and for GET/HEAD.
    // Any date at or after Last-Modified means not modified, not only an exact echo.
    } else if let Some(date) = p.if_modified_since.and_then(HttpDate::parse) {
        if method_is_get_or_head && v.last_modified <= date {
            return Outcome::NotModified;
        }
    }
    Outcome::Proceed
}

/// Whether an If-Range field lets the request's Range apply (RFC 9110 §13.1.5); if not, the
/// Range is ignored and the whole representation is sent with 200.
///
/// An entity-tag must match the current one by strong comparison, so a weak tag never
/// does. A date must equal Last-Modified exactly. §13.1.5 also wants the date to be a strong
/// validator (§8.8.2.2: the file did not change twice within that second); a one-second
/// file time cannot prove that, and the ETag fserve sends is built from the same second and
/// the length, so the date is taken as strong, as nginx and Go do. Anything unparseable is
/// false: sending the whole representation is always correct.
pub fn if_range_allows(if_range: &[u8], v: &Validators<'_>) -> bool {
    let field = if_range.trim_ascii();
    if field.starts_with(b"\"") || field.starts_with(b"W/") {
        match (EntityTag::parse(field), EntityTag::parse(v.etag)) {
            (Some(sent), Some(current)) => sent.strong_eq(current),
            _ => false,
        }
    } else {
        HttpDate::parse(field) == Some(v.last_modified)
    }
}

/// Whether an If-Match / If-None-Match list names the current representation; a malformed
/// list names nothing (see the module doc).
fn names(field: &[u8], v: &Validators<'_>, cmp: Comparison) -> bool {
    let current = EntityTag::parse(v.etag);
    etag::list_matches(field, current, cmp) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::{NotModified as N304, PreconditionFailed as P412, Proceed as Go};

    /// Sun, 13 Sep 2020 12:26:40 GMT
    const MTIME: i64 = 0x5f5e_1000;
    const AT: &str = "Sun, 13 Sep 2020 12:26:40 GMT";
    const BEFORE: &str = "Sun, 13 Sep 2020 12:26:39 GMT";
    const AFTER: &str = "Sun, 13 Sep 2020 12:26:41 GMT";
    const ETAG: &str = "\"5f5e1000-4d2\"";

    fn v() -> Validators<'static> {
        Validators {
            etag: ETAG.as_bytes(),
            last_modified: MTIME,
        }
    }

    /// (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since)
    type Fields<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );

    fn pre<'a>(f: Fields<'a>) -> Preconditions<'a> {
        Preconditions {
            if_match: f.0.map(str::as_bytes),
            if_none_match: f.1.map(str::as_bytes),
            if_modified_since: f.2.map(str::as_bytes),
            if_unmodified_since: f.3.map(str::as_bytes),
            if_range: None,
        }
    }

    #[test]
    fn evaluates_in_rfc_order() {
        let e = Some(ETAG);
        // (fields, outcome for GET/HEAD, outcome for other methods)
        let cases: &[(Fields, Outcome, Outcome)] = &[
            ((None, None, None, None), Go, Go),
            // Step 1: If-Match, strong.
            ((e, None, None, None), Go, Go),
            ((Some("*"), None, None, None), Go, Go),
            ((Some("\"x\", \"5f5e1000-4d2\""), None, None, None), Go, Go),
            ((Some("\"x\""), None, None, None), P412, P412),
            ((Some("W/\"5f5e1000-4d2\""), None, None, None), P412, P412),
            ((Some(""), None, None, None), P412, P412),
            ((Some("5f5e1000-4d2"), None, None, None), P412, P412),
            (
                (Some("\"5f5e1000-4d2\", junk"), None, None, None),
                P412,
                P412,
            ),
            // Step 2: If-Unmodified-Since, ignored when If-Match is present or unparseable.
            ((None, None, None, Some(AT)), Go, Go),
            ((None, None, None, Some(AFTER)), Go, Go),
            ((None, None, None, Some(BEFORE)), P412, P412),
            ((None, None, None, Some("yesterday")), Go, Go),
            ((e, None, None, Some(BEFORE)), Go, Go),
            // Step 3: If-None-Match, weak; 304 for GET/HEAD, 412 otherwise.
            ((None, e, None, None), N304, P412),
            ((None, Some("*"), None, None), N304, P412),
            ((None, Some("W/\"5f5e1000-4d2\""), None, None), N304, P412),
            (
                (None, Some("\"a\",\tW/\"5f5e1000-4d2\" , \"b\""), None, None),
                N304,
                P412,
            ),
            ((None, Some("\"x\""), None, None), Go, Go),
            ((None, Some("5f5e1000-4d2"), None, None), Go, Go),
            ((None, Some("\"5f5e1000-4d2\" junk"), None, None), Go, Go),
            // Step 4: If-Modified-Since, GET/HEAD only, any date at or after Last-Modified.
            ((None, None, Some(AT), None), N304, Go),
            ((None, None, Some(AFTER), None), N304, Go),
            (
                (None, None, Some("Sun, 01 Jan 2090 00:00:00 GMT"), None),
                N304,
                Go,
            ),
            ((None, None, Some(BEFORE), None), Go, Go),
            (
                (None, None, Some("Sunday, 13-Sep-20 12:26:40 GMT"), None),
                N304,
                Go,
            ),
            (
                (None, None, Some("Sun Sep 13 12:26:40 2020"), None),
                N304,
                Go,
            ),
            ((None, None, Some("not a date"), None), Go, Go),
            (
                (None, None, Some("Sun, 13 Sep 2020 12:26:40 GMT, x"), None),
                Go,
                Go,
            ),
            // Precedence: If-None-Match present makes If-Modified-Since ignored...
            ((None, Some("\"x\""), Some(AT), None), Go, Go),
            ((None, Some("junk"), Some(AT), None), Go, Go),
            ((None, e, Some(BEFORE), None), N304, P412),
            // ...and a failing If-Match or If-Unmodified-Since wins over If-None-Match.
            ((Some("\"x\""), e, None, None), P412, P412),
            ((None, e, None, Some(BEFORE)), P412, P412),
            ((Some("\"x\""), None, Some(AT), None), P412, P412),
            ((e, e, None, None), N304, P412),
            ((e, Some("\"x\""), Some(AT), None), Go, Go),
            ((e, None, Some(AT), Some(BEFORE)), N304, Go),
        ];
        for &(fields, get, other) in cases {
            let p = pre(fields);
            assert_eq!(evaluate(true, &p, &v()), get, "GET {fields:?}");
            assert_eq!(evaluate(false, &p, &v()), other, "POST {fields:?}");
        }
    }

    #[test]
    fn if_range() {
        let cases: &[(&str, bool)] = &[
            (ETAG, true),
            (" \"5f5e1000-4d2\" ", true),
            ("W/\"5f5e1000-4d2\"", false),
            ("\"5f5e1000-4d3\"", false),
            ("\"5f5e1000-4d2\", \"x\"", false),
            ("*", false),
            (AT, true),
            ("Sunday, 13-Sep-20 12:26:40 GMT", true),
            (BEFORE, false),
            (AFTER, false),
            ("", false),
            ("garbage", false),
            ("\"unterminated", false),
        ];
        for &(field, want) in cases {
            assert_eq!(if_range_allows(field.as_bytes(), &v()), want, "{field:?}");
        }
    }

    #[test]
    fn a_weak_current_tag_never_passes_if_match_or_if_range() {
        let weak = Validators {
            etag: b"W/\"1\"",
            last_modified: MTIME,
        };
        let p = pre((Some("W/\"1\""), None, None, None));
        assert_eq!(evaluate(true, &p, &weak), P412);
        let p = pre((None, Some("\"1\""), None, None));
        assert_eq!(evaluate(true, &p, &weak), N304);
        assert!(!if_range_allows(b"\"1\"", &weak));
        // A malformed current tag is matched by `*` only.
        let bad = Validators {
            etag: b"1",
            last_modified: MTIME,
        };
        for (field, want) in [("*", Go), ("\"1\"", P412), ("1", P412)] {
            let p = pre((Some(field), None, None, None));
            assert_eq!(evaluate(true, &p, &bad), want, "{field}");
        }
    }
}
