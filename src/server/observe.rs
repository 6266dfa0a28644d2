//! What a connection remembers of each request it answered until the response's last byte
//! is handed to the kernel: then the request is counted (`/metrics`) and, with
//! `--access-log`, written as one line into the worker's log buffer. So the duration runs
//! from the first byte of the request head to the last byte sent, and no line is written
//! for an answer that has not gone out yet (a pipelined answer waits in the send batch).
//!
//! The connection keeps its queue for its whole life and reuses it: a warm request
//! allocates nothing. The request's bytes a line needs (request line, Referer,
//! User-Agent) are copied into the queue's own buffer only when a log is kept. The queue is
//! bounded by what one receive buffer can hold of pipelined heads: the connection drains it
//! after every send.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::time::SystemTime;

use tokio::time::Instant;

use super::compose::Composed;
use super::worker::Worker;
use crate::accesslog::Record;
use crate::accesslog::client::client_addr;
use crate::http::request::{Method, Request};
use crate::metrics::MethodLabel;

/// Longest raw request line logged for a request that could not be parsed.
const MAX_REJECTED_LINE_BYTES: usize = 8 * 1024;

/// One answered request, waiting for its bytes to be sent.
struct Answered {
    started: Instant,
    method: MethodLabel,
    status: u16,
    body_bytes: u64,
    cache_hit: bool,
    encoding: Option<&'static str>,
    remote: IpAddr,
    /// Ranges into [`Answered`]'s queue buffer: method, target, protocol (an unparsed
    /// request has its whole line as the target), Referer, User-Agent.
    line: [Range<usize>; 3],
    referer: Option<Range<usize>>,
    user_agent: Option<Range<usize>>,
}

/// A connection's answered requests not yet sent.
#[derive(Default)]
pub(super) struct Answers {
    pending: Vec<Answered>,
    bytes: Vec<u8>,
}

/// What the connection knows of an answer when it queues it.
pub(super) struct Answer {
    pub(super) started: Instant,
    pub(super) composed: Composed,
    pub(super) cache_hit: bool,
    pub(super) encoding: Option<&'static str>,
}

