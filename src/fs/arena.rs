//! A worker's memory file: cached bodies held in one anonymous memory file (`memfd`), so
//! that they go to a socket by `sendfile` from memory the worker owns, with no copy into the
//! socket and no disk behind them.
//!
//! Bodies sent from the heap are copied into the socket on every send; for a 32 KiB file
//! that copy is a third of the server's CPU. A page of a memory file is sent by
//! reference instead, like a page of the page cache, and unlike a file on disk it can be
//! neither evicted (no wait for the disk, no residency check) nor edited behind the cache's
//! back (the content hash in the ETag stays true).
//!
//! The file is sparse: its size is address space, only stored pages take memory, and the
//! caller's byte budget (the cache's) bounds those. Bodies take whole pages. Freeing one
//! punches its pages out of the file, which returns the memory at once and means a range is
//! never written again while a socket may still hold its old pages (the kernel keeps those
//! alive until they are sent): a freed body's bytes are never changed under a send.
//!
//! Each body has a page before it for a response head: written so that it ends where the
//! body starts, a head and its body go to the socket in one `sendfile`. The head is replaced
//! by punching its page out and writing a new one, never by writing over it, for the same
//! reason.
//!
//! One descriptor per worker, whatever it holds. Never imports `http` or `server`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use rustix::fs::{FallocateFlags, MemfdFlags};

/// Bodies are placed on page boundaries and take whole pages, so that freeing one can
/// punch its pages out without touching a neighbour's.
const PAGE: u64 = 4096;

/// The worker's memory file. Clones share it.
#[derive(Clone)]
pub struct Arena {
    inner: Rc<Inner>,
}

struct Inner {
    file: File,
    /// Free ranges of the file, start → length in bytes (page multiples, coalesced).
    free: RefCell<BTreeMap<u64, u64>>,
}

/// Most bytes of a head written before a body: the page reserved for it.
const HEAD_ROOM: usize = PAGE as usize;

/// One body stored in the arena, after a page for its head; its pages are freed when the
/// last holder drops it.
pub struct Extent {
    arena: Rc<Inner>,
    offset: u64,
    len: u64,
    /// The head written before the body (it ends at `offset`), if any.
    head: RefCell<Vec<u8>>,
    /// The caller's tag for `head`, set with it.
    head_tag: Cell<i64>,
}

impl Arena {
    /// A memory file of `capacity` bytes of address space (rounded up to pages); memory is
    /// taken only by what is stored. Fails where `memfd_create` is refused.
    pub fn new(capacity: u64) -> io::Result<Arena> {
        let capacity = round_up(capacity.max(PAGE));
        // A file past the file-size limit (`ulimit -f`) is refused with SIGXFSZ, which ends
        // the process: stay within it, or have no memory file.
        let limit = rustix::process::getrlimit(rustix::process::Resource::Fsize).current;
        if limit.is_some_and(|max| capacity > max) {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "it would pass the file-size limit",
            ));
        }
        let fd = rustix::fs::memfd_create("fserve-cache", MemfdFlags::CLOEXEC)?;
        let file = File::from(fd);
        file.set_len(capacity)?;
        let mut free = BTreeMap::new();
        free.insert(0, capacity);
        Ok(Arena {
            inner: Rc::new(Inner {
                file,
                free: RefCell::new(free),
            }),
        })
    }

    /// Copies `bytes` into the arena; `None` when no free range is large enough (the
    /// caller keeps them on the heap instead) or the write fails.
    pub fn store(&self, bytes: &[u8]) -> Option<Extent> {
        let len = bytes.len() as u64;
        let start = self.inner.alloc(PAGE + round_up(len.max(1)))?;
        let extent = Extent {
            arena: self.inner.clone(),
            offset: start + PAGE,
            len,
            head: RefCell::new(Vec::new()),
            head_tag: Cell::new(i64::MIN),
        };
        // On failure the extent drops here and gives its pages back.
        self.inner.file.write_all_at(bytes, extent.offset).ok()?;
        Some(extent)
    }

    /// Bytes of memory the stored bodies take (whole pages), as the kernel counts them.
    #[cfg(test)]
    fn resident_bytes(&self) -> io::Result<u64> {
        let st = rustix::fs::fstat(&self.inner.file)?;
        Ok(st.st_blocks as u64 * 512)
    }
}

impl Extent {
    /// The memory file holding the body; send `len()` bytes from `offset()`.
    pub fn file(&self) -> &File {
        &self.arena.file
    }

    /// Where the body starts in [`Extent::file`].
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Memory the body takes: whole pages, and the page for its head.
    pub fn weight(&self) -> u64 {
        PAGE + round_up(self.len.max(1))
    }

