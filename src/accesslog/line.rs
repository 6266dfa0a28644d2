//! One access-log line from one answered request, in nginx's `combined` or `common` format
//! or as one JSON object. Pure: the time is a parameter and the caller owns the buffer.
//!
//! Every byte that came from the request is escaped so that a request can never forge a
//! line or a field: in combined/common as nginx escapes (`"`, `\`, control bytes and bytes
//! ≥ 0x7F become `\xHH`), in JSON with JSON's escapes, where a byte that is not part of valid
//! UTF-8 is written as the text `\xHH` (its backslash JSON-escaped), so the line stays valid
//! JSON and the byte is still visible.

use std::io::Write as _;
use std::net::IpAddr;

use crate::http::date::civil_from_days;

/// Which line format `--log-format` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// nginx's `combined`: common plus `"$http_referer" "$http_user_agent"`.
    #[default]
    Combined,
    /// The Common Log Format (nginx's `common`... and Apache's).
    Common,
    /// One JSON object per line, with the fields of `Record`.
    Json,
}

/// What one answered request contributes to its line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record<'a> {
    pub(crate) remote: IpAddr,
    /// Wall-clock time the answer was handed to the kernel: Unix seconds and milliseconds.
    pub(crate) unix_secs: i64,
    pub(crate) millis: u32,
    /// The method, target and protocol as sent (raw bytes, escaped when written); the
    /// request line of a request that could not be parsed goes in `target` with an empty
    /// method and protocol.
    pub(crate) method: &'a [u8],
    pub(crate) target: &'a [u8],
    pub(crate) protocol: &'a [u8],
    pub(crate) status: u16,
    pub(crate) body_bytes: u64,
    /// From the first byte of the request head to the last byte handed to the kernel.
    pub(crate) duration_us: u64,
    pub(crate) referer: Option<&'a [u8]>,
    pub(crate) user_agent: Option<&'a [u8]>,
    pub(crate) content_encoding: Option<&'a str>,
    /// Whether the body came from the worker's memory cache.
    pub(crate) cache_hit: bool,
    pub(crate) worker: usize,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The last second a line was written in, rendered in both forms: a worker writes many
/// lines a second and renders the date once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp {
    secs: i64,
    /// nginx's `$time_local` in UTC: `01/Dec/2026:23:09:07 +0000`.
    clf: [u8; 26],
    /// RFC 3339 up to the seconds: `2026-12-01T23:09:07`.
    iso: [u8; 19],
}

/// The last second of year 9999: four-digit years keep the rendered forms their length.
const MAX_UNIX_SECS: i64 = 253_402_300_799;

impl Default for Stamp {
    fn default() -> Stamp {
        Stamp {
            secs: -1,
            clf: [b' '; 26],
            iso: [b' '; 19],
        }
    }
}

impl Stamp {
    fn set(&mut self, unix_secs: i64) {
        let secs = unix_secs.clamp(0, MAX_UNIX_SECS);
        if secs == self.secs {
            return;
        }
        let (year, month, day) = civil_from_days(secs / 86_400);
        let rem = secs % 86_400;
        let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
        let _ = write!(
            &mut self.clf[..],
            "{day:02}/{}/{year:04}:{h:02}:{m:02}:{s:02} +0000",
            MONTHS[(month - 1) as usize]
        );
        let _ = write!(
            &mut self.iso[..],
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}"
        );
        self.secs = secs;
    }
}

/// Appends `rec` as one line (ending in `\n`) to `out`.
#[cfg(test)]
pub(crate) fn write(out: &mut Vec<u8>, format: Format, rec: &Record<'_>) {
    write_with(out, format, rec, &mut Stamp::default());
}

