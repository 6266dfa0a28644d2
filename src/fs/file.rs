//! Opening files beneath the served root.
//!
//! SECURITY: every open goes through `openat2(2)` relative to a descriptor of the root with
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so no path, `..` or symlink (relative,
//! absolute or `/proc` magic) can reach a file outside the root, even if the tree changes
//! while we look. Symlinks that stay inside the root work, including a symlinked directory
//! swapped by a blue/green deploy.
//!
//! SECURITY: a FIFO, socket or device is never opened for reading: opening a FIFO counts as
//! a reader and releases a writer blocked on it. Every path is first opened with `O_PATH`
//! (which opens nothing for I/O) and its type read with `fstat`; only a regular file or a
//! directory is then opened for reading ([`Root::open_file`]).
//!
//! SECURITY: the dotfile rule (`super::path::is_hidden`) is applied to the request path by
//! the caller, and here again to where a symlink leads: a path that passes through a
//! symlink has its real path beneath the root read back (`/proc/self/fd`, once per open of
//! such a path, never for a path without symlinks) and is refused if that path is hidden,
//! unless the root was opened with [`Root::show_hidden`]. So `gitlink -> .git` does not
//! serve `/gitlink/config`.
//!
//! These are synchronous calls: on a warm dentry cache they cost far less than the same
//! operations punted to io_uring's kernel workers (DESIGN.md), and they happen only on a
//! cache miss or a once-a-second revalidation.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

/// The served directory, held open.
pub struct Root {
    fd: OwnedFd,
    /// Whether dotfiles are served (`--hidden`): then where a symlink leads is not checked.
    hidden: bool,
}

/// How many times [`Root::open_file`] looks again when the file it typed was replaced
/// before it could open it; then it answers "not found".
const REOPEN_ATTEMPTS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A FIFO, socket or device: never served.
    Other,
}

/// What a request needs to know about a file, and what tells one version from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub len: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ino: u64,
    pub dev: u64,
}

/// Why a file cannot be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Missing, or a path that would lead outside the root.
    NotFound,
    /// The server's user may not read it.
    Forbidden,
    /// Anything else: the server logs it.
    Io(io::Error),
}

impl From<rustix::io::Errno> for OpenError {
    fn from(e: rustix::io::Errno) -> OpenError {
        use rustix::io::Errno;
        match e {
            // EXDEV: the path (or a symlink in it) leads out of the root. ELOOP: a symlink
            // cycle, or a magic link. Both look like a missing file from outside.
            Errno::NOENT | Errno::NOTDIR | Errno::XDEV | Errno::LOOP | Errno::NAMETOOLONG => {
                OpenError::NotFound
            }
            Errno::ACCESS | Errno::PERM => OpenError::Forbidden,
            e => OpenError::Io(e.into()),
        }
    }
}

impl Meta {
    /// The metadata of a file already open.
    pub fn of(file: &File) -> io::Result<Meta> {
        Ok(Meta::from_stat(&rustix::fs::fstat(file)?))
    }

    fn from_stat(st: &rustix::fs::Stat) -> Meta {
        let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::RegularFile => Kind::File,
            rustix::fs::FileType::Directory => Kind::Dir,
            _ => Kind::Other,
        };
        Meta {
            kind,
            len: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as u32,
            ino: st.st_ino,
            dev: st.st_dev,
        }
    }
}

