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
//! The rule everything here keeps: **a byte a socket may still be sending is never
//! changed.** The kernel sends (and resends) a file's pages by reference until the client
//! has them, long after `sendfile` returned. So the file is cut into runs of whole huge
//! pages ([`RUN`], 2 MiB), and a run is written only where nothing was written before
//! (copies are appended), never freed in part, and punched out whole once no copy in it is
//! in use: a socket still sending from it keeps its own reference to the pages, which the
//! punch takes out of the file. (Punching part of a huge page would zero those bytes in
//! place, under the send.)
//!
//! Runs are made transparent huge pages (`MADV_COLLAPSE`, through the [`Collapse`] the
//! caller gives, which may do it later, elsewhere). `sendfile` then takes a reference and
//! fills a pipe buffer per folio, not per 4 KiB page: 1–10% less CPU per request at 16 to
//! 64 KiB, measured in runs of 11 alternated rounds. The kernel refuses to collapse pages
//! that something else holds a reference to, as a socket's queue does to pages it is
//! sending, so a run collapsed once copies are sent from it often stays in 4 KiB pages
//! under load. The arena therefore keeps one run ready ([`Inner::spare`]): taken and
//! collapsed before anything is written to it, and used as the next new run. Where the
//! kernel will not collapse a run (no THP, no free huge page), it stays in 4 KiB pages and
//! works the same.
//!
//! Each copy of a body has a page before it for a response head, written so that it ends
//! where the body starts: a head and its body go to the socket in one `sendfile`. A copy's
//! head is written once; a new head (its Date changes each second) is written before a new
//! copy of the body, and the old copy stays while a send holds it ([`Held`]).
//!
//! The file is sparse: its size is address space, and only the runs in use and the spare
//! take memory, so the memory is at most the address space given to [`Arena::new`]. One
//! descriptor per worker, whatever it holds. Never imports `http` or `server`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::rc::{Rc, Weak};

use rustix::fs::{FallocateFlags, MemfdFlags};

/// Copies are placed on page boundaries and take whole pages.
const PAGE: u64 = 4096;

/// A run: the unit the file is taken and given back in, one huge page of x86-64 and arm64
/// kernels with 4 KiB pages. A body larger than a run gets a run of several.
const RUN: u64 = 2 << 20;

/// Where the kernel says how large a huge page is, and how it treats shared memory.
const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";

