//! Proactive content negotiation (RFC 9110 §12): choosing a content coding from
//! Accept-Encoding (§12.5.3), and asking whether Accept admits HTML (§12.5.1).
//!
//! Pure and allocation-free: fields are scanned in place. Never answers 406: a static
//! server can always send the identity coding, and §12.4.1 lets a server disregard an Accept
//! field it cannot satisfy rather than fail the request. Never decides which encoded files
//! exist: the caller says which codings are available.
//!
//! Weights (§12.4.2) are read strictly: `0`, `0.` and up to three decimals, or `1`, `1.`,
//! `1.000`; `q` in either case, and no whitespace around `=`. A member whose weight is
//! malformed, or that carries any other parameter, counts as `q=0`: a coding the client did
//! not clearly accept is never sent. Field values arrive as httparse admits them (SP, HTAB,
//! VCHAR, obs-text), so trimming ASCII whitespace trims exactly the grammar's OWS.

/// A content coding fserve can serve (§8.4.1): a precompressed file, or the file itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// Brotli (RFC 7932).
    Br,
    /// Zstandard (RFC 8878).
    Zstd,
    /// gzip (§8.4.1.3), also spelled `x-gzip`.
    Gzip,
    /// No coding.
    Identity,
}

impl Coding {
    /// The token as sent in Content-Encoding (never sent for `Identity`).
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
            Coding::Identity => "identity",
        }
    }
}

/// A weight in thousandths, 0 (not acceptable) ..= 1000.
type Weight = u16;

const ONE: Weight = 1000;

/// Chooses the coding to send (§12.5.3): among the `available` codings, in the server's
/// order of preference, the one the field gives the highest non-zero weight, the first on a
/// tie; [`Coding::Identity`] when none is acceptable.
///
/// - No field: identity. §12.5.3 says any coding is then acceptable, but a client that sent
///   none (curl, scripts) rarely wants one, and identity is always correct.
/// - An empty field accepts no coding: identity.
/// - `*` gives its weight to every coding not listed; `q=0` refuses a coding.
/// - Tokens are case-insensitive; `x-gzip` is `gzip` (§8.4.1.3). Unknown codings are
///   skipped. A coding listed twice takes its lowest weight, so a refusal is never undone.
/// - Identity wins only if the client weighs it (explicitly or through `*`) above the best
///   coding; on a tie the coding is sent. Refusing identity (`identity;q=0`, or `*;q=0`
///   without an identity member) when nothing else is acceptable still gets identity:
///   §12.5.3 allows identity in that case rather than a 406, which helps no one fetching a
///   static file. `Identity` in `available` changes nothing: it is always available.
pub fn choose(accept_encoding: Option<&[u8]>, available: &[Coding]) -> Coding {
    let Some(field) = accept_encoding else {
        return Coding::Identity;
    };
    let weights = Weights::parse(field);
    let mut best: Option<(Coding, Weight)> = None;
    for &coding in available.iter().filter(|&&c| c != Coding::Identity) {
        let q = weights.of(coding);
        if q > 0 && best.is_none_or(|(_, top)| q > top) {
            best = Some((coding, q));
        }
    }
    match best {
        Some((coding, q)) if q >= weights.of(Coding::Identity) => coding,
        _ => Coding::Identity,
    }
}

/// What an Accept-Encoding field says of each coding fserve knows, indexed by `Coding as
/// usize`, and of `*` (at [`STAR`]): `None` when not listed.
#[derive(Default)]
struct Weights([Option<Weight>; 5]);

const STAR: usize = 4;

impl Weights {
    fn parse(field: &[u8]) -> Weights {
        let mut weights = Weights::default();
        // `codings [ weight ]` holds no comma and no quoted string: every comma separates.
        for member in field.split(|&b| b == b',') {
            let (token, params) = split_params(member);
            let Some(slot) = slot(token) else {
                continue;
            };
            let q = weight_of(params).unwrap_or(0);
            let w = &mut weights.0[slot];
            *w = Some(w.map_or(q, |old| old.min(q)));
        }
        weights
    }

    /// The weight of `coding`: its own, else that of `*`, else 0 (not listed).
    fn of(&self, coding: Coding) -> Weight {
        let own = self.0[coding as usize];
        own.or(self.0[STAR]).unwrap_or(0)
    }
}

