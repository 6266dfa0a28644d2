//! Site options: --spa, a custom 404.html, --pretty-urls, --listing (HTML and
//! JSON), -H/--header, --cors; OPTIONS and the Allow field.

use std::path::Path;

use super::support::*;

const HTML: &str = "text/html; charset=utf-8";
const BROWSER_ACCEPT: &str =
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";

// ----- --spa -------------------------------------------------------------

const SPA_INDEX: &str = "<!doctype html><div id=app></div>\n";

fn spa_files(root: &Path) {
    write(root, "index.html", SPA_INDEX);
    write(root, "app.css", "#app{}\n");
    write(root, "404.html", "<h1>custom not found</h1>\n");
    write(root, "assets/logo.svg", "<svg/>\n");
}

fn spa_server() -> TestServer {
    TestServer::with(spa_files, |cfg| cfg.spa = Some("index.html".into()))
}

#[track_caller]
fn assert_spa_index(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}\n{}", r.describe());
    r.assert_whole(SPA_INDEX.as_bytes());
    assert_eq!(r.header("Content-Type"), Some(HTML), "{what}");
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"), "{what}");
}

#[test]
fn spa_serves_its_index_for_unknown_routes_to_html_clients() {
    let t = spa_server();
    let mut c = t.connect();
    for target in [
        "/some/route",
        "/users/42",
        "/deep/a/b/c?tab=2",
        "/route.with.dots",
    ] {
        let r = c.get_h(target, &[BROWSER_ACCEPT]);
        assert_spa_index(&r, &format!("GET {target} (browser Accept)"));
        assert_eq!(
            r.header("Cache-Control"),
            Some("no-cache"),
            "{target}: the SPA page is HTML"
        );
    }
    // No Accept field counts as accepting HTML.
    let r = c.get("/some/route");
    assert_spa_index(&r, "GET /some/route without Accept");
    let h = c.head("/some/route");
    h.assert_line(200);
    assert_eq!(
        h.header("Content-Length"),
        Some(SPA_INDEX.len().to_string().as_str())
    );
    assert_eq!(h.header("Content-Type"), Some(HTML));
    c.get("/app.css").assert_whole(b"#app{}\n");
}

#[test]
fn spa_is_404_for_clients_that_do_not_accept_html() {
    let t = spa_server();
    let mut c = t.connect();
    for accept in [
        "Accept: application/json",
        "Accept: image/png, image/*;q=0.8",
        "Accept: text/html;q=0",
    ] {
        let r = c.get_h("/some/route", &[accept]);
        assert_eq!(r.status, 404, "{accept}\n{}", r.describe());
        r.assert_line(404);
        assert_ne!(
            r.body,
            SPA_INDEX.as_bytes(),
            "{accept}: the SPA index was served"
        );
    }
}

#[test]
fn spa_star_star_accepts_html_so_a_missing_asset_gets_the_index() {
    // `Accept: */*` admits text/html, so a missing /app.js gets the SPA page with
    // 200: a client that wants a real 404 for assets must not send */*.
    let t = spa_server();
    let r = t.get_h("/app.js", &["Accept: */*"]);
    assert_spa_index(&r, "GET /app.js with Accept: */*");
    let r = t.get_h("/app.js", &["Accept: text/*"]);
    assert_spa_index(&r, "GET /app.js with Accept: text/*");
}

#[test]
fn spa_still_serves_existing_files_as_themselves() {
    let t = spa_server();
    let mut c = t.connect();
    let r = c.get_h("/app.css", &[BROWSER_ACCEPT]);
    r.assert_whole(b"#app{}\n");
    assert_eq!(r.header("Content-Type"), Some("text/css; charset=utf-8"));
    let r = c.get_h("/assets/logo.svg", &["Accept: application/json"]);
    r.assert_whole(b"<svg/>\n");
    let r = c.get_h("/", &[BROWSER_ACCEPT]);
    assert_spa_index(&r, "GET /");
    let r = c.get_h("/404.html", &[BROWSER_ACCEPT]);
    r.assert_whole(b"<h1>custom not found</h1>\n");
}

#[test]
fn spa_file_is_relative_to_the_root() {
    let t = TestServer::with(
        |root| {
            write(root, "app/shell.html", "<p>shell</p>\n");
        },
        |cfg| cfg.spa = Some("app/shell.html".into()),
    );
    let r = t.get_h("/anything/here", &[BROWSER_ACCEPT]);
    assert_eq!(r.status, 200, "{}", r.describe());
    r.assert_whole(b"<p>shell</p>\n");
    assert_eq!(r.header("Content-Type"), Some(HTML));
}

