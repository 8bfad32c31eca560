//! Any byte string given to the object parser and the admission checks yields a report, never
//! a panic. Run: `cargo +nightly fuzz run check_object` (from this directory's parent).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let report = upsched_policy::check(data, &upsched_policy::Limits::default());
    // A report is either accepted or says why not.
    assert_eq!(report.accepted, report.problems.is_empty());
});
