//! Conditional requests (RFC 9110 §13): If-Match, If-Unmodified-Since,
//! If-None-Match and If-Modified-Since in the order of §13.2.2; 304 and 412
//! responses; small (cached) and large (streamed) files.

use std::path::Path;

use super::support::*;

const SMALL_MTIME: u64 = 1_700_000_000; // Tue, 14 Nov 2023 22:13:20 GMT, hex 6553f100
const SMALL_LEN: usize = 1000; // 0x3e8
const BIG_MTIME: u64 = 1_600_000_000; // Sun, 13 Sep 2020 12:26:40 GMT, hex 5f5e1000
const BIG_LEN: usize = 3 * 1024 * 1024; // 0x300000, above the 128 KiB cache limit
const HTML_MTIME: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

fn small() -> Vec<u8> {
    text_bytes(SMALL_LEN)
}

fn big() -> Vec<u8> {
    pattern_bytes(BIG_LEN, 11)
}

fn files(root: &Path) {
    let p = write(root, "small.txt", small());
    set_mtime(&p, SMALL_MTIME, 0);
    let p = write(root, "big.bin", big());
    set_mtime(&p, BIG_MTIME, 0);
    let p = write(root, "index.html", "<h1>home</h1>\n");
    set_mtime(&p, HTML_MTIME, 0);
}

fn server() -> TestServer {
    TestServer::with(files, |_| {})
}

/// One file under test: its target, bytes and validators.
struct Target {
    path: &'static str,
    bytes: Vec<u8>,
    etag: String,
    /// The tag this file would carry in the other form (content hash for the file sent from
    /// disk, nginx's mtime-size for the one held in memory): it must never match.
    other_form: String,
    last_modified: String,
    mtime: u64,
}

fn targets() -> Vec<Target> {
    vec![
        Target {
            path: "/small.txt",
            bytes: small(),
            // Held in memory: its content decides.
            etag: content_etag(&small()),
            other_form: etag_of(SMALL_MTIME, SMALL_LEN as u64),
            last_modified: "Tue, 14 Nov 2023 22:13:20 GMT".into(),
            mtime: SMALL_MTIME,
        },
        Target {
            path: "/big.bin",
            bytes: big(),
            // Sent from disk: nginx's mtime-size.
            etag: "\"5f5e1000-300000\"".into(),
            other_form: content_etag(&big()),
            last_modified: "Sun, 13 Sep 2020 12:26:40 GMT".into(),
            mtime: BIG_MTIME,
        },
    ]
}

#[test]
fn validators_are_as_expected() {
    // The premise of every other test here.
    let t = server();
    for f in targets() {
        let r = t.get(f.path);
        r.assert_whole(&f.bytes);
        assert_eq!(r.header("ETag"), Some(f.etag.as_str()), "{}", f.path);
        assert_ne!(f.etag, f.other_form);
        assert_eq!(r.header("Last-Modified"), Some(f.last_modified.as_str()));
        assert_eq!(f.last_modified, imf_fixdate(f.mtime));
    }
}

// ----- If-None-Match -----------------------------------------------------

#[test]
fn if_none_match_with_the_etag_is_304_and_the_connection_stays_usable() {
    let t = server();
    for f in targets() {
        let mut c = t.connect();
        // The 304 and a second request in one write: a stray body would corrupt the second.
        c.send(format!(
            "{}{}",
            request("GET", f.path, &[&format!("If-None-Match: {}", f.etag)]),
            request("GET", "/small.txt", &[])
        ));
        let r = c.read_response();
        r.assert_not_modified(&f.etag, &f.last_modified);
        r.assert_not_closing();
        assert_eq!(r.header("Server"), Some("fserve"));
        let next = c.read_response();
        next.assert_whole(&small());
        // And once more, after the pipeline drained.
        let r = c.get_h(f.path, &[&format!("If-None-Match: {}", f.etag)]);
        r.assert_not_modified(&f.etag, &f.last_modified);
        c.get("/small.txt").assert_whole(&small());
        c.assert_silent_for(std::time::Duration::from_millis(100));
    }
}