fn slot(token: &[u8]) -> Option<usize> {
    let is = |name: &[u8]| token.eq_ignore_ascii_case(name);
    Some(if is(b"br") {
        Coding::Br as usize
    } else if is(b"zstd") {
        Coding::Zstd as usize
    } else if is(b"gzip") || is(b"x-gzip") {
        Coding::Gzip as usize
    } else if is(b"identity") {
        Coding::Identity as usize
    } else if token == b"*" {
        STAR
    } else {
        return None;
    })
}

/// Whether HTML is acceptable to a client sending this Accept field (§12.5.1): true when
/// the field is absent, else when the most specific of `text/html`, `text/*` and `*/*` it
/// lists has a non-zero weight (§12.5.1: "the most specific reference has precedence").
///
/// Media-type parameters are not compared: `text/html;level=1` counts as `text/html`, and
/// several members of the same specificity take the highest weight. An empty field lists
/// nothing, so it accepts no HTML. Malformed weights count as `q=0`, as in [`choose`].
pub fn accepts_html(accept: Option<&[u8]>) -> bool {
    let Some(field) = accept else {
        return true;
    };
    // (specificity, weight) of the most specific member covering text/html so far.
    let mut best: Option<(u8, Weight)> = None;
    let mut rest = field;
    while !rest.is_empty() {
        let (member, after) = split_outside_quotes(rest, b',');
        rest = after;
        let (range, params) = split_params(member);
        let is = |name: &[u8]| range.eq_ignore_ascii_case(name);
        let specificity = if is(b"text/html") {
            3
        } else if is(b"text/*") {
            2
        } else if is(b"*/*") {
            1
        } else {
            continue;
        };
        // `parameters = *( OWS ";" OWS [ parameter ] )`: `text/html;` is fine.
        let q = accept_weight(params.unwrap_or_default());
        best = match best {
            Some((s, top)) if s > specificity => Some((s, top)),
            Some((s, top)) if s == specificity => Some((s, top.max(q))),
            _ => Some((specificity, q)),
        };
    }
    best.is_some_and(|(_, q)| q > 0)
}

/// The weight among a media range's parameters (§12.4.2: any parameter named `q`, wherever
/// it stands); 1 without one, 0 if it is malformed.
fn accept_weight(mut params: &[u8]) -> Weight {
    while !params.is_empty() {
        let (param, after) = split_outside_quotes(params, b';');
        params = after;
        let param = param.trim_ascii();
        if let [b'q' | b'Q', b'=', value @ ..] = param {
            return qvalue(value).unwrap_or(0);
        }
    }
    ONE
}

/// Splits a list member into its trimmed first item and what follows its first `;` (the
/// parameters; `None` without a `;`).
fn split_params(member: &[u8]) -> (&[u8], Option<&[u8]>) {
    match member.iter().position(|&b| b == b';') {
        Some(i) => (member[..i].trim_ascii(), Some(&member[i + 1..])),
        None => (member.trim_ascii(), None),
    }
}

/// An Accept-Encoding member's weight: 1 without parameters, `Some(q)` for exactly one
/// well-formed `q=` parameter, `None` otherwise (`br;` included).
fn weight_of(params: Option<&[u8]>) -> Option<Weight> {
    match params.map(<[u8]>::trim_ascii) {
        None => Some(ONE),
        Some([b'q' | b'Q', b'=', value @ ..]) => qvalue(value),
        Some(_) => None,
    }
}

