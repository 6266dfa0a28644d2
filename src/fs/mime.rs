//! Content-Type from a file name's extension (mime_guess), with `charset=utf-8` on text.

use std::borrow::Cow;

/// Types whose charset matters to a browser and that static sites write in UTF-8.
fn is_textual(mime: &str) -> bool {
    mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript"
                | "application/json"
                | "application/ld+json"
                | "application/manifest+json"
                | "application/xml"
                | "application/atom+xml"
                | "application/rss+xml"
                | "application/xhtml+xml"
                | "image/svg+xml"
        )
}

/// The Content-Type for a file called `name` (its final path segment).
pub(crate) fn content_type(name: &[u8]) -> Cow<'static, str> {
    const OCTETS: &str = "application/octet-stream";
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => &name[dot + 1..],
        _ => return Cow::Borrowed(OCTETS),
    };
    let Ok(ext) = std::str::from_utf8(ext) else {
        return Cow::Borrowed(OCTETS);
    };
    // The common types of a static site, spelled as browsers expect them today
    // (RFC 9239 makes JavaScript text/javascript).
    let known = [
        ("html", "text/html; charset=utf-8"),
        ("htm", "text/html; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("cjs", "text/javascript; charset=utf-8"),
        ("json", "application/json; charset=utf-8"),
        ("map", "application/json; charset=utf-8"),
        ("webmanifest", "application/manifest+json; charset=utf-8"),
        ("txt", "text/plain; charset=utf-8"),
        ("md", "text/markdown; charset=utf-8"),
        ("svg", "image/svg+xml; charset=utf-8"),
        ("xml", "text/xml; charset=utf-8"),
        ("wasm", "application/wasm"),
        ("woff2", "font/woff2"),
        ("avif", "image/avif"),
        ("webp", "image/webp"),
    ];
    if let Some((_, mime)) = known.iter().find(|(e, _)| e.eq_ignore_ascii_case(ext)) {
        return Cow::Borrowed(mime);
    }
    match mime_guess::from_ext(ext).first_raw() {
        Some(mime) if is_textual(mime) => Cow::Owned(format!("{mime}; charset=utf-8")),
        Some(mime) => Cow::Borrowed(mime),
        None => Cow::Borrowed(OCTETS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        let cases: &[(&str, &str)] = &[
            ("index.html", "text/html; charset=utf-8"),
            ("INDEX.HTM", "text/html; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("mod.mjs", "text/javascript; charset=utf-8"),
            ("data.json", "application/json; charset=utf-8"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("README.md", "text/markdown; charset=utf-8"),
            ("logo.svg", "image/svg+xml; charset=utf-8"),
            ("feed.xml", "text/xml; charset=utf-8"),
            ("table.csv", "text/csv; charset=utf-8"),
            ("app.wasm", "application/wasm"),
            ("a.png", "image/png"),
            ("a.jpg", "image/jpeg"),
            ("a.woff2", "font/woff2"),
            ("a.pdf", "application/pdf"),
            ("a.tar.gz", "application/gzip"),
            ("a.unknownext", "application/octet-stream"),
            ("Makefile", "application/octet-stream"),
            (".bashrc", "application/octet-stream"),
            ("a.", "application/octet-stream"),
        ];
        for &(name, want) in cases {
            assert_eq!(content_type(name.as_bytes()), want, "{name}");
        }
    }
}