#[test]
fn if_none_match_on_head_is_304() {
    let t = server();
    for f in targets() {
        let mut c = t.connect();
        let r = c.req("HEAD", f.path, &[&format!("If-None-Match: {}", f.etag)]);
        r.assert_not_modified(&f.etag, &f.last_modified);
        c.get("/small.txt").assert_whole(&small());
    }
}

#[test]
fn if_none_match_uses_weak_comparison_star_and_lists() {
    let t = server();
    for f in targets() {
        let mut c = t.connect();
        let weak = format!("W/{}", f.etag);
        let list = format!("\"nope\", W/\"other\",{}", f.etag);
        let spaced = format!("  \"a\" ,  {}  , \"b\"  ", weak);
        for inm in [weak.as_str(), "*", list.as_str(), spaced.as_str()] {
            let r = c.get_h(f.path, &[&format!("If-None-Match: {inm}")]);
            assert_eq!(
                r.status,
                304,
                "{} If-None-Match: {inm}\n{}",
                f.path,
                r.describe()
            );
            r.assert_not_modified(&f.etag, &f.last_modified);
        }
        c.get("/small.txt").assert_whole(&small());
    }
}

#[test]
fn if_none_match_not_matching_is_200() {
    let t = server();
    for f in targets() {
        let mut c = t.connect();
        // Another length, another mtime, another content, the file's tag in the form it does
        // not use (an nginx-era tag of a file now held in memory), unquoted, a list of others.
        let other_len = etag_of(f.mtime, f.bytes.len() as u64 + 1);
        let other_mtime = etag_of(f.mtime + 1, f.bytes.len() as u64);
        let other_content = content_etag(b"other content");
        let unquoted = f.etag.trim_matches('"').to_string();
        for inm in [
            other_len.as_str(),
            other_mtime.as_str(),
            other_content.as_str(),
            f.other_form.as_str(),
            "\"x\", W/\"y\"",
            unquoted.as_str(),
        ] {
            let r = c.get_h(f.path, &[&format!("If-None-Match: {inm}")]);
            assert_eq!(
                r.status,
                200,
                "{} If-None-Match: {inm}\n{}",
                f.path,
                r.describe()
            );
            r.assert_whole(&f.bytes);
            assert_eq!(r.header("ETag"), Some(f.etag.as_str()));
        }
    }
}

// ----- If-Modified-Since -------------------------------------------------

#[test]
fn if_modified_since_at_or_after_last_modified_is_304() {
    let t = server();
    for f in targets() {
        let mut c = t.connect();
        let dates = [
            f.last_modified.clone(),
            imf_fixdate(f.mtime + 1),
            imf_fixdate(f.mtime + 86_400 * 30),
            imf_fixdate(now_secs()),
        ];
        for d in &dates {
            let r = c.get_h(f.path, &[&format!("If-Modified-Since: {d}")]);
            assert_eq!(
                r.status,
                304,
                "{} If-Modified-Since: {d}\n{}",
                f.path,
                r.describe()
            );
            r.assert_not_modified(&f.etag, &f.last_modified);
        }
        let h = c.req(
            "HEAD",
            f.path,
            &[&format!("If-Modified-Since: {}", f.last_modified)],
        );
        h.assert_not_modified(&f.etag, &f.last_modified);
        c.get("/small.txt").assert_whole(&small());
    }
}

#[test]
fn if_modified_since_before_last_modified_is_200() {
    let t = server();
    for f in targets() {
        let mut c = t.connect();
        for d in [
            imf_fixdate(f.mtime - 1),
            imf_fixdate(f.mtime - 86_400 * 365),
        ] {
            let r = c.get_h(f.path, &[&format!("If-Modified-Since: {d}")]);
            assert_eq!(
                r.status,
                200,
                "{} If-Modified-Since: {d}\n{}",
                f.path,
                r.describe()
            );
            r.assert_whole(&f.bytes);
        }
    }
}

