//! A connection's receive buffer and where it is in it: pipelined request heads are taken
//! one after another by their head length, the bodies of requests that carry one are
//! skipped, what is consumed is compacted away between receives, and the buffer grows
//! towards the head limit only while a head does not fit.
//!
//! No I/O: the connection loop receives into the spare capacity of the buffer it takes
//! ([`RecvBuf::take`]) and parses [`RecvBuf::unparsed`].

/// First receive buffer; grows towards `--max-header-bytes` only for large heads.
pub(crate) const INITIAL_RECV_BYTES: usize = 2048;
/// Free space below which the receive buffer grows before the next receive.
pub(crate) const MIN_RECV_SPACE: usize = 512;

pub(crate) struct RecvBuf {
    buf: Vec<u8>,
    /// Start of the bytes not yet consumed.
    pos: usize,
    /// Bytes of a request body still to skip (some may not have arrived yet).
    discard: u64,
}

impl RecvBuf {
    /// Wraps `buf`, whose bytes (if any) are the start of a request.
    pub(crate) fn new(buf: Vec<u8>) -> RecvBuf {
        RecvBuf {
            buf,
            pos: 0,
            discard: 0,
        }
    }

    /// Skips what is buffered of a body being discarded; true if bytes of a request head
    /// remain to parse.
    pub(crate) fn skip_discarded(&mut self) -> bool {
        if self.discard > 0 {
            let take = self.discard.min((self.buf.len() - self.pos) as u64);
            self.pos += take as usize;
            self.discard -= take;
            if self.discard > 0 {
                return false;
            }
        }
        self.pos < self.buf.len()
    }

    /// The bytes after what is consumed (call [`RecvBuf::skip_discarded`] first).
    pub(crate) fn unparsed(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Consumes a request head of `head_len` bytes; its body of `body_len` bytes is skipped.
    pub(crate) fn consume(&mut self, head_len: usize, body_len: u64) {
        debug_assert!(head_len <= self.buf.len() - self.pos);
        self.pos += head_len;
        self.discard = body_len;
    }

    /// Bytes are left after the last answered request (pipelined, or a body not yet read).
    pub(crate) fn has_leftover(&self) -> bool {
        self.pos < self.buf.len() || self.discard > 0
    }

    /// Drops what is consumed, so the next receive appends to the unparsed bytes; then
    /// makes room for it, growing towards `max_head` (but never below the first size) when
    /// less than [`MIN_RECV_SPACE`] is free. Returns whether the connection is between
    /// requests (nothing buffered, nothing to skip).
    pub(crate) fn compact(&mut self, max_head: usize) -> bool {
        self.buf.drain(..self.pos);
        self.pos = 0;
        if self.buf.capacity() - self.buf.len() < MIN_RECV_SPACE {
            let want = (self.buf.capacity() * 2)
                .min(max_head.max(INITIAL_RECV_BYTES))
                .saturating_sub(self.buf.len());
            self.buf.reserve_exact(want.max(MIN_RECV_SPACE));
        }
        self.buf.is_empty() && self.discard == 0
    }

    /// The buffer, to receive into its spare capacity (give it back with [`RecvBuf::put`]).
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn put(&mut self, buf: Vec<u8>) {
        self.buf = buf;
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(bytes: &[u8], cap: usize) -> RecvBuf {
        let mut v = Vec::with_capacity(cap);
        v.extend_from_slice(bytes);
        RecvBuf::new(v)
    }

    fn receive(rb: &mut RecvBuf, bytes: &[u8]) {
        let mut v = rb.take();
        assert!(v.capacity() - v.len() >= bytes.len(), "no room to receive");
        v.extend_from_slice(bytes);
        rb.put(v);
    }

    #[test]
    fn pipelined_heads_are_taken_by_length() {
        let mut rb = with(b"AAAABBBCC", 64);
        let mut taken = Vec::new();
        for len in [4, 3] {
            assert!(rb.skip_discarded());
            taken.push(rb.unparsed()[..len].to_vec());
            rb.consume(len, 0);
        }
        assert_eq!(taken, [b"AAAA".to_vec(), b"BBB".to_vec()]);
        assert!(rb.skip_discarded());
        assert_eq!(rb.unparsed(), b"CC");
        assert!(rb.has_leftover());
        // A partial head stays for the next receive, at the start of the buffer.
        assert!(!rb.compact(1024));
        assert_eq!(rb.unparsed(), b"CC");
        receive(&mut rb, b"C");
        assert_eq!(rb.unparsed(), b"CCC");
    }

    #[test]
    fn a_body_is_skipped_even_when_it_arrives_later() {
        // Head of 4 bytes with a body of 6, of which 2 are buffered, then the next head.
        let mut rb = with(b"HEADbb", 64);
        assert!(rb.skip_discarded());
        rb.consume(4, 6);
        assert!(!rb.skip_discarded(), "still 4 body bytes to come");
        assert!(rb.has_leftover());
        assert!(!rb.compact(1024), "not idle while a body is being skipped");
        receive(&mut rb, b"bbbbNEXT");
        assert!(rb.skip_discarded());
        assert_eq!(rb.unparsed(), b"NEXT");
        rb.consume(4, 0);
        assert!(!rb.skip_discarded());
        assert!(!rb.has_leftover());
        assert!(rb.compact(1024), "idle: nothing buffered, nothing to skip");
    }

    #[test]
    fn an_empty_body_leaves_nothing_to_skip() {
        let mut rb = with(b"HEAD", 64);
        assert!(rb.skip_discarded());
        rb.consume(4, 0);
        assert!(!rb.skip_discarded());
        assert!(!rb.has_leftover());
    }

    #[test]
    fn grows_by_doubling_to_the_head_limit_then_by_the_minimum() {
        let max_head = 16 * 1024;
        let mut rb = with(b"", INITIAL_RECV_BYTES);
        let mut caps = Vec::new();
        // A head that never ends: every receive fills the buffer. (Past the limit the
        // parser refuses the head with 431, so the last step is never taken twice.)
        for _ in 0..6 {
            rb.compact(max_head);
            let mut v = rb.take();
            let spare = v.capacity() - v.len();
            v.resize(v.len() + spare, b'x');
            caps.push(v.capacity());
            rb.put(v);
        }
        assert_eq!(caps, [2048, 4096, 8192, 16384, 16896, 17408]);
    }

    #[test]
    fn a_small_limit_still_leaves_room_to_receive() {
        let mut rb = with(&[b'x'; 100], 100);
        rb.compact(10);
        let v = rb.take();
        assert!(v.capacity() - v.len() >= MIN_RECV_SPACE);
    }

    #[test]
    fn compaction_keeps_the_capacity() {
        let mut rb = with(b"0123456789", 4096);
        rb.skip_discarded();
        rb.consume(10, 0);
        assert!(rb.compact(16 * 1024));
        assert_eq!(rb.take().capacity(), 4096);
    }
}
