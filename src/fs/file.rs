//! Opening files beneath the served root.
//!
//! SECURITY: every open goes through `openat2(2)` relative to a descriptor of the root with
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so no path, `..` or symlink (relative,
//! absolute or `/proc` magic) can reach a file outside the root, even if the tree changes
//! while we look. Symlinks that stay inside the root work, including a symlinked directory
//! swapped by a blue/green deploy.
//!
//! These are synchronous calls: on a warm dentry cache they cost far less than the same
//! operations punted to io_uring's kernel workers (DESIGN.md), and they happen only on a
//! cache miss or a once-a-second revalidation.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

/// The served directory, held open.
pub struct Root {
    fd: OwnedFd,
}

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
        Ok(Root { fd })
    }

    /// Opens `rel` (relative, normalised: see `path::relative`) for reading, beneath the root.
    pub fn open_file(&self, rel: &[u8]) -> Result<(File, Meta), OpenError> {
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let fd = loop {
            match rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), resolve) {
                Ok(fd) => break fd,
                // RESOLVE_BENEATH returns EAGAIN when a rename raced the lookup: try again.
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let meta = Meta::from_stat(&rustix::fs::fstat(&fd)?);
        Ok((File::from(fd), meta))
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

/// Most entries a directory listing shows.
pub const MAX_LISTED: usize = 10_000;

/// A directory entry, for a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: Vec<u8>,
    pub dir: bool,
    pub len: u64,
    pub mtime: i64,
}

impl Root {
    /// The regular files and directories in the directory `rel`, sorted by name, at most
    /// [`MAX_LISTED`]. Dotfiles are left out unless `hidden`. A symlink is shown as what it
    /// points to, and only if that lies beneath the root.
    pub fn list(&self, rel: &[u8], hidden: bool) -> Result<Vec<Listed>, OpenError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let fd = rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), resolve)?;
        let mut out = Vec::new();
        let mut path = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || (!hidden && name.starts_with(b".")) {
                continue;
            }
            let Ok(st) = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
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
                path.extend_from_slice(name);
                match self.open_file(&path) {
                    Ok((_, meta)) => meta,
                    Err(_) => continue,
                }
            } else {
                Meta::from_stat(&st)
            };
            if meta.kind == Kind::Other {
                continue;
            }
            out.push(Listed {
                name: name.to_vec(),
                dir: meta.kind == Kind::Dir,
                len: meta.len,
                mtime: meta.mtime,
            });
            if out.len() == MAX_LISTED {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Reads all of `file` (at most `limit` bytes; more is an error: the file grew after its
/// stat and will be looked at again).
pub fn read_whole(mut file: &File, len_hint: u64, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(len_hint.min(limit) as usize);
    (&mut file).take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::other("file grew while being read"));
    }
    Ok(bytes)
}
