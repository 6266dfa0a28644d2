#![no_main]
use libfuzzer_sys::fuzz_target;

// The input format and the invariants are in fuzz/src/lib.rs, shared with
// tests/fuzz_regressions.rs.
fuzz_target!(|data: &[u8]| fserve_fuzz::compose(data));
