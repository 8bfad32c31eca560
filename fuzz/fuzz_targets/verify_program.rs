//! Programs our verifier accepts run without faults and leave context inputs alone.
//! Run: `cargo +nightly fuzz run verify_program fuzz/corpus/verify_program fuzz/seeds/verify_program`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    upsched_ebpf::fuzzing::verified_programs_are_safe(data);
});
