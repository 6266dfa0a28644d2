//! Directory listings (`--listing`): an HTML page, or JSON for clients that ask for
//! `application/json`. Names are escaped for HTML and JSON and percent-encoded in links;
//! dotfiles are left out unless `--hidden`.

use std::io::Write;

use crate::fs::{self, OpenError, Root};
use crate::http::{HttpDate, Status};

/// Renders the listing of the directory `rel` (relative to `root`) as the `accept` field
/// asks: its content type and body, or the error status to answer with.
pub fn render(
    root: &Root,
    hidden: bool,
    accept: Option<&[u8]>,
    rel: &[u8],
) -> Result<(&'static str, Vec<u8>), Status> {
    let entries = match root.list(rel, hidden) {
        Ok(entries) => entries,
        Err(OpenError::NotFound) => return Err(Status::NotFound),
        Err(OpenError::Forbidden) => return Err(Status::Forbidden),
        Err(OpenError::Io(e)) => {
            eprintln!("fserve: cannot list {}: {e}", rel.escape_ascii());
            return Err(Status::InternalServerError);
        }
    };
    if wants_json(accept) {
        Ok(("application/json; charset=utf-8", json(&entries)))
    } else {
        let title = if rel == b"." {
            b"/".to_vec()
        } else {
            [b"/", rel, b"/"].concat()
        };
        Ok(("text/html; charset=utf-8", html(&title, &entries)))
    }
}

/// JSON only when the client names it and not HTML first (a browser's Accept lists HTML).
fn wants_json(accept: Option<&[u8]>) -> bool {
    let Some(accept) = accept else { return false };
    let find = |needle: &[u8]| {
        accept
            .windows(needle.len())
            .position(|w| w.eq_ignore_ascii_case(needle))
    };
    match (find(b"application/json"), find(b"text/html")) {
        (Some(j), Some(h)) => j < h,
        (Some(_), None) => true,
        _ => false,
    }
}

fn html(title: &[u8], entries: &[fs::file::Listed]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + entries.len() * 160);
    out.extend_from_slice(b"<!doctype html>\n<html lang=\"en\"><meta charset=\"utf-8\">");
    out.extend_from_slice(
        b"<meta name=\"viewport\" content=\"width=device-width\"><title>Index of ",
    );
    escape_html(&mut out, title);
    out.extend_from_slice(b"</title>\n<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:50rem;padding:0 1rem}");
    out.extend_from_slice(b"td{padding:.1rem 1rem .1rem 0}td:nth-child(n+2){color:#666;font-variant-numeric:tabular-nums}</style>\n<h1>Index of ");
    escape_html(&mut out, title);
    out.extend_from_slice(b"</h1>\n<table>\n<tr><td><a href=\"../\">../</a><td><td>\n");
    for e in entries {
        out.extend_from_slice(b"<tr><td><a href=\"");
        percent_encode(&mut out, &e.name);
        if e.dir {
            out.push(b'/');
        }
        out.extend_from_slice(b"\">");
        escape_html(&mut out, &e.name);
        if e.dir {
            out.push(b'/');
        }
        out.extend_from_slice(b"</a><td>");
        if !e.dir {
            let _ = write!(out, "{}", e.len);
        }
        out.extend_from_slice(b"<td>");
        out.extend_from_slice(HttpDate::from_unix(e.mtime).as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"</table>\n<hr><p>fserve</p>\n");
    out
}

fn json(entries: &[fs::file::Listed]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + entries.len() * 96);
    out.push(b'[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"\n{\"name\":\"");
        escape_json(&mut out, &e.name);
        let _ = write!(
            out,
            "\",\"dir\":{},\"size\":{},\"mtime\":{}}}",
            e.dir, e.len, e.mtime
        );
    }
    out.extend_from_slice(b"\n]\n");
    out
}

fn escape_html(out: &mut Vec<u8>, name: &[u8]) {
    for c in String::from_utf8_lossy(name).chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\'' => out.extend_from_slice(b"&#39;"),
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

fn escape_json(out: &mut Vec<u8>, name: &[u8]) {
    for c in String::from_utf8_lossy(name).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so any name is a safe
/// relative link (a name with `:` cannot pass for a scheme).
fn percent_encode(out: &mut Vec<u8>, name: &[u8]) {
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, dir: bool) -> fs::file::Listed {
        fs::file::Listed {
            name: name.as_bytes().to_vec(),
            dir,
            len: 12,
            mtime: 0,
        }
    }

    #[test]
    fn escapes_names() {
        let entries = [
            listed("a<b>&\"c\".txt", false),
            listed("sub dir", true),
            listed("x:y", false),
        ];
        let page = String::from_utf8(html(b"/d/", &entries)).unwrap();
        assert!(
            page.contains(">a&lt;b&gt;&amp;&quot;c&quot;.txt</a>"),
            "{page}"
        );
        assert!(page.contains("href=\"a%3Cb%3E%26%22c%22.txt\""), "{page}");
        assert!(page.contains("href=\"sub%20dir/\">sub dir/</a>"), "{page}");
        assert!(page.contains("href=\"x%3Ay\""), "{page}");
        assert!(!page.contains("a<b>"));
        let data = String::from_utf8(json(&[listed("q\"\\\n", false)])).unwrap();
        assert!(data.contains(r#""name":"q\"\\\u000a""#), "{data}");
    }

    #[test]
    fn json_only_when_asked_before_html() {
        let cases: &[(Option<&str>, bool)] = &[
            (None, false),
            (Some("application/json"), true),
            (Some("text/html,application/xhtml+xml,*/*;q=0.8"), false),
            (Some("application/json, text/html"), true),
            (Some("*/*"), false),
        ];
        for &(accept, want) in cases {
            assert_eq!(wants_json(accept.map(str::as_bytes)), want, "{accept:?}");
        }
    }
}