impl Answers {
    /// Remembers an admitted request (`head` is its head) and its answer.
    pub(super) fn push(
        &mut self,
        w: &Worker,
        peer: Option<IpAddr>,
        req: &Request<'_>,
        head: &[u8],
        a: Answer,
    ) {
        let method = match req.method {
            Method::Get => MethodLabel::Get,
            Method::Head => MethodLabel::Head,
            Method::Options => MethodLabel::Options,
            Method::Other => MethodLabel::Other,
        };
        let mut entry = Answered {
            started: a.started,
            method,
            status: a.composed.status.code(),
            body_bytes: a.composed.body_bytes,
            cache_hit: a.cache_hit,
            encoding: a.encoding,
            remote: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            line: [0..0, 0..0, 0..0],
            referer: None,
            user_agent: None,
        };
        if w.log.is_some() {
            let peer = peer.unwrap_or(entry.remote);
            entry.remote = client_addr(
                peer,
                &w.cfg().trusted_proxies,
                req.fields.forwarded,
                req.fields.x_forwarded_for,
            );
            let (m, t, p) = split_request_line(request_line(head));
            entry.line = [self.copy(m), self.copy(t), self.copy(p)];
            entry.referer = req.fields.referer.map(|v| self.copy(v));
            entry.user_agent = req.fields.user_agent.map(|v| self.copy(v));
        }
        // Most connections have one answer waiting at a time: room for one, not the four
        // a first push would make (each ~160 bytes, held while the connection is busy).
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(1);
        }
        self.pending.push(entry);
    }

    /// Remembers a request answered with an error before it could be parsed: `buffered` is
    /// what had arrived of it; its first line is logged as it came (escaped).
    pub(super) fn push_rejected(
        &mut self,
        w: &Worker,
        peer: Option<IpAddr>,
        buffered: &[u8],
        composed: Composed,
        started: Instant,
    ) {
        let line = request_line(buffered);
        let line = &line[..line.len().min(MAX_REJECTED_LINE_BYTES)];
        let method = match line.split(|&b| b == b' ').next() {
            Some(b"GET") => MethodLabel::Get,
            Some(b"HEAD") => MethodLabel::Head,
            Some(b"OPTIONS") => MethodLabel::Options,
            _ => MethodLabel::Other,
        };
        let mut entry = Answered {
            started,
            method,
            status: composed.status.code(),
            body_bytes: composed.body_bytes,
            cache_hit: false,
            encoding: None,
            remote: peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            line: [0..0, 0..0, 0..0],
            referer: None,
            user_agent: None,
        };
        if w.log.is_some() {
            let target = self.copy(line);
            entry.line = [target.start..target.start, target, 0..0];
        }
        self.pending.push(entry);
    }

    fn copy(&mut self, v: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(v);
        start..self.bytes.len()
    }

    /// The bytes of every pending answer have been handed to the kernel (or never will
    /// be: the connection failed): count them and write their lines.
    pub(super) fn sent(&mut self, w: &Worker) {
        if self.pending.is_empty() {
            return;
        }
        // Nothing reads the counts (no admin listener) and no log is kept: skip the clocks.
        if w.log.is_none() && w.cfg().admin.is_none() {
            self.pending.clear();
            return;
        }
        let now = Instant::now();
        let m = w.metrics();
        // The wall clock only for log lines.
        let wall = match &w.log {
            Some(_) => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
            None => Default::default(),
        };
        for e in &self.pending {
            let took = now.saturating_duration_since(e.started);
            m.request(e.method, e.status, e.body_bytes, took);
            let Some(log) = &w.log else { continue };
            let b = &self.bytes;
            let rec = Record {
                remote: e.remote,
                unix_secs: wall.as_secs() as i64,
                millis: wall.subsec_millis(),
                method: &b[e.line[0].clone()],
                target: &b[e.line[1].clone()],
                protocol: &b[e.line[2].clone()],
                status: e.status,
                body_bytes: e.body_bytes,
                duration_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                referer: e.referer.clone().map(|r| &b[r]),
                user_agent: e.user_agent.clone().map(|r| &b[r]),
                content_encoding: e.encoding,
                cache_hit: e.cache_hit,
                worker: w.id,
            };
            w.count_log(log.append(&rec));
        }
        self.pending.clear();
        self.bytes.clear();
    }
}

/// The first line of a request head, without its line ending.
fn request_line(head: &[u8]) -> &[u8] {
    let end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = &head[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Method, target and protocol of a request line that httparse admitted (METHOD SP TARGET
/// SP VERSION); anything else is all target.
fn split_request_line(line: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let first = line.iter().position(|&b| b == b' ');
    let last = line.iter().rposition(|&b| b == b' ');
    match (first, last) {
        (Some(a), Some(b)) if a < b => (&line[..a], &line[a + 1..b], &line[b + 1..]),
        _ => (&[], line, &[]),
    }
}

/// The coding named by a representation's `Content-Encoding` field line, if any.
pub(super) fn content_encoding(fields: &[u8]) -> Option<&'static str> {
    const NAME: &[u8] = b"Content-Encoding: ";
    let at = fields.windows(NAME.len()).position(|w| w == NAME)?;
    let rest = &fields[at + NAME.len()..];
    let value = &rest[..rest.iter().position(|&b| b == b'\r').unwrap_or(rest.len())];
    Some(match value {
        b"gzip" => "gzip",
        b"br" => "br",
        b"zstd" => "zstd",
        b"deflate" => "deflate",
        _ => "other",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_and_codings() {
        assert_eq!(
            request_line(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            b"GET / HTTP/1.1"
        );
        assert_eq!(request_line(b"GARBAGE"), b"GARBAGE");
        let (m, t, p) = split_request_line(b"GET /a?b HTTP/1.1");
        assert_eq!((m, t, p), (&b"GET"[..], &b"/a?b"[..], &b"HTTP/1.1"[..]));
        assert_eq!(split_request_line(b"GET").1, b"GET");
        assert_eq!(
            content_encoding(b"Vary: Accept-Encoding\r\nContent-Encoding: br\r\n"),
            Some("br")
        );
        assert_eq!(content_encoding(b"Cache-Control: no-cache\r\n"), None);
    }
}