#[test]
fn unparseable_if_modified_since_is_ignored() {
    let t = server();
    for f in targets() {
        let mut c = t.connect();
        let lowercase = f.last_modified.to_lowercase();
        let no_gmt = f.last_modified.trim_end_matches(" GMT").to_string();
        for d in ["yesterday", "0", "", lowercase.as_str(), no_gmt.as_str()] {
            let r = c.get_h(f.path, &[&format!("If-Modified-Since: {d}")]);
            assert_eq!(
                r.status,
                200,
                "{} If-Modified-Since: {d:?}\n{}",
                f.path,
                r.describe()
            );
            r.assert_whole(&f.bytes);
        }
    }
}

#[test]
fn if_modified_since_accepts_the_obsolete_date_forms() {
    // RFC 9110 §5.6.7: a recipient MUST accept all three HTTP-date formats.
    // small.txt: Tue, 14 Nov 2023 22:13:20 GMT.
    let t = server();
    let f = &targets()[0];
    let mut c = t.connect();
    for d in [
        "Tuesday, 14-Nov-23 22:13:20 GMT",
        "Tue Nov 14 22:13:20 2023",
    ] {
        let r = c.get_h("/small.txt", &[&format!("If-Modified-Since: {d}")]);
        assert_eq!(r.status, 304, "If-Modified-Since: {d}\n{}", r.describe());
        r.assert_not_modified(&f.etag, &f.last_modified);
    }
    for d in [
        "Tuesday, 14-Nov-23 22:13:19 GMT",
        "Tue Nov 14 22:13:19 2023",
    ] {
        let r = c.get_h("/small.txt", &[&format!("If-Modified-Since: {d}")]);
        assert_eq!(r.status, 200, "If-Modified-Since: {d}\n{}", r.describe());
    }
}

#[test]
fn if_none_match_takes_precedence_over_if_modified_since() {
    let t = server();
    for f in targets() {
        let mut c = t.connect();
        // If-Modified-Since alone would be 304; the non-matching If-None-Match wins.
        let r = c.get_h(
            f.path,
            &[
                "If-None-Match: \"something-else\"",
                &format!("If-Modified-Since: {}", f.last_modified),
            ],
        );
        assert_eq!(r.status, 200, "{}\n{}", f.path, r.describe());
        r.assert_whole(&f.bytes);
        // A matching If-None-Match with an old If-Modified-Since: still 304.
        let r = c.get_h(
            f.path,
            &[
                &format!("If-Modified-Since: {}", imf_fixdate(f.mtime - 1000)),
                &format!("If-None-Match: {}", f.etag),
            ],
        );
        r.assert_not_modified(&f.etag, &f.last_modified);
    }
}

// ----- If-Match ----------------------------------------------------------

#[test]
fn if_match_with_the_etag_star_or_a_list_proceeds() {
    let t = server();
    for f in targets() {
        let mut c = t.connect();
        let list = format!("\"a\", {} ,\"b\"", f.etag);
        for im in [f.etag.as_str(), "*", list.as_str()] {
            let r = c.get_h(f.path, &[&format!("If-Match: {im}")]);
            assert_eq!(r.status, 200, "{} If-Match: {im}\n{}", f.path, r.describe());
            r.assert_whole(&f.bytes);
        }
    }
}

#[test]
fn if_match_failing_is_412() {
    let t = server();
    for f in targets() {
        let mut c = t.connect();
        let weak = format!("W/{}", f.etag);
        let weak_list = format!("\"a\", W/{}", f.etag);
        let other = etag_of(f.mtime, f.bytes.len() as u64 + 1);
        for im in [
            weak.as_str(),
            weak_list.as_str(),
            other.as_str(),
            f.other_form.as_str(),
            "\"x\"",
        ] {
            let r = c.get_h(f.path, &[&format!("If-Match: {im}")]);
            assert_eq!(r.status, 412, "{} If-Match: {im}\n{}", f.path, r.describe());
            r.assert_line(412).assert_error(412).assert_not_closing();
        }
        let h = c.req("HEAD", f.path, &["If-Match: \"x\""]);
        h.assert_line(412);
        assert!(h.body.is_empty());
        // The connection stays usable after a 412.
        c.get("/small.txt").assert_whole(&small());
    }
}