impl Root {
    /// Opens the directory to serve.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd, hidden: false })
    }

    /// Serves dotfiles reached through symlinks too (`--hidden`); by default a path whose
    /// symlinks lead to a dotfile or into a dot-directory is "not found".
    pub fn show_hidden(mut self, yes: bool) -> Root {
        self.hidden = yes;
        self
    }

    /// Opens `rel` (relative, normalised: see `path::relative`) for reading, beneath the root.
    /// Only a regular file or a directory is opened: anything else, and a path that a
    /// symlink leads to a hidden file, is [`OpenError::NotFound`] without being opened.
    pub fn open_file(&self, rel: &[u8]) -> Result<(File, Meta), OpenError> {
        for _ in 0..REOPEN_ATTEMPTS {
            let typed = self.meta_beneath(rel)?;
            // O_NONBLOCK: should a FIFO replace the file between the two opens, the open
            // does not wait for a writer (and it is refused below); O_DIRECTORY keeps a
            // directory's reopen from opening anything else.
            let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
            if typed.kind == Kind::Dir {
                flags |= OFlags::DIRECTORY;
            }
            let fd = openat2_beneath(&self.fd, rel, flags, false)?;
            let meta = Meta::from_stat(&rustix::fs::fstat(&fd)?);
            // SECURITY: the file that was typed is the one opened; if it was replaced in
            // between (only someone who can write to the root can do that), look again.
            if (meta.dev, meta.ino) == (typed.dev, typed.ino) && meta.kind == typed.kind {
                return Ok((File::from(fd), meta));
            }
        }
        Err(OpenError::NotFound)
    }

    /// The metadata of `rel` beneath the root, read through an `O_PATH` descriptor (nothing
    /// is opened for I/O): [`OpenError::NotFound`] for a FIFO, socket or device, and for a
    /// path whose symlinks lead to a hidden file (unless [`Root::show_hidden`]).
    fn meta_beneath(&self, rel: &[u8]) -> Result<Meta, OpenError> {
        let flags = OFlags::PATH | OFlags::CLOEXEC;
        // Most paths hold no symlink: then the request path, already checked by the caller,
        // is the real path. Only when the kernel refuses for a symlink is it resolved.
        let (fd, through_symlink) = match openat2_beneath(&self.fd, rel, flags, true) {
            Ok(fd) => (fd, false),
            Err(rustix::io::Errno::LOOP) => (openat2_beneath(&self.fd, rel, flags, false)?, true),
            Err(e) => return Err(e.into()),
        };
        if through_symlink && !self.hidden && self.real_path_is_hidden(&fd)? {
            return Err(OpenError::NotFound);
        }
        let meta = Meta::from_stat(&rustix::fs::fstat(&fd)?);
        if meta.kind == Kind::Other {
            return Err(OpenError::NotFound);
        }
        Ok(meta)
    }

    /// Whether the file `fd` (opened beneath the root) lies at a hidden path relative to the
    /// root, by the kernel's record of both paths.
    fn real_path_is_hidden(&self, fd: &OwnedFd) -> Result<bool, OpenError> {
        let real = |fd: &OwnedFd| {
            std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| {
                OpenError::Io(io::Error::new(
                    e.kind(),
                    format!(
                        "cannot tell where a symlink leads ({e}): mount /proc, or start with \
                         --hidden to serve dotfiles"
                    ),
                ))
            })
        };
        let (root, file) = (real(&self.fd)?, real(fd)?);
        // SECURITY: a path the root's record does not prefix (the root was moved since it
        // was opened) is refused rather than guessed at.
        let Ok(inside) = file.strip_prefix(&root) else {
            return Ok(true);
        };
        Ok(super::path::is_hidden(inside.as_os_str().as_bytes()))
    }

    /// Looks at `rel` without opening it, to tell whether a cached copy is still current.
    /// Its answer only ever leads to a fresh [`Root::open_file`], which does the checking.
    pub fn stat(&self, rel: &[u8]) -> Result<Meta, OpenError> {
        Ok(Meta::from_stat(&rustix::fs::statat(
            &self.fd,
            rel,
            AtFlags::empty(),
        )?))
    }
}