    /// Where a send of the head and the whole body starts in [`Extent::file`], if the
    /// head written before the body is `parts`, in order; it ends at [`Extent::offset`].
    pub fn after_head(&self, parts: [&[u8]; 2]) -> Option<u64> {
        let head = self.head.borrow();
        let [a, b] = parts;
        let same = !head.is_empty()
            && head.len() == a.len() + b.len()
            && head.starts_with(a)
            && head.ends_with(b);
        same.then(|| self.offset - head.len() as u64)
    }

    /// The tag given with the head written last ([`Extent::write_head`]).
    pub fn head_tag(&self) -> i64 {
        self.head_tag.get()
    }

    /// Writes `parts`, in order, as the head before the body, replacing the one there: its
    /// page is punched out first, so a socket still sending the old head keeps it. At most
    /// [`HEAD_ROOM`] bytes. On failure no head is there.
    pub fn write_head(&self, parts: [&[u8]; 2], tag: i64) -> io::Result<()> {
        let mut head = self.head.borrow_mut();
        head.clear();
        self.head_tag.set(tag);
        let len = parts[0].len() + parts[1].len();
        if len > HEAD_ROOM {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "head too long"));
        }
        let page = self.offset - PAGE;
        punch(&self.arena.file, page, PAGE)?;
        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(parts[0]);
        bytes.extend_from_slice(parts[1]);
        self.arena
            .file
            .write_all_at(&bytes, self.offset - len as u64)?;
        *head = bytes;
        Ok(())
    }

    /// Appends `len` bytes of the body from `from` to `out` (a copy, for a short range).
    pub fn read_into(&self, from: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        debug_assert!(from + len as u64 <= self.len);
        let at = out.len();
        out.resize(at + len, 0);
        let res = self
            .arena
            .file
            .read_exact_at(&mut out[at..], self.offset + from);
        if res.is_err() {
            out.truncate(at);
        }
        res
    }
}

impl Drop for Extent {
    fn drop(&mut self) {
        let (start, size) = (self.offset - PAGE, self.weight());
        // Punched out, not overwritten later: a socket still sending the old pages keeps
        // them, and the memory returns now. Should the punch fail, the range stays out of
        // use (leaked address space, never reused under a send).
        if punch(&self.arena.file, start, size).is_ok() {
            self.arena.release(start, size);
        }
    }
}

impl Inner {
    /// First fit: the lowest free range of at least `size` bytes, split.
    fn alloc(&self, size: u64) -> Option<u64> {
        let mut free = self.free.borrow_mut();
        let (&start, &len) = free.iter().find(|&(_, &len)| len >= size)?;
        free.remove(&start);
        if len > size {
            free.insert(start + size, len - size);
        }
        Some(start)
    }

    /// Returns `start..start + size` to the free ranges, merged with its neighbours.
    fn release(&self, mut start: u64, mut size: u64) {
        let mut free = self.free.borrow_mut();
        if let Some((&prev, &prev_len)) = free.range(..start).next_back() {
            if prev + prev_len == start {
                free.remove(&prev);
                start = prev;
                size += prev_len;
            }
        }
        if let Some(next_len) = free.remove(&(start + size)) {
            size += next_len;
        }
        free.insert(start, size);
    }
}

/// Frees the pages of `file` in `offset..offset + len` (page multiples): reads see zeros,
/// and a write there takes a fresh page.
fn punch(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    Ok(rustix::fs::fallocate(file, flags, offset, len)?)
}

