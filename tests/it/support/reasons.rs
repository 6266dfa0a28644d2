//! What fserve is expected to send: reason phrases, ETags, Content-Range values.

/// The RFC 9110 reason phrase fserve sends for `code`.
pub fn exact_reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        _ => panic!("exact_reason: no reason phrase recorded for {code}"),
    }
}

/// The ETag fserve sends for a file sent from disk (larger than `--cache-max-file`):
/// nginx's `"<mtime hex>-<size hex>"`.
pub fn etag_of(mtime: u64, len: u64) -> String {
    format!("\"{mtime:x}-{len:x}\"")
}

/// The ETag fserve sends for a file held in memory (up to `--cache-max-file`):
/// `"<16 lowercase hex digits of the content hash>"`, whatever its mtime.
pub fn content_etag(bytes: &[u8]) -> String {
    format!("\"{:016x}\"", fserve::http::etag::content_hash(bytes))
}

/// [`content_etag`] of a precompressed sidecar held in memory: its own bytes, then its
/// coding token (`br`, `zstd`, `gzip`), as in `"<16 hex digits>-br"`.
pub fn content_etag_coded(bytes: &[u8], coding: &str) -> String {
    format!(
        "\"{:016x}-{coding}\"",
        fserve::http::etag::content_hash(bytes)
    )
}

/// `bytes first-last/complete` → (first, last, complete).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.strip_prefix("bytes ")?;
    let (range, complete) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some((
        first.parse().ok()?,
        last.parse().ok()?,
        complete.parse().ok()?,
    ))
}