/// `qvalue = ( "0" [ "." *3DIGIT ] ) / ( "1" [ "." *3("0") ] )` (§12.4.2), in thousandths.
fn qvalue(s: &[u8]) -> Option<Weight> {
    let (int, frac): (&[u8], &[u8]) = match s {
        [int, b'.', frac @ ..] => (std::slice::from_ref(int), frac),
        _ => (s, &[]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = frac
        .iter()
        .zip([100, 10, 1])
        .map(|(&d, scale)| Weight::from(d - b'0') * scale)
        .sum::<Weight>();
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(ONE),
        _ => None,
    }
}

/// Splits `s` at the first `sep` that is not inside a quoted-string (§5.6.4), returning
/// what precedes it and what follows it (empty if there is none).
fn split_outside_quotes(s: &[u8], sep: u8) -> (&[u8], &[u8]) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            return (&s[..i], &s[i + 1..]);
        }
    }
    (s, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::{Br, Gzip, Identity, Zstd};

    const ALL: &[Coding] = &[Br, Zstd, Gzip];

    #[test]
    fn chooses_codings() {
        let cases: &[(Option<&str>, &[Coding], Coding)] = &[
            (None, ALL, Identity),
            (Some(""), ALL, Identity),
            (Some("  "), ALL, Identity),
            (Some("gzip"), ALL, Gzip),
            (Some("gzip, deflate, br, zstd"), ALL, Br),
            (Some("gzip, deflate, br, zstd"), &[Zstd, Br, Gzip], Zstd),
            (Some("gzip, br"), &[Gzip], Gzip),
            (Some("br"), &[Gzip], Identity),
            (Some("br"), &[], Identity),
            (Some("deflate, compress"), ALL, Identity),
            (Some("GZIP"), ALL, Gzip),
            (Some("x-gzip"), ALL, Gzip),
            (Some("X-Gzip;Q=0.5"), ALL, Gzip),
            // Weights, and ties broken by the server's order.
            (Some("gzip;q=1.0, br;q=0.5"), ALL, Gzip),
            (Some("gzip;q=0.5, br;q=0.5"), ALL, Br),
            (Some("br;q=0.001, gzip;q=0.002"), ALL, Gzip),
            (Some("br;q=0, gzip"), ALL, Gzip),
            (Some("br;q=0.000, gzip;q=0"), ALL, Identity),
            (Some("gzip ; q=0.8 , br;q=0.9"), ALL, Br),
            (Some("br;q=0."), ALL, Identity),
            (Some("br;q=1., gzip"), ALL, Br),
            // `*` covers what is not listed.
            (Some("*"), ALL, Br),
            (Some("*;q=0.5, zstd;q=0.6"), ALL, Zstd),
            (Some("*;q=0.5, br;q=0"), ALL, Zstd),
            (Some("*;q=0"), ALL, Identity),
            (Some("gzip, *;q=0"), ALL, Gzip),
            // A coding listed twice takes its lowest weight.
            (Some("br, br;q=0"), ALL, Identity),
            (Some("br;q=0, x-gzip, gzip;q=0"), ALL, Identity),
            // Identity competes only when the client weighs it; a tie goes to the coding.
            (Some("gzip;q=0.5, identity"), ALL, Identity),
            (Some("gzip;q=0.5, identity;q=0.5"), ALL, Gzip),
            (Some("gzip;q=0.5, *"), ALL, Br),
            (Some("gzip;q=0.5, *;q=0.1"), &[Gzip], Gzip),
            (Some("br;q=0.1, *;q=0.5"), &[Br], Identity),
            (Some("identity;q=0"), ALL, Identity),
            (Some("identity;q=0, gzip"), ALL, Gzip),
            (Some("*;q=0, identity;q=0"), ALL, Identity),
            (Some("gzip"), &[Identity, Gzip], Gzip),
            // Malformed weights and parameters refuse the member.
            (Some("br;q=2"), ALL, Identity),
            (Some("br;q=1.001"), ALL, Identity),
            (Some("br;q=0.1234"), ALL, Identity),
            (Some("br;q=.5"), ALL, Identity),
            (Some("br;q=-1"), ALL, Identity),
            (Some("br;q = 0.5"), ALL, Identity),
            (Some("br;q=0.5;x=1"), ALL, Identity),
            (Some("br;level=5"), ALL, Identity),
            (Some("br;"), ALL, Identity),
            (Some("br;q=abc, gzip"), ALL, Gzip),
            (Some("br;q=0.5 0.6, gzip;q=0.1"), ALL, Gzip),
            (Some("*;q=x"), ALL, Identity),
            // Empty members and odd spacing.
            (Some(",, gzip ,,"), ALL, Gzip),
            (Some("\tzstd\t"), ALL, Zstd),
            (Some("g zip"), ALL, Identity),
        ];
        for &(field, available, want) in cases {
            assert_eq!(
                choose(field.map(str::as_bytes), available),
                want,
                "{field:?} from {available:?}"
            );
        }
    }

    #[test]
    fn qvalues() {
        let cases: &[(&str, Option<Weight>)] = &[
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.0", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.123", Some(123)),
            ("0.999", Some(999)),
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.0", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("1.5", None),
            ("0.1234", None),
            ("2", None),
            ("00", None),
            ("01", None),
            (".5", None),
            ("", None),
            ("0,5", None),
            ("0.5 ", None),
            ("+1", None),
            ("0.a", None),
        ];
        for &(raw, want) in cases {
            assert_eq!(qvalue(raw.as_bytes()), want, "{raw:?}");
        }
    }

    /// Random fields over the known tokens against the rules restated on a map.
    #[test]
    fn choose_matches_naive_oracle() {
        let tokens = [
            "br", "zstd", "gzip", "x-gzip", "identity", "*", "deflate", "BR",
        ];
        let weights = [
            "", ";q=0", ";q=1", ";q=0.5", ";q=0.25", ";q=0.250", ";q=0.9", ";q=bad",
        ];
        let mut seed: u64 = 0x5851_f42d_4c95_7f2d;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..20_000 {
            let mut members = Vec::new();
            for _ in 0..next(5) {
                members.push((tokens[next(tokens.len())], weights[next(weights.len())]));
            }
            let field = members
                .iter()
                .map(|(t, w)| format!("{t}{w}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut available = vec![Br, Zstd, Gzip];
            for i in (1..available.len()).rev() {
                available.swap(i, next(i + 1));
            }
            available.truncate(next(4));

            let canonical = |t: &str| match t.to_ascii_lowercase().as_str() {
                "x-gzip" => "gzip".to_string(),
                other => other.to_string(),
            };
            let q_of = |w: &str| -> u32 {
                match w {
                    "" | ";q=1" => 1000,
                    ";q=0.5" => 500,
                    ";q=0.25" | ";q=0.250" => 250,
                    ";q=0.9" => 900,
                    _ => 0,
                }
            };
            let listed = |name: &str| {
                members
                    .iter()
                    .filter(|(t, _)| canonical(t) == name)
                    .map(|(_, w)| q_of(w))
                    .min()
            };
            let weight = |name: &str| listed(name).or(listed("*")).unwrap_or(0);
            // Rank the acceptable codings by weight, then by the server's order.
            let mut ranked: Vec<(u32, usize, Coding)> = available
                .iter()
                .enumerate()
                .map(|(i, &c)| (weight(c.token()), i, c))
                .filter(|&(q, _, _)| q > 0)
                .collect();
            ranked.sort_by_key(|&(q, i, _)| (std::cmp::Reverse(q), i));
            let want = match ranked.first() {
                Some(&(q, _, c)) if q >= weight("identity") => c,
                _ => Identity,
            };
            assert_eq!(
                choose(Some(field.as_bytes()), &available),
                want,
                "{field:?} from {available:?}"
            );
        }
    }

    #[test]
    fn accepts_html_when_asked() {
        let cases: &[(Option<&str>, bool)] = &[
            (None, true),
            (Some(""), false),
            (Some("text/html"), true),
            (Some("TEXT/HTML"), true),
            (Some("*/*"), true),
            (Some("text/*"), true),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                true,
            ),
            (Some("application/json"), false),
            (Some("application/json, text/plain"), false),
            (Some("image/*, */*;q=0"), false),
            (Some("text/html;q=0"), false),
            (Some("text/html;q=0.001"), true),
            (Some("text/html;"), true),
            (Some("text/html; ;q=0"), false),
            (Some("text/html;level=1;q=0.5"), true),
            (Some("text/html;Q=0"), false),
            (Some("text/html ; q=0"), false),
            // The most specific range decides.
            (Some("text/html;q=0, */*"), false),
            (Some("text/html;q=0, text/*"), false),
            (Some("text/*;q=0, */*"), false),
            (Some("text/*;q=0, text/html"), true),
            (Some("*/*;q=0, text/html;q=0.1"), true),
            (Some("text/html;charset=utf-8;q=0, text/html"), true),
            // Malformed weights refuse the member.
            (Some("text/html;q=2"), false),
            (Some("text/html;q=x, application/json"), false),
            // Quoted commas and semicolons stay inside their parameter.
            (Some("application/json;x=\"a,text/html\""), false),
            (Some("text/html;x=\"a;q=0\""), true),
            (Some("text/html;x=\"a\\\";q=0\""), true),
            (Some("application/x;y=\"a,b\", text/html"), true),
            (Some("text/plain, text/htmlx"), false),
        ];
        for &(field, want) in cases {
            assert_eq!(accepts_html(field.map(str::as_bytes)), want, "{field:?}");
        }
    }
}