/// Makes (or has a thread make, later) the pages of `file` in `offset..offset + len` (whole
/// runs) one huge page each; an error leaves them as they were. Given by the caller, which
/// may use `unsafe` to map the range for the kernel (this module may not).
pub type Collapse = fn(BorrowedFd<'_>, u64, u64) -> io::Result<()>;

/// The worker's memory file. Clones share it.
#[derive(Clone)]
pub struct Arena {
    inner: Rc<Inner>,
}

struct Inner {
    file: File,
    /// Free address space, start → length in bytes (whole runs, coalesced).
    free: RefCell<BTreeMap<u64, u64>>,
    /// The run new copies are appended to, and where its unwritten space starts. Held
    /// weakly: like any run, it goes with the last copy in it.
    open: RefCell<Option<(Weak<Run>, u64)>>,
    /// Asked for each new run; `None`: runs stay in 4 KiB pages.
    collapse: Option<Collapse>,
    /// Where a run taken out of the free ranges waits to be the next new run: its first
    /// page written (a run holding no data is not collapsed) and its collapse asked for,
    /// so that it is one huge page before any socket holds its pages. Only with
    /// `collapse`.
    spare: Cell<Option<u64>>,
}

/// A run of the file in use: punched out and given back when the last copy in it goes.
struct Run {
    arena: Weak<Inner>,
    start: u64,
    len: u64,
}

/// One copy of a body, after the page for its head.
struct BodyCopy {
    /// Keeps the run (and so these bytes) in the file.
    _run: Rc<Run>,
    /// Where the body starts.
    offset: u64,
    /// The head written before the body (it ends at `offset`), if any: written once.
    head: Vec<u8>,
    /// The caller's tag for `head`, set with it.
    head_tag: i64,
}

/// Most bytes of a head written before a body: the page reserved for it.
const HEAD_ROOM: usize = PAGE as usize;

/// Whole responses with one head a body must be asked for (in that head's second) before
/// a new copy is made for it ([`Extent::head_due`]). An estimate, not a measured crossover:
/// a copy costs a read and a write of the body (tens of µs at 64 KiB) and a share of a
/// huge page's collapse; until it is made, each response goes as two system calls (head,
/// then body) instead of one, about a µs more.
const NEW_COPY_AFTER: u32 = 32;

/// One body stored in the arena; its current copy is the one new sends use.
pub struct Extent {
    arena: Rc<Inner>,
    len: u64,
    copy: RefCell<Rc<BodyCopy>>,
    /// The tag last asked for by [`Extent::head_due`], and how many times.
    asked: Cell<(i64, u32)>,
}

/// A copy of a body kept in the file while a send from it is under way: hold it until the
/// send is over (a later head may move the body to a new copy meanwhile).
pub struct Held {
    copy: Rc<BodyCopy>,
}

impl Arena {
    /// A memory file of `capacity` bytes of address space (rounded up to runs): the most
    /// memory it takes. `collapse`: asked to make each new run a huge page. Fails where
    /// `memfd_create` is refused, and where the kernel may keep shared memory in pages
    /// larger than a run (which a punch of a whole run would cut).
    pub fn new(capacity: u64, collapse: Option<Collapse>) -> io::Result<Arena> {
        if let Some(setting) = larger_folios_than_a_run() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the kernel may keep it in pages larger than {} MiB ({setting}), and \
                     freeing part of one changes bytes a socket may still be sending",
                    RUN >> 20
                ),
            ));
        }
        let capacity = capacity.max(1).div_ceil(RUN) * RUN;
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
        let inner = Rc::new(Inner {
            file,
            free: RefCell::new(free),
            open: RefCell::new(None),
            collapse,
            spare: Cell::new(None),
        });
        inner.ready_spare();
        Ok(Arena { inner })
    }

    /// Copies `bytes` into the arena; `None` when no run is free for them (the caller keeps
    /// them on the heap instead) or the write fails.
    pub fn store(&self, bytes: &[u8]) -> Option<Extent> {
        let copy = self.inner.copy(bytes, &[])?;
        Some(Extent {
            arena: self.inner.clone(),
            len: bytes.len() as u64,
            copy: RefCell::new(Rc::new(copy)),
            asked: Cell::new((i64::MIN, 0)),
        })
    }

    /// Bytes of memory the runs in use take, as the kernel counts them.
    #[cfg(test)]
    fn resident_bytes(&self) -> io::Result<u64> {
        let st = rustix::fs::fstat(&self.inner.file)?;
        Ok(st.st_blocks as u64 * 512)
    }
}

impl Extent {
    /// The memory file holding the body; send from a [`Held`] copy's offsets.
    pub fn file(&self) -> &File {
        &self.arena.file
    }

