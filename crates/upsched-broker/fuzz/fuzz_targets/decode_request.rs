//! Any bytes read as request frames and decoded give requests or errors, never a panic, and
//! what decodes re-encodes to itself. Run (from crates/upsched-broker):
//! `cargo +nightly fuzz run decode_request fuzz/corpus/decode_request fuzz/seeds/decode_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    upsched_broker::protocol::fuzz_decode(data);
});
