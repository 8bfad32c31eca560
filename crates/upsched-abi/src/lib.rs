//! The upsched policy ABI, Rust side.
//!
//! [`UpschedCtx`] mirrors `struct upsched_ctx` of `include/upsched.h` field for field; both are
//! checked at build time against `abi.toml`, the single source of truth, which also yields the
//! constants below and the tables that tools and the broker read:
//! [`FIELDS`] (layout, direction, capability per field), [`HOOKS`] (hook ids and the outputs
//! the host honours), [`KFUNCS`] (kfuncs a policy may call) and [`CAPABILITIES`].
//!
//! The C headers for policy authors are in [`include_dir`]; their documentation of every field
//! is the reference for semantics.

mod ctx;
pub mod mechanism;
pub mod stats;
mod tables;

pub use ctx::UpschedCtx;
pub use tables::*;

/// The C headers of the SDK, by file name, as built into this crate (`upsched sdk export`
/// writes them): the same bytes the build checked against `abi.toml`.
pub const HEADERS: [(&str, &str); 2] = [
    ("upsched.h", include_str!("../include/upsched.h")),
    ("upsched_sdk.h", include_str!("../include/upsched_sdk.h")),
];

/// Directory holding `upsched.h` and `upsched_sdk.h`.
pub fn include_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include")
}