    /// The current copy, kept in the file until the returned value is dropped.
    pub fn hold(&self) -> Held {
        Held {
            copy: self.copy.borrow().clone(),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Memory the body takes: whole pages, and the page for its head (one copy; the
    /// copies a new head leaves behind are bounded by the arena's address space).
    pub fn weight(&self) -> u64 {
        PAGE + round_up(self.len.max(1))
    }

    /// The tag given with the current copy's head ([`Extent::write_head`]).
    pub fn head_tag(&self) -> i64 {
        self.copy.borrow().head_tag
    }

    /// Whether a head tagged `tag` should be written now ([`Extent::write_head`]): at once
    /// while the current copy has none (it is written in place), else once a whole
    /// response with it has been asked for [`NEW_COPY_AFTER`] times (this call counts
    /// them), so that a body asked for now and then is sent as a head and a body instead
    /// of being copied each second.
    pub fn head_due(&self, tag: i64) -> bool {
        if self.copy.borrow().head.is_empty() {
            return true;
        }
        let (asked, n) = self.asked.get();
        let n = if asked == tag { n.saturating_add(1) } else { 1 };
        self.asked.set((tag, n));
        n >= NEW_COPY_AFTER
    }

    /// Writes `parts`, in order, as the head before the body: into the current copy if it
    /// has none yet, else before a new copy of the body (the old copy stays for the sends
    /// that hold it). At most [`HEAD_ROOM`] bytes. Fails when no run is free for a new
    /// copy; the current copy stays as it was.
    pub fn write_head(&self, parts: [&[u8]; 2], tag: i64) -> io::Result<()> {
        let len = parts[0].len() + parts[1].len();
        if len > HEAD_ROOM {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "head too long"));
        }
        let mut head = Vec::with_capacity(len);
        head.extend_from_slice(parts[0]);
        head.extend_from_slice(parts[1]);
        let current = self.hold();
        let copy = if current.copy.head.is_empty() {
            // The page before the body was never written, and never sent: write it now.
            self.arena
                .file
                .write_all_at(&head, current.copy.offset - len as u64)?;
            BodyCopy {
                _run: current.copy._run.clone(),
                offset: current.copy.offset,
                head,
                head_tag: tag,
            }
        } else {
            let mut body = Vec::new();
            self.read_into(0, self.len as usize, &mut body)?;
            let mut copy = self.arena.copy(&body, &head).ok_or_else(|| {
                io::Error::new(io::ErrorKind::OutOfMemory, "no free run for a new copy")
            })?;
            copy.head_tag = tag;
            copy
        };
        drop(current);
        // The old copy goes once no send holds it (and its run with the last copy in it).
        let old = self.copy.replace(Rc::new(copy));
        drop(old);
        Ok(())
    }

    /// Where a send of the head and the whole body starts in the current copy, if the head
    /// written before the body is `parts`, in order: the copy to send from, and the offset.
    pub fn after_head(&self, parts: [&[u8]; 2]) -> Option<(Held, u64)> {
        let held = self.hold();
        let head = &held.copy.head;
        let [a, b] = parts;
        let same = !head.is_empty()
            && head.len() == a.len() + b.len()
            && head.starts_with(a)
            && head.ends_with(b);
        let from = held.copy.offset - head.len() as u64;
        same.then_some((held, from))
    }

    /// Appends `len` bytes of the body from `from` to `out` (a copy, for a short range).
    pub fn read_into(&self, from: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        debug_assert!(from + len as u64 <= self.len);
        let offset = self.copy.borrow().offset;
        let at = out.len();
        out.resize(at + len, 0);
        let res = self.arena.file.read_exact_at(&mut out[at..], offset + from);
        if res.is_err() {
            out.truncate(at);
        }
        res
    }
}

impl Held {
    /// Where the body starts in [`Extent::file`].
    pub fn offset(&self) -> u64 {
        self.copy.offset
    }
}

impl Inner {
    /// Appends `head` and then `body` (the head ending where the body starts, on a page
    /// boundary) to the open run, or to a new run when it has no room.
    fn copy(self: &Rc<Self>, body: &[u8], head: &[u8]) -> Option<BodyCopy> {
        let size = PAGE + round_up((body.len() as u64).max(1));
        let (run, start, fresh) = self.room(size)?;
        let offset = start + PAGE;
        // On failure the run (if new) goes with the last reference here.
        self.file.write_all_at(body, offset).ok()?;
        self.file
            .write_all_at(head, offset - head.len() as u64)
            .ok()?;
        if fresh {
            if let Some(collapse) = self.collapse {
                // Not the spare (a body larger than a run, or none was free): collapsed
                // now, which fails if sends already hold its pages. A run that stays in
                // 4 KiB pages works the same, at more CPU per send.
                let _ = collapse(self.file.as_fd(), run.start, run.len);
            }
        }
        // After the collapse above, so that the thread gets to the run being sent first.
        self.ready_spare();
        Some(BodyCopy {
            _run: run,
            offset,
            head: head.to_vec(),
            head_tag: i64::MIN,
        })
    }

