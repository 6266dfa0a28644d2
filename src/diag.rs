//! Diagnostics on stderr: start-up, warnings and errors, one line each, in one format:
//! `2026-12-01T23:09:07.042Z WARN fserve: <message>`, or with `--log-format json` one JSON
//! object per line (`{"time":…,"level":"warn","message":…}`), so a log pipeline reads both
//! the access log and the diagnostics the same way.
//!
//! Messages are the server's own words; any request data in them must already be escaped.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::http::date::civil_from_days;

static JSON: AtomicBool = AtomicBool::new(false);

/// Switches every later line to JSON (set once, at start-up, from `--log-format json`).
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

pub fn info(msg: &str) {
    emit(Level::Info, msg);
}

pub fn warn(msg: &str) {
    emit(Level::Warn, msg);
}

pub fn error(msg: &str) {
    emit(Level::Error, msg);
}

/// Writes one line to stderr (one `write` call, so lines from threads never interleave).
pub fn emit(level: Level, msg: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut line = Vec::with_capacity(64 + msg.len());
    format_line(
        &mut line,
        JSON.load(Ordering::Relaxed),
        level,
        now.as_secs() as i64,
        now.subsec_millis(),
        msg,
    );
    let _ = std::io::stderr().lock().write_all(&line);
}

fn format_line(out: &mut Vec<u8>, json: bool, level: Level, secs: i64, millis: u32, msg: &str) {
    let (y, mo, d) = civil_from_days(secs.max(0) / 86_400);
    let rem = secs.max(0) % 86_400;
    let time = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    // One line, whatever the message holds.
    let msg: String = msg
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if json {
        let (lvl, _) = names(level);
        let _ = write!(
            out,
            "{{\"time\":\"{time}\",\"level\":\"{lvl}\",\"message\":"
        );
        json_string(out, &msg);
        out.extend_from_slice(b"}\n");
    } else {
        let (_, lvl) = names(level);
        let _ = writeln!(out, "{time} {lvl} fserve: {msg}");
    }
}

fn names(level: Level) -> (&'static str, &'static str) {
    match level {
        Level::Info => ("info", "INFO"),
        Level::Warn => ("warn", "WARN"),
        Level::Error => ("error", "ERROR"),
    }
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: bool, level: Level, msg: &str) -> String {
        let mut out = Vec::new();
        format_line(&mut out, json, level, 1_796_166_547, 42, msg);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_lines_have_time_level_and_name() {
        assert_eq!(
            line(false, Level::Warn, "disk full"),
            "2026-12-01T23:09:07.042Z WARN fserve: disk full\n"
        );
    }

    #[test]
    fn json_lines_parse_and_messages_stay_one_line() {
        assert_eq!(
            line(true, Level::Error, "a \"b\"\\c\nd"),
            "{\"time\":\"2026-12-01T23:09:07.042Z\",\"level\":\"error\",\"message\":\"a \\\"b\\\"\\\\c d\"}\n"
        );
        assert_eq!(line(false, Level::Info, "x\r\ny").lines().count(), 1);
    }
}
