//! Files under a test root: writing, mtimes, and byte patterns that show misplaced ranges.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Write `content` to `base/rel`, creating parent directories.
pub fn write(base: &Path, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = base.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Set a file's modification time to `secs` seconds (+ `nanos`) after the epoch.
pub fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    let f = fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_modified(UNIX_EPOCH + Duration::new(secs, nanos))
        .unwrap_or_else(|e| panic!("set_modified {}: {e}", path.display()));
}

/// Deterministic, non-repeating pseudo-random bytes (xorshift64*).
pub fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Text whose every line differs (so that any misplaced range shows), `len` bytes.
pub fn text_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("line {i:07} of the text\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}
