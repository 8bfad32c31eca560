//! Arbitrary instruction bytes that form a program run identically on the JIT and the
//! interpreter: same result or error, same memory. Run:
//! `cargo +nightly fuzz run jit fuzz/corpus/jit fuzz/seeds/jit`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    upsched_jit::fuzzing::jit_matches_interpreter(data);
});
