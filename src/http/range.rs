//! Range requests (RFC 9110 §14): evaluating a `Range: bytes=…` field against a length,
//! writing Content-Range values (§14.4), and framing multipart/byteranges bodies (§14.6).
//!
//! Pure: a [`RangeSet`] is a fixed array, so evaluating allocates nothing; writers append to
//! a buffer the caller owns. Never reads files or decides If-Range (that is
//! [`super::conditional::if_range_allows`]). Range applies to GET only (§14.2): the caller
//! does not ask for HEAD or any other method.
//!
//! Pipeline of [`evaluate`]:
//! 1. A unit other than `bytes`, or any syntax error: ignore the field, 200 (§14.2 lets a
//!    server ignore an invalid Range; `first > last` makes the whole field invalid,
//!    §14.1.1).
//! 2. More than [`MAX_RANGES`] ranges: ignore the field, 200.
//! 3. Resolve each range against the length: `last ≥ len` is clamped to `len - 1`; a range
//!    starting at or after `len`, and the suffix `-0`, select nothing (§14.1.1).
//! 4. Nothing selected: 416. An empty representation has no satisfiable range, as no
//!    Content-Range can describe zero bytes.
//! 5. The selected lengths summing to more than `len`: ignore the field, 200 (§14.2,
//!    §17.15).
//! 6. Sort, and coalesce overlapping and adjacent ranges, then 206. §15.3.7.2 allows
//!    coalescing, but says a server SHOULD send the parts in the order the client asked for
//!    them; fserve sends them in file order instead, so that reads are sequential and a set
//!    is easy to check. Clients MUST read each part's Content-Range and "cannot rely on
//!    receiving ... the same order that it requested" (§15.3.7.2), and §14.2 treats many
//!    ranges out of order as a sign of attack.

use std::io::Write;

/// Most ranges honoured in one field; more and the field is ignored (a 200).
pub const MAX_RANGES: usize = 16;

/// Length of a [`boundary`].
pub const BOUNDARY_LEN: usize = 20;

/// Sorted, disjoint, non-adjacent, non-empty byte ranges `(first, last)`, both inclusive and
/// within the representation.
#[derive(Clone, Copy)]
pub struct RangeSet {
    ranges: [(u64, u64); MAX_RANGES],
    count: usize,
}

impl RangeSet {
    pub fn as_slice(&self) -> &[(u64, u64)] {
        &self.ranges[..self.count]
    }

    /// Number of ranges, at least one: one means a plain 206, more a multipart one.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false for a set from [`evaluate`].
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Selected bytes in all.
    pub fn total_len(&self) -> u64 {
        self.as_slice()
            .iter()
            .map(|&(first, last)| last - first + 1)
            .sum()
    }

    /// Sorts `ranges[..count]` and merges the ranges that overlap or touch.
    fn coalesced(mut ranges: [(u64, u64); MAX_RANGES], count: usize) -> RangeSet {
        ranges[..count].sort_unstable();
        let mut merged = 0;
        for i in 0..count {
            let (first, last) = ranges[i];
            // `last < len ≤ u64::MAX`, so `+ 1` cannot overflow.
            if merged > 0 && first <= ranges[merged - 1].1 + 1 {
                let prev = &mut ranges[merged - 1].1;
                *prev = (*prev).max(last);
            } else {
                ranges[merged] = (first, last);
                merged += 1;
            }
        }
        RangeSet {
            ranges,
            count: merged,
        }
    }
}