/// Appends `rec` as one line (ending in `\n`) to `out`, its date from `stamp` (rendered
/// again only when the second changed).
pub(crate) fn write_with(out: &mut Vec<u8>, format: Format, rec: &Record<'_>, stamp: &mut Stamp) {
    stamp.set(rec.unix_secs);
    match format {
        Format::Combined | Format::Common => {
            // $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
            let _ = write!(out, "{} - - [", rec.remote);
            out.extend_from_slice(&stamp.clf);
            out.extend_from_slice(b"] \"");
            if rec.method.is_empty() && rec.protocol.is_empty() {
                escape_nginx(out, rec.target);
            } else {
                escape_nginx(out, rec.method);
                out.push(b' ');
                escape_nginx(out, rec.target);
                out.push(b' ');
                escape_nginx(out, rec.protocol);
            }
            let _ = write!(out, "\" {} {}", rec.status, rec.body_bytes);
            if format == Format::Combined {
                out.extend_from_slice(b" \"");
                field_nginx(out, rec.referer);
                out.extend_from_slice(b"\" \"");
                field_nginx(out, rec.user_agent);
                out.push(b'"');
            }
        }
        Format::Json => {
            out.extend_from_slice(b"{\"time\":\"");
            out.extend_from_slice(&stamp.iso);
            let _ = write!(
                out,
                ".{:03}Z\",\"remote_addr\":\"{}\",\"method\":\"",
                rec.millis.min(999),
                rec.remote
            );
            escape_json(out, rec.method);
            out.extend_from_slice(b"\",\"target\":\"");
            escape_json(out, rec.target);
            out.extend_from_slice(b"\",\"protocol\":\"");
            escape_json(out, rec.protocol);
            let _ = write!(
                out,
                "\",\"status\":{},\"body_bytes\":{},\"duration_us\":{},\"referer\":\"",
                rec.status, rec.body_bytes, rec.duration_us
            );
            escape_json(out, rec.referer.unwrap_or_default());
            out.extend_from_slice(b"\",\"user_agent\":\"");
            escape_json(out, rec.user_agent.unwrap_or_default());
            out.extend_from_slice(b"\",\"content_encoding\":\"");
            escape_json(out, rec.content_encoding.unwrap_or("").as_bytes());
            let _ = write!(
                out,
                "\",\"cache\":\"{}\",\"worker\":{}}}",
                if rec.cache_hit { "hit" } else { "miss" },
                rec.worker
            );
        }
    }
    out.push(b'\n');
}

/// nginx writes `-` for a missing or empty field.
fn field_nginx(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) if !v.is_empty() => escape_nginx(out, v),
        _ => out.push(b'-'),
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_escape(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
}

/// nginx's `ngx_http_log_escape`: `"`, `\`, bytes below 0x20 and from 0x7F up as `\xHH`.
fn escape_nginx(out: &mut Vec<u8>, v: &[u8]) {
    for &b in v {
        if !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\' {
            hex_escape(out, b);
        } else {
            out.push(b);
        }
    }
}