    /// `size` bytes of unwritten space: the open run's, or a new run's, which becomes the
    /// open one (`true` with it unless it was the spare, whose collapse was asked for
    /// already).
    fn room(self: &Rc<Self>, size: u64) -> Option<(Rc<Run>, u64, bool)> {
        let mut open = self.open.borrow_mut();
        if let Some((run, next)) = open.as_mut() {
            if let Some(run) = run.upgrade() {
                if *next + size <= run.start + run.len {
                    let at = *next;
                    *next += size;
                    return Some((run, at, false));
                }
            }
        }
        let len = size.div_ceil(RUN) * RUN;
        let (start, fresh) = match self.spare.take() {
            Some(start) if len == RUN => (start, false),
            spare => {
                self.spare.set(spare);
                (self.take(len)?, true)
            }
        };
        let run = Rc::new(Run {
            arena: Rc::downgrade(self),
            start,
            len,
        });
        *open = Some((Rc::downgrade(&run), start + size));
        Some((run, start, fresh))
    }

    /// Takes a run to be the next new one and has it collapsed while nothing is sent from
    /// it, if there is none yet and a run is free (one check when there is: it runs with
    /// every new copy, not with every request).
    fn ready_spare(&self) {
        let Some(collapse) = self.collapse else {
            return;
        };
        if self.spare.get().is_some() {
            return;
        }
        let Some(start) = self.take(RUN) else {
            return;
        };
        // A page of data (zeros; the first copy writes its head page over them, before
        // anything is sent from it): the kernel collapses no range that holds none.
        if self.file.write_all_at(&[0; PAGE as usize], start).is_err() {
            if punch(&self.file, start, RUN).is_ok() {
                self.release(start, RUN);
            }
            return;
        }
        // A spare that stays in 4 KiB pages works the same, at more CPU per send.
        let _ = collapse(self.file.as_fd(), start, RUN);
        self.spare.set(Some(start));
    }

    /// First fit: the lowest free range of at least `len` bytes, split.
    fn take(&self, len: u64) -> Option<u64> {
        let mut free = self.free.borrow_mut();
        let (&start, &have) = free.iter().find(|&(_, &have)| have >= len)?;
        free.remove(&start);
        if have > len {
            free.insert(start + len, have - len);
        }
        Some(start)
    }

    /// Returns `start..start + len` to the free ranges, merged with its neighbours.
    fn release(&self, mut start: u64, mut len: u64) {
        let mut free = self.free.borrow_mut();
        if let Some((&prev, &prev_len)) = free.range(..start).next_back() {
            if prev + prev_len == start {
                free.remove(&prev);
                start = prev;
                len += prev_len;
            }
        }
        if let Some(next_len) = free.remove(&(start + len)) {
            len += next_len;
        }
        free.insert(start, len);
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Gone with the arena: the file's last descriptor frees everything.
        let Some(arena) = self.arena.upgrade() else {
            return;
        };
        // Whole runs only, so no page is cut: a socket still sending from the run keeps
        // its own reference to the pages, and the memory returns when it lets go. Should
        // the punch fail, the range stays out of use (leaked address space, never reused
        // under a send).
        if punch(&arena.file, self.start, self.len).is_ok() {
            arena.release(self.start, self.len);
        }
    }
}

/// Why the kernel may keep a memory file's pages in folios larger than a [`RUN`], if it
/// may: shared memory may come in huge pages (its `shmem_enabled` setting, overall or for a
/// size) and a huge page is larger than a run here (`hpage_pmd_size`).
fn larger_folios_than_a_run() -> Option<String> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let pmd: u64 = read(&format!("{THP_DIR}/hpage_pmd_size"))?
        .trim()
        .parse()
        .ok()?;
    if pmd <= RUN {
        return None;
    }
    let setting = large_folios()?;
    Some(format!("{setting}, hpage_pmd_size is {pmd}"))
}