/// Equal when the ranges are; the unused slots do not count.
impl PartialEq for RangeSet {
    fn eq(&self, other: &RangeSet) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for RangeSet {}

impl std::fmt::Debug for RangeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

// The set is a fixed array so that evaluating never allocates; 264 bytes returned once per
// request is cheaper than a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Ignore the Range field: 200 with the whole representation.
    Full,
    /// 206 (Partial Content) with these ranges.
    Satisfiable(RangeSet),
    /// 416 (Range Not Satisfiable), with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Evaluates a Range field value against a representation of `len` bytes (RFC 9110 §14.2),
/// following the pipeline in the module doc.
pub fn evaluate(range_header: &[u8], len: u64) -> RangeOutcome {
    let field = range_header.trim_ascii();
    let Some(eq) = field.iter().position(|&b| b == b'=') else {
        return RangeOutcome::Full;
    };
    // §14.1: range units are case-insensitive; `ranges-specifier` has no OWS around `=`.
    if !field[..eq].eq_ignore_ascii_case(b"bytes") {
        return RangeOutcome::Full;
    }
    let mut selected = [(0, 0); MAX_RANGES];
    let (mut specs, mut count, mut sum) = (0, 0, 0u64);
    // A range-spec holds no comma, so the list splits on every one (§5.6.1).
    for spec in field[eq + 1..].split(|&b| b == b',') {
        let spec = spec.trim_ascii();
        if spec.is_empty() {
            continue;
        }
        specs += 1;
        if specs > MAX_RANGES {
            return RangeOutcome::Full;
        }
        let Some(spec) = Spec::parse(spec) else {
            return RangeOutcome::Full;
        };
        if let Some((first, last)) = spec.resolve(len) {
            selected[count] = (first, last);
            count += 1;
            sum = sum.saturating_add(last - first + 1);
        }
    }
    if specs == 0 {
        // `1#range-spec`: at least one is required.
        return RangeOutcome::Full;
    }
    if count == 0 {
        return RangeOutcome::Unsatisfiable;
    }
    // SECURITY: many overlapping ranges (`0-,0-,0-…`) would make the response several times
    // the file; past the file's own length the client gets the file once, with 200 (§17.15).
    if sum > len {
        return RangeOutcome::Full;
    }
    RangeOutcome::Satisfiable(RangeSet::coalesced(selected, count))
}

/// One `range-spec` of the bytes unit (§14.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-last` or the open-ended `first-` (`last: None`).
    From { first: u64, last: Option<u64> },
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

impl Spec {
    /// Parses a range-spec; `None` for a syntax error or `first > last` (an invalid range).
    fn parse(spec: &[u8]) -> Option<Spec> {
        let dash = spec.iter().position(|&b| b == b'-')?;
        let (first, last) = (&spec[..dash], &spec[dash + 1..]);
        if first.is_empty() {
            return Some(Spec::Suffix(number(last)?));
        }
        let first_n = number(first)?;
        if last.is_empty() {
            return Some(Spec::From {
                first: first_n,
                last: None,
            });
        }
        let last_n = number(last)?;
        // Compared as decimals: both may have saturated.
        if decimal_cmp(first, last).is_gt() {
            return None;
        }
        Some(Spec::From {
            first: first_n,
            last: Some(last_n),
        })
    }

    /// The inclusive bytes this spec selects from `len`, if any (§14.1.1 satisfiability).
    fn resolve(self, len: u64) -> Option<(u64, u64)> {
        match self {
            Spec::From { first, last } => {
                (first < len).then(|| (first, last.unwrap_or(u64::MAX).min(len - 1)))
            }
            Spec::Suffix(n) => (n > 0 && len > 0).then(|| (len - n.min(len), len - 1)),
        }
    }
}

/// `1*DIGIT`, saturating at `u64::MAX`: a position past any length means the same as one
/// just past this one.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Compares two digit strings as numbers, whatever their size.
fn decimal_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&d| d == b'0').count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Writes a satisfied Content-Range value, `bytes first-last/len` (§14.4).
pub fn write_content_range(out: &mut Vec<u8>, start: u64, end: u64, len: u64) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "bytes {start}-{end}/{len}");
}

/// Writes the Content-Range value of a 416, `bytes */len` (§14.4, §15.5.17).
pub fn write_unsatisfied_range(out: &mut Vec<u8>, len: u64) {
    let _ = write!(out, "bytes */{len}");
}

