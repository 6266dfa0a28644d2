//! File policy and access: from a request path to a file beneath the root.
//!
//! `path` decodes and normalises request paths and applies the dotfile policy (pure);
//! `mime` names content types (pure); `file` opens files beneath the root with `openat2`
//! (synchronous, safe wrappers); `cache` keeps small files per worker; `arena` holds
//! their bodies in a memory file, to be sent by `sendfile`. Never imports `http`,
//! `server` or `uring`, and returns no HTTP statuses: the server maps these errors.

#![forbid(unsafe_code)]

pub(crate) mod arena;
pub(crate) mod cache;
pub(crate) mod file;
pub(crate) mod mime;
pub mod path;

pub use arena::{Arena, Collapse, Extent, Held};
pub use cache::{Absent, Cache};
pub use file::{Kind, Meta, OpenError, Root};
pub use path::{Normalized, PathError};