/// Which of the kernel's settings lets shared memory come in folios of more than one page
/// (as `transparent_hugepage/shmem_enabled is always`), if one does. `advise` needs a
/// mapping that asks for huge pages; `never` and `deny` refuse them; no settings at all is
/// a kernel without transparent huge pages.
fn large_folios() -> Option<String> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let top = read(&format!("{THP_DIR}/shmem_enabled"))?;
    let mut sizes = Vec::new();
    if let Ok(dir) = std::fs::read_dir(THP_DIR) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("hugepages-") {
                if let Some(value) = read(&format!("{THP_DIR}/{name}/shmem_enabled")) {
                    sizes.push((name, value));
                }
            }
        }
    }
    sizes.sort();
    large_folio_setting(&top, &sizes)
}

/// [`large_folios`] on the files' contents: `top` is `shmem_enabled`, `sizes` each
/// `hugepages-<size>kB` directory's name and its `shmem_enabled`. The kernel marks the
/// value in force with brackets (`always within_size advise [never] deny force`).
fn large_folio_setting(top: &str, sizes: &[(String, String)]) -> Option<String> {
    fn chosen(file: &str) -> &str {
        file.split_whitespace()
            .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
            .unwrap_or("")
    }
    let top = chosen(top);
    if matches!(top, "always" | "within_size" | "force") {
        return Some(format!("transparent_hugepage/shmem_enabled is {top}"));
    }
    sizes.iter().find_map(|(name, file)| {
        let value = chosen(file);
        matches!(value, "always" | "within_size")
            .then(|| format!("transparent_hugepage/{name}/shmem_enabled is {value}"))
    })
}