// ----- 404.html ----------------------------------------------------------

#[test]
fn custom_404_html_is_served_with_status_404() {
    let t = TestServer::with(spa_files, |_| {});
    let mut c = t.connect();
    for target in ["/missing", "/some/route", "/app.js"] {
        let r = c.get_h(target, &[BROWSER_ACCEPT]);
        r.assert_line(404);
        assert_eq!(r.text(), "<h1>custom not found</h1>\n", "GET {target}");
        assert_eq!(r.header("Content-Type"), Some(HTML));
        assert_eq!(r.header("Content-Length"), Some("26"));
        r.assert_not_closing();
    }
    let h = c.head("/missing");
    h.assert_line(404);
    assert_eq!(h.header("Content-Length"), Some("26"));
    c.get("/app.css").assert_whole(b"#app{}\n");
}

#[test]
fn without_404_html_the_built_in_page_is_served() {
    let t = TestServer::with(
        |root| {
            write(root, "a.txt", "a\n");
        },
        |_| {},
    );
    let r = t.get_h("/missing", &[BROWSER_ACCEPT]);
    r.assert_error(404).assert_line(404);
}

// ----- --pretty-urls -----------------------------------------------------

fn pretty_files(root: &Path) {
    write(root, "index.html", "<h1>home</h1>\n");
    write(root, "about.html", "<h1>about</h1>\n");
    write(root, "docs/index.html", "<h1>docs</h1>\n");
    write(root, "blog/post.html", "<h1>post</h1>\n");
}

#[test]
fn pretty_urls_serve_name_html() {
    let t = TestServer::with(pretty_files, |cfg| cfg.pretty_urls = true);
    let mut c = t.connect();
    for (target, body) in [
        ("/about", "<h1>about</h1>\n"),
        ("/about?x=1", "<h1>about</h1>\n"),
        ("/about.html", "<h1>about</h1>\n"),
        ("/blog/post", "<h1>post</h1>\n"),
        ("/docs/", "<h1>docs</h1>\n"),
        ("/", "<h1>home</h1>\n"),
    ] {
        let r = c.get(target);
        assert_eq!(r.status, 200, "GET {target}\n{}", r.describe());
        r.assert_whole(body.as_bytes());
        assert_eq!(r.header("Content-Type"), Some(HTML), "GET {target}");
        assert_eq!(r.header("Accept-Ranges"), Some("bytes"), "GET {target}");
    }
    let r = c.get("/docs");
    r.assert_line(301);
    assert_eq!(r.header("Location"), Some("docs/"));
    c.get("/nothing").assert_error(404);
    c.get("/blog/nothing").assert_error(404);
}

#[test]
fn without_pretty_urls_the_bare_name_is_404() {
    let t = TestServer::with(pretty_files, |_| {});
    t.get("/about").assert_error(404);
    t.get("/about.html").assert_whole(b"<h1>about</h1>\n");
}

// ----- --listing ---------------------------------------------------------

const WEIRD: &str = "a<b>&\"c\".txt";

fn listing_files(root: &Path) {
    std::fs::create_dir_all(root.join("list/0dir")).unwrap();
    write(root, "list/0dir/inner.txt", "inner\n");
    let p = write(root, &format!("list/{WEIRD}"), "weird\n");
    set_mtime(&p, 1_700_000_000, 0);
    let p = write(root, "list/bravo.txt", "b".repeat(742));
    set_mtime(&p, 1_700_000_000, 0);
    let p = write(root, "list/zulu.bin", pattern_bytes(123, 2));
    set_mtime(&p, 1_700_000_000, 0);
    write(root, "list/.secret", "hidden\n");
    write(root, "withindex/index.html", "<h1>with index</h1>\n");
    write(root, "withindex/other.txt", "other\n");
}

/// Decode the HTML character references a listing may use.
fn html_unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(semi) = rest.find(';').filter(|&j| j <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..semi];
        let ch = match ent {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                u32::from_str_radix(&ent[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// `html` without its tags.
fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(ch),
            _ => {}
        }
    }
    out
}