/// `openat2` beneath `dir`, never through a magic link, and with `no_symlinks` through no
/// symlink at all (a symlink is then `ELOOP`).
fn openat2_beneath(
    dir: &OwnedFd,
    rel: &[u8],
    flags: OFlags,
    no_symlinks: bool,
) -> Result<OwnedFd, rustix::io::Errno> {
    let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    if no_symlinks {
        resolve |= ResolveFlags::NO_SYMLINKS;
    }
    loop {
        match rustix::fs::openat2(dir, rel, flags, Mode::empty(), resolve) {
            Ok(fd) => return Ok(fd),
            // RESOLVE_BENEATH returns EAGAIN when a rename raced the lookup: try again.
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Most entries a directory listing shows: the first by name. Bounds the work of one
/// listing (a stat per entry shown) and the size of its page.
pub(crate) const MAX_LISTED: usize = 5_000;
/// Most names read from one directory for a listing: past this many, the listing shows the
/// first [`MAX_LISTED`] of those read (in the directory's own order) and says it is partial.
pub(crate) const MAX_SCANNED: usize = 100_000;

/// A directory entry, for a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: Vec<u8>,
    pub dir: bool,
    pub len: u64,
    pub mtime: i64,
}

/// What a listing shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Sorted by name.
    pub entries: Vec<Listed>,
    /// Some entries were left out ([`MAX_LISTED`], [`MAX_SCANNED`]).
    pub truncated: bool,
}

impl Root {
    /// The regular files and directories in the directory `rel`, sorted by name, at most
    /// [`MAX_LISTED`]. Dotfiles are left out unless `hidden`. A symlink is shown as what it
    /// points to, and only if that lies beneath the root (and is not hidden: see
    /// [`Root::show_hidden`]).
    pub fn list(&self, rel: &[u8], hidden: bool) -> Result<Listing, OpenError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = openat2_beneath(&self.fd, rel, flags, false)?;
        let mut names = Vec::new();
        let mut truncated = false;
        for entry in rustix::fs::Dir::read_from(&fd)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || (!hidden && name.starts_with(b".")) {
                continue;
            }
            if names.len() == MAX_SCANNED {
                truncated = true;
                break;
            }
            names.push(name.to_vec());
        }
        names.sort_unstable();
        if names.len() > MAX_LISTED {
            names.truncate(MAX_LISTED);
            truncated = true;
        }
        let mut entries = Vec::with_capacity(names.len());
        let mut path = Vec::new();
        for name in names {
            let Ok(st) = rustix::fs::statat(&fd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let meta = if rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::Symlink
            {
                path.clear();
                if rel != b"." {
                    path.extend_from_slice(rel);
                    path.push(b'/');
                }
                path.extend_from_slice(&name);
                match self.meta_beneath(&path) {
                    Ok(meta) => meta,
                    Err(_) => continue,
                }
            } else {
                Meta::from_stat(&st)
            };
            if meta.kind == Kind::Other {
                continue;
            }
            entries.push(Listed {
                name,
                dir: meta.kind == Kind::Dir,
                len: meta.len,
                mtime: meta.mtime,
            });
        }
        Ok(Listing { entries, truncated })
    }
}

