//! Replays every input saved under `tests/fuzz-regressions/<target>/` through the checks its
//! fuzz target runs (`fuzz/src/lib.rs`, included here as is), without libFuzzer: a crash the
//! fuzzers once found stays fixed, and the seeds keep each check exercised on stable.
//!
//! Its own test binary, apart from `tests/tests.rs`, because it starts no server and shares
//! nothing with the integration suite. To add a case: copy a minimised crash
//! (`fuzz/artifacts/<target>/crash-…`) into the target's directory under a telling name.

// The fuzz crate uses these checks from outside; here nothing does.
#[allow(unreachable_pub)]
#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::PathBuf;

/// Runs `check` on every file in `tests/fuzz-regressions/<target>/`, naming each failing
/// input; a missing or empty directory fails, so a renamed target cannot pass by replaying
/// nothing.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (every fuzz target needs one)", dir.display()));
    let mut inputs: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{}: no inputs", dir.display());
    let mut failed = Vec::new();
    for input in &inputs {
        let data = std::fs::read(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            failed.push(input.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail (panic messages above):\n  {}",
        failed.len(),
        inputs.len(),
        failed.join("\n  ")
    );
}

#[test]
fn parse_request() {
    replay("parse_request", checks::parse_request);
}

#[test]
fn normalize_path() {
    replay("normalize_path", checks::normalize_path);
}

#[test]
fn range() {
    replay("range", checks::range);
}

#[test]
fn conditional() {
    replay("conditional", checks::conditional);
}

#[test]
fn http_date() {
    replay("http_date", checks::http_date);
}

#[test]
fn negotiate() {
    replay("negotiate", checks::negotiate);
}

#[test]
fn compose() {
    replay("compose", checks::compose);
}