/// What a browser sends for a URL path: bytes outside the safe set percent-encoded.
fn browser_encode(path: &str) -> String {
    let mut out = String::new();
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@%".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `href` attribute values of `html`, HTML-unescaped.
fn hrefs(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("href=") {
        rest = &rest[i + 5..];
        let (quote, body) = match rest.as_bytes().first() {
            Some(b'"') => ('"', &rest[1..]),
            Some(b'\'') => ('\'', &rest[1..]),
            _ => continue,
        };
        if let Some(end) = body.find(quote) {
            out.push(html_unescape(&body[..end]));
            rest = &body[end..];
        }
    }
    out
}

#[test]
fn listing_shows_escaped_sorted_entries_with_sizes() {
    let t = TestServer::with(listing_files, |cfg| cfg.listing = true);
    let r = t.get_h("/list/", &[BROWSER_ACCEPT]);
    r.assert_line(200);
    assert_eq!(r.header("Content-Type"), Some(HTML), "{}", r.describe());
    let html = r.text();
    assert!(
        !html.contains(WEIRD),
        "raw, unescaped name in the listing:\n{html}"
    );
    // The visible text: tags removed, character references decoded.
    let text = html_unescape(&strip_tags(&html));
    assert!(
        text.contains(WEIRD),
        "the escaped name is not in the listing:\n{html}"
    );
    assert!(!html.contains(".secret"), "dotfile listed:\n{html}");
    assert!(
        !html.contains("inner.txt"),
        "a subdirectory's content listed:\n{html}"
    );
    // Sorted by name; the directory marked with a trailing slash.
    let positions: Vec<usize> = ["0dir/", WEIRD, "bravo.txt", "zulu.bin"]
        .iter()
        .map(|n| {
            text.find(n)
                .unwrap_or_else(|| panic!("{n:?} not in the listing:\n{html}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "entries not sorted by name ({positions:?}):\n{html}"
    );
    assert!(
        text.contains("742"),
        "bravo.txt's size 742 not shown:\n{html}"
    );
    assert!(
        text.contains("123"),
        "zulu.bin's size 123 not shown:\n{html}"
    );
}

#[test]
fn listing_links_lead_to_the_entries() {
    let t = TestServer::with(listing_files, |cfg| cfg.listing = true);
    let html = t.get("/list/").text();
    let links = hrefs(&html);
    let mut c = t.connect();
    for (name, body) in [
        (WEIRD, b"weird\n".to_vec()),
        ("bravo.txt", "b".repeat(742).into_bytes()),
        ("zulu.bin", pattern_bytes(123, 2)),
    ] {
        let link = links
            .iter()
            .find(|l| percent_decode(l).ends_with(name.as_bytes()))
            .unwrap_or_else(|| panic!("no link to {name:?} among {links:?}"));
        let target = if link.starts_with('/') {
            link.clone()
        } else {
            format!("/list/{}", link.trim_start_matches("./"))
        };
        let r = c.get(&browser_encode(&target));
        assert_eq!(
            r.status,
            200,
            "following {link:?} for {name:?}\n{}",
            r.describe()
        );
        assert_body_eq(&r.body, &body, name);
    }
    let dir_link = links
        .iter()
        .find(|l| percent_decode(l).ends_with(b"0dir/"))
        .unwrap_or_else(|| panic!("no link to 0dir/ among {links:?}"));
    let target = if dir_link.starts_with('/') {
        dir_link.clone()
    } else {
        format!("/list/{}", dir_link.trim_start_matches("./"))
    };
    let r = c.get(&browser_encode(&target));
    r.assert_line(200);
    assert!(r.text().contains("inner.txt"), "{}", r.describe());
}

#[test]
fn listing_includes_dotfiles_when_hidden_is_on() {
    let t = TestServer::with(listing_files, |cfg| {
        cfg.listing = true;
        cfg.hidden = true;
    });
    let r = t.get("/list/");
    r.assert_line(200);
    assert!(r.text().contains(".secret"), "{}", r.describe());
}

#[test]
fn listing_does_not_replace_an_index_or_the_redirect() {
    let t = TestServer::with(listing_files, |cfg| cfg.listing = true);
    t.get("/withindex/").assert_whole(b"<h1>with index</h1>\n");
    let r = t.get("/list");
    r.assert_line(301);
    assert_eq!(r.header("Location"), Some("list/"));
}

#[test]
fn listing_off_is_404() {
    let t = TestServer::with(listing_files, |_| {});
    let r = t.get("/list/");
    r.assert_error(404);
    assert!(!r.text().contains("bravo"), "{}", r.describe());
    let r = t.get_h("/list/", &["Accept: application/json"]);
    r.assert_line(404);
    assert!(!r.text().contains("bravo"), "{}", r.describe());
}

// A minimal JSON reader for the listing: values, arrays, objects, strings.

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && b" \t\r\n".contains(&self.s[self.i]) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", b as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("bad array at {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.value()? else {
                        return Err(format!("non-string key at {}", self.i));
                    };
                    self.eat(b':')?;
                    let v = self.value()?;
                    fields.push((k, v));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("bad object at {}", self.i)),
                    }
                }
            }
            Some(b'"') => {
                self.i += 1;
                let mut out: Vec<u8> = Vec::new();
                loop {
                    let b = *self.s.get(self.i).ok_or("unterminated string")?;
                    self.i += 1;
                    match b {
                        b'"' => break,
                        b'\\' => {
                            let e = *self.s.get(self.i).ok_or("bad escape")?;
                            self.i += 1;
                            match e {
                                b'"' | b'\\' | b'/' => out.push(e),
                                b'n' => out.push(b'\n'),
                                b't' => out.push(b'\t'),
                                b'r' => out.push(b'\r'),
                                b'b' => out.push(8),
                                b'f' => out.push(12),
                                b'u' => {
                                    let hex = std::str::from_utf8(&self.s[self.i..self.i + 4])
                                        .map_err(|_| "bad \\u")?;
                                    let cp = u32::from_str_radix(hex, 16).map_err(|_| "bad \\u")?;
                                    self.i += 4;
                                    let c = char::from_u32(cp).ok_or("bad code point")?;
                                    out.extend_from_slice(c.to_string().as_bytes());
                                }
                                _ => return Err(format!("bad escape \\{}", e as char)),
                            }
                        }
                        b if b < 0x20 => return Err("control character in a string".into()),
                        b => out.push(b),
                    }
                }
                String::from_utf8(out)
                    .map(Json::Str)
                    .map_err(|_| "string not UTF-8".into())
            }
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(b) if b.is_ascii_digit() || *b == b'-' => {
                let start = self.i;
                while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                Ok(Json::Num(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
            _ => Err(format!("unexpected byte at {}", self.i)),
        }
    }
}

fn parse_json(body: &[u8]) -> Json {
    let mut p = JsonParser { s: body, i: 0 };
    let v = p
        .value()
        .unwrap_or_else(|e| panic!("bad JSON: {e}: {}", String::from_utf8_lossy(body)));
    p.ws();
    assert_eq!(
        p.i,
        body.len(),
        "trailing bytes after the JSON: {}",
        String::from_utf8_lossy(body)
    );
    v
}

#[test]
fn listing_as_json_for_accept_application_json() {
    let t = TestServer::with(listing_files, |cfg| cfg.listing = true);
    let r = t.get_h("/list/", &["Accept: application/json"]);
    r.assert_line(200);
    let ct = r.expect_header("Content-Type");
    assert!(
        ct.starts_with("application/json"),
        "Content-Type {ct:?}\n{}",
        r.describe()
    );
    let Json::Arr(entries) = parse_json(&r.body) else {
        panic!("the listing is not a JSON array: {}", r.text());
    };
    let names: Vec<&str> = entries
        .iter()
        .map(|e| match e.get("name") {
            Some(Json::Str(s)) => s.as_str(),
            other => panic!("entry without a string name: {other:?} in {e:?}"),
        })
        .collect();
    let mut bare: Vec<&str> = names.iter().map(|n| n.trim_end_matches('/')).collect();
    bare.sort();
    assert_eq!(
        bare,
        ["0dir", WEIRD, "bravo.txt", "zulu.bin"],
        "names {names:?}"
    );
    for e in &entries {
        let name = match e.get("name") {
            Some(Json::Str(s)) => s.trim_end_matches('/'),
            _ => unreachable!(),
        };
        let is_dir = name == "0dir";
        assert_eq!(
            e.get("dir"),
            Some(&Json::Bool(is_dir)),
            "dir of {name}: {e:?}"
        );
        assert!(
            matches!(e.get("size"), Some(Json::Num(_))),
            "size of {name}: {e:?}"
        );
        match e.get("mtime") {
            Some(Json::Num(_)) | Some(Json::Str(_)) => {}
            other => panic!("mtime of {name}: {other:?}"),
        }
        let size = |n: &str| match e.get("size") {
            Some(Json::Num(s)) => assert_eq!(s, n, "size of {name}"),
            _ => unreachable!(),
        };
        match name {
            "bravo.txt" => size("742"),
            "zulu.bin" => size("123"),
            WEIRD => size("6"),
            _ => {}
        }
        if !is_dir {
            match e.get("mtime") {
                Some(Json::Num(n)) => assert!(
                    n == "1700000000" || n == "1700000000000",
                    "mtime of {name}: {n} is neither seconds nor milliseconds of the file's"
                ),
                Some(Json::Str(s)) => assert!(
                    s == "Tue, 14 Nov 2023 22:13:20 GMT" || s.starts_with("2023-11-14T22:13:20"),
                    "mtime of {name}: {s:?}"
                ),
                _ => unreachable!(),
            }
        }
    }
}

// ----- -H / --header -----------------------------------------------------

#[test]
fn extra_headers_are_on_every_kind_of_response() {
    let t = TestServer::with(
        |root| {
            write(root, "a.txt", "alpha\n");
            write(root, "big.bin", pattern_bytes(300 * 1024, 4));
            write(root, "dir/index.html", "<p>dir</p>\n");
        },
        |cfg| {
            cfg.headers = vec![
                ("X-Frame-Options".into(), "DENY".into()),
                ("X-Test".into(), "1".into()),
            ]
        },
    );
    let mut c = t.connect();
    let ok = c.get("/a.txt");
    let etag = ok.expect_header("ETag").to_string();
    let responses = [
        ("200", ok.clone()),
        ("200 big", c.get("/big.bin")),
        ("200 HEAD", c.head("/a.txt")),
        ("200 dir", c.get("/dir/")),
        ("404", c.get("/missing")),
        (
            "304",
            c.get_h("/a.txt", &[&format!("If-None-Match: {etag}")]),
        ),
        ("206", c.get_h("/a.txt", &["Range: bytes=0-1"])),
        ("206 big", c.get_h("/big.bin", &["Range: bytes=0-1"])),
        ("301", c.get("/dir")),
    ];
    for (what, r) in &responses {
        let code: u16 = what[..3].parse().unwrap();
        assert_eq!(r.status, code, "{what}\n{}", r.describe());
        assert_eq!(
            r.header_all("X-Frame-Options"),
            ["DENY"],
            "{what}\n{}",
            r.describe()
        );
        assert_eq!(r.header_all("X-Test"), ["1"], "{what}\n{}", r.describe());
    }
    assert_eq!(c.get("/a.txt").text(), "alpha\n");
}

// ----- --cors and OPTIONS ------------------------------------------------

fn cors_files(root: &Path) {
    write(root, "file.txt", "cors file\n");
}

/// The comma-separated tokens of a field value.
fn tokens(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .collect()
}

#[test]
fn cors_allows_any_origin_on_200_and_404() {
    let t = TestServer::with(cors_files, |cfg| cfg.cors = true);
    let mut c = t.connect();
    let r = c.get_h("/file.txt", &["Origin: https://example.com"]);
    r.assert_whole(b"cors file\n");
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("*"),
        "{}",
        r.describe()
    );
    let r = c.get("/file.txt");
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("*"),
        "{}",
        r.describe()
    );
    let r = c.get_h("/missing", &["Origin: https://example.com"]);
    r.assert_error(404);
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("*"),
        "{}",
        r.describe()
    );
}

