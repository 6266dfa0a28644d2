//! Entity tags (RFC 9110 §8.8.3): parsing one tag, the strong and weak comparison functions
//! (§8.8.3.2), and matching the current tag against an `If-Match` or `If-None-Match` list
//! (§13.1.1, §13.1.2).
//!
//! Tags borrow the field value; nothing allocates. This module never decides a status: what
//! a match means is [`super::conditional`]'s business.
//!
//! Which tag a representation carries: files sent from disk keep nginx's `"mtime-size"`
//! ([`super::response::write_etag`]); files held in memory, whose every byte was read, get
//! one derived from their content ([`content_hash`], [`super::response::write_content_etag`]),
//! so two releases with the same size and mtime never share a validator.
//!
//! Field values arrive as httparse admits them (SP, HTAB, VCHAR, obs-text), so trimming ASCII
//! whitespace trims exactly the optional whitespace (OWS) of the grammar.

/// `entity-tag = [ weak ] opaque-tag` (§8.8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntityTag<'a> {
    /// Sent with the `W/` prefix.
    pub weak: bool,
    /// The opaque-tag with its double quotes, e.g. `"xyz"`.
    pub opaque: &'a [u8],
}

impl<'a> EntityTag<'a> {
    /// Parses exactly one entity-tag, with nothing around it. `W/` is case-sensitive
    /// (`%s"W/"`).
    pub fn parse(s: &'a [u8]) -> Option<EntityTag<'a>> {
        match split_tag(s)? {
            (tag, []) => Some(tag),
            _ => None,
        }
    }

    /// Strong comparison (§8.8.3.2): neither tag is weak and the opaque-tags are identical.
    pub fn strong_eq(self, other: EntityTag<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// Weak comparison (§8.8.3.2): the opaque-tags are identical, weak or not.
    pub fn weak_eq(self, other: EntityTag<'_>) -> bool {
        self.opaque == other.opaque
    }
}

/// Which comparison function a list match uses: strong for If-Match (§13.1.1), weak for
/// If-None-Match (§13.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Strong,
    Weak,
}

/// Whether a field value of the form `"*" / #entity-tag` names the current representation,
/// whose tag is `current` (`None` when it has none: then only `*` matches). `*` matches any
/// current representation, so the caller asks only when one exists.
///
/// Returns `None` when the value is not of that form, anywhere in it: the caller decides
/// what a malformed list means (see [`super::conditional`]). The value is checked to its
/// end even after a match, so that a list is valid or not whatever tag is current. Empty
/// list elements are allowed (§5.6.1.2); an empty value is a valid list that names nothing.
/// `*` is only valid alone: `*, "a"` is malformed.
pub fn list_matches(field: &[u8], current: Option<EntityTag<'_>>, cmp: Comparison) -> Option<bool> {
    let field = field.trim_ascii();
    if field == b"*" {
        return Some(true);
    }
    let mut found = false;
    let mut rest = field;
    loop {
        rest = rest.trim_ascii_start();
        match rest {
            [] => return Some(found),
            [b',', after @ ..] => rest = after,
            _ => {
                let (tag, after) = split_tag(rest)?;
                found |= current.is_some_and(|c| match cmp {
                    Comparison::Strong => tag.strong_eq(c),
                    Comparison::Weak => tag.weak_eq(c),
                });
                // Another element must follow a comma, not just whitespace.
                rest = match after.trim_ascii_start() {
                    [] => &[],
                    [b',', after @ ..] => after,
                    _ => return None,
                };
            }
        }
    }
}

/// Splits one entity-tag off the front of `s`, returning it and what follows.
fn split_tag(s: &[u8]) -> Option<(EntityTag<'_>, &[u8])> {
    let (weak, s) = match s.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let [b'"', inner @ ..] = s else {
        return None;
    };
    let close = inner.iter().position(|&b| b == b'"')?;
    if !inner[..close].iter().all(|&b| is_etagc(b)) {
        return None;
    }
    let opaque = &s[..close + 2];
    Some((EntityTag { weak, opaque }, &s[close + 2..]))
}

/// `etagc = %x21 / %x23-7E / obs-text` (§8.8.3): visible characters but `"`, and obs-text.
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

/// The hash of a representation's bytes that its in-memory strong ETag is made of: XXH3-64
/// with seed 0, a published algorithm, so every process on every machine (and every release
/// of fserve) derives the same tag from the same bytes. Computed once, when a file is
/// loaded. Not a cryptographic hash: a validator only has to change when the content does.
pub fn content_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(s: &str) -> EntityTag<'_> {
        EntityTag::parse(s.as_bytes()).unwrap_or_else(|| panic!("{s:?}"))
    }

    #[test]
    fn parses_tags() {
        // (input, Some((weak, opaque)) if it is one tag)
        type Case<'a> = (&'a [u8], Option<(bool, &'a [u8])>);
        let cases: &[Case] = &[
            (b"\"xyz\"", Some((false, b"\"xyz\""))),
            (b"W/\"xyz\"", Some((true, b"\"xyz\""))),
            (b"\"\"", Some((false, b"\"\""))),
            (b"W/\"\"", Some((true, b"\"\""))),
            (b"\"a,b!#~\"", Some((false, b"\"a,b!#~\""))),
            (b"\"\xc3\xa9\"", Some((false, b"\"\xc3\xa9\""))),
            (b"xyz", None),
            (b"\"xyz", None),
            (b"xyz\"", None),
            (b"w/\"xyz\"", None),
            (b"W/xyz", None),
            (b"W/ \"xyz\"", None),
            (b" \"xyz\"", None),
            (b"\"xyz\" ", None),
            (b"\"x y\"", None),
            (b"\"x\ty\"", None),
            (b"\"x\x7fy\"", None),
            (b"\"x\"y\"", None),
            (b"\"a\"\"b\"", None),
            (b"*", None),
            (b"", None),
        ];
        for &(raw, want) in cases {
            let got = EntityTag::parse(raw).map(|t| (t.weak, t.opaque));
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    /// The table of §8.8.3.2.
    #[test]
    fn compares_as_the_rfc_table() {
        let cases = [
            ("W/\"1\"", "W/\"1\"", false, true),
            ("W/\"1\"", "W/\"2\"", false, false),
            ("W/\"1\"", "\"1\"", false, true),
            ("\"1\"", "\"1\"", true, true),
        ];
        for (a, b, strong, weak) in cases {
            for (x, y) in [(a, b), (b, a)] {
                assert_eq!(tag(x).strong_eq(tag(y)), strong, "{x} {y}");
                assert_eq!(tag(x).weak_eq(tag(y)), weak, "{x} {y}");
            }
        }
    }

    #[test]
    fn matches_lists() {
        use Comparison::{Strong, Weak};
        let cur = Some(tag("\"abc\""));
        let cases: &[(&str, Option<EntityTag>, Comparison, Option<bool>)] = &[
            ("*", cur, Strong, Some(true)),
            (" * ", cur, Weak, Some(true)),
            ("*", None, Strong, Some(true)),
            ("\"abc\"", cur, Strong, Some(true)),
            ("\"abc\"", None, Weak, Some(false)),
            ("W/\"abc\"", cur, Strong, Some(false)),
            ("W/\"abc\"", cur, Weak, Some(true)),
            ("\"x\", \"abc\"", cur, Strong, Some(true)),
            ("\"x\",\"abc\"", cur, Strong, Some(true)),
            ("\"x\" ,\t\"abc\" ", cur, Strong, Some(true)),
            ("\"x\", W/\"y\"", cur, Weak, Some(false)),
            (", ,\"abc\",,", cur, Strong, Some(true)),
            ("", cur, Strong, Some(false)),
            (" , ", cur, Weak, Some(false)),
            ("\"ab\"", cur, Weak, Some(false)),
            ("\"abcd\"", cur, Weak, Some(false)),
            ("\"ABC\"", cur, Weak, Some(false)),
            // A comma inside a tag is part of it.
            ("\"x,\"abc\"\"", cur, Weak, None),
            ("\"a,b\"", Some(tag("\"a,b\"")), Strong, Some(true)),
            // Malformed anywhere: not a list, even after a match.
            ("\"abc\", xyz", cur, Strong, None),
            ("xyz, \"abc\"", cur, Strong, None),
            ("\"abc\" \"x\"", cur, Strong, None),
            ("\"abc\"\"x\"", cur, Strong, None),
            ("*, \"abc\"", cur, Strong, None),
            ("\"abc\", *", cur, Strong, None),
            ("**", cur, Strong, None),
            ("abc", cur, Weak, None),
            ("\"abc", cur, Weak, None),
            ("w/\"abc\"", cur, Weak, None),
        ];
        for &(field, current, cmp, want) in cases {
            assert_eq!(
                list_matches(field.as_bytes(), current, cmp),
                want,
                "{field:?} {cmp:?}"
            );
        }
    }

    /// Random lists built from known members, joined with random separators, against the
    /// answer their construction implies; a corrupted member must make the whole list
    /// malformed.
    #[test]
    fn matches_naive_oracle() {
        let opaques = [
            "\"a\"",
            "\"b\"",
            "\"a,b\"",
            "\"\"",
            "\"W/\"",
            "\"5f5e1000-4d2\"",
        ];
        let separators = [",", ", ", " ,", "\t,\t", ",,", " , ,"];
        let corruptions = ["a", "\"a", "*", "W/a", "w/\"a\"", "\"a b\"", "\"a\"\"b\""];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..20_000 {
            let current = opaques[next(opaques.len())];
            let current_weak = next(4) == 0;
            let current_text = if current_weak {
                format!("W/{current}")
            } else {
                current.to_string()
            };
            let cur = EntityTag::parse(current_text.as_bytes()).unwrap();
            let mut field = String::new();
            let (mut strong, mut weak) = (false, false);
            for i in 0..next(5) {
                if i > 0 {
                    field.push_str(separators[next(separators.len())]);
                }
                let opaque = opaques[next(opaques.len())];
                let is_weak = next(3) == 0;
                if is_weak {
                    field.push_str("W/");
                }
                field.push_str(opaque);
                weak |= opaque == current;
                strong |= opaque == current && !is_weak && !current_weak;
            }
            let corrupt = next(6) == 0;
            if corrupt {
                let at = if next(2) == 0 { 0 } else { field.len() };
                let bad = format!(", {} ,", corruptions[next(corruptions.len())]);
                field.insert_str(at, &bad);
            }
            let (want_strong, want_weak) = if corrupt {
                (None, None)
            } else {
                (Some(strong), Some(weak))
            };
            let f = field.as_bytes();
            assert_eq!(
                list_matches(f, Some(cur), Comparison::Strong),
                want_strong,
                "{field:?} vs {current_text}"
            );
            assert_eq!(
                list_matches(f, Some(cur), Comparison::Weak),
                want_weak,
                "{field:?} vs {current_text}"
            );
        }
    }

    #[test]
    fn content_hash_is_xxh3_and_tells_contents_apart() {
        // Published XXH3-64 values (seed 0): the same on every machine and in every process.
        assert_eq!(content_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(content_hash(b"a"), 0xe6c6_32b6_1e96_4e1f);
        // Same length, one byte apart; sizes around the algorithm's internal block edges.
        assert_ne!(content_hash(b"release 1"), content_hash(b"release 2"));
        for len in [16usize, 17, 128, 129, 240, 241, 1024, 128 * 1024] {
            let a = vec![7u8; len];
            let mut b = a.clone();
            b[len / 2] ^= 1;
            assert_ne!(content_hash(&a), content_hash(&b), "{len}");
            assert_eq!(content_hash(&a), content_hash(&a.clone()), "{len}");
        }
    }
}
