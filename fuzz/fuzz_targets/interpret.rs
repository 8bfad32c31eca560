//! Arbitrary instruction bytes never panic the decoder, the structural checks or the
//! interpreter. Run: `cargo +nightly fuzz run interpret fuzz/corpus/interpret fuzz/seeds/interpret`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    upsched_ebpf::fuzzing::interpret_arbitrary(data);
});
