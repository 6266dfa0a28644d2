//! Request paths to file paths: percent-decode once, then normalise.
//!
//! SECURITY: decoding happens exactly once, before normalisation, so `%2e%2e` is `..` and
//! `%2f` is a separator, while `%252e` stays the three characters `%2e` (no double
//! decoding). A `..` that would climb above the root is an error, never clamped: a client
//! asking for that is probing, and gets a 400. Symlinks are not this module's business: the
//! file is opened beneath the root (`Root::open`), which refuses any that lead out.

/// Why a request path cannot name a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A decoded NUL byte.
    Nul,
    /// A `..` segment that climbs above the root.
    AboveRoot,
}

impl PathError {
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::BadEscape => "invalid percent-escape in path",
            PathError::Nul => "NUL byte in path",
            PathError::AboveRoot => "path climbs above the root",
        }
    }
}

/// What [`normalize`] found out about a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// The path named a directory explicitly (ended in `/`, `/.` or `/..`), or is the root.
    pub trailing_slash: bool,
    /// A segment starts with a dot (outside a leading `/.well-known/`).
    pub hidden: bool,
}

/// Decodes the percent-encoded `raw` path (which starts with `/`) into `out`, normalised:
/// `/` followed by segments joined by single `/`, with no empty, `.` or `..` segments, and a
/// trailing `/` when the request named a directory. The root is `/`.
pub fn normalize(raw: &[u8], out: &mut Vec<u8>) -> Result<Normalized, PathError> {
    out.clear();
    out.push(b'/');
    decode(raw, out)?;

    // Normalise in place: segment bytes move only towards the front (each written segment
    // `/seg` is no longer than its source, which a `/` precedes).
    let n = out.len();
    let (mut r, mut w) = (0, 0);
    let mut trailing_slash = true;
    while r < n {
        while r < n && out[r] == b'/' {
            r += 1;
        }
        if r == n {
            trailing_slash = true;
            break;
        }
        let start = r;
        while r < n && out[r] != b'/' {
            r += 1;
        }
        trailing_slash = false;
        match &out[start..r] {
            b"." => trailing_slash = true,
            b".." => {
                if w == 0 {
                    return Err(PathError::AboveRoot);
                }
                w = out[..w].iter().rposition(|&b| b == b'/').unwrap_or(0);
                trailing_slash = true;
            }
            _ => {
                out[w] = b'/';
                out.copy_within(start..r, w + 1);
                w += 1 + (r - start);
            }
        }
    }
    out.truncate(w);
    if w == 0 || trailing_slash {
        out.push(b'/');
    }
    Ok(Normalized {
        trailing_slash: trailing_slash || w == 0,
        hidden: is_hidden(out),
    })
}

fn decode(raw: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let byte = if b == b'%' {
            let hi = raw.get(i + 1).and_then(|&h| hex(h));
            let lo = raw.get(i + 2).and_then(|&l| hex(l));
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    i += 2;
                    hi << 4 | lo
                }
                _ => return Err(PathError::BadEscape),
            }
        } else {
            b
        };
        if byte == 0 {
            return Err(PathError::Nul);
        }
        out.push(byte);
        i += 1;
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Dotfiles (`.env`, `.git/`, `.htpasswd`) are hidden; `/.well-known/` (RFC 8615) is not,
/// though dotfiles beneath it are. Takes a normalised path, with or without its leading `/`.
pub fn is_hidden(normalized: &[u8]) -> bool {
    let mut segments = normalized.split(|&b| b == b'/').filter(|s| !s.is_empty());
    match segments.next() {
        Some(b".well-known") => {}
        Some(first) if first.starts_with(b".") => return true,
        _ => {}
    }
    segments.any(|s| s.starts_with(b"."))
}

/// Whether a file name carries a content fingerprint that build tools add so that the name
/// changes whenever the content does (`app.3f9a1c.js`, `main.3f9a1c2b.css`,
/// `index-BdR4xq2J.js`): the stem's last `.`- or `-`-separated piece is 6 to 64 letters,
/// digits or `_`, with at least one digit and one letter. `report-20240115.pdf` (no letter)
/// and `app.js` are not fingerprinted.
pub fn is_fingerprinted(name: &[u8]) -> bool {
    let Some(dot) = name.iter().rposition(|&b| b == b'.') else {
        return false;
    };
    let stem = &name[..dot];
    let Some(sep) = stem.iter().rposition(|&b| b == b'.' || b == b'-') else {
        return false;
    };
    let hash = &stem[sep + 1..];
    sep > 0
        && (6..=64).contains(&hash.len())
        && hash.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
        && hash.iter().any(u8::is_ascii_digit)
        && hash.iter().any(u8::is_ascii_alphabetic)
}