/// Frees the pages of `file` in `offset..offset + len` (whole runs): reads see zeros, and a
/// write there takes fresh pages.
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

    /// `len` bytes of the memory file from `from`.
    fn file_bytes(e: &Extent, from: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        e.file().read_exact_at(&mut out, from).unwrap();
        out
    }

    #[test]
    fn settings_that_give_shared_memory_large_folios_are_named() {
        let size = |name: &str, value: &str| (name.to_string(), value.to_string());
        let never = "always within_size advise [never] deny force";
        let per_size = "always inherit within_size advise [never]";
        assert_eq!(large_folio_setting(never, &[]), None);
        assert_eq!(
            large_folio_setting("always within_size [advise] never deny force", &[]),
            None,
            "advise: only mappings that ask"
        );
        assert_eq!(
            large_folio_setting("always within_size advise never [deny] force", &[]),
            None
        );
        for value in ["always", "within_size", "force"] {
            let top = ["always", "within_size", "advise", "never", "deny", "force"]
                .map(|v| {
                    if v == value {
                        format!("[{v}]")
                    } else {
                        v.to_string()
                    }
                })
                .join(" ");
            assert_eq!(
                large_folio_setting(&top, &[]),
                Some(format!("transparent_hugepage/shmem_enabled is {value}")),
                "{top}"
            );
        }
        let sizes = [
            size("hugepages-16kB", per_size),
            size(
                "hugepages-64kB",
                "always [inherit] within_size advise never",
            ),
            size("hugepages-2048kB", per_size),
        ];
        assert_eq!(large_folio_setting(never, &sizes), None, "inherit never");
        let sizes = [
            size("hugepages-16kB", per_size),
            size(
                "hugepages-64kB",
                "always inherit [within_size] advise never",
            ),
        ];
        assert_eq!(
            large_folio_setting(never, &sizes),
            Some("transparent_hugepage/hugepages-64kB/shmem_enabled is within_size".into())
        );
        assert_eq!(large_folio_setting("", &[]), None, "nothing chosen");
    }

    #[test]
    fn a_stored_body_reads_back_whole_and_in_part() {
        let arena = Arena::new(4 * RUN, None).unwrap();
        let b = body(20_000, 7);
        let e = arena.store(&b).unwrap();
        assert_eq!(e.len(), 20_000);
        assert_eq!(e.weight(), 6 * PAGE, "five pages and the head's");
        assert_eq!(e.hold().offset() % PAGE, 0);
        assert_eq!(read_back(&e), b);
        let mut part = b"x".to_vec();
        e.read_into(4090, 10, &mut part).unwrap();
        assert_eq!(&part[1..], &b[4090..4100]);
    }

    #[test]
    fn copies_do_not_overlap_and_a_run_is_freed_whole_when_its_last_copy_goes() {
        let arena = Arena::new(4 * RUN, None).unwrap();
        let a = arena.store(&body(10_000, 1)).unwrap();
        let b = arena.store(&body(5_000, 2)).unwrap();
        let (ao, bo) = (a.hold().offset(), b.hold().offset());
        assert!(ao + a.weight() <= bo || bo + b.weight() <= ao);
        // No head written yet: the body pages alone.
        assert_eq!(arena.resident_bytes().unwrap(), 3 * PAGE + 2 * PAGE);
        drop(a);
        assert_eq!(
            arena.resident_bytes().unwrap(),
            5 * PAGE,
            "a run is never punched in part"
        );
        assert_eq!(read_back(&b), body(5_000, 2));
        // A body that does not fit in the open run's rest opens a new run; the old one,
        // with the copy of `b` still in it, stays.
        let big = arena
            .store(&body(RUN as usize - 2 * PAGE as usize, 3))
            .unwrap();
        assert_ne!(big.hold().offset() / RUN, bo / RUN);
        assert_eq!(read_back(&b), body(5_000, 2));
        let before = arena.resident_bytes().unwrap();
        drop(b);
        assert_eq!(
            arena.resident_bytes().unwrap(),
            before - 5 * PAGE,
            "the old run goes whole with its last copy"
        );
        assert_eq!(
            arena.inner.free.borrow().len(),
            2,
            "its space is free again"
        );
    }

    #[test]
    fn a_full_arena_refuses_and_freed_runs_merge_for_reuse() {
        let arena = Arena::new(3 * RUN, None).unwrap();
        let a = arena.store(&body((RUN - PAGE) as usize, 1)).unwrap(); // one whole run
        let b = arena.store(&body(RUN as usize, 2)).unwrap(); // two runs, now the open ones
        assert_eq!(b.hold().offset(), RUN + PAGE);
        assert!(
            arena.store(&body((RUN - PAGE) as usize, 3)).is_none(),
            "full: no free run"
        );
        let c = arena.store(&body(1000, 4)).unwrap();
        assert_eq!(
            c.hold().offset(),
            2 * RUN + 2 * PAGE,
            "in the open run's rest"
        );
        drop(a);
        assert_eq!(*arena.inner.free.borrow(), BTreeMap::from([(0, RUN)]));
        let d = arena.store(&body((RUN - 2 * PAGE) as usize, 5)).unwrap();
        assert_eq!(d.hold().offset(), PAGE, "a new run where the first was");
        assert_eq!(read_back(&d), body((RUN - 2 * PAGE) as usize, 5));
        assert_eq!(read_back(&b), body(RUN as usize, 2));
        assert_eq!(read_back(&c), body(1000, 4));
        drop(b);
        assert!(arena.inner.free.borrow().is_empty(), "c keeps its run");
        drop(c);
        assert_eq!(
            *arena.inner.free.borrow(),
            BTreeMap::from([(RUN, 2 * RUN)]),
            "both runs at once"
        );
        drop(d);
    }

    #[test]
    fn a_head_ends_where_the_body_starts_and_a_new_head_gets_a_new_copy() {
        let arena = Arena::new(4 * RUN, None).unwrap();
        let b = body(9_000, 3);
        let e = arena.store(&b).unwrap();
        assert!(e.after_head([b"", b""]).is_none(), "no head yet");
        let parts: [&[u8]; 2] = [b"HTTP/1.1 200 OK\r\n", b"Content-Length: 9000\r\n\r\n"];
        let first = e.hold().offset();
        e.write_head(parts, 7).unwrap();
        assert_eq!(e.head_tag(), 7);
        let (held, from) = e.after_head(parts).unwrap();
        assert_eq!(
            held.offset(),
            first,
            "the first head goes before the stored body"
        );
        let head_len = (held.offset() - from) as usize;
        let whole = file_bytes(&e, from, head_len + b.len());
        assert_eq!(&whole[..head_len], &parts.concat()[..]);
        assert_eq!(&whole[head_len..], &b[..]);
        assert!(
            e.after_head([b"HTTP/1.1 200 OK\r\n", b"Content-Length: 9001\r\n\r\n"])
                .is_none()
        );

        // A second head: a new copy; the held one keeps its head and body.
        e.write_head([b"A", b"B"], 8).unwrap();
        let (now, now_from) = e.after_head([b"A", b"B"]).unwrap();
        assert_ne!(now.offset(), first);
        assert_eq!(
            file_bytes(&e, now_from, 2 + b.len()),
            [&b"AB"[..], &b].concat()
        );
        assert_eq!(read_back(&e), b);
        assert_eq!(
            file_bytes(&e, from, head_len + b.len()),
            whole,
            "held: unchanged"
        );
        assert!(e.after_head(parts).is_none());

        let long = vec![b'x'; HEAD_ROOM];
        assert!(
            e.write_head([&long, b"!"], 9).is_err(),
            "longer than its page"
        );
        assert!(
            e.after_head([b"A", b"B"]).is_some(),
            "a failed write leaves the copy as it was"
        );
    }

    #[test]
    fn a_new_copy_for_a_new_head_waits_until_it_is_asked_for_often() {
        let arena = Arena::new(4 * RUN, None).unwrap();
        let e = arena.store(&body(9_000, 4)).unwrap();
        assert!(e.head_due(1), "the first head is written in place, at once");
        e.write_head([b"one", b""], 1).unwrap();
        for _ in 1..NEW_COPY_AFTER {
            assert!(!e.head_due(2));
        }
        assert!(e.head_due(2), "asked for often enough");
        assert!(!e.head_due(3), "a new tag counts from one again");
        assert_eq!(e.head_tag(), 1);
    }

    thread_local! {
        /// What [`record_collapse`] was asked: offset, length, and whether the range held
        /// nothing but zeros then.
        static COLLAPSES: RefCell<Vec<(u64, u64, bool)>> = const { RefCell::new(Vec::new()) };
    }

    /// A [`Collapse`] that only records what it is asked (the engine's, which collapses for
    /// real, is tested in the store, since `fs` imports no engine).
    fn record_collapse(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
        let mut bytes = vec![0; len as usize];
        rustix::io::pread(file, &mut bytes, offset)?;
        let zeros = bytes.iter().all(|&b| b == 0);
        COLLAPSES.with(|c| c.borrow_mut().push((offset, len, zeros)));
        Ok(())
    }

    fn collapses() -> Vec<(u64, u64, bool)> {
        COLLAPSES.with(|c| c.take())
    }

    #[test]
    fn the_next_run_is_collapsed_before_anything_is_written_to_it() {
        collapses();
        let arena = Arena::new(4 * RUN, Some(record_collapse)).unwrap();
        assert_eq!(
            collapses(),
            [(0, RUN, true)],
            "a spare run, made ready at once"
        );
        assert_eq!(
            arena.resident_bytes().unwrap(),
            PAGE,
            "one page of it written"
        );
        let a = arena.store(&body(10_000, 1)).unwrap();
        assert_eq!(a.hold().offset(), PAGE, "the first copy goes to the spare");
        assert_eq!(collapses(), [(RUN, RUN, true)], "the next spare");
        // Larger than a run: a new range of two runs, asked for once its copy is written.
        let big = arena.store(&body(RUN as usize + 1, 2)).unwrap();
        assert_eq!(big.hold().offset(), 2 * RUN + PAGE);
        assert_eq!(collapses(), [(2 * RUN, 2 * RUN, false)]);
        // The open run (the big one) has no room for another run's worth: the spare.
        let c = arena.store(&body((RUN - PAGE) as usize, 3)).unwrap();
        assert_eq!(c.hold().offset(), RUN + PAGE);
        assert_eq!(collapses(), [], "no run free for another spare");
        assert!(arena.inner.spare.get().is_none());
        // A spare is taken again with the next copy once a run is free.
        drop(big);
        let d = arena.store(&body((RUN - PAGE) as usize, 4)).unwrap();
        assert_eq!(
            d.hold().offset(),
            2 * RUN + PAGE,
            "no spare: a new run, first fit"
        );
        assert_eq!(collapses(), [(2 * RUN, RUN, false), (3 * RUN, RUN, true)]);
        for (e, seed) in [(&a, 1), (&c, 3), (&d, 4)] {
            assert_eq!(read_back(e), body(e.len() as usize, seed));
        }
    }

    /// Against a model: random stores, new heads, holds and frees; every live body and every
    /// held copy reads back as written, and the file never holds more runs than it has.
    #[test]
    fn random_stores_heads_and_frees_keep_every_copy_intact() {
        model(None);
    }

    /// The same with a spare run kept ready.
    #[test]
    fn random_stores_heads_and_frees_keep_every_copy_intact_beside_a_spare() {
        model(Some(record_collapse));
        assert!(
            collapses().iter().filter(|&&(.., zeros)| zeros).count() > 10,
            "spares were made ready and used"
        );
    }

    fn model(collapse: Option<Collapse>) {
        let arena = Arena::new(4 * RUN, collapse).unwrap();
        let mut live: Vec<(Extent, Vec<u8>)> = Vec::new();
        let mut held: Vec<(Held, Vec<u8>)> = Vec::new();
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for round in 0..3000u32 {
            match next() % 6 {
                0 | 1 => {
                    let len = 1 + (next() % (40 * PAGE as u32)) as usize;
                    let b = body(len, round as u8);
                    if let Some(e) = arena.store(&b) {
                        live.push((e, b));
                    }
                }
                2 if !live.is_empty() => {
                    let (e, _) = &live[next() as usize % live.len()];
                    let tag = round.to_string();
                    let _ = e.write_head([b"head ", tag.as_bytes()], i64::from(round));
                }
                3 if !live.is_empty() => {
                    let (e, b) = &live[next() as usize % live.len()];
                    held.push((e.hold(), b.clone()));
                }
                4 if !held.is_empty() => {
                    let i = next() as usize % held.len();
                    held.swap_remove(i);
                }
                _ if !live.is_empty() => {
                    let i = next() as usize % live.len();
                    let (e, b) = live.swap_remove(i);
                    assert_eq!(read_back(&e), b);
                }
                _ => {}
            }
            if round % 100 == 0 {
                for (e, b) in &live {
                    assert_eq!(&read_back(e), b);
                }
                for (h, b) in &held {
                    let mut out = vec![0; b.len()];
                    arena
                        .inner
                        .file
                        .read_exact_at(&mut out, h.offset())
                        .unwrap();
                    assert_eq!(&out, b, "a held copy");
                }
                assert!(arena.resident_bytes().unwrap() <= 4 * RUN);
            }
        }
    }
}