#[test]
fn cors_preflight_is_204() {
    let t = TestServer::with(cors_files, |cfg| cfg.cors = true);
    let mut c = t.connect();
    c.send(request(
        "OPTIONS",
        "/file.txt",
        &[
            "Origin: https://example.com",
            "Access-Control-Request-Method: GET",
        ],
    ));
    let r = c.read_response();
    r.assert_line(204);
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("*"),
        "{}",
        r.describe()
    );
    let methods = tokens(r.expect_header("Access-Control-Allow-Methods"));
    for m in ["GET", "HEAD", "OPTIONS"] {
        assert!(methods.iter().any(|x| x == m), "{m} not in {methods:?}");
    }
    assert_eq!(
        r.header("Content-Length"),
        None,
        "a 204 has no Content-Length\n{}",
        r.describe()
    );
    r.assert_not_closing();
    // No body: the next response on the connection is intact.
    c.get("/file.txt").assert_whole(b"cors file\n");
}

#[test]
fn without_cors_there_is_no_allow_origin() {
    let t = TestServer::with(cors_files, |_| {});
    let r = t.get_h("/file.txt", &["Origin: https://example.com"]);
    r.assert_line(200);
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
}

#[test]
fn options_is_204_with_allow() {
    let t = TestServer::with(cors_files, |_| {});
    let mut c = t.connect();
    for target in ["/x", "/file.txt", "*"] {
        c.send(request("OPTIONS", target, &[]));
        let r = c.read_response();
        assert_eq!(r.status, 204, "OPTIONS {target}\n{}", r.describe());
        r.assert_line(204);
        assert_eq!(
            r.header("Allow"),
            Some("GET, HEAD, OPTIONS"),
            "OPTIONS {target}"
        );
        assert_eq!(
            r.header("Content-Length"),
            None,
            "OPTIONS {target}: 204 with Content-Length"
        );
        r.assert_not_closing();
    }
    c.get("/file.txt").assert_whole(b"cors file\n");
}