#[test]
fn failing_if_match_wins_over_a_matching_if_none_match() {
    let t = server();
    for f in targets() {
        let r = t.get_h(
            f.path,
            &["If-Match: \"other\"", &format!("If-None-Match: {}", f.etag)],
        );
        assert_eq!(r.status, 412, "{}\n{}", f.path, r.describe());
        r.assert_line(412).assert_error(412);
        // Passing If-Match, matching If-None-Match: 304.
        let r = t.get_h(
            f.path,
            &[
                &format!("If-Match: {}", f.etag),
                &format!("If-None-Match: {}", f.etag),
            ],
        );
        r.assert_not_modified(&f.etag, &f.last_modified);
    }
}

// ----- If-Unmodified-Since -----------------------------------------------

#[test]
fn if_unmodified_since_before_last_modified_is_412() {
    let t = server();
    for f in targets() {
        let mut c = t.connect();
        for d in [imf_fixdate(f.mtime - 1), imf_fixdate(f.mtime - 86_400)] {
            let r = c.get_h(f.path, &[&format!("If-Unmodified-Since: {d}")]);
            assert_eq!(
                r.status,
                412,
                "{} If-Unmodified-Since: {d}\n{}",
                f.path,
                r.describe()
            );
            r.assert_line(412).assert_error(412);
        }
        for d in [f.last_modified.clone(), imf_fixdate(f.mtime + 1)] {
            let r = c.get_h(f.path, &[&format!("If-Unmodified-Since: {d}")]);
            assert_eq!(
                r.status,
                200,
                "{} If-Unmodified-Since: {d}\n{}",
                f.path,
                r.describe()
            );
            r.assert_whole(&f.bytes);
        }
        // Unparseable: ignored.
        let r = c.get_h(f.path, &["If-Unmodified-Since: not a date"]);
        r.assert_whole(&f.bytes);
    }
}

#[test]
fn if_unmodified_since_is_ignored_when_if_match_is_present() {
    let t = server();
    for f in targets() {
        let r = t.get_h(
            f.path,
            &[
                &format!("If-Match: {}", f.etag),
                &format!("If-Unmodified-Since: {}", imf_fixdate(f.mtime - 86_400)),
            ],
        );
        assert_eq!(r.status, 200, "{}\n{}", f.path, r.describe());
        r.assert_whole(&f.bytes);
    }
}

#[test]
fn if_none_match_matching_beats_a_range() {
    // §13.2.2: If-None-Match (step 3) is evaluated before Range (step 5).
    let t = server();
    for f in targets() {
        let r = t.get_h(
            f.path,
            &[&format!("If-None-Match: {}", f.etag), "Range: bytes=0-9"],
        );
        r.assert_not_modified(&f.etag, &f.last_modified);
        assert!(r.header("Content-Range").is_none());
    }
}

// ----- Other cases -------------------------------------------------------

#[test]
fn conditionals_on_a_missing_file_are_404() {
    let t = server();
    let mut c = t.connect();
    for h in [
        "If-None-Match: *",
        "If-None-Match: \"6553f100-3e8\"",
        "If-Match: *",
        "If-Match: \"x\"",
        "If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT",
        "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT",
    ] {
        let r = c.get_h("/missing.txt", &[h]);
        assert_eq!(r.status, 404, "{h}\n{}", r.describe());
        r.assert_error(404);
    }
    c.get("/small.txt").assert_whole(&small());
}