/// Reads all of `file` (at most `limit` bytes; more is an error: the file grew after its
/// stat and will be looked at again).
pub(crate) fn read_whole(mut file: &File, len_hint: u64, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(len_hint.min(limit) as usize);
    (&mut file).take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::other("file grew while being read"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::mpsc;
    use std::time::Duration;

    fn tree() -> (tempfile::TempDir, Root) {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        std::fs::create_dir_all(p.join(".git")).unwrap();
        std::fs::create_dir_all(p.join(".well-known")).unwrap();
        std::fs::create_dir_all(p.join("docs")).unwrap();
        std::fs::write(p.join(".git/config"), "[core]\n").unwrap();
        std::fs::write(p.join(".env"), "SECRET=1\n").unwrap();
        std::fs::write(p.join(".well-known/security.txt"), "Contact: x\n").unwrap();
        std::fs::write(p.join("docs/a.txt"), "a\n").unwrap();
        for (link, target) in [
            ("gitlink", ".git"),
            ("envlink", ".env"),
            ("docs/up-env", "../.env"),
            ("wk", ".well-known"),
            ("doclink", "docs"),
            ("alink", "docs/a.txt"),
        ] {
            symlink(target, p.join(link)).unwrap();
        }
        let root = Root::open(p).unwrap();
        (tmp, root)
    }

    fn opens(root: &Root, rel: &str) -> bool {
        match root.open_file(rel.as_bytes()) {
            Ok(_) => true,
            Err(OpenError::NotFound) => false,
            Err(e) => panic!("{rel}: {e:?}"),
        }
    }

    #[test]
    fn symlinks_to_dotfiles_are_hidden_unless_shown() {
        let (_tmp, root) = tree();
        // (path, served by default)
        let cases = [
            ("gitlink/config", false),
            ("gitlink", false),
            ("envlink", false),
            ("docs/up-env", false),
            ("wk/security.txt", true),
            ("doclink/a.txt", true),
            ("alink", true),
            ("docs/a.txt", true),
        ];
        for (rel, served) in cases {
            assert_eq!(opens(&root, rel), served, "{rel}");
        }
        let root = root.show_hidden(true);
        for (rel, _) in cases {
            assert!(opens(&root, rel), "{rel} with --hidden");
        }
    }

    #[test]
    fn listings_leave_out_symlinks_to_dotfiles() {
        let (_tmp, root) = tree();
        let names: Vec<Vec<u8>> = root
            .list(b".", false)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, [&b"alink"[..], b"doclink", b"docs", b"wk"]);
    }

    /// Opening a FIFO for reading would release a writer blocked in open(2): it is typed
    /// first and never opened.
    #[test]
    fn fifos_are_not_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("pipe");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o644)).unwrap();
        let (opened, writer_opened) = mpsc::channel();
        let (tid_tx, tid_rx) = mpsc::channel();
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let _ = tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get());
                let f = std::fs::OpenOptions::new().write(true).open(&fifo);
                let _ = opened.send(());
                drop(f);
            })
        };
        wait_until_blocked_on_fifo(tid_rx.recv().unwrap());
        let root = Root::open(tmp.path()).unwrap();
        assert!(matches!(root.open_file(b"pipe"), Err(OpenError::NotFound)));
        assert!(matches!(root.stat(b"pipe"), Ok(m) if m.kind == Kind::Other));
        assert!(root.list(b".", true).unwrap().entries.is_empty());
        assert_eq!(
            writer_opened.recv_timeout(Duration::from_millis(300)),
            Err(mpsc::RecvTimeoutError::Timeout),
            "the blocked writer was released: the FIFO was opened"
        );
        // Release the writer ourselves, so the thread ends.
        let reader = rustix::fs::open(&fifo, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty());
        writer_opened
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer opens once a reader comes");
        drop(reader);
        writer.join().unwrap();
    }

    #[test]
    fn listings_show_the_first_entries_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..MAX_LISTED + 2 {
            std::fs::write(tmp.path().join(format!("f{i:05}")), "").unwrap();
        }
        std::fs::write(tmp.path().join(".hidden"), "").unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let listing = root.list(b".", false).unwrap();
        assert!(listing.truncated);
        assert_eq!(listing.entries.len(), MAX_LISTED);
        assert_eq!(listing.entries[0].name, b"f00000");
        let last = format!("f{:05}", MAX_LISTED - 1);
        assert_eq!(listing.entries[MAX_LISTED - 1].name, last.as_bytes());
        std::fs::remove_file(tmp.path().join("f00000")).unwrap();
        std::fs::remove_file(tmp.path().join("f00001")).unwrap();
        let listing = root.list(b".", false).unwrap();
        assert!(!listing.truncated);
        assert_eq!(listing.entries.len(), MAX_LISTED);
    }

    /// Waits (at most 10 s) until thread `tid` of this process waits in open(2) for a FIFO's
    /// reader, as the kernel reports it.
    fn wait_until_blocked_on_fifo(tid: i32) {
        let wchan = format!("/proc/self/task/{tid}/wchan");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = std::fs::read_to_string(&wchan).unwrap_or_default();
            if now == "wait_for_partner" {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never blocked on the FIFO ({wchan}: {now:?})"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