fn round_up(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    fn read_back(e: &Extent) -> Vec<u8> {
        let mut out = Vec::new();
        e.read_into(0, e.len() as usize, &mut out).unwrap();
        out
    }

    #[test]
    fn a_stored_body_reads_back_whole_and_in_part() {
        let arena = Arena::new(1 << 20).unwrap();
        let b = body(20_000, 7);
        let e = arena.store(&b).unwrap();
        assert_eq!(e.len(), 20_000);
        assert_eq!(e.weight(), 6 * PAGE, "five pages and the head's");
        assert_eq!(e.offset() % PAGE, 0);
        assert_eq!(read_back(&e), b);
        let mut part = b"x".to_vec();
        e.read_into(4090, 10, &mut part).unwrap();
        assert_eq!(&part[1..], &b[4090..4100]);
    }

    #[test]
    fn bodies_do_not_overlap_and_freed_pages_leave_memory() {
        let arena = Arena::new(1 << 20).unwrap();
        let a = arena.store(&body(10_000, 1)).unwrap();
        let b = arena.store(&body(5_000, 2)).unwrap();
        assert!(a.offset() + a.weight() <= b.offset() || b.offset() + b.weight() <= a.offset());
        // No head written yet: the body pages alone.
        assert_eq!(arena.resident_bytes().unwrap(), 3 * PAGE + 2 * PAGE);
        drop(a);
        assert_eq!(arena.resident_bytes().unwrap(), 2 * PAGE, "punched out");
        assert_eq!(read_back(&b), body(5_000, 2), "the neighbour is untouched");
    }

    #[test]
    fn a_full_arena_refuses_and_freed_ranges_merge_for_reuse() {
        let arena = Arena::new(7 * PAGE).unwrap();
        let a = arena.store(&[1; PAGE as usize]).unwrap();
        let b = arena.store(&[2; PAGE as usize]).unwrap();
        let c = arena.store(&[3; 2 * PAGE as usize]).unwrap();
        assert!(arena.store(&[4]).is_none(), "full");
        drop(a);
        drop(b);
        // The four freed pages merged: a three-page body and its head fit where they were.
        let d = arena.store(&[5; 3 * PAGE as usize]).unwrap();
        assert_eq!(d.offset(), PAGE);
        assert_eq!(read_back(&d), vec![5; 3 * PAGE as usize]);
        assert_eq!(read_back(&c), vec![3; 2 * PAGE as usize]);
        drop(c);
        drop(d);
        assert_eq!(arena.inner.free.borrow().len(), 1, "one free range again");
        assert_eq!(arena.resident_bytes().unwrap(), 0);
    }

    #[test]
    fn a_head_ends_where_the_body_starts_and_is_replaced_on_a_fresh_page() {
        let arena = Arena::new(1 << 20).unwrap();
        let b = body(9_000, 3);
        let e = arena.store(&b).unwrap();
        assert_eq!(e.after_head([b"", b""]), None, "no head yet");
        e.write_head([b"HTTP/1.1 200 OK\r\n", b"Content-Length: 9000\r\n\r\n"], 7)
            .unwrap();
        assert_eq!(e.head_tag(), 7);
        let parts: [&[u8]; 2] = [b"HTTP/1.1 200 OK\r\n", b"Content-Length: 9000\r\n\r\n"];
        let from = e.after_head(parts).unwrap();
        let head_len = e.offset() - from;
        let mut whole = vec![0; (head_len + e.len()) as usize];
        e.file().read_exact_at(&mut whole, from).unwrap();
        assert_eq!(&whole[..head_len as usize], &parts.concat()[..]);
        assert_eq!(&whole[head_len as usize..], &b[..]);
        assert_eq!(
            e.after_head([b"HTTP/1.1 200 OK\r\n", b"Content-Length: 9001\r\n\r\n"]),
            None
        );

        // A shorter head: the page is punched first, so no byte of the old one is left.
        e.write_head([b"A", b"B"], 8).unwrap();
        let mut page = vec![1; PAGE as usize];
        e.file()
            .read_exact_at(&mut page, e.offset() - PAGE)
            .unwrap();
        assert!(page[..PAGE as usize - 2].iter().all(|&x| x == 0));
        assert_eq!(&page[PAGE as usize - 2..], b"AB");
        assert_eq!(read_back(&e), b, "the body is untouched");

        let long = vec![b'x'; HEAD_ROOM];
        assert!(
            e.write_head([&long, b"!"], 9).is_err(),
            "longer than its page"
        );
        assert_eq!(
            e.after_head([b"A", b"B"]),
            None,
            "a failed write leaves no head"
        );
    }

    /// Against a naive page map: random stores and frees never hand out a page twice, and
    /// every live body reads back as stored.
    #[test]
    fn random_stores_and_frees_keep_bodies_apart() {
        const PAGES: usize = 64;
        let arena = Arena::new(PAGES as u64 * PAGE).unwrap();
        let mut used = [false; PAGES];
        let mut live: Vec<(Extent, Vec<u8>)> = Vec::new();
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for round in 0..2000 {
            if next() % 3 != 0 || live.is_empty() {
                let len = 1 + (next() % (5 * PAGE as u32)) as usize;
                let b = body(len, round as u8);
                if let Some(e) = arena.store(&b) {
                    let first = (e.offset() / PAGE) as usize - 1;
                    for p in &mut used[first..first + (e.weight() / PAGE) as usize] {
                        assert!(!*p, "page handed out twice");
                        *p = true;
                    }
                    live.push((e, b));
                }
            } else {
                let i = next() as usize % live.len();
                let (e, b) = live.swap_remove(i);
                assert_eq!(read_back(&e), b);
                let first = (e.offset() / PAGE) as usize - 1;
                for p in &mut used[first..first + (e.weight() / PAGE) as usize] {
                    *p = false;
                }
            }
        }
        for (e, b) in &live {
            assert_eq!(&read_back(e), b);
        }
    }
}