/// The path relative to the root, for `openat2`: no leading or trailing `/`; `.` for the
/// root.
pub fn relative(normalized: &[u8]) -> &[u8] {
    let rel = normalized.strip_prefix(b"/").unwrap_or(normalized);
    let rel = rel.strip_suffix(b"/").unwrap_or(rel);
    if rel.is_empty() { b"." } else { rel }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<(String, bool, bool), PathError> {
        let mut out = Vec::new();
        let n = normalize(raw.as_bytes(), &mut out)?;
        Ok((String::from_utf8(out).unwrap(), n.trailing_slash, n.hidden))
    }

    #[test]
    fn normalizes() {
        let cases: &[(&str, &str, bool)] = &[
            ("/", "/", true),
            ("//", "/", true),
            ("/a", "/a", false),
            ("/a/", "/a/", true),
            ("/a//b", "/a/b", false),
            ("/a/./b", "/a/b", false),
            ("/a/.", "/a/", true),
            ("/a/b/..", "/a/", true),
            ("/a/b/../c", "/a/c", false),
            ("/a/%2e%2e/c", "/c", false),
            ("/a%2fb", "/a/b", false),
            ("/with%20space.txt", "/with space.txt", false),
            ("/%252e%252e/x", "/%2e%2e/x", false),
            ("/caf%C3%A9", "/café", false),
            ("/a\\..\\b", "/a\\..\\b", false),
            ("/./", "/", true),
            ("/a/..", "/", true),
        ];
        for &(raw, want, slash) in cases {
            let (got, got_slash, _) = norm(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            assert_eq!((got.as_str(), got_slash), (want, slash), "{raw}");
        }
    }

    #[test]
    fn rejects() {
        let cases: &[(&str, PathError)] = &[
            ("/..", PathError::AboveRoot),
            ("/../a", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e/a", PathError::AboveRoot),
            ("/%2E%2E/a", PathError::AboveRoot),
            ("/.%2e/a", PathError::AboveRoot),
            ("/..%2fa", PathError::AboveRoot),
            ("/a/%2e%2e%2f%2e%2e/b", PathError::AboveRoot),
            ("/%", PathError::BadEscape),
            ("/%4", PathError::BadEscape),
            ("/%zz", PathError::BadEscape),
            ("/%%32%65", PathError::BadEscape),
            ("/a%00b", PathError::Nul),
            ("/%00", PathError::Nul),
        ];
        for &(raw, want) in cases {
            assert_eq!(norm(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn hides_dotfiles() {
        let cases: &[(&str, bool)] = &[
            ("/.env", true),
            ("/a/.git/config", true),
            ("/.well-known/security.txt", false),
            ("/.well-known/.secret", true),
            ("/a/.well-known/x", true),
            ("/a.b/c", false),
            ("/%2eenv", true),
            ("/a/./b", false),
        ];
        for &(raw, hidden) in cases {
            assert_eq!(norm(raw).unwrap().2, hidden, "{raw}");
        }
    }

    #[test]
    fn fingerprints() {
        let cases: &[(&str, bool)] = &[
            ("app.3f9a1c.js", true),
            ("main.3f9a1c2b.css", true),
            ("index-BdR4xq2J.js", true),
            ("chunk-vendors.a1b2c3d4e5f6.js", true),
            ("app.js", false),
            ("report-20240115.pdf", false),
            ("logo.png", false),
            ("my-photo.jpg", false),
            ("v1.2.3.tar", false),
            (".a1b2c3.js", false),
            ("a1b2c3", false),
        ];
        for &(name, want) in cases {
            assert_eq!(is_fingerprinted(name.as_bytes()), want, "{name}");
        }
    }

    #[test]
    fn relative_paths() {
        for (n, rel) in [("/", "."), ("/a", "a"), ("/a/b/", "a/b")] {
            assert_eq!(relative(n.as_bytes()), rel.as_bytes());
        }
    }

    /// Against a naive oracle: split on `/`, resolve with a stack, on many generated paths.
    #[test]
    fn matches_naive_oracle() {
        let parts = [
            "a", "b", ".", "..", "", "%2e", "%2e%2e", "%2f", ".x", "c%20d",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut raw = String::from("/");
            let len = (seed % 7) as usize;
            for i in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if i > 0 {
                    raw.push('/');
                }
                raw.push_str(parts[(seed % parts.len() as u64) as usize]);
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let decoded = raw
                .replace("%2e", ".")
                .replace("%2f", "/")
                .replace("%20", " ");
            let mut stack: Vec<&str> = Vec::new();
            let mut above = false;
            for seg in decoded.split('/') {
                match seg {
                    "" | "." => {}
                    ".." => above |= stack.pop().is_none(),
                    s => stack.push(s),
                }
            }
            let got = norm(&raw);
            if above {
                assert_eq!(got, Err(PathError::AboveRoot), "{raw}");
            } else {
                let (path, _, _) = got.unwrap();
                let joined = format!("/{}", stack.join("/"));
                assert_eq!(
                    path.trim_end_matches('/'),
                    joined.trim_end_matches('/'),
                    "{raw}"
                );
            }
        }
    }
}
