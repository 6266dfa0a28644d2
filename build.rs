//! Build script: the text of `fserve --version` / `-V`.
//!
//! It names the git commit the binary was built from, found in this order:
//! 1. `FSERVE_GIT_COMMIT` in the build's environment (the Docker build passes it, since the
//!    build context carries no `.git`);
//! 2. `git rev-parse --short HEAD`, when this crate's directory is the top of a git work tree
//!    (a packaged crate unpacked inside some other repository must not take that one's commit);
//! 3. `.cargo_vcs_info.json`, which `cargo package` writes into a crate built from git (so
//!    `cargo install fserve` knows its commit too);
//! 4. none: the version line then says only the version. A missing git never fails the build.
//!
//! It never reads the network, and runs git only to read.
//!
//! It also sets the cfg `fserve_vendored_uring` when this crate's directory holds
//! vendor/tokio-uring, the patched runtime that Cargo.toml's `[patch.crates-io]` builds: only
//! that runtime can wait on a DEFER_TASKRUN ring. The published crate leaves vendor/ out and
//! builds tokio-uring from crates.io, so the engine keeps to COOP_TASKRUN there.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Both engines are compiled into every build: io_uring, and epoll where io_uring is refused.
const ENGINES: &str = "io_uring, epoll";
/// Length of an abbreviated commit id when one is taken from `.cargo_vcs_info.json`.
const SHORT_COMMIT: usize = 7;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rerun-if-env-changed=FSERVE_GIT_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(fserve_vendored_uring)");
    println!("cargo:rerun-if-changed=vendor/tokio-uring/Cargo.toml");
    if dir.join("vendor/tokio-uring/Cargo.toml").is_file() {
        println!("cargo:rustc-cfg=fserve_vendored_uring");
    }
    let commit = from_env()
        .or_else(|| from_git(&dir))
        .or_else(|| from_vcs_info(&dir));
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let (short, long) = match &commit {
        Some(c) => (
            format!("{version} (commit {c}; engines: {ENGINES})"),
            format!("{version}\ncommit: {c}\nengines: {ENGINES}"),
        ),
        None => (
            format!("{version} (engines: {ENGINES})"),
            format!("{version}\nengines: {ENGINES}"),
        ),
    };
    println!("cargo:rustc-env=FSERVE_VERSION={short}");
    // A rustc-env value is one line: the long form goes through a file (include_str!).
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out.join("long-version.txt"), long) {
        panic!("cannot write long-version.txt in OUT_DIR: {e}");
    }
    println!(
        "cargo:rustc-env=FSERVE_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("")
    );
}

fn from_env() -> Option<String> {
    let c = std::env::var("FSERVE_GIT_COMMIT").ok()?;
    let c = c.trim();
    (!c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric())).then(|| c.to_string())
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

fn from_git(dir: &Path) -> Option<String> {
    let top = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    // Rebuild when HEAD moves: HEAD itself (a branch switch), the branch's ref (a commit),
    // and packed-refs (where refs go after a gc).
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(dir, &["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={}", dir.join(p).display());
        }
    }
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(dir, &["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={}", dir.join(p).display());
        }
    }
    git(dir, &["rev-parse", "--short", "HEAD"])
}

fn from_vcs_info(dir: &Path) -> Option<String> {
    let path = dir.join(".cargo_vcs_info.json");
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(path).ok()?;
    // {"git": {"sha1": "<40 hex>"}, ...}: a small, fixed shape; no JSON parser needed.
    let rest = &text[text.find("\"sha1\"")? + "\"sha1\"".len()..];
    let start = rest.find('"')? + 1;
    let sha: String = rest[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (sha.len() >= SHORT_COMMIT).then(|| sha[..SHORT_COMMIT].to_string())
}