/// JSON string contents (RFC 8259 §7); bytes outside valid UTF-8 as the text `\xHH`.
fn escape_json(out: &mut Vec<u8>, mut v: &[u8]) {
    loop {
        let (valid, bad) = match std::str::from_utf8(v) {
            Ok(s) => (s, None),
            Err(e) => {
                let (ok, rest) = v.split_at(e.valid_up_to());
                // `ok` is valid UTF-8: it ends where `valid_up_to` says.
                let s = std::str::from_utf8(ok).unwrap_or_default();
                let bad_len = e.error_len().unwrap_or(rest.len()).max(1);
                (s, Some((&rest[..bad_len], &rest[bad_len..])))
            }
        };
        for c in valid.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        match bad {
            None => return,
            Some((bytes, rest)) => {
                for &b in bytes {
                    out.extend_from_slice(b"\\\\x");
                    out.extend_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                }
                v = rest;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn rec<'a>() -> Record<'a> {
        Record {
            remote: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            // 2026-12-01T23:09:07Z
            unix_secs: 1_796_166_547,
            millis: 42,
            method: b"GET",
            target: b"/index.html?q=1",
            protocol: b"HTTP/1.1",
            status: 200,
            body_bytes: 1234,
            duration_us: 87,
            referer: Some(b"https://example.com/"),
            user_agent: Some(b"curl/8.5.0"),
            content_encoding: Some("br"),
            cache_hit: true,
            worker: 1,
        }
    }

    fn line(format: Format, r: &Record<'_>) -> String {
        let mut out = Vec::new();
        write(&mut out, format, r);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn combined_matches_nginx_byte_for_byte() {
        assert_eq!(
            line(Format::Combined, &rec()),
            "192.0.2.7 - - [01/Dec/2026:23:09:07 +0000] \"GET /index.html?q=1 HTTP/1.1\" 200 1234 \"https://example.com/\" \"curl/8.5.0\"\n"
        );
        let mut r = rec();
        r.referer = None;
        r.user_agent = Some(b"");
        assert!(line(Format::Combined, &r).ends_with(" 1234 \"-\" \"-\"\n"));
    }

    #[test]
    fn common_has_no_referer_or_agent() {
        assert_eq!(
            line(Format::Common, &rec()),
            "192.0.2.7 - - [01/Dec/2026:23:09:07 +0000] \"GET /index.html?q=1 HTTP/1.1\" 200 1234\n"
        );
    }

    #[test]
    fn hostile_bytes_cannot_forge_a_line_or_field() {
        let mut r = rec();
        r.target = b"/a\"b\\c\r\nd\x00\x7f\xff e";
        r.user_agent = Some(b"x\" \"forged");
        let l = line(Format::Combined, &r);
        assert_eq!(l.matches('\n').count(), 1);
        assert!(
            l.contains(r#""GET /a\x22b\x5Cc\x0D\x0Ad\x00\x7F\xFF e HTTP/1.1""#),
            "{l}"
        );
        assert!(l.ends_with("\"x\\x22 \\x22forged\"\n"), "{l}");
    }

    #[test]
    fn unparsed_request_line_is_logged_whole() {
        let mut r = rec();
        r.method = b"";
        r.protocol = b"";
        r.target = b"GARBAGE \"x";
        r.status = 400;
        assert!(line(Format::Common, &r).contains(r#"] "GARBAGE \x22x" 400 "#));
    }

    #[test]
    fn json_has_the_documented_fields_and_escapes() {
        let mut r = rec();
        r.target = b"/q\"\\\n\x01\xffz\xc3\xa9";
        let l = line(Format::Json, &r);
        assert_eq!(
            l,
            "{\"time\":\"2026-12-01T23:09:07.042Z\",\"remote_addr\":\"192.0.2.7\",\"method\":\"GET\",\
             \"target\":\"/q\\\"\\\\\\n\\u0001\\\\xFFz\u{e9}\",\"protocol\":\"HTTP/1.1\",\"status\":200,\
             \"body_bytes\":1234,\"duration_us\":87,\"referer\":\"https://example.com/\",\
             \"user_agent\":\"curl/8.5.0\",\"content_encoding\":\"br\",\"cache\":\"hit\",\"worker\":1}\n"
        );
    }

    #[test]
    fn a_reused_stamp_renders_what_a_fresh_one_does() {
        let mut stamp = Stamp::default();
        for secs in [
            0,
            1,
            59,
            86_399,
            86_400,
            1_796_166_547,
            1_796_166_547,
            4_102_444_800,
        ] {
            for format in [Format::Combined, Format::Json] {
                let mut r = rec();
                r.unix_secs = secs;
                let mut reused = Vec::new();
                write_with(&mut reused, format, &r, &mut stamp);
                assert_eq!(
                    String::from_utf8(reused).unwrap(),
                    line(format, &r),
                    "{secs}"
                );
            }
        }
    }

    #[test]
    fn ipv6_and_epoch() {
        let mut r = rec();
        r.remote = "2001:db8::1".parse().unwrap();
        r.unix_secs = 0;
        assert!(
            line(Format::Common, &r).starts_with("2001:db8::1 - - [01/Jan/1970:00:00:00 +0000] ")
        );
    }
}