#[test]
fn post_is_405_with_allow_including_options() {
    let t = TestServer::with(cors_files, |_| {});
    let mut c = t.connect();
    c.send(request("POST", "/file.txt", &["Content-Length: 0"]));
    let r = c.read_response();
    r.assert_error(405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD, OPTIONS"));
    c.get("/file.txt").assert_whole(b"cors file\n");
}

#[test]
fn custom_404_ignores_ranges_and_preconditions() {
    // RFC 9110 §13.2.1: preconditions are ignored when the response would not be
    // a 2xx; a Range applies to a 200 only. A missing path stays a full 404.
    let t = TestServer::with(spa_files, |_| {});
    let page = b"<h1>custom not found</h1>\n";
    let page_tag = t.get("/404.html").expect_header("ETag").to_string();
    let mut c = t.connect();
    for h in [
        "Range: bytes=0-3".to_string(),
        "Range: bytes=1000-".to_string(),
        "If-None-Match: *".to_string(),
        format!("If-None-Match: {page_tag}"),
        "If-Match: \"nope\"".to_string(),
        "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT".to_string(),
    ] {
        let r = c.get_h("/missing", &[&h]);
        assert_eq!(r.status, 404, "{h}\n{}", r.describe());
        r.assert_line(404);
        assert_eq!(r.body, page, "{h}");
        assert_eq!(r.header("Content-Range"), None, "{h}");
    }
}

#[test]
fn spa_does_not_hide_bad_requests_or_other_methods() {
    let t = spa_server();
    let (mut c, r) = t.raw(request("GET", "/%zz", &[BROWSER_ACCEPT]), false);
    r.assert_error(400);
    c.assert_closed();
    let mut c = t.connect();
    c.send(request("POST", "/some/route", &["Content-Length: 0"]));
    c.read_response().assert_error(405);
}

#[test]
fn listing_of_the_root_and_head() {
    let t = TestServer::with(
        |root| {
            write(root, "one.txt", "1\n");
            write(root, "two.txt", "22\n");
        },
        |cfg| cfg.listing = true,
    );
    let mut c = t.connect();
    let r = c.get("/");
    r.assert_line(200);
    assert_eq!(r.header("Content-Type"), Some(HTML));
    let text = html_unescape(&strip_tags(&r.text()));
    assert!(
        text.contains("one.txt") && text.contains("two.txt"),
        "{}",
        r.describe()
    );
    let h = c.head("/");
    h.assert_line(200);
    assert_eq!(
        h.header("Content-Length"),
        Some(r.body.len().to_string().as_str())
    );
    let j = c.get_h("/", &["Accept: application/json"]);
    j.assert_line(200);
    let Json::Arr(entries) = parse_json(&j.body) else {
        panic!("not an array: {}", j.text())
    };
    assert_eq!(entries.len(), 2, "{}", j.text());
}

#[test]
fn listing_with_awkward_names_stays_valid_utf8_html_and_json() {
    use std::os::unix::ffi::OsStrExt;
    let t = TestServer::with(
        |root| {
            let dir = root.join("odd");
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(
                dir.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")),
                "latin-1\n",
            )
            .unwrap();
            std::fs::write(dir.join("tab\there.txt"), "tab\n").unwrap();
            std::fs::write(dir.join("new\nline.txt"), "nl\n").unwrap();
            std::fs::write(dir.join("quote'\\back.txt"), "q\n").unwrap();
            std::fs::write(dir.join("ok.txt"), "ok\n").unwrap();
        },
        |cfg| cfg.listing = true,
    );
    let r = t.get("/odd/");
    r.assert_line(200);
    assert!(
        std::str::from_utf8(&r.body).is_ok(),
        "the HTML listing is declared UTF-8 but is not\n{}",
        r.describe()
    );
    assert!(r.text().contains("ok.txt"));
    let j = t.get_h("/odd/", &["Accept: application/json"]);
    j.assert_line(200);
    // RFC 8259: JSON text is UTF-8, control characters in strings are escaped.
    let Json::Arr(entries) = parse_json(&j.body) else {
        panic!("not an array: {}", j.text())
    };
    let names: Vec<String> = entries
        .iter()
        .map(|e| match e.get("name") {
            Some(Json::Str(s)) => s.clone(),
            other => panic!("bad name {other:?}"),
        })
        .collect();
    for want in [
        "tab\there.txt",
        "new\nline.txt",
        "quote'\\back.txt",
        "ok.txt",
    ] {
        assert!(names.iter().any(|n| n == want), "{want:?} not in {names:?}");
    }
    assert_eq!(names.len(), 5, "{names:?}");
}

#[test]
fn extra_headers_on_error_and_options_responses_too() {
    // Config::headers: "Extra header fields on every response".
    let t = TestServer::with(
        |root| {
            write(root, "a.txt", "alpha\n");
        },
        |cfg| cfg.headers = vec![("X-Test".into(), "1".into())],
    );
    let mut c = t.connect();
    let responses = [
        ("412", c.get_h("/a.txt", &["If-Match: \"x\""])),
        ("416", c.get_h("/a.txt", &["Range: bytes=100-"])),
        ("204", c.req("OPTIONS", "/a.txt", &[])),
        ("405", c.req("DELETE", "/a.txt", &[])),
    ];
    for (what, r) in &responses {
        assert_eq!(
            r.status,
            what.parse::<u16>().unwrap(),
            "{what}\n{}",
            r.describe()
        );
        assert_eq!(r.header_all("X-Test"), ["1"], "{what}\n{}", r.describe());
    }
    let (_c, r) = t.raw("GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", false);
    r.assert_error(400);
    assert_eq!(r.header_all("X-Test"), ["1"], "400\n{}", r.describe());
}

#[test]
fn cors_allow_origin_on_304_206_and_301() {
    // Config::cors: "Access-Control-Allow-Origin: * on every response".
    let t = TestServer::with(
        |root| {
            write(root, "file.txt", "cors file\n");
            write(root, "dir/index.html", "<p>d</p>\n");
        },
        |cfg| cfg.cors = true,
    );
    let mut c = t.connect();
    let etag = c.get("/file.txt").expect_header("ETag").to_string();
    for (what, r) in [
        (
            "304",
            c.get_h("/file.txt", &[&format!("If-None-Match: {etag}")]),
        ),
        ("206", c.get_h("/file.txt", &["Range: bytes=0-3"])),
        ("301", c.get("/dir")),
        ("HEAD 200", c.head("/file.txt")),
    ] {
        assert_eq!(
            r.header("Access-Control-Allow-Origin"),
            Some("*"),
            "{what}\n{}",
            r.describe()
        );
    }
}

#[test]
fn listing_escapes_the_directory_path_too() {
    let evil = "<img src=x onerror=alert(1)>";
    let t = TestServer::with(
        |root| {
            write(root, &format!("{evil}/file.txt"), "f\n");
        },
        |cfg| cfg.listing = true,
    );
    let target = format!("/{}/", browser_encode(evil));
    let r = t.get(&target);
    assert_eq!(r.status, 200, "GET {target}\n{}", r.describe());
    assert!(
        !r.text().contains("<img"),
        "raw markup from a path in the listing:\n{}",
        r.text()
    );
    assert!(r.text().contains("file.txt"));
    let j = t.get_h(&target, &["Accept: application/json"]);
    j.assert_line(200);
    parse_json(&j.body);
}