const DELIMITER: &[u8] = b"\r\n--";
const PART_CONTENT_TYPE: &[u8] = b"\r\nContent-Type: ";
const PART_CONTENT_RANGE: &[u8] = b"\r\nContent-Range: ";
const PART_HEAD_END: &[u8] = b"\r\n\r\n";
const CLOSE: &[u8] = b"--\r\n";

/// A multipart boundary (RFC 2046 §5.1.1) of [`BOUNDARY_LEN`] characters from `[0-9a-v]`,
/// drawn deterministically from `seed` (SplitMix64).
///
/// SECURITY: a boundary must not occur in a part's content, and a served file may be
/// written by someone who wants to forge parts. The function is not a keyed hash and can
/// be inverted, so the caller gives each response a seed that earlier boundaries do not
/// reveal: fresh randomness, or a counter hashed with a secret key (`std::hash::RandomState`).
pub fn boundary(seed: u64) -> [u8; BOUNDARY_LEN] {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut state = seed;
    let mut bits = 0;
    let mut out = [0; BOUNDARY_LEN];
    for (i, b) in out.iter_mut().enumerate() {
        // Ten 5-bit characters from each 64-bit output.
        if i % 10 == 0 {
            bits = splitmix64(&mut state);
        }
        *b = ALPHABET[(bits & 31) as usize];
        bits >>= 5;
    }
    out
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes the delimiter and header fields that precede one part of a multipart/byteranges
/// body (§14.6, §15.3.7.2): `CRLF --boundary CRLF Content-Type: … CRLF Content-Range: … CRLF CRLF`.
///
/// The first part starts with CRLF too: before the first delimiter that is an empty
/// preamble (RFC 2046 §5.1.1), so every part can be written the same way.
pub fn write_part_head(
    out: &mut Vec<u8>,
    boundary: &[u8],
    content_type: &str,
    start: u64,
    end: u64,
    len: u64,
) {
    out.extend_from_slice(DELIMITER);
    out.extend_from_slice(boundary);
    out.extend_from_slice(PART_CONTENT_TYPE);
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(PART_CONTENT_RANGE);
    write_content_range(out, start, end, len);
    out.extend_from_slice(PART_HEAD_END);
}

/// Writes the close delimiter that ends a multipart body: `CRLF --boundary-- CRLF`.
pub fn write_closing(out: &mut Vec<u8>, boundary: &[u8]) {
    out.extend_from_slice(DELIMITER);
    out.extend_from_slice(boundary);
    out.extend_from_slice(CLOSE);
}

/// The exact length of the multipart/byteranges body that [`write_part_head`], the parts'
/// bytes and [`write_closing`] produce for `set`, for Content-Length before any is written.
pub fn multipart_len(
    set: &RangeSet,
    boundary_len: usize,
    content_type_len: usize,
    len: u64,
) -> u64 {
    let fixed = DELIMITER.len()
        + boundary_len
        + PART_CONTENT_TYPE.len()
        + content_type_len
        + PART_CONTENT_RANGE.len()
        + b"bytes -/".len()
        + PART_HEAD_END.len();
    // Saturating: a length near u64::MAX cannot come from a file (st_size is an i64), but
    // the arithmetic must not overflow on any input.
    let parts = set.as_slice().iter().fold(0u64, |total, &(first, last)| {
        let part = (fixed as u64 + digits(first) + digits(last) + digits(len))
            .saturating_add(last - first + 1);
        total.saturating_add(part)
    });
    parts.saturating_add((DELIMITER.len() + boundary_len + CLOSE.len()) as u64)
}

/// Decimal digits in `n`.
fn digits(n: u64) -> u64 {
    u64::from(n.checked_ilog10().unwrap_or(0) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeOutcome::{Full, Unsatisfiable};

    fn sat(ranges: &[(u64, u64)]) -> RangeOutcome {
        let mut set = [(0, 0); MAX_RANGES];
        set[..ranges.len()].copy_from_slice(ranges);
        RangeOutcome::Satisfiable(RangeSet {
            ranges: set,
            count: ranges.len(),
        })
    }

    #[test]
    fn evaluates_ranges() {
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        let most = format!(
            "bytes={}",
            (0..MAX_RANGES)
                .map(|i| format!("{}-{}", 2 * i, 2 * i))
                .collect::<Vec<_>>()
                .join(",")
        );
        let most_want: Vec<(u64, u64)> = (0..MAX_RANGES as u64).map(|i| (2 * i, 2 * i)).collect();
        let cases: &[(&str, u64, RangeOutcome)] = &[
            ("bytes=0-499", 1000, sat(&[(0, 499)])),
            ("bytes=500-999", 1000, sat(&[(500, 999)])),
            ("bytes=500-", 1000, sat(&[(500, 999)])),
            ("bytes=-500", 1000, sat(&[(500, 999)])),
            ("bytes=-5000", 1000, sat(&[(0, 999)])),
            ("bytes=0-0", 1, sat(&[(0, 0)])),
            ("bytes=0-", 1, sat(&[(0, 0)])),
            ("bytes=9999-", 1000, Unsatisfiable),
            ("bytes=999-", 1000, sat(&[(999, 999)])),
            ("bytes=900-5000", 1000, sat(&[(900, 999)])),
            ("bytes=0-18446744073709551615", 10, sat(&[(0, 9)])),
            ("bytes=0-99999999999999999999999", 10, sat(&[(0, 9)])),
            ("bytes=-99999999999999999999999", 10, sat(&[(0, 9)])),
            ("bytes=99999999999999999999999-", 10, Unsatisfiable),
            ("bytes=00005-0009", 10, sat(&[(5, 9)])),
            // Unit and syntax.
            ("BYTES=0-1", 10, sat(&[(0, 1)])),
            ("Bytes=0-1", 10, sat(&[(0, 1)])),
            ("items=0-1", 10, Full),
            ("bytes 0-1", 10, Full),
            ("bytes =0-1", 10, Full),
            ("bytes= 0-1", 10, sat(&[(0, 1)])),
            ("bytes=", 10, Full),
            ("bytes=,", 10, Full),
            ("bytes=-", 10, Full),
            ("bytes=1", 10, Full),
            ("bytes=a-b", 10, Full),
            ("bytes=1-2-3", 10, Full),
            ("bytes=0 -1", 10, Full),
            ("bytes=+1-2", 10, Full),
            ("bytes=0-1;x", 10, Full),
            ("bytes=0-1, junk", 10, Full),
            ("", 10, Full),
            // Invalid (first > last) anywhere ignores the whole field, even when unsatisfiable.
            ("bytes=5-4", 10, Full),
            ("bytes=0-1,5-4", 10, Full),
            (
                "bytes=99999999999999999999999-99999999999999999999998",
                10,
                Full,
            ),
            ("bytes=20-10", 5, Full),
            // Suffixes and satisfiability.
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=-0,0-0", 10, sat(&[(0, 0)])),
            ("bytes=10-,20-30", 10, Unsatisfiable),
            ("bytes=10-,2-3", 10, sat(&[(2, 3)])),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            ("bytes=0-0,-5", 0, Unsatisfiable),
            ("bytes=5-4", 0, Full),
            // Lists: whitespace, empty elements, sorting, coalescing.
            ("bytes=0-1, 4-5", 10, sat(&[(0, 1), (4, 5)])),
            ("bytes=4-5,0-1", 10, sat(&[(0, 1), (4, 5)])),
            ("bytes=0-1,2-3", 10, sat(&[(0, 3)])),
            ("bytes=2-3,0-2", 10, sat(&[(0, 3)])),
            ("bytes=0-4,2-3", 10, sat(&[(0, 4)])),
            ("bytes=0-0,-1", 10, sat(&[(0, 0), (9, 9)])),
            ("bytes= ,0-1,\t,4-5 , ", 10, sat(&[(0, 1), (4, 5)])),
            // Amplification: more bytes than the file is ignored.
            ("bytes=0-,0-", 10, Full),
            ("bytes=0-5,5-9", 10, Full),
            ("bytes=0-4,5-9", 10, sat(&[(0, 9)])),
            ("bytes=-6,0-4", 10, Full),
            // Counting.
            (many.as_str(), 100, Full),
            (most.as_str(), 100, sat(&most_want)),
        ];
        for (raw, len, want) in cases {
            assert_eq!(evaluate(raw.as_bytes(), *len), *want, "{raw:?} len={len}");
        }
    }

    #[test]
    fn content_range_values() {
        let mut out = Vec::new();
        write_content_range(&mut out, 0, 499, 1234);
        out.push(b' ');
        write_unsatisfied_range(&mut out, 1234);
        out.push(b' ');
        write_content_range(&mut out, u64::MAX - 1, u64::MAX - 1, u64::MAX);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "bytes 0-499/1234 bytes */1234 bytes 18446744073709551614-18446744073709551614/18446744073709551615"
        );
    }

    #[test]
    fn boundaries_are_deterministic_and_valid() {
        assert_eq!(boundary(7), boundary(7));
        assert_ne!(boundary(7), boundary(8));
        let mut seen = std::collections::HashSet::new();
        for seed in 0..10_000 {
            let b = boundary(seed);
            assert!(
                b.iter()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'v').contains(c))
            );
            assert!(seen.insert(b), "seed {seed}");
        }
    }

    #[test]
    fn part_heads() {
        let mut out = Vec::new();
        write_part_head(&mut out, b"B", "text/plain", 0, 4, 10);
        write_closing(&mut out, b"B");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-4/10\r\n\r\n\r\n--B--\r\n"
        );
    }

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }
    }

    /// A random Range field: mostly well-formed specs with small numbers, sometimes junk.
    fn random_field(rng: &mut Rng) -> String {
        let unit = match rng.below(16) {
            0 => rng.pick(&["BYTES", "items", "bytes ", ""]),
            _ => "bytes",
        };
        let mut field = format!("{unit}=");
        let specs = match rng.below(8) {
            0 => rng.below(20),
            _ => 1 + rng.below(4),
        };
        for i in 0..specs {
            if i > 0 {
                field.push_str(rng.pick(&[",", ", ", " ,", ",\t", ", ,"]));
            }
            let (a, b) = (rng.below(24), rng.below(24));
            let spec = match rng.below(32) {
                0..=7 => format!("{a}-{b}"),
                8..=13 => format!("{}-{}", a.min(b), a.max(b)),
                14..=19 => format!("{a}-"),
                20..=25 => format!("-{b}"),
                26..=28 => format!("0{a}-00{b}"),
                _ => rng.pick(&["", "-", "x", "1-2-3", "1 -2", "-0"]).to_string(),
            };
            field.push_str(&spec);
        }
        field
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Naive {
        Full,
        Unsatisfiable,
        Satisfiable(Vec<bool>),
    }

    /// The RFC's rules applied byte by byte, with strings and a bitmap.
    fn naive(field: &str, len: u64) -> Naive {
        let Some((unit, set)) = field.trim_matches([' ', '\t']).split_once('=') else {
            return Naive::Full;
        };
        let specs: Vec<&str> = set
            .split(',')
            .map(|s| s.trim_matches([' ', '\t']))
            .filter(|s| !s.is_empty())
            .collect();
        if !unit.eq_ignore_ascii_case("bytes") || specs.is_empty() || specs.len() > MAX_RANGES {
            return Naive::Full;
        }
        let num = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().unwrap())
        };
        let mut selected = vec![false; len as usize];
        let mut sum = 0;
        for spec in specs {
            let Some((a, b)) = spec.split_once('-') else {
                return Naive::Full;
            };
            let picks: Box<dyn Fn(u64) -> bool> = match (a.is_empty(), num(a), num(b)) {
                (true, _, Some(n)) => Box::new(move |i| i + n >= len),
                (false, Some(f), None) if b.is_empty() => Box::new(move |i| i >= f),
                (false, Some(f), Some(l)) if f <= l => Box::new(move |i| f <= i && i <= l),
                _ => return Naive::Full,
            };
            for i in 0..len {
                if picks(i) {
                    selected[i as usize] = true;
                    sum += 1;
                }
            }
        }
        if !selected.contains(&true) {
            Naive::Unsatisfiable
        } else if sum > len {
            Naive::Full
        } else {
            Naive::Satisfiable(selected)
        }
    }

    #[test]
    fn matches_naive_oracle() {
        let mut rng = Rng(0x853c_49e6_748f_ea9b);
        let mut seen = [0; 3];
        for _ in 0..50_000 {
            let field = random_field(&mut rng);
            let len = rng.below(20);
            let got = match evaluate(field.as_bytes(), len) {
                RangeOutcome::Full => Naive::Full,
                RangeOutcome::Unsatisfiable => Naive::Unsatisfiable,
                RangeOutcome::Satisfiable(set) => {
                    let ranges = set.as_slice();
                    assert!(!ranges.is_empty());
                    for w in ranges.windows(2) {
                        assert!(w[0].1 + 1 < w[1].0, "{field:?}: {set:?} not disjoint");
                    }
                    let mut covered = vec![false; len as usize];
                    for &(first, last) in ranges {
                        assert!(first <= last && last < len, "{field:?}: {set:?}");
                        covered[first as usize..=last as usize].fill(true);
                    }
                    assert_eq!(
                        set.total_len(),
                        covered.iter().filter(|&&c| c).count() as u64
                    );
                    Naive::Satisfiable(covered)
                }
            };
            seen[match got {
                Naive::Full => 0,
                Naive::Unsatisfiable => 1,
                Naive::Satisfiable(_) => 2,
            }] += 1;
            assert_eq!(got, naive(&field, len), "{field:?} len={len}");
        }
        // Every outcome is exercised often.
        assert!(seen.iter().all(|&n| n > 2_000), "{seen:?}");
    }

    /// The body built from real parts is exactly as long as `multipart_len` says.
    #[test]
    fn multipart_len_is_exact() {
        let mut rng = Rng(0xda94_2042_e4dd_58b5);
        let types = [
            "",
            "text/plain",
            "application/octet-stream",
            "text/html; charset=utf-8",
        ];
        let mut checked = 0;
        while checked < 500 {
            let len = match rng.below(3) {
                0 => rng.below(20),
                1 => rng.below(2_000),
                _ => rng.below(200_000),
            };
            let field = format!(
                "bytes={}",
                (0..1 + rng.below(6))
                    .map(|_| {
                        let a = rng.below(len.max(1));
                        let b = a + rng.below(len.max(1) / 4 + 1);
                        format!("{a}-{b}")
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let RangeOutcome::Satisfiable(set) = evaluate(field.as_bytes(), len) else {
                continue;
            };
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let b = boundary(rng.below(u64::MAX));
            let content_type = types[rng.below(types.len() as u64) as usize];
            let mut body = Vec::new();
            for &(first, last) in set.as_slice() {
                write_part_head(&mut body, &b, content_type, first, last, len);
                body.extend_from_slice(&content[first as usize..=last as usize]);
            }
            write_closing(&mut body, &b);
            assert_eq!(
                multipart_len(&set, b.len(), content_type.len(), len),
                body.len() as u64,
                "{field:?} len={len}"
            );
            checked += 1;
        }
    }

    #[test]
    fn digit_counts() {
        for n in [0u64, 9, 10, 99, 100, 999_999, 1_000_000, u64::MAX] {
            assert_eq!(digits(n), n.to_string().len() as u64, "{n}");
        }
    }
}