#[test]
fn a_304_carries_the_cache_control_of_the_200() {
    let t = server();
    let ok = t.get("/index.html");
    ok.assert_line(200);
    assert_eq!(ok.header("Cache-Control"), Some("no-cache"));
    let etag = content_etag(b"<h1>home</h1>\n");
    assert_eq!(ok.header("ETag"), Some(etag.as_str()));
    for target in ["/index.html", "/"] {
        let r = t.get_h(target, &[&format!("If-None-Match: {etag}")]);
        r.assert_not_modified(&etag, "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            r.header("Cache-Control"),
            Some("no-cache"),
            "{target}\n{}",
            r.describe()
        );
    }
    // A file without Cache-Control on its 200 has none on its 304 either.
    let r = t.get_h("/small.txt", &["If-None-Match: *"]);
    r.assert_line(304);
    assert_eq!(r.header("Cache-Control"), None);
}

#[test]
fn many_304s_pipelined_in_one_write() {
    let t = server();
    let f = &targets()[0];
    let g = &targets()[1];
    let mut c = t.connect();
    let mut raw = String::new();
    for _ in 0..5 {
        raw.push_str(&request(
            "GET",
            f.path,
            &[&format!("If-None-Match: {}", f.etag)],
        ));
        raw.push_str(&request(
            "GET",
            g.path,
            &[&format!("If-Modified-Since: {}", g.last_modified)],
        ));
    }
    raw.push_str(&request("GET", "/small.txt", &[]));
    c.send(raw);
    for _ in 0..5 {
        c.read_response()
            .assert_not_modified(&f.etag, &f.last_modified);
        c.read_response()
            .assert_not_modified(&g.etag, &g.last_modified);
    }
    c.read_response().assert_whole(&small());
    c.assert_silent_for(std::time::Duration::from_millis(100));
}

#[test]
fn if_none_match_on_several_field_lines_is_one_list() {
    // RFC 9110 §5.3: several lines of a list field are one comma-joined list.
    let t = server();
    for f in targets() {
        let r = t.get_h(
            f.path,
            &[
                "If-None-Match: \"a\"",
                &format!("If-None-Match: {}", f.etag),
            ],
        );
        assert_eq!(r.status, 304, "{}\n{}", f.path, r.describe());
        r.assert_not_modified(&f.etag, &f.last_modified);
    }
}

#[test]
fn validators_of_a_changed_file_no_longer_match() {
    let t = server();
    let f = &targets()[0];
    let r = t.get_h(f.path, &[&format!("If-None-Match: {}", f.etag)]);
    r.assert_not_modified(&f.etag, &f.last_modified);
    // Same size, new content and mtime: the tag of the new content, not the old one.
    let mut changed = small();
    changed[0] = b'L';
    let p = write(&t.root, "small.txt", &changed);
    set_mtime(&p, SMALL_MTIME + 10, 0);
    std::thread::sleep(std::time::Duration::from_millis(1300));
    for _ in 0..2 {
        let r = t.get_h(f.path, &[&format!("If-None-Match: {}", f.etag)]);
        assert_eq!(r.status, 200, "stale ETag still matches\n{}", r.describe());
        r.assert_whole(&changed);
        assert_eq!(r.header("ETag"), Some(content_etag(&changed).as_str()));
        let r = t.get_h(
            f.path,
            &[&format!("If-Modified-Since: {}", f.last_modified)],
        );
        assert_eq!(r.status, 200, "{}", r.describe());
        let r = t.get_h(f.path, &[&format!("If-Match: {}", f.etag)]);
        r.assert_line(412);
    }
}

#[test]
fn if_match_on_several_field_lines_is_one_list() {
    // RFC 9110 §5.3: `If-Match: "a"` + `If-Match: <etag>` is `If-Match: "a", <etag>`,
    // which names the current representation: the request proceeds.
    let t = server();
    for f in targets() {
        let r = t.get_h(
            f.path,
            &["If-Match: \"a\"", &format!("If-Match: {}", f.etag)],
        );
        assert_eq!(r.status, 200, "{}\n{}", f.path, r.describe());
        r.assert_whole(&f.bytes);
    }
}
